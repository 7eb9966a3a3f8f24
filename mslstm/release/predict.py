"""Prediction from a checkpoint or a registered model: the one logic behind ``mslstm predict`` and the pyfunc model.

    from mslstm.release.predict import load_predictor, predict_file
    predictor = load_predictor("models:/mslstm@champion")      # or "artifacts/train/best.pt"
    future = predictor.predict(frames, n_future=10)            # (B, T_in, C, H, W) float32 in [0, 1]
    predict_file("best.pt", "frames.npy", "pred.npy")          # streams: any size up to max_input_gb

Input arrays: ``(B, T_in, C, H, W)`` or one sequence ``(T_in, C, H, W)``; float in [0, 1] or uint8 (divided by
255). Any ``T_in >= 1`` is accepted, through a checkpoint and a registered model alike (the model teacher-forces
the inputs it gets, then rolls out); fewer than the model's ``input_frames`` is logged as a warning. Anything else
(wrong rank, channel count or frame size, NaN/inf, values outside [0, 1], no frames) raises a
:class:`~mslstm.errors.DataError` that names the input.

:func:`predict_file` streams: the input ``.npy`` is memory-mapped (``np.load(mmap_mode="r", allow_pickle=False)``),
checked and predicted ``batch_size`` sequences at a time, and each batch's prediction is written into a
memory-mapped ``.npy`` beside the output (``np.lib.format.open_memmap``, its space reserved up front so a full
disk is an error, not a crash) that is renamed onto the output at the end; the pages of both files that are done
with are handed back to the kernel, so the resident memory stays at about one batch whatever the file's size. A
file over ``max_input_gb`` (``mslstm predict --max-input-gb``, default :data:`DEFAULT_MAX_INPUT_GB`), or one that is
not a ``.npy`` array (text, headerless, ``.npz``, pickled objects, truncated) is refused in one line before the
model is loaded.
"""
from __future__ import annotations

import errno
import logging
import math
import mmap
import os
import time
import tokenize
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mslstm.errors import DataError

log = logging.getLogger(__name__)


DEFAULT_MAX_INPUT_GB = 8.0     # predict_file refuses a larger input (0 = no limit); streaming needs no more RAM
DEFAULT_BATCH_SIZE = 16
NPY_MAGIC = b"\x93NUMPY"


def check_shape(shape: tuple[int, ...], dtype: Any, model_config: Any, source: str = "input",
                warn: bool = True) -> tuple[int, ...]:
    """The checks that need no values: dtype, rank, channels, frame size, at least one frame; -> the 5-D shape
    (a 4-D shape is one sequence). Logs a warning (when ``warn``) for fewer input frames than the model's."""
    dtype = np.dtype(dtype)
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating) and not np.issubdtype(dtype, np.integer):
        raise DataError(f"{source}: expected a numeric array of frames, got dtype {dtype}")
    shape = tuple(int(n) for n in shape)
    if len(shape) == 4:
        shape = (1, *shape)
    c, (h, w) = model_config.in_channels, tuple(model_config.frame_size)
    if len(shape) != 5:
        raise DataError(
            f"{source}: expected frames of shape (B, T_in, C, H, W) = (B, T_in, {c}, {h}, {w}) or (T_in, C, H, W), "
            f"got shape {shape}"
        )
    if shape[0] < 1 or shape[1] < 1:
        raise DataError(f"{source}: no frames (shape {shape})")
    if shape[2] != c:
        raise DataError(f"{source}: frames have {shape[2]} channels, the model expects {c} (shape {shape})")
    if tuple(shape[3:]) != (h, w):
        raise DataError(
            f"{source}: frame size {shape[3]}x{shape[4]} differs from the model's {h}x{w} (shape {shape})"
        )
    if warn and shape[1] < model_config.input_frames:
        log.warning("%s: %d input frames, fewer than the %d the model was trained with; predicting anyway",
                    source, shape[1], model_config.input_frames)
    return shape


def check_values(array: Any, source: str = "input") -> np.ndarray:
    """Frames (any shape) -> float32 C-contiguous in [0, 1]: uint8 divided by 255; NaN/inf or values outside
    [0, 1] raise :class:`DataError` naming ``source``."""
    arr = np.asarray(array)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataError(f"{source}: holds {bad} NaN/inf values; frames must be finite numbers in [0, 1]")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(f"{source}: values span [{lo:.4g}, {hi:.4g}]; frames must be in [0, 1] (or uint8 0..255)")
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0))


def check_frames(array: Any, model_config: Any, source: str = "input", warn: bool = True) -> np.ndarray:
    """Validate ``array`` against the model; -> float32 (B, T_in, C, H, W) in [0, 1]."""
    arr = np.asarray(array)
    shape = check_shape(arr.shape, arr.dtype, model_config, source, warn)
    return check_values(arr.reshape(shape), source)


class Predictor:
    """A model in eval mode plus its config: ``predict(frames, n_future)`` -> float32 numpy (B, n, C, H, W)."""

    def __init__(self, net: Any, batch_size: int = 16) -> None:
        self.net = net.eval()
        self.config = net.config
        self.batch_size = batch_size

    def predict(self, frames: Any, n_future: Optional[int] = None, source: str = "input",
                warn: bool = True) -> np.ndarray:
        import torch

        x = check_frames(frames, self.config, source, warn)
        n = self.config.output_frames if n_future is None else int(n_future)
        if n < 1:
            raise DataError(f"{source}: n_future must be >= 1 (got {n})")
        device = next(self.net.parameters()).device
        out = np.empty((x.shape[0], n, *x.shape[2:]), dtype=np.float32)
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                batch = torch.from_numpy(x[i: i + self.batch_size]).to(device)
                out[i: i + batch.shape[0]] = self.net.predict(batch, n).clamp(0, 1).float().cpu().numpy()
        return out


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

    def predict(self, frames: Any, n_future: Optional[int] = None, source: str = "input",
                warn: bool = True) -> np.ndarray:
        from mlflow.exceptions import MlflowException

        x = (check_frames(frames, self.config, source, warn) if self.config is not None
             else np.asarray(frames, np.float32))
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


def open_frames(path: str | os.PathLike, max_input_gb: float = DEFAULT_MAX_INPUT_GB) -> np.ndarray:
    """Memory-map the ``.npy`` at ``path`` read-only (nothing is read yet) after checking, in one line each, that
    it exists, is at most ``max_input_gb`` GB (0 = no limit), and is a numeric ``.npy`` array whose data the file
    holds in full: a text or headerless file, an ``.npz`` archive, pickled objects or a truncated file are refused
    without NumPy's pickle hint."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    size = path.stat().st_size
    if max_input_gb and size > max_input_gb * 1e9:
        raise DataError(f"{path}: {size:,} bytes is over the predict input limit of {max_input_gb:g} GB "
                        f"({int(max_input_gb * 1e9):,} bytes); split the file or raise the limit (--max-input-gb, "
                        "0 = no limit)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
            if head.startswith(b"PK\x03\x04"):
                raise DataError(f"{path}: a .npz archive, not a .npy array; save the frames with numpy.save")
            if head != NPY_MAGIC:
                raise DataError(f"{path}: not a .npy array (no NumPy header: a text, headerless or other file); "
                                "save the frames with numpy.save")
            fh.seek(0)
            try:
                version = np.lib.format.read_magic(fh)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise DataError(f"{path}: .npy format version {version[0]}.{version[1]} (structured data); "
                                    "predict reads plain numeric arrays (format 1.0 or 2.0)")
                shape, _, dtype = reader(fh)
            except (ValueError, SyntaxError, tokenize.TokenError) as exc:   # numpy parses the header as Python
                raise DataError(f"{path}: damaged .npy header ({str(exc).splitlines()[0][:150]})") from None
            data_at = fh.tell()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the input ({exc.strerror or exc})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (dtype {dtype}), not numbers; predict reads numeric frames "
                        "saved with numpy.save")
    need = math.prod(shape) * dtype.itemsize
    if size - data_at < need:
        raise DataError(f"{path}: truncated: its header says shape {tuple(shape)} {dtype} ({need:,} bytes of data) "
                        f"but the file holds {size - data_at:,}")
    if need == 0:
        return np.zeros(shape, dtype)            # no frames: check_shape says so
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0][:200]})") from None


class _PageDropper:
    """Hands the pages of a C-contiguous memory-mapped array back to the kernel as a stream moves past them
    (``madvise(MADV_DONTNEED)``): the resident memory stays at about one batch. Written pages of a shared mapping
    stay in the page cache (dirty) and reach the file; a read page is read again from the file if touched.
    Without ``madvise`` (not Linux) or for other arrays it does nothing."""

    def __init__(self, array: np.ndarray) -> None:
        mm = getattr(array, "_mmap", None)
        usable = isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED")
        self.mm = mm if usable and array.flags.c_contiguous and array.ndim >= 1 else None
        if self.mm is not None:
            self.base = int(array.offset) % mmap.ALLOCATIONGRANULARITY     # where the data starts in the map
            self.row = int(array.strides[0]) if array.shape[0] > 1 else int(array.nbytes)
            self.done = 0                                                 # bytes of the map already dropped

    def upto(self, rows: int) -> None:
        """Drop the whole pages before row ``rows``."""
        if self.mm is None:
            return
        end = (self.base + rows * self.row) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > self.done:
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, self.done, end - self.done)
            except (OSError, ValueError):   # a closed map, an unsupported kernel: only the memory bound is lost
                self.mm = None
                return
            self.done = end


def _reserve(path: Path, nbytes: int) -> None:
    """Allocate ``nbytes`` of ``path`` now: a full disk is an ``OSError`` here, not a SIGBUS while writing the map."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, nbytes)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):   # not: a file system without fallocate
                raise


def predict_stream(predictor: Any, frames: np.ndarray, output_path: str | os.PathLike,
                   n_future: Optional[int] = None, batch_size: int = DEFAULT_BATCH_SIZE, source: str = "input",
                   progress: bool = True) -> tuple[int, ...]:
    """Predict ``frames`` (a memory-mapped (B, T_in, C, H, W) or (T_in, C, H, W) array, or any array) batch by
    batch into the ``.npy`` at ``output_path`` (written beside it, renamed onto it at the end; nothing is left
    on an error); returns the output's shape. Values are checked batch by batch: a bad one names its sequences."""
    from mslstm.io import atomic_path, writing
    from mslstm.training.progress import progress_bar

    if batch_size < 1:
        raise DataError(f"{source}: batch size must be >= 1 (got {batch_size})")
    if predictor.config is not None:
        shape = check_shape(frames.shape, frames.dtype, predictor.config, source)
    else:
        shape = (1, *frames.shape) if frames.ndim == 4 else tuple(frames.shape)
    x = frames.reshape(shape)
    total = shape[0]
    if total < 1:
        raise DataError(f"{source}: no frames (shape {tuple(frames.shape)})")
    src_pages = _PageDropper(x)
    bar = progress_bar(total=total, desc="predict", unit="seq", enabled=progress)
    every = max(1, math.ceil(total / batch_size / 10))       # without a bar: a log line per ~10 %
    t0 = time.perf_counter()
    out = None
    output_path = Path(output_path)
    try:
        with atomic_path(output_path) as tmp:
            for k, i in enumerate(range(0, total, batch_size)):
                j = min(i + batch_size, total)
                where = source if total <= batch_size else f"{source} sequences {i}..{j - 1}"
                pred = predictor.predict(x[i:j], n_future, source=where, warn=False)
                if out is None:
                    out_shape = (total, *pred.shape[1:])
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=out_shape)
                    _reserve(tmp, int(out.offset) + int(out.nbytes))
                    out_pages = _PageDropper(out)
                out[i:j] = pred
                del pred
                src_pages.upto(j)
                out_pages.upto(j)
                if bar is not None:
                    bar.update(j - i)
                elif (k + 1) % every == 0 or j == total:
                    log.info("predict: %d/%d sequences (%.1f seq/s)", j, total, j / (time.perf_counter() - t0))
            with writing(output_path):
                out.flush()
            del out_pages
            out = None
    finally:
        if bar is not None:
            bar.close()
        del out
    secs = time.perf_counter() - t0
    log.info("predicted %d sequences in %.1f s (%.1f seq/s) -> %s", total, secs, total / max(secs, 1e-9),
             output_path)
    return out_shape


def predict_file(model: str | os.PathLike, input_path: str | os.PathLike, output_path: str | os.PathLike,
                 gif_path: Optional[str | os.PathLike] = None, n_future: Optional[int] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_input_gb: float = DEFAULT_MAX_INPUT_GB,
                 progress: bool = True) -> dict[str, Any]:
    """Read frames from ``input_path`` (.npy, memory-mapped), predict them ``batch_size`` sequences at a time
    into ``output_path`` (.npy, written incrementally, renamed at the end) and optionally write a GIF of the
    first sequence (inputs then predictions). An input over ``max_input_gb`` GB (0 = no limit) is refused."""
    input_path = Path(input_path)
    frames = open_frames(input_path, max_input_gb)
    predictor = load_predictor(model)
    if isinstance(predictor, Predictor):
        predictor.batch_size = batch_size
    shape = predict_stream(predictor, frames, output_path, n_future, batch_size, str(input_path), progress)
    if gif_path:
        from mslstm.evaluation.visuals import save_prediction_gif

        first = frames if frames.ndim == 4 else frames[0]
        inputs = (check_frames(first, predictor.config, str(input_path), warn=False)[0]
                  if predictor.config is not None else np.asarray(first, np.float32))
        pred0 = np.array(np.load(output_path, mmap_mode="r", allow_pickle=False)[0])
        save_prediction_gif(gif_path, inputs, pred0)
    return {"input": str(input_path), "output": str(output_path), "gif": str(gif_path) if gif_path else None,
            "shape": list(shape), "model": str(model)}
