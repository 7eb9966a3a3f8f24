"""Soak benchmark (issue 15, not a timed test): trainings started in pairs against one fresh SQLite store and one
``mlflow server`` on 127.0.0.1, with random SIGKILLs and ``--resume`` until each training finishes.

    .venv/bin/python bench/bench_soak.py [--runs 20] [--kill-prob 0.6] [--seed 0]

Pairs alternate between the SQLite store (``sqlite:///<tmp>/mlflow.db``, not created beforehand: the first pair
creates it together) and the server. A killed training is resumed (``--resume``) until it exits 0 (at most
``--max-attempts`` tries). Prints runs recorded (FINISHED in their store) / runs started, runs left RUNNING in
either store, checkpoints (``last.pt``, ``best.pt``) that fail to load, the kills and the machine's load.
Target: 20/20, 0, 0.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = {
    "data": {"input_frames": 3, "output_frames": 3},
    "model": {"name": "mslstm", "frame_size": [16, 16], "input_frames": 3, "output_frames": 3, "hidden": 8,
              "layers": 2, "scales": [1, 1]},
    "train": {"epochs": 3, "batch_size": 2, "checkpoint_every_steps": 2, "progress": "quiet"},
    "tracking": {"system_metrics": False, "log_model": False, "log_checkpoint": False, "log_every_steps": 1,
                 "experiment": "soak"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(uri: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MSLSTM_FAULT", "MLFLOW_", "TORCHELASTIC"))}
    return {**e, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri}


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    """``mlflow server --workers 2`` on a SQLite backend that :func:`mslstm.tracking.prepare_store` created first
    (its workers race on a new database's schema exactly like two trainings do)."""
    from mslstm.tracking import prepare_store

    prepare_store(f"sqlite:///{tmp / 'server.db'}")
    port = free_port()
    mlflow_bin = str(Path(PY).with_name("mlflow"))
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
                             "--artifacts-destination", str(tmp / "server-artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "2"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise RuntimeError(f"mlflow server did not start:\n{(tmp / 'server.log').read_text()[-2000:]}")


def training(i: int, uri: str, tmp: Path, rng: random.Random, kill_prob: float, max_attempts: int,
             stats: dict) -> None:
    """Run training ``i`` to the end: SIGKILL it at a random time with ``kill_prob``, then resume."""
    out = tmp / f"train{i:02d}"
    for attempt in range(max_attempts):
        cmd = [PY, "-m", "mslstm.cli", "--params", str(tmp / "params.yaml"), "train", "--data-dir",
               str(tmp / "data"), "--out", str(out), *(["--resume"] if attempt else [])]
        proc = subprocess.Popen(cmd, cwd=tmp, env=env(uri), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        kill_at = rng.uniform(2.0, 25.0) if attempt < max_attempts - 1 and rng.random() < kill_prob else None
        try:
            _, err = proc.communicate(timeout=kill_at)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            stats["kills"] += 1
            continue
        if proc.returncode == 0:
            return
        stats["errors"].append(f"train{i:02d} attempt {attempt}: rc {proc.returncode}: {err.strip()[-400:]}")
    stats["unfinished"] += 1


def analyse(tmp: Path, where: dict[int, str], stores: dict[str, str]) -> tuple[int, int, int]:
    """(trainings whose run is FINISHED in its store, runs left RUNNING in any store, checkpoints failing to load).
    The server's runs are read from its SQLite backend directly (works after the server is gone)."""
    import mlflow

    from mslstm.errors import CheckpointError
    from mslstm.training.checkpoint import load_checkpoint

    recorded, running = 0, 0
    for name, uri in stores.items():
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("soak")
        runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
        running += sum(r.info.status == "RUNNING" for r in runs)
        status = {r.info.run_id: r.info.status for r in runs}
        for i, n in where.items():
            info = tmp / f"train{i:02d}" / "run.json"
            if n == name and info.is_file() and status.get(json.loads(info.read_text())["run_id"]) == "FINISHED":
                recorded += 1
    bad_ckpt = 0
    for i in where:
        for f in ("last.pt", "best.pt"):
            try:
                load_checkpoint(tmp / f"train{i:02d}" / f)
            except CheckpointError:
                bad_ckpt += 1
    return recorded, running, bad_ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="trainings (started two at a time)")
    ap.add_argument("--kill-prob", type=float, default=0.6, help="chance that an attempt is SIGKILLed")
    ap.add_argument("--max-attempts", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from mslstm.data.dataset import write_dataset

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="mslstm-soak-"))
    data_rng = np.random.default_rng(0)
    write_dataset(tmp / "data", {n: data_rng.integers(0, 256, size=(k, 6, 1, 16, 16), dtype=np.uint8)
                                 for n, k in (("train", 8), ("val", 4), ("test", 2))},
                  input_frames=3, output_frames=3, source="soak-random")
    (tmp / "params.yaml").write_text(yaml.safe_dump(TINY))
    server, url = start_server(tmp)
    stores = {"sqlite": f"sqlite:///{tmp / 'mlflow.db'}", "server": url}
    stats = {"kills": 0, "unfinished": 0, "errors": []}
    t0 = time.time()
    load0 = os.getloadavg()[0]
    where: dict[int, str] = {}
    try:
        for pair in range(0, args.runs, 2):
            name = "sqlite" if (pair // 2) % 2 == 0 else "server"
            ids = [i for i in (pair, pair + 1) if i < args.runs]
            threads = []
            for i in ids:
                where[i] = name
                t = threading.Thread(target=training, args=(i, stores[name], tmp, random.Random(rng.random()),
                                                            args.kill_prob, args.max_attempts, stats))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            print(f"pair {pair // 2 + 1} ({name}) done, {stats['kills']} kills so far", flush=True)
        recorded, running, bad_ckpt = analyse(tmp, where, {**stores, "server": f"sqlite:///{tmp / 'server.db'}"})
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    wall = time.time() - t0
    print(f"runs recorded / runs started: {recorded}/{args.runs}")
    print(f"runs left RUNNING: {running}")
    print(f"checkpoints that fail to load: {bad_ckpt}")
    print(f"SIGKILLs: {stats['kills']}, trainings unfinished after {args.max_attempts} attempts: "
          f"{stats['unfinished']}, wall {wall:.0f} s, load average {load0:.1f} -> {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs; folder {tmp}")
    for e in stats["errors"][:10]:
        print("  error:", e)


if __name__ == "__main__":
    main()
