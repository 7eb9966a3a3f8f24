"""Metric points sent to the tracking store from a background thread, with a bounded flush.

Training logs its loss every few steps; waiting for the server at each of them would slow the loop, so the points
go into a queue that one daemon thread empties with ``MlflowClient.log_batch`` (up to 1,000 points a request, in
order). Unlike MLflow's own asynchronous logging, whose worker threads Python waits for at exit, the thread is a
daemon and :meth:`MetricSender.flush` waits at most a given time: a server that stopped answering can delay the end
of a step by that much, never hold the process. The first failed request stops the sending; every point not stored
is counted (:attr:`MetricSender.lost`) so that the step can say what was not logged.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # MLflow's limit of metrics in one log_batch request


class MetricSender:
    """Send :class:`mlflow.entities.Metric` points of run ``run_id`` through ``client`` in a daemon thread."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.sent = 0                       # points the store acknowledged
        self.lost: list[Any] = []           # points not stored (a failed request, or queued after it)
        self.error: BaseException | None = None
        self._queue: collections.deque = collections.deque()
        self._batch: list[Any] = []         # the points of the request in flight
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, metrics: list[Any]) -> None:
        """Queue points (dropped into :attr:`lost` at once after a failure)."""
        with self._cv:
            if self.error is not None:
                self.lost.extend(metrics)
                return
            self._queue.extend(metrics)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"mslstm-metrics-{self.run_id[:8]}",
                                                daemon=True)
                self._thread.start()
            self._cv.notify_all()

    @property
    def pending(self) -> int:
        """Points queued or in a request."""
        with self._cv:
            return len(self._queue) + len(self._batch)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                self._batch = batch
            try:
                self.client.log_batch(self.run_id, metrics=batch, synchronous=True)
            except Exception as exc:  # noqa: BLE001 - any failure of the request means these points are not stored
                with self._cv:
                    if self._batch:  # not already counted by abandon()
                        self.error = exc
                        self.lost.extend(batch)
                    self.lost.extend(self._queue)
                    self._queue.clear()
                    self._batch = []
                    self._cv.notify_all()
                log.error("MLflow run %s: metrics not stored (%s: %s); no more are sent", self.run_id,
                          type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "")
                return
            with self._cv:
                if self._batch:  # not already counted as lost by abandon()
                    self.sent += len(batch)
                self._batch = []
                self._cv.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued point is stored or lost, at most ``timeout`` seconds (a signal handler, e.g.
        SIGTERM's, can interrupt the wait). True when nothing is left pending."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.5))
        return True

    def abandon(self) -> list[Any]:
        """Give up on what is still pending: those points count as lost (the one request in flight may still
        arrive), nothing more is sent; returns them."""
        with self._cv:
            dropped = self._batch + list(self._queue)
            self._queue.clear()
            self._batch = []
            self.lost.extend(dropped)
            if dropped and self.error is None:
                self.error = TimeoutError("the tracking server did not store them in time")
            return dropped
