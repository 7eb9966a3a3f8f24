"""DWD German radar composites: RADOLAN binary files (RY 5-minute / RW hourly) or the authors' HDF5 layout.

``data.path`` is either

* a folder of RADOLAN composites as the DWD ships them, ``raa01-ry_10000-YYMMDDHHMM-dwd---bin`` (or ``-rw_``,
  optionally ``.gz`` / ``.bz2``), searched recursively; each is read with ``wradlib.io.read_radolan_composite``
  (ASCII header ending in ETX, then little-endian uint16 pixels whose low 12 bits are the value and whose flag bits
  mark no-data 0x2000 and clutter 0x8000); the header gives product, time, interval and precision; or
* an HDF5 file in the layout of the authors' ``RYDL.hdf5`` (mazhf/MS-RNN, taken from RainNet): one 2-D dataset
  per scan at the root, named by its time stamp ``YYYYMMDDHHMM``, values in mm per scan interval
  (``data.rain_unit: mm-per-step``; ``mm/h`` if the file holds rates).

Each scan becomes a rain rate R (mm/h; no-data -> 0), Z = 256 R^1.42, dBZ = 10 log10 Z, pixel = (dBZ + 10) / 70
clipped to [0, 1] (the authors' conversion, util/load_DWD.py); then ``data.crop`` and ``data.frame_size``. With
``data.quantize: uint8`` the cropped pixel is stored as floor(255 x pixel) before the resize, as the authors' 8-bit
PNG frames (their loader, util/load_hko.py, reads 8-bit PNGs and resizes them with cv2.resize), and the dataset is
uint8. Which of these steps is the authors' and which an assumption: docs/protocol.md. Sequences take
consecutive scans only (5-minute RY steps / hourly RW; a gap never falls inside one), ``data.frame_stride`` scans
apart (the authors use 6: 30 minutes). Splits: by year (``data.val_years``, ``data.test_years``; the authors use
train 2006-2014, val 2015, test 2016-2017) or, when both are empty, contiguous blocks in time by
``data.pool_fractions``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from mslstm.data.sources import DataSource, register_source
from mslstm.data.sources._frames import (
    SplitWriter, StreamCutter, check_increasing, check_size, crop_frames, require_splits, resize_frames,
)
from mslstm.errors import DataError

log = logging.getLogger(__name__)

RADOLAN_RE = re.compile(r"^raa01-(rw|ry)_10000-(\d{10})-dwd---bin(\.gz|\.bz2)?$")
PRODUCTS = ("RW", "RY")
H5_SUFFIXES = (".h5", ".hdf5", ".he5")


# ------------------------------------------------------------------------------------------------ conversion
def rain_to_dbz(rate: np.ndarray) -> np.ndarray:
    """Rain rate (mm/h) -> reflectivity (dBZ) with Z = 256 R^1.42 (R = 0 -> -inf)."""
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(256.0) + 14.2 * np.log10(r)


def dbz_to_pixel(dbz: np.ndarray) -> np.ndarray:
    """dBZ -> [0, 1] pixel as (dBZ + 10) / 70, clipped."""
    return np.clip((np.asarray(dbz) + 10.0) / 70.0, 0.0, 1.0)


def rain_to_pixel(rate: np.ndarray) -> np.ndarray:
    """Rain rate (mm/h) -> float32 pixel in [0, 1]; NaN and negative (no-data) count as no rain."""
    r = np.nan_to_num(np.asarray(rate, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    r[r < 0] = 0.0
    return dbz_to_pixel(rain_to_dbz(r)).astype(np.float32)


# --------------------------------------------------------------------------------------------------- scans
@dataclass(frozen=True)
class Scan:
    """One composite: where it is, when, and the factor from its stored values to mm/h."""

    time: np.datetime64
    label: str  # file name or HDF5 key, for messages
    path: Path
    key: str = ""  # HDF5 dataset name ("" for RADOLAN files)
    to_rate: float = 1.0


def list_radolan(root: Path) -> list[Path]:
    files = sorted((p for p in root.rglob("raa01-*") if RADOLAN_RE.match(p.name)),
                   key=lambda p: (RADOLAN_RE.match(p.name).group(2), p.name))
    if not files:
        raise DataError(f"{root}: no RADOLAN files raa01-ry_10000-YYMMDDHHMM-dwd---bin[.gz] (or -rw_); point "
                        "data.path at the folder of the unpacked DWD composites or at an HDF5 file")
    return files


def read_radolan(path: Path, loaddata: bool = True) -> tuple[Optional[np.ndarray], dict[str, Any]]:
    """``(values in the product unit with no-data = NaN, header attrs)`` of one RADOLAN file (wradlib)."""
    import wradlib.io.radolan as radolan

    try:
        data, attrs = radolan.read_radolan_composite(str(path), missing=-9999, loaddata=loaddata)
    except (OSError, EOFError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable RADOLAN composite ({type(exc).__name__}: {exc}); the file is "
                        "corrupt or truncated, re-download it") from exc
    product = attrs.get("producttype")
    if product not in PRODUCTS:
        raise DataError(f"{path}: RADOLAN product {product!r}; only {', '.join(PRODUCTS)} (rain depths) are read")
    if "intervalseconds" not in attrs or "nrow" not in attrs:
        raise DataError(f"{path}: RADOLAN header lacks INT or GP; the file is corrupt, re-download it")
    if data is not None:
        data = np.asarray(data, dtype=np.float32)
        data[data == -9999] = np.nan
    return data, attrs


def radolan_scans(root: Path) -> tuple[list[Scan], tuple[int, int], np.timedelta64]:
    """Headers of every RADOLAN file: scans in time order, grid shape and time step (all files must agree)."""
    scans, shape, product, step = [], None, None, None
    for p in list_radolan(root):
        _, attrs = read_radolan(p, loaddata=False)
        grid = (int(attrs["nrow"]), int(attrs["ncol"]))
        if shape is None:
            shape, product, step = grid, attrs["producttype"], int(attrs["intervalseconds"])
        elif grid != shape:
            raise DataError(f"{p}: grid {grid[0]}x{grid[1]} differs from the {shape[0]}x{shape[1]} of the other "
                            "files; use one composite product")
        elif attrs["producttype"] != product:
            raise DataError(f"{p}: product {attrs['producttype']} mixed with {product}; keep one product "
                            "(RY or RW) in data.path")
        t = np.datetime64(attrs["datetime"].replace(tzinfo=None), "m")
        scans.append(Scan(t, p.name, p, "", 3600.0 / step))
    scans.sort(key=lambda s: s.time)
    return scans, shape, np.timedelta64(step // 60, "m")


def parse_key(key: str) -> Optional[np.datetime64]:
    digits = re.sub(r"\D", "", key)
    if len(digits) < 12:
        return None
    try:
        return np.datetime64(f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}", "m")
    except ValueError:
        return None


def h5_scans(path: Path, rain_unit: str) -> tuple[list[Scan], tuple[int, int], np.timedelta64]:
    """The scans of an HDF5 file in the authors' layout (one 2-D dataset per time stamp at the root)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            items = [(k, f[k]) for k in f.keys()]
            keyed = []
            shape = None
            for k, obj in items:
                t = parse_key(k)
                if t is None or not isinstance(obj, h5py.Dataset):
                    continue
                if obj.ndim != 2:
                    raise DataError(f"{path}: dataset {k!r} has shape {obj.shape}, expected one 2-D scan (H, W)")
                if shape is None:
                    shape = tuple(obj.shape)
                elif tuple(obj.shape) != shape:
                    raise DataError(f"{path}: dataset {k!r} has shape {obj.shape}, the others {shape}; "
                                    "use scans of one grid")
                keyed.append((t, k))
    except OSError as exc:
        raise DataError(f"{path}: cannot read as HDF5 ({exc}); the file is corrupt, re-download it") from exc
    if not keyed:
        raise DataError(f"{path}: no scan datasets named by time stamp (YYYYMMDDHHMM) at the root; expected the "
                        "authors' RYDL.hdf5 layout")
    keyed.sort()
    times = np.array([t for t, _ in keyed], dtype="datetime64[m]")
    diffs = np.diff(times)
    if diffs.size and (diffs > np.timedelta64(0)).any():
        vals, counts = np.unique(diffs[diffs > np.timedelta64(0)], return_counts=True)
        step = vals[np.argmax(counts)]
    else:
        step = np.timedelta64(5, "m")
    factor = 60.0 / float(step / np.timedelta64(1, "m")) if rain_unit == "mm-per-step" else 1.0
    scans = [Scan(t, k, path, k, factor) for t, k in keyed]
    return scans, shape, step


def list_scans(root: Path, rain_unit: str = "mm-per-step") -> tuple[list[Scan], tuple[int, int], np.timedelta64]:
    """Scans (time order), grid, step of ``root`` (a RADOLAN folder or an HDF5 file)."""
    root = Path(root)
    if root.is_dir():
        scans, shape, step = radolan_scans(root)
    elif root.is_file() and root.suffix.lower() in H5_SUFFIXES:
        scans, shape, step = h5_scans(root, rain_unit)
    elif root.exists():
        raise DataError(f"{root}: neither a folder of RADOLAN files nor an HDF5 file ({', '.join(H5_SUFFIXES)})")
    else:
        raise DataError(f"{root}: not found; set data.path to the folder of RADOLAN files or the RYDL.hdf5 file")
    check_increasing(np.array([s.time for s in scans]), [s.label for s in scans], str(root))
    return scans, shape, step


def split_scans(d: Any, scans: list[Scan]) -> dict[str, list[Scan]]:
    """Train/val/test scans: by year when ``val_years``/``test_years`` are set, else contiguous time blocks."""
    val_years, test_years = set(d.val_years), set(d.test_years)
    if val_years or test_years:
        out: dict[str, list[Scan]] = {"train": [], "val": [], "test": []}
        for s in scans:
            y = int(str(s.time)[:4])
            out["test" if y in test_years else "val" if y in val_years else "train"].append(s)
        return out
    n = len(scans)
    n_val = int(round(n * d.pool_fractions[1]))
    n_test = int(round(n * d.pool_fractions[2]))
    n_train = n - n_val - n_test
    return {"train": scans[:n_train], "val": scans[n_train:n_train + n_val], "test": scans[n_train + n_val:]}


# ------------------------------------------------------------------------------------------------- reading
def iter_frames(d: Any, scans: list[Scan]) -> Iterator[tuple[Scan, np.ndarray]]:
    """``(scan, frame (1, H, W))`` in order: float32 in [0, 1], or uint8 0..255 with ``data.quantize: uint8``;
    HDF5 files are opened once."""
    import h5py

    handle = None
    try:
        for s in scans:
            if s.key:
                if handle is None:
                    handle = h5py.File(s.path, "r")
                try:
                    values = np.asarray(handle[s.key][()], dtype=np.float32)
                except (OSError, KeyError) as exc:
                    raise DataError(f"{s.path}: cannot read scan {s.key!r} ({exc}); re-download the file") from exc
            else:
                values, _ = read_radolan(s.path)
            frame = crop_frames(rain_to_pixel(values * s.to_rate)[None, None], d.crop, str(s.path))  # (1, 1, H, W)
            if d.quantize == "uint8":  # the authors' 8-bit PNG stage, before their resize
                frame = np.floor(frame * np.float32(255.0)).astype(np.uint8)
            yield s, resize_frames(frame, d.frame_size)[0]
    finally:
        if handle is not None:
            handle.close()


def iter_sequences(d: Any, scans: list[Scan], step: np.timedelta64) -> Iterator[np.ndarray]:
    """Sequences (T, 1, H, W) of consecutive scans of one split."""
    cut = StreamCutter(d.input_frames + d.output_frames, d.frame_stride, d.sequence_stride)
    prev = None
    for s, frame in iter_frames(d, scans):
        if prev is not None and s.time - prev != step:
            cut.reset()
        prev = s.time
        seq = cut.push(frame)
        if seq is not None:
            yield seq


def build(ctx: Any) -> dict[str, Any]:
    """Convert every scan once (rain -> dBZ -> [0, 1]) and stream consecutive-scan sequences (float32)."""
    from mslstm.data.dataset import SPLITS, make_meta

    d, root = ctx.data, Path(ctx.path)
    total = d.input_frames + d.output_frames
    scans, grid, step = list_scans(root, d.rain_unit)
    out_h, out_w = d.frame_size or (d.crop[2:] if d.crop else grid)
    check_size(int(out_h), int(out_w), ctx.size_factor, ctx.size_why, str(root))
    parts = split_scans(d, scans)
    quantized = d.quantize == "uint8"
    with SplitWriter(ctx.staging, np.uint8 if quantized else np.float32) as writer:
        for split in SPLITS:
            for seq in iter_sequences(d, parts[split], step):
                writer.append(split, seq[None])
        infos = writer.close()
    counts = {s: len(parts[s]) for s in SPLITS}
    require_splits(infos, str(root), total,
                   f"scans per split {counts} with steps of {step}; need runs of {(total - 1) * d.frame_stride + 1} "
                   "consecutive scans: add files, lower data.frame_stride or the frame counts, or change "
                   "data.val_years / test_years")
    log.info("DWD %s: %d scans (%s steps), grid %dx%d", root, len(scans), step, *grid)
    return make_meta(
        infos, dtype="uint8" if quantized else "float32", input_frames=d.input_frames, output_frames=d.output_frames,
        value_range=(0, 255) if quantized else (0.0, 1.0), source=f"dwd:{root.name}", raw_hash=ctx.raw["raw_hash"],
        dwd={"scans": counts, "step_minutes": int(step / np.timedelta64(1, "m")), "grid": list(grid),
             "first": str(scans[0].time), "last": str(scans[-1].time), "frame_stride": d.frame_stride,
             "pixel": "(dBZ + 10) / 70 clipped to [0, 1], dBZ = 10 log10(256 R^1.42), R in mm/h",
             "quantize": d.quantize, "crop": list(d.crop) if d.crop else None},
    )


def check(d: Any) -> None:
    """``ValueError("key: reason")`` for bad DWD keys."""
    both = set(d.val_years) & set(d.test_years)
    if both:
        raise ValueError(f"val_years: year {min(both)} is also in test_years; a year is in one split")


register_source(DataSource(
    "dwd", "DWD radar: a folder of RADOLAN RY/RW composites or the authors' RYDL.hdf5 at data.path",
    "file", build, needs_path=True, value_range=(0.0, 1.0),
    validate_defaults={"max_blank_fraction": 0.9},  # dry spells: many sequences hold no rain at all
    check=check,
))
