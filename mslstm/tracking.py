"""MLflow tracking for every step (train, evaluate, profile, register, ablation): one way to open a run, one way to
end it, one :class:`TrackingConfig` (the ``tracking:`` section).

Where: env ``MLFLOW_TRACKING_URI`` first (a relative SQLite path in it is the working directory's, as MLflow reads
it), else the ``tracking_uri`` of the ``run.json`` being continued, else ``tracking.uri`` (default
``sqlite:///mlflow.db``), whose relative SQLite path is resolved against :func:`project_root`, so that every command
in any folder finds the same store: the nearest folder from the working directory upwards that holds ``dvc.yaml``
or ``params.yaml`` (the project), else env ``MSLSTM_HOME``, else the checkout the ``mslstm`` package is imported
from (an editable install), else ``~/.mslstm``.

Run names (:func:`run_name`) say what ran: model, data source and the key training settings
(``mslstm moving_mnist lr=0.002 bs=16 ep=4``); ``tracking.run_name`` replaces it.

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

    with start_run(cfg, out_dir, data_dir=data_dir, enabled=rank == 0) as tracker:    # training
        tracker.log_metrics({"train/loss": 0.1}, step=10)
    with open_run(cfg, run_info=find_run_info(train_dir), run_name="evaluate-mslstm") as tracker:
        tracker.log_metrics({"test_mse": 12.3})
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Optional

import yaml

from mslstm.io import write_json

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "mslstm"
RUN_JSON = "run.json"
RUN_INFO_KEYS = ("run_id", "tracking_uri", "experiment_id", "experiment_name")
_PARAM_BATCH = 100
_PARAM_MAX_LEN = 6000


@dataclass
class TrackingConfig:
    """MLflow tracking.

    Attributes:
        uri: tracking URI; env ``MLFLOW_TRACKING_URI`` wins over it. Default: the SQLite file ``mlflow.db`` of the
            project (a relative SQLite path is resolved against :func:`project_root`, not the working dir).
        experiment: MLflow experiment name.
        run_name: run name (null: what ran, e.g. ``mslstm moving_mnist lr=0.002 bs=16 ep=4``).
        enabled: track at all (false: no MLflow calls, no run.json).
        log_every_steps: log training loss/lr/throughput every N steps (epoch metrics always).
        system_metrics: log CPU/GPU/memory usage (MLflow system metrics, needs psutil).
        system_metrics_interval: seconds between system-metrics samples.
        log_model: log the best model with ``mlflow.pytorch.log_model`` (signature + input example).
        model_format: ``pt2`` (torch.export, safe to load) or ``pickle``; pt2 falls back to pickle when export fails.
        log_checkpoint: upload ``best.pt`` as a run artifact.
    """

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "mslstm"
    run_name: Optional[str] = None
    enabled: bool = True
    log_every_steps: int = 10
    system_metrics: bool = False
    system_metrics_interval: float = 10.0
    log_model: bool = False
    model_format: Literal["pt2", "pickle"] = "pt2"
    log_checkpoint: bool = True

    def validate(self) -> None:
        if not self.uri:
            raise ValueError("uri: must not be empty; e.g. sqlite:///mlflow.db or http://127.0.0.1:5000")
        if not self.experiment:
            raise ValueError("experiment: must not be empty")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps: must be >= 1 (got {self.log_every_steps})")
        if self.system_metrics_interval <= 0:
            raise ValueError(f"system_metrics_interval: must be > 0 seconds (got {self.system_metrics_interval})")


def _section(cfg: Any) -> Any:
    """The ``tracking`` section of a Config (or the section itself, or None)."""
    return getattr(cfg, "tracking", cfg)


def tracking_enabled(cfg: Any) -> bool:
    return bool(getattr(_section(cfg), "enabled", True))


# ---------------------------------------------------------------------------------------------------------- where
def resolve_tracking_uri(cfg: Any = None, run_info: Mapping[str, Any] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``run_info["tracking_uri"]``, else ``tracking.uri`` (``cfg`` is a
    Config or a TrackingConfig), else the embedded SQLite default; a relative SQLite path of the config (or the
    default) is resolved against :func:`project_root`."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return absolute_sqlite_uri(env)
    if run_info and run_info.get("tracking_uri"):
        return absolute_sqlite_uri(str(run_info["tracking_uri"]))
    uri = getattr(_section(cfg), "uri", None) or DEFAULT_TRACKING_URI
    return absolute_sqlite_uri(uri, project_root() if uri.startswith("sqlite:///") else None)


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The folder a relative ``tracking.uri`` SQLite path is resolved against (see the module doc): the nearest of
    ``start`` (default: the working directory) and its parents holding ``dvc.yaml`` or ``params.yaml``, else env
    ``MSLSTM_HOME``, else the checkout this package is imported from, else ``~/.mslstm``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / "params.yaml").is_file():
            return folder
    home = os.environ.get("MSLSTM_HOME", "").strip()
    if home:
        return Path(home).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "dvc.yaml").is_file() and (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.home() / ".mslstm"


def absolute_sqlite_uri(uri: str, base: str | os.PathLike | None = None) -> str:
    """``sqlite:///mlflow.db`` -> ``sqlite:////<base>/mlflow.db`` (``base`` default: the working directory): a URI
    that still points to the same file from another working directory (run.json is read by later steps) and that
    MLflow's per-URI store cache cannot confuse with another folder's database. Other URIs are returned unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix):]
        if path and not path.startswith("/") and ":memory:" not in path:
            return prefix + os.path.abspath(os.path.join(base or os.getcwd(), path))
    return uri


_PREPARED: set[str] = set()


def prepare_store(uri: str) -> None:
    """Create / upgrade a SQLite store once, under an exclusive file lock (``<db>.lock``), before MLflow opens it.

    MLflow creates its tables and runs its migrations on first use without any lock, so two runs starting together
    on a new ``mlflow.db`` crash (``table experiments already exists``, ``duplicate column name``). Here the first
    process builds the schema while the others wait; then they all find it complete. Other URIs: nothing to do.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri in _PREPARED:
        return
    path = uri[len(prefix):].split("?", 1)[0]
    if not path or ":memory:" in path:
        return
    import fcntl

    import mlflow

    from mslstm.io import writing

    db = Path(path)
    with writing(db):
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{db}.lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates / migrates
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    _PREPARED.add(uri)


def connect(cfg: Any = None, run_info: Mapping[str, Any] | None = None) -> tuple[str, Any]:
    """Point MLflow at :func:`resolve_tracking_uri` and return ``(uri, MlflowClient)`` (registry operations)."""
    import mlflow

    uri = resolve_tracking_uri(cfg, run_info)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    return uri, mlflow.MlflowClient()


# ------------------------------------------------------------------------------------------------------- metadata
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


def run_name(cfg: Any, step: str | None = None) -> str | None:
    """The name of a new run: ``tracking.run_name`` when set, else what ran, e.g.
    ``mslstm moving_mnist lr=0.002 bs=16 ep=4`` (``step`` prefixes it for a step run on its own, e.g.
    ``evaluate mslstm ...``). None without a full Config (MLflow then picks a name)."""
    explicit = getattr(_section(cfg), "run_name", None)
    if explicit:
        return str(explicit)
    model, data, train = (getattr(cfg, k, None) for k in ("model", "data", "train"))
    if model is None or train is None:
        return None
    batch = getattr(train, "global_batch_size", None) or getattr(train, "batch_size", "?")
    parts = [getattr(model, "name", "model"), str(getattr(data, "source", "") or "").replace("-", "_"),
             f"lr={getattr(train, 'lr', '?'):g}", f"bs={batch}", f"ep={getattr(train, 'epochs', '?')}"]
    if getattr(train, "max_steps", 0):
        parts.append(f"steps={train.max_steps}")
    name = " ".join(p for p in parts if p)
    return f"{step} {name}" if step else name


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return text[:_PARAM_MAX_LEN]


# ------------------------------------------------------------------------------------------------------- run.json
def write_run_info(out_dir: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    """Write ``<out_dir>/run.json`` atomically."""
    return write_json(Path(out_dir) / RUN_JSON, {k: info.get(k) for k in RUN_INFO_KEYS})


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


def find_run_info(*candidates: Optional[str | os.PathLike]) -> Optional[dict[str, Any]]:
    """The first readable ``run.json`` among files/folders (None entries skipped)."""
    for c in candidates:
        if c is None:
            continue
        info = read_run_info(c) if Path(c).exists() else None
        if info:
            return info
    return None


# -------------------------------------------------------------------------------------------------------- tracker
class Tracker:
    """Thin facade over the open MLflow run; every method is a no-op when ``enabled`` is False (rank != 0,
    tracking off)."""

    def __init__(self, enabled: bool = False, run: Any = None, tracking_uri: str | None = None,
                 experiment_name: str | None = None) -> None:
        self.enabled = enabled and run is not None
        self.run = run
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.logged_steps: dict[str, int] = {}  # key -> last step already in the run (continued runs)

    def skip_logged_steps(self) -> None:
        """Remember the last step of every metric already in the run: :meth:`log_metrics` then drops points at or
        before it, so that the steps a resume replays (since the last checkpoint) are not logged twice."""
        if not self.enabled:
            return
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        for key in client.get_run(self.run_id).data.metrics:
            steps = [m.step for m in client.get_metric_history(self.run_id, key)]
            if steps:
                self.logged_steps[key] = max(steps)

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.enabled else None

    @property
    def info(self) -> dict[str, Any]:
        """The ``run.json`` content of this run ({} when disabled)."""
        if not self.enabled:
            return {}
        return {
            "run_id": self.run.info.run_id,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.run.info.experiment_id,
            "experiment_name": self.experiment_name,
        }

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches; on a continued run only the ones not logged yet (MLflow refuses changes)."""
        if not self.enabled or not params:
            return
        import mlflow

        items = [(k, _param_value(v)) for k, v in params.items()]
        existing = mlflow.get_run(self.run_id).data.params
        items = [(k, v) for k, v in items if k not in existing]
        for i in range(0, len(items), _PARAM_BATCH):
            mlflow.log_params(dict(items[i : i + _PARAM_BATCH]))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled or not tags:
            return
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, synchronous: bool = False) -> None:
        if not self.enabled or not metrics:
            return
        import mlflow

        if step is not None and self.logged_steps:
            metrics = {k: v for k, v in metrics.items() if step > self.logged_steps.get(k, -1)}
            if not metrics:
                return
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, synchronous=synchronous)

    def log_metric_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Many ``(key, value, step)`` points in one request (e.g. a metric per frame, step = frame number)."""
        if not self.enabled:
            return
        import mlflow
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(s)) for k, v, s in points]
        if metrics:
            mlflow.MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

    def log_image(self, image: str | os.PathLike | Any, key: str, step: int = 0) -> None:
        """An image (a PNG path or an HxWxC array) under ``key`` at ``step``: MLflow's run page and the comparison
        of runs show the images of a key side by side (``mlflow.log_image(key=..., step=...)``)."""
        if not self.enabled:
            return
        import mlflow
        import numpy as np

        if isinstance(image, (str, os.PathLike)):
            from PIL import Image

            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB"))
        mlflow.log_image(image, key=key, step=int(step))

    def log_table(self, data: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A table (columns of equal length) as ``artifact_file`` (``.json``): the comparison's artifact view shows
        it for every run (``mlflow.log_table``)."""
        if not self.enabled:
            return
        import mlflow

        mlflow.log_table(data=dict(data), artifact_file=artifact_file)

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


# ------------------------------------------------------------------------------------------ opening and ending runs
def end_status(exc: BaseException | None) -> str:
    """The one end-of-run policy: FINISHED, KILLED on Ctrl-C, FAILED on any other exception (SIGTERM included:
    it arrives as ``SystemExit``)."""
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"


def _end(mlflow: Any, status: str) -> None:
    try:
        mlflow.flush_async_logging()
    finally:
        mlflow.end_run(status=status)
    log.info("MLflow run ended: %s", status)


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

    section = _section(cfg)
    if run_id is None and run_info and run_info.get("run_id"):
        run_id = str(run_info["run_id"])
    uri = resolve_tracking_uri(cfg, run_info)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    active = mlflow.active_run()
    if active is not None and not nested:  # a caller's run: log into it, leave ending it to the caller
        tracker = Tracker(True, active, uri, mlflow.get_experiment(active.info.experiment_id).name)
        if out_dir is not None:
            write_run_info(out_dir, tracker.info)
        yield tracker
        return
    if system_metrics:
        interval = getattr(section, "system_metrics_interval", None)
        if interval:
            mlflow.set_system_metrics_sampling_interval(float(interval))
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
        exp_name = mlflow.get_experiment(run.info.experiment_id).name
    elif active is not None:  # nested: a child of the active run
        exp_name = mlflow.get_experiment(active.info.experiment_id).name
        run = mlflow.start_run(experiment_id=active.info.experiment_id, run_name=run_name, tags=dict(tags or {}),
                               nested=True, log_system_metrics=system_metrics)
    else:
        exp_name = getattr(section, "experiment", None) or DEFAULT_EXPERIMENT
        exp = mlflow.set_experiment(exp_name)
        run = mlflow.start_run(experiment_id=exp.experiment_id,
                               run_name=run_name or _run_name_or_none(cfg),
                               tags=dict(tags or {}), log_system_metrics=system_metrics)
    tracker = Tracker(True, run, uri, exp_name)
    try:
        with sigterm_as_exception():
            if out_dir is not None:
                write_run_info(out_dir, tracker.info)
            log.info("MLflow run %s in experiment %r at %s", tracker.run_id, exp_name, uri)
            yield tracker
    except BaseException as exc:
        _end(mlflow, end_status(exc))
        raise
    _end(mlflow, end_status(None))


def _run_name_or_none(cfg: Any) -> str | None:
    return run_name(cfg) if cfg is not None else None


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
                  system_metrics=bool(getattr(_section(cfg), "system_metrics", False))) as tracker:
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
