"""Recurrent cells: one time step each, pure: ``cell(x, state) -> (h, new_state)``.

Every gate block is ONE convolution over the concatenation ``[x; h]``: the same function as the authors'
``Conv(x) + Conv(h)`` (their code keeps a bias on each of the two convs, so their count has ``4*hidden`` more
parameters per fused pair), with half the kernel launches.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

State = tuple[torch.Tensor, ...]


def _zeros(n: int, batch: int, channels: int, height: int, width: int, device, dtype, channels_last: bool) -> State:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(
        torch.zeros(batch, channels, height, width, device=device, dtype=dtype).contiguous(memory_format=fmt)
        for _ in range(n)
    )


class ConvLSTMCell(nn.Module):
    """ConvLSTM (Shi et al. 2015), without peepholes.

    [i, f, g, o] = Conv_k([x_t; h_{t-1}])           (one fused conv, one bias per gate block)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

    State: (h, c), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return _zeros(2, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state                                            # (B, hid, H, W) each
        z = self.gates(torch.cat([x, h], dim=1))                # (B, 4*hid, H, W)
        i, f, g, o = torch.chunk(z, 4, dim=1)                   # (B, hid, H, W) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)                    # (B, hid, H, W)
        return h, (h, c)


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
        return _zeros(1 + len(self.kernels), batch, self.hidden, height, width, device, dtype, channels_last)

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
