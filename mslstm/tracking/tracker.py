"""The :class:`Tracker`: what a step logs into its open run (params, tags, metrics, artifacts, images, tables,
the model); every method does nothing when tracking is off or on a rank other than 0."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Iterable, Mapping

from mslstm.tracking.models import log_pytorch_model

_PARAM_BATCH = 100
_PARAM_MAX_LEN = 6000


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return text[:_PARAM_MAX_LEN]


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

    def skip_logged_steps(self) -> None:
        """Remember the last step of every metric already in the run: :meth:`log_metrics` then drops points at or
        before it, so that the steps a resume replays (since the last checkpoint) are not logged twice."""
        if not self.enabled:
            return
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        for key in client.get_run(self.run_id).data.metrics:
            steps = [m.step for m in client.get_metric_history(self.run_id, key)]
            if steps:
                self.logged_steps[key] = max(steps)

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

        items = [(k, _param_value(v)) for k, v in params.items()]
        existing = mlflow.get_run(self.run_id).data.params
        items = [(k, v) for k, v in items if k not in existing]
        for i in range(0, len(items), _PARAM_BATCH):
            mlflow.log_params(dict(items[i : i + _PARAM_BATCH]))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled or not tags:
            return
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, synchronous: bool = False) -> None:
        if not self.enabled or not metrics:
            return
        import mlflow

        if step is not None and self.logged_steps:
            metrics = {k: v for k, v in metrics.items() if step > self.logged_steps.get(k, -1)}
            if not metrics:
                return
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, synchronous=synchronous)

    def log_metric_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Many ``(key, value, step)`` points in one request (e.g. a metric per frame, step = frame number)."""
        if not self.enabled:
            return
        import mlflow
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(s)) for k, v, s in points]
        if metrics:
            mlflow.MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

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
        mlflow.log_image(image, key=key, step=int(step))

    def log_table(self, data: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A table (columns of equal length) as ``artifact_file`` (``.json``): the comparison's artifact view shows
        it for every run (``mlflow.log_table``)."""
        if not self.enabled:
            return
        import mlflow

        mlflow.log_table(data=dict(data), artifact_file=artifact_file)

    def log_model(self, model: Any, input_example: Any, name: str = "model", serialization_format: str = "pt2",
                  metadata: Mapping[str, Any] | None = None) -> str | None:
        """``mlflow.pytorch.log_model`` with a signature inferred from ``input_example`` (batch >= 2);
        returns the model URI. Falls back to the pickle format when torch.export cannot trace the model."""
        if not self.enabled:
            return None
        return log_pytorch_model(model, input_example, name=name, serialization_format=serialization_format,
                                 metadata=metadata)

    def flush(self) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.flush_async_logging()
