"""FLOP counting with ``torch.utils.flop_counter`` (pure functions: no I/O)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.config import ModelConfig


def count_flops(net: nn.Module, frames: torch.Tensor, mask: Optional[torch.Tensor] = None) -> int:
    """Forward FLOPs of ``net(frames, mask)`` as counted by ``FlopCounterMode`` (a multiply-add counts 2).

    Only the ops PyTorch's counter knows are counted (convolutions, matmuls); element-wise gate math, pooling
    and interpolation are not. Runs under ``torch.no_grad()``; the module's train/eval mode is left alone.
    Works on ``meta`` tensors too (shapes only, no compute).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(frames, mask)
    return int(counter.get_total_flops())


def model_flops(config: ModelConfig, batch: int = 1, total_frames: Optional[int] = None) -> int:
    """Forward FLOPs of the network ``config`` describes on ``batch`` sequences of ``total_frames`` frames
    (default input_frames + output_frames), counted on the ``meta`` device: instant, no memory, no weights."""
    from model.networks import build_model

    t = config.total_frames if total_frames is None else total_frames
    with torch.device("meta"):
        net = build_model(config)
        frames = torch.zeros(batch, t, config.in_channels, *config.frame_size)
    return count_flops(net, frames)
