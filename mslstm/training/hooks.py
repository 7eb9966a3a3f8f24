"""Signal and fault hooks of the trainer.

- :func:`sigterm_as_exception`: SIGTERM (torchrun stopping workers, a scheduler preempting) becomes
  ``SystemExit(128 + SIGTERM)`` while the block runs, so that ``finally`` blocks run and the MLflow run is ended
  (see :mod:`mslstm.tracking`) instead of being left RUNNING.
- :func:`fault_hook`: fault injection for the tests. ``MSLSTM_FAULT_STEP=N [MSLSTM_FAULT_RANK=r]
  [MSLSTM_FAULT_MODE=kill|term|exit|raise|stop]`` makes rank r fail right after optimizer step N, in the first torchrun
  attempt only (``TORCHELASTIC_RESTART_COUNT`` unset or 0): kill = SIGKILL (default), term = SIGTERM,
  exit = ``os._exit(17)``, raise = RuntimeError,
  stop = SIGSTOP (a hung worker: the process stays, stops answering). Does nothing unless the variable is set.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any, Iterator

log = logging.getLogger(__name__)

FAULT_STEP_ENV, FAULT_RANK_ENV, FAULT_MODE_ENV = "MSLSTM_FAULT_STEP", "MSLSTM_FAULT_RANK", "MSLSTM_FAULT_MODE"


@contextlib.contextmanager
def sigterm_as_exception(enabled: bool = True) -> Iterator[None]:
    """Raise ``SystemExit(128 + SIGTERM)`` on SIGTERM inside the block (main thread only; the previous handler
    is put back afterwards)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def fault_hook(step: int, rank: int) -> None:
    """Fail here when the fault-injection variables ask for this step and rank (see the module doc)."""
    at = os.environ.get(FAULT_STEP_ENV)
    if not at or int(at) != step:
        return
    if int(os.environ.get(FAULT_RANK_ENV, "0")) != rank:
        return
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
        return
    mode = os.environ.get(FAULT_MODE_ENV, "kill")
    log.warning("fault injection: rank %d dies after step %d (%s)", rank, step, mode)
    if mode == "raise":
        raise RuntimeError(f"fault injection at step {step}")
    if mode != "stop":
        logging.shutdown()
    if mode == "exit":
        os._exit(17)
    sig = {"term": signal.SIGTERM, "stop": signal.SIGSTOP}.get(mode, signal.SIGKILL)
    os.kill(os.getpid(), sig)
