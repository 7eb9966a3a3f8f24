"""Config sections of evaluate, profile, register and ablation (stub; the evaluation owner fills it in)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvaluateConfig:
    pass


@dataclass
class ProfileConfig:
    pass


@dataclass
class RegisterConfig:
    pass


@dataclass
class AblationConfig:
    pass
