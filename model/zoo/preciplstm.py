"""PrecipLSTM (Ma et al., "PrecipLSTM: A Meteorological Spatiotemporal LSTM for Precipitation Nowcasting",
IEEE TGRS 2022) and MS-PrecipLSTM.

An ST-LSTM (PredRNN) cell with two more memories: the spatial local-attention memory (SLAM) reads the input after a
local self-attention over a ``window x window`` neighbourhood (30 x 30 in the authors' config), and the temporal
differential memory (TDM) reads the difference between the layer's input at t and at t-1. The zig-zag memory ``m``
goes up the layers and from the top layer at t-1 to layer 0 at t.

Same function as the authors' ``models/preciplstm.py`` / ``models/ms_preciplstm.py`` (mazhf/MS-RNN), whose local
attention is a CUDA extension (zzd1992/Image-Local-Attention); here it is plain PyTorch (``LocalAttention``): an
attention over all positions masked to the window, with the window's out-of-frame positions kept as zero-score,
zero-value entries exactly as that extension does. Their count at the reference configuration is 7,041,217 (the
local attention holds 3 x 64 x 64 bias-free 1x1 weights per layer); ours is 7,036,225: 4,992 fewer, the duplicate
biases that fused x/h convolutions remove ((4 + 3 + 3 + 3) x 64 per layer, 6 layers).

MS-PrecipLSTM follows ``models/ms_preciplstm.py``: layer inputs are resized as in ``model.networks.RecurrentCore``;
``m`` is resized with them (maxpool / bilinear, no skip); the TDM of layer l differences that layer's own input
(skip included) at t and t-1, both at layer l's scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.cells import State, zeros_state
from model.networks import RecurrentCore, layer_input, rescale
from model.registry import register_family

#: Authors' parameter count (mazhf/MS-RNN ``PrecipLSTM`` and ``MS_PrecipLSTM``) at the reference configuration.
AUTHORS_PARAMS = 7_041_217


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def local_window_bias(height: int, width: int, window: int, device=None, dtype=None) -> torch.Tensor:
    """Additive attention bias (H*W, S) of a ``window x window`` local attention on an H x W map.

    Query (r, c) sees keys (r + a, c + b) for a, b in [-(window // 2), window - 1 - window // 2] (the
    Image-Local-Attention window, also for an even ``window``): bias 0 inside the frame, -inf elsewhere. The last
    column stands for the window's positions outside the frame, which that extension keeps with score 0 and value
    0: bias log(count) on a zero key (so they add ``count`` to the softmax denominator and nothing to the output),
    -inf where the whole window is inside the frame. S = H*W + 1 rounded up to a multiple of 16 (the alignment the
    fused attention kernels want for a mask): the extra columns are -inf (zero keys that nobody sees).
    """
    lo = -(window // 2)
    hi = lo + window - 1

    def axis(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(n, device=device)
        off = pos[None, :] - pos[:, None]                       # (n, n): key - query
        inside = (off >= lo) & (off <= hi)
        return inside, inside.sum(dim=1)                        # (n, n), (n,) in-frame window positions per query

    in_r, cnt_r = axis(height)
    in_c, cnt_c = axis(width)
    inside = (in_r[:, None, :, None] & in_c[None, :, None, :]).reshape(height * width, height * width)
    n_out = window * window - (cnt_r[:, None] * cnt_c[None, :]).reshape(height * width, 1)
    neg_inf = torch.tensor(float("-inf"), device=device)
    bias = torch.where(inside, torch.zeros((), device=device), neg_inf)
    out_col = torch.where(n_out > 0, torch.log(n_out.clamp(min=1).to(torch.float32)), neg_inf)
    n = height * width
    align = neg_inf.expand(n, -(n + 1) % 16)
    return torch.cat([bias, out_col, align], dim=1).to(dtype)  # (H*W, S)


class LocalAttention(nn.Module):
    """Local self-attention, plain PyTorch (the authors use the Image-Local-Attention CUDA extension).

        q, k, v = Conv1x1(x), Conv1x1(x), Conv1x1(x)     (no biases)
        out_p   = Σ_{p' in window(p)} softmax_{p'}(q_p · k_{p'}) v_{p'}      (no 1/√d scaling)

    where the window's out-of-frame positions count with score 0 and value 0. Implemented as one attention over all
    H*W positions plus zero keys, with the additive mask of ``local_window_bias``: memory O((H*W)^2) for the
    mask, the attention itself runs in PyTorch's fused kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, window: int = 30):
        super().__init__()
        if window < 1:
            raise ValueError(f"window: must be a positive integer (got {window})")
        self.window = window
        self.q = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.k = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.v = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, hh, ww = x.shape                                  # (B, C_in, H, W)

        def tokens(t: torch.Tensor) -> torch.Tensor:            # (B, C, H, W) -> (B, 1, H*W, C): one head, 4-D
            return t.flatten(2).transpose(1, 2).unsqueeze(1)    # for the fused attention kernels

        q, k, v = tokens(self.q(x)), tokens(self.k(x)), tokens(self.v(x))
        c = q.shape[-1]
        bias = local_window_bias(hh, ww, self.window, q.device, q.dtype)  # (H*W, S)
        zero = q.new_zeros(b, 1, bias.shape[1] - hh * ww, c)
        k = torch.cat([k, zero], dim=2)                         # (B, 1, S, C): + the out-of-frame key (+ padding)
        v = torch.cat([v, zero], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # (B, 1, H*W, C)
        return out.squeeze(1).transpose(1, 2).reshape(b, c, hh, ww)  # (B, C, H, W)


class PrecipLSTMCell(nn.Module):
    """PrecipLSTM cell: ST-LSTM memories c and m, plus SLAM (ms) and TDM (mt).

        x_a = x_t + Conv_k(LA(x_t))                             LA: ``LocalAttention``
        [i, f, g, o]        = Conv_k([x_a; h_{t-1}]);    c_t  = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
        [i', f', g']        = Conv_k([x_a; m]);          m'   = σ(f') ⊙ m + σ(i') ⊙ tanh(g')
        [i_s, f_s, g_s]     = Conv_k([x_a; ms_{t-1}]);   ms_t = σ(f_s) ⊙ ms_{t-1} + σ(i_s) ⊙ tanh(g_s)
        [i_d, f_d, g_d]     = Conv_k([x_t - x_{t-1}; mt_{t-1}]);  mt_t = σ(f_d) ⊙ mt_{t-1} + σ(i_d) ⊙ tanh(g_d)
        o   = σ(o + Conv_k(c_t) + Conv_k(ms_t) + Conv_k(mt_t) + Conv_k(m'))
        h_t = o ⊙ tanh(Conv1x1([c_t; ms_t; mt_t; m']))

    ``forward(x, x_prev, m, state) -> (h, m', state)``; x_prev = this layer's input at t-1.
    State: (h, c, ms, mt), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, window: int = 30):
        super().__init__()
        if in_channels != hidden:
            raise ValueError(f"hidden: PrecipLSTM needs in_channels == hidden (got {in_channels} and {hidden})")
        k = kernel_size
        self.in_channels = in_channels
        self.hidden = hidden
        self.attn = LocalAttention(in_channels, hidden, window)
        self.conv_att = _conv(hidden, hidden, k)
        self.gates = _conv(in_channels + hidden, 4 * hidden, k)
        self.gates_m = _conv(in_channels + hidden, 3 * hidden, k)
        self.gates_ms = _conv(in_channels + hidden, 3 * hidden, k)
        self.gates_mt = _conv(in_channels + hidden, 3 * hidden, k)
        self.conv_c2o = _conv(hidden, hidden, k)
        self.conv_m2o = _conv(hidden, hidden, k)
        self.conv_ms2o = _conv(hidden, hidden, k)
        self.conv_mt2o = _conv(hidden, hidden, k)
        self.fuse = nn.Conv2d(4 * hidden, hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(4, batch, self.hidden, height, width, device, dtype, channels_last)

    @staticmethod
    def _memory(gates: nn.Conv2d, inp: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        i, f, g = torch.chunk(gates(torch.cat([inp, mem], dim=1)), 3, dim=1)
        return torch.sigmoid(f) * mem + torch.sigmoid(i) * torch.tanh(g)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor, m: torch.Tensor,
                state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        h, c, ms, mt = state                                    # (B, hid, H, W) each
        xa = x + self.conv_att(self.attn(x))                    # (B, hid, H, W)
        i, f, g, o = torch.chunk(self.gates(torch.cat([xa, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        m = self._memory(self.gates_m, xa, m)
        ms = self._memory(self.gates_ms, xa, ms)
        mt = self._memory(self.gates_mt, x - x_prev, mt)
        o = torch.sigmoid(o + self.conv_c2o(c) + self.conv_ms2o(ms) + self.conv_mt2o(mt) + self.conv_m2o(m))
        h = o * torch.tanh(self.fuse(torch.cat([c, ms, mt, m], dim=1)))  # (B, hid, H, W)
        return h, m, (h, c, ms, mt)


class PrecipLSTMCore(RecurrentCore):
    """Stack / mirrored pyramid of PrecipLSTM cells with the zig-zag memory ``m`` and each layer's previous input.

    ``core(x, state) -> (h_last, state)`` for one time step; state = (per-layer states, per-layer inputs at t-1, m).
    Layer inputs follow ``RecurrentCore`` (maxpool down; bilinear up + skip from the mirrored encoder layer); ``m``
    is rescaled from layer l-1 to layer l (layer 0: ``m`` of the top layer at t-1).
    """

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False):
        layer_states, prev_inputs = [], []
        for cell, s in zip(self.cells, self.scales):
            layer_states.append(cell.init_state(batch, height // s, width // s, device, dtype, channels_last))
            prev_inputs.append(zeros_state(1, batch, cell.in_channels, height // s, width // s, device, dtype,
                                      channels_last)[0])
        s0 = self.scales[0]
        m = zeros_state(1, batch, self.cells[0].hidden, height // s0, width // s0, device, dtype, channels_last)[0]
        return layer_states, prev_inputs, m

    def forward(self, x: torch.Tensor, state):
        layer_states, prev_inputs, m = state
        sc = self.scales
        m = rescale(m, sc[-1], sc[0])                           # top layer at t-1 -> layer 0
        outs: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        new_states: list[State] = []
        for i, cell in enumerate(self.cells):
            inp = layer_input(i, x, outs, sc)                   # (B, hid, H/s_i, W/s_i)
            if i > 0:
                m = rescale(m, sc[i - 1], sc[i])
            h, m, st = cell(inp, prev_inputs[i], m, layer_states[i])
            inputs.append(inp)
            outs.append(h)
            new_states.append(st)
        return outs[-1], (new_states, inputs, m)


def make_cell(cfg, layer: int) -> PrecipLSTMCell:
    """Local-attention window 30 x 30, as in the authors' configuration."""
    return PrecipLSTMCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "preciplstm", "PrecipLSTM", "ST-LSTM with local-attention (SLAM) and temporal-differential (TDM) memories",
    "Ma et al., IEEE TGRS 2022", make_cell, core=PrecipLSTMCore,
)
