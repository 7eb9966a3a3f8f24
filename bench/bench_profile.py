"""Cost profile of the four models at the config's model section (default: params.yaml), on this machine.

    python bench/bench_profile.py [--params params.yaml] [--set profile.device=cuda] [--models convlstm mslstm]

Prints one row per model: parameters, FLOPs per sequence (forward, forward+backward), peak memory of a training
step, median time per training step and per predicted sequence (``mslstm.evaluation.profile.measure``; no files,
no MLflow).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--models", nargs="*", default=["convlstm", "smslstm", "tmslstm", "mslstm"])
    args = ap.parse_args()

    from mslstm.config import load_config
    from mslstm.evaluation.profile import measure

    base = load_config(args.params if Path(args.params).exists() else None, args.overrides)
    m = base.model
    print(f"model section: {m.frame_size[0]}x{m.frame_size[1]}x{m.in_channels}, {m.input_frames}+{m.output_frames} "
          f"frames, hidden {m.hidden}, {m.layers} layers, patch {m.patch_size}; profile batch "
          f"{base.profile.batch_size}, {base.profile.warmup} warm-up + {base.profile.repeats} timed steps")
    head = (f"{'model':<9} {'device':<6} {'params':>9} {'GFLOP fwd':>10} {'GFLOP f+b':>10} {'peak MiB':>9} "
            f"{'ms/step':>8} {'ms/seq pred':>11} {'seq/s train':>11}")
    print(head)
    print("-" * len(head))
    for name in args.models:
        t0 = time.perf_counter()
        r = measure(base.replace({"model.name": name}))
        print(f"{name:<9} {r['device']:<6} {r['params']:>9,} {r['flops_forward'] / 1e9:>10.3f} "
              f"{r['flops_train'] / 1e9:>10.3f} {r['peak_memory_bytes'] / 2**20:>9.1f} {r['step_time_s'] * 1e3:>8.1f} "
              f"{r['predict_time_s'] * 1e3:>11.2f} {r['train_throughput_seq_s']:>11.1f}   ({time.perf_counter() - t0:.1f} s)")
    print(f"memory measure: {r['memory_measure']}")


if __name__ == "__main__":
    main()
