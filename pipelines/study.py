"""The Kubeflow study pipeline: data -> validate -> one MLflow parent run -> every (model, seed, budget) cell in
parallel (``dsl.ParallelFor``, each a child run) -> the summary (tables, figures) in the parent.

    mslstm study --preset ablation --seeds 3 --budget both --kfp-package study.yaml     # compile
    kfp run submit / mslstm pipeline submit --package study.yaml ...                  # run on a cluster

Built from a validated :class:`mslstm.config.Config` (the ``ablation`` section: seeds, budget, steps, seconds,
overrides); the config JSON and the list of cells are pipeline parameters with defaults from it.
``pipeline.ablation_parallelism`` caps the cells running at once (0 = all).
"""

import json
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from kfp import dsl

from components.steps import build_components
from components.study import build_study_components
from mslstm.config import Config
from pipelines.training import _data_tasks, _heavy, _light, _no_cache


def build_study_pipeline(cfg: Config, models: Optional[Sequence[str]] = None, study: str = "study") -> Callable:
    """The study pipeline for ``cfg`` and ``models`` (default ``ablation.models``).

    Args:
        cfg: a validated :class:`mslstm.config.Config`.
        models: the models of the study.
        study: the study's name (MLflow run name ``study-<study>``, summary file stem).

    Returns:
        The ``@dsl.pipeline`` function.
    """
    from mslstm.study.budget import budgets_of, plan_cells, seeds_of
    from mslstm.study.grid import check_models

    names = check_models(models if models is not None else cfg.ablation.models)
    c = build_components(cfg.pipeline.image)
    s = build_study_components(cfg.pipeline.image)
    p = cfg.pipeline
    default_config = json.dumps(cfg.to_dict(), sort_keys=True)
    default_cells = plan_cells(names, seeds_of(cfg), budgets_of(cfg.ablation.budget))

    @dsl.pipeline(name=f"{p.name}-study", description="MS-LSTM study: models x seeds x budgets on the same data, "
                                                      "means with 95 % intervals and paired MS-X vs X differences")
    def mslstm_study(
        config: str = default_config,
        models: List[str] = names,
        cells: List[dict] = default_cells,
        gpus: int = min(p.gpus, 1),
    ) -> None:
        """Train, evaluate and profile every cell in parallel, each as an MLflow child run; then the summary.

        Args:
            config: the whole validated config as JSON (the ``ablation`` section holds the budget).
            models: the study's models (the parent run's parameter; ``cells`` decides what runs).
            cells: ``{"model", "seed", "budget"}`` per run.
            gpus: GPUs per cell (0 or 1).
        """
        data_task, val_task = _data_tasks(c, cfg, config)
        with dsl.If(val_task.outputs["Output"] == True, name="data-valid"):  # noqa: E712
            opener = _no_cache(_light(s.study_open(config=config, models=models, study=study), cfg))
            opener.set_display_name("open the study's MLflow run")
            with dsl.ParallelFor(cells, name="cells", parallelism=p.ablation_parallelism) as cell:
                run = _heavy(s.study_cell(config=config, dataset=data_task.outputs["dataset"], cell=cell,
                                          parent_run_id=opener.output), cfg, gpus)
                _no_cache(run).set_display_name("cell")
            summary = _light(s.study_summary(config=config, parent_run_id=opener.output, study=study,
                                             results=dsl.Collected(run.outputs["Output"])), cfg)
            _no_cache(summary).set_display_name("study summary")

    return mslstm_study


def compile_study_pipeline(cfg: Config, out: str | Path, models: Optional[Sequence[str]] = None,
                           study: str = "study") -> Path:
    """Compile the study pipeline to ``out`` (atomically) and load it back (``pipelines.runner.validate_package``)."""
    from kfp import compiler

    from mslstm.io import atomic_path
    from pipelines.runner import validate_package

    out = Path(out)
    with atomic_path(out) as tmp:
        compiled = tmp.with_suffix(".yaml")
        compiler.Compiler().compile(build_study_pipeline(cfg, models, study), str(compiled))
        compiled.replace(tmp)
    validate_package(out)
    return out
