"""Helpers shared by the real-data sources (KTH, TaxiBJ, DWD): crop/resize, time runs, sequence cutting, and a
``.npy`` writer that grows one sequence block at a time (the dataset never has to fit in memory).

A *run* is a stretch of frames with no gap (one KTH video, consecutive TaxiBJ slots, consecutive radar scans);
sequences are cut inside runs only, so a gap never falls inside a sequence.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mslstm.errors import DataError

NPY_HEADER_BYTES = 256  # reserved .npy header (magic + version + length + padded dict); shape is filled in at close


# ------------------------------------------------------------------------------------------------- frames
def crop_frames(frames: np.ndarray, crop: Optional[Sequence[int]], where: str) -> np.ndarray:
    """``frames[..., top:top+height, left:left+width]`` for ``crop = [top, left, height, width]`` (None: as is)."""
    if not crop:
        return frames
    top, left, height, width = (int(v) for v in crop)
    h, w = frames.shape[-2:]
    if top + height > h or left + width > w:
        raise DataError(f"{where}: data.crop {list(crop)} does not fit the {h}x{w} frames; "
                        f"use top + height <= {h} and left + width <= {w}")
    return frames[..., top:top + height, left:left + width]


def resize_frames(frames: np.ndarray, size: Optional[Sequence[int]]) -> np.ndarray:
    """Resize (L, C, H, W) frames to ``size = [H, W]`` (bilinear, antialiased when shrinking); dtype kept."""
    if size is None or tuple(frames.shape[-2:]) == tuple(size):
        return frames
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    y = F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False, antialias=True)
    out = y.numpy()
    if frames.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(frames.dtype, copy=False)


# ---------------------------------------------------------------------------------------------------- runs
def split_runs(times: np.ndarray, step: np.timedelta64) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` index ranges of ``times`` (sorted datetime64) in which each stamp is ``step``
    after the previous one."""
    if len(times) == 0:
        return []
    breaks = np.flatnonzero(np.diff(times) != step) + 1
    edges = [0, *breaks.tolist(), len(times)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:])]


def check_increasing(times: np.ndarray, labels: Sequence[str], where: str) -> None:
    """Time stamps must be strictly increasing (no duplicate, none out of order)."""
    d = np.diff(times)
    bad = np.flatnonzero(d <= np.timedelta64(0))
    if bad.size:
        i = int(bad[0])
        what = "repeats" if d[i] == np.timedelta64(0) else "goes back in time after"
        raise DataError(f"{where}: time stamp {labels[i + 1]} {what} {labels[i]}; remove the duplicate or "
                        "out-of-order file/slot")


def window_starts(length: int, total: int, frame_stride: int, sequence_stride: int) -> range:
    """Start indices (in raw frames) of the sequences cut from a run of ``length`` frames.

    A sequence takes ``total`` frames ``frame_stride`` apart; consecutive sequences start ``sequence_stride``
    sampled frames apart (0: ``total``, i.e. back to back).
    """
    span = (total - 1) * frame_stride + 1
    step = (sequence_stride or total) * frame_stride
    return range(0, max(0, length - span + 1), step)


def cut_sequences(run: np.ndarray, total: int, frame_stride: int, sequence_stride: int) -> np.ndarray:
    """(L, C, H, W) run -> (N, total, C, H, W) sequences (a copy; N may be 0)."""
    starts = window_starts(run.shape[0], total, frame_stride, sequence_stride)
    if len(starts) == 0:
        return np.empty((0, total, *run.shape[1:]), dtype=run.dtype)
    idx = np.asarray(starts)[:, None] + np.arange(total)[None, :] * frame_stride
    return run[idx]


class StreamCutter:
    """Cut sequences from frames that arrive one at a time (same windows as :func:`window_starts`);
    :meth:`reset` at every gap."""

    def __init__(self, total: int, frame_stride: int, sequence_stride: int) -> None:
        self.stride = frame_stride
        self.span = (total - 1) * frame_stride + 1
        self.step = (sequence_stride or total) * frame_stride
        self.buf: deque[np.ndarray] = deque(maxlen=self.span)
        self.seen = 0

    def reset(self) -> None:
        self.buf.clear()
        self.seen = 0

    def push(self, frame: np.ndarray) -> Optional[np.ndarray]:
        """Add the next frame of the run; return a (T, ...) sequence when one ends here, else None."""
        self.buf.append(frame)
        self.seen += 1
        k = self.seen - self.span
        if k >= 0 and k % self.step == 0:
            return np.stack(list(self.buf)[:: self.stride])
        return None


# -------------------------------------------------------------------------------------------- npy appender
class NpyAppender:
    """Write an (N, ...) ``.npy`` file block by block when N is not known in advance.

    The header is reserved at a fixed size and rewritten with the final N at :meth:`close`; the file is a plain
    ``.npy`` that ``np.load(..., allow_pickle=False)`` and memory-mapping read.
    """

    def __init__(self, path: str | os.PathLike, item_shape: Sequence[int], dtype: Any) -> None:
        self.path = Path(path)
        self.item_shape = tuple(int(s) for s in item_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._fh = open(self.path, "wb")
        self._fh.write(self._header(0))

    def _header(self, n: int) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (n, *self.item_shape)}
        text = repr(d).encode("latin1")
        pad = NPY_HEADER_BYTES - 10 - len(text) - 1
        if pad < 0:
            raise DataError(f"{self.path}: .npy header too long for shape {d['shape']}")
        return b"\x93NUMPY\x01\x00" + (NPY_HEADER_BYTES - 10).to_bytes(2, "little") + text + b" " * pad + b"\n"

    def append(self, block: np.ndarray) -> None:
        if block.shape[0] == 0:
            return
        if tuple(block.shape[1:]) != self.item_shape:
            raise DataError(f"{self.path}: block of shape {tuple(block.shape)} does not match {self.item_shape}")
        self._fh.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.count += int(block.shape[0])

    def abort(self) -> None:
        """Close the file without finishing it (the caller's staging folder is discarded)."""
        if not self._fh.closed:
            self._fh.close()

    def close(self) -> list[int]:
        """Finish the file; return its shape."""
        if not self._fh.closed:
            self._fh.seek(0)
            self._fh.write(self._header(self.count))
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        return [self.count, *self.item_shape]


@dataclass
class SplitWriter:
    """One :class:`NpyAppender` per split in a staging folder (``<split>.npy``), created on first use. Use it as a
    context manager: on an error every file is closed unfinished (prepare_data then drops the staging folder)."""

    folder: Path
    dtype: Any
    writers: dict[str, NpyAppender] | None = None

    def append(self, split: str, block: np.ndarray) -> None:
        if self.writers is None:
            self.writers = {}
        if split not in self.writers:
            self.writers[split] = NpyAppender(self.folder / f"{split}.npy", block.shape[1:], self.dtype)
        self.writers[split].append(block)

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            for w in (self.writers or {}).values():
                w.abort()

    def close(self) -> dict[str, dict[str, Any]]:
        """``{split: {"file", "shape"}}`` for meta.json."""
        out = {}
        for split, w in (self.writers or {}).items():
            out[split] = {"file": w.path.name, "shape": w.close()}
        return out


def check_size(h: int, w: int, factor: int, why: str, where: str) -> None:
    """The processed frames must fit the model: H and W multiples of ``factor``."""
    if h % factor or w % factor:
        raise DataError(f"{where}: frames come out {h}x{w}, not divisible by {factor} ({why}); set data.frame_size "
                        f"(or data.crop) to multiples of {factor}")


def require_splits(infos: dict[str, Any], where: str, total: int, hint: str) -> None:
    """Every split must have at least one sequence."""
    from mslstm.data.dataset import SPLITS

    for split in SPLITS:
        if split not in infos or infos[split]["shape"][0] == 0:
            raise DataError(f"{where}: split {split!r} gets no sequence of {total} frames "
                            f"(data.input_frames + data.output_frames); {hint}")
