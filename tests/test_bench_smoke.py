"""The benchmark scripts still run against the current code: each once on tiny shapes (seconds, not figures).

A bench is not a timed test (its figures are measured on an idle machine, docs/model.md); this only catches a
script left behind by an API change, as bench_amp_parity.py was by the recipe's mask signature."""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import pytest

from test_pipeline_helpers import ROOT, env


def _bench(script: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_bench_amp_parity_runs_and_judges():
    out = _bench("bench_amp_parity.py", "--steps", "2", "--batch", "2", "--val", "2", "--window", "1",
                 "--threads", "1")
    assert "tolerance" in out and ("PASS" in out or "FAIL" in out), out
    assert "end val MSE per frame (fp32 eval)" in out


def test_bench_models_params_row_is_the_embedded_default():
    out = _bench("bench_models.py", "--configs", "params", "--models", "smslstm", "--batch", "2", "--warmup", "0",
                 "--repeats", "1", "--amp", "none", "--threads", "1", "--json")
    lines = out.splitlines()
    rows = json.loads("\n".join(lines[lines.index("["):])) if "[" in lines else []
    assert rows and rows[0]["model"] == "smslstm", out
    from model import build_model
    from mslstm.config import Config

    params = sum(p.numel() for p in build_model(dataclasses.replace(Config().model, name="smslstm")).parameters())
    assert rows[0]["params"] == params  # the `params` configuration is params.yaml's network, not a copy of it


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_quality_writes_curves_and_logs_a_run(tmp_path):
    tiny = ["data.train_sequences=8", "data.val_sequences=4", "data.test_sequences=4", "data.input_frames=3",
            "data.output_frames=3", "model.input_frames=3", "model.output_frames=3", "model.hidden=4",
            "model.layers=2", "model.scales=[1, 1]", "model.patch_size=4", "train.batch_size=4", "train.val_batches=1",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.system_metrics=false"]
    args = ["--seconds", "2", "--models", "convlstm,smslstm", "--points", "2", "--eval-sequences", "4",
            "--calibration-steps", "1", "--out", str(tmp_path / "out")]
    for s in tiny:
        args += ["--set", s]
    out = _bench("bench_quality.py", *args)
    assert (tmp_path / "out" / "quality.png").stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "quality.csv", encoding="utf-8")))
    assert {r["model"] for r in rows} == {"convlstm", "smslstm"} and all(float(r["mse"]) > 0 for r in rows)
    assert "MLflow run" in out, out


def test_bench_predict_streams_a_small_input_and_reports_memory():
    out = _bench("bench_predict.py", "--gb", "0.002", "--size", "16", "--batch", "16", "--hidden", "4")
    assert "sequences/s" in out and "peak RSS:" in out and "import + model alone:" in out, out
