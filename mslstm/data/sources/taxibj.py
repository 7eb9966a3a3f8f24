"""TaxiBJ crowd flows, read from the four HDF5 files as published.

Files at ``data.path``: ``BJ13_M32x32_T30_InOut.h5`` ... ``BJ16_M32x32_T30_InOut.h5``, each with ``data``
(N, 2, 32, 32) inflow/outflow and ``date`` (N,) ``b"YYYYMMDDSS"`` half-hour slots (SS = 01..48). The slots of all
files are put in time order; sequences take consecutive slots only (a gap in ``date`` never falls inside one), a new
one every ``data.sequence_stride`` slots (the authors: 1). The last ``data.test_weeks`` weeks are test, the
``data.val_weeks`` weeks before them val, the rest train; windows are cut inside each split, so a gap-free run of N
slots gives N - T + 1 windows at stride 1. Negative counts become 0 (as the authors do); min-max scaling is fitted
on the train part only, over the kept channels (``data.minmax_channels: kept``) or over inflow and outflow together
(``both``, the authors' ``MinMaxNormalization`` fitted on the two-flow array), and recorded in meta.json (val/test
values beyond it are clipped to it). ``data.channels``: ``both`` (inflow, outflow) or ``inflow`` (the authors').
``data.quantize: uint8`` stores ``floor(255 * scaled)`` as uint8 (the authors' ``(x * 255).astype(np.uint8)``);
``data.window_order: newest-first`` stores each window newest slot first (the authors' loader stacks
[t-1, t-2, ..., t-T], so the model sees the newest slots, newest first, and predicts the older ones).
See docs/protocol.md for every difference from mazhf/MS-RNN util/load_taxibj.py.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from mslstm.data.sources import DataSource, register_source
from mslstm.data.sources._frames import (
    SplitWriter, check_increasing, check_size, crop_frames, cut_sequences, require_splits, resize_frames, split_runs,
)
from mslstm.errors import DataError

log = logging.getLogger(__name__)

FILE_GLOB = "BJ*_M32x32_T30_InOut.h5"
FILE_RE = re.compile(r"^BJ(\d{2})_M32x32_T30_InOut\.h5$")
EXPECTED_YEARS = (13, 14, 15, 16)
SLOT = np.timedelta64(30, "m")


def list_files(root: str | Path) -> list[Path]:
    """The ``BJYY_M32x32_T30_InOut.h5`` files in ``root``, by year."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: TaxiBJ folder not found; set data.path to the folder holding "
                        "BJ13_M32x32_T30_InOut.h5 ... BJ16_M32x32_T30_InOut.h5")
    files = sorted(p for p in root.glob(FILE_GLOB) if FILE_RE.match(p.name))
    if not files:
        raise DataError(f"{root}: no TaxiBJ files {FILE_GLOB}; put BJ13..BJ16_M32x32_T30_InOut.h5 there")
    years = {int(FILE_RE.match(p.name).group(1)) for p in files}
    missing = [f"BJ{y}_M32x32_T30_InOut.h5" for y in EXPECTED_YEARS if y not in years]
    if missing:
        log.warning("%s: %s missing; using the %d file(s) present", root, ", ".join(missing), len(files))
    return files


def parse_dates(raw: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    """``b"YYYYMMDDSS"`` slots -> datetime64[m] (slot SS starts at (SS - 1) * 30 min) and the labels."""
    labels = [v.decode("ascii", "replace") if isinstance(v, (bytes, np.bytes_)) else str(v) for v in raw]
    out = np.empty(len(labels), dtype="datetime64[m]")
    for i, s in enumerate(labels):
        if len(s) != 10 or not s.isdigit() or not 1 <= int(s[8:]) <= 48:
            raise DataError(f"{path}: date[{i}] = {s!r} is not YYYYMMDDSS with SS in 01..48; the file is not "
                            "a TaxiBJ file")
        try:
            day = np.datetime64(f"{s[:4]}-{s[4:6]}-{s[6:8]}", "m")
        except ValueError as exc:
            raise DataError(f"{path}: date[{i}] = {s!r} is not a calendar date") from exc
        out[i] = day + (int(s[8:]) - 1) * SLOT
    return out, labels


def read_file(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(data float32 (N, 2, H, W), times datetime64[m] (N,), labels)`` of one TaxiBJ file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            for key in ("data", "date"):
                if key not in f:
                    raise DataError(f"{path}: no dataset {key!r} (has {sorted(f)}); not a TaxiBJ InOut file")
            data = np.asarray(f["data"][()], dtype=np.float32)
            dates = np.asarray(f["date"][()])
    except OSError as exc:
        raise DataError(f"{path}: cannot read as HDF5 ({exc}); the file is corrupt, re-download it") from exc
    if data.ndim != 4 or data.shape[1] != 2:
        raise DataError(f"{path}: data has shape {tuple(data.shape)}, expected (N, 2, H, W) inflow/outflow")
    if dates.ndim != 1 or dates.shape[0] != data.shape[0]:
        raise DataError(f"{path}: date has shape {tuple(dates.shape)} but data has {data.shape[0]} slots")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: data holds NaN/Inf values; clean the file")
    times, labels = parse_dates(dates, path)
    return data, times, labels


def load_all(root: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    """Every file's slots, concatenated in time order (checked strictly increasing)."""
    files = list_files(root)
    parts = [read_file(p) for p in files]
    check_same_grid(files, [p[0].shape[1:] for p in parts])
    order = np.argsort([p[1][0] for p in parts], kind="stable")
    data = np.concatenate([parts[i][0] for i in order])
    times = np.concatenate([parts[i][1] for i in order])
    labels = [f"{files[i].name}:{lab}" for i in order for lab in parts[i][2]]
    check_increasing(times, labels, str(root))
    return data, times, labels, [files[i] for i in order]


def check_same_grid(files: list[Path], shapes: list[tuple[int, ...]]) -> None:
    """Every file must hold frames of one shape; the file that differs from the others (the most common shape;
    on a tie, the first file's) is named."""
    if len(set(shapes)) <= 1:
        return
    counts: dict[tuple[int, ...], int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    ref = max(counts, key=lambda s: (counts[s], -shapes.index(s)))
    ref_file = files[shapes.index(ref)]
    odd = next(i for i, s in enumerate(shapes) if s != ref)
    raise DataError(f"{files[odd]}: frames of shape {tuple(shapes[odd])} where {ref_file.name} holds "
                    f"{tuple(ref)}; every file must be of one data set (BJ13..BJ16_M32x32_T30_InOut.h5)")


def split_bounds(times: np.ndarray, test_weeks: int, val_weeks: int) -> dict[str, tuple[int, int]]:
    """Index ranges of train/val/test: the last ``test_weeks`` weeks, the ``val_weeks`` before, the rest."""
    end = times[-1] + SLOT
    t_test = end - np.timedelta64(7 * test_weeks, "D")
    t_val = t_test - np.timedelta64(7 * val_weeks, "D")
    i_test = int(np.searchsorted(times, t_test))
    i_val = int(np.searchsorted(times, t_val))
    return {"train": (0, i_val), "val": (i_val, i_test), "test": (i_test, len(times))}


def runs_by_split(times: np.ndarray, bounds: dict[str, tuple[int, int]]) -> dict[str, list[tuple[int, int]]]:
    """Consecutive-slot runs inside each split (runs never cross a split boundary or a gap)."""
    out = {}
    for split, (a, b) in bounds.items():
        out[split] = [(a + s, a + e) for s, e in split_runs(times[a:b], SLOT)]
    return out


def quantize_uint8(scaled: np.ndarray) -> np.ndarray:
    """The authors' 8-bit stage: ``(x * 255).astype(np.uint8)`` of values in [0, 1], i.e. floor, as uint8."""
    return np.floor(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def build(ctx: Any) -> dict[str, Any]:
    """Read the four years, split by time, fit min-max on train, cut consecutive-slot sequences (float32, or uint8
    with ``data.quantize: uint8``)."""
    from mslstm.data.dataset import SPLITS, make_meta

    d, root = ctx.data, Path(ctx.path)
    total = d.input_frames + d.output_frames
    data, times, labels, files = load_all(root)
    negative = int((data < 0).sum())
    if negative:
        log.info("%s: %d negative counts set to 0", root, negative)
        np.maximum(data, 0, out=data)
    bounds = split_bounds(times, d.test_weeks, d.val_weeks)
    for split in SPLITS:
        a, b = bounds[split]
        if b <= a:
            raise DataError(f"{root}: {len(times)} slots from {labels[0]} to {labels[-1]} leave split {split!r} "
                            f"empty with data.test_weeks={d.test_weeks}, data.val_weeks={d.val_weeks}; lower them "
                            "or add files")
    a, b = bounds["train"]
    fit = data[a:b] if d.minmax_channels == "both" else (data[a:b, :1] if d.channels == "inflow" else data[a:b])
    lo, hi = float(fit.min()), float(fit.max())
    if d.channels == "inflow":
        data = np.ascontiguousarray(data[:, :1])
    if not hi > lo:
        raise DataError(f"{root}: the training slots are constant ({lo:g}); min-max scaling needs varying data")
    np.clip(data, lo, hi, out=data)  # val/test beyond the train range
    data = resize_frames(crop_frames(data, d.crop, str(root)), d.frame_size)
    np.clip(data, lo, hi, out=data)
    if d.quantize == "uint8":
        data = quantize_uint8((data.astype(np.float64) - lo) / (hi - lo))
    check_size(data.shape[-2], data.shape[-1], ctx.size_factor, ctx.size_why, str(root))
    runs = runs_by_split(times, bounds)
    newest_first = d.window_order == "newest-first"
    with SplitWriter(ctx.staging, data.dtype) as writer:
        for split in SPLITS:
            for s, e in runs[split]:
                seqs = cut_sequences(data[s:e], total, d.frame_stride, d.sequence_stride)
                writer.append(split, seqs[:, ::-1] if newest_first else seqs)
        infos = writer.close()
    longest = {split: max((e - s for s, e in runs[split]), default=0) for split in SPLITS}
    require_splits(infos, str(root), total,
                   f"the longest runs of consecutive slots per split are {longest}; lower data.input_frames / "
                   "output_frames / frame_stride or change data.test_weeks / val_weeks")
    gaps = sum(len(r) for r in runs.values()) - len(SPLITS)
    log.info("TaxiBJ %s: %d slots, %d gaps, min-max [%g, %g] fitted on train (%s channels)%s%s", root, len(times),
             gaps, lo, hi, d.minmax_channels, ", 8-bit" if d.quantize == "uint8" else "",
             ", windows newest first" if newest_first else "")
    quantized = d.quantize == "uint8"
    return make_meta(
        infos, dtype="uint8" if quantized else "float32", input_frames=d.input_frames,
        output_frames=d.output_frames, value_range=(0, 255) if quantized else (lo, hi),
        source=f"taxibj:{root.name}", raw_hash=ctx.raw["raw_hash"],
        taxibj={"files": [p.name for p in files], "channels": d.channels, "minmax": [lo, hi], "fitted_on": "train",
                "minmax_channels": d.minmax_channels, "quantize": d.quantize, "window_order": d.window_order,
                "sequence_stride": d.sequence_stride or total,
                "slots": {s: bounds[s][1] - bounds[s][0] for s in SPLITS}, "gaps": gaps,
                "first": labels[0], "last": labels[-1]},
    )


def check(d: Any) -> None:
    """``ValueError("key: reason")`` for bad TaxiBJ keys."""
    if d.test_weeks < 1 or d.val_weeks < 1:
        raise ValueError(f"test_weeks, val_weeks: must be >= 1 (got {d.test_weeks}, {d.val_weeks})")


register_source(DataSource(
    "taxibj", "TaxiBJ crowd flows: the four BJ1x_M32x32_T30_InOut.h5 files in the folder at data.path",
    "file", build, needs_path=True, check=check,
))
