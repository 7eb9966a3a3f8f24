"""Config section of the train step (``train:``); the ``tracking:`` section is :class:`mslstm.tracking.TrackingConfig`
(re-exported here for ``mslstm.config``).

Defaults are the small CPU embedded default; ``params.yaml`` and ``configs/paper.yaml`` tune them.
``validate()`` raises ``ValueError("key: reason and fix")``; ``mslstm.config`` turns it into a ``ConfigError``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from mslstm.tracking import TrackingConfig  # noqa: F401 - the tracking section, owned by mslstm.tracking


@dataclass
class TrainConfig:
    """Hyper-parameters of training.

    Attributes:
        epochs: passes over the training split.
        batch_size: sequences per process per step (the per-GPU / per-worker batch).
        global_batch_size: when set, the effective batch over all processes; each process then takes
            ``global_batch_size / world_size`` (must divide evenly) and ``batch_size`` is ignored.
        lr: learning rate at ``base_batch`` sequences per step (the authors' 3e-4 at batch 16).
        base_batch: the effective batch at which ``lr`` holds.
        lr_scaling: how lr follows the effective batch B: ``none`` (lr as given), ``linear`` (lr * B / base_batch),
            ``sqrt`` (lr * sqrt(B / base_batch)).
        optimizer: ``adam`` or ``adamw``.
        weight_decay: L2 (adam) / decoupled (adamw) weight decay.
        schedule: learning-rate schedule over all steps: ``none``, ``cosine`` (to ``min_lr_ratio * lr``),
            ``onecycle`` (warm-up ``warmup_fraction`` of the steps then cosine down).
        min_lr_ratio: final lr of the cosine schedule, as a fraction of lr.
        warmup_fraction: share of the steps spent warming up (onecycle).
        grad_clip: max global gradient norm (0 = no clipping).
        loss: ``l1l2`` (the authors': per frame, sum over pixels of squared + absolute error; mean over frames
            and batch) or ``mse`` (mean squared error).
        scheduled_sampling: mix ground truth into the rollout with a decaying probability (training only).
        ss_start: teacher-forcing probability at step 0.
        ss_decay_steps: iterations over which the probability decays linearly to ``ss_end``.
        ss_decay_fraction: when > 0, the decay instead spans this share of the run's total optimizer steps and
            reaches ``ss_end`` at the last step for fraction 1 (the authors' schedule: 1 -> 0 over the whole run),
            whatever the epochs, data size or number of processes; 0 = use ``ss_decay_steps``.
        ss_end: final teacher-forcing probability.
        amp: mixed precision of the forward pass: ``auto`` (bf16 where the CPU or GPU has it natively:
            AVX512-BF16/AMX CPUs, Ampere+ GPUs; fp16 + GradScaler on other GPUs; fp32 on other CPUs), ``off``,
            ``bf16``, ``fp16`` (CUDA only). Evaluation metrics are always fp32.
        compile: wrap the model with ``torch.compile``.
        channels_last: channels-last memory format for the inputs (the model's own ``channels_last`` sets weights).
        val_every: validate every N epochs (and after the last one).
        val_batches: validate on at most this many batches per process (0 = the whole split).
        early_stopping_patience: stop after this many validations without val MSE improvement (0 = off).
        seed: seed of every generator (python, numpy, torch, sampler).
        deterministic: ``torch.use_deterministic_algorithms`` (CPU results reproducible bit for bit).
        num_workers: DataLoader worker processes.
        max_steps: stop after this many optimizer steps in total (0 = no limit; for smoke runs and tests).
        max_seconds: stop after the optimizer step that brings the time spent in the training loop (forward,
            backward, update, reading batches; validation not counted) to this many seconds (0 = no limit).
            The lr and sampling schedules stay planned for the step count (epochs / ``max_steps``): set
            ``max_steps`` to the steps expected in that time (``mslstm study`` calibrates it per model), so that
            the cap only cuts a run that turned out slower than planned.
        progress: ``bar`` (a tqdm bar on rank 0 when stderr is a terminal, else log lines) or ``quiet``
            (log lines only).
        log_every_steps: period in steps of the log lines and of the bar's loss / sequences-per-second postfix.
        checkpoint_every_steps: also write ``last.pt`` every N steps (0 = only at the end of each epoch).
        processes: local training processes when ``mslstm train`` starts outside ``torchrun``: 0 = auto (on a CPU
            with several cores, one process per core with one thread each under DDP: faster than one process with
            a thread per core, and much steadier beside other CPU-bound work, bench/bench_first_run.py; on a GPU
            machine 1); 1 = this process alone; N = N processes. The processes split the run's batch
            (``global_batch_size``, else ``batch_size``), so the run is the same computation whatever the count.
            The KFP train component on a CPU node follows it too; under ``torchrun`` (yours, or the TrainJob's)
            the launcher's count holds and this key is ignored.
        device: ``auto`` (CUDA when available, one GPU per local rank), ``cpu`` or ``cuda``.
        collective_timeout: seconds a distributed collective (all-reduce, barrier) may wait for the other ranks;
            after that the job ends with an error naming the rank that stopped answering (a hung or stopped worker)
            and the MLflow run is FAILED. Raise it when one step (or a validation) takes longer.
    """

    epochs: int = 6
    batch_size: int = 16
    global_batch_size: Optional[int] = None
    lr: float = 0.006
    base_batch: int = 16
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    schedule: Literal["none", "cosine", "onecycle"] = "onecycle"
    min_lr_ratio: float = 0.0
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    loss: Literal["l1l2", "mse"] = "mse"
    scheduled_sampling: bool = True
    ss_start: float = 1.0
    ss_decay_steps: int = 384
    ss_decay_fraction: float = 0.0
    ss_end: float = 0.0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    compile: bool = False
    channels_last: bool = False
    val_every: int = 1
    val_batches: int = 0
    early_stopping_patience: int = 0
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 0
    max_steps: int = 0
    max_seconds: float = 0.0
    progress: Literal["bar", "quiet"] = "bar"
    log_every_steps: int = 10
    checkpoint_every_steps: int = 0
    processes: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    collective_timeout: float = 300.0

    def validate(self) -> None:
        """Raise ``ValueError("key: reason and fix")`` on the first bad value."""
        for key in ("epochs", "batch_size", "base_batch", "val_every"):
            v = getattr(self, key)
            if v < 1:
                raise ValueError(f"{key}: must be >= 1 (got {v})")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise ValueError(f"global_batch_size: must be >= 1 or null (got {self.global_batch_size})")
        for key in ("val_batches", "early_stopping_patience", "num_workers", "max_steps", "checkpoint_every_steps",
                    "ss_decay_steps", "processes"):
            v = getattr(self, key)
            if v < 0:
                raise ValueError(f"{key}: must be >= 0 (got {v})")
        if not (math.isfinite(self.max_seconds) and self.max_seconds >= 0):
            raise ValueError(f"max_seconds: must be >= 0 seconds, 0 = no time limit (got {self.max_seconds})")
        if not (math.isfinite(self.collective_timeout) and self.collective_timeout > 0):
            raise ValueError(
                f"collective_timeout: must be a positive number of seconds (got {self.collective_timeout})")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps: must be >= 1 (got {self.log_every_steps})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be a positive number (got {self.lr}); the authors use 3e-4")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: must be >= 0 (got {self.weight_decay})")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: must be >= 0 (0 turns clipping off) (got {self.grad_clip})")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio: must be in [0, 1] (got {self.min_lr_ratio})")
        if not 0.0 < self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction: must be in (0, 1) (got {self.warmup_fraction})")
        if not 0.0 <= self.ss_decay_fraction <= 1.0:
            raise ValueError(f"ss_decay_fraction: must be in [0, 1], 0 = use ss_decay_steps "
                             f"(got {self.ss_decay_fraction})")
        for key in ("ss_start", "ss_end"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{key}: a probability, must be in [0, 1] (got {v})")

    def effective_batch(self, world_size: int) -> tuple[int, int]:
        """``(per-process batch, global batch)`` for ``world_size`` processes; ValueError when it cannot split."""
        if self.global_batch_size is None:
            return self.batch_size, self.batch_size * world_size
        if self.global_batch_size % world_size:
            raise ValueError(
                f"global_batch_size: {self.global_batch_size} does not split over {world_size} processes; "
                f"use a multiple of {world_size} or set batch_size instead"
            )
        return self.global_batch_size // world_size, self.global_batch_size

    def scaled_lr(self, global_batch: int) -> float:
        """lr for an effective batch of ``global_batch`` under ``lr_scaling``."""
        ratio = global_batch / self.base_batch
        if self.lr_scaling == "linear":
            return self.lr * ratio
        if self.lr_scaling == "sqrt":
            return self.lr * math.sqrt(ratio)
        return self.lr

    def teacher_forcing_prob(self, step: int) -> float:
        """Scheduled-sampling probability of feeding ground truth at optimizer step ``step`` (the ``linear``
        schedule of :mod:`mslstm.training.recipe` over ``ss_decay_steps``; ``ss_decay_fraction`` needs the run's
        total steps: ``build_recipe(..., total_steps=...).teacher_forcing_prob``)."""
        from mslstm.training.recipe import linear_teacher_forcing

        return linear_teacher_forcing(self, step)
