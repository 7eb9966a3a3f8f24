"""The DVC-tracked raw data folder (``data/``, versioned by the top-level ``data.dvc`` as ``dvc add data`` would).

``ensure_raw_data`` makes ``data/`` match ``data.dvc``:

1. present and its DVC hash equals the one recorded -> nothing to do;
2. else, when a DVC remote is configured (``data.dvc_remote`` or the repository's default remote) ->
   ``dvc pull data.dvc``;
3. else (or when the pull fails) for the shipped-digit sources -> rebuild the digit pool from the package and
   check that its hash equals the recorded one; a mismatch is a :class:`~mslstm.errors.DataError` saying so,
   and the existing folder is left as it was.

Hashes are computed with DVC's own code (``dvc_data``), so they are exactly what ``dvc add`` records.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mslstm.errors import DataError, StorageError
from mslstm.io import save_npy, write_json

log = logging.getLogger(__name__)

POOL_FILE = "digits.npy"
MANIFEST_FILE = "manifest.json"


# ------------------------------------------------------------------------------------------------------ hashing
def dvc_hash(path: str | os.PathLike) -> dict[str, Any]:
    """DVC's md5 of a file or folder (``"<md5>.dir"`` for folders), with size and file count, like ``dvc add``."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found")
    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory(prefix="mslstm-dvc-odb-") as tmp:
        odb = HashFileDB(fs, tmp)
        _, meta, obj = build(odb, str(path.resolve()), fs, "md5", dry_run=True)
    out = {"md5": obj.hash_info.value, "size": meta.size}
    if meta.isdir:
        out["nfiles"] = meta.nfiles
    return out


def dvc_file_for(raw_dir: str | os.PathLike) -> Path:
    """``data`` -> ``data.dvc`` (beside the folder)."""
    raw_dir = Path(raw_dir)
    return raw_dir.with_name(raw_dir.name + ".dvc")


def read_dvc_file(dvc_file: str | os.PathLike) -> dict[str, Any]:
    """The single ``outs`` entry of a ``.dvc`` file (``{"md5", "size", "nfiles", "path", ...}``)."""
    dvc_file = Path(dvc_file)
    try:
        doc = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{dvc_file}: cannot read ({exc})") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"{dvc_file}: not valid YAML ({exc})") from exc
    outs = doc.get("outs") if isinstance(doc, dict) else None
    if not isinstance(outs, list) or len(outs) != 1 or not isinstance(outs[0], dict) or "md5" not in outs[0]:
        raise DataError(f"{dvc_file}: expected one entry under 'outs' with an md5 (as `dvc add` writes)")
    return outs[0]


# ------------------------------------------------------------------------------------------------- digit pool
def pool_dir(source: str) -> str | None:
    """Folder under ``raw_dir`` of a source's shipped pool (``DataSource.pool_dir``); None = nothing shipped."""
    from mslstm.data.sources import get_source

    return get_source(source).pool_dir


def _pool_dir(source: str) -> str:
    name = pool_dir(source)
    if name is None:
        raise DataError(f"data.source: {source!r} ships no digit pool to store in the raw data folder")
    return name


def write_digit_pool(raw_dir: str | os.PathLike, source: str, digits: np.ndarray) -> Path:
    """Write ``raw_dir/<pool>/digits.npy`` + ``manifest.json`` deterministically (same bytes everywhere)."""
    folder = Path(raw_dir) / _pool_dir(source)
    save_npy(folder / POOL_FILE, np.ascontiguousarray(digits, dtype=np.uint8))
    import hashlib

    write_json(folder / MANIFEST_FILE, {
        "source": source,
        "file": POOL_FILE,
        "dtype": "uint8",
        "shape": [int(s) for s in digits.shape],
        "sha256": hashlib.sha256(np.ascontiguousarray(digits, dtype=np.uint8).tobytes()).hexdigest(),
        "description": "digit pool of the Moving MNIST generator (uint8 (N, S, S), values 0..255)",
    })
    return folder


def read_digit_pool(raw_dir: str | os.PathLike, source: str) -> np.ndarray:
    """Load the pool written by :func:`write_digit_pool` (never unpickling)."""
    from mslstm.data.dataset import load_npy

    file = Path(raw_dir) / _pool_dir(source) / POOL_FILE
    pool = load_npy(file, mmap=False)
    if pool.ndim != 3 or pool.dtype != np.uint8:
        raise DataError(f"{file}: expected uint8 (N, S, S), "
                        f"got {pool.dtype} {tuple(pool.shape)}")
    return pool


def build_raw_dir(raw_dir: Path, source: str) -> Path:
    """Build the raw folder for a shipped-digit source in a staging folder beside ``raw_dir``; return it."""
    from mslstm.data.digits import load_digits

    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.", suffix=".tmp", dir=raw_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes 0700; the folder is renamed into place as is
    try:
        write_digit_pool(staging, source, load_digits(source))  # native size: hash independent of config
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def replace_dir(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target`` (renames; the old folder is removed only after the swap)."""
    target = Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------- DVC remote
def find_repo_root(start: Path) -> Path | None:
    """The DVC repository holding ``start`` (folder with ``.dvc/``), or None."""
    start = start.resolve()
    for p in (start, *start.parents):
        if (p / ".dvc").is_dir():
            return p
    return None


def configured_remote(repo_root: Path, name: str = "") -> str | None:
    """``name`` when that remote exists, else the repository's default remote, else None."""
    from dvc.config import Config, ConfigError

    try:  # DVC's own config loader (.dvc/config, config.local, user and system levels); no git needed
        conf = Config(dvc_dir=str(repo_root / ".dvc"))
    except ConfigError as exc:
        raise StorageError(f"{repo_root / '.dvc' / 'config'}: {exc}") from exc
    remotes = set(conf.get("remote", {}))
    default = conf.get("core", {}).get("remote")
    if name:
        if name not in remotes:
            raise StorageError(f"data.dvc_remote: no DVC remote {name!r} (have {sorted(remotes)}); "
                               f"`dvc remote add {name} s3://bucket/path`")
        return name
    return default or None


def remote_url(repo_root: Path, name: str) -> str:
    """The URL of DVC remote ``name`` ("" when it has none)."""
    from dvc.config import Config, ConfigError

    try:
        conf = Config(dvc_dir=str(repo_root / ".dvc"))
    except ConfigError as exc:
        raise StorageError(f"{repo_root / '.dvc' / 'config'}: {exc}") from exc
    return str(conf.get("remote", {}).get(name, {}).get("url", ""))


def _bounded_env(repo_root: Path, remote: str, limits: Any, folder: Path) -> dict[str, str]:
    """The environment of a bounded ``dvc pull``: botocore's attempts (``AWS_MAX_ATTEMPTS``) and, for an S3
    remote, its ``connect_timeout`` / ``read_timeout`` in a DVC config of the lowest level (system: the
    repository's, local and user settings of the remote still win)."""
    env = {**os.environ, "AWS_MAX_ATTEMPTS": str(int(limits.s3_max_attempts)), "AWS_RETRY_MODE": "standard"}
    if not remote_url(repo_root, remote).startswith("s3://"):
        return env
    from dvc.dirs import system_config_dir

    if os.path.isfile(os.path.join(system_config_dir(), "config")):
        log.debug("a DVC system config exists: the remote's own timeouts apply")   # never hide the admin's file
        return env
    (folder / "config").write_text(
        f"['remote \"{remote}\"']\n"
        f"    connect_timeout = {max(1, round(limits.s3_connect_timeout_s))}\n"
        f"    read_timeout = {max(1, round(limits.s3_read_timeout_s))}\n", encoding="utf-8")
    env["DVC_SYSTEM_CONFIG_DIR"] = str(folder)
    return env


def dvc_pull(dvc_file: Path, remote: str, repo_root: Path, limits: Any = None) -> None:
    """``dvc pull -r <remote> <dvc_file>`` (credentials and endpoint come from the environment / DVC config),
    bounded: an S3 remote's connect/read timeouts and attempts are ``limits.s3_connect_timeout_s`` /
    ``s3_read_timeout_s`` / ``s3_max_attempts`` unless the remote sets its own, and the whole pull is stopped
    after ``limits.dvc_timeout_s`` seconds (``limits``: the data section; None = its defaults)."""
    if limits is None:
        from mslstm.data.config import DataConfig

        limits = DataConfig()
    cmd = [sys.executable, "-m", "dvc", "pull", "-r", remote, str(dvc_file.resolve())]
    log.info("pulling %s from DVC remote %r (at most %g s)", dvc_file, remote, limits.dvc_timeout_s)
    with tempfile.TemporaryDirectory(prefix="mslstm-dvc-") as tmp:
        env = _bounded_env(repo_root, remote, limits, Path(tmp))
        proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            out, err = proc.communicate(timeout=limits.dvc_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise StorageError(f"{dvc_file}: `dvc pull -r {remote}` gave no result within {limits.dvc_timeout_s:g} s "
                               "and was stopped (data.dvc_timeout_s); is the remote reachable?") from None
        except BaseException:            # SIGTERM / Ctrl-C while waiting: the pull does not outlive the step
            proc.kill()
            proc.communicate()
            raise
    if proc.returncode != 0:
        msg = " ".join((err or out or "").split())[-400:]
        raise StorageError(f"{dvc_file}: `dvc pull -r {remote}` failed: {msg}")


# ----------------------------------------------------------------------------------------------------- main entry
def ensure_raw_data(data_cfg: Any, root: str | os.PathLike = ".") -> dict[str, Any]:
    """Make ``raw_dir`` match ``data.dvc`` (see module doc). Returns ``{"raw_dir", "raw_hash", "how"}``.

    ``how`` is ``present`` (already matching), ``pulled`` (dvc pull), ``rebuilt`` (from the shipped digits,
    hash verified) or ``untracked`` (no data.dvc: built/used as is, with a warning to ``dvc add`` it).
    """
    root = Path(root)
    raw_dir = root / data_cfg.raw_dir
    dvc_file = dvc_file_for(raw_dir)
    source = data_cfg.source
    shipped = pool_dir(source)
    rebuildable = shipped is not None
    pool_ok = (not rebuildable) or (raw_dir / shipped / POOL_FILE).is_file()

    if not dvc_file.is_file():
        if rebuildable and not pool_ok:
            staging = build_raw_dir(raw_dir, source)
            if raw_dir.exists():  # keep whatever else the user has in data/; add the pool
                target = raw_dir / shipped
                replace_dir(staging / shipped, target)
                shutil.rmtree(staging, ignore_errors=True)
            else:
                replace_dir(staging, raw_dir)
        log.warning("%s not found: %s is not versioned; run `dvc add %s` to track it", dvc_file, raw_dir, raw_dir.name)
        h = dvc_hash(raw_dir)["md5"] if raw_dir.exists() else ""
        return {"raw_dir": str(raw_dir), "raw_hash": h, "how": "untracked"}

    recorded = read_dvc_file(dvc_file)["md5"]
    if raw_dir.exists() and pool_ok:
        current = dvc_hash(raw_dir)["md5"]
        if current == recorded:
            return {"raw_dir": str(raw_dir), "raw_hash": recorded, "how": "present"}
        log.warning("%s: %s hashes to %s, data.dvc records %s", dvc_file, raw_dir, current, recorded)

    pull_error: Exception | None = None
    repo_root = find_repo_root(dvc_file.parent)
    remote = None
    if data_cfg.dvc_pull and repo_root is not None:
        remote = configured_remote(repo_root, data_cfg.dvc_remote)
    if remote:
        try:
            dvc_pull(dvc_file, remote, repo_root, data_cfg)
            current = dvc_hash(raw_dir)["md5"] if raw_dir.exists() else "<missing>"
            if current == recorded:
                return {"raw_dir": str(raw_dir), "raw_hash": recorded, "how": "pulled"}
            pull_error = DataError(f"{dvc_file}: pulled {raw_dir} hashes to {current}, not the recorded {recorded}")
        except StorageError as exc:
            pull_error = exc
        if not rebuildable:
            raise pull_error
        log.warning("%s; rebuilding %s from the shipped digits instead", pull_error, raw_dir)

    if not rebuildable:
        if raw_dir.exists():
            log.warning("%s: %s differs from the recorded hash %s and no DVC remote is configured; using it as is "
                        "(run `dvc add %s` to record it)", dvc_file, raw_dir, recorded, raw_dir.name)
            return {"raw_dir": str(raw_dir), "raw_hash": dvc_hash(raw_dir)["md5"], "how": "untracked"}
        raise DataError(f"{dvc_file}: {raw_dir} is missing and no DVC remote is configured to pull it from; "
                        "`dvc remote add -d ...` or put the files back")

    staging = build_raw_dir(raw_dir, source)
    try:
        rebuilt = dvc_hash(staging)["md5"]
        if rebuilt != recorded:
            raise DataError(
                f"{dvc_file}: hash mismatch: data.dvc records {recorded} but {raw_dir} rebuilt from source "
                f"{source!r} hashes to {rebuilt}; if the data changed on purpose, run `dvc add {raw_dir.name}` "
                "and commit data.dvc"
            )
        replace_dir(staging, raw_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("rebuilt %s from source %s (hash %s matches data.dvc)", raw_dir, source, recorded)
    return {"raw_dir": str(raw_dir), "raw_hash": recorded, "how": "rebuilt"}
