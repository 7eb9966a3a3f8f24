"""`mslstm predict` on a large input: peak resident memory and sequences/s of the streaming predictor.

Writes a ``--gb`` GB float32 input (N, T_in, 1, S, S) chunk by chunk (never whole in memory) and a random-init
small MS-LSTM checkpoint into a temporary folder, then runs ``mslstm predict`` on it in a child process and
reports the child's peak RSS (``VmHWM`` of its own address space, read at its exit: ``ru_maxrss`` would carry the
parent's peak over the fork), its sequences/s, and the peak RSS of a child that only imports the package and loads
the model (the floor: what streaming adds is the difference). Checks the output's shape and that its first and
last sequences equal a direct prediction.

    .venv/bin/python bench/bench_predict.py                 # 1 GB, 32x32 frames, 3 in + 3 out, batch 256
    .venv/bin/python bench/bench_predict.py --gb 0.05 --batch 64
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def write_input(path: Path, n: int, t_in: int, size: int, chunk: int = 4096) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, t_in, 1, size, size))
    rng = np.random.default_rng(0)
    for i in range(0, n, chunk):
        j = min(i + chunk, n)
        out[i:j] = rng.random((j - i, t_in, 1, size, size), dtype=np.float32)
    out.flush()
    del out


def write_checkpoint(path: Path, t_in: int, n_out: int, size: int, hidden: int) -> None:
    import torch

    from mslstm.config import load_config, to_dict
    from mslstm.training.checkpoint import save_checkpoint
    from model import build_model

    cfg = load_config(None, [f"model.frame_size=[{size}, {size}]", f"model.input_frames={t_in}",
                             f"model.output_frames={n_out}", f"model.hidden={hidden}",
                             f"data.input_frames={t_in}", f"data.output_frames={n_out}"])
    torch.manual_seed(0)
    net = build_model(cfg.model)
    save_checkpoint(path, {"model_config": to_dict(cfg.model), "config": cfg.to_dict(), "model": net.state_dict(),
                           "optimizer": None, "scheduler": None, "scaler": None, "epoch": 0, "step": 0, "rng": None,
                           "metrics": {}})


#: Runs ``mslstm <args>`` (or, with ``--load-only CKPT``, only loads the model) and writes its peak RSS last.
CHILD = """
import sys
try:
    if sys.argv[1] == "--load-only":
        from mslstm.release.predict import load_predictor
        load_predictor(sys.argv[2])
    else:
        import runpy
        sys.argv = ["mslstm", *sys.argv[1:]]
        runpy.run_module("mslstm", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as fh:
        hwm = next(line.split()[1] for line in fh if line.startswith("VmHWM"))
    sys.stderr.write(f"VmHWM_kB {hwm}\\n")
"""


def run_child(args: list[str]) -> tuple[int, float, str, float]:
    """(exit status, peak RSS in MB, stderr, seconds) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t0
    m = re.search(r"VmHWM_kB (\d+)", proc.stderr)
    return proc.returncode, (int(m.group(1)) / 1024 if m else float("nan")), proc.stderr, secs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=1.0, help="input size in GB (1e9 bytes)")
    p.add_argument("--size", type=int, default=32, help="frame side")
    p.add_argument("--t-in", type=int, default=3)
    p.add_argument("--n-future", type=int, default=3)
    p.add_argument("--hidden", type=int, default=8)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dir", default=None, help="folder for the input/output (default: a temporary one)")
    a = p.parse_args()
    seq_bytes = a.t_in * a.size * a.size * 4
    n = int(a.gb * 1e9) // seq_bytes
    with tempfile.TemporaryDirectory(prefix="bench-predict-", dir=a.dir) as tmp:
        tmp = Path(tmp)
        inp, out, ckpt = tmp / "in.npy", tmp / "out.npy", tmp / "model.pt"
        t0 = time.perf_counter()
        write_input(inp, n, a.t_in, a.size)
        write_checkpoint(ckpt, a.t_in, a.n_future, a.size, a.hidden)
        print(f"input: {inp.stat().st_size / 1e9:.2f} GB, {n:,} sequences of {a.t_in}x1x{a.size}x{a.size} float32 "
              f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
        rc, floor_mb, err, _ = run_child(["--load-only", str(ckpt)])
        assert rc == 0, err
        rc, peak_mb, err, secs = run_child(["predict", "--model", str(ckpt), "--input", str(inp), "--output", str(out),
                                            "--n-future", str(a.n_future), "--batch-size", str(a.batch),
                                            "--max-input-gb", "0"])
        if rc != 0:
            print(err[-2000:], file=sys.stderr)
            return 1
        m = re.search(r"predicted (\d+) sequences in ([\d.]+) s \(([\d.]+) seq/s\)", err)
        seq_s = float(m.group(3)) if m else n / secs
        pred = np.load(out, mmap_mode="r")
        assert pred.shape == (n, a.n_future, 1, a.size, a.size), pred.shape
        from mslstm.release.predict import load_predictor

        predictor = load_predictor(ckpt)
        x = np.load(inp, mmap_mode="r")
        for i in (0, n - 1):
            np.testing.assert_allclose(pred[i:i + 1], predictor.predict(x[i:i + 1], a.n_future), rtol=1e-4, atol=1e-5)
        print(f"predict: {n:,} sequences in {secs:.1f} s wall ({seq_s:,.0f} sequences/s in the loop), batch {a.batch}, "
              f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
        print(f"peak RSS: {peak_mb:,.0f} MB (import + model alone: {floor_mb:,.0f} MB; input {inp.stat().st_size / 1e6:,.0f}"
              f" MB, output {out.stat().st_size / 1e6:,.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
