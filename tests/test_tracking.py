"""MLflow tracking: run/params/metrics/tags/model read back (SQLite store), crashes end FAILED, and a real
``mlflow server`` on 127.0.0.1 whose artifacts land in the moto S3 bucket."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tracking_stack import wait_healthy

from mslstm.config import load_config
from mslstm.training.checkpoint import load_model
from mslstm.tracking import (
    DEFAULT_TRACKING_URI,
    continue_run,
    git_commit,
    open_run,
    read_run_info,
    resolve_tracking_uri,
    start_run,
)
from mslstm.training.train import train

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "mslstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1]},
    "train": {"epochs": 2, "batch_size": 2, "lr": 0.0003, "progress": "quiet", "log_every_steps": 2},
    "tracking": {"system_metrics": False, "log_model": True, "log_every_steps": 2, "experiment": "test-exp",
                 "run_name": "tiny"},
}


def tiny_cfg(**overrides):
    flat = {f"{s}.{k}": v for s, sec in TINY.items() for k, v in sec.items()}
    return load_config(None, {**flat, **overrides})


@pytest.fixture
def dataset(tmp_path) -> Path:
    from mslstm.data.dataset import write_dataset

    rng = np.random.default_rng(0)
    splits = {n: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
              for n, k in (("train", 8), ("val", 4), ("test", 2))}
    write_dataset(tmp_path / "data", splits, input_frames=3, output_frames=3, source="tiny-random",
                  raw_hash="md5-of-raw-data")
    return tmp_path / "data"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in tmp_path (the default sqlite:///mlflow.db and its artifacts land there), no MLFLOW_* from outside."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    torch.set_num_threads(1)
    return tmp_path


def test_tracking_uri_resolution(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    # relative SQLite paths are made absolute (same file, usable from another working directory)
    assert resolve_tracking_uri(None) == f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    assert resolve_tracking_uri(load_config(None, ["tracking.uri=sqlite:////abs/x.db"])) == "sqlite:////abs/x.db"
    cfg = load_config(None, ["tracking.uri=http://127.0.0.1:5999"])
    assert resolve_tracking_uri(cfg) == resolve_tracking_uri(cfg.tracking) == "http://127.0.0.1:5999"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")
    assert resolve_tracking_uri(cfg) == "http://127.0.0.1:6000"


def test_crash_ends_the_run_failed_and_later_steps_log_into_the_same_run(in_tmp):
    import mlflow

    cfg = tiny_cfg()
    with pytest.raises(RuntimeError, match="boom"):
        with start_run(cfg, in_tmp / "out") as tracker:
            tracker.log_metrics({"x": 1.0}, step=1)
            raise RuntimeError("boom")
    info = read_run_info(in_tmp / "out")
    assert set(info) == {"run_id", "tracking_uri", "experiment_id", "experiment_name"}
    assert info["experiment_name"] == "test-exp" and info["tracking_uri"] == f"sqlite:///{in_tmp / 'mlflow.db'}"
    client = mlflow.MlflowClient(info["tracking_uri"])
    assert client.get_run(info["run_id"]).info.status == "FAILED"
    with continue_run(in_tmp / "out") as tracker:
        assert tracker.run_id == info["run_id"]
        tracker.log_metrics({"eval/mse": 0.5})
    run = client.get_run(info["run_id"])
    assert run.data.metrics["eval/mse"] == 0.5 and run.info.status == "FINISHED"
    with start_run(cfg, in_tmp / "out", enabled=False) as tracker:  # other ranks: no-op
        tracker.log_metrics({"y": 1.0})
        assert tracker.run_id is None
    assert len(client.search_runs([info["experiment_id"]])) == 1


def test_one_end_of_run_policy_and_an_active_run_is_reused(in_tmp):
    """Every step opens runs with open_run: Ctrl-C ends KILLED, SIGTERM (SystemExit) FAILED, a caller's active run
    is logged into and left open, tracking.enabled=false opens nothing unless forced."""
    import mlflow

    cfg = tiny_cfg()
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with open_run(cfg, run_name="ctrl-c") as tracker:
            raise KeyboardInterrupt
    client = mlflow.MlflowClient(tracker.tracking_uri)
    assert client.get_run(tracker.run_id).info.status == "KILLED"
    with pytest.raises(SystemExit):
        with open_run(cfg, run_name="sigterm") as tracker:
            os.kill(os.getpid(), signal.SIGTERM)   # becomes SystemExit(143) while the run is open
            time.sleep(5)
    assert client.get_run(tracker.run_id).info.status == "FAILED"
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the handler is put back
    mlflow.set_tracking_uri(tracker.tracking_uri)
    with mlflow.start_run(run_name="outer") as outer:
        with open_run(cfg, run_name="inner", out_dir=in_tmp / "step") as tracker:
            tracker.log_metrics({"inner": 1.0}, synchronous=True)
        assert tracker.run_id == outer.info.run_id and mlflow.active_run().info.run_id == outer.info.run_id
    assert read_run_info(in_tmp / "step")["run_id"] == outer.info.run_id
    run = client.get_run(outer.info.run_id)
    assert run.data.metrics["inner"] == 1.0 and run.info.status == "FINISHED"
    off = tiny_cfg(**{"tracking.enabled": False})
    with open_run(off) as tracker:
        assert tracker.run_id is None and not tracker.enabled
    with open_run(off, run_name="forced", force=True) as tracker:
        assert tracker.run_id is not None
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_training_run_params_metrics_tags_and_model_read_back(in_tmp, dataset):
    import mlflow
    import mlflow.pytorch

    cfg = tiny_cfg(**{"tracking.system_metrics": True, "tracking.system_metrics_interval": 0.5})
    metrics = train(cfg, dataset, in_tmp / "train")
    info = read_run_info(in_tmp / "train")
    client = mlflow.MlflowClient(info["tracking_uri"])
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    # params: the whole flat config + the resolved distributed settings
    assert run.data.params["train.lr"] == "0.0003" and run.data.params["model.name"] == "mslstm"
    assert run.data.params["model.frame_size"] == "[16, 16]" and run.data.params["run.world_size"] == "1"
    assert set(cfg.flat()) <= set(run.data.params)
    # tags: code version and data hash
    commit = run.data.tags["git.commit"]
    assert len(commit) == 40 and git_commit(ROOT)
    # HEAD may move while the test runs (others commit): the tag must be HEAD or one of its ancestors
    assert subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT).returncode == 0
    assert run.data.tags["data.raw_hash"] == "md5-of-raw-data"
    # metrics: per step and per epoch
    loss_hist = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in loss_hist] == [2, 4, 6, 8]
    val_hist = client.get_metric_history(run.info.run_id, "val/mse")
    assert [m.step for m in val_hist] == [4, 8]
    assert val_hist[-1].value == pytest.approx(metrics["val_mse"])
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "history.csv", "checkpoints"} <= arts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.pt"]
    # logged model: signature, reload, same predictions as the best checkpoint (also for another batch size)
    model_uri = json.loads((in_tmp / "train" / "model_uri.json").read_text())["model_uri"]
    mi = mlflow.models.get_model_info(model_uri)
    assert mi.signature is not None and list(mi.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 6, 1, 16, 16]
    reloaded = mlflow.pytorch.load_model(model_uri)
    net, _ = load_model(in_tmp / "train" / "best.pt")
    x = torch.rand(3, 6, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), net(x), atol=1e-5)


def test_sigterm_marks_the_run_failed_and_resume_finishes_it(in_tmp, dataset):
    import mlflow

    params = in_tmp / "params.yaml"
    tree = json.loads(json.dumps(TINY))
    tree["tracking"]["log_model"] = False
    tree["train"]["checkpoint_every_steps"] = 2
    params.write_text(yaml.safe_dump(tree))
    cmd = [PY, "-m", "mslstm.cli", "--params", str(params), "train", "--data-dir", str(dataset), "--out", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MSLSTM_FAULT_STEP": "3", "MSLSTM_FAULT_MODE": "term"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=in_tmp)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr[-2000:]
    info = read_run_info(in_tmp / "train")
    client = mlflow.MlflowClient(info["tracking_uri"])
    assert client.get_run(info["run_id"]).info.status == "FAILED"
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300, cwd=in_tmp,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert read_run_info(in_tmp / "train")["run_id"] == info["run_id"]  # the same run continued
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(info["run_id"], "train/loss")] == [2, 4, 6, 8]


# ---------------------------------------------------------------------------------- mlflow server + S3 artifacts
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, s3_bucket):
    """``mlflow server`` on 127.0.0.1, SQLite backend, artifacts proxied to s3://<bucket>/mlartifacts (moto)."""
    port = free_port()
    log_path = tmp_path / "mlflow-server.log"
    with log_path.open("w") as log_fh:
        proc = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", f"s3://{s3_bucket}/mlartifacts", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log_fh, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log_path, timeout=120)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_training_logs_to_mlflow_server_with_artifacts_in_s3(in_tmp, dataset, mlflow_server, s3_bucket, s3_env,
                                                              monkeypatch):
    import boto3
    import mlflow
    import mlflow.pytorch

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = tiny_cfg(**{"tracking.model_format": "pickle"})
    train(cfg, dataset, in_tmp / "train")
    info = read_run_info(in_tmp / "train")
    assert info["tracking_uri"] == mlflow_server
    assert not (in_tmp / "mlflow.db").exists()  # nothing went to the embedded store
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and "val/mse" in run.data.metrics
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
            .list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert any(k.startswith("mlartifacts/") and k.endswith("checkpoints/best.pt") for k in keys), keys
    assert any(k.endswith("metrics.json") for k in keys)
    assert any(k.endswith("MLmodel") for k in keys), keys
    model_uri = json.loads((in_tmp / "train" / "model_uri.json").read_text())["model_uri"]
    reloaded = mlflow.pytorch.load_model(model_uri)
    net, _ = load_model(in_tmp / "train" / "best.pt")
    x = torch.rand(2, 6, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), net(x), atol=1e-5)
