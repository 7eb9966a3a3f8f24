"""The paper's ablation: ConvLSTM, SMS-LSTM, TMS-LSTM and MS-LSTM trained, evaluated and profiled on the same data
and budget, then compared in one table and one radar chart.

    from mslstm.evaluation.ablation import run_ablation, summarize_ablation
    summary = run_ablation(cfg, "artifacts/dataset", "artifacts/ablation")

``run_ablation`` trains each model of ``ablation.models`` into ``<out>/<model>/train`` (a plain call of
``mslstm.training.train.train``), evaluates it into ``<model>/eval`` and profiles it into ``<model>/profile``, all
with the same config except ``model.name`` and the budget (``ablation.epochs`` -> ``train.epochs``,
``ablation.steps`` -> ``train.max_steps``, ``ablation.eval_sequences`` -> ``evaluate.max_sequences``, plus
``ablation.overrides``). ``summarize_ablation(results, out_dir)`` then writes ``ablation.md``, ``ablation.csv``,
``ablation.json`` and ``radar.png``. The Kubeflow ablation pipeline calls ``summarize_ablation`` alone on the
results it collected from its ParallelFor.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from mslstm.io import atomic_open, write_json, write_text

log = logging.getLogger(__name__)


def _label(name: str) -> str:
    """Display label of a model (``ModelSpec.label`` from the registry)."""
    from model.registry import label_of

    return label_of(name)

# The five radar indicators (all lower-is-better): key in the table row -> axis label.
RADAR_AXES = {
    "params": "params",
    "flops_forward": "FLOPs",
    "peak_memory_mib": "memory",
    "step_time_ms": "time / step",
    "mse": "MSE",
}
COLUMNS = ("model", "params", "flops_forward", "flops_train", "peak_memory_mib", "step_time_ms", "predict_time_ms",
           "mse", "mae", "ssim", "psnr", "train_time_s", "train_steps")


def ablation_config(cfg: Any, model_name: str) -> Any:
    """``cfg`` for one model of the ablation: its name and the shared budget applied."""
    a = cfg.ablation
    over: dict[str, Any] = {"model.name": model_name}
    if a.epochs:
        over["train.epochs"] = a.epochs
    if a.steps:
        over["train.max_steps"] = a.steps
    if a.eval_sequences:
        over["evaluate.max_sequences"] = a.eval_sequences
    over.update(a.overrides)
    return cfg.replace(over)


def run_ablation(cfg: Any, data_dir: str | os.PathLike, out_dir: Optional[str | os.PathLike] = None
                 ) -> dict[str, Any]:
    """Train, evaluate and profile every model of ``cfg.ablation.models``; summarise them (see module doc)."""
    from mslstm.evaluation.evaluate import evaluate
    from mslstm.evaluation.profile import profile
    from mslstm.training.checkpoint import find_checkpoint
    from mslstm.training.train import train

    out = Path(out_dir if out_dir is not None else cfg.ablation.out_dir)
    results = []
    t_all = time.perf_counter()
    for name in cfg.ablation.models:
        mcfg = ablation_config(cfg, name)
        d = out / name
        log.info("ablation: %s: training into %s", name, d / "train")
        t0 = time.perf_counter()
        tmetrics = train(mcfg, data_dir, d / "train")
        train_time = time.perf_counter() - t0
        ev = evaluate(mcfg, find_checkpoint(d / "train"), data_dir, d / "eval")
        cost = profile(mcfg, d / "profile", run_info=d / "train")
        results.append({
            "model": name,
            "metrics": ev["metrics"],
            "cost": {k: v for k, v in cost.items() if k != "run_id"},
            "train": {"time_s": train_time, "steps": tmetrics.get("steps"), "best_val_mse": tmetrics.get("best_val_mse")},
            "eval_dir": str(d / "eval"),
            "profile_dir": str(d / "profile"),
        })
        log.info("ablation: %s done in %.1f s (train %.1f s)", name, time.perf_counter() - t0, train_time)
    summary = summarize_ablation(results, out)
    summary["total_time_s"] = time.perf_counter() - t_all
    write_json(out / "ablation.json", summary)
    return summary


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _row(result: Mapping[str, Any], cfg: Any = None) -> dict[str, Any]:
    """One table row from a per-model result: ``{"model", "metrics", "cost"?, "train"?, "eval_dir"?,
    "profile_dir"?}`` (missing cost figures are read from ``profile_dir/cost.json``, else params and FLOPs are
    computed from the model config in ``result["model_config"]``, ``eval_dir/eval.json`` or ``cfg`` with the
    result's model name; what cannot be known stays None)."""
    name = str(result.get("model") or "?")
    metrics = dict(result.get("metrics") or {})
    cost = dict(result.get("cost") or {})
    if not cost and result.get("profile_dir"):
        cost = _read_json(Path(result["profile_dir"]) / "cost.json")
    if not metrics and result.get("eval_dir"):
        metrics = _read_json(Path(result["eval_dir"]) / "metrics.json")
    if "params" not in cost or "flops_forward" not in cost:
        cost.update(_static_cost(result, cfg))
    train = dict(result.get("train") or {})
    mem = cost.get("peak_memory_bytes")
    step = cost.get("step_time_s")
    pred = cost.get("predict_time_s")
    return {
        "model": name,
        "params": cost.get("params"),
        "flops_forward": cost.get("flops_forward"),
        "flops_train": cost.get("flops_train"),
        "peak_memory_mib": None if mem is None else mem / 2**20,
        "step_time_ms": None if step is None else step * 1000,
        "predict_time_ms": None if pred is None else pred * 1000,
        "mse": metrics.get("mse"),
        "mae": metrics.get("mae"),
        "ssim": metrics.get("ssim"),
        "psnr": metrics.get("psnr"),
        "train_time_s": train.get("time_s"),
        "train_steps": train.get("steps"),
    }


def _static_cost(result: Mapping[str, Any], cfg: Any = None) -> dict[str, Any]:
    """Params and forward FLOPs from the model config (``result["model_config"]``, ``eval_dir/eval.json``, or
    ``cfg``'s model section with the result's model name)."""
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
        params = count_parameters(build_model(mcfg))
    return {"params": params, "flops_forward": model_flops(mcfg, batch=1)}


def radar_table(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Each indicator divided by its largest value over the models (so in (0, 1]; closer to 0 is better).
    Indicators missing for some model are left out; returns (table, axes used)."""
    axes = [k for k in RADAR_AXES if all(isinstance(r.get(k), (int, float)) and math.isfinite(r[k]) for r in rows)]
    table: dict[str, dict[str, float]] = {}
    for r in rows:
        table[_label(r["model"])] = {}
    for k in axes:
        top = max(float(r[k]) for r in rows)
        for r in rows:
            table[_label(r["model"])][k] = float(r[k]) / top if top > 0 else 0.0
    return table, axes


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = ("| model | params | GFLOPs/seq fwd | GFLOPs/seq fwd+bwd | peak memory (MiB) | time / step (ms) "
            "| time / seq predict (ms) | MSE | MAE | SSIM | PSNR | train time (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        gf = None if r["flops_forward"] is None else r["flops_forward"] / 1e9
        gt = None if r["flops_train"] is None else r["flops_train"] / 1e9
        lines.append(
            f"| {_label(r['model'])} | {_fmt(r['params'], ',')} | {_fmt(gf, '.4g')} | {_fmt(gt, '.4g')} "
            f"| {_fmt(r['peak_memory_mib'], '.2f')} | {_fmt(r['step_time_ms'], '.1f')} "
            f"| {_fmt(r['predict_time_ms'], '.2f')} | {_fmt(r['mse'], '.2f')} | {_fmt(r['mae'], '.2f')} "
            f"| {_fmt(r['ssim'], '.4f')} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['train_time_s'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def summarize_ablation(results: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, cfg: Any = None
                       ) -> dict[str, Any]:
    """Comparison table (``ablation.md``, ``ablation.csv``, ``ablation.json``) and ``radar.png`` of per-model results.

    Args:
        results: one dict per model: ``{"model": name, "metrics": {mse, ssim, ...}, "cost": {cost.json},
            "train": {"time_s", "steps"}, "eval_dir": ..., "profile_dir": ...}``; ``cost``/``train``/dirs optional.
        out_dir: output folder.
        cfg: the ablation's Config (optional): params and FLOPs of a result without cost figures are computed
            from its model section with the result's model name.

    Returns:
        ``{"rows": [...], "radar": {model: {indicator: normalised}}, "radar_axes": [...], "files": [...]}``.
    """
    from mslstm.evaluation.visuals import save_radar

    if not results:
        from mslstm.errors import MSLSTMError

        raise MSLSTMError("summarize_ablation: no per-model results to compare")
    out = Path(out_dir)
    rows = [_row(r, cfg) for r in results]
    table, axes = radar_table(rows)
    files = []
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
    with atomic_open(out / "ablation.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    files.append(out / "ablation.csv")
    missing = [RADAR_AXES[k] for k in RADAR_AXES if k not in axes]
    note = (f"\nRadar chart (`radar.png`): {', '.join(RADAR_AXES[k] for k in axes)}, each divided by its largest "
            "value over the models; closer to the centre is better.")
    if missing:
        note += f" Left out (not measured for every model): {', '.join(missing)}."
    write_text(out / "ablation.md", "# Ablation: the MS-LSTM family on the same data and budget\n\n"
               + markdown_table(rows) + note + "\n")
    files.append(out / "ablation.md")
    if len(axes) >= 3:
        files.append(save_radar(out / "radar.png", table, axes, [RADAR_AXES[k] for k in axes]))
    else:
        log.warning("radar chart skipped: only %d indicators known for every model", len(axes))
    summary = {"rows": rows, "radar": table, "radar_axes": axes, "files": [str(f) for f in files + [out / "ablation.json"]]}
    write_json(out / "ablation.json", summary)
    return summary
