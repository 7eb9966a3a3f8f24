"""The validate step: a per-sequence summary table checked by a great-expectations (GX Core 1.x) suite.

``validate_data(cfg, data_dir, out_dir)`` summarises every sequence of every split (shape, dtype, min, max, mean,
NaN/Inf count, fraction of empty frames, mean frame-to-frame change; values after the meta.json scaling), runs
an expectation suite whose thresholds come from ``cfg.validate`` on an ephemeral GX context, and writes
``result.json``, ``report.html`` and ``sequences.csv`` to ``out_dir`` atomically. When an expectation fails it
raises :class:`~mslstm.errors.DataValidationError` after writing them, so no training starts on bad data.

great_expectations is imported inside :func:`run_suite` only (its import takes ~3 s).
"""
from __future__ import annotations

import html
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mslstm.data.dataset import read_meta
from mslstm.errors import DataValidationError
from mslstm.io import write_json, write_text

log = logging.getLogger(__name__)

SEQUENCE_COLUMNS = (
    "split", "index", "rank", "frames", "channels", "height", "width", "dtype", "min", "max", "mean",
    "nan_count", "inf_count", "empty_frame_fraction", "blank", "mean_abs_change", "size_ok",
)


# ------------------------------------------------------------------------------------------------------ summary
def summarise_split(data_dir: Path, meta: dict[str, Any], split: str, chunk: int, empty_level: float,
                    size_factor: int) -> list[dict[str, Any]]:
    """One row per sequence of ``split`` (values mapped to [0, 1] with meta's scale/offset)."""
    from mslstm.data.dataset import load_npy

    info = meta["splits"][split]
    path = data_dir / info.get("file", f"{split}.npy")
    arr = load_npy(path)
    scale, offset = float(meta["scale"]), float(meta["offset"])
    rows: list[dict[str, Any]] = []
    if arr.ndim != 5:
        # Wrong rank: one row describing the file, so that the rank expectation fails with it in the report.
        rows.append({"split": split, "index": -1, "rank": arr.ndim, "frames": 0, "channels": 0, "height": 0,
                     "width": 0, "dtype": str(arr.dtype), "min": np.nan, "max": np.nan, "mean": np.nan,
                     "nan_count": 0, "inf_count": 0, "empty_frame_fraction": 0.0, "blank": False,
                     "mean_abs_change": 0.0, "size_ok": False})
        return rows
    n, t, c, h, w = arr.shape
    size_ok = bool(h % size_factor == 0 and w % size_factor == 0)
    sc, of = np.float32(scale), np.float32(offset)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, chunk):
            raw = np.asarray(arr[start:start + chunk])
            k = raw.shape[0]
            if raw.dtype.kind in "ui":
                # Integers: no NaN/Inf; statistics on the raw values, then scaled (scale > 0 keeps the order).
                flat = raw.reshape(k, -1)
                nan = inf = np.zeros(k, np.int64)
                vmin = flat.min(axis=1) * sc + of
                vmax = flat.max(axis=1) * sc + of
                vmean = flat.mean(axis=1) * sc + of
                frame_max = raw.reshape(k, t, -1).max(axis=2) * sc + of
                change = (np.abs(np.diff(raw.astype(np.int16), axis=1)).reshape(k, -1).mean(axis=1) * sc
                          if t > 1 else np.zeros(k))
                x = None
            else:
                x = raw.astype(np.float32) * sc + of
                flat = x.reshape(k, -1)
                finite = np.isfinite(flat)
                if finite.all():
                    nan = inf = np.zeros(k, np.int64)
                    vmin, vmax, vmean = flat.min(axis=1), flat.max(axis=1), flat.mean(axis=1)
                    frame_max = x.reshape(k, t, -1).max(axis=2)
                else:
                    nan = np.isnan(flat).sum(axis=1)
                    inf = (~finite).sum(axis=1) - nan
                    masked = np.where(finite, flat, np.nan)
                    all_bad = ~finite.any(axis=1)
                    masked[all_bad] = 0.0  # reported through the NaN/Inf counts
                    vmin, vmax = np.nanmin(masked, axis=1), np.nanmax(masked, axis=1)
                    vmean = np.nanmean(masked, axis=1)
                    frame_max = np.nanmax(np.where(finite, flat, -np.inf).reshape(k, t, -1), axis=2)
                change = (np.nanmean(np.abs(np.diff(x, axis=1)).reshape(k, -1), axis=1)
                          if t > 1 else np.zeros(k))
            empty = (frame_max <= empty_level).mean(axis=1)
            for i in range(k):
                rows.append({
                    "split": split, "index": start + i, "rank": 5, "frames": t, "channels": c, "height": h,
                    "width": w, "dtype": str(arr.dtype), "min": float(vmin[i]), "max": float(vmax[i]),
                    "mean": float(vmean[i]), "nan_count": int(nan[i]), "inf_count": int(inf[i]),
                    "empty_frame_fraction": float(empty[i]), "blank": bool(empty[i] >= 1.0),
                    "mean_abs_change": float(change[i]), "size_ok": size_ok,
                })
    return rows


def expectations_for(cfg: Any, meta: dict[str, Any]) -> tuple[list[tuple[str, str, dict[str, Any]]], dict]:
    """The suite as ``(table, expectation class name, kwargs)`` triples, plus the thresholds used."""
    d = cfg.data
    v = cfg.validate.resolved(d.source)
    m = getattr(cfg, "model", None)
    frame_size = v.frame_size or tuple(getattr(m, "frame_size", meta["frame_size"]))
    channels = v.channels if v.channels is not None else getattr(m, "in_channels", meta["channels"])
    min_frames = d.input_frames + d.output_frames
    lo, hi = v.value_range
    tol = v.tolerance
    thresholds = {
        "splits": list(v.splits), "min_sequences": v.min_sequences, "max_blank_fraction": v.max_blank_fraction,
        "empty_level": v.empty_level, "frame_size": list(frame_size), "channels": channels,
        "frames": v.frames if v.frames is not None else f">= {min_frames}", "value_range": [lo, hi],
    }
    frames_kw = ({"min_value": v.frames, "max_value": v.frames} if v.frames is not None
                 else {"min_value": min_frames})
    seq = [
        ("ExpectColumnValuesToBeInSet", {"column": "rank", "value_set": [5]}),
        ("ExpectColumnValuesToBeBetween", {"column": "frames", **frames_kw}),
        ("ExpectColumnValuesToBeInSet", {"column": "channels", "value_set": [int(channels)]}),
        ("ExpectColumnValuesToBeInSet", {"column": "height", "value_set": [int(frame_size[0])]}),
        ("ExpectColumnValuesToBeInSet", {"column": "width", "value_set": [int(frame_size[1])]}),
        ("ExpectColumnValuesToBeInSet", {"column": "size_ok", "value_set": [True]}),
        ("ExpectColumnValuesToBeInSet", {"column": "dtype", "value_set": ["uint8", "float32"]}),
        ("ExpectColumnValuesToBeBetween", {"column": "nan_count", "min_value": 0, "max_value": 0}),
        ("ExpectColumnValuesToBeBetween", {"column": "inf_count", "min_value": 0, "max_value": 0}),
        ("ExpectColumnValuesToBeBetween", {"column": "min", "min_value": lo - tol, "max_value": hi + tol}),
        ("ExpectColumnValuesToBeBetween", {"column": "max", "min_value": lo - tol, "max_value": hi + tol}),
    ]
    splits = [
        ("ExpectColumnDistinctValuesToContainSet", {"column": "split", "value_set": list(v.splits)}),
        ("ExpectColumnValuesToBeBetween", {"column": "sequences", "min_value": v.min_sequences}),
        ("ExpectColumnValuesToBeBetween", {"column": "blank_fraction", "min_value": 0.0,
                                           "max_value": v.max_blank_fraction}),
    ]
    return [("sequences", n, kw) for n, kw in seq] + [("splits", n, kw) for n, kw in splits], thresholds


# ------------------------------------------------------------------------------------------------------------ GX
def run_suite(tables: dict[str, Any], suite_spec: list[tuple[str, str, dict[str, Any]]]) -> tuple[list[dict], dict]:
    """Run the expectations on pandas tables in an ephemeral GX context; return per-expectation results + timing."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its import logs hundreds of INFO lines
    t0 = time.perf_counter()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    t1 = time.perf_counter()
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas("mslstm_dataset")
    results: list[dict] = []
    for table, df in tables.items():
        specs = [(name, kw) for t, name, kw in suite_spec if t == table]
        suite = gx.ExpectationSuite(name=f"mslstm_{table}")
        for name, kw in specs:
            suite.add_expectation(getattr(gx.expectations, name)(**kw))
        suite = context.suites.add(suite)
        batch_def = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        res = batch.validate(suite, result_format="SUMMARY").to_json_dict()
        for r in res["results"]:
            conf = r["expectation_config"]
            kwargs = {k: v for k, v in conf["kwargs"].items() if k != "batch_id"}
            detail = r.get("result") or {}
            results.append({
                "table": table,
                "expectation": conf["type"],
                "column": kwargs.get("column"),
                "kwargs": kwargs,
                "success": bool(r["success"]),
                "observed_value": _plain(detail.get("observed_value")),
                "unexpected_count": _plain(detail.get("unexpected_count")),
                "unexpected_examples": _plain(detail.get("partial_unexpected_list", [])[:5]),
                "exception": (r.get("exception_info") or {}).get("exception_message"),
            })
    t2 = time.perf_counter()
    return results, {"gx_import_s": round(t1 - t0, 3), "gx_run_s": round(t2 - t1, 3)}


def _plain(x: Any) -> Any:
    """JSON-able copy of GX result values (numpy scalars, lists, NaN -> None)."""
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# ------------------------------------------------------------------------------------------------------ the step
def validate_data(cfg: Any, data_dir: str | os.PathLike = "artifacts/dataset",
                  out_dir: str | os.PathLike = "artifacts/validation") -> dict[str, Any]:
    """Validate the processed dataset in ``data_dir``; write the result and report to ``out_dir``.

    Returns the result dict (also in ``result.json``). Raises DataValidationError after writing the report when
    any expectation fails, DataError when the dataset cannot be read at all.
    """
    import pandas as pd

    from mslstm.data.prepare import size_factor

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    v = cfg.validate.resolved(cfg.data.source)
    t0 = time.perf_counter()
    meta = read_meta(data_dir)
    factor, _ = size_factor(getattr(cfg, "model", None))
    rows: list[dict[str, Any]] = []
    split_rows = []
    for split in sorted(set(v.splits) | set(meta["splits"]), key=lambda s: ("train", "val", "test").index(s)
                        if s in ("train", "val", "test") else 9):
        if split not in meta["splits"]:
            split_rows.append({"split": f"(missing) {split}", "sequences": 0, "blank_fraction": 0.0})
            continue
        seq = summarise_split(data_dir, meta, split, v.chunk, v.empty_level, factor)
        rows.extend(seq)
        n = sum(1 for r in seq if r["index"] >= 0)
        blank = sum(1 for r in seq if r["blank"]) / n if n else 0.0
        split_rows.append({"split": split, "sequences": n, "blank_fraction": blank})
    seq_df = pd.DataFrame(rows, columns=list(SEQUENCE_COLUMNS))
    split_df = pd.DataFrame(split_rows, columns=["split", "sequences", "blank_fraction"])
    t_summary = time.perf_counter() - t0

    spec, thresholds = expectations_for(cfg, meta)
    results, timing = run_suite({"sequences": seq_df, "splits": split_df}, spec)
    timing["summary_s"] = round(t_summary, 3)
    failed = [r for r in results if not r["success"]]
    result = {
        "success": not failed,
        "total_expectations": len(results),
        "passed_expectations": len(results) - len(failed),
        "failed_expectations": len(failed),
        "sequences": int((seq_df["index"] >= 0).sum()) if len(seq_df) else 0,
        "data_dir": str(data_dir),
        "source": meta.get("source"),
        "raw_hash": meta.get("raw_hash"),
        "thresholds": thresholds,
        "splits": {r["split"]: {"sequences": r["sequences"], "blank_fraction": r["blank_fraction"]}
                   for r in split_rows},
        "timing": timing,
        "results": results,
        "report": str(out_dir / "report.html"),
    }
    write_text(out_dir / "sequences.csv", seq_df.to_csv(index=False))
    write_json(out_dir / "result.json", result)
    if v.report:
        write_text(out_dir / "report.html", render_html(result, split_df, seq_df))
    log.info("validation of %s: %d/%d expectations passed (GX import %.2f s, run %.2f s)", data_dir,
             result["passed_expectations"], result["total_expectations"], timing["gx_import_s"], timing["gx_run_s"])
    if failed:
        raise DataValidationError(f"{data_dir}: data validation failed: {describe(failed)}; "
                                  f"see {out_dir / 'report.html' if v.report else out_dir / 'result.json'}")
    return result


def describe(failed: list[dict[str, Any]], limit: int = 3) -> str:
    """One line naming the failed expectations (column, rule, what was seen)."""
    parts = []
    for r in failed[:limit]:
        kw = {k: v for k, v in r["kwargs"].items() if k != "column"}
        seen = (f"{r['unexpected_count']} bad rows, e.g. {r['unexpected_examples'][:3]}"
                if r["unexpected_count"] else f"observed {r['observed_value']}")
        parts.append(f"{r['table']}.{r['column']} {r['expectation'].replace('expect_column_', '')} {kw} ({seen})")
    more = f" and {len(failed) - limit} more" if len(failed) > limit else ""
    return f"{len(failed)} expectation(s) failed: " + "; ".join(parts) + more


def render_html(result: dict[str, Any], split_df: Any, seq_df: Any) -> str:
    """A self-contained HTML page: verdict, thresholds, expectation table, split table, worst sequences."""
    ok = result["success"]
    rows = "".join(
        f"<tr class='{'ok' if r['success'] else 'bad'}'><td>{'pass' if r['success'] else 'FAIL'}</td>"
        f"<td>{html.escape(r['table'])}</td><td>{html.escape(str(r['column']))}</td>"
        f"<td>{html.escape(r['expectation'])}</td>"
        f"<td>{html.escape(str({k: v for k, v in r['kwargs'].items() if k != 'column'}))}</td>"
        f"<td>{html.escape(str(r['observed_value'] if r['observed_value'] is not None else ''))}</td>"
        f"<td>{html.escape(str(r['unexpected_count'] if r['unexpected_count'] is not None else ''))}</td>"
        f"<td>{html.escape(str(r['unexpected_examples'] or ''))}</td></tr>"
        for r in result["results"]
    )
    stats = seq_df.groupby("split")[["min", "max", "mean", "empty_frame_fraction", "mean_abs_change"]].agg(
        ["min", "mean", "max"]) if len(seq_df) else seq_df
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Data validation: {'passed' if ok else 'FAILED'}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}.ok td:first-child{{color:#070}}
.bad{{background:#fee}}.bad td:first-child{{color:#b00;font-weight:bold}}h1{{color:{'#070' if ok else '#b00'}}}</style>
</head><body>
<h1>Data validation {'passed' if ok else 'FAILED'}</h1>
<p>{html.escape(result['data_dir'])} (source {html.escape(str(result['source']))}, raw hash
{html.escape(str(result['raw_hash']))}): {result['passed_expectations']} of {result['total_expectations']}
expectations passed over {result['sequences']} sequences. great-expectations {html.escape(_gx_version())},
import {result['timing']['gx_import_s']} s, run {result['timing']['gx_run_s']} s.</p>
<h2>Thresholds</h2><pre>{html.escape(json.dumps(result["thresholds"], indent=1))}</pre>
<h2>Expectations</h2>
<table><tr><th>result</th><th>table</th><th>column</th><th>expectation</th><th>arguments</th><th>observed</th>
<th>unexpected</th><th>examples</th></tr>{rows}</table>
<h2>Splits</h2>{split_df.to_html(index=False)}
<h2>Per-sequence statistics by split (values in [0, 1])</h2>{stats.to_html()}
<p>The full per-sequence table is in sequences.csv beside this page.</p>
</body></html>
"""


def _gx_version() -> str:
    try:
        import great_expectations as gx

        return gx.__version__
    except ImportError:  # pragma: no cover
        return "?"
