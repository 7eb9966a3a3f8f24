"""Benchmark the model family: parameters, training-step time, throughput and peak memory, fp32 and bf16.

For every registered model (``mslstm models``; ``--models`` / ``--tag`` pick some) and each ``--amp`` precision
(default ``none,bf16``: fp32 and bf16 autocast rows) at the paper's reference configuration (64x64, 10 -> 10 frames, hidden 64, 6 layers) and at a small
one (same frames, patch_size 4, hidden 16), one training step = the model's own training step (forward with the
scheduled-sampling mask its recipe draws, e.g. PredRNN-V2's reverse (B, T-2) mask, + MSE + its weighted auxiliary
losses) + backward (timed), then an Adam step (not timed). Printed per row: parameters, median forward+backward
seconds per batch after warm-up, sequences/s, and the peak memory of one training step:
  CPU: peak resident-set growth of a fresh process over one training step (each row runs in its own child
       process; ``ru_maxrss`` high-water mark minus the RSS just before the step: activations, gradients, Adam
       state and allocator overhead);
  GPU: ``torch.cuda.max_memory_allocated`` during the step minus the memory allocated before it.

    python bench/bench_models.py --models convlstm,smslstm,tmslstm,mslstm --amp none
                                                       # the paper's four, fp32: ~2 min on 2 idle CPU cores
    python bench/bench_models.py --configs small       # every model, fp32 and bf16, small config
    python bench/bench_models.py --configs small --channels-last --amp bf16
    python bench/bench_models.py --device cuda --batch 16 --ref-batch 16 --repeats 10 --ref-repeats 10
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "reference": {},
    "small": {"patch_size": 4, "hidden": 16},
    # the embedded default of params.yaml (what `mslstm compare` trains), read from mslstm.config.embedded_model
    "params": None,
}
AMPS = ("none", "bf16", "fp16")


def config_fields(name: str) -> dict:
    """ModelConfig fields of a named configuration (``params`` = the embedded default's network)."""
    if CONFIGS[name] is not None:
        return CONFIGS[name]
    from mslstm.config import embedded_model
    m = embedded_model()
    return {"patch_size": m.patch_size, "hidden": m.hidden, "layers": m.layers, "scales": tuple(m.scales)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--batch", type=int, default=2, help="sequences per batch, small config (default 2)")
    p.add_argument("--ref-batch", type=int, default=1,
                   help="sequences per batch, reference config (default 1: seconds per sequence on a CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per row for the small config (default 5)")
    p.add_argument("--ref-repeats", type=int, default=1,
                   help="timed steps per row for the reference config (default 1: seconds per step on a CPU)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (default 1)")
    p.add_argument("--channels-last", action="store_true", help="channels-last weights and activations")
    p.add_argument("--amp", default="none,bf16",
                   help="comma-separated autocast dtypes, a row each: none (fp32), bf16, fp16 (CUDA) "
                        "(default none,bf16)")
    p.add_argument("--compile", choices=("none", "cells", "model"), default="none",
                   help="torch.compile each cell or the whole network (default none)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared machine more threads spin-wait on each other "
                        "and get slower; 0 = torch's choice)")
    p.add_argument("--models", default="", help="comma-separated registered models (default: every model)")
    p.add_argument("--tag", default=None, help="every model with this registry tag (e.g. paper)")
    p.add_argument("--configs", default="small,reference",
                   help="comma-separated subset of small,reference,params (params: the params.yaml model)")
    p.add_argument("--json", action="store_true", help="also print the rows as JSON")
    p.add_argument("--_row", help=argparse.SUPPRESS)  # internal: run one row in this process, print JSON
    return p.parse_args(argv)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _maxrss() -> int:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024


def run_row(args: argparse.Namespace, model_name: str, config_name: str, amp: str) -> dict:
    import torch

    from model import ModelConfig, build_model, count_parameters, get_spec
    from mslstm.training.config import TrainConfig
    from mslstm.training.recipe import build_recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = ModelConfig(name=model_name, channels_last=args.channels_last, **config_fields(config_name))
    torch.manual_seed(0)
    net = build_model(cfg).to(device)
    params = count_parameters(net)
    if args.compile == "cells":
        for cell in net.core.cells:
            cell.compile()
    fwd = torch.compile(net) if args.compile == "model" else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    b = args.ref_batch if config_name == "reference" else args.batch
    t = cfg.total_frames
    frames = torch.rand(b, t, cfg.in_channels, *cfg.frame_size, device=device)
    # the model's own training method: its scheduled-sampling schedule (mask half way through training) and
    # auxiliary-loss weights, as the trainer builds them
    recipe = build_recipe(TrainConfig(ss_decay_steps=2), device, get_spec(model_name).recipe, total_steps=2)
    mask = recipe.mask(b, 1, cfg.input_frames, t, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out, aux = fwd(frames, mask, return_aux=True)         # (B, T-1, C, H, W), {name: loss}
            loss = torch.nn.functional.mse_loss(out.float(), frames[:, 1:])
            loss = loss + sum(recipe.aux_loss_weights.get(k, 1.0) * v.float() for k, v in aux.items())
        loss.backward()
        sync()
        dt = time.perf_counter() - t0
        opt.step()
        opt.zero_grad(set_to_none=True)
        return dt

    # memory of the first training step (gradients and Adam state are allocated here too)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _rss()
    first = step()
    peak = (torch.cuda.max_memory_allocated(device) if cuda else _maxrss()) - before
    for _ in range(max(args.warmup - 1, 0)):
        step()
    repeats = args.ref_repeats if config_name == "reference" else args.repeats
    repeats = max(repeats, 1)
    # the first step is warm-up step 1; with --warmup 0 it is timed
    times = [step() for _ in range(repeats)] if args.warmup > 0 else [first] + [step() for _ in range(repeats - 1)]
    med = statistics.median(times)
    return {
        "model": model_name,
        "config": config_name,
        "amp": amp,
        "params": params,
        "batch": b,
        "frames": t,
        "fwd_bwd_s": med,
        "first_step_s": first,
        "seq_per_s": b / med,
        "peak_mem_mb": peak / 2**20,
        "memory": "cuda max_memory_allocated delta" if cuda else "peak RSS delta",
        "repeats": len(times),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._row:
        model_name, config_name, amp = args._row.split(":")
        print(json.dumps(run_row(args, model_name, config_name, amp)))
        return 0
    from model import model_names

    known = model_names()
    models = [m for m in args.models.split(",") if m] or list(model_names(args.tag))
    configs = [c for c in args.configs.split(",") if c]
    amps = [a for a in args.amp.split(",") if a]
    for m in models:
        if m not in known:
            raise SystemExit(f"--models: unknown model {m!r} (known: {', '.join(known)})")
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"--configs: unknown config {c!r} (known: {', '.join(CONFIGS)})")
    for a in amps:
        if a not in AMPS or (a == "fp16" and not args.device.startswith("cuda")):
            raise SystemExit(f"--amp: {a!r}; use none, bf16 (and fp16 on CUDA)")
    import torch

    child_args = [a for a in (argv if argv is not None else sys.argv[1:])]
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else
             f", {args.threads or torch.get_num_threads()} threads"))
    print(f"# batch small {args.batch} / reference {args.ref_batch}, warm-up {args.warmup}, "
          f"repeats small {args.repeats} / reference {args.ref_repeats}, "
          f"channels_last {args.channels_last}, amp {','.join(amps)}, compile {args.compile}")
    for c in configs:
        desc = ", ".join(f"{k} {v}" for k, v in config_fields(c).items()) or "paper: 64x64, hidden 64, 6 layers, patch 1"
        print(f"# {c}: {desc}; 10 -> 10 frames (T = 20)")
    w = max(len("model"), *(len(m) for m in models))
    header = (f"{'model':<{w}} {'config':<10} {'amp':<5} {'params':>10} {'fwd+bwd s':>10} {'seq/s':>8} "
              f"{'peak MB':>9}  memory")
    print(header)
    print("-" * len(header))
    rows = []
    for c in configs:
        for m in models:
            for a in amps:
                cmd = [sys.executable, __file__, *child_args, "--_row", f"{m}:{c}:{a}"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{m:<{w}} {c:<10} {a:<5} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(r)
                print(f"{m:<{w}} {c:<10} {a:<5} {r['params']:>10,} {r['fwd_bwd_s']:>10.3f} {r['seq_per_s']:>8.2f} "
                      f"{r['peak_mem_mb']:>9.0f}  {r['memory']}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
