"""Distribution for the trainer: one code path for 1 process, ``torchrun`` on one node and several nodes.

When ``WORLD_SIZE > 1`` (set by ``torchrun``) :func:`setup_distributed` initialises the process group from the
torchrun environment (NCCL on CUDA, gloo on CPU); :func:`teardown_distributed` destroys it again when it was made
here. Each epoch's order is a ``DistributedSampler`` permutation of (seed, epoch) (:func:`epoch_batches`), so N
processes with per-process batch b see exactly the sequences one process with batch N*b sees.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from datetime import timedelta
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mslstm.devices import resolve_device
from mslstm.training.checkpoint import unwrap_model

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DistInfo:
    """Where this process stands: its ranks, the world size and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_pref: str = "auto") -> DistInfo:
    """Init the process group from the torchrun environment when ``WORLD_SIZE > 1``; pick the device
    (``train.device``: one GPU per local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, key="train.device", local_rank=local_rank)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    info = DistInfo(rank, local_rank, world, device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        _init_process_group(backend, rank, world, device if use_cuda else None)
        info.initialised_here = True
        log.info("process group: backend %s, rank %d/%d (local %d), device %s", backend, rank, world, local_rank,
                 device)
    elif world > 1:
        info.rank, info.world_size = dist.get_rank(), dist.get_world_size()
    return info


def teardown_distributed(info: DistInfo) -> None:
    """Destroy the process group when :func:`setup_distributed` made it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def restart_count() -> int:
    """``TORCHELASTIC_RESTART_COUNT``: 0 in the first torchrun attempt (and outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def _init_process_group(backend: str, rank: int, world: int, device_id: Any) -> None:
    """``init_process_group`` from the torchrun environment. After a torchrun restart the store keys of this attempt
    get their own prefix, so that no rank can read an address a dead worker of an earlier attempt published."""
    restart = restart_count()
    if restart == 0 or "MASTER_ADDR" not in os.environ:
        dist.init_process_group(backend=backend, device_id=device_id)
        return
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world,
                          is_master=(not agent_store and rank == 0), timeout=timedelta(minutes=10),
                          multi_tenant=not agent_store)
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"mslstm/attempt_{restart}", store),
                            rank=rank, world_size=world, device_id=device_id)


def all_reduce_sum(values: Sequence[float], dinfo: DistInfo) -> list[float]:
    """Sum a few floats over all ranks (float64 on CPU for gloo, on the device for nccl)."""
    if not dinfo.distributed:
        return [float(v) for v in values]
    dev = dinfo.device if dinfo.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor(list(values), dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_reduce_max(value: float, dinfo: DistInfo) -> float:
    if not dinfo.distributed:
        return float(value)
    dev = dinfo.device if dinfo.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(dinfo: DistInfo) -> None:
    if dinfo.distributed:
        dist.barrier()


def wrap_model(net: nn.Module, dinfo: DistInfo, compile: bool = False) -> nn.Module:
    """``torch.compile`` (optional), then DDP when distributed. Checkpoints always save the unwrapped module."""
    model: nn.Module = torch.compile(net) if compile else net
    if dinfo.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dinfo.device.index] if dinfo.device.type == "cuda" else None
        )
    return model


def replica_max_abs_diff(model: nn.Module, dinfo: DistInfo) -> float:
    """Largest |w_rank - w_rank0| over all parameters and ranks (0.0 when DDP kept the replicas in sync)."""
    if not dinfo.distributed:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in unwrap_model(model).parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    return all_reduce_max(float((flat - ref).abs().max().item()) if flat.numel() else 0.0, dinfo)


# ------------------------------------------------------------------------------------------------ data sharding
def epoch_batches(n: int, batch: int, epoch: int, dinfo: DistInfo, seed: int, shuffle: bool = True) -> list[list[int]]:
    """This rank's batches of one epoch: a ``DistributedSampler`` permutation (set_epoch) cut into ``batch``es."""
    sampler = DistributedSampler(range(n), num_replicas=dinfo.world_size, rank=dinfo.rank, shuffle=shuffle,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i : i + batch] for i in range(0, len(idx), batch)]


def shard_batches(n: int, batch: int, dinfo: DistInfo, max_batches: int = 0) -> list[list[int]]:
    """This rank's share of ``range(n)`` in order (every world_size-th index), cut into ``batch``es (validation)."""
    idx = list(range(dinfo.rank, n, dinfo.world_size))
    batches = [idx[i : i + batch] for i in range(0, len(idx), batch)]
    return batches[:max_batches] if max_batches else batches


class _BatchReader(Dataset):
    """Index = a list of sequence indices -> one (B, T, C, H, W) batch via ``VideoDataset.get_batch``."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, indices: list[int]) -> torch.Tensor:
        return self.ds.get_batch(indices)


def batch_loader(ds: Any, batches: list[list[int]], workers: int, pin: bool) -> Iterator[torch.Tensor]:
    """The batches of ``ds`` in order: read inline (``workers == 0``) or by a DataLoader with worker processes."""
    if not batches:
        return iter(())
    if workers == 0:
        return (ds.get_batch(b) for b in batches)
    return iter(DataLoader(_BatchReader(ds), sampler=batches, batch_size=None, num_workers=workers,
                           pin_memory=pin, persistent_workers=False))
