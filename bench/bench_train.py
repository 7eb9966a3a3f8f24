"""Training benchmarks: throughput (sequences/s) of MS-LSTM and ConvLSTM at the reference configuration
(``ModelConfig()`` defaults: 64x64, 10 -> 10 frames, 6 layers of 64 channels) with 1 and 2 processes (torchrun,
gloo), and the cost of MLflow logging per step (target: under 2% of the step time).

    .venv/bin/python bench/bench_train.py [--models mslstm,convlstm] [--procs 1,2] [--steps 2] [--batch 1]

Every figure comes from the real ``mslstm train`` path (``train()`` in a subprocess, tracking off) on random data;
sequences/s = sequences trained / time in the training loop (validation excluded), all processes together.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_dataset(path: Path, n_train: int, frames: int, size: int) -> None:
    from mslstm.data.dataset import write_dataset

    rng = np.random.default_rng(0)
    splits = {name: rng.integers(0, 256, size=(n, frames, 1, size, size), dtype=np.uint8)
              for name, n in (("train", n_train), ("val", 2), ("test", 2))}
    write_dataset(path, splits, input_frames=frames // 2, output_frames=frames - frames // 2, source="bench-random")


def run_train(tmp: Path, model: str, procs: int, steps: int, batch: int) -> dict:
    params = tmp / f"{model}-{procs}.yaml"
    params.write_text(yaml.safe_dump({
        "model": {"name": model},  # ModelConfig() defaults = reference configuration
        "train": {"epochs": 1000, "batch_size": batch, "max_steps": steps, "progress": "quiet", "val_batches": 1,
                  "log_every_steps": 1000},
        "tracking": {"enabled": False},
    }))
    out = tmp / f"out-{model}-{procs}"
    cli = ["-m", "mslstm.cli", "-q", "--params", str(params), "train", "--data-dir", str(tmp / "data"),
           "--out", str(out)]
    env = dict(os.environ)
    if procs == 1:
        cmd = [sys.executable, *cli]
        env.pop("OMP_NUM_THREADS", None)  # one process may use every core
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *cli]
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or procs) // procs))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["wall_s"] = time.perf_counter() - t0
    return metrics


def bench_mlflow(tmp: Path, n: int = 200) -> float:
    """Mean seconds of one ``tracker.log_metrics`` call (4 metrics, as the loop logs them) on the embedded store."""
    from mslstm.config import load_config
    from mslstm.tracking import start_run

    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        cfg = load_config(None, ["tracking.system_metrics=false"])
        with start_run(cfg, tmp / "mlflow-out") as tracker:
            tracker.log_metrics({"warmup": 0.0}, step=0)
            t0 = time.perf_counter()
            for i in range(n):
                tracker.log_metrics({"train/loss": 1.0 / (i + 1), "train/lr": 3e-4, "train/tf_prob": 0.5,
                                     "train/seq_per_s": 10.0}, step=i)
            per_call = (time.perf_counter() - t0) / n
            tracker.flush()
    finally:
        os.chdir(cwd)
    return per_call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mslstm,convlstm")
    p.add_argument("--procs", default="1,2")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per measurement (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="sequences per process per step (default: %(default)s)")
    a = p.parse_args()
    import torch

    from model import ModelConfig

    ref = ModelConfig()
    procs = [int(x) for x in a.procs.split(",")]
    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}; reference config {ref.frame_size[0]}x"
          f"{ref.frame_size[1]}, {ref.input_frames}->{ref.output_frames} frames, {ref.layers} layers x {ref.hidden} ch; "
          f"{a.steps} steps, batch {a.batch}/process")
    step_times = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        make_dataset(tmp / "data", n_train=max(procs) * a.batch * (a.steps + 1), frames=ref.total_frames,
                     size=ref.frame_size[0])
        print(f"{'model':<10} {'procs':>5} {'global batch':>12} {'seq/s':>8} {'s/step':>8}")
        for model in a.models.split(","):
            for n in procs:
                m = run_train(tmp, model, n, a.steps, a.batch)
                s_step = m["train_time_s"] / max(m["steps"], 1)
                step_times.append(s_step)
                print(f"{model:<10} {n:>5} {m['global_batch']:>12} {m['seq_per_s']:>8.4f} {s_step:>8.2f}", flush=True)
        per_call = bench_mlflow(tmp)
    fastest = min(step_times)
    print(f"MLflow log_metrics (4 metrics, async, SQLite): {per_call * 1e3:.2f} ms per call = "
          f"{100 * per_call / fastest:.3f}% of the fastest step above when logged every step "
          f"(default tracking.log_every_steps=10: {10 * per_call / fastest:.4f}%); target < 2%")


if __name__ == "__main__":
    main()
