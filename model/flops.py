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
    and interpolation are not. Runs under ``torch.no_grad()`` (training-only terms such as PredRNN-V2's
    decoupling loss are not part of the forward cost); the module's train/eval mode is left alone.
    Works on ``meta`` tensors too (shapes only, no compute).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(frames, mask)
    return int(counter.get_total_flops())


def step_flops(net: nn.Module, config: ModelConfig, batch: int = 1) -> tuple[int, int]:
    """``(first step, every later step)`` forward FLOPs of the rollout of ``net`` (a ``Forecaster`` built from
    ``config``), counted in ONE two-step rollout on the ``meta`` device: the counter is read after each step's
    head convolution (the last counted op of a step)."""
    counts: list[int] = []
    counter = FlopCounterMode(display=False)
    hook = net.head.register_forward_hook(lambda *_: counts.append(int(counter.get_total_flops())))
    try:
        with torch.device("meta"):
            first = torch.zeros(batch, 1, config.in_channels, *config.frame_size)
        with torch.no_grad(), counter:
            net.predict(first, 2)           # one frame read, two steps of the same rollout as forward
    finally:
        hook.remove()
    if len(counts) != 2:
        raise RuntimeError(f"step_flops: expected 2 rollout steps, the head ran {len(counts)} times")
    return counts[0], counts[1] - counts[0]


def model_flops(config: ModelConfig, batch: int = 1, total_frames: Optional[int] = None, exact: bool = False,
                net: Optional[nn.Module] = None) -> int:
    """Forward FLOPs of the network ``config`` describes on ``batch`` sequences of ``total_frames`` frames
    (default input_frames + output_frames, i.e. T - 1 rollout steps), on the ``meta`` device (no memory, no
    weights).

    Every step of the shared rollout runs the same operations on the same shapes (teacher forcing or not only
    changes element-wise mixing, which is not counted), so the default counts a two-step rollout and
    extrapolates: ``first + (T - 2) x later`` (``tests/test_model_cli.py`` checks it equals the full count for
    every registered model); ``exact=True`` counts the whole T-frame rollout (several seconds per model).
    ``net``: an already built meta-device network of ``config`` (saves building it again).
    """
    from model.networks import build_model

    t = config.total_frames if total_frames is None else int(total_frames)
    if net is None:
        with torch.device("meta"):
            net = build_model(config)
    if exact:
        with torch.device("meta"):
            frames = torch.zeros(batch, t, config.in_channels, *config.frame_size)
        return count_flops(net, frames)
    if t < 2:
        raise ValueError(f"total_frames: need at least 2 frames (one rollout step), got {t}")
    first, later = step_flops(net, config, batch)
    return first + (t - 2) * later


def model_macs(config: ModelConfig, batch: int = 1, total_frames: Optional[int] = None,
               net: Optional[nn.Module] = None) -> int:
    """Forward multiply-accumulates of one rollout in the convention of the authors' tables (``thop``'s MACs,
    which the MS-RNN code reports as "FLOPs"): one multiply-add counts ONCE, so this is half of
    :func:`model_flops` (the counted ops are convolutions and matmuls in both; bias additions and element-wise
    gate math are counted by neither)."""
    return model_flops(config, batch=batch, total_frames=total_frames, net=net) // 2
