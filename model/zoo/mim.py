"""MIM (Wang et al., "Memory In Memory", CVPR 2019) and MS-MIM: ST-LSTM first layer, MIM blocks above it.

A MIM block replaces the forget gate of the ST-LSTM cell by two cascaded recurrent modules that model
non-stationary dynamics: MIM-N reads the differential input ``h_t^{l-1} - h_{t-1}^{l-1}`` and MIM-S turns its
output into the memory transition of ``c``. Every layer also updates the zig-zag spatiotemporal memory ``m``
(PredRNN): layer l at step t reads ``m`` from layer l-1 at step t; layer 0 reads it from the top layer at t-1.

Same function as the authors' ``models/mim.py`` / ``models/ms_mim.py`` (mazhf/MS-RNN). Their count at the reference
configuration is 7,361,473; ours is 6,359,809. The difference is parameters that never reach the output plus the
duplicate biases that fused x/h convolutions remove:

* 627,776: their first layer also holds MIM-N and MIM-S convolutions (x2h_n, n2h_n, diff2o, n2o, x2h_s, c2h_s,
  s2o) whose outputs it computes and discards (the paper's first layer is a plain ST-LSTM). Kept, they would get no
  gradient and DistributedDataParallel (without ``find_unused_parameters``) would refuse to run.
* 369,280: their MIM blocks compute a forget gate (a quarter of x2h and h2h) and never use it; the paper's MIM block
  has none (``c_t = T_t + i_t ⊙ g_t``). 5 layers x 2 convs x (64·64·9 + 64).
* 4,608: duplicate biases, 64 per fused gate: (4 + 3) in the ST-LSTM layer, (3 + 4 + 3 + 3) in each MIM layer.

MS-MIM follows ``models/ms_mim.py``: layer inputs are resized as in ``model.networks.RecurrentCore`` (maxpool down,
bilinear up + mirrored skip); ``m`` is resized with them (maxpool / bilinear, no skip); the previous-step reference
of the differential input, ``h_{t-1}^{l-1}``, is resized from layer l-1's scale to layer l's.
"""
from __future__ import annotations

import torch
from torch import nn

from model.cells import State, zeros_state
from model.networks import RecurrentCore, layer_input, rescale
from model.registry import register_family

#: Authors' parameter count (mazhf/MS-RNN ``MIM`` and ``MS_MIM``) at the reference configuration.
AUTHORS_PARAMS = 7_361_473
#: Parameters of the authors' model that never reach the output (first-layer MIM-N/MIM-S, unused forget gates).
AUTHORS_DEAD_PARAMS = 627_776 + 369_280


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _st_output(cell: nn.Module, x: torch.Tensor, m: torch.Tensor, c: torch.Tensor,
               o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ST-LSTM memory update and output shared by both MIM cells (``cell.gates_m``, ``conv_c2o``, ``conv_m2o``,
    ``fuse``): ``m' = σ(f') ⊙ m + σ(i') ⊙ tanh(g')``, ``h = σ(o + Conv(c) + Conv(m')) ⊙ tanh(Conv1x1([c; m']))``
    -> (h, m')."""
    i_m, f_m, g_m = torch.chunk(cell.gates_m(torch.cat([x, m], dim=1)), 3, dim=1)
    m = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
    o = torch.sigmoid(o + cell.conv_c2o(c) + cell.conv_m2o(m))
    return o * torch.tanh(cell.fuse(torch.cat([c, m], dim=1))), m


class STLSTMCell(nn.Module):
    """Spatiotemporal LSTM (PredRNN, Wang et al. 2017): the first layer of MIM.

        [i, f, g, o]  = Conv_k([x_t; h_{t-1}])
        [i', f', g']  = Conv_k([x_t; m])                 m: from the layer below (or the top layer at t-1)
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        m'  = σ(f') ⊙ m + σ(i') ⊙ tanh(g')
        h_t = σ(o + Conv_k(c_t) + Conv_k(m')) ⊙ tanh(Conv1x1([c_t; m']))

    ``forward(x, x_prev, m, state) -> (h, m', state)``; ``x_prev`` is ignored (same call as ``MIMBlockCell``).
    State: (h, c), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        k = kernel_size
        self.gates = _conv(in_channels + hidden, 4 * hidden, k)
        self.gates_m = _conv(in_channels + hidden, 3 * hidden, k)
        self.conv_c2o = _conv(hidden, hidden, k)
        self.conv_m2o = _conv(hidden, hidden, k)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(2, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor, m: torch.Tensor,
                state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        h, c = state                                            # (B, hid, H, W) each
        i, f, g, o = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h, m = _st_output(self, x, m, c, o)                     # (B, hid, H, W) each
        return h, m, (h, c)


class MIMBlockCell(nn.Module):
    """MIM block (layers 2..L): MIM-N and MIM-S replace the forget gate of the ST-LSTM.

    MIM-N (non-stationary module), differential input d = x_t - x_prev (x_prev = h_{t-1}^{l-1}):
        [i_n, f_n, g_n] = Conv_k([d; n_{t-1}])
        n_t = σ(f_n) ⊙ n_{t-1} + σ(i_n) ⊙ tanh(g_n)
        D_t = σ(Conv_k(d) + Conv_k(n_t)) ⊙ tanh(n_t)
    MIM-S (stationary module), input D_t, memory c_{t-1}:
        [i_s, f_s, g_s, o_s] = Conv_k([D_t; c_{t-1}])
        s_t = σ(f_s) ⊙ s_{t-1} + σ(i_s) ⊙ tanh(g_s)
        T_t = σ(o_s + Conv_k(s_t)) ⊙ tanh(s_t)
    Cell:
        [i, g, o]    = Conv_k([x_t; h_{t-1}])
        c_t = T_t + σ(i) ⊙ tanh(g)
        [i', f', g'] = Conv_k([x_t; m]);  m' = σ(f') ⊙ m + σ(i') ⊙ tanh(g')
        h_t = σ(o + Conv_k(c_t) + Conv_k(m')) ⊙ tanh(Conv1x1([c_t; m']))

    ``forward(x, x_prev, m, state) -> (h, m', state)``. State: (h, c, n, s), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        if in_channels != hidden:
            raise ValueError(f"hidden: the MIM differential input needs in_channels == hidden "
                             f"(got {in_channels} and {hidden})")
        self.in_channels = in_channels
        self.hidden = hidden
        k = kernel_size
        self.gates_n = _conv(in_channels + hidden, 3 * hidden, k)
        self.conv_d2o = _conv(in_channels, hidden, k)
        self.conv_n2o = _conv(hidden, hidden, k)
        self.gates_s = _conv(2 * hidden, 4 * hidden, k)
        self.conv_s2o = _conv(hidden, hidden, k)
        self.gates = _conv(in_channels + hidden, 3 * hidden, k)
        self.gates_m = _conv(in_channels + hidden, 3 * hidden, k)
        self.conv_c2o = _conv(hidden, hidden, k)
        self.conv_m2o = _conv(hidden, hidden, k)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(4, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor, m: torch.Tensor,
                state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        h, c, n, s = state                                      # (B, hid, H, W) each
        d = x - x_prev                                          # (B, hid, H, W) differential input
        i_n, f_n, g_n = torch.chunk(self.gates_n(torch.cat([d, n], dim=1)), 3, dim=1)
        n = torch.sigmoid(f_n) * n + torch.sigmoid(i_n) * torch.tanh(g_n)
        dd = torch.sigmoid(self.conv_d2o(d) + self.conv_n2o(n)) * torch.tanh(n)
        i_s, f_s, g_s, o_s = torch.chunk(self.gates_s(torch.cat([dd, c], dim=1)), 4, dim=1)
        s = torch.sigmoid(f_s) * s + torch.sigmoid(i_s) * torch.tanh(g_s)
        tt = torch.sigmoid(o_s + self.conv_s2o(s)) * torch.tanh(s)
        i, g, o = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 3, dim=1)
        c = tt + torch.sigmoid(i) * torch.tanh(g)
        h, m = _st_output(self, x, m, c, o)                     # (B, hid, H, W) each
        return h, m, (h, c, n, s)


class MIMCore(RecurrentCore):
    """Stack / mirrored pyramid of MIM cells with the zig-zag memory ``m`` and differential inputs.

    ``core(x, state) -> (h_last, state)`` for one time step; state = (per-layer states, m). Layer inputs follow
    ``RecurrentCore`` (maxpool down; bilinear up + skip from the mirrored encoder layer). Layer l also gets
    ``x_prev = rescale(h_{t-1}^{l-1})`` and ``m`` rescaled from layer l-1 (layer 0: ``m`` of the top layer at t-1).
    """

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False):
        layer_states = super().init_state(batch, height, width, device, dtype, channels_last)
        s0 = self.scales[0]
        m = zeros_state(1, batch, self.cells[0].hidden, height // s0, width // s0, device, dtype, channels_last)[0]
        return layer_states, m

    def forward(self, x: torch.Tensor, state):
        layer_states, m = state
        sc = self.scales
        m = rescale(m, sc[-1], sc[0])                           # top layer at t-1 -> layer 0
        outs: list[torch.Tensor] = []
        new_states: list[State] = []
        x_prev = torch.zeros_like(x)                            # layer 0 has no differential input
        for i, cell in enumerate(self.cells):
            inp = layer_input(i, x, outs, sc)                   # (B, hid, H/s_i, W/s_i)
            if i > 0:
                m = rescale(m, sc[i - 1], sc[i])
                x_prev = rescale(layer_states[i - 1][0], sc[i - 1], sc[i])  # h_{t-1}^{l-1} at scale s_i
            h, m, st = cell(inp, x_prev, m, layer_states[i])
            outs.append(h)
            new_states.append(st)
        return outs[-1], (new_states, m)


def make_cell(cfg, layer: int) -> nn.Module:
    """ST-LSTM for the first layer, MIM blocks above (``hidden`` -> ``hidden``, kernel ``cfg.kernel_size``)."""
    if layer == 0:
        return STLSTMCell(cfg.hidden, cfg.hidden, cfg.kernel_size)
    return MIMBlockCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "mim", "MIM", "ST-LSTM first layer, MIM blocks (differential input, MIM-N/MIM-S) above, zig-zag memory",
    "Wang et al., CVPR 2019", make_cell, core=MIMCore,
)
