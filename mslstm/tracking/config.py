"""The ``tracking:`` section (:class:`TrackingConfig`) and how the other modules read it from a Config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "mslstm"


@dataclass
class TrackingConfig:
    """MLflow tracking.

    Attributes:
        uri: tracking URI; env ``MLFLOW_TRACKING_URI`` wins over it. Default: the SQLite file ``mlflow.db`` of the
            project (a relative SQLite path is resolved against :func:`project_root`, not the working dir).
        experiment: MLflow experiment name.
        run_name: run name (null: what ran, e.g. ``mslstm moving_mnist lr=0.002 bs=16 ep=4``).
        enabled: track at all (false: no MLflow calls, no run.json).
        log_every_steps: log training loss/lr/throughput every N steps (epoch metrics always).
        system_metrics: log CPU/GPU/memory usage (MLflow system metrics, needs psutil).
        system_metrics_interval: seconds between system-metrics samples.
        log_model: log the best model with ``mlflow.pytorch.log_model`` (signature + input example).
        model_format: ``pt2`` (torch.export, safe to load) or ``pickle``; pt2 falls back to pickle when export fails.
        log_checkpoint: upload ``best.pt`` as a run artifact.
    """

    uri: str = DEFAULT_TRACKING_URI
    experiment: str = DEFAULT_EXPERIMENT
    run_name: Optional[str] = None
    enabled: bool = True
    log_every_steps: int = 10
    system_metrics: bool = False
    system_metrics_interval: float = 10.0
    log_model: bool = False
    model_format: Literal["pt2", "pickle"] = "pt2"
    log_checkpoint: bool = True

    def validate(self) -> None:
        if not self.uri:
            raise ValueError("uri: must not be empty; e.g. sqlite:///mlflow.db or http://127.0.0.1:5000")
        if not self.experiment:
            raise ValueError("experiment: must not be empty")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps: must be >= 1 (got {self.log_every_steps})")
        if self.system_metrics_interval <= 0:
            raise ValueError(f"system_metrics_interval: must be > 0 seconds (got {self.system_metrics_interval})")


def section(cfg: Any) -> Any:
    """The ``tracking`` section of a Config (or the section itself, or None)."""
    return getattr(cfg, "tracking", cfg)


def tracking_enabled(cfg: Any) -> bool:
    return bool(getattr(section(cfg), "enabled", True))
