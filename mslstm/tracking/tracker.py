"""The :class:`Tracker`: what a step logs into its open run (params, tags, metrics, artifacts, images, tables,
the model); every method does nothing when tracking is off or on a rank other than 0.

A tracking server that fails (gone, not answering within the HTTP limits of :mod:`mslstm.tracking.limits`) does
not stop the step's own work: the first failed call marks the tracker failed, and from then on the calls send
nothing and only note what they would have logged (:meth:`Tracker.not_logged_summary`). Metrics go through a
:class:`~mslstm.tracking.sender.MetricSender` (a daemon thread); :meth:`Tracker.close` waits for it a bounded time.
The run's end (:mod:`mslstm.tracking.runs`) then turns a failure into one
:class:`~mslstm.errors.TrackingError`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Iterable, Mapping

from mslstm.tracking.models import log_pytorch_model
from mslstm.tracking.sender import MetricSender

log = logging.getLogger(__name__)

_PARAM_BATCH = 100
_PARAM_MAX_LEN = 6000


def param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return text[:_PARAM_MAX_LEN]


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the tracking store or its artifact store failed" (after MLflow's retries)."""
    import requests
    from mlflow.exceptions import MlflowException

    errors: list[type[BaseException]] = [MlflowException, requests.exceptions.RequestException, OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # no boto3: no direct S3 artifact store either
        pass
    return tuple(errors)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (cut to ``limit`` characters)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__


class Tracker:
    """Thin facade over the open MLflow run; every method is a no-op when ``enabled`` is False (rank != 0,
    tracking off)."""

    def __init__(self, enabled: bool = False, run: Any = None, tracking_uri: str | None = None,
                 experiment_name: str | None = None) -> None:
        self.enabled = enabled and run is not None
        self.run = run
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.logged_steps: dict[str, int] = {}  # key -> last step already in the run (continued runs)
        self.failure: str | None = None         # the first failure of the store, one line
        self.not_logged: list[str] = []         # what was not logged besides metric points ("artifact x", ...)
        self.end_timeout = 30.0                 # default wait of flush() (open_run sets tracking.end_timeout)
        self._sender: MetricSender | None = None

    # ------------------------------------------------------------------------------------------- failure handling
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one MLflow call that logs ``what``; after a failure of the store, skip it and note ``what``."""
        if self.failure is not None:
            self.not_logged.append(what)
            return None
        try:
            return fn(*args, **kwargs)
        except store_errors() as exc:
            self.fail(exc, what)
            return None
        except BaseException:  # SIGTERM (SystemExit) or Ctrl-C in the middle of the call: it was not logged
            self.not_logged.append(what)
            raise

    def fail(self, exc: BaseException, what: str | None = None) -> None:
        """Mark the store failed (the first failure is the one reported); ``what`` was not logged."""
        if what:
            self.not_logged.append(what)
        if self.failure is None:
            self.failure = one_line(exc)
            log.error("MLflow tracking at %s failed (%s); the step goes on without it", self.tracking_uri,
                      self.failure)

    @property
    def incomplete(self) -> bool:
        """Something was not logged (a failure, or points still unsent)."""
        sender = self._sender
        return bool(self.failure or self.not_logged or (sender and (sender.lost or sender.pending)))

    def close(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the metric points still being sent; what is left then counts as not
        logged (the store is marked failed). True when everything queued was stored."""
        sender = self._sender
        if sender is None:
            return self.failure is None
        if not sender.flush(timeout):
            dropped = sender.abandon()
            self.fail(TimeoutError(f"{len(dropped)} metric points not stored within {timeout:g} s"))
        if sender.error is not None:
            self.fail(sender.error)
        return self.failure is None

    def not_logged_summary(self) -> str:
        """What the run lacks, in a few words: metric points (keys, steps) and the other calls skipped."""
        parts = []
        lost = self._sender.lost if self._sender else []
        if lost:
            keys = sorted({m.key for m in lost})
            steps = [m.step for m in lost]
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            parts.append(f"{len(lost)} metric points ({shown}; steps {min(steps)}-{max(steps)})")
        seen: list[str] = []
        for what in self.not_logged:
            if what not in seen:
                seen.append(what)
        parts += seen[:12] + ([f"{len(seen) - 12} more"] if len(seen) > 12 else [])
        return ", ".join(parts) if parts else "nothing"

    # --------------------------------------------------------------------------------------------------- logging
    def skip_logged_steps(self) -> None:
        """Remember the last step of every metric already in the run: :meth:`log_metrics` then drops points at or
        before it, so that the steps a resume replays (since the last checkpoint) are not logged twice."""
        if not self.enabled:
            return
        import mlflow

        def read() -> None:
            client = mlflow.MlflowClient(self.tracking_uri)
            for key in client.get_run(self.run_id).data.metrics:
                steps = [m.step for m in client.get_metric_history(self.run_id, key)]
                if steps:
                    self.logged_steps[key] = max(steps)

        self._call("the steps already logged (a resume may log some twice)", read)

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.enabled else None

    @property
    def info(self) -> dict[str, Any]:
        """The ``run.json`` content of this run ({} when disabled)."""
        if not self.enabled:
            return {}
        return {
            "run_id": self.run.info.run_id,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.run.info.experiment_id,
            "experiment_name": self.experiment_name,
        }

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches; on a continued run only the ones not logged yet (MLflow refuses changes)."""
        if not self.enabled or not params:
            return
        import mlflow

        def send() -> None:
            items = [(k, param_value(v)) for k, v in params.items()]
            existing = mlflow.get_run(self.run_id).data.params
            items = [(k, v) for k, v in items if k not in existing]
            for i in range(0, len(items), _PARAM_BATCH):
                mlflow.log_params(dict(items[i : i + _PARAM_BATCH]))

        self._call(f"params ({len(params)})", send)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled or not tags:
            return
        import mlflow

        self._call(f"tags {', '.join(sorted(tags))}", mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, synchronous: bool = False) -> None:
        """Metrics at ``step``: queued for the background sender, or sent now with ``synchronous=True``."""
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        if step is not None and self.logged_steps:
            metrics = {k: v for k, v in metrics.items() if step > self.logged_steps.get(k, -1)}
            if not metrics:
                return
        now = int(time.time() * 1000)
        points = [Metric(k, float(v), now, int(step or 0)) for k, v in metrics.items()]
        sender = self._metric_sender()
        if self.failure is not None:
            sender.lost.extend(points)
        elif synchronous:
            self._call(f"metrics {', '.join(sorted(metrics))}",
                       sender.client.log_batch, self.run_id, metrics=points, synchronous=True)
        else:
            sender.put(points)

    def _metric_sender(self) -> MetricSender:
        if self._sender is None:
            import mlflow

            self._sender = MetricSender(mlflow.MlflowClient(self.tracking_uri), self.run_id)
        return self._sender

    def log_metric_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Many ``(key, value, step)`` points in one request (e.g. a metric per frame, step = frame number)."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(s)) for k, v, s in points]
        if metrics:
            keys = sorted({m.key for m in metrics})
            self._call(f"metric series {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}",
                       self._metric_sender().client.log_batch, self.run_id, metrics=metrics)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        name = os.path.basename(str(path))
        self._call(f"artifact {artifact_path + '/' if artifact_path else ''}{name}", mlflow.log_artifact, str(path),
                   artifact_path=artifact_path)

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        self._call(f"artifacts of {folder}", mlflow.log_artifacts, str(folder), artifact_path=artifact_path)

    def log_image(self, image: str | os.PathLike | Any, key: str, step: int = 0) -> None:
        """An image (a PNG path or an HxWxC array) under ``key`` at ``step``: MLflow's run page and the comparison
        of runs show the images of a key side by side (``mlflow.log_image(key=..., step=...)``)."""
        if not self.enabled:
            return
        import mlflow
        import numpy as np

        if isinstance(image, (str, os.PathLike)):
            from PIL import Image

            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB"))
        self._call(f"image {key}", mlflow.log_image, image, key=key, step=int(step))

    def log_table(self, data: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A table (columns of equal length) as ``artifact_file`` (``.json``): the comparison's artifact view shows
        it for every run (``mlflow.log_table``)."""
        if not self.enabled:
            return
        import mlflow

        self._call(f"table {artifact_file}", mlflow.log_table, data=dict(data), artifact_file=artifact_file)

    def log_model(self, model: Any, input_example: Any, name: str = "model", serialization_format: str = "pt2",
                  metadata: Mapping[str, Any] | None = None) -> str | None:
        """``mlflow.pytorch.log_model`` with a signature inferred from ``input_example`` (batch >= 2);
        returns the model URI (None when not logged). Falls back to the pickle format when torch.export cannot
        trace the model."""
        if not self.enabled:
            return None
        return self._call(f"model {name}", log_pytorch_model, model, input_example, name=name,
                          serialization_format=serialization_format, metadata=metadata)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the metric points queued so far, at most ``timeout`` seconds (default :attr:`end_timeout`)."""
        if not self.enabled or self._sender is None:
            return
        self._sender.flush(self.end_timeout if timeout is None else timeout)
