"""Distribution for the trainer: one code path for 1 process, ``torchrun`` on one node and several nodes.

When ``WORLD_SIZE > 1`` (set by ``torchrun``) :func:`setup_distributed` initialises the process group from the
torchrun environment (NCCL on CUDA, gloo on CPU); :func:`teardown_distributed` destroys it again when it was made
here. Collectives wait at most ``train.collective_timeout`` seconds; every rank bumps a counter in the rendezvous
store from a :class:`Heartbeat` thread, so that when a collective times out the error names the rank(s) whose
counter stopped (a worker stopped with SIGSTOP, hung in I/O or swapped out): :func:`collective_error`.

Each epoch's order is a ``DistributedSampler`` permutation of (seed, epoch) (:func:`epoch_batches`), so N processes
with per-process batch b see exactly the sequences one process with batch N*b sees.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mslstm.devices import resolve_device
from mslstm.errors import DistributedError
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
    timeout_s: float = 300.0
    heartbeat: "Heartbeat | None" = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_pref: str = "auto", timeout_s: float = 300.0) -> DistInfo:
    """Init the process group from the torchrun environment when ``WORLD_SIZE > 1``; pick the device
    (``train.device``: one GPU per local rank). Collectives time out after ``timeout_s`` seconds
    (``train.collective_timeout``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, key="train.device", local_rank=local_rank)
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    info = DistInfo(rank, local_rank, world, device, timeout_s=float(timeout_s))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        _init_process_group(backend, rank, world, device if use_cuda else None, timedelta(seconds=float(timeout_s)))
        info.initialised_here = True
        info.heartbeat = Heartbeat.start_from_env(rank, world, timeout_s)
        log.info("process group: backend %s, rank %d/%d (local %d), device %s", backend, rank, world, local_rank,
                 device)
    elif world > 1:
        info.rank, info.world_size = dist.get_rank(), dist.get_world_size()
    return info


def teardown_distributed(info: DistInfo) -> None:
    """Destroy the process group when :func:`setup_distributed` made it."""
    if info.heartbeat is not None:
        info.heartbeat.stop()
        info.heartbeat = None
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def restart_count() -> int:
    """``TORCHELASTIC_RESTART_COUNT``: 0 in the first torchrun attempt (and outside torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def _init_process_group(backend: str, rank: int, world: int, device_id: Any,
                        timeout: timedelta = timedelta(minutes=5)) -> None:
    """``init_process_group`` from the torchrun environment. After a torchrun restart the store keys of this attempt
    get their own prefix, so that no rank can read an address a dead worker of an earlier attempt published."""
    restart = restart_count()
    if restart == 0 or "MASTER_ADDR" not in os.environ:
        dist.init_process_group(backend=backend, device_id=device_id, timeout=timeout)
        return
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world,
                          is_master=(not agent_store and rank == 0), timeout=timedelta(minutes=10),
                          multi_tenant=not agent_store)
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"mslstm/attempt_{restart}", store),
                            rank=rank, world_size=world, device_id=device_id, timeout=timeout)


class Heartbeat:
    """A daemon thread that adds 1 to ``<prefix>/<rank>`` in the rendezvous store every ``interval`` seconds (its
    own client connection). A rank whose counter stops moving has stopped answering; counters, not clocks, so that
    nodes need not agree on the time."""

    def __init__(self, store: Any, prefix: str, rank: int, world: int, interval: float) -> None:
        self.store, self.prefix, self.rank, self.world, self.interval = store, prefix, rank, world, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mslstm-heartbeat", daemon=True)

    @classmethod
    def start_from_env(cls, rank: int, world: int, timeout_s: float) -> "Heartbeat | None":
        """Connect to ``MASTER_ADDR:MASTER_PORT`` (the torchrun store) and start beating; None when it cannot."""
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            return None
        interval = max(0.2, min(5.0, float(timeout_s) / 8))
        try:
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world,
                                  is_master=False, timeout=timedelta(seconds=max(10.0, float(timeout_s))),
                                  wait_for_workers=False)
        except (RuntimeError, ValueError, OSError) as exc:  # no heartbeat: a timeout then names no rank
            log.warning("no heartbeat store (%s): a collective timeout will not name the silent rank", exc)
            return None
        hb = cls(store, f"mslstm/heartbeat/attempt_{restart_count()}", rank, world, interval)
        hb._thread.start()
        return hb

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.add(f"{self.prefix}/{self.rank}", 1)
            except (RuntimeError, OSError):  # the store's host went away: the collectives will say so
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()

    def counts(self) -> dict[int, int]:
        return {r: int(self.store.add(f"{self.prefix}/{r}", 0)) for r in range(self.world)}

    def silent_ranks(self) -> list[int]:
        """Ranks (other than this one) whose counter does not move for ~3 heartbeat intervals."""
        try:
            before = self.counts()
            time.sleep(3 * self.interval)
            after = self.counts()
        except (RuntimeError, OSError):
            return []
        return [r for r in range(self.world) if r != self.rank and after[r] == before[r]]


_COLLECTIVE_WORDS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "gloo", "nccl",
                     "wait timeout", "watchdog")


def collective_error(exc: BaseException, dinfo: DistInfo) -> DistributedError | None:
    """A one-line :class:`DistributedError` for a collective that failed or timed out (naming the silent ranks
    when the heartbeat shows them); None when ``exc`` is not a collective failure or not distributed."""
    if not dinfo.distributed or not isinstance(exc, (RuntimeError, dist.DistBackendError)):
        return None
    text = str(exc).strip()
    if not any(w in text.lower() for w in _COLLECTIVE_WORDS):
        return None
    silent = dinfo.heartbeat.silent_ranks() if dinfo.heartbeat is not None else []
    first = text.splitlines()[0][:160] if text else type(exc).__name__
    who = (f"rank {', '.join(map(str, silent))} stopped answering" if silent
           else "another rank stopped answering or died")
    return DistributedError(f"rank {dinfo.rank}: a collective did not complete within train.collective_timeout = "
                            f"{dinfo.timeout_s:g} s: {who} ({first}); check that worker (hung, stopped, out of "
                            "memory) or raise train.collective_timeout")


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
