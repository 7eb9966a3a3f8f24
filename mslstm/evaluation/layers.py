"""What each layer holds: the paper's layer-output figure (MS-LSTM paper, Figure 5) from a trained checkpoint.

    from mslstm.evaluation.layers import layer_maps, layer_figure
    maps = layer_maps(net, frames)        # one (T-1, h_l, w_l) map per layer, at the layer's own scale
    layer_figure("artifacts/train/best.pt", "artifacts/dataset", "layers.png")

For one sequence the network runs its pure rollout (no teacher forcing after the input frames, as in evaluation);
a forward hook on each layer's cell records its hidden output h (B, hidden, H/s, W/s) at every step, reduced to
one map per step: the mean over channels (``reduce="mean"``), or the projection on the first principal component
of the channels over all steps and positions (``reduce="pca"``, sign fixed so that the map correlates positively
with the mean). The figure has a row for the ground truth, one per layer (its scale in the label) and one for
the prediction; a column per step. Run it on ConvLSTM, SMS-LSTM, TMS-LSTM and MS-LSTM checkpoints trained on the
same data and set the four pictures side by side: that is the paper's Figure 5.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

log = logging.getLogger(__name__)


def _reduce(h: torch.Tensor, how: str) -> np.ndarray:
    """(T, C, H, W) hidden outputs of one layer -> (T, H, W) maps."""
    x = h.float()
    if how == "mean":
        return x.mean(dim=1).numpy()
    t, c, hh, ww = x.shape
    flat = x.permute(0, 2, 3, 1).reshape(-1, c)                    # (T*H*W, C)
    centred = flat - flat.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)      # v: (C, C), rows = components
    proj = (centred @ v[0]).reshape(t, hh, ww)
    if float((proj * x.mean(dim=1)).sum()) < 0:                   # fix the sign: follow the channel mean
        proj = -proj
    return proj.numpy()


@torch.no_grad()
def layer_maps(net: torch.nn.Module, frames: torch.Tensor, reduce: Literal["mean", "pca"] = "mean"
               ) -> tuple[list[np.ndarray], np.ndarray]:
    """Hidden output of every layer of ``net`` (a ``Forecaster``) on one sequence ``frames`` (T, C, H, W).

    Returns ``(maps, prediction)``: ``maps[l]`` (T-1, H/s_l, W/s_l) per layer, and the rollout's prediction
    (T-1, C, H, W). Layers are the core's ``cells`` (every model of the registry has them).
    """
    if reduce not in ("mean", "pca"):
        raise ValueError(f"reduce: {reduce!r}; use mean or pca")
    cells = getattr(net.core, "cells", None)
    if cells is None:
        raise ValueError(f"{type(net.core).__name__}: the core has no `cells` to read layer outputs from")
    outs: list[list[torch.Tensor]] = [[] for _ in cells]

    def hook(i: int):
        def fn(_mod, _inp, out):
            h = out[0] if isinstance(out, (tuple, list)) else out  # cell(...) -> (h, state, ...)
            outs[i].append(h[0].detach().cpu())                   # (hidden, H/s, W/s) of the one sequence
        return fn

    handles = [cell.register_forward_hook(hook(i)) for i, cell in enumerate(cells)]
    try:
        pred = net(frames[None], mask=None)[0]                     # (T-1, C, H, W)
    finally:
        for h in handles:
            h.remove()
    p = net.config.patch_size
    maps = [_reduce(torch.stack(o), reduce) for o in outs]         # (T-1, H/(s p), W/(s p)) each
    if any(m.shape[0] != pred.shape[0] for m in maps):
        raise ValueError(f"layer outputs: expected {pred.shape[0]} steps per layer, got {[m.shape[0] for m in maps]}"
                         f" (patch {p})")
    return maps, pred.float().cpu().numpy()


def save_layer_figure(path: str | os.PathLike, truth: np.ndarray, maps: list[np.ndarray], pred: np.ndarray,
                      scales: tuple[int, ...], title: str, max_steps: int = 20) -> Path:
    """Rows: ground truth, layer 1..L, prediction; one column per step (frame t+1 predicted at step t)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mslstm.evaluation.visuals import _save_png

    steps = min(pred.shape[0], max_steps)
    rows = 2 + len(maps)
    fig, axes = plt.subplots(rows, steps, figsize=(0.9 * steps + 1.2, 0.95 * rows + 0.6), squeeze=False)
    labels = ["truth"] + [f"layer {i + 1} (1/{s})" for i, s in enumerate(scales)] + ["prediction"]
    images = [truth[1: steps + 1, 0]] + [m[:steps] for m in maps] + [np.clip(pred[:steps, 0], 0, 1)]
    for r, (label, seq) in enumerate(zip(labels, images)):
        lo, hi = float(np.min(seq)), float(np.max(seq))
        for t in range(steps):
            ax = axes[r][t]
            ax.imshow(seq[t], cmap="gray" if r in (0, rows - 1) else "viridis", vmin=lo, vmax=hi if hi > lo else lo + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if t == 0:
                ax.set_ylabel(label, fontsize=7)
            if r == 0:
                ax.set_title(f"t={t + 2}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save_png(fig, path)


def layer_figure(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, out: str | os.PathLike,
                 split: str = "test", index: int = 0, reduce: Literal["mean", "pca"] = "mean") -> dict[str, Any]:
    """The layer-output figure of the model in ``checkpoint`` for sequence ``index`` of ``split``; writes ``out``
    (PNG) and ``<out stem>.npz`` (the maps, float32, no pickles). Returns ``{"figure", "maps", "model",
    "layers", "shapes"}``."""
    from mslstm.data.dataset import VideoDataset, check_dataset_matches
    from mslstm.errors import DataError
    from mslstm.io import atomic_path
    from mslstm.training.checkpoint import load_model

    net, _ = load_model(checkpoint)
    mcfg = net.config
    ds = VideoDataset(data_dir, split)
    check_dataset_matches(mcfg, ds.meta, Path(data_dir), (split,), model_from="the checkpoint's model")
    if not 0 <= index < len(ds):
        raise DataError(f"{data_dir}: --index {index} out of range; {split} has {len(ds)} sequences")
    frames = ds[index][: mcfg.total_frames]                        # (T, C, H, W)
    maps, pred = layer_maps(net, frames, reduce)
    from model import get_spec

    spec = get_spec(mcfg.name)
    scales = spec.layer_scales(mcfg)
    out = Path(out)
    how = "channel mean" if reduce == "mean" else "first PCA component"
    title = f"{spec.label}: hidden output of each layer ({how}), {split} sequence {index}"
    save_layer_figure(out, frames.numpy(), maps, pred, scales, title)
    npz = out.with_suffix(".npz")
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"layer_{i + 1}": m.astype(np.float32) for i, m in enumerate(maps)},
                     prediction=pred.astype(np.float32), truth=frames.numpy().astype(np.float32))
    log.info("%s: %d layers -> %s", mcfg.name, len(maps), out)
    return {"figure": str(out), "maps": str(npz), "model": mcfg.name, "layers": len(maps),
            "shapes": [list(m.shape) for m in maps]}
