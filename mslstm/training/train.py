"""The train step: one code path for 1 process, ``torchrun`` on one node and several nodes.

``train(cfg, data_dir, out_dir, resume=False) -> dict`` trains ``cfg.model`` on ``data_dir`` (the processed dataset)
and writes ``out_dir/{best.pt,last.pt,metrics.json,history.csv,run.json}`` (rank 0 only).

The pieces live beside this loop: distribution and data sharding in :mod:`~mslstm.training.distributed`, the
training method (loss, scheduled sampling, AMP, optimizer, LR schedule) in :mod:`~mslstm.training.recipe`, the state
and when it is saved in :mod:`~mslstm.training.checkpointer`, SIGTERM and fault injection in
:mod:`~mslstm.training.hooks`, validation in :mod:`~mslstm.training.validation`, history/metrics/model logging in
:mod:`~mslstm.training.outputs`, MLflow in :mod:`mslstm.tracking`.

N processes with per-process batch b see exactly the sequences one process with batch N*b sees, and the
scheduled-sampling masks are drawn for the global batch from a generator seeded by the step, so the two are the same
computation up to float summation order. ``--resume`` (or a torchrun restart) continues from ``last.pt`` and ends
where an uninterrupted run ends.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mslstm.errors import ConfigError
from mslstm.io import ensure_writable_dir
from mslstm.training.checkpointer import Checkpointer, TrainState
from mslstm.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    batch_loader,
    collective_error,
    epoch_batches,
    replica_max_abs_diff,
    restart_count,
    setup_distributed,
    teardown_distributed,
    wrap_model,
)
from mslstm.training.hooks import fault_hook, sigterm_as_exception
from mslstm.training.outputs import final_metrics, log_outputs, machine_facts, write_history, write_metrics
from mslstm.training.recipe import (
    build_optimizer,
    build_recipe,
    build_scheduler,
    current_lr,
    optimizer_step,
)
from mslstm.training.validation import evaluate_split

log = logging.getLogger(__name__)


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
    from mslstm.data.dataset import check_dataset_matches, read_meta
    from mslstm.devices import apply_thread_default
    from mslstm.tracking import start_run

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    apply_thread_default()  # the cores this process may use, not the machine's
    dinfo = setup_distributed(cfg.train.device, cfg.train.collective_timeout)
    det_before = torch.are_deterministic_algorithms_enabled()
    det_warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        check_dataset_matches(cfg.model, read_meta(data_dir), data_dir, ("train", "val"), error=ConfigError)
        ckpointer = Checkpointer(out_dir, cfg.train.checkpoint_every_steps, dinfo.is_main)
        # a bad last.pt stops here: nothing is written and no MLflow run is opened
        resuming = resume or restart_count() > 0
        payload = ckpointer.load_last(cfg.model) if resuming else None
        if payload is not None:  # weights that do not fit (same config, changed code) stop here too
            from model import build_model

            ckpointer.check_fits(payload, build_model(cfg.model))
        if dinfo.is_main:  # a read-only or full output folder: one error line before any work
            ensure_writable_dir(out_dir)
        with sigterm_as_exception(dinfo.is_main), start_run(cfg, out_dir, data_dir=data_dir, enabled=dinfo.is_main,
                                                             resume=resuming) as tracker:
            trainer = Trainer(cfg, data_dir, out_dir, dinfo, ckpointer, tracker)
            if payload is not None:
                ckpointer.restore(trainer.state, payload, trainer.global_batch, dinfo.is_main)
            try:
                return trainer.fit()
            except RuntimeError as exc:  # a hung / stopped / dead rank: one line naming it (the run ends FAILED)
                err = collective_error(exc, dinfo)
                if err is None:
                    raise
                raise err from exc
    finally:
        torch.use_deterministic_algorithms(det_before, warn_only=det_warn_before)
        teardown_distributed(dinfo)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed python/numpy/torch; deterministic algorithms (bit-reproducible on CPU) or cuDNN autotuning."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def plan_steps(tcfg: Any, n_train: int, dinfo: DistInfo) -> tuple[int, int, int, int]:
    """``(per-process batch, global batch, steps per epoch, total steps)`` of a run over ``n_train`` training
    sequences on ``dinfo.world_size`` processes (``train.max_steps`` caps the total)."""
    try:
        batch, global_batch = tcfg.effective_batch(dinfo.world_size)
    except ValueError as exc:
        raise ConfigError(f"train.{exc}") from exc
    steps_per_epoch = len(epoch_batches(n_train, batch, 0, dinfo, tcfg.seed))
    total = tcfg.epochs * steps_per_epoch
    return batch, global_batch, steps_per_epoch, min(total, tcfg.max_steps) if tcfg.max_steps else total


class Trainer:
    """One training run: built from the config (:meth:`__init__`), run by :meth:`fit` epoch by epoch."""

    def __init__(self, cfg: Any, data_dir: Path, out_dir: Path, dinfo: DistInfo, ckpointer: Checkpointer,
                 tracker: Any) -> None:
        from model import build_model, get_spec

        from mslstm.config import to_dict
        from mslstm.data.dataset import VideoDataset

        self.cfg, self.out_dir, self.dinfo, self.ckpointer, self.tracker = cfg, out_dir, dinfo, ckpointer, tracker
        tcfg, mcfg = self.tcfg, self.mcfg = cfg.train, cfg.model
        device = self.device = dinfo.device
        seed_everything(tcfg.seed, tcfg.deterministic, device)
        self.train_ds, self.val_ds = VideoDataset(data_dir, "train"), VideoDataset(data_dir, "val")
        self.t_total = mcfg.input_frames + mcfg.output_frames
        self.batch, self.global_batch, self.steps_per_epoch, self.total_steps = plan_steps(
            tcfg, len(self.train_ds), dinfo)
        self.lr = tcfg.scaled_lr(self.global_batch)
        net = build_model(dataclasses.replace(mcfg, channels_last=True) if tcfg.channels_last else mcfg).to(device)
        opt = build_optimizer(net.parameters(), tcfg, self.lr)
        self.recipe = build_recipe(tcfg, device, get_spec(mcfg.name).recipe, self.total_steps)  # model's needs
        self.state = TrainState(net, opt, build_scheduler(opt, tcfg, self.lr, self.total_steps),
                                self.recipe.grad_scaler(device))
        ckpointer.header = {"model_config": to_dict(mcfg), "config": cfg.to_dict(), "world_size": dinfo.world_size,
                            "global_batch": self.global_batch}
        self.model: Any = None  # wrapped (compile / DDP) in fit(), after a resume restored the weights
        self.bar: Any = None    # tqdm progress bar (rank 0, train.progress: bar)
        self.local_loss = torch.zeros(2, dtype=torch.float64, device=device)  # this rank's loss sum / count
        self.seq_done, self.train_time, self.t_start = 0, 0.0, time.perf_counter()
        self.last_log_t, self.last_log_seq = self.t_start, 0

    # ------------------------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train until the last epoch, ``train.max_steps``, ``train.max_seconds`` or early stopping; write the final
        outputs."""
        st, tcfg, dinfo = self.state, self.tcfg, self.dinfo
        self.model = wrap_model(st.model, dinfo, tcfg.compile)
        self._log_start()
        self.bar = self._progress_bar()
        finished = st.stopped_early or (tcfg.max_steps and st.step >= tcfg.max_steps) or st.epoch >= tcfg.epochs
        while not finished:
            epoch_done, seconds, seqs, batches = self.train_epoch()
            last_epoch = (st.epoch + 1 >= tcfg.epochs or bool(tcfg.max_steps and st.step >= tcfg.max_steps)
                          or self.out_of_time(seconds))
            self.end_epoch(epoch_done, last_epoch, seconds, seqs, batches)
            finished = not epoch_done or st.stopped_early or last_epoch
        if self.bar is not None:
            self.bar.close()
        return self.finish()

    def train_epoch(self) -> tuple[bool, float, int, int]:
        """Run ``state.epoch`` from ``state.position``; returns (epoch completed, seconds, sequences, batches)."""
        st, tcfg, dinfo, recipe = self.state, self.tcfg, self.dinfo, self.recipe
        batches = epoch_batches(len(self.train_ds), self.batch, st.epoch, dinfo, tcfg.seed)
        if st.position == 0:
            st.loss_acc = [0.0, 0.0]
        self.model.train()
        t0, seqs = time.perf_counter(), 0
        pin = self.device.type == "cuda"
        for frames in batch_loader(self.train_ds, batches[st.position:], tcfg.num_workers, pin):
            frames = frames.to(self.device, non_blocking=pin)[:, : self.t_total]         # (b, T, C, H, W)
            b = frames.shape[0]
            prob = recipe.teacher_forcing_prob(st.step)
            mask = recipe.mask(b, st.step, self.mcfg.input_frames, self.t_total, self.device, dinfo.rank,
                               dinfo.world_size)                                        # (b, n) or None
            with recipe.autocast(self.device):
                out = self.model(frames, mask=mask, return_aux=True)    # ((b, T-1, C, H, W), {aux name: loss})
            loss, _ = recipe.loss(out, frames[:, 1:])
            optimizer_step(loss, st.optimizer, st.scaler, self.model.parameters(), recipe.grad_clip, st.scheduler)
            st.step += 1
            st.position += 1
            self.local_loss[0] += loss.detach().double() * b
            self.local_loss[1] += b
            self.seq_done += b * dinfo.world_size
            seqs += b * dinfo.world_size
            self._after_step(prob)
            self.ckpointer.after_step(st, len(batches))
            fault_hook(st.step, dinfo.rank)
            if (tcfg.max_steps and st.step >= tcfg.max_steps) or self.out_of_time(time.perf_counter() - t0):
                break
        self._sync_loss()
        return st.position >= len(batches), time.perf_counter() - t0, seqs, len(batches)

    def out_of_time(self, running: float = 0.0) -> bool:
        """``train.max_seconds`` reached: loop seconds of the finished epochs plus ``running`` of this one."""
        return bool(self.tcfg.max_seconds) and self.train_time + running >= self.tcfg.max_seconds

    def end_epoch(self, epoch_done: bool, last_epoch: bool, seconds: float, seqs: int, batches: int) -> None:
        """History row, validation, early stopping, checkpoints; then advance to the next epoch."""
        st, tcfg = self.state, self.tcfg
        self.train_time += seconds
        train_loss = st.loss_acc[0] / max(st.loss_acc[1], 1)
        row: dict[str, Any] = {"epoch": st.epoch + 1 if epoch_done else st.epoch + st.position / batches,
                               "step": st.step, "train_loss": train_loss, "lr": current_lr(st.optimizer),
                               "tf_prob": self.recipe.teacher_forcing_prob(st.step),
                               "seq_per_s": seqs / max(seconds, 1e-9), "time_s": time.perf_counter() - self.t_start}
        self.tracker.log_metrics({"epoch/train_loss": train_loss, "epoch/seq_per_s": row["seq_per_s"]}, step=st.step)
        improved = False
        if (st.epoch + 1) % tcfg.val_every == 0 or last_epoch:
            val = evaluate_split(self.model, self.val_ds, self.mcfg, self.dinfo, self.batch, self.recipe.amp_dtype,
                                 tcfg.val_batches)
            row.update({"val_mse": val["mse"], "val_mae": val["mae"], "val_mse_frame": val["mse_frame"]})
            self.tracker.log_metrics({f"val/{k}": v for k, v in val.items()}, step=st.step)
            improved = st.record_validation(val["mse"], tcfg.early_stopping_patience)
            if st.stopped_early and self.dinfo.is_main:
                log.info("early stopping after epoch %d: no val MSE improvement in %d validations", st.epoch + 1,
                         st.bad_validations)
        st.history.append(row)
        st.metrics = {k: v for k, v in row.items() if v is not None}
        if self.dinfo.is_main:
            write_history(self.out_dir / "history.csv", st.history)
        if epoch_done:
            st.epoch, st.position = st.epoch + 1, 0
        self.ckpointer.end_epoch(st, improved)

    def finish(self) -> dict[str, Any]:
        """metrics.json, the best checkpoint when none was written, MLflow outputs; every rank returns metrics."""
        st, dinfo = self.state, self.dinfo
        diff = replica_max_abs_diff(self.model, dinfo)
        if diff > 0:
            log.warning("DDP replicas differ by up to %.3g after training", diff)
        self.ckpointer.finish(st)
        rate = (self.seq_done / self.train_time) if self.train_time > 0 else None
        metrics = final_metrics(self.mcfg.name, st, world_size=dinfo.world_size, global_batch=self.global_batch,
                                lr=self.lr, seq_per_s=rate, train_time_s=self.train_time, replica_max_abs_diff=diff,
                                device=self.device.type, **machine_facts(self.recipe.amp_dtype))
        if dinfo.is_main:
            write_metrics(self.out_dir, metrics)  # metrics.json (numbers) + train.json (all)
            self.tracker.log_metrics({"final/best_val_mse": metrics["best_val_mse"] or float("nan"),
                                      "final/steps": float(st.step)}, step=st.step)
            self.tracker.set_tags({"mslstm.model": self.mcfg.name, "mslstm.world_size": str(dinfo.world_size)})
            log_outputs(self.cfg, self.out_dir, self.val_ds, self.tracker)
        barrier(dinfo)
        return metrics

    # --------------------------------------------------------------------------------------------- bookkeeping
    def _sync_loss(self) -> None:
        """Add every rank's loss sums since the last sync to the epoch's global sums."""
        s, c = all_reduce_sum(self.local_loss.tolist(), self.dinfo)
        self.state.loss_acc[0] += s
        self.state.loss_acc[1] += c
        self.local_loss.zero_()

    def _after_step(self, prob: float) -> None:
        """Sync the loss sums when a log line or a checkpoint is due; progress bar, console and MLflow."""
        st, tcfg, step = self.state, self.tcfg, self.state.step
        log_due = step % tcfg.log_every_steps == 0 or step % self.cfg.tracking.log_every_steps == 0
        if log_due or self.ckpointer.due(step):
            before = list(st.loss_acc)
            self._sync_loss()
            if log_due:
                now = time.perf_counter()
                rate = (self.seq_done - self.last_log_seq) / max(now - self.last_log_t, 1e-9)
                self.last_log_t, self.last_log_seq = now, self.seq_done
                recent = (st.loss_acc[0] - before[0]) / max(st.loss_acc[1] - before[1], 1)
                lr = current_lr(st.optimizer)
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{recent:.4g}", lr=f"{lr:.2e}", seq_s=f"{rate:.1f}")
                elif self.dinfo.is_main and step % tcfg.log_every_steps == 0:
                    log.info("step %d/%d epoch %d loss %.5g lr %.3g %.1f seq/s", step, self.total_steps, st.epoch,
                             recent, lr, rate)
                if step % self.cfg.tracking.log_every_steps == 0:
                    self.tracker.log_metrics({"train/loss": recent, "train/lr": lr, "train/tf_prob": prob,
                                              "train/seq_per_s": rate}, step=step)
        if self.bar is not None:
            self.bar.update(1)

    def _progress_bar(self) -> Any:
        """Rank 0, ``train.progress: bar`` and a terminal: a tqdm bar; else None (a log line every N steps)."""
        from mslstm.training.progress import progress_bar

        return progress_bar(self.total_steps, f"train {self.mcfg.name}", "step",
                            initial=min(self.state.step, self.total_steps),
                            enabled=self.dinfo.is_main and self.tcfg.progress == "bar")

    def _log_start(self) -> None:
        if not self.dinfo.is_main:
            return
        d = self.dinfo
        log.info("training %s: %d train / %d val sequences, %d process(es), batch %d/process = %d global, lr %.3g, "
                 "%d steps/epoch, %d steps, amp %s, device %s", self.mcfg.name, len(self.train_ds), len(self.val_ds),
                 d.world_size, self.batch, self.global_batch, self.lr, self.steps_per_epoch, self.total_steps,
                 self.recipe.amp_dtype, self.device)
        self.tracker.log_params({"run.world_size": d.world_size, "run.global_batch": self.global_batch,
                                 "run.per_process_batch": self.batch, "run.lr_scaled": self.lr,
                                 "run.steps_per_epoch": self.steps_per_epoch, "run.total_steps": self.total_steps})
