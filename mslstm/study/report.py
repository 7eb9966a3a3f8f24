"""The study's tables: per-cell results aggregated over seeds (mean and 95 % t interval), paired MS-X minus X
differences, and the cost columns beside the quality ones; written as Markdown, CSV and JSON.

    from mslstm.study.report import summarize_study
    summary = summarize_study(results, "artifacts/study/ablation", cfg=cfg, stem="ablation")

A result is one cell (:func:`mslstm.study.grid.run_cell`): ``{"model", "seed", "budget", "metrics", "cost",
"train", "wall_s", ...}``; ``seed`` and ``budget`` may be missing (one seed at the steps budget: the Kubeflow
ablation pipeline's collected results). Files (``<stem>`` e.g. ``ablation``):

- ``<stem>.md``: one section per budget (quality table, MS- vs flat paired differences), then the cost table.
- ``<stem>.csv``: one row per (budget, model): every metric's mean, interval and n, the cost columns.
- ``<stem>_runs.csv``: one row per cell (seed), every number evaluate returned.
- ``<stem>_pairs.csv``: one row per (budget, pair, metric): the paired difference, its interval, excludes_zero.
- ``<stem>.json``: all of it; the figures of :mod:`mslstm.study.figures`.

Cost columns: ``params``; ``flops_forward`` (FLOPs of one sequence's forward pass, PyTorch's counter: a
multiply-add counts 2, ``model.flops.model_flops``); ``macs_forward`` (the same count in the authors' convention,
``thop`` MACs, which the MS-RNN tables call "FLOPs": ``model.flops.model_macs``, half of the former);
``flops_train`` (forward + backward); ``peak_memory_mib`` and ``step_time_ms`` (one training step at
``profile.batch_size``, measured by the profile step); ``train_time_s`` (seconds in the training loop) and
``wall_s`` (the whole cell: training, validation, evaluation, profile) per run.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from mslstm.io import atomic_open, write_json, write_text
from mslstm.study.stats import INTERVAL_METHOD, PAIRED, mean_interval, paired_difference

log = logging.getLogger(__name__)

#: Quality metrics aggregated over seeds (key in evaluate's metrics).
QUALITY = ("mse", "ssim", "skill_vs_blank", "mae", "psnr")
#: Cost columns (key in a row) -> (Markdown header, format).
COST = {
    "params": ("params", ","),
    "flops_forward": ("GFLOPs fwd / seq (torch, mul-add = 2)", ".4g"),
    "macs_forward": ("GMACs fwd / seq (thop: the authors' \"FLOPs\")", ".4g"),
    "flops_train": ("GFLOPs fwd+bwd / seq", ".4g"),
    "peak_memory_mib": ("peak train memory (MiB)", ".1f"),
    "step_time_ms": ("time / step (ms)", ".1f"),
    "predict_time_ms": ("predict / seq (ms)", ".2f"),
}
GIGA = ("flops_forward", "macs_forward", "flops_train")
BUDGET_TITLES = {"steps": "Equal steps", "seconds": "Equal time"}


def label(name: str) -> str:
    """Display label of a model (``ModelSpec.label``)."""
    from model.registry import label_of

    return label_of(name)


def _num(v: Any) -> Optional[float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def static_cost(result: Mapping[str, Any], cfg: Any = None) -> dict[str, Any]:
    """Params and forward FLOPs/MACs from the model config (``result["model_config"]``, ``eval_dir/eval.json``,
    or ``cfg``'s model section with the result's model name); {} when none is known."""
    mc = result.get("model_config")
    if mc is None and result.get("eval_dir"):
        mc = _read_json(Path(result["eval_dir"]) / "eval.json").get("model_config")
    if not mc and cfg is not None and result.get("model"):
        from mslstm.config import to_dict

        mc = to_dict(cfg.replace({"model.name": str(result["model"])}).model)
    if not mc:
        return {}
    import torch
    from model import ModelConfig, build_model, count_parameters
    from model.flops import model_flops

    from mslstm.config import from_dict

    mcfg = from_dict(ModelConfig, mc, "model")
    with torch.device("meta"):
        net = build_model(mcfg)
    flops = model_flops(mcfg, batch=1, net=net)
    return {"params": count_parameters(net), "flops_forward": flops, "macs_forward": flops // 2}


def cell_row(result: Mapping[str, Any], cfg: Any = None) -> dict[str, Any]:
    """One flat row per cell: identity, quality, cost, training figures, every other number evaluate returned."""
    metrics = dict(result.get("metrics") or {})
    if not metrics and result.get("eval_dir"):
        metrics = _read_json(Path(result["eval_dir"]) / "metrics.json")
    cost = dict(result.get("cost") or {})
    if not cost and result.get("profile_dir"):
        cost = _read_json(Path(result["profile_dir"]) / "cost.json")
    if "params" not in cost or "flops_forward" not in cost:
        cost.update(static_cost(result, cfg))
    if cost.get("flops_forward") is not None and cost.get("macs_forward") is None:
        cost["macs_forward"] = int(cost["flops_forward"]) // 2
    train = dict(result.get("train") or {})
    mem, step, pred = cost.get("peak_memory_bytes"), cost.get("step_time_s"), cost.get("predict_time_s")
    steps, t = _num(train.get("steps")), _num(train.get("time_s"))
    row: dict[str, Any] = {
        "budget": result.get("budget") or "steps", "model": str(result.get("model") or "?"),
        "seed": result.get("seed"),
        **{k: _num(metrics.get(k)) for k in QUALITY},
        "params": cost.get("params"), "flops_forward": cost.get("flops_forward"),
        "macs_forward": cost.get("macs_forward"), "flops_train": cost.get("flops_train"),
        "peak_memory_mib": None if mem is None else mem / 2**20,
        "step_time_ms": None if step is None else step * 1000,
        "predict_time_ms": None if pred is None else pred * 1000,
        "train_steps": steps, "planned_steps": _num(train.get("planned_steps")), "train_time_s": t,
        "train_step_s": t / steps if t and steps else None, "wall_s": _num(result.get("wall_s")),
        "run_id": result.get("run_id"),
    }
    for k, v in sorted(metrics.items()):
        if k not in row and k != "sequences" and _num(v) is not None:
            row[k] = float(v)
    return row


def aggregate(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (budget, model), in first-seen order: ``<metric>`` mean, ``<metric>_lo``/``_hi`` (t interval),
    ``<metric>_n``; the cost columns of the model (first cell that has them); training figures averaged."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["budget"], c["model"]), []).append(c)
    rows = []
    for (budget, model), cs in groups.items():
        row: dict[str, Any] = {"budget": budget, "model": model, "seeds": len(cs),
                               "seed_list": sorted(c["seed"] for c in cs if c.get("seed") is not None)}
        extra = sorted({k for c in cs for k in c} - set(row) - set(QUALITY) - set(COST)
                       - {"seed", "run_id", "train_steps", "planned_steps", "train_time_s", "train_step_s", "wall_s"})
        for k in (*QUALITY, *[e for e in extra if _num(cs[0].get(e)) is not None]):
            s = mean_interval([c.get(k) for c in cs])
            row[k], row[f"{k}_lo"], row[f"{k}_hi"], row[f"{k}_n"] = s["mean"], s["lo"], s["hi"], s["n"]
        for k in COST:
            row[k] = next((c[k] for c in cs if c.get(k) is not None), None)
        for k in ("train_steps", "planned_steps", "train_time_s", "train_step_s", "wall_s"):
            vals = [c[k] for c in cs if c.get(k) is not None]
            row[k] = sum(vals) / len(vals) if vals else None
        rows.append(row)
    return rows


def study_pairs(models: Sequence[str], reference_first: bool = False) -> list[tuple[str, str]]:
    """(flat, other) pairs to difference: every (X, MS-X) of ``model.registry.ms_pairs`` present in ``models``,
    plus, with ``reference_first`` (the ablation), every other model against the first one (ConvLSTM)."""
    from model.registry import ms_pairs

    present = set(models)
    pairs = [(f, m) for f, m in ms_pairs() if f in present and m in present]
    if reference_first and models:
        ref = models[0]
        pairs += [(ref, m) for m in models[1:] if (ref, m) not in pairs]
    return pairs


def pair_rows(cells: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
              pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per budget and pair: the paired difference (other minus flat) of each :data:`PAIRED` metric over their
    common seeds, and the other model's FLOPs, memory and step time as a share of the flat one's."""
    by_row = {(r["budget"], r["model"]): r for r in rows}
    out = []
    for budget in dict.fromkeys(r["budget"] for r in rows):
        for flat, ms in pairs:
            f, m = by_row.get((budget, flat)), by_row.get((budget, ms))
            if f is None or m is None:
                continue
            entry: dict[str, Any] = {"budget": budget, "flat": flat, "ms": ms}
            for k in PAIRED:
                fv = {c["seed"] if c.get("seed") is not None else 0: c.get(k) for c in cells
                      if c["budget"] == budget and c["model"] == flat}
                mv = {c["seed"] if c.get("seed") is not None else 0: c.get(k) for c in cells
                      if c["budget"] == budget and c["model"] == ms}
                entry[k] = paired_difference(fv, mv)
            for key, name in (("flops_forward", "flops_ratio"), ("peak_memory_mib", "memory_ratio"),
                              ("step_time_ms", "time_ratio")):
                a, b = _num(m.get(key)), _num(f.get(key))
                entry[name] = a / b if a is not None and b else None
            entry["mse_flat"], entry["mse_ms"] = f.get("mse"), m.get("mse")
            out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------------ Markdown
def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def fmt_interval(mean: Any, lo: Any, hi: Any, spec: str) -> str:
    """``46.1 [44.8, 47.4]``; the mean alone without an interval; ``n/a`` without a mean."""
    if mean is None:
        return "n/a"
    if lo is None or hi is None:
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(lo, spec)}, {format(hi, spec)}]"


def quality_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The quality table of one budget: mean [95 % interval] over seeds."""
    head = ("| model | seeds | MSE | SSIM | skill vs blank | MAE | PSNR | steps done (planned) | train loop (s) "
            "| run wall (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        steps = _fmt(r.get("train_steps"), ".0f")
        if r.get("planned_steps") and r.get("planned_steps") != r.get("train_steps"):
            steps += f" ({r['planned_steps']:.0f})"
        cells = [fmt_interval(r.get(k), r.get(f"{k}_lo"), r.get(f"{k}_hi"), spec)
                 for k, spec in (("mse", ".2f"), ("ssim", ".4f"), ("skill_vs_blank", ".3f"), ("mae", ".2f"),
                                 ("psnr", ".2f"))]
        lines.append(f"| {label(r['model'])} | {r['seeds']} | " + " | ".join(cells)
                     + f" | {steps} | {_fmt(r.get('train_time_s'), '.1f')} | {_fmt(r.get('wall_s'), '.1f')} |")
    return "\n".join(lines) + "\n"


def cost_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The cost table: one row per model (the cost does not depend on the seed or the budget)."""
    seen: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        seen.setdefault(r["model"], r)
    head = "| model | " + " | ".join(h for h, _ in COST.values()) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for model, r in seen.items():
        vals = []
        for k, (_, spec) in COST.items():
            v = r.get(k)
            vals.append(_fmt(None if v is None else (v / 1e9 if k in GIGA else v), spec))
        lines.append(f"| {label(model)} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def pairs_markdown(pairs: Sequence[Mapping[str, Any]]) -> str:
    """Paired differences of one budget (other minus flat), ``*`` where the 95 % interval excludes 0."""
    if not pairs:
        return ""
    lines = ["| pair (minus flat) | seeds | ΔMSE | ΔSSIM | Δskill | FLOPs ratio | memory ratio | time ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        cells = []
        for k, spec in (("mse", "+.2f"), ("ssim", "+.4f"), ("skill_vs_blank", "+.3f")):
            d = p[k]
            cells.append(fmt_interval(d["mean"], d["lo"], d["hi"], spec) + (" *" if d["excludes_zero"] else ""))
        lines.append(f"| {label(p['ms'])} − {label(p['flat'])} | {p['mse']['n']} | " + " | ".join(cells)
                     + f" | {_fmt(p.get('flops_ratio'), '.2f')} | {_fmt(p.get('memory_ratio'), '.2f')} "
                     f"| {_fmt(p.get('time_ratio'), '.2f')} |")
    return "\n".join(lines) + "\n"


def _budget_title(budget: str, cfg: Any, plan: Mapping[str, Any]) -> str:
    if cfg is None:
        return BUDGET_TITLES.get(budget, budget)
    if budget == "steps":
        return f"Equal steps: {cfg.ablation.steps or cfg.train.max_steps} optimizer steps per model"
    planned = ", ".join(f"{label(m)} {p['planned_steps']}" for m, p in plan.items())
    return (f"Equal time: {cfg.ablation.seconds:g} s of training loop per model"
            + (f" (planned steps: {planned})" if planned else ""))


def study_markdown(title: str, rows: Sequence[Mapping[str, Any]], pairs: Sequence[Mapping[str, Any]],
                   cfg: Any = None, plan: Optional[Mapping[str, Any]] = None, figures: Sequence[str] = ()) -> str:
    plan = plan or {}
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    seeds = sorted({s for r in rows for s in r.get("seed_list", [])})
    parts = [f"# {title}\n",
             f"Seeds: {', '.join(map(str, seeds)) or 'one'} (paired: for a given seed every model trains on the same "
             "batches in the same order from the same initialisation seed). Numbers: mean over seeds [" +
             INTERVAL_METHOD + "]; no interval with one seed.\n"]
    for b in budgets:
        brows = [r for r in rows if r["budget"] == b]
        bpairs = [p for p in pairs if p["budget"] == b]
        parts.append(f"## {_budget_title(b, cfg, plan)}\n")
        parts.append(quality_markdown(brows))
        if bpairs:
            parts.append("\nPaired differences per seed, other model minus flat model (MS-X − X), mean [95 % t "
                         "interval]; `*`: the interval excludes 0. Lower MSE and higher SSIM / skill are better. "
                         "Cost ratios: other / flat (< 1: cheaper).\n")
            parts.append(pairs_markdown(bpairs))
    parts.append("## Cost\n")
    parts.append(cost_markdown(rows))
    parts.append("\nCost columns: FLOPs by PyTorch's counter (a multiply-add counts 2: `model.flops.model_flops`); "
                 "MACs in the authors' convention (thop, what the MS-RNN tables call FLOPs: `model.flops.model_macs`"
                 "); memory and time of one training step at `profile.batch_size`, measured once per model.\n")
    if figures:
        parts.append("\nFigures: " + ", ".join(f"`{Path(f).name}`" for f in figures) + ".\n")
    return "\n".join(parts)


# -------------------------------------------------------------------------------------------------------- files
def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], first: Sequence[str]) -> Path:
    columns = list(first) + sorted({k for r in rows for k in r} - set(first))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else (json.dumps(r[k]) if isinstance(r[k], (list, dict)) else r[k])
                    for k in columns})
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    return path


def _flat_pairs(pairs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in pairs:
        for k in PAIRED:
            d = p[k]
            out.append({"budget": p["budget"], "flat": p["flat"], "other": p["ms"], "metric": k, "n": d["n"],
                        "mean": d["mean"], "lo": d["lo"], "hi": d["hi"], "excludes_zero": d["excludes_zero"],
                        "seeds": d["seeds"]})
    return out


def summarize_study(results: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, cfg: Any = None,
                    stem: str = "study", data_dir: Optional[str | os.PathLike] = None,
                    plan: Optional[Mapping[str, Any]] = None, preset_pairs: Optional[Sequence[str]] = None,
                    title: Optional[str] = None) -> dict[str, Any]:
    """Tables and figures of the cells ``results`` (see the module doc).

    Args:
        results: one dict per cell (``seed``/``budget``/``cost``/``train``/dirs optional).
        out_dir: output folder.
        cfg: the study's Config (titles; params/FLOPs of a result without cost figures).
        stem: file name stem.
        data_dir: the data set: with it, Figure 5's layer outputs of each model's first trained checkpoint.
        plan: the seconds budget's plan per model (titles).
        preset_pairs: the models in study order; with ``stem == "ablation"`` every model is also differenced
            against the first (ConvLSTM).
        title: the Markdown title.

    Returns:
        ``{"cells", "rows", "pairs", "radar", "radar_axes", "files", "interval"}``.
    """
    from mslstm.errors import MSLSTMError
    from mslstm.study import figures

    if not results:
        raise MSLSTMError("summarize_study: no per-cell results to summarise")
    out = Path(out_dir)
    cells = [cell_row(r, cfg) for r in results]
    rows = aggregate(cells)
    models = list(dict.fromkeys(preset_pairs or [r["model"] for r in rows]))
    pairs = pair_rows(cells, rows, study_pairs(models, reference_first=stem == "ablation"))
    files: list[Path] = []
    files.append(_write_csv(out / f"{stem}.csv", rows, ("budget", "model", "seeds")))
    files.append(_write_csv(out / f"{stem}_runs.csv", cells, ("budget", "model", "seed")))
    if pairs:
        files.append(_write_csv(out / f"{stem}_pairs.csv", _flat_pairs(pairs), ("budget", "flat", "other", "metric")))
    figs, radar, axes = figures.study_figures(out, rows, pairs)
    if data_dir is not None:
        figs += figures.layer_figures(out / "layers", results, data_dir)
    default_title = ("Ablation: the MS-LSTM family" if stem == "ablation" else "Comparison") + \
        " on the same data and budget"
    write_text(out / f"{stem}.md", study_markdown(title or default_title, rows, pairs, cfg, plan, figs))
    files.append(out / f"{stem}.md")
    files += figs
    summary = {"cells": cells, "rows": rows, "pairs": pairs, "radar": radar, "radar_axes": axes,
               "interval": INTERVAL_METHOD, "plan": dict(plan or {}),
               "files": [str(f) for f in files + [out / f"{stem}.json"]]}
    write_json(out / f"{stem}.json", summary)
    return summary


def dvc_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers ``dvc metrics show`` lists: budget -> model -> quality means with interval bounds and n, the
    training figures; ``pairs`` -> budget -> "<other>-<flat>" -> the paired differences' means and bounds."""
    out: dict[str, Any] = {}
    for r in summary["rows"]:
        keys = [f"{k}{s}" for k in QUALITY for s in ("", "_lo", "_hi")] + ["seeds", "train_steps", "wall_s"]
        out.setdefault(r["budget"], {})[r["model"]] = {k: r[k] for k in keys if _num(r.get(k)) is not None}
    for p in summary.get("pairs", []):
        d = {f"{k}_{s}": p[k][s] for k in PAIRED for s in ("mean", "lo", "hi") if _num(p[k].get(s)) is not None}
        out.setdefault("pairs", {}).setdefault(p["budget"], {})[f"{p['ms']}-{p['flat']}"] = d
    return out


def summarize_ablation(results: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, cfg: Any = None,
                       stem: str = "ablation") -> dict[str, Any]:
    """:func:`summarize_study` of per-model results without seeds (the Kubeflow ablation pipeline's collected
    evaluate results): one seed at the steps budget."""
    return summarize_study(results, out_dir, cfg=cfg, stem=stem)
