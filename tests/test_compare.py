"""`mslstm compare`: any list of models at one budget and seed (the study with a model list) -> table with the MS-
vs flat paired differences, CSV with every metric evaluate returned, charts, and one MLflow parent run with a nested
child run per (model, seed, budget) (real MLflow, SQLite)."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from test_evaluate_common import mlflow_env  # noqa: F401

TINY = (
    "model.frame_size=[16, 16]", "model.input_frames=3", "model.output_frames=3", "model.hidden=4",
    "model.layers=4", "model.scales=[1, 2, 2, 1]", "model.mk_kernels=[1, 3]", "model.patch_size=1",
    "data.input_frames=3", "data.output_frames=3", "data.train_sequences=8",
    "train.batch_size=4", "train.progress=quiet", "train.device=cpu",
    "tracking.system_metrics=false", "tracking.log_model=false", "tracking.log_checkpoint=false",
    "evaluate.num_examples=0", "profile.batch_size=2", "profile.warmup=0", "profile.repeats=1",
    "ablation.epochs=1", "ablation.steps=2", "ablation.eval_sequences=2",
)


def test_compare_a_pair_end_to_end_with_nested_mlflow_runs(tiny_dataset, tmp_path, mlflow_env, capsys):  # noqa: F811
    import mlflow

    from mslstm.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "cmp"
    rc = main([*[f"--set={o}" for o in TINY], "compare", "--models", "predrnnv2,mspredrnnv2",
               "--data-dir", str(tiny_dataset), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "MS-PredRNN-V2 − PredRNN-V2" in printed and "2 model rows from 2 runs (0 not trained here: resumed or reused)" in printed
    assert "steps/predrnnv2/seed0: mse" in printed                       # a progress line per run
    summary = json.loads((out / "compare.json").read_text())
    assert [r["model"] for r in summary["rows"]] == ["predrnnv2", "mspredrnnv2"]
    for r in summary["rows"]:
        for k in ("params", "flops_forward", "macs_forward", "peak_memory_mib", "step_time_ms", "mse", "mae", "ssim",
                  "psnr", "wall_s"):
            assert r[k] is not None and r[k] > 0, (r["model"], k)
        assert r["train_steps"] == 2 and r["train_step_s"] > 0 and r["seeds"] == 1
    (pair,) = summary["pairs"]
    assert (pair["flat"], pair["ms"]) == ("predrnnv2", "mspredrnnv2") and pair["flops_ratio"] < 1
    assert pair["mse_flat"] == summary["rows"][0]["mse"]
    assert pair["mse"]["mean"] == pytest.approx(summary["rows"][1]["mse"] - summary["rows"][0]["mse"])
    # CSV: every number evaluate returned, beyond the table's
    rows = list(csv.DictReader((out / "compare_runs.csv").open()))
    assert len(rows) == 2 and "baseline_blank_mse" in rows[0] and float(rows[1]["train_step_s"]) > 0
    md = (out / "compare.md").read_text()
    assert "Paired differences per seed" in md and "| MS-PredRNN-V2 − PredRNN-V2 |" in md
    assert (out / "bars.png").stat().st_size > 0
    # MLflow: one parent, a nested child per model (and seed) holding its training params, eval and study metrics
    client = mlflow.MlflowClient(mlflow_env)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["study.models"] == "predrnnv2,mspredrnnv2"
    assert parent.data.metrics["study/total_time_s"] > 0
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/compare.md", "study/compare.csv", "study/compare_runs.csv", "study/bars.png"} <= arts
    for key, run_id in summary["child_run_ids"].items():
        name = key.split("/")[1]
        child = client.get_run(run_id)
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == f"{name} seed=0 steps" and child.data.tags["mslstm.seed"] == "0"
        assert child.info.status == "FINISHED"
        assert child.data.params["model.name"] == name
        assert child.data.metrics["study/mse"] > 0 and "test_mse" in child.data.metrics
        assert "cost_step_time_s" in child.data.metrics
        assert json.loads((out / key / "train" / "run.json").read_text())["run_id"] == run_id
