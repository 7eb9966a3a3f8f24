"""Where the runs go: the tracking URI (env, ``run.json``, ``tracking.uri``; a relative SQLite path is the
project's), a SQLite store created once under a lock, and :func:`connect` for registry operations."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from mslstm.tracking.config import DEFAULT_TRACKING_URI, section


def resolve_tracking_uri(cfg: Any = None, run_info: Mapping[str, Any] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``run_info["tracking_uri"]``, else ``tracking.uri`` (``cfg`` is a
    Config or a TrackingConfig), else the embedded SQLite default; a relative SQLite path of the config (or the
    default) is resolved against :func:`project_root`."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return absolute_sqlite_uri(env)
    if run_info and run_info.get("tracking_uri"):
        return absolute_sqlite_uri(str(run_info["tracking_uri"]))
    uri = getattr(section(cfg), "uri", None) or DEFAULT_TRACKING_URI
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
    checkout = Path(__file__).resolve().parents[2]
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


def redact_uri(uri: str) -> str:
    """``uri`` without a password (``scheme://user:secret@host`` -> ``scheme://user:***@host``), for messages."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else uri


def connect(cfg: Any = None, run_info: Mapping[str, Any] | None = None) -> tuple[str, Any]:
    """Point MLflow at :func:`resolve_tracking_uri` with the HTTP limits of the config
    (:func:`~mslstm.tracking.limits.apply_http_limits`) and return ``(uri, MlflowClient)`` (registry operations)."""
    import mlflow

    from mslstm.tracking.limits import apply_http_limits

    apply_http_limits(cfg)
    uri = resolve_tracking_uri(cfg, run_info)
    prepare_store(uri)
    mlflow.set_tracking_uri(uri)
    return uri, mlflow.MlflowClient()
