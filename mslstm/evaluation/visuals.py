"""Pictures a person looks at: PNG strips, animated GIFs and per-frame metric plots (all written atomically).

Frames are tensors/arrays ``(T, C, H, W)`` with values in [0, 1] (C = 1 grey or 3 RGB).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mslstm.io import atomic_path

PAD = 2  # pixels between frames


def _save_png(fig, path: str | os.PathLike) -> Path:
    """Lay out, write ``fig`` as a PNG atomically, close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _to_numpy(frames) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().float().numpy()
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"expected frames (T, C, H, W), got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


def _hwc(frame: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W, 3) float in [0, 1]."""
    c = frame.shape[0]
    img = np.transpose(frame, (1, 2, 0))
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif c != 3:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    return img


def _row(frames: np.ndarray, n_cols: int, h: int, w: int) -> np.ndarray:
    row = np.ones((h, n_cols * (w + PAD) - PAD, 3), dtype=np.float32)
    for i, f in enumerate(frames):
        row[:, i * (w + PAD): i * (w + PAD) + w] = _hwc(f)
    return row


def strip_image(inputs, target, pred) -> np.ndarray:
    """Grid (H', W', 3) in [0, 1]: rows input | ground truth | prediction | |error| (error shown in 'hot')."""
    import matplotlib

    x, y, p = _to_numpy(inputs), _to_numpy(target), _to_numpy(pred)
    if y.shape != p.shape:
        raise ValueError(f"target {y.shape} and prediction {p.shape} differ")
    _, _, h, w = y.shape
    n_cols = max(len(x), len(y))
    err = np.abs(p - y).mean(axis=1)                         # (T, H, W)
    hot = matplotlib.colormaps["hot"](err)[..., :3]          # (T, H, W, 3)
    err_frames = np.transpose(hot, (0, 3, 1, 2)).astype(np.float32)
    rows = [_row(x, n_cols, h, w), _row(y, n_cols, h, w), _row(p, n_cols, h, w), _row(err_frames, n_cols, h, w)]
    gap = np.ones((PAD, rows[0].shape[1], 3), dtype=np.float32)
    out = []
    for r in rows:
        out += [r, gap]
    return np.concatenate(out[:-1], axis=0)


def save_strip(path: str | os.PathLike, inputs, target, pred, title: str = "") -> Path:
    """PNG strip with labelled rows: input | ground truth | prediction | error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = strip_image(inputs, target, pred)
    h = _to_numpy(target).shape[2]
    fig_w = max(4.0, img.shape[1] / 40)
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * img.shape[0] / img.shape[1] + 0.4))
    ax.imshow(img, interpolation="nearest")
    ax.set_yticks([(h + PAD) * i + h / 2 for i in range(4)])
    ax.set_yticklabels(["input", "truth", "prediction", "|error|"])
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return _save_png(fig, path)


def gif_frames(inputs, target, pred) -> np.ndarray:
    """(T_in + T_out, H, 2W + PAD, 3) uint8: left ground truth, right prediction (inputs on both sides first)."""
    x, y, p = _to_numpy(inputs), _to_numpy(target), _to_numpy(pred)
    frames = []
    for left, right in [(f, f) for f in x] + list(zip(y, p)):
        a, b = _hwc(left), _hwc(right)
        sep = np.ones((a.shape[0], PAD, 3), dtype=np.float32)
        frames.append(np.concatenate([a, sep, b], axis=1))
    return (np.stack(frames) * 255).round().astype(np.uint8)


def save_gif(path: str | os.PathLike, inputs, target, pred, fps: float = 4.0) -> Path:
    """Animated GIF (loops): ground truth (left) beside prediction (right) over the whole sequence."""
    import imageio.v3 as iio

    frames = gif_frames(inputs, target, pred)
    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def save_prediction_gif(path: str | os.PathLike, inputs, pred, fps: float = 4.0) -> Path:
    """Animated GIF of one sequence: the input frames, then the predicted ones (no ground truth)."""
    import imageio.v3 as iio

    x, p = _to_numpy(inputs), _to_numpy(pred)
    frames = (np.stack([_hwc(f) for f in np.concatenate([x, p])]) * 255).round().astype(np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return path


def save_metric_plot(path: str | os.PathLike, frames: Sequence[int], values: Sequence[float], metric: str,
                     title: str = "") -> Path:
    """Line plot of one metric per predicted frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(list(frames), list(values), marker="o")
    ax.set_xlabel("frame")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{metric} per frame", fontsize=9)
    return _save_png(fig, path)


def save_radar(path: str | os.PathLike, table: Mapping[str, Mapping[str, float]], axes: Sequence[str],
               labels: Sequence[str] | None = None, title: str = "") -> Path:
    """Radar chart of ``table[model][axis]`` already normalised to [0, 1] (closer to the centre is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels or axes)
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), subplot_kw={"polar": True})
    for model, row in table.items():
        vals = [float(row[a]) for a in axes]
        ax.plot(angles + angles[:1], vals + vals[:1], marker="o", label=model)
        ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(labels, fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["0.25", "0.5", "0.75", "1"], fontsize=7)
    ax.set_title(title or "normalised cost and error (closer to the centre is better)", fontsize=9)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    return _save_png(fig, path)
