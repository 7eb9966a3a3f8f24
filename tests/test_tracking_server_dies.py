"""The tracking server dies (or hangs) during training: the step keeps its outputs, says in one ``error:`` line that
tracking failed and what was not logged, exits non-zero in bounded time, and honours SIGTERM in the hang window.

A real ``mlflow server`` on 127.0.0.1 (SQLite backend); the trainer is a real ``mslstm train`` process. It is paused
(SIGSTOP) as soon as the server holds its first loss point, the server is killed (or stopped), and the trainer goes
on (SIGCONT): a deterministic "the server died at step N" on any machine speed.
"""
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
import yaml

from tracking_stack import wait_healthy

from mslstm.tracking import read_run_info
from mslstm.training.checkpoint import load_checkpoint

PY = sys.executable
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
STEPS = 40
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "convlstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 4,
              "layers": 1, "scales": [1], "patch_size": 1},
    "train": {"epochs": 100, "max_steps": STEPS, "batch_size": 2, "lr": 0.0003, "progress": "quiet",
              "log_every_steps": 2, "checkpoint_every_steps": 10, "amp": "off"},
    "tracking": {"system_metrics": False, "log_model": False, "log_checkpoint": True, "log_every_steps": 2,
                 "experiment": "dies", "run_name": "dies"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """``mlflow server`` on 127.0.0.1 (SQLite, artifacts proxied to a local folder); yields (url, process)."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as fh:
        proc = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log_path, timeout=300)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture
def dataset(tmp_path) -> Path:
    from mslstm.data.dataset import write_dataset

    rng = np.random.default_rng(0)
    splits = {n: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
              for n, k in (("train", 8), ("val", 2), ("test", 2))}
    write_dataset(tmp_path / "data", splits, input_frames=3, output_frames=3, source="tiny-random")
    return tmp_path / "data"


def start_training(tmp_path: Path, dataset: Path, url: str, **tracking) -> subprocess.Popen:
    tree = json.loads(json.dumps(TINY))
    tree["tracking"].update(tracking)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tree))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": url}
    for var in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        env.pop(var, None)  # the config's limits are the ones under test
    return subprocess.Popen(
        [PY, "-m", "mslstm.cli", "--params", str(params), "train", "--data-dir", str(dataset), "--out", "train"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pause_after_first_point(trainer: subprocess.Popen, tmp_path: Path, url: str) -> int:
    """Wait until the server holds a ``train/loss`` point of the run, then SIGSTOP the trainer; returns the last
    step the server holds."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert trainer.poll() is None, trainer.communicate()[1][-3000:]
        info = read_run_info(tmp_path / "train")
        if info:
            steps = [m.step for m in client.get_metric_history(info["run_id"], "train/loss")]
            if steps:
                trainer.send_signal(signal.SIGSTOP)
                return max(steps)
        time.sleep(0.05)
    raise AssertionError("the server never got a train/loss point")


def assert_outputs_intact(out: Path) -> None:
    for name in ("best.pt", "last.pt", "metrics.json", "history.csv", "train.json", "run.json"):
        assert (out / name).is_file(), f"{name} missing after the tracking failure"
    assert load_checkpoint(out / "last.pt")["step"] == STEPS  # the loop ran every step
    assert json.loads((out / "metrics.json").read_text())["steps"] == STEPS


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_server_killed_mid_run_exits_non_zero_in_bounded_time_with_one_error_line(tmp_path, dataset, server):
    url, proc = server
    trainer = start_training(tmp_path, dataset, url, http_timeout=10, http_max_retries=2, http_backoff_factor=1,
                             end_timeout=20)
    try:
        held = pause_after_first_point(trainer, tmp_path, url)
        assert held < STEPS
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        resumed = time.monotonic()
        trainer.send_signal(signal.SIGCONT)
        _, stderr = trainer.communicate(timeout=180)
        took = time.monotonic() - resumed
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 2, stderr[-3000:]
    assert took < 60, f"{took:.0f} s from the server's death to the exit"
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    line = lines[0]
    assert "tracking failed" in line and url in line, line
    assert "not logged:" in line and "metric points" in line and "train/loss" in line, line
    assert "artifact" in line and "metrics.json" in line, line  # what the end of training did not upload
    assert_outputs_intact(tmp_path / "train")


def test_sigterm_in_the_hang_window_of_a_stopped_server_is_honoured(tmp_path, dataset, server):
    """The server stops answering (SIGSTOP: connections hang, nothing is refused) with a long HTTP timeout: after
    training the step waits on it; SIGTERM then ends the process within seconds, with one error line."""
    url, proc = server
    trainer = start_training(tmp_path, dataset, url, http_timeout=120, http_max_retries=0, end_timeout=60)
    try:
        pause_after_first_point(trainer, tmp_path, url)
        os.killpg(proc.pid, signal.SIGSTOP)
        trainer.send_signal(signal.SIGCONT)
        out = tmp_path / "train"
        deadline = time.monotonic() + 180
        while not (out / "train.json").is_file():  # written at the end of the work, before the uploads
            assert trainer.poll() is None and time.monotonic() < deadline, trainer.communicate()[1][-3000:]
            time.sleep(0.1)
        time.sleep(1.0)  # in the hang window: a request to the stopped server, 120 s timeout
        assert trainer.poll() is None, "the step did not wait on the stopped server"
        sent = time.monotonic()
        trainer.send_signal(signal.SIGTERM)
        _, stderr = trainer.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode != 0, stderr[-3000:]
    assert took < 20, f"{took:.0f} s from SIGTERM to the exit"
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    # what was cut off: the points queued for the stopped server and the call the signal interrupted
    assert "SIGTERM" in lines[0] and "not logged:" in lines[0] and "metric points" in lines[0], lines[0]
    assert url in lines[0], lines[0]
    assert_outputs_intact(tmp_path / "train")
