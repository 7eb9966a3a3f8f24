"""Config sections of the data and validate steps (stub; the data owner fills it in)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    input_frames: int = 10
    output_frames: int = 10


@dataclass
class ValidateConfig:
    pass
