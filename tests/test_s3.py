"""The boto3 layer against a real S3 server (moto) on 127.0.0.1."""
from __future__ import annotations

import socket

import pytest

from mslstm.data import s3
from mslstm.errors import StorageError


def test_roundtrip_bytes_files_exists_list(s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/reports/a.json"
    assert not s3.exists(uri)
    s3.write_bytes(uri, b'{"ok": true}')
    assert s3.exists(uri) and s3.read_bytes(uri) == b'{"ok": true}'
    src = tmp_path / "x.bin"
    src.write_bytes(bytes(range(256)) * 100)
    s3.upload_file(src, f"s3://{s3_bucket}/files/x.bin")
    out = s3.download_file(f"s3://{s3_bucket}/files/x.bin", tmp_path / "sub" / "y.bin")
    assert out.read_bytes() == src.read_bytes()
    assert s3.list_keys(f"s3://{s3_bucket}/") == ["files/x.bin", "reports/a.json"]
    assert s3.list_keys(f"s3://{s3_bucket}/files/") == ["files/x.bin"]


def test_missing_key_names_bucket_and_key(s3_bucket, tmp_path):
    with pytest.raises(StorageError, match=rf"s3://{s3_bucket}/nope\.npy: .*key 'nope\.npy' not found in bucket"):
        s3.read_bytes(f"s3://{s3_bucket}/nope.npy")
    with pytest.raises(StorageError, match="not found"):
        s3.download_file(f"s3://{s3_bucket}/nope.npy", tmp_path / "d.npy")
    assert not (tmp_path / "d.npy").exists() and list(tmp_path.iterdir()) == []  # no partial file


def test_missing_bucket_is_named(s3_env, tmp_path):
    uri = "s3://no-such-bucket-xyz/data/train.npy"
    for call in (lambda: s3.read_bytes(uri), lambda: s3.write_bytes(uri, b"x"), lambda: s3.exists(uri),
                 lambda: s3.list_keys("s3://no-such-bucket-xyz/")):
        with pytest.raises(StorageError, match="bucket 'no-such-bucket-xyz' does not exist"):
            call()
    f = tmp_path / "f"
    f.write_bytes(b"1")
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-xyz' does not exist"):
        s3.upload_file(f, uri)


def test_endpoint_down_is_a_clear_error(s3_env, monkeypatch):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    expected = rf"s3://b/k: cannot read: S3 endpoint http://127\.0\.0\.1:{port} unreachable"
    with pytest.raises(StorageError, match=expected):
        s3.read_bytes("s3://b/k")


def test_bad_uris():
    for bad in ("bucket/key", "s3://", "/tmp/x"):
        with pytest.raises(StorageError, match="s3://"):
            s3.parse_uri(bad)
    assert s3.parse_uri("s3://b/a/b.npy") == ("b", "a/b.npy")
