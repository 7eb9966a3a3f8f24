"""Validation during training: pure-rollout metrics on the predicted frames, exact over all ranks.

``mse``/``mae``: per-pixel means; ``mse_frame``: per-frame sum over pixels (the paper's MSE), mean over frames.
Nothing is fed back from the ground truth (``mask=None``), as at test time.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mslstm.training.checkpoint import unwrap_model
from mslstm.training.distributed import DistInfo, all_reduce_sum, shard_batches
from mslstm.training.recipe import split_output


@torch.no_grad()
def evaluate_split(model: nn.Module, ds: Any, mcfg: Any, dinfo: DistInfo, batch: int, amp_dtype: Any,
                   max_batches: int = 0) -> dict[str, float]:
    """Pure-rollout metrics of ``model`` on ``ds`` (each rank scores its shard; the sums are all-reduced)."""
    was_training = model.training
    model.eval()
    net = unwrap_model(model)
    t_total = mcfg.input_frames + mcfg.output_frames
    sq = ab = 0.0
    pixels = frames_n = 0.0
    for b in shard_batches(len(ds), batch, dinfo, max_batches):
        frames = ds.get_batch(b)[:, :t_total].to(dinfo.device)               # (B, T, C, H, W)
        with torch.autocast(dinfo.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = split_output(net(frames, mask=None))[0][:, mcfg.input_frames - 1 :]
        diff = pred.float() - frames[:, mcfg.input_frames :].float()
        sq += float(diff.pow(2).sum())
        ab += float(diff.abs().sum())
        pixels += diff.numel()
        frames_n += diff.shape[0] * diff.shape[1]
    sq, ab, pixels, frames_n = all_reduce_sum([sq, ab, pixels, frames_n], dinfo)
    if was_training:
        model.train()
    return {"mse": sq / max(pixels, 1), "mae": ab / max(pixels, 1), "mse_frame": sq / max(frames_n, 1)}
