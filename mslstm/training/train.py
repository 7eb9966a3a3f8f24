"""The train step: one code path for 1 process, ``torchrun`` on one node and several nodes.

``train(cfg, data_dir, out_dir, resume=False) -> dict`` trains ``cfg.model`` on ``data_dir`` (the processed dataset)
and writes ``out_dir/{best.pt,last.pt,metrics.json,history.csv,run.json}`` (rank 0 only).

Distribution: when ``WORLD_SIZE > 1`` (set by ``torchrun``) the process group is initialised from the torchrun
environment (NCCL on CUDA, gloo on CPU) and the model is wrapped in DDP. Each epoch's order is a
``DistributedSampler`` permutation (``set_epoch``), so N processes with per-process batch b see exactly the
sequences one process with batch N*b sees; scheduled-sampling masks are drawn for the global batch from a generator
seeded by the step, so the two are the same computation up to float summation order.

Resume: ``last.pt`` holds the model, optimizer, scheduler, scaler, RNG states, the epoch and the position inside
it, the early-stopping state and the history; ``--resume`` (or a torchrun restart) continues from it and ends
where an uninterrupted run ends. The :class:`Checkpointer` is called every step and decides when to write.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mslstm.errors import CheckpointError, ConfigError, DataError
from mslstm.io import write_json, write_text
from mslstm.training.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)

log = logging.getLogger(__name__)

BEST, LAST = "best.pt", "last.pt"
HISTORY_FIELDS = ("epoch", "step", "train_loss", "val_mse", "val_mae", "val_mse_frame", "lr", "tf_prob",
                  "seq_per_s", "time_s")
# Test hook (fault injection): MSLSTM_FAULT_STEP=N [MSLSTM_FAULT_RANK=r] [MSLSTM_FAULT_MODE=kill|exit] makes rank r
# fail right after optimizer step N, in the first torchrun attempt only (TORCHELASTIC_RESTART_COUNT unset or 0):
# kill = SIGKILL (default), term = SIGTERM, exit = os._exit(17), raise = RuntimeError.
FAULT_STEP_ENV, FAULT_RANK_ENV, FAULT_MODE_ENV = "MSLSTM_FAULT_STEP", "MSLSTM_FAULT_RANK", "MSLSTM_FAULT_MODE"


# ------------------------------------------------------------------------------------------- distributed setup
@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_pref: str = "auto") -> DistInfo:
    """Init the process group from the torchrun environment when ``WORLD_SIZE > 1``; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available; use auto or cpu")
    device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count())) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    info = DistInfo(rank, local_rank, world, device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        _init_process_group(backend, rank, world, device if use_cuda else None)
        info.initialised_here = True
        log.info("process group: backend %s, rank %d/%d (local %d), device %s", backend, rank, world, local_rank,
                 device)
    elif world > 1:
        info.rank, info.world_size = dist.get_rank(), dist.get_world_size()
    return info


def _init_process_group(backend: str, rank: int, world: int, device_id: Any) -> None:
    """``init_process_group`` from the torchrun environment. After a torchrun restart the store keys of this attempt
    get their own prefix, so that no rank can read an address a dead worker of an earlier attempt published."""
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if restart == 0 or "MASTER_ADDR" not in os.environ:
        dist.init_process_group(backend=backend, device_id=device_id)
        return
    from datetime import timedelta

    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world,
                          is_master=(not agent_store and rank == 0), timeout=timedelta(minutes=10),
                          multi_tenant=not agent_store)
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"mslstm/attempt_{restart}", store),
                            rank=rank, world_size=world, device_id=device_id)


def _all_reduce_sum(values: Sequence[float], dinfo: DistInfo) -> list[float]:
    """Sum a few floats over all ranks (float64 on CPU for gloo, on the device for nccl)."""
    if not dinfo.distributed:
        return [float(v) for v in values]
    dev = dinfo.device if dinfo.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor(list(values), dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def _all_reduce_max(value: float, dinfo: DistInfo) -> float:
    if not dinfo.distributed:
        return float(value)
    dev = dinfo.device if dinfo.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def replica_max_abs_diff(model: nn.Module, dinfo: DistInfo) -> float:
    """Largest |w_rank - w_rank0| over all parameters and ranks (0.0 when DDP kept the replicas in sync)."""
    if not dinfo.distributed:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in unwrap_model(model).parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    return _all_reduce_max(float((flat - ref).abs().max().item()) if flat.numel() else 0.0, dinfo)


# ------------------------------------------------------------------------------------------------- pure helpers
def sequence_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``l1l2``: per frame, sum over (C, H, W) of squared + absolute error, mean over batch and frames;
    ``mse``: mean squared error. pred/target (B, T', C, H, W)."""
    diff = pred.float() - target.float()
    if kind == "mse":
        return diff.pow(2).mean()
    if kind == "l1l2":
        return (diff.pow(2) + diff.abs()).sum(dim=(2, 3, 4)).mean()
    raise ValueError(f"loss: unknown loss {kind!r}")


def sampling_mask(global_batch: int, n: int, prob: float, step: int, seed: int) -> torch.Tensor:
    """Scheduled-sampling mask (global_batch, n) of 0/1 floats: 1 = feed ground truth, with probability ``prob``.

    Vectorised (one ``torch.bernoulli`` call) and drawn from a generator seeded by ``(seed, step)``, so that any
    number of processes (each taking its rows) and a resumed run draw the same masks.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    return torch.bernoulli(torch.full((global_batch, max(n, 0)), float(prob)), generator=gen)


def epoch_batches(n: int, batch: int, epoch: int, dinfo: DistInfo, seed: int, shuffle: bool = True) -> list[list[int]]:
    """This rank's batches of one epoch: a ``DistributedSampler`` permutation (set_epoch) cut into ``batch``es."""
    sampler = DistributedSampler(range(n), num_replicas=dinfo.world_size, rank=dinfo.rank, shuffle=shuffle,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i : i + batch] for i in range(0, len(idx), batch)]


class _BatchReader(Dataset):
    """Index = a list of sequence indices -> one (B, T, C, H, W) batch via ``VideoDataset.get_batch``."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, indices: list[int]) -> torch.Tensor:
        return self.ds.get_batch(indices)


def _loader(ds: Any, batches: list[list[int]], workers: int, pin: bool) -> Iterator[torch.Tensor]:
    if not batches:
        return iter(())
    if workers == 0:
        return (ds.get_batch(b) for b in batches)
    return iter(DataLoader(_BatchReader(ds), sampler=batches, batch_size=None, num_workers=workers,
                           pin_memory=pin, persistent_workers=False))


def amp_settings(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use GradScaler)`` for ``train.amp`` on ``device``."""
    if amp == "off":
        return None, False
    if device.type == "cuda":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16, False
        return torch.float16, True
    if amp == "bf16":
        return torch.bfloat16, False
    if amp == "fp16":
        raise ConfigError("train.amp: fp16 needs a CUDA device; use auto, off or bf16 on CPU")
    return None, False  # auto on CPU: off (bf16 autocast is slower than fp32 for these convolutions on CPU)


def build_optimizer(params: Any, tcfg: Any, lr: float) -> torch.optim.Optimizer:
    if tcfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=tcfg.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=tcfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, tcfg: Any, lr: float, total_steps: int) -> Any:
    total = max(1, total_steps)
    if tcfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr * tcfg.min_lr_ratio)
    if tcfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total + 1,
                                                   pct_start=tcfg.warmup_fraction)
    return None


# -------------------------------------------------------------------------------------------------- checkpointer
class Checkpointer:
    """Called by the loop after every step; writes ``last.pt`` when a step is due (every ``every_steps``) and at
    epoch ends, ``best.pt`` on a new best validation. Only the main rank writes."""

    def __init__(self, out_dir: Path, every_steps: int, enabled: bool) -> None:
        self.out_dir = Path(out_dir)
        self.every_steps = every_steps
        self.enabled = enabled
        self.last_path = self.out_dir / LAST
        self.best_path = self.out_dir / BEST

    def due(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def save_last(self, payload: dict[str, Any]) -> None:
        if self.enabled:
            save_checkpoint(self.last_path, payload)

    def save_best(self, payload: dict[str, Any]) -> None:
        if self.enabled:
            save_checkpoint(self.best_path, payload)


# ------------------------------------------------------------------------------------------------------- trainer
def _fault_hook(step: int, rank: int) -> None:
    """Fault injection for the tests (see FAULT_STEP_ENV). Does nothing unless the env var is set."""
    at = os.environ.get(FAULT_STEP_ENV)
    if not at or int(at) != step:
        return
    if int(os.environ.get(FAULT_RANK_ENV, "0")) != rank:
        return
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
        return
    mode = os.environ.get(FAULT_MODE_ENV, "kill")
    log.warning("fault injection: rank %d dies after step %d (%s)", rank, step, mode)
    if mode == "raise":
        raise RuntimeError(f"fault injection at step {step}")
    logging.shutdown()
    if mode == "exit":
        os._exit(17)
    os.kill(os.getpid(), signal.SIGTERM if mode == "term" else signal.SIGKILL)


def _check_data(cfg: Any, meta: dict[str, Any], data_dir: Path) -> None:
    m = cfg.model
    want_t = m.input_frames + m.output_frames
    for split in ("train", "val"):
        if split not in meta["splits"]:
            raise DataError(f"{data_dir / 'meta.json'}: no {split!r} split; training needs train and val")
        shape = list(meta["splits"][split]["shape"])
        if len(shape) != 5:
            raise DataError(f"{data_dir / split}.npy: expected (N, T, C, H, W), meta.json says {shape}")
        n, t, c, h, w = shape
        if n < 1:
            raise DataError(f"{data_dir / split}.npy: the split is empty")
        if t < want_t:
            raise ConfigError(
                f"model.input_frames + model.output_frames = {want_t} but {split} sequences have {t} frames "
                f"({data_dir}); regenerate the data or lower the frame counts"
            )
        if c != m.in_channels or [h, w] != list(m.frame_size):
            raise ConfigError(
                f"model.in_channels/frame_size = {m.in_channels}/{list(m.frame_size)} but {split} frames are "
                f"{c}/{[h, w]} ({data_dir}); set the model section to match the data"
            )


def _lr_now(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


@contextlib.contextmanager
def _sigterm_as_exception(enabled: bool) -> Iterator[None]:
    """Turn SIGTERM (torchrun stopping workers, a scheduler preempting) into SystemExit so that the MLflow run ends
    FAILED instead of RUNNING. Main thread only."""
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def train(cfg: Any, data_dir: str | os.PathLike, out_dir: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg.model`` on ``data_dir``; write checkpoints, metrics and the MLflow run into ``out_dir``.

    Args:
        cfg: the validated :class:`mslstm.config.Config`.
        data_dir: processed dataset (``meta.json`` + ``train.npy``/``val.npy``).
        out_dir: where ``best.pt``, ``last.pt``, ``metrics.json``, ``history.csv``, ``run.json`` go.
        resume: continue from ``out_dir/last.pt`` (also automatic after a torchrun restart).

    Returns:
        The final metrics (same dict as ``metrics.json``), on every rank.
    """
    from mslstm.data.dataset import VideoDataset, read_meta
    from mslstm.training.tracking import Tracker, start_run

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    tcfg = cfg.train
    dinfo = setup_distributed(tcfg.device)
    det_before = torch.are_deterministic_algorithms_enabled()
    det_warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        meta = read_meta(data_dir)
        _check_data(cfg, meta, data_dir)
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
        resume = resume or restarted
        ckpt = None
        if resume:
            if (out_dir / LAST).is_file():
                ckpt = load_checkpoint(out_dir / LAST, expected_model_config=cfg.model)
            else:
                log.warning("%s: no checkpoint to resume from; starting a new training", out_dir / LAST)
        if dinfo.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        with _sigterm_as_exception(dinfo.is_main):
            if cfg.tracking.enabled:
                run_cm = start_run(cfg, out_dir, data_dir=data_dir, enabled=dinfo.is_main, resume=ckpt is not None)
            else:
                run_cm = contextlib.nullcontext(Tracker(False))
            with run_cm as tracker:
                metrics = _train_loop(cfg, data_dir, out_dir, dinfo, ckpt, tracker, VideoDataset)
        return metrics
    finally:
        torch.use_deterministic_algorithms(det_before, warn_only=det_warn_before)
        if dinfo.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _train_loop(cfg: Any, data_dir: Path, out_dir: Path, dinfo: DistInfo, ckpt: dict | None, tracker: Any,
                dataset_cls: Any) -> dict[str, Any]:
    from model import build_model

    tcfg, mcfg = cfg.train, cfg.model
    device = dinfo.device
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed % 2**32)
    import random

    random.seed(tcfg.seed)
    if tcfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    train_ds = dataset_cls(data_dir, "train")
    val_ds = dataset_cls(data_dir, "val")
    t_total = mcfg.input_frames + mcfg.output_frames
    try:
        per_rank_batch, global_batch = tcfg.effective_batch(dinfo.world_size)
    except ValueError as exc:
        raise ConfigError(f"train.{exc}") from exc
    lr = tcfg.scaled_lr(global_batch)

    build_cfg = dataclasses.replace(mcfg, channels_last=True) if tcfg.channels_last else mcfg
    net = build_model(build_cfg).to(device)
    opt = build_optimizer(net.parameters(), tcfg, lr)
    n_train = len(train_ds)
    steps_per_epoch = len(epoch_batches(n_train, per_rank_batch, 0, dinfo, tcfg.seed))
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps:
        total_steps = min(total_steps, tcfg.max_steps)
    sched = build_scheduler(opt, tcfg, lr, total_steps)
    amp_dtype, use_scaler = amp_settings(tcfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    # ---- state (restored on resume)
    step, start_epoch, start_pos = 0, 0, 0
    best_val, bad_vals = math.inf, 0
    history: list[dict[str, Any]] = []
    loss_acc = [0.0, 0.0]  # global (all-reduced) loss sum / sequence count of the current epoch
    stopped_early = False
    if ckpt is not None:
        unwrap_model(net).load_state_dict(ckpt["model"])
        try:
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None and ckpt.get("scheduler"):
                sched.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{out_dir / LAST}: optimizer/scheduler state does not fit this config ({exc})") from exc
        tstate = ckpt.get("train_state") or {}
        step = int(ckpt.get("step", 0))
        start_epoch = int(ckpt.get("epoch", 0))
        start_pos = int(tstate.get("position", 0))
        best_val = float(tstate.get("best_val", math.inf))
        bad_vals = int(tstate.get("bad_validations", 0))
        history = list(tstate.get("history", []))
        loss_acc = [float(v) for v in tstate.get("loss_acc", [0.0, 0.0])]
        stopped_early = bool(tstate.get("stopped_early", False))
        restore_rng_state(ckpt.get("rng"))
        old_batch = tstate.get("global_batch", global_batch)
        if old_batch != global_batch and start_pos:
            # positions count batches of the old size: restart the interrupted epoch instead of guessing
            if dinfo.is_main:
                log.warning("global batch changed from %s to %d since the checkpoint: epoch %d restarts from its "
                            "beginning (the result will differ from an uninterrupted run)", old_batch, global_batch,
                            start_epoch + 1)
            start_pos, loss_acc = 0, [0.0, 0.0]
        if dinfo.is_main:
            log.info("resumed from %s: epoch %d, position %d, step %d", out_dir / LAST, start_epoch, start_pos, step)

    model: nn.Module = net
    if tcfg.compile:
        model = torch.compile(model)
    if dinfo.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    ckpointer = Checkpointer(out_dir, tcfg.checkpoint_every_steps, dinfo.is_main)
    n_mask = mcfg.output_frames - 1
    pin = device.type == "cuda"
    bar = None
    if dinfo.is_main and tcfg.progress == "bar":
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=min(step, total_steps), unit="step", dynamic_ncols=True,
                   desc=f"train {mcfg.name}")
    if dinfo.is_main:
        log.info("training %s: %d train / %d val sequences, %d process(es), batch %d/process = %d global, lr %.3g, "
                 "%d steps/epoch, %d steps, amp %s, device %s", mcfg.name, n_train, len(val_ds), dinfo.world_size,
                 per_rank_batch, global_batch, lr, steps_per_epoch, total_steps, amp_dtype, device)
        tracker.log_params({"run.world_size": dinfo.world_size, "run.global_batch": global_batch,
                            "run.per_process_batch": per_rank_batch, "run.lr_scaled": lr,
                            "run.steps_per_epoch": steps_per_epoch, "run.total_steps": total_steps})

    def payload(epoch: int, position: int, last_metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_config": _model_dict(mcfg),
            "config": cfg.to_dict(),
            "model": unwrap_model(model).state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict() if use_scaler else None,
            "epoch": epoch,
            "step": step,
            "rng": capture_rng_state(),
            "metrics": dict(last_metrics),
            "train_state": {
                "position": position,
                "best_val": best_val,
                "bad_validations": bad_vals,
                "history": list(history),
                "loss_acc": list(loss_acc),
                "stopped_early": stopped_early,
                "world_size": dinfo.world_size,
                "global_batch": global_batch,
            },
        }

    local_loss = torch.zeros(2, dtype=torch.float64, device=device)  # this rank's loss sum / count since last sync
    last_log_t, last_log_seq = time.perf_counter(), 0
    seq_done = 0
    train_time = 0.0
    last_metrics: dict[str, Any] = dict(ckpt.get("metrics", {})) if ckpt else {}
    t_start = time.perf_counter()
    finished = stopped_early or (tcfg.max_steps and step >= tcfg.max_steps) or start_epoch >= tcfg.epochs

    def sync_loss() -> None:
        s, c = _all_reduce_sum(local_loss.tolist(), dinfo)
        loss_acc[0] += s
        loss_acc[1] += c
        local_loss.zero_()

    epoch = start_epoch
    while not finished and epoch < tcfg.epochs:
        batches = epoch_batches(n_train, per_rank_batch, epoch, dinfo, tcfg.seed)
        pos0 = start_pos if epoch == start_epoch else 0
        if pos0 == 0:
            loss_acc = [0.0, 0.0]
        model.train()
        t_epoch = time.perf_counter()
        epoch_seq = 0
        hit_max = False
        pos = pos0 - 1
        for pos, frames in enumerate(_loader(train_ds, batches[pos0:], tcfg.num_workers, pin), start=pos0):
            frames = frames.to(device, non_blocking=pin)                        # (b, T, C, H, W)
            frames = frames[:, :t_total]
            b = frames.shape[0]
            prob = tcfg.teacher_forcing_prob(step)
            mask = None
            if tcfg.scheduled_sampling and n_mask > 0:
                full = sampling_mask(b * dinfo.world_size, n_mask, prob, step, tcfg.seed)
                mask = full[dinfo.rank :: dinfo.world_size][:b].to(device)     # this rank's rows (b, n_mask)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = model(frames, mask=mask)                                 # (b, T-1, C, H, W)
            loss = sequence_loss(pred, frames[:, 1:], tcfg.loss)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tcfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if sched is not None:
                sched.step()
            step += 1
            local_loss[0] += loss.detach().double() * b
            local_loss[1] += b
            seq_done += b * dinfo.world_size
            epoch_seq += b * dinfo.world_size
            log_due = step % tcfg.log_every_steps == 0 or step % cfg.tracking.log_every_steps == 0
            if log_due or ckpointer.due(step):
                before = list(loss_acc)
                sync_loss()
                if log_due:
                    now = time.perf_counter()
                    rate = (seq_done - last_log_seq) / max(now - last_log_t, 1e-9)
                    last_log_t, last_log_seq = now, seq_done
                    recent = (loss_acc[0] - before[0]) / max(loss_acc[1] - before[1], 1)
                    if bar is not None:
                        bar.set_postfix(loss=f"{recent:.4g}", lr=f"{_lr_now(opt):.2e}", seq_s=f"{rate:.1f}")
                    elif dinfo.is_main and step % tcfg.log_every_steps == 0:
                        log.info("step %d/%d epoch %d loss %.5g lr %.3g %.1f seq/s", step, total_steps, epoch,
                                 recent, _lr_now(opt), rate)
                    if step % cfg.tracking.log_every_steps == 0:
                        tracker.log_metrics({"train/loss": recent, "train/lr": _lr_now(opt),
                                             "train/tf_prob": prob, "train/seq_per_s": rate}, step=step)
            if bar is not None:
                bar.update(1)
            if ckpointer.due(step) and pos + 1 < len(batches):
                ckpointer.save_last(payload(epoch, pos + 1, last_metrics))
            _fault_hook(step, dinfo.rank)
            if tcfg.max_steps and step >= tcfg.max_steps:
                hit_max = pos + 1 < len(batches)
                break
        sync_loss()
        epoch_time = time.perf_counter() - t_epoch
        train_time += epoch_time
        epoch_done = not hit_max
        train_loss = loss_acc[0] / max(loss_acc[1], 1)
        last_epoch = epoch + 1 >= tcfg.epochs or (tcfg.max_steps and step >= tcfg.max_steps)
        row: dict[str, Any] = {"epoch": epoch + 1 if epoch_done else epoch + (pos + 1) / len(batches),
                               "step": step, "train_loss": train_loss, "lr": _lr_now(opt),
                               "tf_prob": tcfg.teacher_forcing_prob(step),
                               "seq_per_s": epoch_seq / max(epoch_time, 1e-9),
                               "time_s": time.perf_counter() - t_start}
        tracker.log_metrics({"epoch/train_loss": train_loss, "epoch/seq_per_s": row["seq_per_s"]}, step=step)
        improved = False
        if (epoch + 1) % tcfg.val_every == 0 or last_epoch:
            val = evaluate_split(model, val_ds, mcfg, dinfo, per_rank_batch, amp_dtype, tcfg.val_batches)
            row.update({"val_mse": val["mse"], "val_mae": val["mae"], "val_mse_frame": val["mse_frame"]})
            tracker.log_metrics({f"val/{k}": v for k, v in val.items()}, step=step)
            if val["mse"] < best_val:
                best_val, bad_vals, improved = val["mse"], 0, True
            else:
                bad_vals += 1
            if tcfg.early_stopping_patience and bad_vals >= tcfg.early_stopping_patience:
                stopped_early = True
                if dinfo.is_main:
                    log.info("early stopping after epoch %d: no val MSE improvement in %d validations", epoch + 1,
                             bad_vals)
        history.append(row)
        last_metrics = {k: v for k, v in row.items() if v is not None}
        if dinfo.is_main:
            _write_history(out_dir / "history.csv", history)
        next_epoch, next_pos = (epoch + 1, 0) if epoch_done else (epoch, pos + 1)
        if improved:
            ckpointer.save_best(payload(next_epoch, next_pos, last_metrics))
        ckpointer.save_last(payload(next_epoch, next_pos, last_metrics))
        if not epoch_done or stopped_early or last_epoch:
            break
        epoch += 1
    if bar is not None:
        bar.close()

    # ---- final outputs
    diff = replica_max_abs_diff(model, dinfo)
    if diff > 0:
        log.warning("DDP replicas differ by up to %.3g after training", diff)
    if dinfo.is_main and not (out_dir / BEST).is_file():
        # resumed a finished run, or no validation improved (NaN): keep the last weights as best
        ckpointer.save_best(payload(epoch, 0, last_metrics))
    metrics = {
        "model": mcfg.name,
        "steps": step,
        "epochs": float(history[-1]["epoch"]) if history else 0.0,
        "train_loss": float(history[-1]["train_loss"]) if history else None,
        "best_val_mse": best_val if math.isfinite(best_val) else None,
        "val_mse": _last(history, "val_mse"),
        "val_mae": _last(history, "val_mae"),
        "val_mse_frame": _last(history, "val_mse_frame"),
        "stopped_early": stopped_early,
        "world_size": dinfo.world_size,
        "global_batch": global_batch,
        "lr": lr,
        "seq_per_s": (seq_done / train_time) if train_time > 0 else None,
        "train_time_s": train_time,
        "replica_max_abs_diff": diff,
    }
    if dinfo.is_main:
        write_json(out_dir / "metrics.json", metrics)
        tracker.log_metrics({"final/best_val_mse": metrics["best_val_mse"] or float("nan"),
                             "final/steps": float(step)}, step=step)
        tracker.set_tags({"mslstm.model": mcfg.name, "mslstm.world_size": str(dinfo.world_size)})
        _log_outputs(cfg, out_dir, val_ds, tracker)
    if dinfo.distributed:
        dist.barrier()
    return metrics


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    for row in reversed(history):
        if row.get(key) is not None:
            return float(row[key])
    return None


def _model_dict(mcfg: Any) -> dict[str, Any]:
    from mslstm.config import to_dict

    return to_dict(mcfg)


@torch.no_grad()
def evaluate_split(model: nn.Module, ds: Any, mcfg: Any, dinfo: DistInfo, batch: int, amp_dtype: Any,
                   max_batches: int = 0) -> dict[str, float]:
    """Pure-rollout metrics on the future frames, summed over all ranks' shards (exact global means).

    ``mse``/``mae``: per-pixel means; ``mse_frame``: per-frame sum over pixels (the paper's MSE), mean over frames.
    """
    was_training = model.training
    model.eval()
    net = unwrap_model(model)
    n = len(ds)
    idx = list(range(dinfo.rank, n, dinfo.world_size))
    batches = [idx[i : i + batch] for i in range(0, len(idx), batch)]
    if max_batches:
        batches = batches[:max_batches]
    t_total = mcfg.input_frames + mcfg.output_frames
    sq = ab = 0.0
    pixels = frames_n = 0.0
    for b in batches:
        frames = ds.get_batch(b)[:, :t_total].to(dinfo.device)
        with torch.autocast(dinfo.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = net(frames, mask=None)[:, mcfg.input_frames - 1 :]
        diff = pred.float() - frames[:, mcfg.input_frames :].float()
        sq += float(diff.pow(2).sum())
        ab += float(diff.abs().sum())
        pixels += diff.numel()
        frames_n += diff.shape[0] * diff.shape[1]
    sq, ab, pixels, frames_n = _all_reduce_sum([sq, ab, pixels, frames_n], dinfo)
    if was_training:
        model.train()
    return {"mse": sq / max(pixels, 1), "mae": ab / max(pixels, 1), "mse_frame": sq / max(frames_n, 1)}


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HISTORY_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
    write_text(path, buf.getvalue())


def _log_outputs(cfg: Any, out_dir: Path, val_ds: Any, tracker: Any) -> None:
    """Rank 0: upload metrics/history/checkpoint and log the best model (signature + input example)."""
    if not tracker.enabled:
        return
    from mslstm.training.checkpoint import load_model

    for name in ("metrics.json", "history.csv"):
        if (out_dir / name).is_file():
            tracker.log_artifact(out_dir / name)
    if cfg.tracking.log_checkpoint and (out_dir / BEST).is_file():
        tracker.log_artifact(out_dir / BEST, "checkpoints")
    if cfg.tracking.log_model and (out_dir / BEST).is_file():
        net, payload = load_model(out_dir / BEST)
        mcfg = cfg.model
        n = min(len(val_ds), 2)
        example = val_ds.get_batch(list(range(n)))[:, : mcfg.input_frames + mcfg.output_frames].numpy()
        if example.shape[0] < 2:
            example = np.concatenate([example, example], axis=0)
        uri = tracker.log_model(net, example, name="model", serialization_format=cfg.tracking.model_format,
                                metadata={"model_config": payload["model_config"]})
        log.info("model logged to MLflow: %s", uri)
        write_json(out_dir / "model_uri.json", {"model_uri": uri, "run_id": tracker.run_id})
    tracker.flush()
