"""A small boto3 layer for ``s3://bucket/key`` URIs (any S3-compatible endpoint).

The endpoint comes from the ``endpoint_url`` argument, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (boto3
reads them itself); credentials come from the environment / boto3's usual chain only. Calls are retried with
botocore's retry config (``standard`` mode). Every failure is a :class:`~mslstm.errors.StorageError` naming the
bucket/key and the problem (endpoint down, no such bucket, no such key, access denied).

Every call is bounded: botocore's connect and read timeouts and its attempts (first try + retries) are
``data.s3_connect_timeout_s``, ``data.s3_read_timeout_s`` and ``data.s3_max_attempts`` once the data step calls
:func:`configure` (defaults :data:`CONNECT_TIMEOUT`, :data:`READ_TIMEOUT`, :data:`MAX_ATTEMPTS`), so an endpoint
that died or answers nothing fails in about ``attempts x (connect or read timeout)`` with one line that says so.

    from mslstm.data import s3
    s3.write_bytes("s3://bucket/reports/result.json", b"{}")
    s3.read_bytes("s3://bucket/reports/result.json")
    s3.upload_file("artifacts/dataset/meta.json", "s3://bucket/dataset/meta.json")
    s3.list_keys("s3://bucket/dataset/")
    s3.upload_dir("artifacts/train", "s3://bucket/runs/1/train")     # a whole folder (TrainJob hand-over)
    s3.download_dir("s3://bucket/runs/1/train", "artifacts/train")
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from mslstm.errors import StorageError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3          # botocore's total attempts per call (first try + retries)
CONNECT_TIMEOUT = 5.0     # seconds to open a connection
READ_TIMEOUT = 60.0       # seconds without a byte from an open connection
_settings = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT, "max_attempts": MAX_ATTEMPTS}


def configure(connect_timeout_s: float | None = None, read_timeout_s: float | None = None,
              max_attempts: int | None = None) -> None:
    """Set the time limits and attempts of every later call (None keeps a value); clients are rebuilt."""
    for key, value, kind in (("connect_timeout", connect_timeout_s, float), ("read_timeout", read_timeout_s, float),
                             ("max_attempts", max_attempts, int)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise StorageError(f"s3 {key}: must be a positive number (got {value!r})")
        _settings[key] = kind(value)


def configure_from(data_cfg: Any) -> None:
    """:func:`configure` from the data section (``s3_connect_timeout_s``, ``s3_read_timeout_s``,
    ``s3_max_attempts``)."""
    configure(data_cfg.s3_connect_timeout_s, data_cfg.s3_read_timeout_s, data_cfg.s3_max_attempts)


def limits() -> str:
    """The bounds in words, for error messages: ``connect timeout 5 s, read timeout 60 s, 3 attempts``."""
    return (f"connect timeout {_settings['connect_timeout']:g} s, read timeout {_settings['read_timeout']:g} s, "
            f"{_settings['max_attempts']} attempt{'s' if _settings['max_attempts'] != 1 else ''}")


#: URI schemes taken as S3: KFP names artifacts on its MinIO store ``minio://bucket/key``.
SCHEMES = ("s3://", "minio://")


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` (or ``minio://bucket/a/b``) -> ``("bucket", "a/b")``; raise StorageError on anything
    else."""
    if not isinstance(uri, str) or not uri.startswith(SCHEMES):
        raise StorageError(f"{uri!r}: not an s3:// URI (expected s3://bucket/key)")
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r}: no bucket name (expected s3://bucket/key)")
    return bucket, key


def is_s3_uri(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(SCHEMES)


def endpoint_from_env() -> str | None:
    """The S3 endpoint of the environment (``AWS_ENDPOINT_URL_S3`` then ``AWS_ENDPOINT_URL``), or None for AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@lru_cache(maxsize=8)
def _client(endpoint_url: str | None, region: str | None, max_attempts: int, connect_timeout: float,
            read_timeout: float, _key_id: str | None) -> Any:
    # _key_id is only part of the cache key: new credentials in the environment get a new client.
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg)


def client(endpoint_url: str | None = None, max_attempts: int | None = None) -> Any:
    """A boto3 S3 client for ``endpoint_url`` (default: from the environment) with the configured time limits
    and attempts (:func:`configure`)."""
    endpoint = endpoint_url or endpoint_from_env()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return _client(endpoint, region, max_attempts or _settings["max_attempts"], _settings["connect_timeout"],
                   _settings["read_timeout"], os.environ.get("AWS_ACCESS_KEY_ID"))


def _error(exc: Exception, bucket: str, key: str, action: str, endpoint: str | None) -> StorageError:
    """Turn a boto3/botocore exception into a one-line StorageError naming bucket/key."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    at = endpoint or "AWS"
    if isinstance(exc, EndpointConnectionError) or type(exc).__name__ in ("ConnectTimeoutError", "ReadTimeoutError",
                                                                          "ConnectionClosedError"):
        what = "answered nothing" if type(exc).__name__ == "ReadTimeoutError" else "unreachable"
        return StorageError(f"{where}: cannot {action}: S3 endpoint {at} {what} ({exc}; {limits()}: "
                            "data.s3_connect_timeout_s / s3_read_timeout_s / s3_max_attempts)")
    if isinstance(exc, NoCredentialsError):
        return StorageError(f"{where}: cannot {action}: no AWS credentials in the environment "
                            "(set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket",) or (code == "404" and not key):
            return StorageError(f"{where}: cannot {action}: bucket {bucket!r} does not exist at {at}")
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"{where}: cannot {action}: key {key!r} not found in bucket {bucket!r}")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(f"{where}: cannot {action}: access denied ({code}); check the credentials")
        return StorageError(f"{where}: cannot {action}: {code or exc}")
    return StorageError(f"{where}: cannot {action}: {exc}")


def _call(action: str, uri: str, fn_name: str, endpoint_url: str | None = None, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_uri(uri)
    c = client(endpoint_url)
    try:
        return getattr(c, fn_name)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        err = _error(exc, bucket, key, action, endpoint_url or endpoint_from_env())
        if "does not exist" not in str(err) and key and isinstance(exc, ClientError):
            # A missing key and a missing bucket look alike for some calls: say which.
            if not bucket_exists(bucket, endpoint_url):
                err = StorageError(f"s3://{bucket}/{key}: cannot {action}: bucket {bucket!r} does not exist at "
                                   f"{endpoint_url or endpoint_from_env() or 'AWS'}")
        raise err from exc


def bucket_exists(bucket: str, endpoint_url: str | None = None) -> bool:
    """True when the bucket exists (and is reachable with these credentials)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(endpoint_url).head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise _error(exc, bucket, "", "check the bucket", endpoint_url or endpoint_from_env()) from exc
    except BotoCoreError as exc:
        raise _error(exc, bucket, "", "check the bucket", endpoint_url or endpoint_from_env()) from exc


def read_bytes(uri: str, endpoint_url: str | None = None) -> bytes:
    bucket, key = parse_uri(uri)
    resp = _call("read", uri, "get_object", endpoint_url, Bucket=bucket, Key=key)
    return resp["Body"].read()


def write_bytes(uri: str, data: bytes, endpoint_url: str | None = None) -> None:
    bucket, key = parse_uri(uri)
    if not key:
        raise StorageError(f"{uri}: no key to write (expected s3://bucket/key)")
    _call("write", uri, "put_object", endpoint_url, Bucket=bucket, Key=key, Body=data)


def exists(uri: str, endpoint_url: str | None = None) -> bool:
    """True when the object exists; False when the key is absent; StorageError when the bucket is missing."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = parse_uri(uri)
    if not key:
        return bucket_exists(bucket, endpoint_url)
    try:
        client(endpoint_url).head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            if not bucket_exists(bucket, endpoint_url):
                raise StorageError(f"{uri}: bucket {bucket!r} does not exist at "
                                   f"{endpoint_url or endpoint_from_env() or 'AWS'}") from exc
            return False
        raise _error(exc, bucket, key, "check", endpoint_url or endpoint_from_env()) from exc
    except BotoCoreError as exc:
        raise _error(exc, bucket, key, "check", endpoint_url or endpoint_from_env()) from exc


def iter_keys(uri: str, endpoint_url: str | None = None) -> Iterator[str]:
    """Keys under the prefix of ``uri`` (``s3://bucket/prefix/``), all pages."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_uri(uri)
    try:
        pages = client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]
    except (ClientError, BotoCoreError) as exc:
        raise _error(exc, bucket, prefix, "list", endpoint_url or endpoint_from_env()) from exc


def list_keys(uri: str, endpoint_url: str | None = None) -> list[str]:
    return list(iter_keys(uri, endpoint_url))


def upload_file(path: str | os.PathLike, uri: str, endpoint_url: str | None = None) -> None:
    """Upload a local file (multipart for large files, by boto3's transfer manager)."""
    from botocore.exceptions import BotoCoreError, ClientError

    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{path}: file not found (upload to {uri})")
    bucket, key = parse_uri(uri)
    if not key:
        raise StorageError(f"{uri}: no key to write (expected s3://bucket/key)")
    try:
        client(endpoint_url).upload_file(str(path), bucket, key)
    except (ClientError, BotoCoreError) as exc:
        raise _error(exc, bucket, key, "upload", endpoint_url or endpoint_from_env()) from exc
    except Exception as exc:  # boto3.exceptions.S3UploadFailedError wraps the ClientError
        if type(exc).__name__ == "S3UploadFailedError":
            if not bucket_exists(bucket, endpoint_url):
                raise StorageError(f"{uri}: cannot upload: bucket {bucket!r} does not exist at "
                                   f"{endpoint_url or endpoint_from_env() or 'AWS'}") from exc
            raise StorageError(f"{uri}: cannot upload: {exc}") from exc
        raise


def download_file(uri: str, path: str | os.PathLike, endpoint_url: str | None = None) -> Path:
    """Download an object to ``path`` atomically (temporary file beside it, renamed when complete)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from mslstm.io import atomic_path

    bucket, key = parse_uri(uri)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            client(endpoint_url).download_file(bucket, key, str(tmp))
    except (ClientError, BotoCoreError) as exc:
        err = _error(exc, bucket, key, "download", endpoint_url or endpoint_from_env())
        if "not found" in str(err) and not bucket_exists(bucket, endpoint_url):
            err = StorageError(f"{uri}: cannot download: bucket {bucket!r} does not exist at "
                               f"{endpoint_url or endpoint_from_env() or 'AWS'}")
        raise err from exc
    return path


def upload_dir(local: str | os.PathLike, uri: str, endpoint_url: str | None = None) -> int:
    """Upload every file under the folder ``local`` to the prefix ``uri``; returns the number of files."""
    local = Path(local)
    if not local.is_dir():
        raise StorageError(f"{local}: not a directory (upload to {uri})")
    bucket, prefix = parse_uri(uri)
    prefix = prefix.strip("/")
    n = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(local).as_posix()}".lstrip("/")
        upload_file(path, f"s3://{bucket}/{key}", endpoint_url)
        n += 1
    log.info("uploaded %d files to %s", n, uri)
    return n


def download_dir(uri: str, local: str | os.PathLike, endpoint_url: str | None = None) -> int:
    """Download every object under the prefix ``uri`` into the folder ``local`` (each file atomically);
    returns the number of files. An empty prefix is a StorageError."""
    bucket, prefix = parse_uri(uri)
    prefix = prefix.strip("/")
    local = Path(local)
    n = 0
    for key in iter_keys(f"s3://{bucket}/{prefix + '/' if prefix else ''}", endpoint_url):
        rel = key[len(prefix):].lstrip("/")
        if not rel or rel.endswith("/"):
            continue  # folder markers
        download_file(f"s3://{bucket}/{key}", local / rel, endpoint_url)
        n += 1
    if n == 0:
        raise StorageError(f"{uri}: no objects found under this prefix")
    log.info("downloaded %d files from %s", n, uri)
    return n
