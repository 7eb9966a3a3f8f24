"""Training learns: a tiny learnable task, the real train step, and a bar the model must clear.

One bright square moving at constant velocity (bouncing off the borders) on 32x32 frames, 3 given + 3 predicted;
a small MS-LSTM (patch 4, two pyramid levels) trained with ``train()`` for STEPS optimizer steps. Its pure-rollout
MSE on the test split (``mask=None``, as at test time) must fall clearly below the two trivial predictors: a blank
frame and a copy of the last input frame. A broken learner (no optimizer step, a learning rate 1000x too small, an
inverted or ignored scheduled sampling that leaves the model never learning to roll out) stays at or above them.

Margin (measured 2026-11-29, train.seed 0-3): the model's MSE was 0.44, 0.42, 0.47 and 0.35 of the better
baseline (blank, 0.0352; copy-last is 0.0409 at these speeds); the test asks for <= MARGIN = 0.7, 50 % head-room
over the worst seed. With lr 1000x too small the ratio is 2.06, i.e. the untrained network is worse than blank.
The loss is ``mse``: with the default ``l1l2`` the L1 term pulls a sparse frame towards all zeros, and 80 steps
end at the blank frame (ratio 0.995), so l1l2 would need several times more steps.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mslstm.config import load_config

SIZE, SIDE, N_IN, N_OUT = 32, 6, 3, 3
STEPS = 80
MARGIN = 0.7          # model MSE <= MARGIN x the better of blank / copy-last (measured 0.35-0.47: module docstring)


def bouncing_squares(n: int, seed: int) -> np.ndarray:
    """(n, T, 1, SIZE, SIZE) uint8: one SIDE x SIDE square of 255, velocity in {-2..2}^2 without (0, 0)."""
    rng = np.random.default_rng(seed)
    t = N_IN + N_OUT
    span = SIZE - SIDE
    out = np.zeros((n, t, 1, SIZE, SIZE), np.uint8)
    speeds = [(vy, vx) for vy in range(-2, 3) for vx in range(-2, 3) if (vy, vx) != (0, 0)]
    for i in range(n):
        y, x = rng.integers(0, span + 1, size=2)
        vy, vx = speeds[rng.integers(len(speeds))]
        for s in range(t):
            py, px = (y + vy * s) % (2 * span), (x + vx * s) % (2 * span)
            py, px = (2 * span - py if py > span else py), (2 * span - px if px > span else px)
            out[i, s, 0, py : py + SIDE, px : px + SIDE] = 255
    return out


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    from mslstm.data.dataset import write_dataset

    out = tmp_path_factory.mktemp("squares") / "dataset"
    splits = {"train": bouncing_squares(256, 0), "val": bouncing_squares(32, 1), "test": bouncing_squares(64, 2)}
    write_dataset(out, splits, input_frames=N_IN, output_frames=N_OUT, source="bouncing-squares")
    return out


def learn_cfg(**overrides):
    base = {
        "data.input_frames": N_IN, "data.output_frames": N_OUT,
        "model.name": "mslstm", "model.frame_size": [SIZE, SIZE], "model.input_frames": N_IN,
        "model.output_frames": N_OUT, "model.hidden": 8, "model.layers": 4, "model.scales": [1, 2, 2, 1],
        "model.patch_size": 4,
        "train.epochs": 100, "train.max_steps": STEPS, "train.batch_size": 16, "train.lr": 0.01, "train.loss": "mse",
        "train.schedule": "none", "train.amp": "off",  # as measured (one-cycle would reset the optimizer lr)
        "train.ss_decay_steps": STEPS // 2, "train.val_batches": 1, "train.progress": "quiet",
        "train.device": "cpu", "tracking.enabled": False,
    }
    return load_config(None, {**base, **overrides})


def rollout_scores(checkpoint, data_dir) -> dict[str, float]:
    """Test-split MSE of the model's pure rollout, of a blank frame and of the last input frame repeated."""
    from mslstm.data.dataset import VideoDataset
    from mslstm.training.checkpoint import load_model

    net, _ = load_model(checkpoint)
    ds = VideoDataset(data_dir, "test")
    frames = ds.get_batch(np.arange(len(ds)))                      # (N, T, 1, H, W) in [0, 1]
    target = frames[:, N_IN:]
    with torch.no_grad():
        pred = net(frames, mask=None)[:, N_IN - 1 :]               # pure rollout: nothing fed back from the truth
    copy_last = frames[:, N_IN - 1 : N_IN].expand_as(target)
    return {
        "model": float((pred - target).pow(2).mean()),
        "blank": float(target.pow(2).mean()),
        "copy_last": float((copy_last - target).pow(2).mean()),
    }


def test_model_learns_to_move_a_square(squares, tmp_path):
    from mslstm.training.train import train

    torch.set_num_threads(1)
    metrics = train(learn_cfg(), squares, tmp_path / "train")
    assert metrics["steps"] == STEPS
    s = rollout_scores(tmp_path / "train" / "last.pt", squares)
    bar = min(s["blank"], s["copy_last"])
    assert s["model"] <= MARGIN * bar, s
