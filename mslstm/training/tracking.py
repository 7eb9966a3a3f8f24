"""MLflow tracking: one run per training, opened by rank 0 only, never left RUNNING after a crash.

Tracking URI: env ``MLFLOW_TRACKING_URI`` first, else ``tracking.uri`` (default ``sqlite:///mlflow.db``, relative to
the working directory; relative SQLite paths are made absolute). The run's identity is written to ``<out_dir>/run.json``
(``{"run_id", "tracking_uri", "experiment_id", "experiment_name"}``) so that later steps (evaluate, register) log
into the same run with :func:`continue_run`.

Usage (training)::

    with start_run(cfg, out_dir, data_dir=data_dir, enabled=rank == 0) as tracker:
        tracker.log_metrics({"train/loss": 0.1}, step=10)     # a no-op on other ranks
        tracker.log_artifact("artifacts/train/best.pt", "checkpoints")
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from mslstm.io import write_json

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "mslstm"
RUN_JSON = "run.json"
_PARAM_BATCH = 100
_PARAM_MAX_LEN = 6000


# ----------------------------------------------------------------------------------------------- metadata
def resolve_tracking_uri(tracking_cfg: Any = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``tracking.uri`` (accepts a Config or a TrackingConfig), else the
    embedded SQLite default."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return absolute_sqlite_uri(env)
    section = getattr(tracking_cfg, "tracking", tracking_cfg)
    uri = getattr(section, "uri", None)
    return absolute_sqlite_uri(uri or DEFAULT_TRACKING_URI)


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////<cwd>/mlflow.db``: the same file, but a URI that still points to it
    from another working directory (run.json is read by later steps) and that MLflow's per-URI store cache cannot
    confuse with another folder's database. Other URIs are returned unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix):]
        if path and not path.startswith("/") and ":memory:" not in path:
            return prefix + os.path.abspath(path)
    return uri


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the working tree, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    """True when tracked files have uncommitted changes (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def data_hashes(data_dir: str | os.PathLike | None = None, dvc_file: str | os.PathLike = "data.dvc") -> dict[str, str]:
    """The DVC hash of the raw data (``outs[0].md5`` of ``data.dvc``) and ``raw_hash`` of the dataset's meta.json."""
    tags: dict[str, str] = {}
    dvc_path = Path(dvc_file)
    if dvc_path.is_file():
        try:
            spec = yaml.safe_load(dvc_path.read_text(encoding="utf-8")) or {}
            outs = spec.get("outs") or []
            if outs and isinstance(outs[0], dict) and outs[0].get("md5"):
                tags["data.dvc_md5"] = str(outs[0]["md5"])
        except (OSError, yaml.YAMLError) as exc:
            log.warning("%s: cannot read the DVC hash (%s)", dvc_path, exc)
    if data_dir is not None:
        meta_path = Path(data_dir) / "meta.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if meta.get("raw_hash"):
                    tags["data.raw_hash"] = str(meta["raw_hash"])
                if meta.get("source"):
                    tags["data.source"] = str(meta["source"])[:500]
            except (OSError, ValueError) as exc:
                log.warning("%s: cannot read the data hash (%s)", meta_path, exc)
    return tags


def run_tags(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Tags every training run carries: git commit (+ dirty flag) and data hashes."""
    tags = data_hashes(data_dir)
    # the working directory's repository, else the one the mslstm package is imported from (editable install)
    code_dir = Path(__file__).resolve().parent
    commit = git_commit() or git_commit(code_dir)
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.commit"] = commit
    dirty = git_dirty() if git_commit() else git_dirty(code_dir)
    if dirty is not None:
        tags["git.dirty"] = str(dirty).lower()
    return tags


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return text[:_PARAM_MAX_LEN]


# ------------------------------------------------------------------------------------------------ run.json
def write_run_info(out_dir: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    """Write ``<out_dir>/run.json`` atomically."""
    keys = ("run_id", "tracking_uri", "experiment_id", "experiment_name")
    return write_json(Path(out_dir) / RUN_JSON, {k: info.get(k) for k in keys})


def read_run_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read ``run.json`` (``path`` is the file or its folder); None when absent or unreadable."""
    p = Path(path)
    if p.is_dir():
        p = p / RUN_JSON
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable run info (%s); a new MLflow run will be used", p, exc)
        return None
    return info if isinstance(info, dict) and info.get("run_id") else None


# ------------------------------------------------------------------------------------------------ tracker
class Tracker:
    """Thin facade over the active MLflow run; every method is a no-op when ``enabled`` is False (rank != 0)."""

    def __init__(self, enabled: bool = False, run: Any = None, tracking_uri: str | None = None,
                 experiment_name: str | None = None) -> None:
        self.enabled = enabled and run is not None
        self.run = run
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.enabled else None

    @property
    def info(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        return {
            "run_id": self.run.info.run_id,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.run.info.experiment_id,
            "experiment_name": self.experiment_name,
        }

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.enabled or not params:
            return
        import mlflow

        items = [(k, _param_value(v)) for k, v in params.items()]
        existing = mlflow.get_run(self.run_id).data.params
        # MLflow refuses to change a logged param: on resume, log only what is new.
        items = [(k, v) for k, v in items if k not in existing]
        for i in range(0, len(items), _PARAM_BATCH):
            mlflow.log_params(dict(items[i : i + _PARAM_BATCH]))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled or not tags:
            return
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled or not metrics:
            return
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, synchronous=False)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_model(self, model: Any, input_example: Any, name: str = "model", serialization_format: str = "pt2",
                  metadata: Mapping[str, Any] | None = None) -> str | None:
        """``mlflow.pytorch.log_model`` with a signature inferred from ``input_example`` (batch >= 2);
        returns the model URI. Falls back to the pickle format when torch.export cannot trace the model."""
        if not self.enabled:
            return None
        return log_pytorch_model(model, input_example, name=name, serialization_format=serialization_format,
                                 metadata=metadata)

    def flush(self) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.flush_async_logging()


def log_pytorch_model(model: Any, input_example: Any, name: str = "model", serialization_format: str = "pt2",
                      metadata: Mapping[str, Any] | None = None) -> str:
    """Log ``model`` into the active run with a signature and input example; returns the model URI."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    example = np.asarray(input_example, dtype=np.float32)
    if example.shape[0] < 2:
        raise ValueError("input_example: needs a batch of at least 2 so that the batch dimension stays dynamic")
    model = model.eval()
    with torch.no_grad():
        output = model(torch.from_numpy(example)).detach().cpu().numpy()
    signature = infer_signature(example, output)
    # explicit requirements: MLflow's inference of them re-imports the model in a subprocess (~15 s per log)
    reqs = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    kwargs = dict(name=name, signature=signature, input_example=example, metadata=dict(metadata or {}),
                  pip_requirements=reqs)
    if serialization_format == "pt2":
        try:
            info = mlflow.pytorch.log_model(model, serialization_format="pt2", **kwargs)
            return info.model_uri
        except Exception as exc:  # noqa: BLE001 - torch.export raises many kinds; the pickle format still works
            log.warning("torch.export of the model failed (%s: %s); logging it in the pickle format instead",
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
    # the pickle format imports the network's classes at load time: ship the ``model`` package with it
    import model as model_pkg

    info = mlflow.pytorch.log_model(model, serialization_format="pickle",
                                    code_paths=[str(Path(model_pkg.__file__).resolve().parent)], **kwargs)
    return info.model_uri


@contextlib.contextmanager
def _active_run(tracking_uri: str, experiment: str, run_id: str | None, run_name: str | None,
                tags: Mapping[str, str] | None, system_metrics: bool) -> Iterator[Tracker]:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if run_id is None:
        exp = mlflow.set_experiment(experiment)
        run = mlflow.start_run(experiment_id=exp.experiment_id, run_name=run_name, tags=dict(tags or {}),
                               log_system_metrics=system_metrics)
        exp_name = experiment
    else:
        run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
        exp_name = mlflow.get_experiment(run.info.experiment_id).name
    tracker = Tracker(True, run, tracking_uri, exp_name)
    try:
        yield tracker
    except KeyboardInterrupt:
        _end(mlflow, "KILLED")
        raise
    except BaseException:
        _end(mlflow, "FAILED")
        raise
    else:
        _end(mlflow, "FINISHED")


def _end(mlflow: Any, status: str) -> None:
    try:
        mlflow.flush_async_logging()
    finally:
        mlflow.end_run(status=status)
    log.info("MLflow run ended: %s", status)


@contextlib.contextmanager
def start_run(
    cfg: Any,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    enabled: bool = True,
    resume: bool = False,
) -> Iterator[Tracker]:
    """Open the training run (rank 0: ``enabled=True``), write ``run.json``, log params and tags.

    With ``resume=True`` and a ``run.json`` in ``out_dir`` for the same tracking URI, the same run continues.
    On any exception the run ends FAILED (KILLED for Ctrl-C) and the exception propagates.
    """
    if not enabled:
        yield Tracker(False)
        return
    tcfg = getattr(cfg, "tracking", None)
    uri = resolve_tracking_uri(tcfg)
    experiment = getattr(tcfg, "experiment", None) or DEFAULT_EXPERIMENT
    run_name = getattr(tcfg, "run_name", None) or None
    system_metrics = bool(getattr(tcfg, "system_metrics", False))
    if system_metrics:
        import mlflow

        interval = getattr(tcfg, "system_metrics_interval", None)
        if interval:
            mlflow.set_system_metrics_sampling_interval(float(interval))
    run_id = None
    if resume and out_dir is not None:
        info = read_run_info(out_dir)
        if info and info.get("tracking_uri") == uri:
            run_id = info["run_id"]
            log.info("resuming MLflow run %s", run_id)
    with _active_run(uri, experiment, run_id, run_name, run_tags(data_dir), system_metrics) as tracker:
        if out_dir is not None:
            write_run_info(out_dir, tracker.info)
        flat = cfg.flat() if hasattr(cfg, "flat") else {}
        tracker.log_params(flat)
        log.info("MLflow run %s in experiment %r at %s", tracker.run_id, tracker.experiment_name, uri)
        yield tracker


@contextlib.contextmanager
def continue_run(run_info: str | os.PathLike | Mapping[str, Any] | None, enabled: bool = True) -> Iterator[Tracker]:
    """Log into the run that training opened (``run.json`` path/folder or its dict); a no-op tracker when there is
    none. The run is ended FINISHED again afterwards (FAILED on exception)."""
    info = run_info if isinstance(run_info, Mapping) or run_info is None else read_run_info(run_info)
    if not enabled or not info or not info.get("run_id"):
        yield Tracker(False)
        return
    uri = absolute_sqlite_uri(
        os.environ.get("MLFLOW_TRACKING_URI", "").strip() or info.get("tracking_uri") or DEFAULT_TRACKING_URI)
    with _active_run(uri, info.get("experiment_name") or DEFAULT_EXPERIMENT, info["run_id"], None, None,
                     False) as tracker:
        yield tracker
