"""What training leaves behind besides checkpoints: ``history.csv``, ``metrics.json`` (numbers only: the DVC metrics),
``train.json`` (everything: model, settings, flags) and the MLflow artifacts (metrics, history, ``best.pt``, the best
model logged with a signature and an input example). Rank 0 only."""
from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from mslstm.io import write_json, write_text
from mslstm.training.checkpointer import BEST, TrainState

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "step", "train_loss", "val_mse", "val_mae", "val_mse_frame", "lr", "tf_prob",
                  "seq_per_s", "time_s")


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """``history.csv``: one row per (possibly partial) epoch, columns :data:`HISTORY_FIELDS`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(HISTORY_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in HISTORY_FIELDS})
    write_text(path, buf.getvalue())


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    for row in reversed(history):
        if row.get(key) is not None:
            return float(row[key])
    return None


def final_metrics(model_name: str, state: TrainState, **extra: Any) -> dict[str, Any]:
    """The ``metrics.json`` dict: position, losses and the latest validation of ``state`` plus ``extra``."""
    h = state.history
    return {
        "model": model_name,
        "steps": state.step,
        "epochs": float(h[-1]["epoch"]) if h else 0.0,
        "train_loss": float(h[-1]["train_loss"]) if h else None,
        "best_val_mse": state.best_val if math.isfinite(state.best_val) else None,
        "val_mse": _last(h, "val_mse"),
        "val_mae": _last(h, "val_mae"),
        "val_mse_frame": _last(h, "val_mse_frame"),
        "stopped_early": state.stopped_early,
        **extra,
    }


#: The numbers of ``metrics.json`` (what ``dvc metrics diff`` compares); the rest of the dict goes to ``train.json``.
METRIC_KEYS = ("steps", "epochs", "train_loss", "best_val_mse", "val_mse", "val_mae", "val_mse_frame", "seq_per_s",
               "train_time_s", "world_size", "global_batch", "replica_max_abs_diff", "threads_per_process",
               "cpu_native_bf16", "amp_bf16")


def machine_facts(amp_dtype: Any) -> dict[str, Any]:
    """What the throughput figures were measured on: the CPU capability ATen dispatches to (``cpu_capability``,
    e.g. AVX2 / AVX512), whether the CPU has native bf16 (``cpu_native_bf16`` 1/0), whether training ran under bf16
    autocast (``amp_bf16`` 1/0), and the intra-op threads of each process."""
    import torch

    from mslstm.training.recipe import cpu_supports_bf16

    return {"cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "cpu_native_bf16": int(cpu_supports_bf16()), "amp_bf16": int(amp_dtype == torch.bfloat16),
            "threads_per_process": torch.get_num_threads()}


def write_metrics(out_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``: the numeric :data:`METRIC_KEYS` of ``metrics`` (absent ones left out); ``train.json``: all
    of it (model name, learning rate, early stop too)."""
    numbers = {k: metrics[k] for k in METRIC_KEYS
               if isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)}
    write_json(out_dir / "metrics.json", numbers)
    write_json(out_dir / "train.json", metrics)


def log_outputs(cfg: Any, out_dir: Path, val_ds: Any, tracker: Any) -> None:
    """Rank 0: upload metrics/history/checkpoint and log the best model (signature + input example)."""
    if not tracker.enabled:
        return
    from mslstm.training.checkpoint import load_model

    for name in ("metrics.json", "train.json", "history.csv"):
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
