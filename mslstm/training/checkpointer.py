"""The training state and the checkpointer that saves and restores it.

:class:`TrainState` is everything that changes while training and goes into a checkpoint: the network, optimizer,
scheduler and GradScaler, the step, the epoch and the position inside it, the early-stopping state, the history and
the epoch's loss sums (the RNG states are captured when a checkpoint is written). :class:`Checkpointer` turns it into
the payload of :mod:`mslstm.training.checkpoint` and back, and decides when to write; the loop only calls it:

    ckpt = Checkpointer(out_dir, every_steps=cfg.train.checkpoint_every_steps, enabled=is_main, header=...)
    payload = ckpt.load_last(cfg.model)           # before anything else: a bad last.pt stops here, nothing written
    ckpt.restore(state, payload, global_batch)    # after the objects are built (resume)
    ckpt.after_step(state, batches_in_epoch)      # every step: last.pt every N steps (mid-epoch)
    ckpt.end_epoch(state, improved)               # best.pt on a new best validation, then last.pt
    ckpt.finish(state)                            # best.pt from the last state when no validation improved

Only the main rank writes (``enabled``). Positions: ``state.epoch`` is the epoch to run (0-based) and
``state.position`` the number of its batches already done, so a payload always says where to continue.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mslstm.errors import CheckpointError
from mslstm.training.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    check_weights,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

log = logging.getLogger(__name__)

BEST, LAST = "best.pt", "last.pt"


@dataclasses.dataclass
class TrainState:
    """What a checkpoint restores. ``model`` is the unwrapped network (no DDP / compile wrapper)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None
    step: int = 0
    epoch: int = 0
    position: int = 0
    best_val: float = math.inf
    bad_validations: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    loss_acc: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])  # epoch loss sum / sequences
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # the latest epoch's row

    def record_validation(self, val_mse: float, patience: int) -> bool:
        """Update the early-stopping state with a validation MSE; True when it is a new best."""
        if val_mse < self.best_val:
            self.best_val, self.bad_validations = val_mse, 0
            return True
        self.bad_validations += 1
        if patience and self.bad_validations >= patience:
            self.stopped_early = True
        return False


class Checkpointer:
    """Saves and restores a :class:`TrainState` under ``out_dir`` (``last.pt``, ``best.pt``).

    Args:
        out_dir: the training output folder.
        every_steps: also write ``last.pt`` every N steps inside an epoch (0 = at epoch ends only).
        enabled: write at all (the main rank).
        header: the payload's fixed part: ``model_config``, ``config`` (dicts); ``world_size``/``global_batch``
            go into ``train_state``.
    """

    def __init__(self, out_dir: str | Path, every_steps: int = 0, enabled: bool = True,
                 header: Mapping[str, Any] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.every_steps = every_steps
        self.enabled = enabled
        self.header = dict(header or {})
        self.last_path = self.out_dir / LAST
        self.best_path = self.out_dir / BEST

    # ---------------------------------------------------------------------------------------------- reading
    def load_last(self, expected_model_config: Any = None) -> dict[str, Any] | None:
        """The payload of ``last.pt`` to resume from (None, with a warning, when there is none)."""
        if not self.last_path.is_file():
            log.warning("%s: no checkpoint to resume from; starting a new training", self.last_path)
            return None
        return load_checkpoint(self.last_path, expected_model_config=expected_model_config)

    def check_fits(self, payload: Mapping[str, Any], model: nn.Module) -> None:
        """Raise CheckpointError (naming keys and shapes) when the payload's weights do not fit ``model``; called
        before anything is written or an MLflow run is touched."""
        check_weights(self.last_path, payload["model"], model)

    def restore(self, state: TrainState, payload: Mapping[str, Any], global_batch: int, is_main: bool = True
                ) -> None:
        """Load a payload into ``state`` (weights, optimizer, scheduler, scaler, RNG, position, history)."""
        state.model.load_state_dict(payload["model"])
        try:
            state.optimizer.load_state_dict(payload["optimizer"])
            if state.scheduler is not None and payload.get("scheduler"):
                planned = getattr(state.scheduler, "total_steps", None)  # OneCycleLR: this run's plan
                state.scheduler.load_state_dict(payload["scheduler"])
                if planned is not None and state.scheduler.total_steps != planned:
                    # a resume with more (or fewer) steps: the one-cycle curve follows the new plan from here
                    log.info("lr schedule: %d planned steps now (the checkpoint planned %d)", planned - 1,
                             state.scheduler.total_steps - 1)
                    state.scheduler.total_steps = planned
            if state.scaler is not None and payload.get("scaler"):
                state.scaler.load_state_dict(payload["scaler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"{self.last_path}: optimizer/scheduler state does not fit this config ({exc})") from exc
        ts = payload.get("train_state") or {}
        state.step = int(payload.get("step", 0))
        state.epoch = int(payload.get("epoch", 0))
        state.position = int(ts.get("position", 0))
        state.best_val = float(ts.get("best_val", math.inf))
        state.bad_validations = int(ts.get("bad_validations", 0))
        state.history = list(ts.get("history", []))
        state.loss_acc = [float(v) for v in ts.get("loss_acc", [0.0, 0.0])]
        state.stopped_early = bool(ts.get("stopped_early", False))
        state.metrics = dict(payload.get("metrics") or {})
        restore_rng_state(payload.get("rng"))
        old_batch = ts.get("global_batch", global_batch)
        if old_batch != global_batch and state.position:
            # positions count batches of the old size: restart the interrupted epoch instead of guessing
            if is_main:
                log.warning("global batch changed from %s to %d since the checkpoint: epoch %d restarts from its "
                            "beginning (the result will differ from an uninterrupted run)", old_batch, global_batch,
                            state.epoch + 1)
            state.position, state.loss_acc = 0, [0.0, 0.0]
        if is_main:
            log.info("resumed from %s: epoch %d, position %d, step %d", self.last_path, state.epoch, state.position,
                     state.step)

    # ---------------------------------------------------------------------------------------------- writing
    def payload(self, state: TrainState) -> dict[str, Any]:
        """The checkpoint dict of ``state`` (see :mod:`mslstm.training.checkpoint`)."""
        return {
            "format_version": FORMAT_VERSION,
            "model_config": self.header.get("model_config"),
            "config": self.header.get("config"),
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
            "scaler": state.scaler.state_dict() if state.scaler is not None and state.scaler.is_enabled() else None,
            "epoch": state.epoch,
            "step": state.step,
            "rng": capture_rng_state(),
            "metrics": dict(state.metrics),
            "train_state": {
                "position": state.position,
                "best_val": state.best_val,
                "bad_validations": state.bad_validations,
                "history": list(state.history),
                "loss_acc": list(state.loss_acc),
                "stopped_early": state.stopped_early,
                "world_size": self.header.get("world_size", 1),
                "global_batch": self.header.get("global_batch"),
            },
        }

    def due(self, step: int) -> bool:
        """A mid-epoch ``last.pt`` is due after ``step`` (the loop syncs its loss sums first)."""
        return self.every_steps > 0 and step % self.every_steps == 0

    def after_step(self, state: TrainState, batches_in_epoch: int) -> None:
        """Write ``last.pt`` when due, unless the epoch just ended (:meth:`end_epoch` writes it then)."""
        if self.due(state.step) and state.position < batches_in_epoch:
            self._save(self.last_path, state)

    def end_epoch(self, state: TrainState, improved: bool) -> None:
        """``best.pt`` on a new best validation, then ``last.pt``."""
        if improved:
            self._save(self.best_path, state)
        self._save(self.last_path, state)

    def finish(self, state: TrainState) -> None:
        """Keep the last weights as ``best.pt`` when none was written (no validation improved, e.g. NaN, or a
        finished run resumed)."""
        if self.enabled and not self.best_path.is_file():
            self._save(self.best_path, state)

    def _save(self, path: Path, state: TrainState) -> None:
        if self.enabled:
            save_checkpoint(path, self.payload(state))
