"""KFP v2 components of the study pipeline (``pipelines/study.py``): thin doors onto ``mslstm.study``.

``study_open`` opens the study's MLflow parent run, each ``study_cell`` (one per (model, seed, budget), fanned out
by ``dsl.ParallelFor``) trains, evaluates and profiles one cell in a child run of it, ``study_summary`` writes the
tables and figures from the collected results into the parent and ends it. Unlike ``mslstm study`` the cells run
in separate pods: a seconds-budget cell plans its step count from its own timing run
(``mslstm.study.budget.calibrate_step_time``), and a cell that ends re-marks the shared parent run's status
(the summary sets it FINISHED at the end). Layer-output figures need the checkpoints, which stay in the cells'
artifacts: the summary leaves them out.
"""

import functools
from types import SimpleNamespace
from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output


def study_open(config: str, models: List[str], study: str) -> str:
    """Open the study's MLflow parent run (left running; ``study_summary`` ends it).

    Args:
        config: the validated config as JSON.
        models: the study's models (logged as a parameter).
        study: the study's name (run name ``study-<study>``).

    Returns:
        The parent run id ("" when tracking is off).
    """
    from components.runtime import load_config_json
    from mslstm.study.budget import budgets_of, seeds_of
    from mslstm.tracking import connect, tracking_enabled

    cfg = load_config_json(config)
    if not tracking_enabled(cfg):
        return ""
    _, client = connect(cfg)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(cfg.tracking.experiment)
    run = client.create_run(exp_id, run_name=f"study-{study}", tags={"mslstm.step": "study", "mslstm.study": study,
                                                                     "mslstm.runner": "kfp"})
    rid = run.info.run_id
    client.log_param(rid, "study.models", ",".join(models))
    client.log_param(rid, "study.seeds", ",".join(map(str, seeds_of(cfg))))
    client.log_param(rid, "study.budgets", ",".join(budgets_of(cfg.ablation.budget)))
    return rid


def study_cell(config: str, dataset: Input[Dataset], cell: dict, parent_run_id: str,
               result_dir: Output[Artifact]) -> str:
    """Train, evaluate and profile one (model, seed, budget) cell in a child run of the study's parent.

    Args:
        config: the validated config as JSON (the study's ``ablation`` section: budget, seconds, overrides).
        dataset: the processed dataset.
        cell: ``{"model", "seed", "budget"}``.
        parent_run_id: the parent run (``study_open``'s output; "" = none).
        result_dir: output directory: the cell's train/eval/profile folders and ``result.json``.

    Returns:
        JSON of the cell's result (``mslstm.study.grid.run_cell``).
    """
    import contextlib
    import json
    import os

    from components.runtime import load_config_json
    from mslstm.study.budget import (calibrate_step_time, cell_config, plan_steps_for_seconds,
                                     train_sequences)
    from mslstm.study.grid import run_cell_child
    from mslstm.tracking import open_run

    cfg = load_config_json(config)
    cell = {"model": str(cell["model"]), "seed": int(cell["seed"]), "budget": str(cell["budget"])}
    n_train = train_sequences(dataset.path)
    planned = None
    if cell["budget"] == "seconds":
        step = calibrate_step_time(cfg, cell["model"], dataset.path, os.path.join(result_dir.path, "calibration"),
                                   n_train)
        planned = plan_steps_for_seconds(cfg.ablation.seconds, step)
    ccfg = cell_config(cfg, cell["model"], cell["seed"], cell["budget"], planned, n_train)
    parent = open_run(ccfg, run_id=parent_run_id) if parent_run_id else contextlib.nullcontext()
    with parent:
        result = run_cell_child(ccfg, dataset.path, result_dir.path, cell)
    return json.dumps(result)


def study_summary(config: str, parent_run_id: str, results: List[str], study: str, summary: Output[Artifact],
                  table: Output[Markdown], chart: Output[HTML]) -> None:
    """Tables and figures of the collected cells (``mslstm.study.report.summarize_study``), logged into the parent
    run, which ends FINISHED.

    Args:
        config: the validated config as JSON.
        parent_run_id: the parent run ("" = none).
        results: one JSON string per cell (``dsl.Collected``).
        study: the study's name (file stem).
        summary: output directory: ``<study>.md/.csv/.json``, ``*_runs.csv``, ``*_pairs.csv``, figures.
        table: the Markdown table.
        chart: the figures (HTML).
    """
    import json
    import os
    from pathlib import Path

    from components.runtime import copy_file, html_report, load_config_json
    from mslstm.study.report import summarize_study
    from mslstm.tracking import open_run

    cfg = load_config_json(config)
    cells = [json.loads(r) if isinstance(r, str) else dict(r) for r in results]
    s = summarize_study(cells, summary.path, cfg=cfg, stem=study)
    if parent_run_id:
        with open_run(cfg, run_id=parent_run_id) as parent:
            for f in s["files"]:
                if Path(f).is_file():
                    parent.log_artifact(f, artifact_path="study")
    copy_file(os.path.join(summary.path, f"{study}.md"), table.path)
    html_report(chart.path, f"Study: {study}", {}, summary.path)


STUDY_FUNCS = (study_open, study_cell, study_summary)


@functools.lru_cache(maxsize=None)
def build_study_components(image: str) -> SimpleNamespace:
    """The study's components for ``image`` (the project image).

    Args:
        image: the project image (``pipeline.image``).

    Returns:
        A namespace: ``study_open``, ``study_cell``, ``study_summary``.
    """
    return SimpleNamespace(
        **{f.__name__: dsl.component(f, base_image=image, install_kfp_package=False) for f in STUDY_FUNCS}
    )
