"""Issue 12: the AMP policy (``train.amp: auto`` by the machine's bf16 support), fp32 metrics under autocast, progress
display (bar on a terminal, log lines elsewhere), a quiet profiler, the ``mslstm summary`` lines, the SPDX license."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from mslstm.errors import ConfigError
from mslstm.training import recipe
from mslstm.training.recipe import amp_settings

ROOT = Path(__file__).resolve().parents[1]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


# ------------------------------------------------------------------------------------------------- AMP policy
@pytest.mark.parametrize("native", [True, False])
def test_amp_policy_table_on_cpu(monkeypatch, native):
    monkeypatch.setattr(recipe, "cpu_supports_bf16", lambda: native)
    assert amp_settings("auto", CPU) == ((torch.bfloat16, False) if native else (None, False))
    assert amp_settings("bf16", CPU) == (torch.bfloat16, False)   # asked for: given, even where emulated
    assert amp_settings("off", CPU) == (None, False)
    with pytest.raises(ConfigError, match="train.amp: fp16 needs a CUDA device"):
        amp_settings("fp16", CPU)


@pytest.mark.parametrize("native", [True, False])
def test_amp_policy_table_on_cuda(monkeypatch, native):
    monkeypatch.setattr(recipe, "cuda_supports_bf16", lambda device: native)
    assert amp_settings("auto", CUDA) == ((torch.bfloat16, False) if native else (torch.float16, True))
    assert amp_settings("bf16", CUDA) == (torch.bfloat16, False)
    assert amp_settings("fp16", CUDA) == (torch.float16, True)
    assert amp_settings("off", CUDA) == (None, False)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux /proc/cpuinfo")
def test_cpu_bf16_detection_agrees_with_the_cpu_flags():
    flags = next((ln.split() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")),
                 [])
    # ATen or oneDNN held below AVX-512 (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA, as on an AVX2-only CPU): no bf16
    held = (torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2")
            or "AVX2" in os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper())
    assert recipe.cpu_supports_bf16() == (any(f in flags for f in ("avx512_bf16", "amx_bf16")) and not held)


def test_the_recipe_and_the_profile_follow_the_one_policy(monkeypatch):
    from mslstm.training.config import TrainConfig

    monkeypatch.setattr(recipe, "cpu_supports_bf16", lambda: True)
    assert recipe.build_recipe(TrainConfig(amp="auto"), CPU).amp_dtype == torch.bfloat16
    monkeypatch.setattr(recipe, "cpu_supports_bf16", lambda: False)
    assert recipe.build_recipe(TrainConfig(amp="auto"), CPU).amp_dtype is None


# --------------------------------------------------------------------------------------- fp32 evaluation metrics
def test_metrics_are_fp32_even_from_bf16_predictions_inside_autocast():
    from mslstm.evaluation.metrics import MetricAccumulator, frame_metrics

    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 1, 16, 16, generator=gen)
    pred = (target + 0.1 * torch.randn(2, 3, 1, 16, 16, generator=gen)).clamp(0, 1).to(torch.bfloat16)
    want = frame_metrics(pred.float(), target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = frame_metrics(pred, target)
        acc = MetricAccumulator()
        acc.update(pred, target)
    for name, value in want.items():
        assert got[name].dtype == torch.float64
        # bit for bit: the SSIM convolutions did not run in bf16 under the enclosing autocast
        assert torch.equal(got[name], value), name
    assert acc.compute()[0]["ssim"] == pytest.approx(float(want["ssim"].mean()), rel=1e-12)


def test_score_predicts_in_fp32_under_an_enclosing_autocast(tiny_dataset):
    from test_evaluate_common import tiny_config

    from model import build_model
    from mslstm.data.dataset import VideoDataset
    from mslstm.evaluation.evaluate import score

    torch.manual_seed(0)
    net = build_model(tiny_config().model).eval()
    ds = VideoDataset(tiny_dataset, "test")
    plain = score(net, ds, "future", 2, 4, CPU)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = score(net, ds, "future", 2, 4, CPU)[0]
    assert under == plain


# ---------------------------------------------------------------------------------------------------- progress
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_logs_go_above_it(monkeypatch):
    from mslstm.training.progress import progress_bar

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(10, "train x", "step") is None            # not a terminal: the caller logs lines
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert progress_bar(10, "train x", "step", enabled=False) is None
    handler = logging.StreamHandler(term)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bar = progress_bar(10, "train x", "step")
        assert bar is not None
        assert handler not in root.handlers                          # redirected through tqdm.write while open
        logging.getLogger("mslstm.test").warning("a line above the bar")
        bar.set_postfix(loss="0.5", seq_s="3.0")
        bar.update(10)
        bar.close()
        assert handler in root.handlers                              # restored by close()
    finally:
        root.removeHandler(handler)
    out = term.getvalue()
    assert "train x" in out and "10/10" in out and "loss=0.5" in out and "seq_s=3.0" in out
    assert "a line above the bar" in out


def test_training_without_a_terminal_writes_log_lines_with_loss_and_rate(tiny_dataset, tmp_path, caplog):
    from mslstm.config import load_config
    from mslstm.training.train import train

    sets = {"data.input_frames": 3, "data.output_frames": 3, "model.frame_size": [16, 16], "model.input_frames": 3,
            "model.output_frames": 3, "model.hidden": 4, "model.layers": 2, "model.scales": [1, 1],
            "model.patch_size": 1, "train.epochs": 1, "train.batch_size": 2, "train.progress": "bar",
            "train.log_every_steps": 2, "train.amp": "off", "tracking.enabled": False}
    torch.set_num_threads(1)
    with caplog.at_level(logging.INFO, logger="mslstm"):
        train(load_config(None, sets), tiny_dataset, tmp_path / "t")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"] and all("seq/s" in ln and "loss" in ln for ln in lines)


# -------------------------------------------------------------------------------------------- quiet profiler
def test_profile_writes_no_profiler_trace_or_allocator_lines(tmp_path):
    sets = ["model.frame_size=[16,16]", "model.hidden=4", "model.layers=2", "model.scales=[1,1]",
            "model.patch_size=1", "model.input_frames=3", "model.output_frames=3", "data.input_frames=3",
            "data.output_frames=3", "profile.repeats=1", "profile.warmup=1", "tracking.enabled=false"]
    cmd = [sys.executable, "-m", "mslstm.cli", *[a for s in sets for a in ("--set", s)], "profile", "--out",
           str(tmp_path / "p")]
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CPP_LOG_LEVEL", "KINETO_LOG_LEVEL")}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**env, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "p" / "cost.json").exists()
    bad = [ln for ln in res.stderr.splitlines() if ln.startswith(("USDT:", "STAGE:")) or "CPUAllocator" in ln]
    assert not bad, bad
    assert "mslstm.evaluation.profile" in res.stderr                 # our own log line still comes through


def test_the_filter_keeps_other_stderr_lines(capfd):
    from mslstm.evaluation.profile import profiler_noise_filtered

    with profiler_noise_filtered():
        os.write(2, b"USDT:2026 x SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"[W1129 CPUAllocator.cpp:245] Memory block of unknown size was allocated before the "
                    b"profiling started, profiler results will not include the deallocation event\n")
        os.write(2, b"a real warning\n")
    assert capfd.readouterr().err == "a real warning\n"


# ----------------------------------------------------------------------------------------------------- summary
def write_artifacts(root: Path, promoted: bool = True) -> None:
    def put(rel: str, data) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(data))

    put("train/metrics.json", {"model": "mslstm", "steps": 256, "best_val_mse": 31.5, "seq_per_s": 5.25})
    put("train/run.json", {"run_id": "abc", "tracking_uri": "sqlite:////work/x/mlflow.db"})
    put("eval/metrics.json", {"mse": 30.0, "ssim": 0.8123, "psnr": 19.87, "baseline_blank_mse": 120.0,
                              "baseline_copy_last_mse": 60.0, "skill_vs_blank": 0.75, "sequences": 32})
    put("eval/eval.json", {"model": "mslstm", "split": "test"})
    put("profile/cost.json", {"step_time_s": 0.5, "batch_size": 2, "amp": "bfloat16", "device": "cpu",
                              "estimate": {"device_hours": 0.04}})
    put("register/decision.json", {"promoted": promoted, "model_name": "mslstm", "alias": "champion" if promoted
                                   else None, "version": "3" if promoted else None,
                                   "model_uri": "models:/mslstm@champion" if promoted else None,
                                   "reasons": ["test mse 30 beats the champion's 35"],
                                   "tracking_uri": "sqlite:////work/x/mlflow.db"})
    for name in ("example_0.png", "example_1.png", "example_0.gif"):
        (root / "eval" / name).write_bytes(b"x")


def test_summary_prints_the_figures_the_champion_pictures_and_the_mlflow_command(tmp_path, capsys):
    from mslstm.cli import main

    write_artifacts(tmp_path / "artifacts")
    assert main(["summary", "--artifacts", str(tmp_path / "artifacts")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert 6 <= len(lines) <= 10, out
    assert "MSE 30 per frame, SSIM 0.812" in out
    assert "blank frame MSE 120, copy-last-frame MSE 60; skill +0.75 vs blank, +0.50 vs copy-last" in out
    assert "promoted: models:/mslstm@champion = version 3" in out
    assert f"{tmp_path / 'artifacts' / 'eval' / 'example_0.png'} (+2 more" in out
    assert "mlflow ui --backend-store-uri sqlite:////work/x/mlflow.db" in out
    assert "not yet" not in out


def test_summary_of_a_partial_run_and_of_a_broken_file(tmp_path, capsys):
    from mslstm.cli import main

    root = tmp_path / "artifacts"
    write_artifacts(root, promoted=False)
    (root / "eval" / "metrics.json").unlink()
    assert main(["summary", "--artifacts", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"not yet   {root / 'eval' / 'metrics.json'}" in out and "nothing registered" in out
    (root / "train" / "metrics.json").write_text("{not json")
    assert main(["summary", "--artifacts", str(root)]) == 2
    assert f"{root / 'train' / 'metrics.json'}: unreadable" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ packaging
def test_license_is_an_spdx_string_and_the_build_backend_reads_it():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in meta["project"].get("classifiers", []))
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in meta["build-system"]["requires"])
