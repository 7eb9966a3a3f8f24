"""Pure helpers shared by the baseline ConvRNNs of the zoo (no parameters, no state).

* ``warp(x, flow)``: bilinear backward warping by a per-pixel displacement (TrajGRU, MotionRNN).
* ``rescale(t, s_from, s_to)``: move a tensor from one pyramid scale to another the way the MS- models move
  their memories: maxpool 2x2 going down (scale grows), bilinear x2 going up (scale shrinks).
* ``layer_input(i, x, outs, scales)``: the input of layer i of a stack / mirrored pyramid, exactly as
  ``model.networks.RecurrentCore`` computes it (maxpool going down, bilinear up + mirrored skip going up).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out[b, :, y, x] = bilinear(x[b], (x + flow[b, 0, y, x], y + flow[b, 1, y, x]))``.

    x (N, C, H, W), flow (N, 2, H, W) in pixels (channel 0 horizontal, channel 1 vertical); outside samples are 0.
    The authors normalise the sampling grid by (W - 1, H - 1) but sample with ``align_corners=False`` (a
    half-pixel shift); here the two agree (``align_corners=True``), so zero flow is the identity.
    """
    n, _, h, w = x.shape
    if x.device.type == "meta":
        # Shapes only (FLOP counting on the meta device): grid_sample has no meta kernel and its Python
        # decomposition takes seconds at the reference size, for no counted FLOPs.
        return x.new_empty(x.shape)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0          # (N, H, W)
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0          # (N, H, W)
    grid = torch.stack([gx, gy], dim=-1)                          # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def rescale(t: torch.Tensor, s_from: int, s_to: int) -> torch.Tensor:
    """(B, C, H/s_from, W/s_from) -> (B, C, H/s_to, W/s_to): maxpool when the scale grows, bilinear when it shrinks."""
    if s_to == s_from:
        return t
    if s_to > s_from:
        return F.max_pool2d(t, s_to // s_from)
    return F.interpolate(t, scale_factor=s_from // s_to, mode="bilinear", align_corners=False)


def layer_input(i: int, x: torch.Tensor, outs: Sequence[torch.Tensor], scales: Sequence[int]) -> torch.Tensor:
    """Input of layer i: x for layer 0; else ``maxpool2x2(out_{i-1})`` going down, ``up2(out_{i-1}) + out_{L-1-i}``
    going up (skip from the mirrored encoder layer), ``out_{i-1}`` at equal scales."""
    if i == 0:
        return x
    prev = outs[i - 1]
    if scales[i] > scales[i - 1]:
        return F.max_pool2d(prev, 2)
    if scales[i] < scales[i - 1]:
        up = F.interpolate(prev, scale_factor=2, mode="bilinear", align_corners=False)
        return up + outs[len(scales) - 1 - i]
    return prev
