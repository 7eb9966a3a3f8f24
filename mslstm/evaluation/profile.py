"""The profile step: what one model of the config costs to train and to run, measured on the device it runs on.

    from mslstm.evaluation.profile import profile
    result = profile(cfg, "artifacts/profile")          # -> cost.json, cost.md

Measured (the model of ``cfg.model``, random weights, random frames of the configured shape):

- ``params``: trainable parameters.
- ``flops_forward`` / ``flops_train``: FLOPs of one sequence (batch 1, input_frames + output_frames frames)
  for the forward pass, and for forward + loss + backward, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (convolutions and matmuls; a multiply-add counts 2; element-wise gate math is not counted).
- ``peak_memory_bytes``: memory of one training step at ``profile.batch_size``. On CUDA: the caching allocator's
  ``max_memory_allocated`` over the step (everything live: weights, gradients, optimizer state, activations).
  On CPU: the same quantity rebuilt from PyTorch's own records: the bytes of weights + gradients + optimizer state
  (counted from the tensors) plus the peak of live allocations during the step over its start, from
  ``torch.profiler`` (``profile_memory=True``). ``memory_measure`` says which one was used.
- ``step_time_s``: median wall time of a training step as the trainer does it (``mslstm.training.recipe``: forward
  under the ``train.amp`` policy, the ``train.loss`` loss, backward, grad clip, ``train.optimizer`` step) at
  ``profile.batch_size`` after ``profile.warmup`` steps, over ``profile.repeats`` steps;
  ``predict_time_s``: median time of ``net.predict`` (output_frames frames) per sequence at the same batch size;
  throughputs in sequences per second.
- ``estimate``: training device-hours = steps x step time x (train batch / profile batch), and its price from
  ``profile.prices[device kind]`` (USD per device-hour).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from mslstm.io import write_json, write_text

log = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def count_train_flops(net: torch.nn.Module, frames: torch.Tensor, mask: Optional[torch.Tensor] = None,
                      loss: str = "l1l2") -> int:
    """FLOPs of forward + loss (``train.loss``) + backward of ``net(frames, mask)`` (FlopCounterMode; gradients are
    zeroed after)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mslstm.training.recipe import LOSSES, split_output

    from model.networks import Forecaster

    counter = FlopCounterMode(display=False)
    with counter:
        # a registry network hands its training-only auxiliary losses with return_aux (any other module: pred)
        pred, aux = split_output(net(frames, mask, return_aux=True) if isinstance(net, Forecaster)
                                 else net(frames, mask))
        total = LOSSES[loss](pred, frames[:, 1:])
        for value in aux.values():
            total = total + value
        total.backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def count_forward_flops(net: torch.nn.Module, frames: torch.Tensor) -> int:
    """Forward FLOPs (model/flops.py's counter)."""
    from model.flops import count_flops

    return count_flops(net, frames)


def _tensor_bytes(tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)))


def _state_bytes(net: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    params = list(net.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    opt_state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return _tensor_bytes(params) + _tensor_bytes(grads) + _tensor_bytes(opt_state)


#: What torch.profiler's C++ side writes straight to stderr (file descriptor 2) around a profiled region, none of
#: it actionable here: kineto's trace markers (``USDT: ... profiler_start``, ``STAGE: ... Completed Stage``) and
#: c10's note that a block allocated before the region was freed inside it (the previous step's gradients).
PROFILER_NOISE = re.compile(r"^(USDT|STAGE):|CPUAllocator\.cpp:\d+\] Memory block of unknown size was allocated "
                            r"before the profiling started")


@contextlib.contextmanager
def profiler_noise_filtered() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 inside the block; then write it out less
    :data:`PROFILER_NOISE` lines (the C++ loggers cannot be quieted at run time: ``TORCH_CPP_LOG_LEVEL`` is read
    when torch is imported, and kineto's ``USDT`` level would also hide its errors)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not PROFILER_NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def cpu_step_peak_bytes(step: Callable[[], Any]) -> int:
    """Peak of live CPU allocations during ``step()`` over the level at its start (torch.profiler memory records)."""
    import itertools

    from torch.profiler import ProfilerActivity, profile as torch_profile

    with profiler_noise_filtered(), torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.events() if e.name == "[memory]" or e.self_cpu_memory_usage != 0]
    events.sort(key=lambda e: e.time_range.start)
    deltas = (e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage for e in events)
    return max([0, *itertools.accumulate(deltas)])


def training_steps(cfg: Any) -> tuple[int, str]:
    """Steps the cost estimate is for, and where the number came from."""
    pcfg, tcfg, dcfg = cfg.profile, getattr(cfg, "train", None), getattr(cfg, "data", None)
    if pcfg.estimated_steps:
        return pcfg.estimated_steps, "profile.estimated_steps"
    epochs = int(getattr(tcfg, "epochs", 1) or 1)
    batch = int(getattr(tcfg, "global_batch_size", None) or getattr(tcfg, "batch_size", 1) or 1)
    n_train = int(getattr(dcfg, "train_sequences", 0) or 0)
    steps = epochs * math.ceil(n_train / batch) if n_train else 0
    max_steps = int(getattr(tcfg, "max_steps", 0) or 0)
    if max_steps and (not steps or max_steps < steps):
        return max_steps, "train.max_steps"
    if steps:
        return steps, "train.epochs x ceil(data.train_sequences / train batch)"
    return 1000, "fallback (1000 steps; set profile.estimated_steps)"


def measure(cfg: Any) -> dict[str, Any]:
    """All cost figures of ``cfg.model`` on ``cfg.profile.device`` (no files, no MLflow)."""
    from model import build_model, get_spec

    from mslstm.devices import resolve_device
    from mslstm.training.recipe import build_optimizer, build_recipe, optimizer_step

    pcfg, mcfg = cfg.profile, cfg.model
    device = resolve_device(pcfg.device, key="profile.device")
    torch.manual_seed(0)
    net = build_model(mcfg).to(device)
    params = int(sum(p.numel() for p in net.parameters() if p.requires_grad))
    t_total = mcfg.input_frames + mcfg.output_frames
    shape = (mcfg.in_channels, *mcfg.frame_size)
    b = pcfg.batch_size
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(b, t_total, *shape, generator=gen).to(device)           # (B, T, C, H, W)
    mask = torch.ones(b, mcfg.output_frames - 1, device=device) if mcfg.output_frames > 1 else None

    net.train()
    one = frames[:1]
    flops_fwd = count_forward_flops(net, one)
    flops_train = count_train_flops(net, one, None if mask is None else mask[:1], cfg.train.loss)

    tcfg = cfg.train
    # the trainer's method: loss (+ the model's weighted auxiliary losses), AMP policy, optimizer, clipping
    recipe = build_recipe(tcfg, device, get_spec(mcfg.name).recipe)
    amp = recipe.amp_dtype
    opt = build_optimizer(net.parameters(), tcfg, float(tcfg.lr))
    scaler = recipe.grad_scaler(device)

    def train_step() -> None:
        with recipe.autocast(device):
            out = net(frames, mask, return_aux=True)
        loss, _ = recipe.loss(out, frames[:, 1:])
        optimizer_step(loss, opt, scaler, net.parameters(), recipe.grad_clip)

    step_time = median_time(train_step, pcfg.warmup, pcfg.repeats, device)
    # gradients and optimizer moments exist now (repeats >= 1): the memory step below is a steady-state step
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        _sync(device)
        peak = int(torch.cuda.max_memory_allocated(device))
        measure_name = "cuda: torch.cuda.max_memory_allocated over one training step"
    else:
        peak = _state_bytes(net, opt) + cpu_step_peak_bytes(train_step)
        measure_name = ("cpu: weights + gradients + optimizer state bytes + peak live allocations during the step "
                        "(torch.profiler profile_memory)")

    net.eval()
    inputs = frames[:, : mcfg.input_frames]

    def predict() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            net.predict(inputs, mcfg.output_frames)

    predict_batch = median_time(predict, pcfg.warmup, pcfg.repeats, device)

    steps, steps_from = training_steps(cfg)
    train_batch = int(getattr(tcfg, "global_batch_size", None) or getattr(tcfg, "batch_size", b) or b)
    hours = steps * step_time * (train_batch / b) / 3600.0
    kind = device.type
    price = pcfg.prices.get(kind)
    if price is None:
        log.warning("profile.prices has no entry for %r: the money estimate is left out", kind)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "model": mcfg.name,
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "batch_size": b,
        "frames": t_total,
        "frame_shape": list(shape),
        "params": params,
        "flops_forward": flops_fwd,
        "flops_train": flops_train,
        "peak_memory_bytes": peak,
        "memory_measure": measure_name,
        "step_time_s": step_time,
        "train_throughput_seq_s": b / step_time,
        "predict_time_s": predict_batch / b,
        "predict_throughput_seq_s": b / predict_batch,
        "amp": str(amp).replace("torch.", "") if amp is not None else "off",
        "estimate": {
            "steps": steps,
            "steps_from": steps_from,
            "train_batch": train_batch,
            "device_hours": hours,
            "usd_per_hour": price,
            "usd": None if price is None else hours * float(price),
        },
    }


def _cpu_name() -> str:
    import platform

    return platform.processor() or platform.machine() or "cpu"


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {suffix}{unit}"
    return f"{n:.3g} {unit}".strip()


def cost_markdown(r: dict[str, Any]) -> str:
    """The cost table as markdown."""
    e = r["estimate"]
    rows = [
        ("model", r["model"]),
        ("device", f"{r['device']} ({r['device_name']}, {r['threads']} threads)"),
        ("parameters", f"{r['params']:,}"),
        ("FLOPs / sequence, forward", _human(r["flops_forward"], "FLOP")),
        ("FLOPs / sequence, forward + backward", _human(r["flops_train"], "FLOP")),
        (f"peak memory, training step (batch {r['batch_size']})", f"{r['peak_memory_bytes'] / 2**20:.2f} MiB"),
        ("memory measure", r["memory_measure"]),
        ("time / training step (median)", f"{r['step_time_s'] * 1000:.1f} ms"),
        ("training throughput", f"{r['train_throughput_seq_s']:.2f} sequences/s"),
        ("time / predicted sequence (median)", f"{r['predict_time_s'] * 1000:.2f} ms"),
        ("prediction throughput", f"{r['predict_throughput_seq_s']:.2f} sequences/s"),
        ("estimated training steps", f"{e['steps']:,} ({e['steps_from']}, batch {e['train_batch']})"),
        ("estimated training device-hours", f"{e['device_hours']:.4g}"),
        ("estimated training cost", "n/a (no price)" if e["usd"] is None
         else f"${e['usd']:.4g} at ${e['usd_per_hour']}/h"),
    ]
    lines = ["| quantity | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def flat_metrics(r: dict[str, Any]) -> dict[str, float]:
    """Numeric figures with ``cost_`` names (MLflow metrics)."""
    keys = ("params", "flops_forward", "flops_train", "peak_memory_bytes", "step_time_s", "train_throughput_seq_s",
            "predict_time_s", "predict_throughput_seq_s")
    out = {f"cost_{k}": float(r[k]) for k in keys}
    out["cost_device_hours"] = float(r["estimate"]["device_hours"])
    if r["estimate"]["usd"] is not None:
        out["cost_usd"] = float(r["estimate"]["usd"])
    return out


def profile(cfg: Any, out_dir: str | os.PathLike, run_id: Optional[str] = None,
            run_info: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """Measure the cost of ``cfg.model`` (see module doc); write ``cost.json`` and ``cost.md`` to ``out_dir``; log to
    MLflow (run ``run_id``, else the run of ``run_info`` (a run.json or its folder), else a new run)."""
    out_dir = Path(out_dir)
    r = measure(cfg)
    write_json(out_dir / "cost.json", r)
    write_json(out_dir / "metrics.json", flat_metrics(r))  # numbers only: the DVC metrics
    write_text(out_dir / "cost.md", f"# Cost profile: {r['model']}\n\n" + cost_markdown(r))
    from mslstm.tracking import find_run_info, open_run, run_name

    info = None if run_id else find_run_info(run_info)
    with open_run(cfg, run_id=run_id, run_info=info, run_name=run_name(cfg, "profile")) as tracker:
        tracker.log_metrics(flat_metrics(r), synchronous=True)
        tracker.set_tags({"cost.device": r["device"], "cost.memory_measure": r["memory_measure"][:250]})
        tracker.log_artifact(out_dir / "cost.json", artifact_path="profile")
        tracker.log_artifact(out_dir / "cost.md", artifact_path="profile")
    log.info("%s on %s: %s params, %.3g FLOPs fwd, %.1f MiB, %.1f ms/step", r["model"], r["device"], r["params"],
             r["flops_forward"], r["peak_memory_bytes"] / 2**20, r["step_time_s"] * 1000)
    return {**r, "run_id": tracker.run_id}
