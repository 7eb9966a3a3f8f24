"""ModelConfig: the one dataclass a network takes (stub; the model owner fills it in)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    name: str = "mslstm"
    in_channels: int = 1
    input_frames: int = 10
    output_frames: int = 10
