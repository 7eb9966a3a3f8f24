"""Training: pure helpers, a short real run, early stopping, exact resume after SIGKILL, refusing bad checkpoints."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mslstm.config import load_config
from mslstm.errors import CheckpointError, ConfigError
from mslstm.training.checkpoint import load_checkpoint
from mslstm.training.config import TrainConfig
from mslstm.training.recipe import sampling_mask, sequence_loss
from mslstm.training.train import train

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "mslstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1], "patch_size": 4},   # 4x4 positions (the default's patch 8 leaves 2x2)
    "train": {"epochs": 3, "batch_size": 2, "ss_decay_steps": 8, "checkpoint_every_steps": 3, "progress": "quiet"},
    "tracking": {"enabled": False},
}


def tiny_cfg(**overrides):
    return load_config(None, {**{f"{s}.{k}": v for s, sec in TINY.items() for k, v in sec.items()}, **overrides})


def write_params(path: Path, **overrides) -> Path:
    tree = json.loads(json.dumps(TINY))
    for key, value in overrides.items():
        sec, k = key.split(".", 1)
        tree.setdefault(sec, {})[k] = value
    path.write_text(yaml.safe_dump(tree))
    return path


def run_cli(params: Path, data: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([PY, "-m", "mslstm.cli", "--params", str(params), "train", "--data-dir", str(data),
                           "--out", str(out), *extra], capture_output=True, text=True, env=e, timeout=300)


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


# ----------------------------------------------------------------------------------------------- pure helpers
def test_l1l2_loss_is_per_frame_pixel_sum_averaged_over_frames_and_batch():
    pred = torch.zeros(2, 3, 1, 2, 2)
    target = torch.zeros(2, 3, 1, 2, 2)
    target[0, 0] = 0.5          # one frame: 4 pixels of error 0.5 -> 4 * (0.25 + 0.5) = 3
    target[1, 2, 0, 0, 0] = 1.0  # one pixel of error 1 -> 2
    assert sequence_loss(pred, target, "l1l2").item() == pytest.approx((3 + 2) / 6)
    assert sequence_loss(pred, target, "mse").item() == pytest.approx((4 * 0.25 + 1) / 24)


@pytest.mark.parametrize("loss", ["l1l2", "mse"])
def test_the_training_loss_counts_every_predicted_frame_last_included(loss):
    # each predicted frame has its own error (frame t: every pixel off by 0.1 * (t + 1)), so a loss that leaves
    # out a frame - the last one above all - gives another value; and every frame, the last included, gets its
    # gradient
    from mslstm.training.recipe import build_recipe

    b, t = 2, 4
    target = torch.zeros(b, t, 1, 2, 2)
    err = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, t, 1, 1, 1)
    pred = (target + err).requires_grad_(True)
    errs = (0.1, 0.2, 0.3, 0.4)
    per_frame = [4 * (e * e + e) for e in errs] if loss == "l1l2" else [e * e for e in errs]  # sum vs mean of pixels
    expect = sum(per_frame) / t
    recipe = build_recipe(TrainConfig(loss=loss), torch.device("cpu"))
    total, _ = recipe.loss(pred, target)
    assert total.item() == pytest.approx(expect, rel=1e-5)
    assert sequence_loss(pred, target, loss).item() == pytest.approx(expect, rel=1e-5)
    total.backward()
    grad = pred.grad.abs().sum(dim=(0, 2, 3, 4))              # (T,)
    assert (grad > 0).all(), grad
    assert grad[-1] > grad[0]                                   # the last frame has the largest error


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_grad_clip_applies_without_a_grad_scaler(amp):
    # on CPU (fp32 or bf16) no GradScaler runs; train.grad_clip must clip the global gradient norm all the same
    from mslstm.training.recipe import build_recipe, optimizer_step

    cpu = torch.device("cpu")
    recipe = build_recipe(TrainConfig(grad_clip=0.5, amp=amp), cpu)
    scaler = recipe.grad_scaler(cpu)
    assert not scaler.is_enabled()
    w = torch.nn.Parameter(torch.zeros(3, 4))
    g = torch.arange(12, dtype=torch.float32).view(3, 4)          # gradient norm 22.5
    opt = torch.optim.SGD([w], lr=1.0)
    optimizer_step((w * g).sum(), opt, scaler, [w], recipe.grad_clip)
    # SGD with lr 1: the step is minus the clipped gradient, norm 0.5, direction of g
    assert float(w.detach().norm()) == pytest.approx(0.5, rel=1e-4)
    torch.testing.assert_close(w.detach(), -g * (0.5 / g.norm()), rtol=1e-4, atol=1e-6)
    # grad_clip 0 turns clipping off: the full gradient
    w2 = torch.nn.Parameter(torch.zeros(3, 4))
    optimizer_step((w2 * g).sum(), torch.optim.SGD([w2], lr=1.0), scaler, [w2], 0.0)
    torch.testing.assert_close(w2.detach(), -g)


def test_sampling_mask_is_vectorised_deterministic_and_follows_prob():
    m = sampling_mask(4096, 5, 0.3, step=7, seed=1)
    assert m.shape == (4096, 5) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(m.mean().item() - 0.3) < 0.02
    assert torch.equal(m, sampling_mask(4096, 5, 0.3, step=7, seed=1))
    assert not torch.equal(m, sampling_mask(4096, 5, 0.3, step=8, seed=1))
    assert sampling_mask(8, 4, 1.0, 0, 0).eq(1).all() and sampling_mask(8, 4, 0.0, 0, 0).eq(0).all()


def test_teacher_forcing_decays_linearly_and_lr_scaling():
    t = TrainConfig(ss_start=1.0, ss_end=0.0, ss_decay_steps=100)
    assert [t.teacher_forcing_prob(s) for s in (0, 50, 100, 500)] == [1.0, 0.5, 0.0, 0.0]
    assert TrainConfig(scheduled_sampling=False).teacher_forcing_prob(0) == 0.0
    t = TrainConfig(lr=1e-3, base_batch=8, lr_scaling="linear", global_batch_size=32)
    assert t.effective_batch(4) == (8, 32) and t.scaled_lr(32) == pytest.approx(4e-3)
    assert TrainConfig(lr=1e-3, base_batch=8, lr_scaling="sqrt").scaled_lr(32) == pytest.approx(2e-3)
    assert TrainConfig(batch_size=3).effective_batch(2) == (3, 6)
    with pytest.raises(ValueError, match="global_batch_size"):
        TrainConfig(global_batch_size=10).effective_batch(3)


@pytest.mark.parametrize("override, key", [("train.lr=-1", "train.lr"), ("train.loss=l3", "train.loss"),
                                           ("train.ss_start=2", "train.ss_start"), ("train.epochs=0", "train.epochs"),
                                           ("tracking.log_every_steps=0", "tracking.log_every_steps")])
def test_bad_train_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


# ---------------------------------------------------------------------------------------------------- real runs
def test_train_writes_outputs_and_learns(tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "train"
    cfg = tiny_cfg(**{"train.epochs": 4, "train.lr": 3e-3, "train.schedule": "cosine"})
    metrics = train(cfg, tiny_dataset, out)
    assert {p.name for p in out.iterdir()} >= {"best.pt", "last.pt", "metrics.json", "history.csv"}
    assert not (out / "run.json").exists()  # tracking disabled: no MLflow run
    assert metrics["steps"] == 16 and json.loads((out / "metrics.json").read_text())["steps"] == 16
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16]
    losses = [float(r["train_loss"]) for r in rows]
    # uniform noise: a blank prediction scores val MSE E[x^2] = 1/3, the best constant (0.5) 1/12. Measured: train
    # loss 227 -> 158 (x 0.70), val MSE 0.332 -> 0.208 after 16 steps; without updates both stay put. (What the
    # model learns on a learnable task: tests/test_learning.py.)
    assert losses[-1] < 0.8 * losses[0], losses
    assert float(rows[-1]["val_mse"]) < 0.27, rows
    assert float(rows[-1]["lr"]) < 3e-3 * 0.1  # cosine decayed
    assert [float(r["tf_prob"]) for r in rows] == [0.5, 0.0, 0.0, 0.0]
    best = load_checkpoint(out / "best.pt")
    assert best["metrics"]["val_mse"] == pytest.approx(metrics["best_val_mse"])
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in best["model"])
    assert best["config"]["train"]["lr"] == 3e-3


def test_early_stopping_and_max_steps(tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    # lr 0 keeps val MSE flat: no improvement after the first validation -> stops after 1 + patience epochs
    m = train(tiny_cfg(**{"train.epochs": 10, "train.lr": 1e-12, "train.early_stopping_patience": 2}),
              tiny_dataset, tmp_path / "es")
    assert m["stopped_early"] and m["steps"] == 12
    m = train(tiny_cfg(**{"train.epochs": 10, "train.max_steps": 5}), tiny_dataset, tmp_path / "ms")
    assert m["steps"] == 5 and m["val_mse"] is not None


def test_data_and_model_mismatch_is_a_config_error(tiny_dataset, tmp_path):
    cfg = tiny_cfg(**{"model.frame_size": [32, 32]})
    with pytest.raises(ConfigError, match="frame_size"):
        train(cfg, tiny_dataset, tmp_path / "x")


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tiny_dataset, tmp_path):
    params = write_params(tmp_path / "params.yaml")
    ref = run_cli(params, tiny_dataset, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    # SIGKILL right after step 7: last.pt is from step 6 = epoch 2, batch 2 of 4 (mid-epoch)
    killed = run_cli(params, tiny_dataset, tmp_path / "run", env={"MSLSTM_FAULT_STEP": "7"})
    assert killed.returncode == -9, killed.stderr
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ck["step"], ck["epoch"], ck["train_state"]["position"]) == (6, 1, 2)
    assert not (tmp_path / "run" / "metrics.json").exists()
    resumed = run_cli(params, tiny_dataset, tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    a, b = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    assert a["step"] == b["step"] == 12
    assert max_weight_diff(tmp_path / "ref" / "last.pt", tmp_path / "run" / "last.pt") <= 1e-6
    for k, v in a["optimizer"]["state"].items():
        assert torch.allclose(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"], atol=1e-9)
    ra = list(csv.DictReader((tmp_path / "ref" / "history.csv").open()))
    rb = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [(r["step"], r["val_mse"]) for r in ra] == [(r["step"], r["val_mse"]) for r in rb]
    assert float(ra[-1]["train_loss"]) == pytest.approx(float(rb[-1]["train_loss"]), rel=1e-6)


@pytest.mark.parametrize("bad", ["truncated", "other_model"])
def test_resume_from_a_bad_checkpoint_fails_clearly_and_overwrites_nothing(tiny_dataset, tmp_path, bad):
    torch.set_num_threads(1)
    out = tmp_path / "train"
    cfg = tiny_cfg(**{"train.max_steps": 2})
    train(cfg, tiny_dataset, out)
    last = out / "last.pt"
    if bad == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    else:
        other = train(tiny_cfg(**{"train.max_steps": 1, "model.name": "convlstm"}), tiny_dataset, tmp_path / "conv")
        assert other["model"] == "convlstm"
        last.write_bytes((tmp_path / "conv" / "last.pt").read_bytes())
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CheckpointError, match=str(last).replace(".", r"\.")):
        train(cfg.replace({"train.max_steps": 4}), tiny_dataset, out, resume=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot
    # the CLI door says `error: ...` and exits 2
    params = write_params(tmp_path / "p.yaml", **{"train.max_steps": 4})
    res = run_cli(params, tiny_dataset, out, "--resume")
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot


def test_python_m_mslstm_training_door(tiny_dataset, tmp_path):
    params = write_params(tmp_path / "p.yaml", **{"train.max_steps": 2})
    res = subprocess.run([PY, "-m", "mslstm.training", "--params", str(params), "--data-dir", str(tiny_dataset),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["steps"] == 2


# ------------------------------------------------------------------------------------ recipe seams, one device rule
def test_recipe_adds_weighted_aux_losses_and_uses_a_registered_sampling_schedule():
    from mslstm.training.recipe import (
        SAMPLING_SCHEDULES,
        RecipeHints,
        SamplingSchedule,
        build_recipe,
        register_sampling_schedule,
    )

    tcfg = TrainConfig(ss_decay_steps=10, loss="l1l2")
    cpu = torch.device("cpu")
    pred, target = torch.zeros(2, 3, 1, 2, 2), torch.ones(2, 3, 1, 2, 2)
    plain = build_recipe(tcfg, cpu)
    base, parts = plain.loss(pred, target)
    assert base.item() == pytest.approx(4 * 2.0) and parts == {}          # l1l2: 4 pixels x (1 + 1) per frame
    hinted = build_recipe(tcfg, cpu, RecipeHints(aux_loss_weights={"decouple": 0.5}))
    total, parts = hinted.loss((pred, {"decouple": torch.tensor(2.0), "other": torch.tensor(3.0)}), target)
    assert total.item() == pytest.approx(8.0 + 0.5 * 2.0 + 1.0 * 3.0) and parts == {"decouple": 2.0, "other": 3.0}
    # the default schedule is train.ss_*; a named one replaces it without touching the loop
    assert plain.teacher_forcing_prob(5) == tcfg.teacher_forcing_prob(5) == 0.5
    if "test-ramp" not in SAMPLING_SCHEDULES:
        register_sampling_schedule("test-ramp", SamplingSchedule(
            lambda t, step, total: min(1.0, step / 10),
            lambda t, step, total, b, n_in, n_all, gen: torch.full((b, n_all - n_in - 1), min(1.0, step / 10))))
    rev = build_recipe(tcfg, cpu, RecipeHints(sampling="test-ramp"))
    assert rev.teacher_forcing_prob(5) == 0.5 and rev.teacher_forcing_prob(20) == 1.0
    assert rev.mask(4, 20, 3, 7, cpu).eq(1).all() and rev.mask(4, 0, 3, 7, cpu).eq(0).all()
    # a spec's recipe mapping is the same hints; bad keys are refused with the model named
    assert build_recipe(tcfg, cpu, {"sampling": "test-ramp"}).teacher_forcing_prob(20) == 1.0
    with pytest.raises(ConfigError, match="zz: recipe key.*'aux_loss_weight'"):
        RecipeHints.from_spec({"aux_loss_weight": 0.1}, "zz")
    # a rank takes its rows of the global mask: the two halves of 2 ranks are the rows of one process
    full = plain.mask(4, 3, 3, 6, cpu)
    assert full.shape == (4, 2)
    assert torch.equal(torch.cat([plain.mask(2, 3, 3, 6, cpu, rank=r, world_size=2) for r in (0, 1)]),
                       full[[0, 2, 1, 3]])
    with pytest.raises(ConfigError, match="not registered"):
        build_recipe(tcfg, cpu, RecipeHints(sampling="nope"))


def test_one_amp_policy_and_one_device_rule(monkeypatch):
    from mslstm.devices import resolve_device
    from mslstm.training import recipe
    from mslstm.training.recipe import amp_settings

    cpu = torch.device("cpu")
    monkeypatch.setattr(recipe, "cpu_supports_bf16", lambda: False)
    assert amp_settings("auto", cpu) == (None, False) and amp_settings("bf16", cpu) == (torch.bfloat16, False)
    monkeypatch.setattr(recipe, "cpu_supports_bf16", lambda: True)
    assert amp_settings("auto", cpu) == (torch.bfloat16, False) and amp_settings("off", cpu) == (None, False)
    with pytest.raises(ConfigError, match="train.amp"):
        amp_settings("fp16", cpu)
    assert resolve_device("cpu") == cpu
    with pytest.raises(ConfigError, match=r"profile\.device: 'tpu'"):
        resolve_device("tpu", key="profile.device")
    if not torch.cuda.is_available():
        assert resolve_device("auto", local_rank=1) == cpu
        with pytest.raises(ConfigError, match=r"train\.device: 'cuda' requested but no CUDA"):
            resolve_device("cuda", key="train.device")
