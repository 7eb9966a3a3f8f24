"""Bounded waits on the network: the S3 client of the data step, its `dvc pull` from an S3 remote, and
`mslstm pipeline submit`, each against a real server on 127.0.0.1 that dies (a moto server the test stops) or
against a socket that accepts connections and never answers. Each ends within a bounded time in one line."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mslstm.errors import StorageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def silent_endpoint():
    """``http://127.0.0.1:<port>`` of a socket that accepts connections (the kernel's backlog) and never
    answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def s3_limits():
    """Short S3 limits for the test; the module's defaults back afterwards."""
    from mslstm.data import s3

    saved = dict(s3._settings)
    s3.configure(connect_timeout_s=1, read_timeout_s=1, max_attempts=2)
    yield s3
    s3._settings.update(saved)


def test_s3_read_from_an_endpoint_that_never_answers_fails_in_bounded_time(s3_limits, silent_endpoint,
                                                                           monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    t0 = time.monotonic()
    with pytest.raises(StorageError) as info:
        s3_limits.read_bytes("s3://bucket/frames.npy", endpoint_url=silent_endpoint)
    took = time.monotonic() - t0
    msg = str(info.value)
    assert took < 20, took                     # 2 attempts x 1 s read timeout + botocore's back-off (< 2 s)
    assert "\n" not in msg and msg.startswith("s3://bucket/frames.npy: cannot read: S3 endpoint"), msg
    assert "answered nothing" in msg and "read timeout 1 s, 2 attempts" in msg, msg


def test_s3_server_killed_between_calls_fails_in_bounded_time(s3_limits, monkeypatch):
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3_limits.configure(read_timeout_s=30)         # a busy machine's moto may take more than 1 s to answer
    try:
        s3_limits.client(endpoint).create_bucket(Bucket="doomed")
        s3_limits.write_bytes("s3://doomed/a.bin", b"abc", endpoint)
        assert s3_limits.read_bytes("s3://doomed/a.bin", endpoint) == b"abc"
    finally:
        server.stop()                                              # the server dies
    s3_limits.configure(read_timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as info:
        s3_limits.read_bytes("s3://doomed/a.bin", endpoint)
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert "\n" not in msg and f"S3 endpoint {endpoint} unreachable" in msg and "2 attempts" in msg, msg


def test_data_and_pipeline_configs_refuse_bad_limits():
    from mslstm.data.config import DataConfig
    from mslstm.pipeline_config import PipelineConfig

    for kwargs, key in (({"s3_read_timeout_s": 0}, "s3_read_timeout_s"), ({"s3_max_attempts": 0}, "s3_max_attempts"),
                        ({"dvc_timeout_s": -1}, "dvc_timeout_s"), ({"s3_connect_timeout_s": "5"}, "s3_connect_")):
        with pytest.raises(ValueError, match=key):
            DataConfig(**kwargs).validate()
    with pytest.raises(ValueError, match="submit_timeout_s"):
        PipelineConfig(submit_timeout_s=0).validate()


# ------------------------------------------------------------------------------------------------- dvc pull
def _dvc(repo: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def _lost_data_repo(tmp_path_factory):
    import shutil

    repo = tmp_path_factory.mktemp("dvc") / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "a.txt").write_text("a")
    (repo / "data" / "b.txt").write_text("b")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    _dvc(repo, "config", "core.analytics", "false")
    _dvc(repo, "add", "-q", "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    return repo


@pytest.fixture
def pulled_repo(_lost_data_repo, tmp_path, monkeypatch):
    """A git + DVC repository whose data/ was added and then lost (cache and folder): a pull must ask the remote."""
    import shutil

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return Path(shutil.copytree(_lost_data_repo, tmp_path / "repo", symlinks=True))


def _remote(repo: Path, endpoint: str) -> None:
    _dvc(repo, "remote", "add", "-d", "storage", "s3://bucket/dvcstore")
    _dvc(repo, "remote", "modify", "storage", "endpointurl", endpoint)


def test_dvc_pull_from_a_remote_that_never_answers_ends_by_the_s3_timeouts(pulled_repo, silent_endpoint):
    from mslstm.data.config import DataConfig
    from mslstm.data.raw import dvc_pull

    _remote(pulled_repo, silent_endpoint)
    # without these limits DVC waits botocore's 60 s per read, retried by s3fs and botocore: many minutes
    limits = DataConfig(s3_connect_timeout_s=1, s3_read_timeout_s=1, s3_max_attempts=1, dvc_timeout_s=300)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as info:
        dvc_pull(pulled_repo / "data.dvc", "storage", pulled_repo, limits)
    took = time.monotonic() - t0
    msg = str(info.value)
    # the 1 s timeouts end it (dvc's own start-up is most of the time on a busy machine), not dvc_timeout_s
    assert took < 300 and "within" not in msg, (took, msg)
    assert "\n" not in msg and "data.dvc: `dvc pull -r storage` failed" in msg, msg
    assert (pulled_repo / ".dvc" / "config").read_text().count("timeout") == 0   # the user's config untouched


def test_dvc_pull_is_stopped_after_dvc_timeout_s(pulled_repo, silent_endpoint):
    from mslstm.data.config import DataConfig
    from mslstm.data.raw import dvc_pull

    _remote(pulled_repo, silent_endpoint)
    _dvc(pulled_repo, "remote", "modify", "storage", "read_timeout", "600")   # the remote's own setting wins
    limits = DataConfig(s3_read_timeout_s=1, dvc_timeout_s=4)
    t0 = time.monotonic()
    with pytest.raises(StorageError, match=r"gave no result within 4 s and was stopped \(data.dvc_timeout_s\)"):
        dvc_pull(pulled_repo / "data.dvc", "storage", pulled_repo, limits)
    assert time.monotonic() - t0 < 20


# ---------------------------------------------------------------------------------------------- pipeline submit
def test_submit_to_an_endpoint_that_never_answers_fails_in_bounded_time(silent_endpoint, capsys, monkeypatch,
                                                                        tmp_path):
    import threading

    from mslstm.cli import main
    from mslstm.config import load_config
    from pipelines.runner import compile_pipeline

    monkeypatch.setenv("HOME", str(tmp_path))
    package = compile_pipeline(load_config(ROOT / "params.yaml"), tmp_path / "p.yaml", False)
    result = {}

    def submit():   # in a thread: without the time limit kfp's client waits for ever, the test must not
        result["rc"] = main(["-q", "--params", str(ROOT / "params.yaml"), "--set", "pipeline.submit_timeout_s=1",
                             "pipeline", "submit", "--host", silent_endpoint, "--package", str(package)])

    t0 = time.monotonic()
    worker = threading.Thread(target=submit, daemon=True)
    worker.start()
    worker.join(180)
    took = time.monotonic() - t0
    assert not worker.is_alive(), "pipeline submit still waiting after 180 s"
    err = capsys.readouterr().err.strip()
    assert result["rc"] == 2 and len(err.splitlines()) == 1, err
    assert err == (f"error: --host {silent_endpoint}: connected, but no answer within 1 s (read timeout; tried once; "
                   "pipeline.submit_timeout_s)"), err
    assert took < 60, took                  # building and checking the pipeline, then the 1 s wait
