"""The team's MLflow tracking server: runs in PostgreSQL, artifacts in S3 (proxied by the server, so clients need
no S3 credentials), and MLflow's basic-auth app in front (users, passwords, per-experiment and per-model
permissions).

Secrets never go on a command line: PostgreSQL's password comes from libpq's ``PGPASSWORD`` (or ``PGPASSFILE``),
the first admin's from ``MLFLOW_AUTH_ADMIN_PASSWORD`` (with ``MLFLOW_AUTH_ADMIN_USERNAME``, default ``admin``),
the auth app's CSRF key from ``MLFLOW_FLASK_SERVER_SECRET_KEY`` (the same on every replica),
S3's from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_ENDPOINT_URL`` / ``MLFLOW_S3_ENDPOINT_URL``
for a non-AWS S3). The auth app keeps its users in its own database (``auth_db_uri``: by default the backend's
database name + ``_auth`` on the same server); its settings file is written with mode 0600 and holds no password.

:func:`prepare_databases` creates / upgrades both schemas once before the server's workers start (several workers
migrating a new database at the same time race, as they do on SQLite). :func:`server_command` is the exact
``mlflow server`` command line; ``mslstm tracking-server`` runs it.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from mslstm.errors import ConfigError

log = logging.getLogger(__name__)

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # the auth app's CSRF key: the same on every server replica
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


def auth_db_uri_for(backend_store_uri: str) -> str:
    """The default users database: the backend's database name + ``_auth`` (``.../mlflow`` -> ``.../mlflow_auth``;
    a SQLite file ``x.db`` -> ``x_auth.db``)."""
    base, sep, query = backend_store_uri.partition("?")
    if base.endswith(".db"):
        return base[:-3] + "_auth.db" + sep + query
    head, slash, name = base.rpartition("/")
    if not slash or not name:
        raise ConfigError(f"--backend-store-uri {backend_store_uri!r}: no database name to derive the auth "
                          "database from; give --auth-db-uri")
    return f"{head}/{name}_auth{sep}{query}"


def auth_config_text(auth_db_uri: str, default_permission: str = "READ") -> str:
    """The basic-auth app's settings (``MLFLOW_AUTH_CONFIG_PATH``): the users database, the permission every
    signed-in user has on resources nobody granted (READ: all can read, only owners and grantees write)."""
    if default_permission not in PERMISSIONS:
        raise ConfigError(f"--default-permission: one of {', '.join(PERMISSIONS)} (got {default_permission!r})")
    return ("[mlflow]\n"
            f"default_permission = {default_permission}\n"
            f"database_uri = {auth_db_uri}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n")


def write_auth_config(path: str | os.PathLike, auth_db_uri: str, default_permission: str = "READ") -> Path:
    """Write :func:`auth_config_text` to ``path`` (mode 0600)."""
    from mslstm.io import writing

    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(auth_config_text(auth_db_uri, default_permission))
    return path


def prepare_databases(backend_store_uri: str, auth_db_uri: str) -> None:
    """Create or upgrade the tracking schema and the users schema (once, before the workers start)."""
    import mlflow
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore

    mlflow.MlflowClient(tracking_uri=backend_store_uri).search_experiments(max_results=1)  # creates / migrates
    AuthStore().init_db(auth_db_uri)


def server_command(backend_store_uri: str, artifacts_destination: str, host: str = "127.0.0.1", port: int = 5000,
                   workers: int = 2, allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line: PostgreSQL (any SQLAlchemy URI) backend, artifacts proxied to
    ``artifacts_destination`` (``s3://bucket/prefix``), basic auth."""
    if not artifacts_destination:
        raise ConfigError("--artifacts-destination: required, e.g. s3://mlflow-artifacts/mlartifacts")
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else "mlflow", "server",
           "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
           "--serve-artifacts", "--app-name", "basic-auth", "--host", host, "--port", str(int(port)),
           "--workers", str(int(workers))]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    return cmd


def check_environment(env: dict[str, str] | None = None) -> None:
    """Refuse to start without the first admin's password and the CSRF key in the environment (MLflow ships
    neither)."""
    env = os.environ if env is None else env
    for name, what in ((ADMIN_PASSWORD_ENV, "the first admin's password"),
                       (SECRET_KEY_ENV, "the auth app's CSRF key, the same on every replica")):
        if not env.get(name):
            raise ConfigError(f"{name}: not set; the basic-auth app needs {what} from the environment "
                              "(a Kubernetes secret), never from the command line")


def exec_server(backend_store_uri: str, artifacts_destination: str, state_dir: str | os.PathLike,
                auth_db_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000, workers: int = 2,
                default_permission: str = "READ", allowed_hosts: str | None = None,
                extra: Sequence[str] = ()) -> None:
    """Prepare the databases, write the auth settings under ``state_dir`` and replace this process with the
    ``mlflow server`` of :func:`server_command` (signals then go straight to MLflow)."""
    check_environment()
    auth_db_uri = auth_db_uri or auth_db_uri_for(backend_store_uri)
    ini = write_auth_config(Path(state_dir) / "basic_auth.ini", auth_db_uri, default_permission)
    prepare_databases(backend_store_uri, auth_db_uri)
    cmd = [*server_command(backend_store_uri, artifacts_destination, host, port, workers, allowed_hosts), *extra]
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
    os.environ.setdefault("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    log.info("starting: %s", " ".join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(cmd[0], cmd)
