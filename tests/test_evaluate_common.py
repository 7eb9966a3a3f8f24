"""Shared helpers of the evaluation tests (no tests here): a tiny config matching ``tiny_dataset`` and
checkpoints built with ``build_model`` + ``save_checkpoint`` (no training)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY = [
    "model.name=mslstm", "model.frame_size=[16, 16]", "model.input_frames=3", "model.output_frames=3",
    "model.hidden=4", "model.layers=4", "model.scales=[1, 2, 2, 1]", "model.mk_kernels=[1, 3]",
    "data.input_frames=3", "data.output_frames=3",
    "tracking.system_metrics=false", "tracking.experiment=evaltest",
    "evaluate.batch_size=3", "evaluate.num_examples=2",
    "profile.batch_size=2", "profile.warmup=1", "profile.repeats=2",
]


def tiny_config(*extra: str):
    from mslstm.config import load_config

    return load_config(None, [*TINY, *extra])


def make_checkpoint(path: Path, cfg, seed: int = 0, bias: float | None = None) -> Path:
    """Random-init model of ``cfg.model`` saved as a checkpoint; ``bias`` sets the head's output bias (a
    crude way to get a better or worse model without training)."""
    from model import build_model

    from mslstm.training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    net = build_model(cfg.model)
    if bias is not None:
        with torch.no_grad():
            net.head.weight.zero_()
            net.head.bias.fill_(bias)
    from mslstm.config import to_dict

    save_checkpoint(path, {
        "model_config": to_dict(cfg.model), "config": cfg.to_dict(), "model": net.state_dict(),
        "optimizer": None, "scheduler": None, "scaler": None, "epoch": 0, "step": 0, "rng": None, "metrics": {},
    })
    return path


@pytest.fixture
def mlflow_env(tmp_path, monkeypatch) -> str:
    """MLflow on a SQLite file in tmp (real MLflow, no server); artifacts under tmp too."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    return uri


def cli_sets(*extra: str) -> list[str]:
    """``--set`` arguments of the tiny config for ``mslstm.cli.main``."""
    return [f"--set={o}" for o in (*TINY, *extra)]
