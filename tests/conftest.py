"""Shared fixtures: a real S3 server (moto) on 127.0.0.1 and a tiny processed dataset.

Keep this file small and stable: every developer's tests use it.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class S3Server:
    """A running moto S3 server; ``endpoint_url`` is ``http://127.0.0.1:<port>``."""

    endpoint_url: str
    host: str
    port: int


@pytest.fixture(scope="session")
def s3_server():
    """moto's ThreadedMotoServer on 127.0.0.1 and a free port, for the whole session (stopped at the end)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint_url=f"http://{host}:{port}", host=host, port=port)
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> str:
    """Fake credentials + endpoint of the moto server in the environment; returns the endpoint URL."""
    url = s3_server.endpoint_url
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", url)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return url


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A fresh, uniquely named bucket on the moto server; returns its name."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A processed dataset: train 8 / val 4 / test 4 sequences of 6 frames 1x16x16 uint8, 3 in + 3 out."""
    from mslstm.data.dataset import write_dataset

    rng = np.random.default_rng(0)
    out = tmp_path / "dataset"
    splits = {
        name: rng.integers(0, 256, size=(n, 6, 1, 16, 16), dtype=np.uint8)
        for name, n in (("train", 8), ("val", 4), ("test", 4))
    }
    write_dataset(out, splits, input_frames=3, output_frames=3, source="tiny-random")
    return out


@pytest.fixture(autouse=True)
def _mlflow_home_in_tmp(tmp_path, monkeypatch):
    """Outside a project folder the default MLflow store is ``$MSLSTM_HOME/mlflow.db`` (else the checkout's):
    point it at the test's tmp_path, so that no test writes runs into the repository's store."""
    monkeypatch.setenv("MSLSTM_HOME", str(tmp_path))
