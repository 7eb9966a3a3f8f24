"""Bounded waits on the tracking server: the HTTP timeout, retries and back-off of every MLflow request come from the
``tracking:`` section, and a fail-fast mode for the last requests of a run whose server has stopped answering.

MLflow reads its limits from the environment at each request (``MLFLOW_HTTP_REQUEST_TIMEOUT``, seconds per
attempt; ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``; ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``, the urllib3 back-off factor:
sleeps of ``factor * 2**(n-1)`` seconds plus up to ``MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` between attempts). Its own
defaults (120 s, 7 retries, factor 2) let one request to a dead server wait for minutes; :func:`apply_http_limits`
sets them from ``tracking.http_timeout`` / ``http_max_retries`` / ``http_backoff_factor`` unless the variable was
set in the environment before the first call (the environment wins, as ``MLFLOW_TRACKING_URI`` wins over
``tracking.uri``). The requests to S3 of the tracking server's artifact proxy (``mlflow-artifacts:``) go through
the same HTTP layer and are bounded the same way.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from mslstm.tracking.config import section

TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
BACKOFF_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
#: One attempt of at most this many seconds for the requests that end a run whose server stopped answering.
FAIL_FAST_TIMEOUT = 5

_USER_SET: dict[str, bool] = {}  # variable -> set in the environment before the project set it


def _user_set(name: str) -> bool:
    if name not in _USER_SET:
        _USER_SET[name] = name in os.environ
    return _USER_SET[name]


def http_limits(cfg: Any) -> dict[str, str]:
    """The MLflow HTTP variables the ``tracking`` section of ``cfg`` asks for (a Config, a TrackingConfig or None
    for the defaults)."""
    from mslstm.tracking.config import TrackingConfig

    sec = section(cfg)
    if not isinstance(sec, TrackingConfig):
        sec = TrackingConfig()
    return {TIMEOUT_ENV: str(int(sec.http_timeout)), RETRIES_ENV: str(int(sec.http_max_retries)),
            BACKOFF_ENV: str(int(sec.http_backoff_factor))}


def apply_http_limits(cfg: Any) -> dict[str, str]:
    """Export :func:`http_limits` of ``cfg`` for MLflow (a variable the user had set is left alone); returns the
    values in effect."""
    for name, value in http_limits(cfg).items():
        if not _user_set(name):
            os.environ[name] = value
    return {name: os.environ[name] for name in (TIMEOUT_ENV, RETRIES_ENV, BACKOFF_ENV)}


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Inside the block every MLflow request gets one attempt of at most :data:`FAIL_FAST_TIMEOUT` seconds (used
    once the server has failed: ending the run must not wait through the retries again)."""
    old = {name: os.environ.get(name) for name in (TIMEOUT_ENV, RETRIES_ENV)}
    current = int(os.environ.get(TIMEOUT_ENV) or FAIL_FAST_TIMEOUT)
    os.environ[TIMEOUT_ENV] = str(max(1, min(current, FAIL_FAST_TIMEOUT)))
    os.environ[RETRIES_ENV] = "0"
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
