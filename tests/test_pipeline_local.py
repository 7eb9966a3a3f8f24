"""`mslstm pipeline run --local`: the whole KFP training pipeline for real with kfp's SubprocessRunner.

Tiny config, own working folder and SQLite MLflow store; checks the task artifacts, the MLflow run of training
(with the evaluation logged into it) and the registered model version. About 1-2 minutes on 2 shared cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from test_pipeline_helpers import run, tiny_params


def _one(root: Path, pattern: str) -> Path:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pipeline_run_local_end_to_end(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    proc = run(["mslstm", "pipeline", "run", "--local", "--root", "kfp", "--arg", "lr=0.002"], tmp_path,
               MLFLOW_TRACKING_URI=uri)
    assert "pipeline finished" in proc.stdout
    out = _one(tmp_path / "kfp", "mslstm-training-*")
    # every step ran and left its artifacts
    meta = json.loads((out / "data" / "dataset" / "meta.json").read_text())
    assert meta["input_frames"] == 3 and meta["splits"]["train"]["shape"][0] == 8
    assert (out / "validate" / "report").read_text().lstrip().lower().startswith("<!doctype html") or \
        "<html" in (out / "validate" / "report").read_text().lower()
    model_dir = _one(out, "train*/model")
    for name in ("best.pt", "last.pt", "metrics.json", "history.csv", "run.json"):
        assert (model_dir / name).is_file(), name
    eval_dir = _one(out, "evaluate*/evaluation")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert 0 <= metrics["mse"] and 0 <= metrics["ssim"] <= 1
    assert "<table" in _one(out, "evaluate*/report").read_text()
    # the Metrics artifact (KFP UI) carries the numbers as metadata
    executor = json.loads(_one(out, "evaluate*/executor_output.json").read_text())
    logged = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["mse"] == pytest.approx(metrics["mse"])
    assert json.loads(executor["parameterValues"]["Output"])["model"] == "mslstm"
    cost = json.loads((_one(out, "profile*/profile_dir") / "cost.json").read_text())
    from mslstm.config import load_config

    tiny_model = load_config(tmp_path / "params.yaml").model
    from model import build_model, count_parameters, model_flops

    assert cost["params"] == count_parameters(build_model(tiny_model))
    assert cost["flops_forward"] == model_flops(tiny_model)
    assert metrics["sequences"] == 4                                      # evaluate.max_sequences of TINY
    decision = json.loads(_one(out, "register*/decision/decision.json").read_text())
    # the TrainJob branch was skipped (nodes = 1)
    assert not list(out.glob("train-trainjob*"))

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = json.loads((model_dir / "run.json").read_text())["run_id"]
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    assert float(r.data.params["train.lr"]) == pytest.approx(0.002)  # the per-run pipeline parameter took effect
    assert any(k.endswith("mse") and k.startswith("test") for k in r.data.metrics), r.data.metrics
    # the same MLflow layout as `dvc repro`: one run per training, with its evaluation and its cost profile
    assert "cost_params" in r.data.metrics and "cost_flops_forward" in r.data.metrics, r.data.metrics
    assert len(client.search_runs([r.info.experiment_id])) == 1
    assert r.info.run_name.startswith("mslstm ") and "lr=0.002" in r.info.run_name, r.info.run_name
    versions = client.search_model_versions("name='mslstm'")
    assert len(versions) == 1
    assert str(decision["version"]) == str(versions[0].version)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_failed_validation_skips_the_training_branch(tmp_path):
    """validate returns False (min_sequences above the split sizes): the pipeline ends without train, evaluate or
    register; data, validate and (independent of validation) profile ran."""
    params = tiny_params()
    params["validate"]["min_sequences"] = 1000
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run(["mslstm", "pipeline", "run", "--local", "--root", "kfp"], tmp_path, MLFLOW_TRACKING_URI=uri)
    out = _one(tmp_path / "kfp", "mslstm-training-*")
    executor = json.loads((out / "validate" / "executor_output.json").read_text())
    assert executor["parameterValues"]["Output"] is False
    ran = {p.name for p in out.iterdir() if p.is_dir()}
    assert {"data", "validate"} <= ran, ran
    assert not [n for n in ran if n.startswith(("train", "evaluate", "register"))], ran
    assert "FAILED" in (out / "validate" / "report").read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ablation_pipeline_run_local(tmp_path):
    """ParallelFor over two models (profile, train, evaluate each), dsl.Collected into summarize_ablation."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    refused = run(["mslstm", "pipeline", "run", "--local", "--ablation", "--arg", "register=false"], tmp_path,
                  check=False)
    assert refused.returncode == 2 and "--arg register: not a parameter" in refused.stderr  # no registry gate here
    run(["mslstm", "pipeline", "run", "--local", "--ablation", "--root", "kfp"], tmp_path, MLFLOW_TRACKING_URI=uri)
    out = _one(tmp_path / "kfp", "mslstm-training-ablation-*")
    assert len(list(out.glob("for-loop-*-iteration-*"))) == 2
    summary = out / "summarize-ablation" / "summary"
    rows = json.loads((summary / "ablation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["convlstm", "mslstm"]
    for r in rows:  # metrics from evaluate, cost from profile, both carried through the collected results
        assert r["mse"] is not None and r["params"] > 0 and r["step_time_ms"] is not None
    assert rows[0]["params"] < rows[1]["params"]
    assert (summary / "radar.png").stat().st_size > 1000
    assert "| ConvLSTM |" in (out / "summarize-ablation" / "table").read_text()
    assert "data:image/png;base64," in (out / "summarize-ablation" / "chart").read_text()
