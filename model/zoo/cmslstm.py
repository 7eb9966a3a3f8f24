"""CMS-LSTM (Chai et al., "CMS-LSTM: Context Embedding and Multi-Scale Spatiotemporal Expression LSTM for
Predictive Learning", ICME 2022) and MS-CMS-LSTM.

A ConvLSTM cell wrapped by two blocks: before it, the context embedding (CE) block gates x and h by each other a
few times (``iters``, 5 in the authors' config); after it, the spatiotemporal multi-scale expression (SE) block
runs self-attention over [h; c] inside 1, 2 and 4 blocks a side and rewrites (h, c) through a gated update.
MS-CMS-LSTM puts the same cells in the mirrored pyramid of ``model.networks.RecurrentCore``; nothing but h crosses
layers, so no state needs resizing.

Same function as the authors' ``models/cms_lstm.py`` / ``models/ms_cms_lstm.py`` (mazhf/MS-RNN). Their count at the
reference configuration is 4,483,393; ours is 4,480,705: 2,688 fewer, the duplicate biases that fused x/h
convolutions remove (ConvLSTM gates 4 x 64 and SE gates 3 x 64 per layer, 6 layers).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.cells import State, zeros_state
from model.registry import register_family

#: Authors' parameter count (mazhf/MS-RNN ``CMS_LSTM`` and ``MS_CMS_LSTM``) at the reference configuration.
AUTHORS_PARAMS = 4_483_393


class BlockSelfAttention(nn.Module):
    """Self-attention over the positions of h and c together, inside ``splits x splits`` blocks of the map.

        q, k, v = Conv1x1(u), u = [h | c] (h and c side by side along the width, as the authors do)
        out_p   = u_p + Σ_{p' in block(p)} softmax_{p'}(q_p · k_{p'}) v_{p'}     (no 1/√d scaling)

    A block holds the (H/splits) x (W/splits) positions of h and the same positions of c.
    """

    def __init__(self, channels: int, splits: int):
        super().__init__()
        self.splits = splits
        self.qkv = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(3))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, ch, hh, w2 = u.shape                                 # (B, C, H, 2W): [h | c]
        w, s = w2 // 2, self.splits
        if hh % s or w % s:
            raise ValueError(
                f"frame_size: CMS-LSTM splits each layer's map into {s} x {s} blocks but a layer runs at "
                f"{hh} x {w}; use a frame size whose every layer size is a multiple of {s}"
            )
        bh, bw = hh // s, w // s

        def blocks(t: torch.Tensor) -> torch.Tensor:          # (B, C, H, 2W) -> (B*s*s, 1, 2*bh*bw, C)
            t = t.reshape(b, ch, s, bh, 2, s, bw)               # width index = half * W + j * bw + col
            t = t.permute(0, 2, 5, 4, 3, 6, 1)                  # (B, s, s, 2, bh, bw, C)
            return t.reshape(b * s * s, 1, 2 * bh * bw, ch)     # one head: 4-D for the fused kernels

        q, k, v = (blocks(conv(u)) for conv in self.qkv)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B*s*s, 1, 2*bh*bw, C)
        out = out.reshape(b, s, s, 2, bh, bw, ch).permute(0, 6, 1, 4, 3, 2, 5)  # (B, C, s, bh, 2, s, bw)
        return u + out.reshape(b, ch, hh, w2)                   # (B, C, H, 2W)


class CMSLSTMCell(nn.Module):
    """CMS-LSTM cell: CE block -> ConvLSTM -> SE block.

    CE block (j = 1 .. iters):  odd j: x = 2σ(Conv_k(h)) ⊙ x;  even j: h = 2σ(Conv_k(x)) ⊙ h
    ConvLSTM:  [i, f, g, o] = Conv_k([x; h_{t-1}]);  c' = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);  h' = σ(o) ⊙ tanh(c')
    SE block, u = [h' | c'] (side by side along the width):
        a       = Conv_k([A_1(u); A_2(u); A_4(u)])         A_s: ``BlockSelfAttention`` in s x s blocks
        z       = Conv1x1([a_h; a_c])                      (a_h, a_c: the two halves of a)
        [i, g, o] = Conv_k([h'; z])
        c_t = (1 - σ(i)) ⊙ c' + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ c_t

    State: (h, c), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, iters: int = 5,
                 splits: Sequence[int] = (1, 2, 4)):
        super().__init__()
        if in_channels != hidden:
            raise ValueError(f"hidden: the CMS-LSTM CE block needs in_channels == hidden "
                             f"(got {in_channels} and {hidden})")
        k, p = kernel_size, kernel_size // 2
        self.in_channels = in_channels
        self.hidden = hidden
        self.iters = iters
        self.conv_q = nn.Conv2d(hidden, in_channels, k, padding=p)   # h -> gate on x
        self.conv_r = nn.Conv2d(in_channels, hidden, k, padding=p)   # x -> gate on h
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, k, padding=p)
        self.attn = nn.ModuleList(BlockSelfAttention(hidden, s) for s in splits)
        self.conv_a = nn.Conv2d(len(self.attn) * hidden, hidden, k, padding=p)
        self.conv_z = nn.Conv2d(2 * hidden, hidden, 1)
        self.gates_se = nn.Conv2d(2 * hidden, 3 * hidden, k, padding=p)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(2, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state                                            # (B, hid, H, W) each
        for j in range(1, self.iters + 1):                      # CE block
            if j % 2:
                x = 2 * torch.sigmoid(self.conv_q(h)) * x
            else:
                h = 2 * torch.sigmoid(self.conv_r(x)) * h
        i, f, g, o = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)                    # (B, hid, H, W)
        u = torch.cat([h, c], dim=-1)                           # (B, hid, H, 2W)
        a = self.conv_a(torch.cat([att(u) for att in self.attn], dim=1))  # (B, hid, H, 2W)
        a_h, a_c = torch.chunk(a, 2, dim=-1)                    # (B, hid, H, W) each
        z = self.conv_z(torch.cat([a_h, a_c], dim=1))           # (B, hid, H, W)
        i, g, o = torch.chunk(self.gates_se(torch.cat([h, z], dim=1)), 3, dim=1)
        i = torch.sigmoid(i)
        c = (1 - i) * c + i * torch.tanh(g)
        h = torch.sigmoid(o) * c                                # (B, hid, H, W)
        return h, (h, c)


def make_cell(cfg, layer: int) -> CMSLSTMCell:
    """CE iterations 5 and attention splits (1, 2, 4), as in the authors' configuration."""
    return CMSLSTMCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "cmslstm", "CMS-LSTM", "ConvLSTM with context-embedding and multi-scale self-attention blocks",
    "Chai et al., ICME 2022", make_cell,
)
