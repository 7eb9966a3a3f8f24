"""The processed-dataset contract: ``{train,val,test}.npy`` of shape (N, T, C, H, W) + ``meta.json``.

Raw values are stored as written (uint8 or float32, never pickled) and mapped to [0, 1] on read with the scaling
recorded in ``meta.json``: ``value = raw * scale + offset``.

Writing (used by the data step and by tests that need a tiny dataset)::

    from mslstm.data.dataset import write_dataset
    write_dataset(out_dir, {"train": a, "val": b, "test": c}, input_frames=10, output_frames=10)

Reading::

    from mslstm.data.dataset import open_split, read_meta, VideoDataset
    ds = VideoDataset(data_dir, "train")
    x = ds[0]                      # float32 (T, C, H, W) in [0, 1]
    xb = ds.get_batch([3, 1, 2])   # float32 (B, T, C, H, W), no per-item collation
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mslstm.errors import DataError
from mslstm.io import require_file, save_npy, write_json

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
META_FILE = "meta.json"
META_KEYS: tuple[str, ...] = (
    "dtype", "scale", "offset", "value_range", "channels", "frame_size",
    "input_frames", "output_frames", "splits", "source", "raw_hash",
)
SUPPORTED_DTYPES: tuple[str, ...] = ("uint8", "float32")


# ----------------------------------------------------------------------------------------------------------- scaling
def default_value_range(dtype: Any, declared: Sequence[float] | None = None,
                        source: str | os.PathLike = "data") -> tuple[float, float]:
    """The declared range, else the one assumed when none is stated: [0, 255] for uint8, [0, 1] for floats.

    Other dtypes must declare one: a :class:`DataError` naming ``source`` says to set ``data.value_range``.
    """
    if declared is not None:
        return float(declared[0]), float(declared[1])
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return 0.0, 255.0
    if dt.kind == "f":
        return 0.0, 1.0
    raise DataError(f"{source}: dtype {dt} has no default value range; set data.value_range: [low, high]")


def scale_offset(value_range: Sequence[float]) -> tuple[float, float]:
    """``(scale, offset)`` mapping ``value_range`` onto [0, 1]: ``value = raw * scale + offset``."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise DataError(f"value_range: high must exceed low (got [{lo}, {hi}])")
    scale = 1.0 / (hi - lo)
    return scale, (-lo * scale) + 0.0  # + 0.0 turns -0.0 into 0.0


# ----------------------------------------------------------------------------------------------------------- writing
def write_split(out_dir: str | os.PathLike, split: str, array: np.ndarray) -> dict[str, Any]:
    """Write ``out_dir/<split>.npy`` atomically (never pickled); return ``{"file", "shape"}`` for meta.json.

    ``array`` must be (N, T, C, H, W) (uint8 or float32); (N, T, H, W) gets C = 1 added.
    """
    arr = np.asarray(array)
    if arr.ndim == 4:
        arr = arr[:, :, None]
    if arr.ndim != 5:
        raise DataError(f"{split}: expected an array of shape (N, T, C, H, W), got shape {tuple(arr.shape)}")
    if arr.dtype.name not in SUPPORTED_DTYPES:
        raise DataError(f"{split}: dtype {arr.dtype} not supported (use {' or '.join(SUPPORTED_DTYPES)})")
    path = Path(out_dir) / f"{split}.npy"
    save_npy(path, arr)
    return {"file": path.name, "shape": [int(s) for s in arr.shape]}


def make_meta(
    splits: Mapping[str, Mapping[str, Any]],
    *,
    dtype: str,
    input_frames: int,
    output_frames: int,
    value_range: Sequence[float] | None = None,
    source: str = "unknown",
    raw_hash: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """Build the ``meta.json`` dict from the split infos returned by :func:`write_split`."""
    if not splits:
        raise DataError("meta.json: at least one split is needed")
    first = next(iter(splits.values()))["shape"]
    vr = default_value_range(dtype, value_range, "meta.json")
    scale, offset = scale_offset(vr)
    meta = {
        "dtype": str(np.dtype(dtype)),
        "scale": scale,
        "offset": offset,
        "value_range": list(vr),
        "channels": int(first[2]),
        "frame_size": [int(first[3]), int(first[4])],
        "input_frames": int(input_frames),
        "output_frames": int(output_frames),
        "splits": {name: {"file": info["file"], "shape": list(info["shape"])} for name, info in splits.items()},
        "source": source,
        "raw_hash": raw_hash,
    }
    meta.update(extra)
    return meta


def write_meta(out_dir: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write ``out_dir/meta.json`` atomically (after checking it has every contract key)."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise DataError(f"{Path(out_dir) / META_FILE}: missing keys {missing}")
    return write_json(Path(out_dir) / META_FILE, dict(meta))


def write_dataset(
    out_dir: str | os.PathLike,
    splits: Mapping[str, np.ndarray],
    *,
    input_frames: int,
    output_frames: int,
    value_range: Sequence[float] | None = None,
    source: str = "synthetic",
    raw_hash: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """Write every split then ``meta.json`` (last, so a dataset without meta.json is visibly incomplete)."""
    dtypes = {np.asarray(a).dtype.name for a in splits.values()}
    if len(dtypes) != 1:
        raise DataError(f"{out_dir}: all splits must share one dtype (got {sorted(dtypes)})")
    infos = {name: write_split(out_dir, name, arr) for name, arr in splits.items()}
    meta = make_meta(
        infos, dtype=dtypes.pop(), input_frames=input_frames, output_frames=output_frames,
        value_range=value_range, source=source, raw_hash=raw_hash, **extra,
    )
    write_meta(out_dir, meta)
    return meta


# ----------------------------------------------------------------------------------------------------------- reading
def read_meta(data_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``data_dir/meta.json``; raise :class:`DataError` naming the file when missing or bad."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise DataError(f"{path}: meta.json not found (run `mslstm data` to build the dataset)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise DataError(f"{path}: missing keys {missing}")
    if not isinstance(meta["splits"], dict) or not meta["splits"]:
        raise DataError(f"{path}: 'splits' must be a non-empty object")
    return meta


def check_dataset_matches(mcfg: Any, meta: Mapping[str, Any], data_dir: str | os.PathLike,
                           splits: Sequence[str] = ("train", "val"), error: type[Exception] = DataError,
                           model_from: str = "the model section") -> None:
    """Check that the ``splits`` of a dataset (its ``meta.json``) fit the model config ``mcfg``.

    A missing, malformed or empty split is a :class:`DataError`; sequences too short for
    ``input_frames + output_frames`` or frames of another channel count / size raise ``error`` (training passes
    ``ConfigError``: the model section is to change; evaluation keeps ``DataError``: the checkpoint is fixed).
    Every message names the file.
    """
    data_dir = Path(data_dir)
    want_t = mcfg.input_frames + mcfg.output_frames
    for split in splits:
        info = meta["splits"].get(split)
        if info is None:
            raise DataError(f"{data_dir / META_FILE}: no {split!r} split (have {sorted(meta['splits'])})")
        path = data_dir / info.get("file", f"{split}.npy")
        shape = list(info.get("shape", []))
        if len(shape) != 5:
            raise DataError(f"{path}: expected (N, T, C, H, W), meta.json says {shape}")
        n, t, c, h, w = shape
        if n < 1:
            raise DataError(f"{path}: the split holds no sequences")
        if t < want_t:
            raise error(f"{path}: sequences have {t} frames but {model_from} needs model.input_frames + "
                        f"model.output_frames = {want_t}; regenerate the data or lower the frame counts")
        if c != mcfg.in_channels or [h, w] != list(mcfg.frame_size):
            raise error(f"{path}: frames are {c}x{h}x{w} but {model_from} expects model.in_channels x "
                        f"model.frame_size = {mcfg.in_channels}x{mcfg.frame_size[0]}x{mcfg.frame_size[1]}; "
                        "use data of that shape or change the model")


def load_npy(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """``np.load`` a ``.npy`` memory-mapped, never unpickling; every failure is a one-line DataError naming it."""
    path = require_file(path, DataError)
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        msg = str(exc)
        if "pickle" in msg.lower() or "object" in msg.lower():
            raise DataError(
                f"{path}: holds Python objects (pickled data is never loaded); save a numeric array"
            ) from exc
        raise DataError(f"{path}: not a readable .npy file (truncated or corrupt: {msg})") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file (truncated or corrupt: {exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path}: expected a single array (.npy), got {type(arr).__name__}")
    return arr


def open_split(data_dir: str | os.PathLike, split: str) -> np.ndarray:
    """Memory-map ``data_dir/<split>.npy`` (raw values, shape (N, T, C, H, W)); checked against meta.json."""
    meta = read_meta(data_dir)
    info = meta["splits"].get(split)
    if info is None:
        raise DataError(f"{Path(data_dir) / META_FILE}: no split {split!r} (have {sorted(meta['splits'])})")
    path = Path(data_dir) / info.get("file", f"{split}.npy")
    arr = load_npy(path)
    if arr.ndim != 5:
        raise DataError(f"{path}: expected rank 5 (N, T, C, H, W), got shape {tuple(arr.shape)}")
    if list(arr.shape) != list(info.get("shape", arr.shape)):
        raise DataError(f"{path}: shape {list(arr.shape)} differs from meta.json {info['shape']}")
    return arr


class VideoDataset(Dataset):
    """A torch ``Dataset`` over one split: ``ds[i] -> float32 (T, C, H, W)`` in [0, 1].

    Attributes:
        meta: the parsed meta.json.
        array: the memory-mapped raw array (N, T, C, H, W).
        scale, offset: value = raw * scale + offset.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = "train") -> None:
        self.data_dir = Path(data_dir)
        self.split = split
        self.meta = read_meta(data_dir)
        self.array = open_split(data_dir, split)
        self.scale = float(self.meta["scale"])
        self.offset = float(self.meta["offset"])

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def _to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        x = np.asarray(raw, dtype=np.float32)
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        if self.offset != 0.0:
            x = x + np.float32(self.offset)
        return torch.from_numpy(np.ascontiguousarray(x))

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.split}: index {index} out of range for {n} sequences")
        return self._to_tensor(self.array[index])

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Float32 (B, T, C, H, W) of the given sequences in one fancy-indexed read (no per-item collation)."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._to_tensor(self.array[idx])

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers started with spawn pickle the dataset: send the path, not the mapped array's bytes.
        state = self.__dict__.copy()
        state["array"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.array = open_split(self.data_dir, self.split)

    def __repr__(self) -> str:
        return f"VideoDataset({str(self.data_dir)!r}, {self.split!r}, shape={tuple(self.array.shape)})"

