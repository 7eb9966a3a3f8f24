"""Running the study's grid: every (model, seed, budget) cell trained, evaluated and profiled, each as one MLflow
child run under the study's parent run; a re-run of an interrupted study skips the cells already finished.

    from mslstm.study.grid import run_study
    summary = run_study(cfg, "artifacts/dataset", "artifacts/study/ablation", ["convlstm", "mslstm"], stem="ablation")

Layout on disk: ``<out>/<budget>/<model>/seed<k>/{train,eval,profile,result.json}`` (``profile`` in the first
cell of each model only: the cost of a model does not depend on its seed or budget), ``<out>/plan.json`` (the
seconds budget's planned steps per model), then the summary files of :mod:`mslstm.study.report`.

MLflow: the parent run ``study-<stem>`` (tags ``mslstm.step=study``, ``mslstm.study_key``; params ``study.*``:
models, seeds, budgets, steps, seconds, planned steps) holds the table, the CSVs and the figures under
``study/``; each child run ``<model> seed=<k> <budget>`` (tags ``mslstm.model``, ``mslstm.seed``,
``mslstm.budget``, ``mslstm.cell``) holds the cell's training, evaluation and cost, its ``study/*`` metrics (the
MLflow UI's run comparison then shows the grid) and ``study/result.json``.

Resume: the study's key (:func:`study_key`: the config without the tracking section, the models, seeds, budgets
and the data set's ``meta.json``) names the parent; when the newest parent with that key did not finish
(FAILED, KILLED, still RUNNING after a kill) the re-run continues it and skips every cell whose child run
FINISHED, reading its result back from the child (``study/result.json``). A finished study is never continued: a
re-run starts a new parent (``fresh=True`` always does).

Reuse: ``reuse=<parent run id>`` takes every cell of the grid that an earlier study finished from that study's child
run instead of training it again (adding seeds to a study that ran: only the new seeds train). Each reused child
must have run with the cell's config exactly (its logged params; only ``tracking.*`` and ``ablation.seeds`` may
differ), else ``ConfigError`` naming the keys before anything trains; an earlier study of the same models and
budgets must also have run on this data set (its key recomputed with its seed count, :func:`study_key`, includes
the data's ``meta.json``); the seconds budget keeps the earlier plan. The
new parent records the earlier one (param ``study.reused_from``, tag ``mslstm.study_reuses``), its table holds both
parents' cells, and a resume or a redraw of it reads both. A run id that is not in the store is a warning: every
cell trains.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from mslstm.io import write_json
from mslstm.study.budget import (
    budgets_of,
    calibrate_step_time,
    cell_config,
    cell_key,
    plan_cells,
    plan_steps_for_seconds,
    seeds_of,
    train_sequences,
)

log = logging.getLogger(__name__)

#: Presets of ``mslstm study --preset``: the paper's ablation (the ``ablation.models`` list: ConvLSTM, SMS-LSTM,
#: TMS-LSTM, MS-LSTM by default) and every flat ConvRNN with its MS- version (all 22 registered models).
PRESETS = ("ablation", "pairs")
RESULT_FILE = "result.json"


def preset_models(cfg: Any, preset: str) -> list[str]:
    """The models of a preset: ``ablation`` -> ``ablation.models``; ``pairs`` -> every flat model and its MS-
    version (``model.registry.ms_pairs``), flat first."""
    if preset == "ablation":
        return list(cfg.ablation.models)
    if preset == "pairs":
        from model.registry import ms_pairs

        return [name for pair in ms_pairs() for name in pair]
    raise ValueError(f"preset: {preset!r}; use one of {', '.join(PRESETS)}")


def check_models(names: Sequence[str]) -> list[str]:
    """The list, checked: registered models, each once, at least one (``ConfigError`` naming ``models``)."""
    from model.registry import get_spec

    from mslstm.errors import ConfigError

    names = list(names)
    for name in names:
        try:
            get_spec(name)
        except ValueError as exc:
            raise ConfigError(f"models: {exc}") from None
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"models: list each model once, at least one (got {names})")
    return names


def study_key(cfg: Any, models: Sequence[str], data_dir: str | os.PathLike) -> str:
    """A short hash of what decides the study's numbers: the config (tracking section left out), the models, the
    seeds, the budgets and the data set's ``meta.json``."""
    tree = {k: v for k, v in cfg.to_dict().items() if k != "tracking"}
    meta = Path(data_dir) / "meta.json"
    blob = json.dumps({"config": tree, "models": list(models), "seeds": seeds_of(cfg),
                       "budgets": budgets_of(cfg.ablation.budget),
                       "data": meta.read_text(encoding="utf-8") if meta.is_file() else str(data_dir)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------ one cell
def _numbers(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def run_cell(cfg: Any, data_dir: str | os.PathLike, cell_dir: str | os.PathLike, cell: Mapping[str, Any],
             cost: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Train, evaluate and (unless ``cost`` is given) profile one cell with its config ``cfg``
    (:func:`mslstm.study.budget.cell_config`), logging into the MLflow run active in this process; write
    ``<cell_dir>/result.json`` and return the result ``{"model", "seed", "budget", "metrics", "cost", "train",
    "wall_s", "train_dir", "eval_dir", "profile_dir"}``."""
    from model.flops import model_macs

    from mslstm.evaluation.evaluate import evaluate
    from mslstm.evaluation.profile import flat_metrics, profile
    from mslstm.training.checkpoint import find_checkpoint
    from mslstm.training.train import train

    d = Path(cell_dir)
    t0 = time.perf_counter()
    log.info("study: %s: training into %s", cell_key(cell), d / "train")
    tm = train(cfg, data_dir, d / "train")
    ev = evaluate(cfg, find_checkpoint(d / "train"), data_dir, d / "eval")
    profile_dir = None
    if cost is None:
        cost = {k: v for k, v in profile(cfg, d / "profile", run_info=d / "train").items() if k != "run_id"}
        profile_dir = str(d / "profile")
    else:  # the model's cost, measured in its first cell: logged here too, so that every child holds it
        from mslstm.tracking import open_run

        try:
            numbers = flat_metrics(dict(cost))
        except KeyError:  # a cost without the profile's estimate (read back from elsewhere)
            numbers = _numbers(cost, "cost_")
        with open_run(cfg) as tracker:
            tracker.log_metrics(numbers, synchronous=True)
    cost = dict(cost)
    cost.setdefault("macs_forward", model_macs(cfg.model))
    result = {
        "model": cell["model"], "seed": int(cell["seed"]), "budget": cell["budget"],
        "metrics": dict(ev["metrics"]),
        "cost": cost,
        "train": {"steps": tm.get("steps"), "time_s": tm.get("train_time_s"), "planned_steps": cfg.train.max_steps,
                  "max_seconds": cfg.train.max_seconds, "best_val_mse": tm.get("best_val_mse")},
        "wall_s": time.perf_counter() - t0,
        "train_dir": str(d / "train"), "eval_dir": str(d / "eval"), "profile_dir": profile_dir,
    }
    write_json(d / RESULT_FILE, result)
    return result


def _child_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    m = result["metrics"]
    out = _numbers({k: m.get(k) for k in ("mse", "mae", "ssim", "psnr", "skill_vs_blank")}, "study/")
    out.update(_numbers({"train_steps": result["train"].get("steps"), "train_time_s": result["train"].get("time_s"),
                         "wall_s": result.get("wall_s")}, "study/"))
    return out


def run_cell_child(cfg: Any, data_dir: str | os.PathLike, out_dir: str | os.PathLike, cell: Mapping[str, Any],
                   cost: Optional[Mapping[str, Any]] = None, study: str = "") -> dict[str, Any]:
    """:func:`run_cell` inside a new child run of the MLflow run active in this process (the study's parent),
    named and tagged by the cell; the result (with ``run_id``) also goes to the child as ``study/result.json``."""
    from mslstm.tracking import open_run

    key = cell_key(cell)
    tags = {"mslstm.step": "study-cell", "mslstm.model": cell["model"], "mslstm.seed": str(cell["seed"]),
            "mslstm.budget": cell["budget"], "mslstm.cell": key}
    if study:
        tags["mslstm.study_key"] = study
    with open_run(cfg, run_name=f"{cell['model']} seed={cell['seed']} {cell['budget']}", nested=True,
                  tags=tags) as child:
        result = run_cell(cfg, data_dir, Path(out_dir) / key, cell, cost)
        result["run_id"] = child.run_id
        write_json(Path(out_dir) / key / RESULT_FILE, result)
        child.log_metrics(_child_metrics(result), synchronous=True)
        child.log_artifact(Path(out_dir) / key / RESULT_FILE, artifact_path="study")
    return result


# ------------------------------------------------------------------------------------------------------- resume
def _previous_parent(cfg: Any, key: str) -> Any:
    """The newest parent run of the study ``key`` in the config's experiment, or None."""
    from mslstm.tracking import connect

    _, client = connect(cfg)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`mslstm.study_key` = '{key}' and tags.`mslstm.step` = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def finished_cells(cfg: Any, parent_run_id: str) -> dict[str, dict[str, Any]]:
    """Cell key -> result of every FINISHED child of ``parent_run_id`` (read back from its ``study/result.json``)."""
    import mlflow

    from mslstm.tracking import connect

    uri, client = connect(cfg)
    children = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10000)
    done: dict[str, dict[str, Any]] = {}
    for run in children:
        key = run.data.tags.get("mslstm.cell")
        if run.info.status != "FINISHED" or not key or key in done:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=uri,
                                                           artifact_path=f"study/{RESULT_FILE}", dst_path=tmp)
                result = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError, mlflow.exceptions.MlflowException) as exc:
                log.warning("study: child run %s (%s) finished without a readable result (%s): running it again",
                            run.info.run_id, key, exc)
                continue
        result["run_id"] = run.info.run_id
        done[key] = result
    return done


#: Config keys whose values may differ between a study and the earlier runs it reuses (prefixes).
REUSE_FREE_KEYS = ("tracking.", "ablation.seeds")


def config_differences(cfg: Any, params: Mapping[str, str]) -> list[str]:
    """The config keys (``section.key``) whose value in ``cfg`` differs from a run's logged ``params`` (or that only
    one of them has), ``REUSE_FREE_KEYS`` left out; params outside the config's sections are not compared."""
    from mslstm.config import SECTIONS
    from mslstm.tracking.tracker import param_value

    def ours(key: str) -> bool:
        return key.split(".", 1)[0] in SECTIONS and not key.startswith(REUSE_FREE_KEYS)

    want = {k: param_value(v) for k, v in cfg.flat().items() if ours(k)}
    have = {k: v for k, v in params.items() if ours(k)}
    return sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))


def reusable_cells(cfg: Any, parent_run_id: str, cells: Sequence[Mapping[str, Any]], n_train: Optional[int],
                   data_dir: str | os.PathLike | None = None, models: Optional[Sequence[str]] = None
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The cells of ``cells`` that the study ``parent_run_id`` finished with the same config (cell key -> result,
    ``run_id`` its child), and that study's seconds plan. A parent not in the store gives nothing (a warning). When
    that study had the same ``models`` and budgets, its key (:func:`study_key` with its seed count) must also equal
    this study's on ``data_dir``: the same data set (its ``meta.json``).

    Raises:
        ConfigError: the run is not a study's parent run, one of its matching cells ran with another config (naming
            the cell, its run and the keys), or it ran on another data set.
    """
    from mlflow.exceptions import MlflowException

    from mslstm.errors import ConfigError
    from mslstm.tracking import connect

    uri, client = connect(cfg)
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as exc:
        log.warning("study: reuse %s: no such run in %s (%s): every cell trains", parent_run_id, uri,
                    str(exc).splitlines()[0])
        return {}, {}
    if parent.data.tags.get("mslstm.step") != "study":
        raise ConfigError(f"reuse: run {parent_run_id} is not a study's parent run (tag mslstm.step "
                          f"{parent.data.tags.get('mslstm.step')!r})")
    plan = _logged_plan(parent)
    done = finished_cells(cfg, parent_run_id)
    params_of = {r.info.run_id: r.data.params for r in client.search_runs(  # one query, not one per child
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10000)}
    found: dict[str, dict[str, Any]] = {}
    for cell in cells:
        k = cell_key(cell)
        if k not in done:
            continue
        planned = None
        if cell["budget"] == "seconds":
            if cell["model"] not in plan:
                continue
            planned = plan[cell["model"]]["planned_steps"]
        ccfg = cell_config(cfg, cell["model"], cell["seed"], cell["budget"], planned, n_train)
        run_id = done[k]["run_id"]
        diff = config_differences(ccfg, params_of[run_id])
        if diff:
            raise ConfigError(f"reuse: {k} of study run {parent_run_id} (run {run_id}) ran with another config: "
                              f"{', '.join(diff[:6])}{', ...' if len(diff) > 6 else ''} differ; reuse only runs of "
                              "this config (the seeds may differ), or leave reuse out")
        found[k] = done[k]
    params = parent.data.params
    if (found and data_dir is not None and models is not None and params.get("study.models") == ",".join(models)
            and params.get("study.budgets") == ",".join(budgets_of(cfg.ablation.budget))):
        theirs = study_key(cfg.replace({"ablation.seeds": len(params.get("study.seeds", "").split(","))}), models,
                           data_dir)
        if theirs != parent.data.tags.get("mslstm.study_key"):
            raise ConfigError(f"reuse: study run {parent_run_id} ran with the same config on another data set than "
                              f"{data_dir} (its key {parent.data.tags.get('mslstm.study_key')}, here {theirs}: the "
                              "data's meta.json differs); reuse only runs on this data set, or leave reuse out")
    log.info("study: %d of %d cells taken from study run %s", len(found), len(cells), parent_run_id)
    return found, plan


# -------------------------------------------------------------------------------------------------- the grid
def _plan_seconds(cfg: Any, model: str, results: Sequence[Mapping[str, Any]], data_dir: str | os.PathLike,
                  out: Path, n_train: Optional[int]) -> dict[str, Any]:
    """The seconds budget's plan for ``model``: measured step time (its finished steps runs, else a timing run)
    and the planned steps."""
    timed = [r["train"]["time_s"] / r["train"]["steps"] for r in results
             if r["model"] == model and r["budget"] == "steps" and r["train"].get("time_s") and r["train"].get("steps")]
    if timed:
        step_time, source = sum(timed) / len(timed), f"mean of {len(timed)} equal-steps run(s)"
    else:
        step_time = calibrate_step_time(cfg, model, data_dir, out / "calibration" / model, n_train)
        source = f"{cfg.ablation.calibration_steps}-step timing run"
    steps = plan_steps_for_seconds(cfg.ablation.seconds, step_time)
    log.info("study: %s: %.0f s at %.3f s/step (%s) -> %d planned steps", model, cfg.ablation.seconds, step_time,
             source, steps)
    return {"step_time_s": step_time, "planned_steps": steps, "source": source}


def run_study(cfg: Any, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
              models: Optional[Sequence[str]] = None, stem: str = "study", fresh: bool = False,
              on_cell: Optional[Callable[[dict[str, Any], dict[str, Any], bool], None]] = None,
              layer_figures: bool = True, reuse: Optional[str] = None) -> dict[str, Any]:
    """Run every cell of ``models`` x ``seeds_of(cfg)`` x ``budgets_of(cfg.ablation.budget)`` and summarise them
    (:func:`mslstm.study.report.summarize_study`). See the module doc for the layout and the resume rule.

    Args:
        cfg: the validated Config (``ablation`` section: seeds, budget, steps, seconds, eval_sequences, overrides).
        data_dir: the processed (validated) data set.
        out_dir: output folder.
        models: the models (default ``ablation.models``).
        stem: names the parent run and the summary files (``<stem>.md``, ...).
        fresh: start a new parent run even when an unfinished one of the same study exists.
        on_cell: called after each cell as ``on_cell(cell, result, skipped)`` (progress lines).
        layer_figures: draw Figure 5's layer outputs of each model's first trained checkpoint.
        reuse: the parent run id of an earlier study whose finished cells of this grid are taken, not trained
            (see the module doc).

    Returns:
        The summary (``rows``, ``pairs``, ``files`` ...) plus ``run_id`` (parent), ``child_run_ids`` (cell key ->
        run id), ``skipped`` (cell keys not trained here: resumed or reused), ``reused`` (those taken from
        ``reuse``) and ``total_time_s``.
    """
    from mslstm.tracking import open_run, tracking_enabled

    names = check_models(models if models is not None else cfg.ablation.models)
    out = Path(out_dir)
    seeds, budgets = seeds_of(cfg), budgets_of(cfg.ablation.budget)
    cells = plan_cells(names, seeds, budgets)
    key = study_key(cfg, names, data_dir)
    n_train = train_sequences(data_dir)
    previous = _previous_parent(cfg, key) if tracking_enabled(cfg) and not fresh else None
    resume_id = previous.info.run_id if previous is not None and previous.info.status != "FINISHED" else None
    if resume_id:
        reuse = previous.data.tags.get("mslstm.study_reuses") or reuse
    t_all = time.perf_counter()
    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    reused, plan = (reusable_cells(cfg, reuse, cells, n_train, data_dir, names) if reuse and tracking_enabled(cfg)
                    else ({}, {}))
    tags = {"mslstm.step": "study", "mslstm.study_key": key, "mslstm.study": stem}
    if reused:
        tags["mslstm.study_reuses"] = reuse
    with open_run(cfg, run_id=resume_id, run_name=f"study-{stem}", tags=tags) as parent:
        if resume_id:
            log.info("study: continuing the unfinished parent run %s of study %s", resume_id, key)
            plan = {**plan, **_logged_plan(previous)}
        parent.log_params({"study.models": ",".join(names), "study.seeds": ",".join(map(str, seeds)),
                           "study.budgets": ",".join(budgets), "study.steps": cfg.ablation.steps,
                           "study.seconds": cfg.ablation.seconds, "study.eval_sequences": cfg.ablation.eval_sequences,
                           "study.data_dir": str(data_dir), "study.cells": len(cells),
                           **({"study.reused_from": reuse, "study.cells_reused": len(reused)} if reused else {}),
                           **{f"study.plan.{m}": json.dumps(p) for m, p in plan.items()}})
        done = {**reused, **(finished_cells(cfg, parent.run_id) if resume_id else {})}
        costs: dict[str, dict[str, Any]] = {r["model"]: r["cost"] for r in done.values() if r.get("cost")}
        for cell in cells:
            k = cell_key(cell)
            if k in done:
                results.append(done[k])
                skipped.append(k)
                log.info("study: %s finished in run %s: skipped", k, done[k]["run_id"])
                if on_cell:
                    on_cell(cell, done[k], True)
                continue
            planned = None
            if cell["budget"] == "seconds":
                if cell["model"] not in plan:
                    plan[cell["model"]] = _plan_seconds(cfg, cell["model"], results, data_dir, out, n_train)
                    parent.log_params({f"study.plan.{cell['model']}": json.dumps(plan[cell["model"]])})
                    write_json(out / "plan.json", plan)
                planned = plan[cell["model"]]["planned_steps"]
            ccfg = cell_config(cfg, cell["model"], cell["seed"], cell["budget"], planned, n_train)
            result = run_cell_child(ccfg, data_dir, out, cell, costs.get(cell["model"]), key)
            costs.setdefault(cell["model"], result["cost"])
            results.append(result)
            if on_cell:
                on_cell(cell, result, False)
        summary = _summary(results, out, cfg, stem, data_dir if layer_figures else None, plan, names,
                           {"run_id": parent.run_id, "study_key": key, "skipped": skipped,
                            "reused": [k for k in skipped if k in reused and done[k] is reused[k]],
                            "total_time_s": time.perf_counter() - t_all},
                           lambda f: parent.log_artifact(f, artifact_path="study"))
        parent.log_metrics({"study/total_time_s": summary["total_time_s"],
                            "study/cells_run": float(len(results) - len(skipped)),
                            "study/cells_skipped": float(len(skipped))}, synchronous=True)
    return summary


def _logged_plan(parent: Any) -> dict[str, Any]:
    """The seconds budget's plan a parent run logged (params ``study.plan.<model>``)."""
    return {k[len("study.plan."):]: json.loads(v) for k, v in parent.data.params.items()
            if k.startswith("study.plan.")}


def _summary(results: Sequence[Mapping[str, Any]], out: Path, cfg: Any, stem: str, data_dir: Any,
             plan: Mapping[str, Any], names: Sequence[str], about: Mapping[str, Any],
             log_file: Callable[[str], None]) -> dict[str, Any]:
    """The study's tables and figures from its results, with ``about`` (run id, key, skipped, wall time) and the
    child run ids, written to ``<stem>.json``; each file handed to ``log_file`` (the parent run's artifacts)."""
    from mslstm.study.report import summarize_study

    summary = summarize_study(results, out, cfg=cfg, stem=stem, data_dir=data_dir, plan=plan, preset_pairs=names)
    summary.update(about)
    summary["child_run_ids"] = {cell_key(r): r.get("run_id") for r in results}
    write_json(out / f"{stem}.json", summary)
    for f in summary["files"]:
        if Path(f).is_file():
            log_file(f)
    return summary


def redraw_study(cfg: Any, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 models: Optional[Sequence[str]] = None, stem: str = "study",
                 layer_figures: bool = True, parent_run_id: Optional[str] = None) -> dict[str, Any]:
    """The tables and figures of a study that ran, drawn again from its runs without training anything: the newest
    parent run of the study's key (:func:`study_key`: the same config, models, seeds, budgets and data set) and
    its FINISHED child runs' results. The files are rewritten in ``out_dir`` and logged to that parent run again
    (an artifact of the same name is replaced). For a change in how the summary is drawn (a figure's legend, a
    table's layout); a change in what the cells compute is a new study. ``parent_run_id`` names the parent run
    instead (a study whose config has changed since in a section that does not decide its numbers, e.g.
    ``pipeline``, has another key); its cells must be those of ``models`` x seeds x budgets.

    Returns:
        The summary of :func:`run_study`, ``total_time_s`` the parent's (the study's own wall time).

    Raises:
        MSLSTMError: no parent run of this study, or some of its cells did not finish (naming them).
    """
    from mslstm.errors import MSLSTMError
    from mslstm.tracking import connect

    names = check_models(models if models is not None else cfg.ablation.models)
    out = Path(out_dir)
    cells = plan_cells(names, seeds_of(cfg), budgets_of(cfg.ablation.budget))
    key = study_key(cfg, names, data_dir)
    if parent_run_id:
        _, client = connect(cfg)
        parent = client.get_run(parent_run_id)
        if parent.data.tags.get("mslstm.step") != "study":
            raise MSLSTMError(f"study {stem}: run {parent_run_id} is not a study's parent run (tag mslstm.step "
                              f"{parent.data.tags.get('mslstm.step')!r})")
        key = parent.data.tags.get("mslstm.study_key", key)
    else:
        parent = _previous_parent(cfg, key)
    if parent is None:
        raise MSLSTMError(f"study {stem}: no MLflow parent run of this study (key {key}, experiment "
                          f"{cfg.tracking.experiment!r}) to draw from: run the study first (same config, models, "
                          "seeds, budgets and data)")
    earlier = parent.data.tags.get("mslstm.study_reuses")  # a study that took cells from an earlier one
    own = finished_cells(cfg, parent.info.run_id)
    done = {**(finished_cells(cfg, earlier) if earlier else {}), **own}
    missing = [cell_key(c) for c in cells if cell_key(c) not in done]
    if missing:
        raise MSLSTMError(f"study {stem}: {len(missing)} of the {len(cells)} runs of parent run "
                          f"{parent.info.run_id} did not finish ({', '.join(missing[:4])}"
                          f"{', ...' if len(missing) > 4 else ''}): run the study again to finish them")
    results = [done[cell_key(c)] for c in cells]
    _, client = connect(cfg)
    summary = _summary(results, out, cfg, stem, data_dir if layer_figures else None, _logged_plan(parent), names,
                       {"run_id": parent.info.run_id, "study_key": key, "skipped": [cell_key(c) for c in cells],
                        "reused": [cell_key(c) for c in cells if cell_key(c) not in own],
                        "total_time_s": parent.data.metrics.get("study/total_time_s")},
                       lambda f: client.log_artifact(parent.info.run_id, f, artifact_path="study"))
    log.info("study %s: tables and figures drawn again from parent run %s (%d runs)", stem, parent.info.run_id,
             len(results))
    return summary

