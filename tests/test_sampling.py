"""Scheduled sampling where it is used: the masks the model receives in training, and the rollout that reads them.

* The trainer's masks are caught with a forward pre-hook on the network it builds (no change to library code):
  shape, 0/1 values, and at each optimizer step a mean that matches the ``train.ss_*`` schedule written out here
  by hand (exact at the ends of the decay, within 4 binomial standard deviations in between). Validation gets no
  mask (pure rollout).
* The rollout with a random mask equals a hand-written loop over the network's own embed / core / head, step by step.
"""
from __future__ import annotations

import math

import pytest
import torch

import model
from model import ModelConfig, build_model
from model.patch import patchify, unpatchify

torch.set_num_threads(1)


def linear_schedule(step: int, start: float, end: float, decay: int) -> float:
    """The ``train.ss_*`` schedule, written out independently of mslstm.training.recipe."""
    return end if step >= decay else start + (end - start) * step / decay


# ------------------------------------------------------------------------------------ masks seen in training
@pytest.fixture
def seen_masks(monkeypatch):
    """Every ``(training, mask)`` the networks built by the trainer receive, in call order."""
    calls: list[tuple[bool, torch.Tensor | None]] = []
    real_build = model.build_model

    def build_and_watch(config):
        net = real_build(config)

        def hook(module, args, kwargs):
            mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
            calls.append((module.training, None if mask is None else mask.detach().clone()))

        net.register_forward_pre_hook(hook, with_kwargs=True)
        return net

    monkeypatch.setattr(model, "build_model", build_and_watch)  # the trainer imports it from `model` when it runs
    return calls


def test_masks_the_model_receives_follow_the_schedule(tiny_dataset, tmp_path, seen_masks):
    from mslstm.config import load_config
    from mslstm.training.train import train

    # 8 training sequences, batch 8, 3 + 3 frames: one step per epoch, mask (8, 2); decay over 6 steps
    start, end, decay, epochs = 0.9, 0.1, 6, 8
    cfg = load_config(None, {
        "data.input_frames": 3, "data.output_frames": 3, "model.name": "convlstm", "model.frame_size": [16, 16],
        "model.input_frames": 3, "model.output_frames": 3, "model.hidden": 4, "model.layers": 1, "model.scales": [1],
        "model.patch_size": 4, "train.epochs": epochs, "train.batch_size": 8, "train.ss_start": start,
        "train.ss_end": end, "train.ss_decay_steps": decay, "train.progress": "quiet", "train.val_batches": 1,
        "train.device": "cpu", "tracking.enabled": False,
    })
    train(cfg, tiny_dataset, tmp_path / "train")
    training = [m for is_training, m in seen_masks if is_training]
    evaluation = [m for is_training, m in seen_masks if not is_training]
    assert len(training) == epochs and len(evaluation) >= epochs
    assert all(m is None for m in evaluation)           # validation is pure rollout
    for step, mask in enumerate(training):
        assert mask is not None and mask.shape == (8, 2), step
        assert set(mask.unique().tolist()) <= {0.0, 1.0}, step
    # all steps together: 16 draws per step; their sum against the schedule's expectation (4 standard deviations)
    probs = [linear_schedule(s, start, end, decay) for s in range(epochs)]
    got = sum(float(m.sum()) for m in training)
    want = sum(16 * p for p in probs)
    sd = math.sqrt(sum(16 * p * (1 - p) for p in probs))
    assert abs(got - want) <= 4 * sd, (got, want, sd)
    # step by step: 0.9 -> 14.4 of 16 expected at step 0 and 1.6 at the end; an inverted or frozen schedule is far off
    for step, (mask, p) in enumerate(zip(training, probs)):
        assert abs(float(mask.mean()) - p) <= 4 * math.sqrt(p * (1 - p) / 16) + 1e-9, (step, float(mask.mean()), p)


def test_schedule_endpoints_are_exact(tiny_dataset, tmp_path, seen_masks):
    """ss_start 1 -> every mask all ones at step 0; decayed to ss_end 0 -> all zeros; off -> no mask at all."""
    from mslstm.config import load_config
    from mslstm.training.train import train

    base = {
        "data.input_frames": 3, "data.output_frames": 3, "model.name": "convlstm", "model.frame_size": [16, 16],
        "model.input_frames": 3, "model.output_frames": 3, "model.hidden": 4, "model.layers": 1, "model.scales": [1],
        "model.patch_size": 4, "train.epochs": 4, "train.batch_size": 4, "train.ss_start": 1.0, "train.ss_end": 0.0,
        "train.ss_decay_steps": 4, "train.progress": "quiet", "train.val_batches": 1, "train.device": "cpu",
        "tracking.enabled": False,
    }
    train(load_config(None, base), tiny_dataset, tmp_path / "a")
    training = [m for is_training, m in seen_masks if is_training]
    assert len(training) == 8
    assert training[0].eq(1).all()                                   # step 0: prob 1
    assert all(m.eq(0).all() for m in training[4:])                  # steps >= decay: prob 0
    seen_masks.clear()
    train(load_config(None, {**base, "train.scheduled_sampling": False, "train.epochs": 1}), tiny_dataset,
          tmp_path / "b")
    assert [m for _, m in seen_masks] and all(m is None for _, m in seen_masks)


# ---------------------------------------------------------------------------------- rollout vs a hand-written loop
def hand_rollout(net, frames: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Step t < input_frames reads frames[:, t]; step t >= input_frames reads m * frames[:, t] + (1 - m) * previous
    prediction with m = mask[:, t - input_frames] (0 when no mask)."""
    cfg = net.config
    p = cfg.patch_size
    seq = patchify(frames, p)
    b, t = seq.shape[:2]
    states = net.core.init_state(b, seq.shape[-2], seq.shape[-1], seq.device, seq.dtype)
    preds, prev = [], None
    for step in range(t - 1):
        if step < cfg.input_frames:
            x = seq[:, step]
        else:
            m = torch.zeros(b) if mask is None else mask[:, step - cfg.input_frames]
            m = m.view(b, 1, 1, 1)
            x = m * seq[:, step] + (1 - m) * prev
        h, states = net.core(net.embed(x), states)
        prev = net.head(h)
        preds.append(prev)
    return unpatchify(torch.stack(preds, 1), p)


@pytest.mark.parametrize("name, patch", [("mslstm", 1), ("convlstm", 2)])
def test_rollout_with_a_random_mask_equals_the_hand_written_loop(name, patch):
    cfg = ModelConfig(name=name, hidden=4, layers=2, scales=(1, 1), frame_size=(8, 8), input_frames=2,
                      output_frames=5, patch_size=patch)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(3, cfg.total_frames, 1, 8, 8, generator=g)
    # every row different, every column different, including fractional weights
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.25, 1.0, 0.0, 0.75]])
    with torch.no_grad():
        got = net(frames, mask=mask)
        want = hand_rollout(net, frames, mask)
        assert got.shape == (3, cfg.total_frames - 1, 1, 8, 8)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(net(frames), hand_rollout(net, frames, None), atol=1e-6, rtol=1e-5)
        # the mask matters: column j weights frame input_frames + j; a wrong column would change the result
        swapped = net(frames, mask=mask[:, [1, 0, 2, 3]])
        assert (swapped - got)[:, cfg.input_frames:].abs().max() > 1e-4
