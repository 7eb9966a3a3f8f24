"""Concurrent load on the team's tracking stack: N loggers (N = 2, 4, 8) at once against the MLflow server with
basic auth, artifacts on (moto) S3, runs in PostgreSQL and, side by side, in SQLite.

Each logger is its own process (as the ablation's and the comparison's ParallelFor branches are): it opens a run,
sends ``log_batch`` requests of 5 metric points as fast as the server answers for ``--seconds``, and ends the run
FINISHED. The table then compares what was sent with what the server stored (``get_metric_history`` of every key:
they must be equal, nothing lost), counts the runs that ended FINISHED and gives the p50/p99 latency of one
``log_batch`` seen by the client. ``--ddp`` adds a 2-process DDP training (``torchrun``, tiny shapes) logging to
the PostgreSQL server while N loggers run.

    python bench/bench_tracking.py                       # N = 2 4 8, 10 s each, PostgreSQL and SQLite
    python bench/bench_tracking.py --n 4 --seconds 3 --backends postgresql --json out.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ADMIN, ADMIN_PW = "admin", "bench-admin-password-1"
USER, USER_PW = "bench", "bench-user-password-1"
KEYS = 5


def logger(url: str, creds: dict[str, str], experiment_id: str, seconds: float, barrier, results, name: str) -> None:
    """One logger process: a run, then (once every logger is ready) ``log_batch`` of KEYS points per step until
    ``seconds`` pass, then FINISHED; puts its counts and latencies on ``results``."""
    os.environ.update(creds)
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(url)
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    latencies: list[float] = []
    sent = errors = step = 0
    barrier.wait(timeout=300)
    end = time.time() + seconds
    while time.time() < end:
        now = int(time.time() * 1000)
        batch = [Metric(f"m{k}", float(step), now, step) for k in range(KEYS)]
        t0 = time.perf_counter()
        try:
            client.log_batch(run_id, metrics=batch, synchronous=True)
        except Exception:  # noqa: BLE001 - counted: a failed request is a loss the table shows
            errors += 1
        latencies.append(time.perf_counter() - t0)
        sent += KEYS
        step += 1
    client.set_terminated(run_id, "FINISHED")
    results.put({"run_id": run_id, "sent": sent, "errors": errors, "latencies": latencies})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def drive(url: str, creds: dict[str, str], n: int, seconds: float, experiment: str) -> dict:
    """N loggers at once against ``url``; returns sent/stored points, FINISHED runs and latency percentiles
    (``creds``: MLFLOW_TRACKING_USERNAME / _PASSWORD, exported for this process and the loggers)."""
    os.environ.update(creds)
    from mlflow import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()  # the clock starts when every logger has its run open
    procs = [ctx.Process(target=logger, args=(url, creds, exp_id, seconds, barrier, queue, f"load-{n}-{i}"))
             for i in range(n)]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=300 + 10 * seconds) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    stored = 0
    finished = 0
    for r in results:
        stored += sum(len(client.get_metric_history(r["run_id"], f"m{k}")) for k in range(KEYS))
        finished += client.get_run(r["run_id"]).info.status == "FINISHED"
    lat = [x for r in results for x in r["latencies"]]
    sent = sum(r["sent"] for r in results)
    return {"n": n, "seconds": seconds, "sent": sent, "stored": stored, "lost": sent - stored,
            "errors": sum(r["errors"] for r in results), "runs": n, "finished": finished,
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
            "batches_per_s": len(lat) / seconds, "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan")}


def ddp_run(url: str, creds: dict[str, str], folder: Path) -> dict:
    """A 2-process DDP training (torchrun, tiny shapes) logging to ``url``: its run and loss points."""
    import numpy as np
    import yaml
    from mlflow import MlflowClient

    from mslstm.data.dataset import write_dataset

    rng = np.random.default_rng(0)
    splits = {s: rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
              for s, k in (("train", 16), ("val", 4), ("test", 4))}
    write_dataset(folder / "data", splits, input_frames=3, output_frames=3, source="bench-random")
    steps = 20
    params = {"data": {"input_frames": 3, "output_frames": 3},
              "model": {"name": "convlstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3,
                        "hidden": 4, "layers": 1, "scales": [1], "patch_size": 1},
              "train": {"epochs": 100, "max_steps": steps, "batch_size": 2, "progress": "quiet", "amp": "off",
                        "log_every_steps": 1, "device": "cpu"},
              "tracking": {"system_metrics": False, "log_model": False, "log_every_steps": 1,
                           "experiment": "bench-ddp"}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, **creds, "MLFLOW_TRACKING_URI": url, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", "2",
                           "-m", "mslstm", "--params", str(folder / "params.yaml"), "train", "--data-dir",
                           str(folder / "data"), "--out", str(folder / "train")], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"ok": False, "stderr": proc.stderr[-2000:]}
    info = json.loads((folder / "train" / "run.json").read_text())
    client = MlflowClient(url)
    points = len(client.get_metric_history(info["run_id"], "train/loss"))
    return {"ok": True, "status": client.get_run(info["run_id"]).info.status, "loss_points": points,
            "expected_points": steps, "seconds": took}


def start_stack(folder: Path, backends: list[str], workers: int):
    """moto S3 + one auth server per backend; returns (servers {backend: url}, stoppers)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tracking_stack import start_postgres, start_tracking_server

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    stops = [moto.stop]
    s3 = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="bench")
    auth = {"MLFLOW_AUTH_ADMIN_USERNAME": ADMIN, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PW,
             "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-csrf-key"}
    servers = {}
    try:
        for backend in backends:
            if backend == "postgresql":
                pg = start_postgres()
                stops.append(pg.stop)
                pg.create_database("mlflow")
                pg.create_database("mlflow_auth")
                env, uri = {**pg.env(), **s3, **auth}, pg.uri("mlflow")
            else:
                env, uri = {**s3, **auth}, f"sqlite:///{folder / 'sqlite' / 'mlflow.db'}"
                (folder / "sqlite").mkdir(parents=True, exist_ok=True)
            server = start_tracking_server(folder / backend, env, backend_store_uri=uri,
                                           artifacts_destination=f"s3://bench/{backend}", workers=workers)
            stops.append(server.stop)
            create_user(server.url)
            servers[backend] = server.url
    except BaseException:
        for stop in reversed(stops):
            stop()
        raise
    return servers, stops


def create_user(url: str) -> None:
    import base64
    import urllib.request

    req = urllib.request.Request(f"{url}/api/2.0/mlflow/users/create", method="POST",
                                 data=json.dumps({"username": USER, "password": USER_PW}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Basic " +
                                          base64.b64encode(f"{ADMIN}:{ADMIN_PW}".encode()).decode()})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def table(rows: list[dict]) -> str:
    head = ("| backend | N loggers | points sent | points stored | lost | failed requests | runs FINISHED "
            "| log_batch p50 ms | p99 ms | batches/s |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['n']} | {r['sent']} | {r['stored']} | {r['lost']} | {r['errors']} "
                     f"| {r['finished']}/{r['runs']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                     f"| {r['batches_per_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2, 4, 8], help="concurrent loggers (default 2 4 8)")
    ap.add_argument("--seconds", type=float, default=10.0, help="logging time per case (default 10)")
    ap.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"])
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    ap.add_argument("--ddp", action="store_true", help="also a 2-process DDP training against PostgreSQL")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    servers, stops = start_stack(folder, args.backends, args.workers)
    creds = {"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": USER_PW}
    rows = []
    try:
        for backend, url in servers.items():
            for n in args.n:
                row = {"backend": backend, **drive(url, creds, n, args.seconds, f"bench-{backend}")}
                rows.append(row)
                print(f"{backend} N={n}: sent {row['sent']} stored {row['stored']} FINISHED "
                      f"{row['finished']}/{row['runs']} p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms",
                      flush=True)
        ddp = None
        if args.ddp and "postgresql" in servers:
            ddp = ddp_run(servers["postgresql"], creds, folder / "ddp")
            print(f"DDP 2 processes -> PostgreSQL: {ddp}", flush=True)
    finally:
        for stop in reversed(stops):
            stop()
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "ddp": ddp}, indent=1))
    return 0 if all(r["lost"] == 0 and r["finished"] == r["runs"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
