"""The study's cells and their budgets: which (model, seed, budget) runs, and the config each one trains with.

A cell's config differs from the study's config only in ``model.name``, ``train.seed`` and the budget keys, so that
for a given seed every model trains on the same batches in the same order (the sampler is seeded by ``train.seed``,
``mslstm.training.distributed.epoch_batches``), starts from the same global seed (``seed_everything`` before the
network is built) and draws the same scheduled-sampling masks (a generator seeded by ``(train.seed, step)``): the
paired design the statistics rely on.

Budgets (``ablation.budget``):

- ``steps``: ``ablation.steps`` optimizer steps per model (``train.max_steps``; ``train.epochs`` raised to reach
  them when the data set is known).
- ``seconds``: ``ablation.seconds`` seconds of training loop per model (``train.max_seconds``, validation not
  counted). A one-cycle lr schedule needs its step count before the first step, so the count is planned: the
  model's measured time per step (the mean over its finished equal-steps runs of this study, which ran the same
  loop; else a short timing run of ``ablation.calibration_steps`` steps, :func:`calibrate_step_time`) divided into
  the seconds (:func:`plan_steps_for_seconds`). The plan is made once per model and reused for every seed, so the
  seeds of a model differ only in their data and initialisation. ``train.max_seconds`` then stops a run that turns
  out slower than planned (its schedule unfinished: the table shows steps done against planned); a faster one ends
  at its planned steps, a little under the seconds.
- ``both``: every cell at both budgets, the steps runs first (they time the seconds plan).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

log = logging.getLogger(__name__)

BUDGETS = ("steps", "seconds")


def budgets_of(setting: str) -> list[str]:
    """``"both"`` -> ``["steps", "seconds"]``; ``"steps"`` / ``"seconds"`` -> that one."""
    if setting == "both":
        return list(BUDGETS)
    if setting not in BUDGETS:
        raise ValueError(f"budget: {setting!r}; use steps, seconds or both")
    return [setting]


def seeds_of(cfg: Any) -> list[int]:
    """The study's seeds: ``train.seed + i`` for i < ``ablation.seeds``."""
    return [int(cfg.train.seed) + i for i in range(int(cfg.ablation.seeds))]


def plan_cells(models: Sequence[str], seeds: Sequence[int], budgets: Sequence[str]) -> list[dict[str, Any]]:
    """Every (model, seed, budget) cell in run order: budget by budget (steps first: they time the seconds
    plan), seed by seed (an interrupted study holds whole seeds of every model), model by model."""
    order = sorted(budgets, key=lambda b: BUDGETS.index(b) if b in BUDGETS else len(BUDGETS))
    return [{"model": m, "seed": int(s), "budget": b} for b in order for s in seeds for m in models]


def cell_key(cell: dict[str, Any]) -> str:
    """``steps/convlstm/seed0``: the cell's folder under the study's output and its identity in MLflow."""
    return f"{cell['budget']}/{cell['model']}/seed{cell['seed']}"


def train_sequences(data_dir: Optional[str | os.PathLike]) -> Optional[int]:
    """Training sequences of the processed data set at ``data_dir`` (None when it cannot be read)."""
    if data_dir is None:
        return None
    from mslstm.data.dataset import VideoDataset
    from mslstm.errors import MSLSTMError

    try:
        return len(VideoDataset(Path(data_dir), "train"))
    except (MSLSTMError, OSError, ValueError):
        return None


def epochs_for(cfg: Any, steps: int, n_train: Optional[int]) -> int:
    """Epochs enough for ``steps`` optimizer steps on ``n_train`` sequences (1 process), at least the configured
    ``ablation.epochs`` (or ``train.epochs`` when that is 0)."""
    base = int(cfg.ablation.epochs or cfg.train.epochs)
    if not steps or not n_train:
        return base
    _, global_batch = cfg.train.effective_batch(1)
    per_epoch = max(1, math.ceil(n_train / global_batch))
    return max(base, math.ceil(steps / per_epoch))


def cell_config(cfg: Any, model: str, seed: Optional[int] = None, budget: str = "steps",
                planned_steps: Optional[int] = None, n_train: Optional[int] = None) -> Any:
    """The config one cell trains, evaluates and profiles with: ``cfg`` with the model, ``ablation.overrides``, the
    seed and the budget applied (the budget's ``train.epochs`` / ``max_steps`` / ``max_seconds`` win over the
    overrides); ``cfg`` itself is left alone.

    Args:
        cfg: the study's validated Config.
        model: registered model name.
        seed: ``train.seed`` of the cell (default: the config's).
        budget: ``steps`` or ``seconds``.
        planned_steps: the seconds budget's planned step count (required for ``seconds``).
        n_train: training sequences (raises ``train.epochs`` so that the steps fit); None keeps the epochs.
    """
    a = cfg.ablation
    over: dict[str, Any] = {"model.name": model}
    if a.eval_sequences:
        over["evaluate.max_sequences"] = a.eval_sequences
    over.update(a.overrides)
    if seed is not None:
        over["train.seed"] = int(seed)
    base = cfg.replace(over)  # the batch size the epochs are counted in may come from the overrides
    if budget == "steps":
        steps = int(a.steps or base.train.max_steps)
        budget_over: dict[str, Any] = {"train.epochs": epochs_for(base, steps, n_train)}
        if steps:
            budget_over["train.max_steps"] = steps
    elif budget == "seconds":
        if not planned_steps or planned_steps < 1:
            raise ValueError(f"{model}: the seconds budget needs a planned step count (got {planned_steps!r})")
        budget_over = {"train.epochs": epochs_for(base, int(planned_steps), n_train),
                       "train.max_steps": int(planned_steps), "train.max_seconds": float(a.seconds)}
    else:
        raise ValueError(f"budget: {budget!r}; use steps or seconds")
    return base.replace(budget_over)


def ablation_config(cfg: Any, model_name: str) -> Any:
    """One model at the equal-steps budget with the config's own seed (the single-seed comparison and the Kubeflow
    ablation pipeline)."""
    return cell_config(cfg, model_name, None, "steps")


def plan_steps_for_seconds(seconds: float, step_time_s: float) -> int:
    """Steps that fit ``seconds`` at ``step_time_s`` per step (at least 1)."""
    if not (step_time_s > 0 and math.isfinite(step_time_s)):
        raise ValueError(f"step_time_s: must be a positive number of seconds (got {step_time_s!r})")
    return max(1, int(seconds // step_time_s))


def calibrate_step_time(cfg: Any, model: str, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                        n_train: Optional[int] = None) -> float:
    """Seconds per optimizer step of ``model`` in the real training loop: a run of ``ablation.calibration_steps``
    steps (the study's config, tracking off, one validation batch) into ``out_dir``; the first step's start-up
    is included, so the plan errs towards fewer steps."""
    from mslstm.training.train import train

    steps = int(cfg.ablation.calibration_steps)
    ccfg = cell_config(cfg.replace({"ablation.steps": steps}), model, None, "steps", n_train=n_train).replace(
        {"train.val_batches": 1, "tracking.enabled": False, "train.progress": "quiet"})
    m = train(ccfg, data_dir, out_dir)
    t, done = m.get("train_time_s"), m.get("steps")
    if not t or not done:
        raise RuntimeError(f"{model}: the timing run did not report its time and steps ({m})")
    log.info("%s: %.3f s per step over a %d-step timing run", model, t / done, done)
    return float(t) / float(done)
