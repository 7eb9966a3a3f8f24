"""The study's figures, one set per budget (file names get ``_<budget>`` when the study has two budgets):

- ``bars.png``: quality (MSE, SSIM, skill vs blank: mean over seeds with the 95 % t interval as error bars) and
  cost (GFLOPs, peak memory, time per step) per model; MS- models in orange.
- ``radar.png``: the paper's Figure 4: params, FLOPs, memory, time per step and MSE, each divided by its largest
  value over the models (closer to the centre is better), with the MSE interval drawn as a radial whisker. With
  more than ``RADAR_MAX_LINES`` models (the 11 pairs: 22 lines cannot be told apart) one small radar per MS-X vs
  X pair, all on the same scale (each indicator divided by its largest value over every model).
- ``pairs.png``: the paired differences (other minus flat) with their intervals against 0, per metric.
- ``layers/<model>.png``: the paper's Figure 5 (each layer's hidden output for one test sequence) from each
  model's first trained checkpoint of the study (``mslstm.evaluation.layers.layer_figure``).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

#: The radar's indicators (all lower-is-better): row key -> axis label.
RADAR_AXES = {"params": "params", "flops_forward": "FLOPs", "peak_memory_mib": "memory",
              "step_time_ms": "time / step", "mse": "MSE"}
#: More models than this on one radar cannot be told apart: one small radar per pair instead.
RADAR_MAX_LINES = 6
#: Bar panels: row key -> (title, scale, has an interval).
BARS = {"mse": ("test MSE / frame", 1.0, True), "ssim": ("SSIM", 1.0, True),
        "skill_vs_blank": ("skill vs blank frames", 1.0, True), "flops_forward": ("GFLOPs / sequence", 1e-9, False),
        "peak_memory_mib": ("peak training memory (MiB)", 1.0, False),
        "step_time_ms": ("time / training step (ms)", 1.0, False)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from mslstm.io import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")  # legends placed outside the axes included
    _plt().close(fig)
    return path


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _label(name: str) -> str:
    from model.registry import label_of

    return label_of(name)


def _is_ms(name: str) -> bool:
    from model.registry import get_spec

    try:
        return get_spec(name).arrangement == "pyramid"
    except ValueError:
        return False


def radar_table(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Each indicator divided by its largest value over ``rows`` (so in (0, 1]; closer to 0 is better), plus
    ``mse_lo``/``mse_hi`` scaled alike when the rows have an MSE interval. Indicators missing for some model are
    left out; returns (table keyed by label, axes used)."""
    axes = [k for k in RADAR_AXES if all(_is_num(r.get(k)) for r in rows)]
    table: dict[str, dict[str, float]] = {_label(r["model"]): {} for r in rows}
    for k in axes:
        top = max(float(r[k]) for r in rows)
        for r in rows:
            t = table[_label(r["model"])]
            t[k] = float(r[k]) / top if top > 0 else 0.0
            if k == "mse" and _is_num(r.get("mse_lo")) and _is_num(r.get("mse_hi")) and top > 0:
                t["mse_lo"], t["mse_hi"] = float(r["mse_lo"]) / top, float(r["mse_hi"]) / top
    return table, axes


def _radar_top(table: Mapping[str, Mapping[str, float]]) -> float:
    return max([1.05] + [float(r.get("mse_hi", 0)) * 1.02 for r in table.values()])


def _radar_panel(ax: Any, table: Mapping[str, Mapping[str, float]], axes: Sequence[str],
                 colours: Mapping[str, str], fontsize: int, top: float) -> None:
    """The models of ``table`` on one polar axis (radius 0 to ``top``): a closed line each, the MSE interval as a
    radial whisker."""
    import numpy as np

    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    for model, row in table.items():
        vals = [float(row[a]) for a in axes]
        colour = colours[model]
        ax.plot(angles + angles[:1], vals + vals[:1], marker="o", markersize=3 + fontsize // 4, color=colour,
                label=model)
        ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.06, color=colour)
        if "mse" in axes and "mse_lo" in row:
            a = angles[axes.index("mse")]
            ax.plot([a, a], [row["mse_lo"], row["mse_hi"]], color=colour, linewidth=3, alpha=0.7)
    ax.set_xticks(angles)
    ax.set_xticklabels([RADAR_AXES[a] for a in axes], fontsize=fontsize)
    ax.set_ylim(0, top)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["0.25", "0.5", "0.75", "1"], fontsize=fontsize - 2)


def save_radar(path: Path, table: Mapping[str, Mapping[str, float]], axes: Sequence[str], title: str) -> Path:
    """Figure 4's radar with the MSE interval as a radial whisker at the MSE vertex."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"polar": True})
    _radar_panel(ax, table, axes, {m: f"C{i % 10}" for i, m in enumerate(table)}, 9, _radar_top(table))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.12), fontsize=8)
    return _save(fig, path)


def save_radar_pairs(path: Path, table: Mapping[str, Mapping[str, float]], axes: Sequence[str],
                     pairs: Sequence[tuple[str, str]], title: str, columns: int = 4) -> Path:
    """One small radar per (flat, MS-) pair of model labels, flat in blue, MS- in orange (as in the bars), all on
    the scale of ``table`` (normalised over every model, so panels compare)."""
    plt = _plt()
    rows = math.ceil(len(pairs) / columns)
    fig, grid = plt.subplots(rows, columns, figsize=(3.1 * columns, 3.3 * rows), squeeze=False,
                             subplot_kw={"polar": True})
    for ax, (flat, ms) in zip(grid.flat, pairs):
        _radar_panel(ax, {m: table[m] for m in (flat, ms)}, axes, {flat: "C0", ms: "C1"}, 7, _radar_top(table))
        ax.set_title(f"{ms} vs {flat}", fontsize=8, pad=12)
    for ax in list(grid.flat)[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(title + "; blue: flat model, orange: its MS- version", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_bars(path: Path, rows: Sequence[Mapping[str, Any]], title: str) -> Optional[Path]:
    """One panel per :data:`BARS` figure known for every model; quality panels with 95 % interval error bars."""
    keys = [k for k in BARS if all(_is_num(r.get(k)) for r in rows)]
    if not keys:
        return None
    plt = _plt()
    labels = [_label(r["model"]) for r in rows]
    colours = ["C1" if _is_ms(r["model"]) else "C0" for r in rows]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys) + 1, 3.8 + 0.08 * len(rows)), squeeze=False)
    for ax, k in zip(axes[0], keys):
        name, scale, interval = BARS[k]
        means = [float(r[k]) * scale for r in rows]
        yerr = None
        if interval and all(_is_num(r.get(f"{k}_lo")) and _is_num(r.get(f"{k}_hi")) for r in rows):
            yerr = [[m - float(r[f"{k}_lo"]) * scale for m, r in zip(means, rows)],
                    [float(r[f"{k}_hi"]) * scale - m for m, r in zip(means, rows)]]
        ax.bar(range(len(rows)), means, color=colours, yerr=yerr, capsize=3 if yerr else 0)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(name + (" (95 % CI)" if yerr else ""), fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_pairs(path: Path, pairs: Sequence[Mapping[str, Any]], title: str) -> Optional[Path]:
    """Forest plot: per metric, each pair's mean paired difference with its 95 % interval, against 0."""
    from mslstm.study.stats import PAIRED

    if not pairs:
        return None
    plt = _plt()
    names = {"mse": "Δ MSE (lower: other better)", "ssim": "Δ SSIM (higher: other better)",
             "skill_vs_blank": "Δ skill (higher: other better)"}
    fig, axes = plt.subplots(1, len(PAIRED), figsize=(4.2 * len(PAIRED), 1.2 + 0.42 * len(pairs)), squeeze=False)
    ylabels = [f"{_label(p['ms'])} − {_label(p['flat'])}" for p in pairs]
    for ax, k in zip(axes[0], PAIRED):
        for i, p in enumerate(pairs):
            d = p[k]
            if d["mean"] is None:
                continue
            colour = "C3" if d["excludes_zero"] else "C7"
            if d["lo"] is not None:
                ax.plot([d["lo"], d["hi"]], [i, i], color=colour, linewidth=2)
            ax.plot([d["mean"]], [i], "o", color=colour)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(pairs)))
        ax.set_yticklabels(ylabels if k == PAIRED[0] else [""] * len(pairs), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(names.get(k, k), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title + " (red: the 95 % interval excludes 0)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def study_figures(out: Path, rows: Sequence[Mapping[str, Any]], pairs: Sequence[Mapping[str, Any]]
                  ) -> tuple[list[Path], dict[str, Any], dict[str, list[str]]]:
    """Bars, radar and pairs figures per budget; returns (files, {budget: radar table}, {budget: radar axes})."""
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    files: list[Path] = []
    radar: dict[str, Any] = {}
    radar_axes: dict[str, list[str]] = {}
    for b in budgets:
        brows = [r for r in rows if r["budget"] == b]
        suffix = f"_{b}" if len(budgets) > 1 else ""
        what = {"steps": "equal steps", "seconds": "equal time"}.get(b, b)
        n = max(int(r.get("seeds") or 1) for r in brows)
        bars = save_bars(out / f"bars{suffix}.png", brows, f"{what}, {n} seed(s); MS- models in orange")
        if bars is not None:
            files.append(bars)
        table, axes = radar_table(brows)
        radar[b], radar_axes[b] = table, axes
        groups = [(_label(p["flat"]), _label(p["ms"])) for p in pairs if p["budget"] == b]
        groups = [g for g in dict.fromkeys(groups) if all(m in table for m in g)]
        radar_title = f"{what}: normalised cost and MSE (closer to the centre is better)"
        if len(axes) >= 3 and len(table) > RADAR_MAX_LINES and groups:
            files.append(save_radar_pairs(out / f"radar{suffix}.png", table, axes, groups, radar_title))
        elif len(axes) >= 3:
            files.append(save_radar(out / f"radar{suffix}.png", table, axes, radar_title))
        else:
            log.warning("radar chart (%s) skipped: only %d indicators known for every model", b, len(axes))
        pf = save_pairs(out / f"pairs{suffix}.png", [p for p in pairs if p["budget"] == b],
                        f"{what}: paired differences over seeds")
        if pf is not None:
            files.append(pf)
    return files, radar, radar_axes


def layer_figures(out: Path, results: Sequence[Mapping[str, Any]], data_dir: str | os.PathLike,
                  split: str = "test", index: int = 0) -> list[Path]:
    """Figure 5 for each model: ``layers/<model>.png`` from the first result of that model whose checkpoint is
    still on disk (the steps budget first, then the lowest seed); models without one are left out (logged)."""
    from mslstm.errors import MSLSTMError
    from mslstm.evaluation.layers import layer_figure
    from mslstm.training.checkpoint import find_checkpoint

    order = sorted(results, key=lambda r: (r.get("budget") != "steps", r.get("seed") or 0))
    files: list[Path] = []
    done: set[str] = set()
    for r in order:
        model = r.get("model")
        if model in done or not r.get("train_dir"):
            continue
        try:
            ckpt = find_checkpoint(r["train_dir"])
        except MSLSTMError:
            continue
        try:
            fig = layer_figure(ckpt, data_dir, out / f"{model}.png", split, index)
        except (MSLSTMError, ValueError) as exc:
            log.warning("layer figure of %s skipped: %s", model, exc)
            done.add(str(model))
            continue
        files.append(Path(fig["figure"]))
        done.add(str(model))
    missing = sorted({str(r.get("model")) for r in results} - done)
    if missing:
        log.warning("layer figures: no checkpoint on disk for %s", ", ".join(missing))
    return files
