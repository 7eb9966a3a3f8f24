"""The data step: get/verify the raw data per ``data.dvc``, then write the processed splits + ``meta.json``.

``prepare_data(cfg, out_dir)`` is the one implementation behind ``mslstm data``, the DVC ``data`` stage and the
KFP data component. What the splits hold is the registered source's business (``mslstm.data.sources``:
``get_source(cfg.data.source).build(ctx)``); this module does what every source shares. The dataset is built in a
staging folder beside ``out_dir`` and renamed into place only when complete, so a failure never leaves a partial
dataset behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mslstm.data.dataset import write_meta
from mslstm.data.raw import dvc_hash, ensure_raw_data, replace_dir
from mslstm.data.sources import BuildContext, get_source
from mslstm.errors import DataError
from mslstm.io import FULL_OR_READONLY, writing

log = logging.getLogger(__name__)


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
    source = get_source(d.source)
    if source.kind == "generated" and d.canvas_size % factor:  # fail before any work
        raise DataError(f"data.canvas_size: {d.canvas_size} is not divisible by {factor} ({why}); "
                        f"use a multiple of {factor}")
    from mslstm.data import s3

    s3.configure_from(d)  # the time limits and attempts of every S3 call of this step
    tracked = source.pool_dir is not None or _inside(d.path, d.raw_dir)
    raw = ensure_raw_data(d) if tracked else None
    with writing(out_dir):  # read-only / no permission: one line naming the folder
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes 0700; the folder is renamed into place as is
    try:
        # a full disk while a source writes (also one whose size is not known in advance): one line naming the
        # folder; the staging folder goes in every case
        with writing(out_dir, codes=FULL_OR_READONLY):
            path = _local_source(d.path, staging, d.s3_endpoint_url or None) if d.path else None
            if raw is None and path is None:  # a source that needs no raw data (pure synthesis)
                raw = {"raw_dir": None, "raw_hash": "", "how": "none"}
            elif raw is None:  # the user's file or folder outside the DVC-tracked folder: record its own DVC md5
                if not path.exists():
                    raise DataError(f"{d.path}: file not found")
                raw = {"raw_dir": None, "raw_hash": dvc_hash(path)["md5"], "how": "external"}
            meta = source.build(BuildContext(data=d, staging=staging, raw=raw, path=path, size_factor=factor,
                                             size_why=why, out_dir=out_dir))
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
