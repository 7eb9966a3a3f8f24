"""TrajGRU (Shi et al., "Deep Learning for Precipitation Nowcasting: A Benchmark and A New Model", NeurIPS 2017)
and MS-TrajGRU (the same cells in the mirrored pyramid of SMS-LSTM).

The recurrent connections follow L learned trajectories: a small flow network reads [x; h], proposes L
displacement fields, and the hidden state is warped along each before the 1x1 projection that replaces the
h-to-h convolution of ConvGRU. Facts from the authors' MS-RNN code: L = 10 links, LeakyReLU(0.2) on the flow
features and on the candidate, h warped by the negated flow.

Parameters at the reference configuration (hidden 64, 6 layers, kernel 3): 1,915,321; the authors' 1,915,705
keeps a bias on each of the x-to-flow and h-to-flow convs, fused here into one (64 x 6 = 384 fewer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.cells import State, zeros_state
from model.registry import register_family
from model.zoo._ops import warp

LINKS = 10          # L, the authors' TrajGRU_link_num
NEG_SLOPE = 0.2     # LeakyReLU slope of the flow features and of the candidate


class TrajGRUCell(nn.Module):
    """TrajGRU cell, state (h,):

        f        = LeakyReLU(Conv_k([x_t; h_{t-1}]))                 (flow features, one fused conv)
        (u_l, v_l)_{l=1..L} = Conv_k(f)                              (L displacement fields)
        w_l      = warp(h_{t-1}, -(u_l, v_l))                        (bilinear, l = 1..L)
        [z_h, r_h, c_h] = Conv_1x1([w_1; ...; w_L])                  (the trajectory "h-to-h" term)
        [z_x, r_x, c_x] = Conv_k(x_t)
        z = σ(z_x + z_h),  r = σ(r_x + r_h)
        h' = LeakyReLU(c_x + r ⊙ c_h)
        h_t = (1 - z) ⊙ h' + z ⊙ h_{t-1}
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, links: int = LINKS):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.links = links
        pad = kernel_size // 2
        self.x2h = nn.Conv2d(in_channels, 3 * hidden, kernel_size, padding=pad)
        self.flow_features = nn.Conv2d(in_channels + hidden, hidden, kernel_size, padding=pad)
        self.flows = nn.Conv2d(hidden, 2 * links, kernel_size, padding=pad)
        self.project = nn.Conv2d(links * hidden, 3 * hidden, 1)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(1, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        (h,) = state                                                   # (B, hid, H, W)
        b, c, hh, ww = h.shape
        feat = F.leaky_relu(self.flow_features(torch.cat([x, h], dim=1)), NEG_SLOPE)  # (B, hid, H, W)
        flows = self.flows(feat).view(b * self.links, 2, hh, ww)      # (B*L, 2, H, W)
        h_rep = h.unsqueeze(1).expand(b, self.links, c, hh, ww).reshape(b * self.links, c, hh, ww)
        warped = warp(h_rep, -flows).view(b, self.links * c, hh, ww)  # (B, L*hid, H, W)
        z_h, r_h, c_h = torch.chunk(self.project(warped), 3, dim=1)  # (B, hid, H, W) each
        z_x, r_x, c_x = torch.chunk(self.x2h(x), 3, dim=1)           # (B, hid, H, W) each
        z = torch.sigmoid(z_x + z_h)
        r = torch.sigmoid(r_x + r_h)
        cand = F.leaky_relu(c_x + r * c_h, NEG_SLOPE)
        h = (1 - z) * cand + z * h                                     # (B, hid, H, W)
        return h, (h,)


def make_cell(cfg, layer: int) -> TrajGRUCell:
    return TrajGRUCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "trajgru", "TrajGRU", "ConvGRU with learned warping trajectories (L = 10 links)", "Shi et al., NeurIPS 2017",
    make_cell, ms_name="mstrajgru",
)
