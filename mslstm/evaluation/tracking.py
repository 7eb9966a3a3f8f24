"""MLflow glue for the evaluation steps: log into the training run (``run.json``) when there is one, else a new run.

The tracking URI follows the project rule (env ``MLFLOW_TRACKING_URI``, else ``tracking.uri``); see
``mslstm.training.tracking``.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

log = logging.getLogger(__name__)


def tracking_enabled(cfg: Any) -> bool:
    return bool(getattr(getattr(cfg, "tracking", None), "enabled", True))


def find_run_info(*candidates: Optional[str | os.PathLike]) -> Optional[dict[str, Any]]:
    """The first readable ``run.json`` among files/folders (None entries skipped)."""
    from mslstm.training.tracking import read_run_info

    for c in candidates:
        if c is None:
            continue
        p = Path(c)
        for path in (p, p / "run.json") if p.is_dir() else (p,):
            info = read_run_info(path) if path.exists() else None
            if info:
                return info
    return None


@contextlib.contextmanager
def mlflow_run(cfg: Any, run_id: Optional[str] = None, run_info: Optional[Mapping[str, Any]] = None,
               run_name: str = "evaluate", force: bool = False) -> Iterator[Optional[str]]:
    """Active MLflow run for logging; yields its run id (None when tracking is disabled).

    ``run_id`` (explicit) wins over ``run_info`` (a parsed ``run.json``); with neither, a new run is started in
    ``tracking.experiment``. The run ends FINISHED (FAILED when the block raises). ``force`` opens a run even when
    ``tracking.enabled`` is false (the registry needs one).
    """
    if not force and not tracking_enabled(cfg):
        yield None
        return
    import mlflow

    from mslstm.training.tracking import DEFAULT_EXPERIMENT, resolve_tracking_uri

    uri = resolve_tracking_uri(cfg)
    if run_id is None and run_info and run_info.get("run_id"):
        run_id = str(run_info["run_id"])
        if not os.environ.get("MLFLOW_TRACKING_URI") and run_info.get("tracking_uri"):
            uri = str(run_info["tracking_uri"])
    mlflow.set_tracking_uri(uri)
    if mlflow.active_run() is not None:   # a caller's run (e.g. a pipeline step): log into it
        yield mlflow.active_run().info.run_id
        return
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id)
    else:
        experiment = getattr(getattr(cfg, "tracking", None), "experiment", None) or DEFAULT_EXPERIMENT
        exp = mlflow.set_experiment(experiment)
        run = mlflow.start_run(experiment_id=exp.experiment_id, run_name=run_name)
    status = "FAILED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)
    log.info("logged to MLflow run %s at %s", run.info.run_id, uri)
