"""Readers of the user's video files: ``.npy`` / ``.npz`` / HDF5 arrays and the standard ``mnist_test_seq.npy``.

A :class:`VideoFile` presents any of them as (N, T, C, H, W) in its stored dtype, read in chunks of sequences
(``.npy`` memory-mapped, HDF5 sliced lazily; ``.npz`` members are zip entries and are read whole).
:func:`check_chunk` finds NaN/Inf and values outside the declared range. Every failure is a one-line
:class:`~mslstm.errors.DataError` that names the file and the problem. Pickles are never loaded.
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mslstm.data.dataset import load_npy
from mslstm.errors import DataError

log = logging.getLogger(__name__)

RANK = {"NTHW": 4, "TNHW": 4, "NTCHW": 5, "NTHWC": 5}
AXES = {"NTHW": "(N, T, H, W)", "TNHW": "(T, N, H, W)", "NTCHW": "(N, T, C, H, W)", "NTHWC": "(N, T, H, W, C)"}
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class VideoFile:
    """One video array file seen as (N, T, C, H, W).

    Attributes:
        path: the file.
        raw: the underlying array-like (np.memmap, np.ndarray or h5py.Dataset) in its stored layout.
        layout: axis order of ``raw``.
        shape: (N, T, C, H, W).
        dtype: stored dtype.
    """

    def __init__(self, path: Path, raw: Any, layout: str, handle: Any = None) -> None:
        self.path = path
        self.raw = raw
        self.layout = layout
        self._handle = handle
        shape = tuple(int(s) for s in raw.shape)
        if len(shape) != RANK[layout]:
            self.close()
            raise DataError(
                f"{path}: wrong rank: layout {layout} needs rank {RANK[layout]} {AXES[layout]}, got shape {shape}"
            )
        if layout == "NTHW":
            self.shape = (shape[0], shape[1], 1, shape[2], shape[3])
        elif layout == "TNHW":
            self.shape = (shape[1], shape[0], 1, shape[2], shape[3])
        elif layout == "NTCHW":
            self.shape = shape
        else:  # NTHWC
            self.shape = (shape[0], shape[1], shape[4], shape[2], shape[3])
        self.dtype = np.dtype(raw.dtype)
        if self.dtype.kind not in "uif":
            self.close()
            raise DataError(f"{path}: dtype {self.dtype} is not numeric; store uint8 or float frames")
        if 0 in self.shape:
            self.close()
            raise DataError(f"{path}: holds no frames (shape {self.shape} as (N, T, C, H, W))")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Sequences ``start:stop`` as an in-memory (n, T, C, H, W) array in the stored dtype."""
        try:
            if self.layout == "NTHW":
                out = np.asarray(self.raw[start:stop])[:, :, None]
            elif self.layout == "TNHW":
                out = np.asarray(self.raw[:, start:stop]).transpose(1, 0, 2, 3)[:, :, None]
            elif self.layout == "NTCHW":
                out = np.asarray(self.raw[start:stop])
            else:
                out = np.asarray(self.raw[start:stop]).transpose(0, 1, 4, 2, 3)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: cannot read sequences {start}:{stop} ({exc})") from exc
        return np.ascontiguousarray(out)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "VideoFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_video(path: str | os.PathLike, key: str = "", layout: str = "NTHW") -> VideoFile:
    """Open a ``.npy`` / ``.npz`` / HDF5 video array; ``key`` names the array inside ``.npz`` / HDF5."""
    path = Path(path)
    if layout not in RANK:
        raise DataError(f"data.layout: {layout!r} unknown; use one of {', '.join(RANK)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return VideoFile(path, load_npy(path, mmap=True), layout)
    if suffix == ".npz":
        return VideoFile(path, _read_npz(path, key), layout)
    if suffix in H5_SUFFIXES:
        return _open_h5(path, key, layout)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .npy, .npz or .h5")


def _read_npz(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            if not names:
                raise DataError(f"{path}: .npz holds no arrays")
            name = key or names[0]
            if name not in names:
                raise DataError(f"{path}: no array {name!r} in the .npz (has {names}); set data.key")
            return npz[name]
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{path}: array holds Python objects (pickled data is never loaded)") from exc
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file (truncated or corrupt: {exc})") from exc


def _open_h5(path: Path, key: str, layout: str) -> VideoFile:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from exc
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    if not key:
        if len(names) != 1:
            handle.close()
            raise DataError(f"{path}: {len(names)} datasets {names[:10]}; name one with data.key")
        key = names[0]
    obj = handle.get(key)
    if not isinstance(obj, h5py.Dataset):
        handle.close()
        raise DataError(f"{path}: no dataset {key!r} in the HDF5 file (has {names[:10]}); set data.key")
    return VideoFile(path, obj, layout, handle=handle)


def check_chunk(path: Path, chunk: np.ndarray, first: int, value_range: tuple[float, float]) -> None:
    """Raise a DataError when ``chunk`` (sequences ``first``...) holds NaN/Inf or values outside the range."""
    if chunk.dtype.kind == "f":
        bad = ~np.isfinite(chunk)
        if bad.any():
            n_nan = int(np.isnan(chunk).sum())
            n_inf = int(bad.sum()) - n_nan
            seq = first + int(np.argwhere(bad.reshape(chunk.shape[0], -1).any(axis=1))[0, 0])
            raise DataError(f"{path}: {n_nan} NaN and {n_inf} Inf values (first in sequence {seq}); clean the data")
    lo, hi = value_range
    cmin, cmax = chunk.min(), chunk.max()
    if cmin < lo or cmax > hi:
        raise DataError(
            f"{path}: values outside the declared range [{lo:g}, {hi:g}] (min {cmin:g}, max {cmax:g} in sequences "
            f"{first}..{first + chunk.shape[0] - 1}); fix the data or set data.value_range"
        )


def check_geometry(path: Path, shape: tuple[int, ...], total_frames: int, size_factor: int, what: str) -> None:
    """T must cover input + output frames; H and W must be multiples of the model's size factor."""
    n, t, c, h, w = shape
    if t < total_frames:
        raise DataError(
            f"{path}: sequences have T={t} frames, fewer than data.input_frames + data.output_frames = {total_frames}"
        )
    if h % size_factor or w % size_factor:
        raise DataError(
            f"{path}: frame size {h}x{w} is not divisible by {size_factor} ({what}); crop or pad the frames "
            "or change the model"
        )
