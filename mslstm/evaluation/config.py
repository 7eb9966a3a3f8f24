"""Config sections of the evaluate, profile, register and ablation steps.

Defaults are the embedded default (small CPU config). Each ``validate()`` raises ``ValueError("key: reason")``;
the loader turns it into ``ConfigError("params.yaml: <section>.key: reason")``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional


def _paper_models() -> list[str]:
    """The ablation's default: the four networks of the MS-LSTM paper (registry tag ``paper``)."""
    from model.registry import model_names

    return list(model_names(tag="paper"))


@dataclass
class EvaluateConfig:
    """``evaluate`` section: which split and frames are scored, and how many example pictures are drawn."""

    batch_size: int = 16
    # "future": the output_frames predicted frames only (as OpenSTL reports);
    # "all": also the teacher-forced frames 2..input_frames (as the authors' code averages).
    frames: Literal["future", "all"] = "future"
    num_examples: int = 2          # sequences drawn as PNG strip + GIF
    split: Literal["train", "val", "test"] = "test"
    max_sequences: int = 0         # 0 = the whole split; >0 caps it (quick runs)
    lpips: bool = False            # LPIPS needs pretrained weights that no installed package ships: keep off
    # What is scored and drawn (mslstm.evaluation.metric_sets): video (MSE/MAE/SSIM/PSNR, grey strips), flow
    # (same metrics, inflow/outflow heat maps), precipitation (+ POD/FAR/CSI/HSS per rain-rate threshold,
    # B-MSE/B-MAE, rain-rate maps); auto = the set that claims the data source (dwd -> precipitation, taxibj ->
    # flow), else video. A new set registered in metric_sets is added here too (a test checks the two agree).
    metric_set: Literal["auto", "video", "flow", "precipitation"] = "auto"
    # PSNR convention: "standard" = 10 log10(1 / mse_pixel), an exact frame capped at 100 dB; "authors" =
    # 10 log10(1 / (mse_pixel + 1e-5)), at most 50 dB (mazhf/MS-RNN util/evaluation.py get_PSNR).
    psnr: Literal["standard", "authors"] = "standard"
    # Which weights a training folder gives the evaluate step: "best" (best.pt, the best validation loss) or "last"
    # (last.pt, the final weights: what the authors test, train_and_test.py). An explicit .pt file is used as is.
    weights: Literal["best", "last"] = "best"

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1 (got {self.batch_size})")
        if self.num_examples < 0:
            raise ValueError(f"num_examples: must be >= 0 (got {self.num_examples})")
        if self.max_sequences < 0:
            raise ValueError(f"max_sequences: must be >= 0, 0 = whole split (got {self.max_sequences})")
        if self.lpips:
            raise ValueError(
                "lpips: LPIPS weights ship in no installed package and downloads are not allowed; set it to false"
            )


@dataclass
class ProfileConfig:
    """``profile`` section: how the training/inference cost of the configured model is measured and priced."""

    device: str = "auto"           # "auto" (cuda if available), "cpu", "cuda", "cuda:N"
    batch_size: int = 4
    warmup: int = 1
    repeats: int = 3
    # USD per device-hour, by device kind ("cpu", "cuda"); used for the training cost estimate.
    prices: dict[str, float] = field(default_factory=lambda: {"cpu": 0.1, "cuda": 2.5})
    # Training steps the estimate is for; 0 = derive from the train section (epochs x steps) when it says.
    estimated_steps: int = 0

    def validate(self) -> None:
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N (got {self.device!r})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1 (got {self.batch_size})")
        if self.warmup < 0:
            raise ValueError(f"warmup: must be >= 0 (got {self.warmup})")
        if self.repeats < 1:
            raise ValueError(f"repeats: must be >= 1 (got {self.repeats})")
        if self.estimated_steps < 0:
            raise ValueError(f"estimated_steps: must be >= 0, 0 = from the train section (got {self.estimated_steps})")
        for kind, price in self.prices.items():
            if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
                raise ValueError(f"prices.{kind}: must be a number >= 0 (USD per device-hour), got {price!r}")


@dataclass
class RegisterConfig:
    """``register`` section: the promotion gate into the MLflow Model Registry."""

    model_name: str = "mslstm"
    alias: str = "champion"
    challenger_alias: str = "challenger"
    metric: Literal["mse", "mae", "ssim", "psnr"] = "mse"   # compared against the champion's
    # Relative margin: promote if new <= champion * (1 - min_improvement) (lower-is-better metrics;
    # new >= champion * (1 + min_improvement) for ssim/psnr). 0 = any improvement.
    min_improvement: float = 0.0
    max_device_hours: Optional[float] = None   # budget on the estimated training device-hours (None = no limit)
    max_flops: Optional[float] = None          # budget on forward FLOPs per sequence (None = no limit)
    on_reject: Literal["nothing", "challenger"] = "challenger"

    def validate(self) -> None:
        if not self.model_name or "/" in self.model_name or "@" in self.model_name:
            raise ValueError(f"model_name: must be a non-empty name without '/' or '@' (got {self.model_name!r})")
        if not self.alias or self.alias == self.challenger_alias:
            raise ValueError("alias: must be non-empty and differ from challenger_alias")
        if not 0.0 <= self.min_improvement < 1.0:
            raise ValueError(f"min_improvement: must be in [0, 1) (relative margin), got {self.min_improvement}")
        if self.max_device_hours is not None and self.max_device_hours <= 0:
            raise ValueError(f"max_device_hours: must be > 0 or null (got {self.max_device_hours})")
        if self.max_flops is not None and self.max_flops <= 0:
            raise ValueError(f"max_flops: must be > 0 or null (got {self.max_flops})")


@dataclass
class AblationConfig:
    """``ablation`` section: the comparison study (``mslstm.study``): models x seeds x budgets on the same data.

    ``models`` is the paper's ablation by default (``mslstm ablation``); ``mslstm compare`` / ``mslstm study`` take
    any list. Each seed is ``train.seed + i`` for i < ``seeds``; every model trains on the same batches in the same
    order with the same initialisation seed for a given seed (paired design). ``budget``: ``steps`` (``steps``
    optimizer steps per model), ``seconds`` (``seconds`` of training loop per model: ``train.max_seconds``, with
    the step count, hence the lr schedule, planned from a measured step time; see ``mslstm.study.budget``) or
    ``both`` (each cell twice).
    """

    models: list[str] = field(default_factory=_paper_models)   # any registered models (`mslstm models`)
    seeds: int = 1                 # seeds per model: train.seed, train.seed + 1, ...
    budget: Literal["steps", "seconds", "both"] = "steps"
    # Training budget per model; 0 = keep the train section's value. Mapped onto the train section's keys.
    epochs: int = 1
    steps: int = 64
    seconds: float = 60.0          # equal wall-clock budget: seconds of training loop per model
    calibration_steps: int = 8     # steps of the timing run that plans a seconds budget (when no steps run timed it)
    eval_sequences: int = 32       # test sequences scored per model (0 = the whole split)
    out_dir: str = "artifacts/ablation"
    # Extra "section.key" -> value overrides applied to every model's config (e.g. {"train.batch_size": 8}).
    # Default: the ablation compares models, it does not ship them: no MLflow model / checkpoint upload per model;
    # scheduled sampling decays over the first half of the budget's steps, as over 384 of the default's 768
    # (train.ss_decay_steps would leave a 64-step budget at 83 % teacher forcing).
    overrides: dict[str, object] = field(
        default_factory=lambda: {"tracking.log_model": False, "tracking.log_checkpoint": False,
                                 "train.ss_decay_fraction": 0.5}
    )

    def validate(self) -> None:
        if not self.models:
            raise ValueError("models: list at least one model")
        from model.registry import model_names

        known = model_names()
        for name in self.models:
            if name not in known:
                raise ValueError(f"models: unknown model {name!r} (known: {', '.join(known)})")
        if len(set(self.models)) != len(self.models):
            raise ValueError("models: list each model once")
        if self.seeds < 1:
            raise ValueError(f"seeds: must be >= 1 (got {self.seeds})")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds: must be a positive number of seconds (got {self.seconds})")
        if self.calibration_steps < 2:
            raise ValueError(f"calibration_steps: must be >= 2 (got {self.calibration_steps})")
        if self.epochs < 0 or self.steps < 0:
            raise ValueError("epochs: epochs and steps must be >= 0 (0 = the train section's value)")
        if self.eval_sequences < 0:
            raise ValueError(f"eval_sequences: must be >= 0 (got {self.eval_sequences})")
        if not self.out_dir:
            raise ValueError("out_dir: must be a folder path")
        for key in self.overrides:
            if "." not in str(key):
                raise ValueError(f"overrides.{key}: keys are section.key (e.g. train.batch_size)")
