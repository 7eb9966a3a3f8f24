"""The MLflow pyfunc flavour of a trained model: the checkpoint travels as an artifact, prediction goes through the
same :class:`~mslstm.evaluation.predict.Predictor` as ``mslstm predict``.

    model = mlflow.pyfunc.load_model("models:/mslstm@champion")
    future = model.predict(frames, params={"n_future": 10})   # frames float32 (B, T_in, C, H, W) in [0, 1]
"""
from __future__ import annotations

import os
from typing import Any, Optional

import mlflow.pyfunc
import numpy as np

CHECKPOINT_ARTIFACT = "checkpoint"


class FramePredictorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict(context, frames, params={"n_future": N})`` -> float32 (B, N, C, H, W)."""

    def load_context(self, context: Any) -> None:
        from mslstm.evaluation.predict import Predictor
        from mslstm.training.checkpoint import load_model

        net, _ = load_model(context.artifacts[CHECKPOINT_ARTIFACT], map_location="cpu")
        self._predictor = Predictor(net)
        self.model_config = net.config

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        n_future = (params or {}).get("n_future")
        if n_future is not None and int(n_future) <= 0:
            n_future = None
        return self._predictor.predict(np.asarray(model_input), n_future, source="pyfunc input")


def log_pyfunc_model(checkpoint: str | os.PathLike, model_config: Any, name: str = "model",
                     registered_model_name: Optional[str] = None) -> Any:
    """Log the checkpoint as a pyfunc model into the active run (signature (B, T_in, C, H, W) -> (B, n, C, H, W),
    parameter ``n_future``); returns MLflow's ``ModelInfo``."""
    from mlflow.models import infer_signature

    c, (h, w) = model_config.in_channels, tuple(model_config.frame_size)
    example_in = np.zeros((2, model_config.input_frames, c, h, w), dtype=np.float32)
    example_out = np.zeros((2, model_config.output_frames, c, h, w), dtype=np.float32)
    signature = infer_signature(example_in, example_out, params={"n_future": int(model_config.output_frames)})
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=FramePredictorModel(),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        signature=signature,
        registered_model_name=registered_model_name,
        # the model code lives in this package; no environment inference (it would import and run the model)
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("torch", "numpy", "mlflow", "torchmetrics", "mslstm-pipeline"):
        try:
            v = version(pkg)
            reqs.append(f"{pkg}=={v.split('+')[0]}")
        except PackageNotFoundError:
            continue
    return reqs
