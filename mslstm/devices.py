"""One device rule for every step (train, evaluate, profile).

    from mslstm.devices import resolve_device
    resolve_device("auto")                        # cuda when available, else cpu
    resolve_device("cuda", key="profile.device")  # ConfigError naming profile.device when there is no GPU
    resolve_device("auto", local_rank=3)          # cuda:(3 % GPUs) under torchrun, else cpu
"""
from __future__ import annotations

import torch

from mslstm.errors import ConfigError


def resolve_device(name: str = "auto", key: str = "device", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for a config value ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``.

    Args:
        name: the config value; ``auto`` = CUDA when available, else CPU.
        key: the config key the value came from (named in errors).
        local_rank: under torchrun, the process's local rank: ``cuda`` without an index becomes
            ``cuda:(local_rank % GPUs)``, one GPU per local rank.

    Raises:
        ConfigError: CUDA asked for but not available, or not a device name.
    """
    name = (name or "auto").strip()
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        name = "cuda"
    if name == "cpu":
        return torch.device("cpu")
    if not name.startswith("cuda"):
        raise ConfigError(f"{key}: {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"{key}: {name!r} requested but no CUDA device is available; use auto or cpu")
    device = torch.device(name)
    if device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return device
