"""Run the team's MLflow tracking server: runs in PostgreSQL, artifacts in S3 (proxied: clients need no S3
credentials), MLflow's basic-auth app in front. Creates / upgrades both databases first, then becomes
``mlflow server`` (signals go straight to it). Secrets come from the environment only: ``PGPASSWORD`` (PostgreSQL),
``MLFLOW_AUTH_ADMIN_PASSWORD`` (+ ``MLFLOW_AUTH_ADMIN_USERNAME``, default admin: the first admin user),
``MLFLOW_FLASK_SERVER_SECRET_KEY`` (the auth app's CSRF key),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_ENDPOINT_URL`` / ``MLFLOW_S3_ENDPOINT_URL``).

    PGPASSWORD=... MLFLOW_AUTH_ADMIN_PASSWORD=... MLFLOW_FLASK_SERVER_SECRET_KEY=... mslstm tracking-server \\
        --backend-store-uri postgresql://mlflow@db.example:5432/mlflow \\
        --artifacts-destination s3://mlflow-artifacts/mlartifacts --host 0.0.0.0 --port 5000
Clients: ``MLFLOW_TRACKING_URI=http://host:5000`` with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
(docs/pipelines.md, "Deploying the tracking server").
"""
from __future__ import annotations

NEEDS_CONFIG = False
HELP = "run the team's MLflow server: PostgreSQL backend, S3 artifacts, basic auth (secrets from the environment)"


def add_arguments(parser) -> None:
    parser.add_argument("--backend-store-uri", required=True,
                        help="SQLAlchemy URI of the runs database, e.g. postgresql://mlflow@db:5432/mlflow "
                             "(password: env PGPASSWORD)")
    parser.add_argument("--artifacts-destination", required=True,
                        help="where the server puts artifacts, e.g. s3://mlflow-artifacts/mlartifacts")
    parser.add_argument("--auth-db-uri", default=None,
                        help="the users database (default: the backend's database name + _auth)")
    parser.add_argument("--state-dir", default=".mlflow-server",
                        help="folder for the auth app's settings file (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default: %(default)s)")
    parser.add_argument("--default-permission", default="READ",
                        help="what a signed-in user may do where nobody granted more: READ (default), EDIT, "
                             "MANAGE, NO_PERMISSIONS")
    parser.add_argument("--allowed-hosts", default=None,
                        help="Host headers the server accepts besides localhost, e.g. mlflow.mlops.svc:5000")


def run(args, cfg) -> int:
    from mslstm.tracking.server import exec_server

    exec_server(args.backend_store_uri, args.artifacts_destination, args.state_dir, auth_db_uri=args.auth_db_uri,
                host=args.host, port=args.port, workers=args.workers, default_permission=args.default_permission,
                allowed_hosts=args.allowed_hosts)
    return 0  # not reached: the process became mlflow server
