"""Pure helpers shared by the baseline ConvRNNs of the zoo (no parameters, no state).

* ``warp(x, flow)``: bilinear backward warping by a per-pixel displacement (TrajGRU, MotionRNN).

The pyramid helpers ``rescale`` and ``layer_input`` live in :mod:`model.networks` (next to ``RecurrentCore``).
"""
from __future__ import annotations

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

