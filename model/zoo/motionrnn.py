"""MotionRNN (Wu et al., "MotionRNN: A Flexible Model for Video Prediction with Spacetime-Varying Motions",
CVPR 2021) and MS-MotionRNN (the same cells in the mirrored pyramid of SMS-LSTM).

As in the authors' MS-RNN code, the backbone is MIM (Wang et al., CVPR 2019; the paper's best MotionRNN
variant): ST-LSTM layers with the zigzag memory M, where every layer above the first replaces the forget path of
c by the MIM blocks (MIM-N on the difference of the layer below between t-1 and t, MIM-S on c). After each layer
but the last, a MotionGRU predicts the layer's motion (transient filter F plus trend D, on a 2x-downsampled
encoding of h, k x k = 9 offsets per position), warps the encoding with it and gates the decoded result into the
output; the Motion Highway adds (1 - o) ⊙ x, the layer's input. M moves between scales like PredRNN's (maxpool
down, bilinear up), and so does the previous layer's output at t-1 read by MIM-N.

Departures from the authors' code (none changes a parameter shape): the per-offset flows are read as
(B, k², 2, h, w) and the warped features as (B, k², C/4, h, w) (the authors' reshapes without permutes mix the
batch with the offsets and the space with the offsets); warping normalises and samples with the same corner
convention (``_ops.warp``).

Parameters at the reference configuration (hidden 64, 6 layers, kernel 3): 6,894,664. The authors' 7,560,547
builds every part in every layer but the first layer never uses its MIM blocks (c keeps the forget path there;
627,776 parameters) and the last layer's MotionGRU output is discarded (33,179): parameters that never receive a
gradient (and would stop DDP) are not built here. The x/state convolution pairs (gates of c, M, MIM-N, MIM-S)
are fused: 448 fewer in the first layer, 896 in each other one (4,928). 7,560,547 - 627,776 - 33,179 - 4,928 =
6,894,664. The MIM layers keep the authors' unused forget-gate slice of the c-gates conv (a zero gradient, not a
missing one).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from model.cells import State, zeros_state
from model.networks import RecurrentCore, layer_input, rescale
from model.registry import register_family
from model.zoo._ops import warp

NEIGHBOURS = 3    # k: k x k offsets per position (the authors' self.k)
ALPHA = 0.5       # trend step of the MotionGRU (the authors' self.alpha)


class MotionGRU(nn.Module):
    """MotionGRU on h (B, C, H, W), motion state (F, D) each (B, 2k², H/2, W/2):

        E        = Conv_2x2/2(h)                                    (B, C/4, H/2, W/2)
        u, r     = σ(Conv_1x1([E; F_{t-1}]))
        z        = tanh(Conv_1x1([E; r ⊙ F_{t-1}]))
        F'       = u ⊙ z + (1 - u) ⊙ F_{t-1}                        (transient)
        D_t      = D_{t-1} + α (F_{t-1} - D_{t-1})                  (trend, α = 0.5)
        F_t      = F' + D_t
        m        = σ(Conv_1x1(E))                                    (B, k², H/2, W/2)
        W_j      = m_j ⊙ warp(E, F_t[j])                            (j = 1 .. k²)
        H'       = Deconv_4x4/2(Conv_1x1([W_1; ...; W_k²]))          (B, C, H, W)
        g        = σ(Conv_1x1([H'; h]))
        X        = g ⊙ h + (1 - g) ⊙ H'
    """

    def __init__(self, hidden: int, neighbours: int = NEIGHBOURS, alpha: float = ALPHA):
        super().__init__()
        if hidden % 4:
            raise ValueError(f"hidden: MotionRNN encodes h to hidden/4 channels; use a multiple of 4 (got {hidden})")
        self.offsets = neighbours * neighbours
        self.alpha = alpha
        q = hidden // 4
        f_ch = 2 * self.offsets
        self.encode = nn.Conv2d(hidden, q, 2, stride=2)
        self.update_reset = nn.Conv2d(q + f_ch, 2 * f_ch, 1)       # u and r: one conv, no shared parameter
        self.candidate = nn.Conv2d(q + f_ch, f_ch, 1)
        self.mask = nn.Conv2d(q, self.offsets, 1)
        self.decode = nn.Conv2d(q * self.offsets, q, 1)
        self.upsample = nn.ConvTranspose2d(q, hidden, 4, stride=2, padding=1)
        self.gate = nn.Conv2d(2 * hidden, hidden, 1)

    def forward(self, h: torch.Tensor, f: torch.Tensor, d: torch.Tensor):
        e = self.encode(h)                                             # (B, C/4, h, w)
        b, q, hh, ww = e.shape
        u, r = torch.chunk(torch.sigmoid(self.update_reset(torch.cat([e, f], dim=1))), 2, dim=1)
        z = torch.tanh(self.candidate(torch.cat([e, r * f], dim=1)))  # (B, 2k², h, w)
        f_trans = u * z + (1 - u) * f
        d_new = d + self.alpha * (f - d)
        f_new = f_trans + d_new                                        # (B, 2k², h, w)
        k2 = self.offsets
        m = torch.sigmoid(self.mask(e)).unsqueeze(2)                   # (B, k², 1, h, w)
        e_rep = e.unsqueeze(1).expand(b, k2, q, hh, ww).reshape(b * k2, q, hh, ww)
        warped = warp(e_rep, f_new.reshape(b * k2, 2, hh, ww)).view(b, k2, q, hh, ww) * m
        h_dec = self.upsample(self.decode(warped.reshape(b, k2 * q, hh, ww)))   # (B, C, H, W)
        g = torch.sigmoid(self.gate(torch.cat([h_dec, h], dim=1)))
        return g * h + (1 - g) * h_dec, f_new, d_new


class MotionRNNCell(nn.Module):
    """One MotionRNN layer: ST-LSTM (layer 1) or MIM block (layers 2..L), then MotionGRU + Motion Highway
    (layers 1..L-1). State (h, c[, n, s][, F, D]); M and the layer below's output at t-1 are passed in.

        (MIM layers) d = x_t - x_{t-1}  (x: this layer's input, x_{t-1}: the layer below's output at t-1)
            [i_n, f_n, g_n] = Conv_k([d; n_{t-1}]);    n_t = σ(f_n) ⊙ n_{t-1} + σ(i_n) ⊙ tanh(g_n)
            D_n = σ(Conv_k(d) + Conv_k(n_t)) ⊙ tanh(n_t)                                   (MIM-N)
            [i_s, f_s, g_s, o_s] = Conv_k([D_n; c_{t-1}]); s_t = σ(f_s) ⊙ s_{t-1} + σ(i_s) ⊙ tanh(g_s)
            T = σ(o_s + Conv_k(s_t)) ⊙ tanh(s_t)                                           (MIM-S)
        [i, f, g, o] = Conv_k([x_t; h_{t-1}])
        c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)   (layer 1)   |   c_t = T + σ(i) ⊙ tanh(g)   (MIM layers)
        [i', f', g'] = Conv_k([x_t; M]);  M_t = σ(f') ⊙ M + σ(i') ⊙ tanh(g')
        o_t = σ(o + Conv_k(c_t) + Conv_k(M_t));  h_t = o_t ⊙ tanh(Conv_1x1([c_t; M_t]))
        (layers 1..L-1) X, F_t, D_t = MotionGRU(h_t, F_{t-1}, D_{t-1});  h_t ← X + (1 - o_t) ⊙ x_t
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, mim: bool = True,
                 motion: bool = True):
        super().__init__()
        if in_channels != hidden:
            raise ValueError(f"hidden: MotionRNN's highway adds the input to h; in_channels {in_channels} "
                             f"must equal hidden {hidden}")
        self.in_channels = in_channels
        self.hidden = hidden
        pad = kernel_size // 2
        self.mim = mim
        if mim:
            self.gates_n = nn.Conv2d(in_channels + hidden, 3 * hidden, kernel_size, padding=pad)
            self.diff2o = nn.Conv2d(in_channels, hidden, kernel_size, padding=pad)
            self.n2o = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
            self.gates_s = nn.Conv2d(2 * hidden, 4 * hidden, kernel_size, padding=pad)
            self.s2o = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
        self.gates_h = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=pad)
        self.gates_m = nn.Conv2d(in_channels + hidden, 3 * hidden, kernel_size, padding=pad)
        self.c2o = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
        self.m2o = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1)
        self.motion: Optional[MotionGRU] = MotionGRU(hidden) if motion else None

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        state = zeros_state(4 if self.mim else 2, batch, self.hidden, height, width, device, dtype, channels_last)
        if self.motion is not None:
            if height % 2 or width % 2:
                raise ValueError(
                    f"frame_size: MotionRNN runs its MotionGRU at half each layer's resolution, so every layer "
                    f"needs an even size (got {height}x{width} at one layer); use a frame size divisible by "
                    f"2 x patch_size x the largest scale"
                )
            state += zeros_state(2, batch, 2 * self.motion.offsets, height // 2, width // 2, device, dtype,
                                 channels_last)
        return state

    def forward(self, x: torch.Tensor, state: State, m: torch.Tensor, x_prev: Optional[torch.Tensor]):
        h, c, *rest = state                                            # (B, hid, H, W) each
        if self.mim:
            n, s, *rest = rest
            d = x - x_prev                                             # (B, hid, H, W)
            i_n, f_n, g_n = torch.chunk(self.gates_n(torch.cat([d, n], dim=1)), 3, dim=1)
            n = torch.sigmoid(f_n) * n + torch.sigmoid(i_n) * torch.tanh(g_n)
            dif = torch.sigmoid(self.diff2o(d) + self.n2o(n)) * torch.tanh(n)
            i_s, f_s, g_s, o_s = torch.chunk(self.gates_s(torch.cat([dif, c], dim=1)), 4, dim=1)
            s = torch.sigmoid(f_s) * s + torch.sigmoid(i_s) * torch.tanh(g_s)
            trend = torch.sigmoid(o_s + self.s2o(s)) * torch.tanh(s)   # T: (B, hid, H, W)
        i, f, g, o = torch.chunk(self.gates_h(torch.cat([x, h], dim=1)), 4, dim=1)
        if self.mim:
            c = trend + torch.sigmoid(i) * torch.tanh(g)
        else:
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        i_m, f_m, g_m = torch.chunk(self.gates_m(torch.cat([x, m], dim=1)), 3, dim=1)
        m = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
        o = torch.sigmoid(o + self.c2o(c) + self.m2o(m))
        h = o * torch.tanh(self.fuse(torch.cat([c, m], dim=1)))        # (B, hid, H, W)
        new_state: State = (h, c, n, s) if self.mim else (h, c)
        if self.motion is not None:
            mf, md = rest                                              # (B, 2k², H/2, W/2) each
            xm, mf, md = self.motion(h, mf, md)
            h = xm + (1 - o) * x                                       # Motion Highway
            new_state = (h, *new_state[1:], mf, md)
        return h, new_state, m


class MotionRNNCore(RecurrentCore):
    """MotionRNN layers with the zigzag memory M, as a stack or the mirrored pyramid.

    States: ``(layer_states, M)``; layer i's state starts with its output at t-1 (h after the Motion Highway),
    which MIM-N of layer i+1 reads, moved to layer i+1's scale by ``rescale``.
    """

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False):
        layer_states = super().init_state(batch, height, width, device, dtype, channels_last)
        s_top = self.scales[-1]
        (m,) = zeros_state(1, batch, self.cells[-1].hidden, height // s_top, width // s_top, device, dtype,
                           channels_last)
        return layer_states, m

    def forward(self, x: torch.Tensor, states):
        layer_states, m = states
        m = rescale(m, self.scales[-1], self.scales[0])
        outs: list[torch.Tensor] = []
        new_states = []
        for i, cell in enumerate(self.cells):
            inp = layer_input(i, x, outs, self.scales)                 # (B, hid, H/s_i, W/s_i)
            x_prev = None
            if i > 0:
                m = rescale(m, self.scales[i - 1], self.scales[i])
                x_prev = rescale(layer_states[i - 1][0], self.scales[i - 1], self.scales[i])
            h, st, m = cell(inp, layer_states[i], m, x_prev)
            outs.append(h)
            new_states.append(st)
        return outs[-1], (new_states, m)


def make_cell(cfg, layer: int) -> MotionRNNCell:
    return MotionRNNCell(cfg.hidden, cfg.hidden, cfg.kernel_size, mim=layer > 0, motion=layer < cfg.layers - 1)


register_family(
    "motionrnn", "MotionRNN", "MIM backbone with MotionGRU and Motion Highway between layers",
    "Wu et al., CVPR 2021", make_cell, ms_name="msmotionrnn", core=MotionRNNCore,
)
