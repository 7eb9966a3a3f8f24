"""Space-to-depth patching (as PredRNN / OpenSTL): pure helpers, no parameters.

``patchify``: (..., C, H, W) -> (..., C*p*p, H/p, W/p); ``unpatchify`` is its exact inverse. Built on
``torch.nn.functional.pixel_unshuffle`` / ``pixel_shuffle`` (channel c*p*p + i*p + j holds pixel (i, j) of the
p x p patch of channel c).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., C*p*p, H/p, W/p). H and W must be multiples of ``p``."""
    if p == 1:
        return x
    h, w = x.shape[-2:]
    if h % p or w % p:
        raise ValueError(f"patch_size: frame size ({h}, {w}) is not divisible by patch_size {p}")
    lead = x.shape[:-3]
    y = F.pixel_unshuffle(x.reshape(-1, *x.shape[-3:]), p)
    return y.reshape(*lead, *y.shape[-3:])


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(..., C*p*p, H/p, W/p) -> (..., C, H, W): the inverse of :func:`patchify`."""
    if p == 1:
        return x
    if x.shape[-3] % (p * p):
        raise ValueError(f"patch_size: {x.shape[-3]} channels are not a multiple of patch_size^2 = {p * p}")
    lead = x.shape[:-3]
    y = F.pixel_shuffle(x.reshape(-1, *x.shape[-3:]), p)
    return y.reshape(*lead, *y.shape[-3:])
