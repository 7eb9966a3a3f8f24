"""One device rule for every step (train, evaluate, profile).

    from mslstm.devices import resolve_device
    resolve_device("auto")                        # cuda when available, else cpu
    resolve_device("cuda", key="profile.device")  # ConfigError naming profile.device when there is no GPU
    resolve_device("auto", local_rank=3)          # cuda:(3 % GPUs) under torchrun, else cpu

And one thread rule: :func:`apply_thread_default` (called by the CLI entry and the training setup) gives torch
:func:`default_threads` intra-op threads, the cores this process may use (its CPU affinity, capped by a cgroup CPU
quota), instead of every core of the machine; env ``MSLSTM_NUM_THREADS`` or ``OMP_NUM_THREADS`` overrides it.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

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


log = logging.getLogger(__name__)
THREADS_ENV = "MSLSTM_NUM_THREADS"


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``), None
    when unlimited or unknown."""
    try:
        text = (root / "cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return float(text[0]) / float(text[1])
        if text:
            return None
    except (OSError, ValueError):
        pass
    try:
        quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def default_threads(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Intra-op threads for this process: env ``MSLSTM_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs in
    its affinity mask, capped by the cgroup CPU quota (rounded up); at least 1."""
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ConfigError(f"{var}: must be a whole number of threads (got {value!r})") from None
            if n < 1:
                raise ConfigError(f"{var}: must be >= 1 (got {n})")
            return n
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def apply_thread_default() -> int:
    """Set torch's intra-op threads to :func:`default_threads` (idempotent); returns the number."""
    n = default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.debug("torch intra-op threads: %d", n)
    return n
