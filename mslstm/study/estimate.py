"""How long a study will take, before running it (``mslstm study --dry-run``).

Each model's training step is timed by the profile step's own measurement (``mslstm.evaluation.profile.measure``)
at the training batch size, a few steps after one warm-up; then per cell:

- steps budget: ``steps x step time``; seconds budget: ``seconds`` (plus, when no steps run of the model times the
  plan, the ``calibration_steps`` timing run once per model);
- validation after each epoch and the evaluation: ``sequences x predict time per sequence``;
- the profile: once per model, ~``(warmup + repeats) x step time`` plus the FLOP counts (a fixed few seconds);

plus :data:`OVERHEAD_S` per cell (process start-up, MLflow, writing checkpoints and pictures). The real loop adds
data reading and scheduled sampling to the profile's step, and a shared machine runs slower: take the figure as a
planning guide (docs/results.md compares it with the measured wall time), not a promise.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

OVERHEAD_S = 6.0          # per cell: MLflow runs, checkpoints, pictures (measured ~4-8 s on 2 cores)
PROFILE_FIXED_S = 4.0     # per model: FLOP counting and memory profiling besides the timed steps


def measure_step_times(cfg: Any, models: Sequence[str]) -> dict[str, dict[str, float]]:
    """Model -> ``{"step_time_s", "predict_time_s"}`` at the training batch size (the profile's measurement,
    1 warm-up + 2 timed steps)."""
    from mslstm.evaluation.profile import measure

    out = {}
    for m in models:
        c = cfg.replace({"model.name": m, "profile.batch_size": cfg.train.batch_size, "profile.warmup": 1,
                         "profile.repeats": 2})
        r = measure(c)
        out[m] = {"step_time_s": float(r["step_time_s"]), "predict_time_s": float(r["predict_time_s"])}
        log.info("estimate: %s %.3f s/step at batch %d", m, out[m]["step_time_s"], cfg.train.batch_size)
    return out


def estimate_seconds(cfg: Any, cells: Sequence[Mapping[str, Any]], times: Mapping[str, Mapping[str, float]],
                     n_train: Optional[int] = None, n_val: Optional[int] = None,
                     n_test: Optional[int] = None) -> dict[str, Any]:
    """Estimated seconds per cell and in total (see the module doc); ``n_*``: split sizes (None: the caps of the
    config, else 0). Pure arithmetic: tested alone."""
    from mslstm.study.budget import cell_config

    a = cfg.ablation
    per_cell = []
    profiled: set[str] = set()
    timed: set[str] = {c["model"] for c in cells if c["budget"] == "steps"}
    calibrated: set[str] = set()
    for c in cells:
        t = times[c["model"]]
        step, pred = t["step_time_s"], t["predict_time_s"]
        if c["budget"] == "steps":
            steps = int(a.steps or cfg.train.max_steps)
            train_s = steps * step
        else:
            steps = max(1, int(a.seconds // step))
            train_s = float(a.seconds)
            if c["model"] not in timed and c["model"] not in calibrated:
                train_s += a.calibration_steps * step + OVERHEAD_S
                calibrated.add(c["model"])
        ccfg = cell_config(cfg, c["model"], c["seed"], c["budget"], steps if c["budget"] == "seconds" else None)
        batch = ccfg.train.batch_size
        validations = math.ceil(steps / max(1, math.ceil(n_train / batch))) if n_train else 1
        val_seq = n_val or 0
        if ccfg.train.val_batches:
            val_seq = min(val_seq, ccfg.train.val_batches * batch)
        val_s = validations * val_seq * pred
        test_seq = n_test or 0
        if ccfg.evaluate.max_sequences:
            test_seq = min(test_seq, ccfg.evaluate.max_sequences) if n_test else ccfg.evaluate.max_sequences
        eval_s = test_seq * pred
        prof_s = 0.0
        if c["model"] not in profiled:
            pcfg = cfg.profile
            prof_s = (pcfg.warmup + pcfg.repeats) * step * pcfg.batch_size / cfg.train.batch_size + PROFILE_FIXED_S
            profiled.add(c["model"])
        total = train_s + val_s + eval_s + prof_s + OVERHEAD_S
        per_cell.append({**c, "train_s": train_s, "steps": steps, "other_s": total - train_s, "total_s": total})
    return {"cells": per_cell, "total_s": sum(c["total_s"] for c in per_cell)}


def split_sizes(data_dir: str | os.PathLike) -> tuple[Optional[int], Optional[int], Optional[int]]:
    """(train, val, test) sequences of the processed data set (None where unreadable)."""
    from mslstm.data.dataset import VideoDataset
    from mslstm.errors import MSLSTMError

    out = []
    for split in ("train", "val", "test"):
        try:
            out.append(len(VideoDataset(data_dir, split)))
        except (MSLSTMError, OSError, ValueError):
            out.append(None)
    return out[0], out[1], out[2]
