"""Helpers (no tests): the team's tracking stack on 127.0.0.1 for tests and bench/bench_tracking.py.

- :func:`start_postgres`: a real PostgreSQL server (Debian's ``postgresql`` package: ``initdb`` + ``pg_ctl`` from
  ``/usr/lib/postgresql/<version>/bin``) on a temporary folder and a free port; password authentication over TCP
  (scram-sha-256). As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
- :func:`start_tracking_server`: ``mslstm tracking-server`` (PostgreSQL backend, artifacts proxied to S3, basic
  auth) or, for comparison, a plain ``mlflow server`` on SQLite.

The commands are the ones docs/pipelines.md ("Deploying the tracking server") gives for a local stack.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
PG_USER = "mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl`` (the newest Debian install, else the PATH's), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    """A running PostgreSQL server; :meth:`uri` gives a SQLAlchemy URI without the password (use PGPASSWORD)."""

    root: Path
    port: int
    password: str
    bin: Path
    as_user: list[str] = field(default_factory=list)

    def uri(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, password=self.password,
                             dbname="postgres", connect_timeout=10, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                        "-w", "-t", "30", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(password: str = "pg-test-password") -> Postgres:
    """initdb + pg_ctl start on a new folder under /tmp and a free 127.0.0.1 port (fsync off: a test server)."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (initdb not found): .ci/system-deps installs it")
    root = Path(tempfile.mkdtemp(prefix="mslstm-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the postgres user, who owns the folder
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if as_user:
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    os.chmod(pwfile, 0o600)
    port = free_port()
    pg = Postgres(root=root, port=port, password=password, bin=bindir, as_user=as_user)
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(root / "data"), "-U", PG_USER,
                        f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                        "--no-sync"], capture_output=True, text=True, timeout=120, check=True)
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"),
                        "-o", opts, "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90,
                       check=True)
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pg.stop()
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log[-2000:]}") from exc
    return pg


@dataclass
class TrackingServer:
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"tracking server did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)


def start_tracking_server(folder: Path, env: dict[str, str], backend_store_uri: str, artifacts_destination: str,
                          auth: bool = True, workers: int = 1, auth_db_uri: str | None = None) -> TrackingServer:
    """``mslstm tracking-server`` (``auth``: basic auth, PostgreSQL or any SQLAlchemy backend) or a plain
    ``mlflow server`` (no auth), on a free 127.0.0.1 port; ``env``: the server's secrets (PGPASSWORD, the admin
    password, S3 credentials)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if auth:
        cmd = [str(BIN / "mslstm"), "tracking-server", "--backend-store-uri", backend_store_uri,
               "--artifacts-destination", artifacts_destination, "--state-dir", str(folder / "state"),
               "--port", str(port), "--workers", str(workers)]
        if auth_db_uri:
            cmd += ["--auth-db-uri", auth_db_uri]
    else:
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_store_uri,
               "--artifacts-destination", artifacts_destination, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers)]
    log = folder / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    full_env.update(env, PYTHONPATH=str(ROOT))
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=folder,
                                start_new_session=True)
    server = TrackingServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        wait_healthy(server.url, proc, log)
    except BaseException:
        server.stop()
        raise
    return server
