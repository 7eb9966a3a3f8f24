"""Pictures a person looks at: PNG strips, animated GIFs and per-frame metric plots (all written atomically).

Frames are tensors/arrays ``(T, C, H, W)`` with values in [0, 1] (C = 1 grey or 3 RGB).

Per data set (the metric set of ``mslstm.evaluation.metric_sets`` picks them): grey strips (Moving MNIST, KTH;
:func:`save_strip`), flow heat maps, one row block per channel (TaxiBJ inflow/outflow; :func:`save_flow_maps`),
radar frames in a rain-rate colour map (:func:`save_rain_strip`) and, per rain-rate threshold, the map of hits,
misses and false alarms of each predicted frame (:func:`save_contingency_maps`). The ``*_image`` functions return
the pixel grid (H', W', 3) floats in [0, 1] that the ``save_*`` functions draw with labels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mslstm.io import atomic_path

PAD = 2  # pixels between frames


def _save_png(fig, path: str | os.PathLike, tight: bool = False) -> Path:
    """Lay out, write ``fig`` as a PNG atomically, close it; ``tight``: crop to what is drawn (labels, legend and
    colour bar included)."""
    import matplotlib.pyplot as plt

    if not tight:
        fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, **({"bbox_inches": "tight", "pad_inches": 0.1} if tight else {}))
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
    return _stack_rows(rows)


def _stack_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows (h, W', 3) one above the other, PAD white pixels apart."""
    gap = np.ones((PAD, rows[0].shape[1], 3), dtype=np.float32)
    out = []
    for r in rows:
        out += [r, gap]
    return np.concatenate(out[:-1], axis=0)


def _labelled_png(path: str | os.PathLike, img: np.ndarray, labels: Sequence[str], row_h: int, title: str = "",
                  legend: Sequence[tuple[str, Sequence[float]]] = (), colorbar=None) -> Path:
    """Draw the grid ``img`` (rows of height ``row_h``, PAD apart) with one label per row; optional legend patches
    ``(label, rgb)`` and a colour bar ``(ScalarMappable, label, ticks)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig_w = max(4.0, img.shape[1] / 40)
    extra = 0.4 + (0.5 if legend else 0.0)
    fig, ax = plt.subplots(figsize=(fig_w + (1.2 if colorbar else 0.0), fig_w * img.shape[0] / img.shape[1] + extra))
    ax.imshow(img, interpolation="nearest")
    ax.set_yticks([(row_h + PAD) * i + row_h / 2 for i in range(len(labels))])
    ax.set_yticklabels(list(labels), fontsize=8)
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(handles=[Patch(facecolor=tuple(rgb), edgecolor="black", label=name) for name, rgb in legend],
                  loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(legend), fontsize=8, frameon=False)
    if colorbar is not None:
        mappable, label, ticks = colorbar
        bar = fig.colorbar(mappable, ax=ax, fraction=0.03, pad=0.02, ticks=ticks)
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return _save_png(fig, path, tight=True)


def save_strip(path: str | os.PathLike, inputs, target, pred, title: str = "") -> Path:
    """PNG strip with labelled rows: input | ground truth | prediction | error."""
    img = strip_image(inputs, target, pred)
    h = _to_numpy(target).shape[2]
    return _labelled_png(path, img, ["input", "truth", "prediction", "|error|"], h, title)


# ----------------------------------------------------------------------------------------- flows (TaxiBJ)
FLOW_CMAP = "inferno"


def _coloured(values: np.ndarray, cmap: str) -> np.ndarray:
    """(T, H, W) in [0, 1] -> (T, 3, H, W) through a matplotlib colour map."""
    import matplotlib

    rgb = matplotlib.colormaps[cmap](np.clip(values, 0.0, 1.0))[..., :3]      # (T, H, W, 3)
    return np.transpose(rgb, (0, 3, 1, 2)).astype(np.float32)


def flow_image(inputs, target, pred, cmap: str = FLOW_CMAP) -> tuple[np.ndarray, list[str]]:
    """Grid (H', W', 3) and row labels: per channel c, rows input | truth | prediction in ``cmap`` (0 = low flow)
    and |error| in 'hot'. Frames (T, C, H, W) of normalised flows in [0, 1]."""
    x, y, p = _to_numpy(inputs), _to_numpy(target), _to_numpy(pred)
    if y.shape != p.shape:
        raise ValueError(f"target {y.shape} and prediction {p.shape} differ")
    _, c, h, w = y.shape
    names = flow_channel_names(c)
    n_cols = max(len(x), len(y))
    rows, labels = [], []
    for ch, name in enumerate(names):
        rows += [_row(_coloured(x[:, ch], cmap), n_cols, h, w), _row(_coloured(y[:, ch], cmap), n_cols, h, w),
                 _row(_coloured(p[:, ch], cmap), n_cols, h, w),
                 _row(_coloured(np.abs(p[:, ch] - y[:, ch]), "hot"), n_cols, h, w)]
        labels += [f"{name} input", f"{name} truth", f"{name} prediction", f"{name} |error|"]
    return _stack_rows(rows), labels


def flow_channel_names(channels: int) -> list[str]:
    """TaxiBJ channel order: inflow, outflow."""
    return ["inflow", "outflow"][:channels] if channels <= 2 else [f"channel {i}" for i in range(channels)]


def save_flow_maps(path: str | os.PathLike, inputs, target, pred, title: str = "") -> Path:
    """PNG of crowd flows as heat maps, one block of rows per channel (inflow, outflow), with a colour bar."""
    import matplotlib
    from matplotlib.cm import ScalarMappable

    img, labels = flow_image(inputs, target, pred)
    h = _to_numpy(target).shape[2]
    bar = ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=FLOW_CMAP)
    return _labelled_png(path, img, labels, h, title, colorbar=(bar, "flow (normalised)", [0, 0.5, 1]))


# ------------------------------------------------------------------------------------------ radar (DWD)
# Rain-rate classes (mm/h) and their colours, light to dark as usual on weather-service radar maps.
RAIN_LEVELS = (0.1, 0.5, 2.0, 5.0, 10.0, 30.0, 100.0)
RAIN_COLOURS = (
    (1.0, 1.0, 1.0),        # < 0.1 mm/h: dry
    (0.70, 0.85, 1.0),      # 0.1 - 0.5
    (0.25, 0.55, 0.95),     # 0.5 - 2
    (0.10, 0.70, 0.20),     # 2 - 5
    (1.0, 0.90, 0.10),      # 5 - 10
    (1.0, 0.55, 0.0),       # 10 - 30
    (0.85, 0.0, 0.0),       # 30 - 100
    (0.60, 0.0, 0.60),      # >= 100
)
# Contingency map colours: hit, miss, false alarm, correct negative.
CONTINGENCY_COLOURS = {
    "hit": (0.10, 0.65, 0.10),
    "miss": (0.90, 0.15, 0.15),
    "false alarm": (0.15, 0.35, 0.95),
    "correct negative": (1.0, 1.0, 1.0),
}


def rain_colours(frames) -> np.ndarray:
    """Radar pixels (T, 1, H, W) in [0, 1] -> (T, 3, H, W) colours of their rain-rate class (:data:`RAIN_LEVELS`)."""
    from mslstm.evaluation.metrics import pixel_to_rain

    f = _to_numpy(frames)[:, 0]                                               # (T, H, W)
    cls = np.searchsorted(np.asarray(RAIN_LEVELS), pixel_to_rain(f), side="right")
    rgb = np.asarray(RAIN_COLOURS, dtype=np.float32)[cls]                     # (T, H, W, 3)
    return np.transpose(rgb, (0, 3, 1, 2))


def rain_image(inputs, target, pred) -> np.ndarray:
    """Grid (H', W', 3): rows input | truth | prediction in rain-rate colours."""
    x, y, p = _to_numpy(inputs), _to_numpy(target), _to_numpy(pred)
    if y.shape != p.shape:
        raise ValueError(f"target {y.shape} and prediction {p.shape} differ")
    _, _, h, w = y.shape
    n_cols = max(len(x), len(y))
    return _stack_rows([_row(rain_colours(a), n_cols, h, w) for a in (x, y, p)])


def save_rain_strip(path: str | os.PathLike, inputs, target, pred, title: str = "") -> Path:
    """PNG of radar frames in a rain-rate colour map (input | truth | prediction) with its colour bar (mm/h)."""
    import matplotlib
    from matplotlib.cm import ScalarMappable

    img = rain_image(inputs, target, pred)
    h = _to_numpy(target).shape[2]
    bounds = [0.0, *RAIN_LEVELS, 200.0]
    cmap = matplotlib.colors.ListedColormap(RAIN_COLOURS)
    bar = ScalarMappable(norm=matplotlib.colors.BoundaryNorm(bounds, cmap.N), cmap=cmap)
    return _labelled_png(path, img, ["input", "truth", "prediction"], h, title,
                         colorbar=(bar, "rain rate (mm/h)", list(RAIN_LEVELS)))


def contingency_image(target, pred, thresholds: Sequence[float]) -> np.ndarray:
    """Grid (H', W', 3): one row per rain-rate threshold (mm/h), one column per frame; each pixel coloured as a
    hit, miss, false alarm or correct negative (:data:`CONTINGENCY_COLOURS`; rain = pixel >= the threshold's
    pixel value, as the scores count it)."""
    from mslstm.evaluation.metrics import rain_to_pixel

    y, p = _to_numpy(target)[:, 0], _to_numpy(pred)[:, 0]                    # (T, H, W)
    if y.shape != p.shape:
        raise ValueError(f"target {y.shape} and prediction {p.shape} differ")
    t, h, w = y.shape
    colours = np.asarray(list(CONTINGENCY_COLOURS.values()), dtype=np.float32)   # hit, miss, false alarm, negative
    rows = []
    for px in np.atleast_1d(rain_to_pixel(list(thresholds))):
        obs, fc = y >= px, p >= px
        kind = np.where(obs & fc, 0, np.where(obs, 1, np.where(fc, 2, 3)))     # (T, H, W)
        rows.append(_row(np.transpose(colours[kind], (0, 3, 1, 2)), t, h, w))
    return _stack_rows(rows)


def save_contingency_maps(path: str | os.PathLike, target, pred, thresholds: Sequence[float],
                          title: str = "") -> Path:
    """PNG: per threshold (rows) and predicted frame (columns), the map of hits, misses and false alarms."""
    from mslstm.evaluation.metrics import threshold_label

    img = contingency_image(target, pred, thresholds)
    h = _to_numpy(target).shape[2]
    labels = [f">= {threshold_label(t)} mm/h" for t in thresholds]
    return _labelled_png(path, img, labels, h, title, legend=list(CONTINGENCY_COLOURS.items()))


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
