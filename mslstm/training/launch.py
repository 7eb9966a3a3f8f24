"""How many local processes train, and starting them: ``train.processes`` for ``mslstm train`` outside torchrun.

On a CPU, one process per core with one thread each (DDP over gloo) beats one process with one thread per core:
the per-step work is thousands of small ops, and with two OpenMP threads every op ends in a barrier where a
thread waits for the other. Measured with ``bench/bench_first_run.py`` (docs/training.md): faster when idle, and
beside one other CPU-bound process it keeps ~64 % of its idle speed where the threaded process keeps ~29 % (a
descheduled spinning thread stalls every op). The decision is pure (:func:`local_processes`); :func:`relaunch`
starts ``python -m torch.distributed.run --standalone`` on this node with the same validated config.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

#: ``train.processes: 0`` starts several processes only for runs of at least this many training sequences: below
#: it torchrun's start (~5 s) costs more than the processes save (smoke runs, tests, tiny experiments)
MIN_SEQUENCES_FOR_PROCESSES = 4096

#: torchrun's environment: set inside a launched worker (then ``train.processes`` is the launcher's business)
_LAUNCHED_ENV = ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE", "WORLD_SIZE")


def under_launcher(env: Any = None) -> bool:
    """True inside a torchrun / TrainJob worker (its environment names a world size or an elastic run)."""
    env = os.environ if env is None else env
    return any(env.get(name) for name in _LAUNCHED_ENV)


def local_processes(processes: int, device: str = "auto", cores: int | None = None, cuda: bool | None = None,
                    global_batch: int | None = None, planned_sequences: int | None = None) -> int:
    """Processes ``mslstm train`` should start on this node for ``train.processes`` (0 = auto).

    Args:
        processes: the config value; >= 1 is taken as it is.
        device: ``train.device``; ``auto`` and ``cuda`` mean one process on a GPU machine.
        cores: the cores this process may use (default :func:`mslstm.devices.default_threads`: affinity, cgroup
            quota, ``MSLSTM_NUM_THREADS`` / ``OMP_NUM_THREADS``).
        cuda: whether a GPU is used (default: ``torch.cuda.is_available()`` unless ``device`` is ``cpu``).
        global_batch: the run's batch (:func:`run_batch`): auto takes the most processes, up to the cores, that
            split it evenly.
        planned_sequences: training sequences the run will see (:func:`planned_sequences`); auto keeps one
            process below :data:`MIN_SEQUENCES_FOR_PROCESSES`.
    """
    if processes >= 1:
        return int(processes)
    if planned_sequences is not None and planned_sequences < MIN_SEQUENCES_FOR_PROCESSES:
        return 1
    if cuda is None:
        if device == "cpu":
            cuda = False
        else:
            import torch

            cuda = torch.cuda.is_available()
    if cuda:
        return 1
    if cores is None:
        from mslstm.devices import default_threads

        cores = default_threads()
    n = max(1, int(cores))
    while global_batch and n > 1 and global_batch % n:
        n -= 1
    return n


def planned_sequences(tcfg: Any, data_dir: str | os.PathLike) -> int | None:
    """Training sequences a run of ``tcfg`` sees on the dataset in ``data_dir`` (epochs x train split, capped by
    ``max_steps`` x the run's batch); None when the dataset's ``meta.json`` cannot say (training then reports it)."""
    from mslstm.data.dataset import read_meta
    from mslstm.errors import MSLSTMError

    try:
        n_train = int(read_meta(Path(data_dir))["splits"]["train"]["shape"][0])
    except (MSLSTMError, KeyError, IndexError, TypeError, ValueError):  # train() itself names what is wrong
        return None
    total = tcfg.epochs * n_train
    return min(total, tcfg.max_steps * run_batch(tcfg)) if tcfg.max_steps else total


def run_batch(tcfg: Any) -> int:
    """The batch of one optimizer step of the run ``mslstm train`` starts: ``global_batch_size``, else the
    ``batch_size`` of a single process."""
    return int(tcfg.global_batch_size or tcfg.batch_size)


def worker_env(nproc: int, cores: int, env: Any = None) -> dict[str, str]:
    """The workers' environment: the cores split evenly (at least one thread each), set for OpenMP and the project."""
    out = dict(os.environ if env is None else env)
    threads = str(max(1, cores // max(1, nproc)))
    out["OMP_NUM_THREADS"] = threads
    out["MSLSTM_NUM_THREADS"] = threads
    return out


def torchrun_command(nproc: int, params: str | os.PathLike, cli_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m mslstm --params P <cli_args>``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
            "--max-restarts=0", "-m", "mslstm", "--params", str(params), *cli_args]


def _stop_with_parent() -> None:
    """In the child before exec: SIGTERM it when this process dies, even by SIGKILL (Linux ``PR_SET_PDEATHSIG``),
    so that torchrun stops its workers instead of training on as orphans."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def relaunch(cfg: Any, nproc: int, cli_args: Sequence[str], cores: int | None = None) -> int:
    """Run ``mslstm <cli_args>`` under torchrun with ``nproc`` local processes and the validated ``cfg`` (written
    to a temporary params file, so ``--set`` overrides travel too), its ``global_batch_size`` set to
    :func:`run_batch` so that the processes split the single-process batch; returns torchrun's exit status.

    SIGTERM / Ctrl-C reach torchrun, which stops its workers (their own SIGTERM handling ends the MLflow run
    and keeps ``last.pt``); this process waits for it.
    """
    from mslstm.devices import default_threads
    from mslstm.io import write_json

    cores = default_threads() if cores is None else cores
    tree = cfg.to_dict()
    # the processes split the batch one process would train with: the same run whatever their count
    tree["train"]["global_batch_size"] = run_batch(cfg.train)
    with tempfile.TemporaryDirectory(prefix="mslstm-launch-") as tmp:
        params = write_json(Path(tmp) / "params.yaml", tree)  # JSON is valid YAML
        cmd = torchrun_command(nproc, params, cli_args)
        log.info("starting %d training processes (%d thread(s) each) with torchrun", nproc,
                 max(1, cores // nproc))
        proc = subprocess.Popen(cmd, env=worker_env(nproc, cores), preexec_fn=_stop_with_parent)
        previous = signal.getsignal(signal.SIGTERM)

        def forward(signum: int, _frame: Any) -> None:
            proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
