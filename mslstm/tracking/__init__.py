"""MLflow tracking for every step (train, evaluate, profile, register, ablation): one way to open a run, one way to
end it, one :class:`TrackingConfig` (the ``tracking:`` section).

Where: env ``MLFLOW_TRACKING_URI`` first (a relative SQLite path in it is the working directory's, as MLflow reads
it), else the ``tracking_uri`` of the ``run.json`` being continued, else ``tracking.uri`` (default
``sqlite:///mlflow.db``), whose relative SQLite path is resolved against :func:`project_root`, so that every command
in any folder finds the same store: the nearest folder from the working directory upwards that holds ``dvc.yaml``
or ``params.yaml`` (the project), else env ``MSLSTM_HOME``, else the checkout the ``mslstm`` package is imported
from (an editable install), else ``~/.mslstm``.

Run names (:func:`run_name`) say what ran: model, data source and the key training settings
(``mslstm lr=0.002 bs=16 ep=4 moving_mnist``); ``tracking.run_name`` replaces it.

Which run (:func:`open_run`):

1. a run already active in this process (a caller's, e.g. a pipeline step): logged into and left open;
2. ``run_id``, else the run of ``run_info`` (a parsed ``run.json``): continued;
3. else a new run in ``tracking.experiment``.

With ``out_dir`` the run's identity goes to ``<out_dir>/run.json`` (``{"run_id", "tracking_uri",
"experiment_id", "experiment_name"}``), so that later steps log into the same run. Only the main rank opens runs
(``enabled=False`` elsewhere gives a tracker whose methods do nothing); ``tracking.enabled: false`` turns tracking
off unless a step cannot work without it (``force=True``: the registry).

A SQLite store is created / upgraded once under a file lock before MLflow opens it (:func:`prepare_store`), so
runs starting together on a new ``mlflow.db`` are all recorded. A continued run drops metric points at steps it
already holds (:meth:`Tracker.skip_logged_steps`): the steps a resume replays are logged once.

How a run ends: FINISHED; FAILED when the block raises (also SIGTERM, which becomes ``SystemExit`` while the run
is open); KILLED on Ctrl-C. A SIGKILL cannot be caught: the run stays RUNNING until a resume finishes it.

A tracking server that fails does not hold the step: every MLflow request has the time limit and retries of the
``tracking`` section (:mod:`~mslstm.tracking.limits`), the first failure stops the logging while the step's work
goes on, the end of the run waits at most ``tracking.end_timeout`` seconds for unsent metrics, and then the step
raises one :class:`~mslstm.errors.TrackingError` (the CLI's ``error:`` line, exit 2) naming the server, the failure
and what was not logged; its outputs are already written. SIGTERM is honoured throughout, the end included.

    with start_run(cfg, out_dir, data_dir=data_dir, enabled=rank == 0) as tracker:    # training
        tracker.log_metrics({"train/loss": 0.1}, step=10)
    with open_run(cfg, run_info=find_run_info(train_dir), run_name="evaluate-mslstm") as tracker:
        tracker.log_metrics({"test_mse": 12.3})

One module per job: :mod:`~mslstm.tracking.config` (the section), :mod:`~mslstm.tracking.store` (where: URI,
SQLite store, connect), :mod:`~mslstm.tracking.metadata` (git/data tags, run names), :mod:`~mslstm.tracking.runinfo`
(``run.json``), :mod:`~mslstm.tracking.tracker` (the :class:`Tracker`), :mod:`~mslstm.tracking.models` (model
logging), :mod:`~mslstm.tracking.sender` (metrics sent in the background), :mod:`~mslstm.tracking.limits` (HTTP
timeout and retries), :mod:`~mslstm.tracking.runs` (opening and ending runs). Callers import from ``mslstm.tracking``.
"""
from __future__ import annotations

from mslstm.tracking.config import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI, TrackingConfig, tracking_enabled
from mslstm.tracking.limits import apply_http_limits, http_limits
from mslstm.tracking.metadata import data_hashes, git_commit, git_dirty, run_name, run_tags
from mslstm.tracking.models import log_pytorch_model
from mslstm.tracking.runinfo import RUN_INFO_KEYS, RUN_JSON, find_run_info, read_run_info, write_run_info
from mslstm.tracking.runs import continue_run, end_status, open_run, start_run
from mslstm.tracking.store import (
    absolute_sqlite_uri,
    connect,
    prepare_store,
    project_root,
    redact_uri,
    resolve_tracking_uri,
)
from mslstm.tracking.tracker import Tracker

__all__ = [
    "DEFAULT_EXPERIMENT", "DEFAULT_TRACKING_URI", "RUN_INFO_KEYS", "RUN_JSON", "Tracker", "TrackingConfig",
    "absolute_sqlite_uri", "apply_http_limits", "connect", "continue_run", "data_hashes", "end_status",
    "find_run_info", "git_commit", "git_dirty", "http_limits", "log_pytorch_model", "open_run", "prepare_store",
    "project_root", "read_run_info", "redact_uri", "resolve_tracking_uri", "run_name", "run_tags", "start_run",
    "tracking_enabled", "write_run_info",
]
