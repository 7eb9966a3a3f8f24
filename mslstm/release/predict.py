"""Prediction from a checkpoint or a registered model: the one logic behind ``mslstm predict`` and the pyfunc model.

    from mslstm.release.predict import load_predictor, predict_file
    predictor = load_predictor("models:/mslstm@champion")      # or "artifacts/train/best.pt"
    future = predictor.predict(frames, n_future=10)            # (B, T_in, C, H, W) float32 in [0, 1]

Input arrays: ``(B, T_in, C, H, W)`` or one sequence ``(T_in, C, H, W)``; float in [0, 1] or uint8 (divided by
255). Any ``T_in >= 1`` is accepted, through a checkpoint and a registered model alike (the model teacher-forces
the inputs it gets, then rolls out); fewer than the model's ``input_frames`` is logged as a warning. Anything else (wrong rank, channel count or frame size, NaN/inf, values outside [0, 1], no frames) raises a
:class:`~mslstm.errors.DataError` that names the input.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mslstm.errors import DataError

log = logging.getLogger(__name__)


def check_frames(array: Any, model_config: Any, source: str = "input") -> np.ndarray:
    """Validate ``array`` against the model; -> float32 (B, T_in, C, H, W) in [0, 1]."""
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{source}: expected a numeric array of frames, got dtype {arr.dtype}")
    if arr.ndim == 4:
        arr = arr[None]
    c, (h, w) = model_config.in_channels, tuple(model_config.frame_size)
    if arr.ndim != 5:
        raise DataError(
            f"{source}: expected frames of shape (B, T_in, C, H, W) = (B, T_in, {c}, {h}, {w}) or (T_in, C, H, W), "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{source}: no frames (shape {arr.shape})")
    if arr.shape[2] != c:
        raise DataError(f"{source}: frames have {arr.shape[2]} channels, the model expects {c} (shape {arr.shape})")
    if tuple(arr.shape[3:]) != (h, w):
        raise DataError(
            f"{source}: frame size {arr.shape[3]}x{arr.shape[4]} differs from the model's {h}x{w} (shape {arr.shape})"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataError(f"{source}: holds {bad} NaN/inf values; frames must be finite numbers in [0, 1]")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(f"{source}: values span [{lo:.4g}, {hi:.4g}]; frames must be in [0, 1] (or uint8 0..255)")
    if arr.shape[1] < model_config.input_frames:
        log.warning("%s: %d input frames, fewer than the %d the model was trained with; predicting anyway",
                    source, arr.shape[1], model_config.input_frames)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


class Predictor:
    """A model in eval mode plus its config: ``predict(frames, n_future)`` -> float32 numpy (B, n, C, H, W)."""

    def __init__(self, net: Any, batch_size: int = 16) -> None:
        self.net = net.eval()
        self.config = net.config
        self.batch_size = batch_size

    def predict(self, frames: Any, n_future: Optional[int] = None, source: str = "input") -> np.ndarray:
        import torch

        x = check_frames(frames, self.config, source)
        n = self.config.output_frames if n_future is None else int(n_future)
        if n < 1:
            raise DataError(f"{source}: n_future must be >= 1 (got {n})")
        device = next(self.net.parameters()).device
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                batch = torch.from_numpy(x[i: i + self.batch_size]).to(device)
                outs.append(self.net.predict(batch, n).clamp(0, 1).float().cpu().numpy())
        return np.concatenate(outs).astype(np.float32)


class MlflowPredictor:
    """A registered pyfunc model behind the same ``predict(frames, n_future)`` as :class:`Predictor`."""

    def __init__(self, uri: str) -> None:
        import mlflow.pyfunc

        from mslstm.errors import RegistryError

        try:
            self.model = mlflow.pyfunc.load_model(uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; one message naming the URI
            raise RegistryError(f"{uri}: cannot load the model ({type(exc).__name__}: {str(exc)[:300]})") from exc
        self.uri = uri
        self.config = _pyfunc_model_config(self.model)

    def predict(self, frames: Any, n_future: Optional[int] = None, source: str = "input") -> np.ndarray:
        from mlflow.exceptions import MlflowException

        x = check_frames(frames, self.config, source) if self.config is not None else np.asarray(frames, np.float32)
        params = {"n_future": int(n_future)} if n_future is not None else None
        try:
            return np.asarray(self.model.predict(x, params=params), dtype=np.float32)
        except MlflowException as exc:  # schema enforcement (a model logged with a fixed T_in), bad params
            first = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0][:200]
            raise DataError(f"{source}: {self.uri} refuses frames of shape {x.shape} ({first})") from None


def _pyfunc_model_config(model: Any) -> Any:
    """The ModelConfig behind a loaded pyfunc model (our wrapper exposes it), else None."""
    try:
        impl = model.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a python_model flavour
        return None
    return getattr(impl, "model_config", None)


def load_predictor(model: str | os.PathLike, device: str = "cpu") -> Predictor | MlflowPredictor:
    """``models:/name@alias`` / ``models:/name/3`` / ``runs:/...`` -> MLflow pyfunc; a ``.pt`` path -> checkpoint."""
    text = str(model)
    if text.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        return MlflowPredictor(text)
    from mslstm.training.checkpoint import load_model

    net, _ = load_model(Path(text), map_location=device)
    return Predictor(net)


def predict_file(model: str | os.PathLike, input_path: str | os.PathLike, output_path: str | os.PathLike,
                 gif_path: Optional[str | os.PathLike] = None, n_future: Optional[int] = None) -> dict[str, Any]:
    """Read frames from ``input_path`` (.npy), predict, write ``output_path`` (.npy) and optionally a GIF of the
    first sequence (inputs then predictions)."""
    from mslstm.io import save_npy

    input_path = Path(input_path)
    if not input_path.is_file():
        raise DataError(f"{input_path}: input file not found")
    try:
        frames = np.load(input_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{input_path}: not a readable .npy array ({str(exc)[:200]})") from exc
    predictor = load_predictor(model)
    pred = predictor.predict(frames, n_future, source=str(input_path))
    save_npy(output_path, pred)
    if gif_path:
        from mslstm.evaluation.visuals import save_prediction_gif

        inputs = check_frames(frames, predictor.config, str(input_path)) if predictor.config is not None else frames
        save_prediction_gif(gif_path, inputs[0], pred[0])
    log.info("predicted %s frames for %d sequences -> %s", pred.shape[1], pred.shape[0], output_path)
    return {"input": str(input_path), "output": str(output_path), "gif": str(gif_path) if gif_path else None,
            "shape": list(pred.shape), "model": str(model)}
