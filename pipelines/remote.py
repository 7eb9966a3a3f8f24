"""Copy a directory to/from an ``s3://bucket/prefix`` URI (used by TrainJob nodes and the train launcher).

Credentials and endpoint come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``; boto3 reads them itself), i.e. from the Kubernetes secret the pods mount as env.

    python -m pipelines.remote download s3://bucket/prefix local_dir
    python -m pipelines.remote upload local_dir s3://bucket/prefix
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from urllib.parse import urlparse

from mslstm.errors import StorageError

log = logging.getLogger(__name__)


def split_uri(uri: str) -> tuple[str, str]:
    """``"s3://b/p/q" -> ("b", "p/q")``; also accepts KFP's ``minio://`` scheme."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "minio") or not parsed.netloc:
        raise StorageError(f"{uri}: expected an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/").rstrip("/")


def _client():
    import boto3

    return boto3.client("s3")


def upload_dir(local: str | Path, uri: str, client=None) -> int:
    """Upload every file under ``local`` to ``uri``; returns the number of files."""
    bucket, prefix = split_uri(uri)
    client = client or _client()
    local = Path(local)
    if not local.is_dir():
        raise StorageError(f"{local}: not a directory")
    n = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(local).as_posix()}".lstrip("/")
        client.upload_file(str(path), bucket, key)
        n += 1
    log.info("uploaded %d files to %s", n, uri)
    return n


def download_dir(uri: str, local: str | Path, client=None) -> int:
    """Download every object under ``uri`` into ``local``; returns the number of files."""
    bucket, prefix = split_uri(uri)
    client = client or _client()
    local = Path(local)
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else ""):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):].lstrip("/")
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
            n += 1
    if n == 0:
        raise StorageError(f"{uri}: no objects found")
    log.info("downloaded %d files from %s", n, uri)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.remote", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="op", required=True)
    d = sub.add_parser("download")
    d.add_argument("uri")
    d.add_argument("local")
    u = sub.add_parser("upload")
    u.add_argument("local")
    u.add_argument("uri")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        if args.op == "download":
            download_dir(args.uri, args.local)
        else:
            upload_dir(args.local, args.uri)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
