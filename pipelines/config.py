"""Config section of the Kubeflow pipeline (stub; the pipelines owner fills it in)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PipelineConfig:
    pass
