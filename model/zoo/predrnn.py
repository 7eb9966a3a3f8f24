"""PredRNN (Wang et al., "PredRNN: Recurrent Neural Networks for Predictive Learning using Spatiotemporal LSTMs",
NeurIPS 2017) and MS-PredRNN (the same cells in the mirrored pyramid of SMS-LSTM).

Each layer is a spatiotemporal LSTM (ST-LSTM): the usual temporal memory c plus a spatiotemporal memory M that
zigzags: up the layers within a time step, then from the top layer at t-1 to the bottom layer at t. In the
MS- version M changes scale with the layers exactly as the authors' MS-PredRNN does: maxpool 2x2 when the next
layer is coarser, bilinear x2 when it is finer (no skip for M), so M always has the resolution of the layer that
reads it. ``PredRNNCore`` is also the core of PredRNN++ and, subclassed, of PredRNN-V2.

Parameters at the reference configuration (hidden 64, 6 layers, kernel 3): 3,592,129; the authors' 3,594,817
keeps a bias on each of Conv(x) and Conv(h) (4 x 64) and of Conv(x) and Conv(M) (3 x 64), fused here into one
conv each: 6 x 448 = 2,688 fewer.
"""
from __future__ import annotations

import torch
from torch import nn

from model.cells import State, zeros_state
from model.networks import RecurrentCore, layer_input, rescale
from model.registry import register_family


class STLSTMCell(nn.Module):
    """Spatiotemporal LSTM (ST-LSTM), temporal state (h, c), spatiotemporal memory m passed in and out:

        [i, f, g, o]  = Conv_k([x_t; h_{t-1}])                  (one fused conv)
        Δc            = σ(i) ⊙ tanh(g);          c_t = σ(f) ⊙ c_{t-1} + Δc
        [i', f', g']  = Conv_k([x_t; M_t^{l-1}])                (one fused conv; M from the layer below, or
        Δm            = σ(i') ⊙ tanh(g');        M_t = σ(f') ⊙ M_t^{l-1} + Δm   from the top layer at t-1)
        o_t           = σ(o + Conv_k(c_t) + Conv_k(M_t))
        h_t           = o_t ⊙ tanh(Conv_1x1([c_t; M_t]))

    ``forward(x, (h, c), m) -> (h_t, (h_t, c_t), M_t, (Δc, Δm))``; the increments feed PredRNN-V2's decoupling loss.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        pad = kernel_size // 2
        self.gates_h = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=pad)
        self.gates_m = nn.Conv2d(in_channels + hidden, 3 * hidden, kernel_size, padding=pad)
        self.c2o = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
        self.m2o = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(2, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State, m: torch.Tensor):
        h, c = state                                                   # (B, hid, H, W) each
        i, f, g, o = torch.chunk(self.gates_h(torch.cat([x, h], dim=1)), 4, dim=1)
        delta_c = torch.sigmoid(i) * torch.tanh(g)                     # (B, hid, H, W)
        c = torch.sigmoid(f) * c + delta_c
        i_m, f_m, g_m = torch.chunk(self.gates_m(torch.cat([x, m], dim=1)), 3, dim=1)
        delta_m = torch.sigmoid(i_m) * torch.tanh(g_m)                 # (B, hid, H, W)
        m = torch.sigmoid(f_m) * m + delta_m
        o = torch.sigmoid(o + self.c2o(c) + self.m2o(m))
        h = o * torch.tanh(self.fuse(torch.cat([c, m], dim=1)))        # (B, hid, H, W)
        return h, (h, c), m, (delta_c, delta_m)


class PredRNNCore(RecurrentCore):
    """ST-LSTM layers with the zigzag memory M, as a stack (all scales 1) or the mirrored pyramid.

    States: ``(layer_states, M)``: one (h, c) per layer at its own scale, and M at the scale of the layer that
    wrote it last (the top layer). Layer inputs as in ``RecurrentCore``; M is moved by ``rescale`` between
    layers (maxpool going down, bilinear going up) and from the top layer to the bottom one.
    A cell is called as ``cell(x, state, M) -> (h, state, M, info)``; subclasses see every layer's ``info``
    (ST-LSTM: the increments (Δc, Δm)) through ``observe(layer, info)``. PredRNN++ uses this core too.
    """

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False):
        layer_states = super().init_state(batch, height, width, device, dtype, channels_last)
        s_top = self.scales[-1]
        (m,) = zeros_state(1, batch, self.cells[-1].hidden, height // s_top, width // s_top, device, dtype,
                           channels_last)
        self.start_sequence()
        return layer_states, m

    def start_sequence(self) -> None:
        """Called by ``init_state`` at the start of every rollout (hook for per-sequence accumulators)."""

    def observe(self, layer: int, info) -> None:
        """Called with every layer's ``info`` (hook; PredRNN itself ignores it)."""

    def forward(self, x: torch.Tensor, states):
        layer_states, m = states
        m = rescale(m, self.scales[-1], self.scales[0])               # top layer at t-1 -> layer 0 at t
        outs: list[torch.Tensor] = []
        new_states = []
        for i, cell in enumerate(self.cells):
            inp = layer_input(i, x, outs, self.scales)                 # (B, hid, H/s_i, W/s_i)
            if i > 0:
                m = rescale(m, self.scales[i - 1], self.scales[i])     # (B, hid, H/s_i, W/s_i)
            h, st, m, info = cell(inp, layer_states[i], m)
            self.observe(i, info)
            outs.append(h)
            new_states.append(st)
        return outs[-1], (new_states, m)


def make_cell(cfg, layer: int) -> STLSTMCell:
    return STLSTMCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "predrnn", "PredRNN", "ST-LSTM cells with the zigzag spatiotemporal memory M", "Wang et al., NeurIPS 2017",
    make_cell, ms_name="mspredrnn", core=PredRNNCore,
)
