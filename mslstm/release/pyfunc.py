"""The MLflow pyfunc flavour of a trained model: the checkpoint travels as an artifact, prediction goes through the
same :class:`~mslstm.release.predict.Predictor` as ``mslstm predict``.

    model = mlflow.pyfunc.load_model("models:/mslstm@champion")
    future = model.predict(frames, params={"n_future": 10})   # frames float32 (B, T_in, C, H, W) in [0, 1]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import mlflow.pyfunc
import numpy as np

CHECKPOINT_ARTIFACT = "checkpoint"
#: The models-from-code file MLflow copies into the model and runs on load.
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")


class FramePredictorModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict(context, frames, params={"n_future": N})`` -> float32 (B, N, C, H, W)."""

    def load_context(self, context: Any) -> None:
        from mslstm.release.predict import Predictor
        from mslstm.training.checkpoint import load_model

        net, _ = load_model(context.artifacts[CHECKPOINT_ARTIFACT], map_location="cpu")
        self._predictor = Predictor(net)
        self.model_config = net.config

    # model_input: np.ndarray is a hint MLflow accepts without inferring a schema from it (the logged signature
    # is the schema); without any hint MLflow warns at class definition.
    def predict(self, context: Any, model_input: np.ndarray, params: Optional[dict[str, Any]] = None) -> np.ndarray:
        n_future = (params or {}).get("n_future")
        if n_future is not None and int(n_future) <= 0:
            n_future = None
        return self._predictor.predict(np.asarray(model_input), n_future, source="pyfunc input")


def log_pyfunc_model(checkpoint: str | os.PathLike, model_config: Any, name: str = "model",
                     registered_model_name: Optional[str] = None) -> Any:
    """Log the checkpoint as a pyfunc model into the active run; returns MLflow's ``ModelInfo``.

    A models-from-code model (``python_model`` is the path of :mod:`mslstm.release.pyfunc_model`, which calls
    ``mlflow.models.set_model``): nothing is pickled. Signature :func:`frames_signature`, and an input example of
    one all-zero sequence of ``input_frames`` frames.
    """
    c, (h, w) = model_config.in_channels, tuple(model_config.frame_size)
    example_in = np.zeros((1, model_config.input_frames, c, h, w), dtype=np.float32)
    signature = frames_signature(model_config)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        signature=signature,
        input_example=example_in,
        registered_model_name=registered_model_name,
        # the model code lives in this package; no environment inference (it would import and run the model)
        pip_requirements=_requirements(),
    )


def frames_signature(model_config: Any) -> Any:
    """(B, T_in, C, H, W) -> (B, n, C, H, W) float32 with the parameter ``n_future``; B, T_in and n are free (-1):
    the model predicts from any number of input frames >= 1, as ``mslstm predict`` with a checkpoint does."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    c, (h, w) = model_config.in_channels, tuple(model_config.frame_size)
    frames = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(frames, (-1, -1, c, h, w))]),
        outputs=Schema([TensorSpec(frames, (-1, -1, c, h, w))]),
        params=ParamSchema([ParamSpec("n_future", "long", int(model_config.output_frames))]),
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
