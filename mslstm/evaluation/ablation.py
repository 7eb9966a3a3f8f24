"""The comparison: any list of registered models trained, evaluated and profiled on the same data and budget, then
compared in one table and two charts (the paper's ablation is the default list: ConvLSTM, SMS-LSTM, TMS-LSTM,
MS-LSTM; ``mslstm compare`` takes any list, e.g. every baseline and its MS- version).

    from mslstm.evaluation.ablation import compare_models, run_ablation, summarize_ablation
    summary = compare_models(cfg, "artifacts/dataset", "artifacts/compare", ["predrnn", "mspredrnn"], stem="compare")
    summary = run_ablation(cfg, "artifacts/dataset", "artifacts/ablation")     # = ablation.models, stem "ablation"

``compare_models`` trains each model into ``<out>/<model>/train`` (a plain call of
``mslstm.training.train.train``), evaluates it into ``<model>/eval`` and profiles it into ``<model>/profile``, all
with the same config except ``model.name`` and the budget (``ablation.epochs`` -> ``train.epochs``,
``ablation.steps`` -> ``train.max_steps``, ``ablation.eval_sequences`` -> ``evaluate.max_sequences``, plus
``ablation.overrides``). MLflow: one parent run (``compare-<stem>``) with one nested child run per model (the
model's training, evaluation and profile all log into its child; ``compare/*`` metrics make the MLflow UI's
run comparison show the table), the table and charts as the parent's artifacts.
``summarize_ablation(results, out_dir, stem=...)`` then writes ``<stem>.md`` (table + MS- vs flat pairs),
``<stem>.csv`` (every metric evaluate returned), ``<stem>.json``, ``radar.png`` and ``bars.png``. The Kubeflow
ablation pipeline calls ``summarize_ablation`` alone on the results it collected from its ParallelFor.
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
           "mse", "mae", "ssim", "psnr", "train_time_s", "train_steps", "train_step_s")
#: Metrics shown in the Markdown table besides MSE/MAE/SSIM/PSNR when evaluate returns them (radar skill scores).
SHOWN_METRIC_PREFIXES = ("csi", "hss")
#: Bar chart panels: row key -> (title, scale).
BARS = {"mse": ("MSE (per frame)", 1.0), "flops_forward": ("GFLOPs / sequence", 1e-9),
        "peak_memory_mib": ("peak training memory (MiB)", 1.0), "step_time_ms": ("time / training step (ms)", 1.0)}


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
    """The paper's ablation: :func:`compare_models` over ``cfg.ablation.models`` into ``ablation.out_dir``."""
    return compare_models(cfg, data_dir, out_dir if out_dir is not None else cfg.ablation.out_dir,
                          list(cfg.ablation.models), stem="ablation")


def compare_models(cfg: Any, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   models: Optional[Sequence[str]] = None, stem: str = "compare") -> dict[str, Any]:
    """Train, evaluate and profile every model of ``models`` (default ``cfg.ablation.models``) at the
    ``ablation`` budget; summarise them (see module doc). Returns the summary (+ ``total_time_s``, ``run_id``)."""
    from model.registry import get_spec

    from mslstm.errors import ConfigError
    from mslstm.evaluation.evaluate import evaluate
    from mslstm.evaluation.profile import profile
    from mslstm.tracking import open_run
    from mslstm.training.checkpoint import find_checkpoint
    from mslstm.training.train import train

    names = list(models if models is not None else cfg.ablation.models)
    for name in names:
        try:
            get_spec(name)
        except ValueError as exc:
            raise ConfigError(f"models: {exc}") from None
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"models: list each model once, at least one (got {names})")
    out = Path(out_dir)
    results = []
    t_all = time.perf_counter()
    budget = {"compare.models": ",".join(names), "compare.epochs": cfg.ablation.epochs,
              "compare.steps": cfg.ablation.steps, "compare.eval_sequences": cfg.ablation.eval_sequences,
              "compare.data_dir": str(data_dir)}
    with open_run(cfg, run_name=f"compare-{stem}-{len(names)}-models", tags={"mslstm.step": "compare"}) as parent:
        parent.log_params(budget)
        for name in names:
            mcfg = ablation_config(cfg, name)
            d = out / name
            with open_run(mcfg, run_name=name, nested=True, tags={"mslstm.model": name,
                                                                   "mslstm.step": "compare-model"}) as child:
                log.info("%s: %s: training into %s", stem, name, d / "train")
                t0 = time.perf_counter()
                tmetrics = train(mcfg, data_dir, d / "train")
                train_time = time.perf_counter() - t0
                ev = evaluate(mcfg, find_checkpoint(d / "train"), data_dir, d / "eval")
                cost = profile(mcfg, d / "profile", run_info=d / "train")
                result = {
                    "model": name,
                    "metrics": ev["metrics"],
                    "cost": {k: v for k, v in cost.items() if k != "run_id"},
                    "train": {"time_s": train_time, "steps": tmetrics.get("steps"),
                              "best_val_mse": tmetrics.get("best_val_mse")},
                    "eval_dir": str(d / "eval"),
                    "profile_dir": str(d / "profile"),
                    "run_id": child.run_id,
                }
                row = _row(result)
                child.log_metrics({f"compare/{k}": float(v) for k, v in row.items()
                                   if k != "model" and isinstance(v, (int, float)) and math.isfinite(v)},
                                  synchronous=True)
            results.append(result)
            log.info("%s: %s done in %.1f s (train %.1f s)", stem, name, time.perf_counter() - t0, train_time)
        summary = summarize_ablation(results, out, stem=stem)
        summary["total_time_s"] = time.perf_counter() - t_all
        summary["run_id"] = parent.run_id
        summary["child_run_ids"] = {r["model"]: r["run_id"] for r in results}
        write_json(out / f"{stem}.json", summary)
        parent.log_metrics({"compare/total_time_s": summary["total_time_s"]}, synchronous=True)
        for f in summary["files"]:
            if Path(f).is_file():
                parent.log_artifact(f, artifact_path="compare")
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
        "train_step_s": (train["time_s"] / train["steps"]) if train.get("time_s") and train.get("steps") else None,
        # every other number evaluate returned (radar CSI/HSS, baselines, skill): into the CSV and JSON
        **{k: float(v) for k, v in sorted(metrics.items())
           if k not in COLUMNS and k != "sequences" and isinstance(v, (int, float)) and not isinstance(v, bool)},
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


def _shown_extra(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Extra metric columns of the Markdown table: evaluate's CSI/HSS figures when it reported them."""
    keys = {k for r in rows for k in r if k.lower().startswith(SHOWN_METRIC_PREFIXES)}
    return sorted(keys)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    extra = _shown_extra(rows)
    head = ("| model | params | GFLOPs/seq fwd | GFLOPs/seq fwd+bwd | peak memory (MiB) | time / step (ms) "
            "| time / seq predict (ms) | MSE | MAE | SSIM | PSNR | " + "".join(f"{k} | " for k in extra)
            + "train time (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        gf = None if r["flops_forward"] is None else r["flops_forward"] / 1e9
        gt = None if r["flops_train"] is None else r["flops_train"] / 1e9
        lines.append(
            f"| {_label(r['model'])} | {_fmt(r['params'], ',')} | {_fmt(gf, '.4g')} | {_fmt(gt, '.4g')} "
            f"| {_fmt(r['peak_memory_mib'], '.2f')} | {_fmt(r['step_time_ms'], '.1f')} "
            f"| {_fmt(r['predict_time_ms'], '.2f')} | {_fmt(r['mse'], '.2f')} | {_fmt(r['mae'], '.2f')} "
            f"| {_fmt(r['ssim'], '.4f')} | {_fmt(r['psnr'], '.2f')} | "
            + "".join(f"{_fmt(r.get(k), '.4f')} | " for k in extra)
            + f"{_fmt(r['train_time_s'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def pair_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (flat X, MS-X) pair present in ``rows`` (``model.registry.ms_pairs``): MS-X's FLOPs, peak
    memory and step time as a share of X's (< 1 = the pyramid is cheaper) and both measured MSEs."""
    from model.registry import ms_pairs

    by = {r["model"]: r for r in rows}

    def ratio(ms: Mapping[str, Any], flat: Mapping[str, Any], key: str) -> Optional[float]:
        a, b = ms.get(key), flat.get(key)
        return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None

    out = []
    for flat, ms in ms_pairs():
        if flat in by and ms in by:
            f, m = by[flat], by[ms]
            out.append({"flat": flat, "ms": ms, "flops_ratio": ratio(m, f, "flops_forward"),
                        "memory_ratio": ratio(m, f, "peak_memory_mib"), "time_ratio": ratio(m, f, "step_time_ms"),
                        "mse_flat": f.get("mse"), "mse_ms": m.get("mse")})
    return out


def pair_markdown(pairs: Sequence[Mapping[str, Any]]) -> str:
    """The MS-X vs X table (empty string when no pair was compared)."""
    if not pairs:
        return ""
    lines = ["| MS- model vs flat | FLOPs MS/flat | memory MS/flat | time MS/flat | MSE flat | MSE MS- |",
             "|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {_label(p['ms'])} vs {_label(p['flat'])} | {_fmt(p['flops_ratio'], '.2f')} "
                     f"| {_fmt(p['memory_ratio'], '.2f')} | {_fmt(p['time_ratio'], '.2f')} "
                     f"| {_fmt(p['mse_flat'], '.2f')} | {_fmt(p['mse_ms'], '.2f')} |")
    return "\n".join(lines) + "\n"


def save_bars(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Optional[Path]:
    """Bar chart, one panel per figure of :data:`BARS` (MSE, GFLOPs, peak memory, time per step), one bar per
    model; MS- models hatched. None when no panel has a value for every model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from model.registry import get_spec

    keys = [k for k in BARS if all(isinstance(r.get(k), (int, float)) for r in rows)]
    if not keys:
        return None
    labels = [_label(r["model"]) for r in rows]
    ms = [get_spec(r["model"]).arrangement == "pyramid" for r in rows]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 1, 3.6 + 0.08 * len(rows)), squeeze=False)
    for ax, k in zip(axes[0], keys):
        title, scale = BARS[k]
        bars = ax.bar(range(len(rows)), [float(r[k]) * scale for r in rows], color="C0")
        for bar, is_ms in zip(bars, ms):
            if is_ms:
                bar.set_color("C1")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("same data and budget; MS- models in orange", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return path


def summarize_ablation(results: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, cfg: Any = None,
                       stem: str = "ablation") -> dict[str, Any]:
    """Comparison table (``<stem>.md``, ``<stem>.csv``, ``<stem>.json``), ``radar.png`` and ``bars.png`` of
    per-model results.

    Args:
        results: one dict per model: ``{"model": name, "metrics": {mse, ssim, ...}, "cost": {cost.json},
            "train": {"time_s", "steps"}, "eval_dir": ..., "profile_dir": ...}``; ``cost``/``train``/dirs optional.
        out_dir: output folder.
        cfg: the Config (optional): params and FLOPs of a result without cost figures are computed from its
            model section with the result's model name.
        stem: file name stem (``ablation`` for the paper's ablation, ``compare`` for ``mslstm compare``).

    Returns:
        ``{"rows": [...], "pairs": [...], "radar": {model: {indicator: normalised}}, "radar_axes": [...],
        "files": [...]}``.
    """
    from mslstm.evaluation.visuals import save_radar

    if not results:
        from mslstm.errors import MSLSTMError

        raise MSLSTMError("summarize_ablation: no per-model results to compare")
    out = Path(out_dir)
    rows = [_row(r, cfg) for r in results]
    table, axes = radar_table(rows)
    pairs = pair_rows(rows)
    files = []
    columns = list(COLUMNS) + sorted({k for r in rows for k in r} - set(COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    with atomic_open(out / f"{stem}.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
    files.append(out / f"{stem}.csv")
    missing = [RADAR_AXES[k] for k in RADAR_AXES if k not in axes]
    note = (f"\nRadar chart (`radar.png`): {', '.join(RADAR_AXES[k] for k in axes)}, each divided by its largest "
            "value over the models; closer to the centre is better. Bars (`bars.png`): the raw figures.")
    if missing:
        note += f" Left out (not measured for every model): {', '.join(missing)}."
    pair_md = pair_markdown(pairs)
    if pair_md:
        pair_md = ("\n## MS- versions against their flat models\n\nShares below 1: the MS- version is cheaper. "
                   "MSE as measured at this budget, whichever way it falls.\n\n" + pair_md)
    title = ("Ablation: the MS-LSTM family" if stem == "ablation" else "Comparison") + " on the same data and budget"
    write_text(out / f"{stem}.md", f"# {title}\n\n" + markdown_table(rows) + note + "\n" + pair_md)
    files.append(out / f"{stem}.md")
    if len(axes) >= 3:
        files.append(save_radar(out / "radar.png", table, axes, [RADAR_AXES[k] for k in axes]))
    else:
        log.warning("radar chart skipped: only %d indicators known for every model", len(axes))
    bars = save_bars(out / "bars.png", rows)
    if bars is not None:
        files.append(bars)
    summary = {"rows": rows, "pairs": pairs, "radar": table, "radar_axes": axes,
               "files": [str(f) for f in files + [out / f"{stem}.json"]]}
    write_json(out / f"{stem}.json", summary)
    return summary
