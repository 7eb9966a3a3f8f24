"""Config sections of the train step and of MLflow tracking (stub; the training owner fills it in)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    pass


@dataclass
class TrackingConfig:
    pass
