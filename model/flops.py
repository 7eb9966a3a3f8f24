"""FLOP counting with ``torch.utils.flop_counter`` (a pure function: no I/O)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(net: nn.Module, frames: torch.Tensor, mask: torch.Tensor | None = None) -> int:
    """Forward FLOPs of ``net(frames, mask)`` as counted by ``FlopCounterMode`` (a multiply-add counts 2).

    Only the ops PyTorch's counter knows are counted (convolutions, matmuls); element-wise gate math, pooling
    and interpolation are not. Runs under ``torch.no_grad()``; the module's train/eval mode is left alone.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(frames, mask)
    return int(counter.get_total_flops())
