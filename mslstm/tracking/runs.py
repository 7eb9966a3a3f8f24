"""The run lifecycle of every step: which run to open (reuse, continue, new), how it ends (one policy), the
training run (:func:`start_run`) and the later steps' (:func:`continue_run`)."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Mapping

from mslstm.errors import TrackingError
from mslstm.tracking.config import DEFAULT_EXPERIMENT, section, tracking_enabled
from mslstm.tracking.limits import apply_http_limits, fail_fast
from mslstm.tracking.metadata import run_name as default_run_name
from mslstm.tracking.metadata import run_tags
from mslstm.tracking.runinfo import read_run_info, write_run_info
from mslstm.tracking.store import prepare_store, redact_uri, resolve_tracking_uri
from mslstm.tracking.tracker import Tracker, one_line, store_errors

log = logging.getLogger(__name__)


def end_status(exc: BaseException | None) -> str:
    """The one end-of-run policy: FINISHED, KILLED on Ctrl-C, FAILED on any other exception (SIGTERM included:
    it arrives as ``SystemExit``)."""
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"


#: At most this many seconds for the unsent metrics of a run that ends on an exception (SIGTERM: a scheduler's
#: grace period is short).
END_TIMEOUT_ON_ERROR = 5.0


def _finish(mlflow: Any, tracker: Tracker, status: str, owns: bool, timeout: float) -> None:
    """End the run within bounds: wait at most ``timeout`` s for the unsent metrics, then (when this block owns
    the run) ``end_run``, in fail-fast mode (:func:`~mslstm.tracking.limits.fail_fast`) once the store failed or
    the wait was interrupted. A failure is recorded on ``tracker``, not raised."""
    closed = False
    try:
        tracker.close(timeout)
        closed = True
    finally:
        if owns:
            if tracker.failure is not None and status == "FINISHED":
                status = "FAILED"  # the run lacks what the step produced
            fast = not closed or tracker.failure is not None
            with fail_fast() if fast else contextlib.nullcontext():
                try:
                    mlflow.end_run(status=status)  # pops the active run first: nothing is retried at exit
                    log.info("MLflow run ended: %s", status)
                except store_errors() as exc:
                    tracker.fail(exc, f"the run's end status ({status})")


def _tracking_error(tracker: Tracker, out_dir: str | os.PathLike | None, stopped: bool = False) -> TrackingError:
    where = f"MLflow at {redact_uri(tracker.tracking_uri or '')} (run {tracker.run.info.run_id})"
    if stopped:
        return TrackingError(f"stopped by SIGTERM; tracking incomplete: {where}: not logged: "
                             f"{tracker.not_logged_summary()}")
    outputs = f"the outputs in {out_dir} are complete" if out_dir is not None else "the step's outputs are complete"
    return TrackingError(f"tracking failed: {where}: {tracker.failure}; not logged: "
                         f"{tracker.not_logged_summary()}; {outputs}")


@contextlib.contextmanager
def open_run(
    cfg: Any,
    *,
    run_id: str | None = None,
    run_info: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    out_dir: str | os.PathLike | None = None,
    tags: Mapping[str, str] | None = None,
    enabled: bool = True,
    force: bool = False,
    system_metrics: bool = False,
    nested: bool = False,
) -> Iterator[Tracker]:
    """Open (or continue, or reuse) the MLflow run of a step; see the module doc for which run and how it ends.

    Args:
        cfg: the Config (its ``tracking`` section is read) or a TrackingConfig, or None for the defaults.
        run_id: continue this run.
        run_info: continue the run of this parsed ``run.json`` (when ``run_id`` is not given).
        run_name: name of a new run (default :func:`run_name` of ``cfg``).
        out_dir: write ``run.json`` of the run there.
        tags: tags of a new run.
        enabled: False on ranks other than 0 (a no-op tracker).
        force: open a run even when ``tracking.enabled`` is false.
        system_metrics: sample CPU/GPU/memory into the run (``tracking.system_metrics_interval``).
        nested: when a run is active, open a new child run of it (in its experiment; ended here) instead of
            logging into it (``mslstm compare``: one child run per model under the comparison's run).
    """
    if not enabled or not (force or tracking_enabled(cfg)):
        yield Tracker(False)
        return
    import mlflow

    from mslstm.training.hooks import sigterm_as_exception

    sec = section(cfg)
    end_timeout = float(getattr(sec, "end_timeout", 30.0))
    apply_http_limits(cfg)
    if run_id is None and run_info and run_info.get("run_id"):
        run_id = str(run_info["run_id"])
    uri = resolve_tracking_uri(cfg, run_info)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    active = mlflow.active_run()
    try:
        run, exp_name = _open(mlflow, sec, cfg, active, run_id, run_name, tags, system_metrics, nested)
    except store_errors() as exc:
        raise TrackingError(f"tracking failed: cannot open an MLflow run at {redact_uri(uri)} ({one_line(exc)}); "
                            "nothing was done yet") from exc
    owns = run is not active  # a caller's run: log into it, leave ending it to the caller
    tracker = Tracker(True, run, uri, exp_name)
    tracker.end_timeout = end_timeout
    with sigterm_as_exception():
        try:
            if out_dir is not None:
                write_run_info(out_dir, tracker.info)
            if owns:
                log.info("MLflow run %s in experiment %r at %s", tracker.run_id, exp_name, redact_uri(uri))
            yield tracker
        except BaseException as exc:
            _finish(mlflow, tracker, end_status(exc), owns, min(end_timeout, END_TIMEOUT_ON_ERROR))
            if isinstance(exc, SystemExit) and tracker.incomplete:
                raise _tracking_error(tracker, out_dir, stopped=True) from exc
            if tracker.incomplete:
                log.error("%s", _tracking_error(tracker, out_dir))
            raise
        _finish(mlflow, tracker, end_status(None), owns, end_timeout)
        if tracker.incomplete:
            raise _tracking_error(tracker, out_dir)


def _open(mlflow: Any, sec: Any, cfg: Any, active: Any, run_id: str | None, run_name: str | None,
          tags: Mapping[str, str] | None, system_metrics: bool, nested: bool) -> tuple[Any, str]:
    """``(run, experiment name)``: the active run (reused), the continued ``run_id``, a nested child or a new
    run (see the module doc)."""
    if active is not None and not nested:
        return active, mlflow.get_experiment(active.info.experiment_id).name
    if system_metrics:
        interval = getattr(sec, "system_metrics_interval", None)
        if interval:
            mlflow.set_system_metrics_sampling_interval(float(interval))
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
        return run, mlflow.get_experiment(run.info.experiment_id).name
    if active is not None:  # nested: a child of the active run
        run = mlflow.start_run(experiment_id=active.info.experiment_id, run_name=run_name, tags=dict(tags or {}),
                               nested=True, log_system_metrics=system_metrics)
        return run, mlflow.get_experiment(active.info.experiment_id).name
    exp_name = getattr(sec, "experiment", None) or DEFAULT_EXPERIMENT
    exp = mlflow.set_experiment(exp_name)
    run = mlflow.start_run(experiment_id=exp.experiment_id, run_name=run_name or _run_name_or_none(cfg),
                           tags=dict(tags or {}), log_system_metrics=system_metrics)
    return run, exp_name


def _run_name_or_none(cfg: Any) -> str | None:
    return default_run_name(cfg) if cfg is not None else None


@contextlib.contextmanager
def start_run(
    cfg: Any,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    enabled: bool = True,
    resume: bool = False,
) -> Iterator[Tracker]:
    """The training run: :func:`open_run` with the run tags (git commit, data hashes), system metrics, the whole
    config as params and ``run.json`` in ``out_dir``. With ``resume=True`` the run of ``out_dir/run.json``
    continues when it is on the same tracking URI."""
    run_info = None
    if resume and out_dir is not None and enabled:
        info = read_run_info(out_dir)
        if info and info.get("tracking_uri") == resolve_tracking_uri(cfg):
            run_info = info
            log.info("resuming MLflow run %s", info["run_id"])
    tags = run_tags(data_dir) if enabled and tracking_enabled(cfg) else None
    with open_run(cfg, run_info=run_info, out_dir=out_dir, tags=tags, enabled=enabled,
                  system_metrics=bool(getattr(section(cfg), "system_metrics", False))) as tracker:
        if run_info is not None:
            tracker.skip_logged_steps()
        tracker.log_params(cfg.flat() if hasattr(cfg, "flat") else {})
        yield tracker


@contextlib.contextmanager
def continue_run(run_info: str | os.PathLike | Mapping[str, Any] | None, enabled: bool = True,
                 cfg: Any = None) -> Iterator[Tracker]:
    """Log into the run that training opened (``run.json`` path/folder or its dict); a no-op tracker when there is
    none."""
    info = run_info if isinstance(run_info, Mapping) or run_info is None else read_run_info(run_info)
    if not info or not info.get("run_id"):
        yield Tracker(False)
        return
    with open_run(cfg, run_info=info, enabled=enabled) as tracker:
        yield tracker
