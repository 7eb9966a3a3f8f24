"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash or a bad input never leaves a half-written file behind and never destroys what was there before. A full
disk, a read-only mount or a folder without write permission is an :class:`~mslstm.errors.OutputError` naming the
path (and, for a full disk, the bytes needed and free), never a raw ``OSError`` traceback: :func:`writing` maps
them, :func:`require_free_space` checks before a write whose size is known, :func:`ensure_writable_dir` checks a
folder before a step starts.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mslstm.errors import OutputError

# errno values that mean "this place cannot be written" (as opposed to a bug or a bad input)
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_OR_READONLY = SPACE_ERRNOS | {errno.EROFS}
WRITE_ERRNOS = FULL_OR_READONLY | {errno.EACCES, errno.EPERM}


# ------------------------------------------------------------------------------------------- space and permissions
def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free for an unprivileged writer on the file system of ``path`` (its nearest existing folder)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
        return int(st.f_bavail * st.f_frsize)
    except OSError:
        return int(shutil.disk_usage(p).free)


def require_free_space(path: str | os.PathLike, needed: int, what: str = "") -> None:
    """Raise :class:`OutputError` naming ``path``, the bytes needed and free when fewer than ``needed`` are free."""
    free = free_bytes(path)
    if free < needed:
        raise OutputError(f"{path}: not enough free space{' for ' + what if what else ''}: needs {int(needed):,} "
                          f"bytes, {free:,} free; free some space or write elsewhere")


def output_error(path: str | os.PathLike, exc: BaseException, needed: int | None = None,
                 codes: frozenset[int] = WRITE_ERRNOS) -> OutputError | None:
    """The one-line :class:`OutputError` for an ``OSError`` whose errno (one of ``codes``) means ``path`` cannot be
    written (None for any other error)."""
    code = getattr(exc, "errno", None)
    if code not in codes:
        return None
    if code in SPACE_ERRNOS:
        need = f"needs {int(needed):,} bytes, " if needed else ""
        return OutputError(f"{path}: no space left on the device ({need}{free_bytes(path):,} bytes free); "
                           "free some space or write elsewhere")
    if code == errno.EROFS:
        return OutputError(f"{path}: read-only file system; write the output to a writable folder")
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(f"{path}: permission denied; write the output to a folder you may write to")
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike, needed: int | None = None, codes: frozenset[int] = WRITE_ERRNOS
            ) -> Iterator[None]:
    """Turn a full disk / read-only / permission ``OSError`` raised in the block into an :class:`OutputError`
    naming ``path``; other errors pass unchanged. A block that also reads the user's files passes
    ``codes=FULL_OR_READONLY`` (a file it may not read is not an output problem)."""
    try:
        yield
    except OSError as exc:
        err = output_error(path, exc, needed, codes)
        if err is None:
            raise
        raise err from exc


def ensure_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` when missing and check that a file can be created in it (before a step starts work)."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    return folder


# ---------------------------------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    A full disk or read-only folder (while creating, writing or renaming) is an :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the file the permissions a plain open() would (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        with writing(path, codes=FULL_OR_READONLY):
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def require_file(path: str | os.PathLike, error: type[Exception], what: str = "file", empty_hint: str = "") -> Path:
    """``path`` as a Path when it is a non-empty regular file; else ``error("<path>: <what> not found|is empty")``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise error(f"{path}: {what} is empty{empty_hint}")
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as ``.npy`` atomically (never pickled)."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
