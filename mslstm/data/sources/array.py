"""Source ``array``: any ``.npy`` / ``.npz`` / HDF5 video array of the user's at ``data.path``.

Axis order per ``data.layout`` (NTHW, NTCHW, NTHWC, TNHW), array name per ``data.key``; values checked against
``data.value_range`` (null = [0, 255] for uint8, [0, 1] for floats). The sequences are cut into contiguous,
disjoint train/val/test blocks by ``data.pool_fractions``; the first ``input_frames + output_frames`` frames of
each are kept. :func:`copy_video` is shared with the ``moving-mnist-npy`` source.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from mslstm.data.sources import (
    BuildContext,
    DataSource,
    get_source,
    register_source,
    split_nbytes,
    write_split_chunks,
)
from mslstm.errors import DataError

log = logging.getLogger(__name__)

COPY_CHUNK = 256  # sequences per read/write


def copy_video(ctx: BuildContext, layout: str, require_dtype: Optional[np.dtype] = None,
               hint: str = "") -> dict[str, Any]:
    """Copy the video file ``ctx.path`` (seen as (N, T, C, H, W)) into train/val/test blocks; return meta."""
    from mslstm.data.dataset import default_value_range, make_meta
    from mslstm.data.loaders import check_chunk, check_geometry, open_video

    d, path = ctx.data, ctx.path
    declared = d.value_range if d.value_range is not None else get_source(d.source).value_range
    with open_video(path, d.key, layout) as vf:
        n, t, c, h, w = vf.shape
        check_geometry(path, vf.shape, d.total_frames, ctx.size_factor, ctx.size_why)
        vr = default_value_range(vf.dtype, declared, path)
        if require_dtype is not None and vf.dtype != require_dtype:
            raise DataError(f"{path}: expected {np.dtype(require_dtype)}, got {vf.dtype}{hint}")
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
        ctx.require_space(sum(split_nbytes((b - a, d.total_frames, c, h, w), store) for a, b in bounds.values()))

        def chunks(a: int, b: int):
            for s in range(a, b, COPY_CHUNK):
                block = vf.read(s, min(b, s + COPY_CHUNK))[:, : d.total_frames]
                check_chunk(path, block, s, vr)
                yield block

        infos = {split: write_split_chunks(ctx.staging, split, (b - a, d.total_frames, c, h, w), store, chunks(a, b))
                 for split, (a, b) in bounds.items()}
    return make_meta(
        infos, dtype=np.dtype(store).name, input_frames=d.input_frames, output_frames=d.output_frames,
        value_range=vr, source=f"{d.source}:{path.name}", raw_hash=ctx.raw["raw_hash"],
    )


def build(ctx: BuildContext) -> dict[str, Any]:
    return copy_video(ctx, ctx.data.layout)


register_source(DataSource(
    "array", "any .npy/.npz/.h5 video array at data.path (axes per data.layout, array per data.key)",
    "file", build, needs_path=True,
))
