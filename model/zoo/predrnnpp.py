"""PredRNN++ (Wang et al., "PredRNN++: Towards A Resolution of the Deep-in-Time Dilemma in Spatiotemporal
Predictive Learning", ICML 2018) and MS-PredRNN++ (the same cells in the mirrored pyramid of SMS-LSTM).

Causal LSTM layers (the temporal memory c and the spatiotemporal memory M in cascade) with the zigzag M of
PredRNN, and a Gradient Highway Unit (GHU) between the first and the second layer: the second layer reads the
highway state z instead of the first layer's output. As in the authors' code the GHU belongs to layer 2 (index 1)
and runs at that layer's scale (in the MS- version, on the max-pooled output of layer 1); M moves between scales
like PredRNN's (maxpool down, bilinear up): the core is ``PredRNNCore`` (``model/zoo/predrnn.py``).

Parameters at the reference configuration (hidden 64, 6 layers, kernel 3): 4,869,825. The authors' 5,608,513
builds a GHU in every layer but runs only the one of layer 2: the five others (5 x 147,712 = 738,560 parameters)
never receive a gradient (and would stop DDP, which requires every parameter to be used), so they are not built;
the GHU's Conv(x) + Conv(z) is one fused conv here (2 x 64 = 128 fewer). 5,608,513 - 738,560 - 128 = 4,869,825.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from model.cells import State, zeros_state
from model.registry import register_family
from model.zoo.predrnn import PredRNNCore


class GradientHighwayUnit(nn.Module):
    """GHU, state z:

        [p, s] = Conv_k([x_t; z_{t-1}])          (one fused conv)
        z_t    = σ(s) ⊙ tanh(p) + (1 - σ(s)) ⊙ z_{t-1}
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        p, s = torch.chunk(self.gates(torch.cat([x, z], dim=1)), 2, dim=1)   # (B, hid, H, W) each
        s = torch.sigmoid(s)
        return s * torch.tanh(p) + (1 - s) * z                               # (B, hid, H, W)


class CausalLSTMCell(nn.Module):
    """Causal LSTM, temporal state (h, c) (plus the GHU state z when ``highway``), memory M passed in and out:

        (GHU layer only)  x_t ← z_t = GHU(x_t, z_{t-1})
        [i, f, g]    = Conv_k([x_t; h_{t-1}; c_{t-1}])
        c_t          = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        [i', f', g'] = Conv_k([x_t; c_t; M_t^{l-1}])
        M_t          = σ(f') ⊙ tanh(Conv_1x1(M_t^{l-1})) + σ(i') ⊙ tanh(g')
        o_t          = tanh(Conv_k([x_t; c_t; M_t]))
        h_t          = o_t ⊙ tanh(Conv_1x1([c_t; M_t]))

    ``forward(x, state, m) -> (h_t, state_t, M_t, None)`` (the ``PredRNNCore`` cell contract); state (h, c) or
    (h, c, z).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, highway: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        pad = kernel_size // 2
        self.ghu: Optional[GradientHighwayUnit] = (
            GradientHighwayUnit(in_channels, hidden, kernel_size) if highway else None
        )
        x_ch = hidden if highway else in_channels
        self.gates_c = nn.Conv2d(x_ch + 2 * hidden, 3 * hidden, kernel_size, padding=pad)
        self.gates_m = nn.Conv2d(x_ch + 2 * hidden, 3 * hidden, kernel_size, padding=pad)
        self.m_conv = nn.Conv2d(hidden, hidden, 1)
        self.out_gate = nn.Conv2d(x_ch + 2 * hidden, hidden, kernel_size, padding=pad)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        n = 3 if self.ghu is not None else 2
        return zeros_state(n, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State, m: torch.Tensor):
        h, c, *rest = state                                            # (B, hid, H, W) each
        if self.ghu is not None:
            z = self.ghu(x, rest[0])                                   # (B, hid, H, W)
            x = z
        i, f, g = torch.chunk(self.gates_c(torch.cat([x, h, c], dim=1)), 3, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)   # (B, hid, H, W)
        i_m, f_m, g_m = torch.chunk(self.gates_m(torch.cat([x, c, m], dim=1)), 3, dim=1)
        m = torch.sigmoid(f_m) * torch.tanh(self.m_conv(m)) + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.tanh(self.out_gate(torch.cat([x, c, m], dim=1)))
        h = o * torch.tanh(self.fuse(torch.cat([c, m], dim=1)))        # (B, hid, H, W)
        new_state = (h, c, z) if self.ghu is not None else (h, c)
        return h, new_state, m, None


def make_cell(cfg, layer: int) -> CausalLSTMCell:
    return CausalLSTMCell(cfg.hidden, cfg.hidden, cfg.kernel_size, highway=(layer == 1))


register_family(
    "predrnnpp", "PredRNN++", "Causal LSTM cells, zigzag memory M, gradient highway after layer 1",
    "Wang et al., ICML 2018", make_cell, ms_name="mspredrnnpp", core=PredRNNCore,
)
