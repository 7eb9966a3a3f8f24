"""MK-LSTM, the temporal-multiscale cell of MS-LSTM, flat (TMS-LSTM) and in the mirrored pyramid (MS-LSTM).

Registers ``tmslstm`` (``layers`` MK-LSTM cells at full resolution) and ``mslstm`` (the same cells through the
mirrored pyramid of ``ModelConfig.scales``: the paper's model). Reads ``ModelConfig.mk_kernels``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from model.cells import State, zeros_state
from model.registry import register_family


class MKLSTMCell(nn.Module):
    """MK-LSTM: the temporal-multiscale cell of MS-LSTM (branches with kernels k in ``kernels``, default 3 and 5).

    For each branch k (all branches share h_{t-1}):
        [i_k, f_k, g_k, o_k] = Conv_k([x_t; h_{t-1}])   (one fused conv per branch, one bias per gate block)
        c_k,t = sigmoid(f_k) * c_k,t-1 + sigmoid(i_k) * tanh(g_k)
    Output gate and fused memory:
        o   = sigmoid(sum_k o_k + sum_k ConvC_k(c_k,t))    (ConvC_k: hidden -> hidden, kernel k, with bias)
        h_t = o * tanh(Conv1x1([c_3,t; c_5,t]))            (Conv1x1: n_branches*hidden -> hidden, with bias)

    State: (h, c_3, c_5), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernels: Sequence[int] = (3, 5)):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.kernels = tuple(kernels)
        self.gates = nn.ModuleList(
            nn.Conv2d(in_channels + hidden, 4 * hidden, k, padding=k // 2) for k in self.kernels
        )
        self.cell_convs = nn.ModuleList(nn.Conv2d(hidden, hidden, k, padding=k // 2) for k in self.kernels)
        self.fuse = nn.Conv2d(len(self.kernels) * hidden, hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(1 + len(self.kernels), batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, *cs = state                                          # h, c_k: (B, hid, H, W)
        xh = torch.cat([x, h], dim=1)                           # (B, in + hid, H, W)
        new_cs = []
        o_sum = None
        for gates, cell_conv, c in zip(self.gates, self.cell_convs, cs):
            i, f, g, o = torch.chunk(gates(xh), 4, dim=1)       # (B, hid, H, W) each
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            term = o + cell_conv(c)                             # o_k + ConvC_k(c_k): (B, hid, H, W)
            o_sum = term if o_sum is None else o_sum + term
            new_cs.append(c)
        m = self.fuse(torch.cat(new_cs, dim=1))                 # (B, hid, H, W)
        h = torch.sigmoid(o_sum) * torch.tanh(m)                # (B, hid, H, W)
        return h, (h, *new_cs)


def make_cell(cfg, layer: int) -> MKLSTMCell:
    return MKLSTMCell(cfg.hidden, cfg.hidden, cfg.mk_kernels)


register_family(
    "tmslstm", "TMS-LSTM", "MK-LSTM cells, full resolution", "Ma et al., MS-LSTM (2023)", make_cell,
    ms_name="mslstm", ms_label="MS-LSTM", ms_description="MK-LSTM cells, mirrored pyramid (the paper's model)",
    tags=("paper",),
)
