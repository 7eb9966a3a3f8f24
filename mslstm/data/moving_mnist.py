"""Moving MNIST generator: digits bouncing in a square canvas, overlaps combined with max.

Two recipes (``data.mnist_recipe``):

- ``standard``: speeds uniform in ``speed_range`` (pixels per frame), positions reflected at the walls so a digit
  always stays whole inside the canvas, overlapping digits combined with max.
- ``authors``: the generator of the MS-RNN authors (mazhf/MS-RNN ``util/make_moving_mnist.py``, after Srivastava
  et al.): integer speeds drawn uniformly from ``speed_range`` (their 2..6), a velocity component reversed when the
  next position would leave [-2, canvas - digit + 2] (so a digit may cross the edge by up to 2 pixels and is cut
  there), positions truncated to integers, and overlapping digits added then clipped at 255. Their data set is one
  set of sequences from one digit pool cut 7:3 into train and test; here every split draws from the whole pool.

Deterministic: one ``numpy.random.Generator(PCG64)`` seeded explicitly, and only IEEE-exact float operations
(+, -, *, /, sqrt, floor) on the trajectories, so the same seed gives the same bytes on every machine and numpy
version (no sin/cos, whose last bit may differ between libm/SIMD builds). All random draws happen up front for
the whole split, so the output does not depend on the chunk size used for rendering.

Vectorised over sequences: one loop per frame and digit, each a flat gather/max/scatter over all sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from mslstm.errors import DataError


@dataclass(frozen=True)
class Trajectories:
    """Random draws of a split: digit indices (N, D) and top-left positions (N, T, D, 2) as int (row, col)."""

    digits: np.ndarray
    positions: np.ndarray


def make_rng(seed: int, *stream: int) -> np.random.Generator:
    """``Generator(PCG64)`` for ``seed`` and a stream id (e.g. the split index): independent, reproducible."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, stream)])))


def _unit_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` directions uniform on the circle by rejection from the square (no trigonometry: exact everywhere)."""
    out = np.empty((n, 2))
    todo = np.arange(n)
    while todo.size:
        cand = rng.uniform(-1.0, 1.0, size=(todo.size, 2))
        r2 = cand[:, 0] * cand[:, 0] + cand[:, 1] * cand[:, 1]
        ok = (r2 <= 1.0) & (r2 > 1e-6)
        out[todo[ok]] = cand[ok] / np.sqrt(r2[ok])[:, None]
        todo = todo[~ok]
    return out


def draw_trajectories(
    rng: np.random.Generator,
    n: int,
    pool_size: int,
    *,
    frames: int,
    num_digits: int = 2,
    canvas_size: int = 64,
    digit_size: int = 28,
    speed_range: tuple[float, float] = (2.0, 5.0),
) -> Trajectories:
    """Draw digit choices, start points and velocities; integrate bouncing trajectories for ``frames`` steps."""
    lim = float(canvas_size - digit_size)
    digits = rng.integers(0, pool_size, size=(n, num_digits))
    pos = rng.uniform(0.0, 1.0, size=(n, num_digits, 2)) * lim
    speed = speed_range[0] + (speed_range[1] - speed_range[0]) * rng.uniform(0.0, 1.0, size=(n, num_digits, 1))
    vel = _unit_directions(rng, n * num_digits).reshape(n, num_digits, 2) * speed
    positions = np.empty((n, frames, num_digits, 2), dtype=np.int32)
    for t in range(frames):
        positions[:, t] = np.floor(pos + 0.5).astype(np.int32)
        pos = pos + vel
        # Bounce: reflect the position about the wall and reverse that velocity component.
        low = pos < 0.0
        pos = np.where(low, -pos, pos)
        high = pos > lim
        pos = np.where(high, 2.0 * lim - pos, pos)
        vel = np.where(low | high, -vel, vel)
    np.clip(positions, 0, int(lim), out=positions)
    return Trajectories(digits=digits, positions=positions)


AUTHORS_MARGIN = 2  # the authors' walls: a digit's corner may go 2 pixels beyond [0, canvas - digit]
RECIPES = ("standard", "authors")


def draw_authors_trajectories(
    rng: np.random.Generator,
    n: int,
    pool_size: int,
    *,
    frames: int,
    num_digits: int = 2,
    canvas_size: int = 64,
    digit_size: int = 28,
    speed_range: tuple[float, float] = (2, 6),
) -> Trajectories:
    """The authors' kinematics: integer speed in ``speed_range`` (inclusive), a uniform direction, start uniform in
    [0, canvas - digit]; a velocity component flips when the next position would pass -2 or canvas - digit + 2;
    positions truncated toward zero (their ``int()``), so corners lie in [-2, canvas - digit + 2]."""
    lim = float(canvas_size - digit_size)
    digits = rng.integers(0, pool_size, size=(n, num_digits))
    pos = rng.uniform(0.0, 1.0, size=(n, num_digits, 2)) * lim
    speed = rng.integers(int(speed_range[0]), int(speed_range[1]) + 1, size=(n, num_digits, 1)).astype(np.float64)
    vel = _unit_directions(rng, n * num_digits).reshape(n, num_digits, 2) * speed
    positions = np.empty((n, frames, num_digits, 2), dtype=np.int32)
    low, high = -float(AUTHORS_MARGIN), lim + AUTHORS_MARGIN
    for t in range(frames):
        positions[:, t] = np.trunc(pos).astype(np.int32)
        nxt = pos + vel
        vel = np.where((nxt < low) | (nxt > high), -vel, vel)
        pos = pos + vel
    return Trajectories(digits=digits, positions=positions)


def render(
    pool: np.ndarray, traj: Trajectories, canvas_size: int, start: int = 0, stop: int | None = None,
    combine: str = "max", margin: int = 0,
) -> np.ndarray:
    """Render sequences ``start:stop`` of ``traj`` to uint8 (n, T, 1, H, W): where digits overlap, ``max`` or
    ``sum`` (added, then clipped at 255). ``margin``: positions may lie up to that many pixels outside the canvas
    (the digit is cut at the edge)."""
    if combine not in ("max", "sum"):
        raise ValueError(f"combine: 'max' or 'sum' (got {combine!r})")
    stop = traj.digits.shape[0] if stop is None else stop
    digits = traj.digits[start:stop]
    positions = traj.positions[start:stop]
    n, frames, num_digits, _ = positions.shape
    s = pool.shape[1]
    size = canvas_size + 2 * margin
    hw = size * size
    out = np.zeros((n, frames, 1, size, size), dtype=np.uint8 if combine == "max" else np.uint16)
    flat = out.reshape(-1)
    patch = (np.arange(s)[:, None] * size + np.arange(s)[None, :]).reshape(-1)  # (s*s,) offsets in a frame
    seq_base = np.arange(n, dtype=np.int64) * (frames * hw)
    pixels = [pool[digits[:, d]].reshape(n, -1).astype(out.dtype) for d in range(num_digits)]  # (n, s*s) each
    for t in range(frames):
        for d in range(num_digits):
            corner = (positions[:, t, d, 0].astype(np.int64) + margin) * size + positions[:, t, d, 1] + margin
            idx = (seq_base + t * hw + corner)[:, None] + patch[None, :]  # (n, s*s), unique within this step
            if d == 0:
                flat[idx] = pixels[d]
            elif combine == "max":
                flat[idx] = np.maximum(flat[idx], pixels[d])
            else:
                flat[idx] = flat[idx] + pixels[d]
    if margin:
        out = out[..., margin:margin + canvas_size, margin:margin + canvas_size]
    if combine == "sum":
        out = np.minimum(out, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def generate(
    pool: np.ndarray,
    n: int,
    seed: int,
    stream: int = 0,
    *,
    frames: int = 20,
    num_digits: int = 2,
    canvas_size: int = 64,
    speed_range: tuple[float, float] = (2.0, 5.0),
    chunk: int = 1024,
    recipe: str = "standard",
) -> np.ndarray:
    """``n`` Moving MNIST sequences uint8 (n, frames, 1, canvas, canvas) from the digit ``pool`` (uint8 (P, s, s))."""
    return np.concatenate(list(iter_generate(
        pool, n, seed, stream, frames=frames, num_digits=num_digits, canvas_size=canvas_size,
        speed_range=speed_range, chunk=chunk, recipe=recipe,
    )), axis=0) if n else np.zeros((0, frames, 1, canvas_size, canvas_size), np.uint8)


def iter_generate(
    pool: np.ndarray,
    n: int,
    seed: int,
    stream: int = 0,
    *,
    frames: int = 20,
    num_digits: int = 2,
    canvas_size: int = 64,
    speed_range: tuple[float, float] = (2.0, 5.0),
    chunk: int = 1024,
    recipe: str = "standard",
) -> Iterator[np.ndarray]:
    """Like :func:`generate`, yielding chunks of at most ``chunk`` sequences (same bytes whatever ``chunk``);
    ``recipe``: ``standard`` or ``authors`` (module docstring)."""
    if recipe not in RECIPES:
        raise ValueError(f"mnist_recipe: {recipe!r} unknown; use one of {', '.join(RECIPES)}")
    pool = np.asarray(pool)
    if pool.ndim != 3 or pool.dtype != np.uint8 or pool.shape[1] != pool.shape[2]:
        raise DataError(f"digit pool: expected uint8 (P, s, s), got {pool.dtype} {tuple(pool.shape)}")
    if pool.shape[1] > canvas_size:
        raise DataError(f"digit pool: digits of {pool.shape[1]} px do not fit a {canvas_size} px canvas")
    rng = make_rng(seed, stream)
    draw = draw_authors_trajectories if recipe == "authors" else draw_trajectories
    traj = draw(
        rng, n, pool.shape[0], frames=frames, num_digits=num_digits, canvas_size=canvas_size,
        digit_size=pool.shape[1], speed_range=speed_range,
    )
    how = {"combine": "sum", "margin": AUTHORS_MARGIN} if recipe == "authors" else {}
    for start in range(0, n, chunk):
        yield render(pool, traj, canvas_size, start, min(n, start + chunk), **how)
