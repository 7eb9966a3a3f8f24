"""Ablation (the study's ablation preset): the four models trained (steps capped), evaluated, profiled and
compared; summarize_ablation (the Kubeflow ablation's summary) alone."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from test_evaluate_common import mlflow_env, tiny_config  # noqa: F401

from mslstm.study.budget import ablation_config
from mslstm.study.figures import radar_table
from mslstm.study.report import summarize_ablation


def test_run_ablation_end_to_end_tiny(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    from mslstm.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "abl"
    sets = (
            "model.frame_size=[16, 16]", "model.input_frames=3", "model.output_frames=3", "model.hidden=4",
            "model.layers=4", "model.scales=[1, 2, 2, 1]", "model.mk_kernels=[1, 3]", "model.patch_size=1",
            "data.input_frames=3", "data.output_frames=3", "data.train_sequences=8",
            "train.batch_size=4", "train.progress=quiet", "train.device=cpu",
            "tracking.system_metrics=false", "tracking.log_model=false", "tracking.log_checkpoint=false",
            "evaluate.num_examples=1", "profile.batch_size=2", "profile.warmup=0", "profile.repeats=1",
            "ablation.epochs=1", "ablation.steps=2", "ablation.eval_sequences=2",
    )
    rc = main([*[f"--set={o}" for o in sets], "ablation", "--data-dir", str(tiny_dataset), "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "ablation.json").read_text())
    assert [r["model"] for r in summary["rows"]] == ["convlstm", "smslstm", "tmslstm", "mslstm"]
    for r in summary["rows"]:
        for k in ("params", "flops_forward", "peak_memory_mib", "step_time_ms", "mse", "ssim"):
            assert r[k] is not None and r[k] > 0, (r["model"], k)
        assert r["train_steps"] == 2
        # cost columns are the model's own numbers, not just positive
        from model import build_model, count_parameters, model_flops
        from mslstm.config import load_config

        mcfg = load_config(None, [*sets, f"model.name={r['model']}"]).model
        assert r["params"] == count_parameters(build_model(mcfg)), r["model"]
        assert r["flops_forward"] == model_flops(mcfg), r["model"]
    assert summary["radar_axes"]["steps"] == ["params", "flops_forward", "peak_memory_mib", "step_time_ms", "mse"]
    for model_row in summary["radar"]["steps"].values():
        assert all(0 < v <= 1 for v in model_row.values())
    # one seed: each model against ConvLSTM and each MS- version against its flat model, without an interval
    assert {(p["flat"], p["ms"]) for p in summary["pairs"]} == {
        ("convlstm", "smslstm"), ("tmslstm", "mslstm"), ("convlstm", "tmslstm"), ("convlstm", "mslstm")}
    assert all(p["mse"]["n"] == 1 and p["mse"]["lo"] is None for p in summary["pairs"])
    assert (out / "layers" / "mslstm.png").is_file()                     # Figure 5 of the trained models
    assert (out / "radar.png").stat().st_size > 0
    assert "MS-LSTM" in (out / "ablation.md").read_text()
    assert len(list(csv.DictReader((out / "ablation.csv").open()))) == 4
    for m in ("convlstm", "mslstm"):
        d = out / "steps" / m / "seed0"
        assert (d / "train" / "best.pt").is_file() or (d / "train" / "last.pt").is_file()
        assert (d / "eval" / "metrics.json").is_file() and (d / "profile" / "cost.json").is_file()
        assert json.loads((d / "eval" / "metrics.json").read_text())["sequences"] == 2


def test_ablation_config_applies_budget_and_overrides():
    cfg = tiny_config("ablation.epochs=3", "ablation.steps=7", "ablation.eval_sequences=5",
                      "ablation.overrides={train.batch_size: 2}")
    c = ablation_config(cfg, "convlstm")
    assert (c.model.name, c.train.epochs, c.train.max_steps, c.evaluate.max_sequences, c.train.batch_size) == \
        ("convlstm", 3, 7, 5, 2)
    assert cfg.model.name == "mslstm"            # the base config is left alone


def test_summarize_ablation_from_pipeline_results_without_cost(tmp_path):
    """The Kubeflow ablation collects only evaluate results: params/FLOPs come from eval.json's model config."""
    from mslstm.config import to_dict

    results = []
    for i, name in enumerate(("convlstm", "mslstm")):
        cfg = tiny_config(f"model.name={name}")
        d = tmp_path / name
        d.mkdir()
        (d / "eval.json").write_text(json.dumps({"model_config": to_dict(cfg.model)}))
        results.append({"model": name, "metrics": {"mse": 10.0 + i, "ssim": 0.5, "mae": 1, "psnr": 20},
                        "eval_dir": str(d)})
    s = summarize_ablation(results, tmp_path / "summary")
    rows = {r["model"]: r for r in s["rows"]}
    assert rows["convlstm"]["params"] > 0 and rows["mslstm"]["flops_forward"] > 0
    assert rows["mslstm"]["peak_memory_mib"] is None
    assert s["radar_axes"]["steps"] == ["params", "flops_forward", "mse"]
    assert s["radar"]["steps"]["MS-LSTM"]["mse"] == pytest.approx(1.0)
    assert s["radar"]["steps"]["ConvLSTM"]["mse"] == pytest.approx(10 / 11)
    md = (tmp_path / "summary" / "ablation.md").read_text()
    assert "n/a" in md
    assert (tmp_path / "summary" / "radar.png").is_file()


def test_radar_table_normalises_by_the_largest():
    rows = [{"model": "a", "params": 10, "flops_forward": 4, "peak_memory_mib": 1.0, "step_time_ms": 2.0, "mse": 5},
            {"model": "b", "params": 5, "flops_forward": 8, "peak_memory_mib": 2.0, "step_time_ms": 1.0, "mse": 10}]
    table, axes = radar_table(rows)
    assert len(axes) == 5
    assert table["a"] == {"params": 1.0, "flops_forward": 0.5, "peak_memory_mib": 0.5, "step_time_ms": 1.0,
                          "mse": 0.5}


def test_summarize_ablation_cost_from_config_when_dirs_are_elsewhere(tmp_path):
    """In Kubeflow the evaluate tasks' folders are not mounted in the summary task: the config gives params/FLOPs."""
    cfg = tiny_config()
    results = [{"model": m, "metrics": {"mse": 1.0 + i, "ssim": 0.5}, "eval_dir": "/nonexistent/eval"}
               for i, m in enumerate(("convlstm", "tmslstm", "mslstm"))]
    s = summarize_ablation(results, tmp_path / "summary", cfg=cfg)
    rows = {r["model"]: r for r in s["rows"]}
    assert rows["tmslstm"]["params"] == rows["mslstm"]["params"] > rows["convlstm"]["params"]
    assert rows["mslstm"]["flops_forward"] < rows["tmslstm"]["flops_forward"]   # the pyramid saves FLOPs
    assert s["radar_axes"]["steps"] == ["params", "flops_forward", "mse"]
