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
        run_name: run name (null: what ran, e.g. ``mslstm lr=0.002 bs=16 ep=4 moving_mnist``).
        enabled: track at all (false: no MLflow calls, no run.json).
        log_every_steps: log training loss/lr/throughput every N steps (epoch metrics always).
        system_metrics: log CPU/GPU/memory usage (MLflow system metrics, needs psutil).
        system_metrics_interval: seconds between system-metrics samples.
        log_model: log the best model with ``mlflow.pytorch.log_model`` (signature + input example).
        model_format: ``pt2`` (torch.export, safe to load) or ``pickle``; pt2 falls back to pickle when export fails.
        log_checkpoint: upload ``best.pt`` as a run artifact.
        http_timeout: seconds one MLflow HTTP request may wait for the server (``MLFLOW_HTTP_REQUEST_TIMEOUT``;
            see :mod:`mslstm.tracking.limits`; an MLflow variable set in the environment wins).
        http_max_retries: retries of a failed MLflow HTTP request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 0-10).
        http_backoff_factor: back-off between retries, ``factor * 2**(n-1)`` s
            (``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``).
        end_timeout: seconds the end of a run may wait for the metrics still being sent; then the step stops
            with one ``error:`` line naming what was not logged (its outputs are kept).
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
    http_timeout: int = 15
    http_max_retries: int = 2
    http_backoff_factor: int = 1
    end_timeout: float = 30.0

    def validate(self) -> None:
        if not self.uri:
            raise ValueError("uri: must not be empty; e.g. sqlite:///mlflow.db or http://127.0.0.1:5000")
        if not self.experiment:
            raise ValueError("experiment: must not be empty")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps: must be >= 1 (got {self.log_every_steps})")
        if self.system_metrics_interval <= 0:
            raise ValueError(f"system_metrics_interval: must be > 0 seconds (got {self.system_metrics_interval})")
        if self.http_timeout < 1:
            raise ValueError(f"http_timeout: must be >= 1 second (got {self.http_timeout})")
        if not 0 <= self.http_max_retries <= 10:
            raise ValueError(f"http_max_retries: must be 0..10, MLflow's limit (got {self.http_max_retries})")
        if not 0 <= self.http_backoff_factor <= 120:
            raise ValueError(f"http_backoff_factor: must be 0..120 (got {self.http_backoff_factor})")
        if self.end_timeout <= 0:
            raise ValueError(f"end_timeout: must be > 0 seconds (got {self.end_timeout})")


def section(cfg: Any) -> Any:
    """The ``tracking`` section of a Config (or the section itself, or None)."""
    return getattr(cfg, "tracking", cfg)


def tracking_enabled(cfg: Any) -> bool:
    return bool(getattr(section(cfg), "enabled", True))
