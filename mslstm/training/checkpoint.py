"""Self-describing, safe checkpoints.

A checkpoint is one ``torch.save`` file holding a plain dict (the *payload*)::

    format_version  int (FORMAT_VERSION)
    model_config    dict (``to_dict(ModelConfig)``): enough to rebuild the network
    config          dict (the whole validated ``Config.to_dict()``)
    model           state_dict of the *unwrapped* module (no ``module.`` / ``_orig_mod.`` prefixes)
    optimizer, scheduler, scaler   their state_dicts (scheduler/scaler may be None)
    epoch, step     training position (``step`` = optimizer steps done; see ``mslstm.training.train``)
    rng             ``capture_rng_state()``: python / numpy / torch / cuda generator states
    metrics         dict of floats
    train_state     position in the epoch, early-stopping state, history (see ``mslstm.training.checkpointer``)

Writing is atomic (temporary file + rename: a crash never leaves a half-written checkpoint and never destroys the
previous one). Reading always uses ``torch.load(weights_only=True)``: a file with pickled code in it is refused,
never executed. Every failure is a :class:`~mslstm.errors.CheckpointError` naming the file and the problem.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from mslstm.errors import CheckpointError, OutputError
from mslstm.io import atomic_path, free_bytes, require_file, require_free_space

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_config", "model")
# ModelConfig keys that change the memory layout only, not the weights: ignored when configs are compared.
LAYOUT_ONLY_KEYS = frozenset({"channels_last"})
CHECKPOINT_NAMES = ("best.pt", "last.pt")  # what find_checkpoint looks for, in order


def unwrap_model(module: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def find_checkpoint(folder: str | os.PathLike) -> Path:
    """The checkpoint a training output folder holds: ``best.pt``, else ``last.pt``.

    Raises:
        CheckpointError: neither file is there (names the folder).
    """
    d = Path(folder)
    for name in CHECKPOINT_NAMES:
        if (d / name).is_file():
            return d / name
    raise CheckpointError(f"{d}: no {' or '.join(CHECKPOINT_NAMES)} in this folder; train into it first")


def payload_nbytes(obj: Any) -> int:
    """Bytes of the tensors in a payload (nested dicts/lists): a lower bound of the checkpoint's size."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(payload_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_nbytes(v) for v in obj)
    return 0


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (``format_version`` is filled in when missing).

    A full disk is an :class:`~mslstm.errors.OutputError` naming the file, the bytes needed and free, raised before
    writing when the tensors alone do not fit, else when the write fails (torch reports it as an ``unexpected pos``
    RuntimeError); the previous file at ``path`` stays as it was.
    """
    path = Path(path)
    data = dict(payload)
    data.setdefault("format_version", FORMAT_VERSION)
    needed = payload_nbytes(data)
    require_free_space(path, needed, "the checkpoint")
    with atomic_path(path) as tmp:
        try:
            torch.save(data, tmp)
        except RuntimeError as exc:  # torch's zip writer turns a failed write (ENOSPC) into a RuntimeError
            free = free_bytes(path)
            text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            if free < max(needed, 1) * 2 or "unexpected pos" in text or "write" in text.lower():
                raise OutputError(f"{path}: writing the checkpoint failed, the disk is (nearly) full: needs at least "
                                  f"{needed:,} bytes, {free:,} free ({text}); free some space and resume with "
                                  "--resume") from exc
            raise
    log.debug("checkpoint written: %s", path)
    return path


def _normalise(obj: Any) -> Any:
    """Tuples -> lists, recursively, so that configs from dataclasses and from files compare alike."""
    if isinstance(obj, (list, tuple)):
        return [_normalise(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _normalise(v) for k, v in obj.items()}
    return obj


def _config_dict(cfg: Any) -> dict[str, Any]:
    from mslstm.config import to_dict

    return _normalise(cfg if isinstance(cfg, Mapping) else to_dict(cfg))


def check_model_config(path: str | os.PathLike, payload: Mapping[str, Any], expected: Any) -> None:
    """Raise CheckpointError when the checkpoint's ``model_config`` differs from ``expected`` (names the keys)."""
    want = _config_dict(expected)
    got = _normalise(dict(payload.get("model_config") or {}))
    diffs = [k for k in sorted(set(want) | set(got)) if k not in LAYOUT_ONLY_KEYS and want.get(k) != got.get(k)]
    if diffs:
        shown = ", ".join(f"model.{k}: checkpoint {got.get(k)!r} vs config {want.get(k)!r}" for k in diffs[:4])
        raise CheckpointError(
            f"{path}: checkpoint belongs to another model/config ({shown}); use a checkpoint trained with this "
            "model config or change the model section"
        )


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", expected_model_config: Any = None
) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and check its format.

    Args:
        path: the ``.pt`` file.
        map_location: passed to ``torch.load``.
        expected_model_config: a ``ModelConfig`` (or its dict); when given, a checkpoint of another model or
            shape raises.

    Raises:
        CheckpointError: missing, empty, truncated or corrupt file; pickled code; wrong format_version; another
            model config.
    """
    path = require_file(path, CheckpointError, "checkpoint",
                        " (0 bytes); the write was interrupted, use another file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            TypeError, AttributeError, ImportError, IndexError) as exc:
        _raise_load_error(path, exc)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not an mslstm checkpoint (holds a {type(payload).__name__}, not a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not an mslstm checkpoint (missing key(s): {', '.join(missing)})")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported (expected {FORMAT_VERSION}); "
            "retrain or convert it"
        )
    if not isinstance(payload["model_config"], dict) or not isinstance(payload["model"], Mapping):
        raise CheckpointError(f"{path}: malformed checkpoint (model_config must be a dict, model a state dict)")
    if expected_model_config is not None:
        check_model_config(path, payload, expected_model_config)
    return payload


# modules a checkpoint's pickle may name: tensors, their storages and containers (anything else is code)
SAFE_PICKLE_MODULES = ("torch", "collections", "_codecs", "numpy", "math")


def pickled_code(path: str | os.PathLike) -> list[str]:
    """The callables a checkpoint's pickle names outside tensors and containers (e.g. ``posix.system``), read with
    :mod:`pickletools` (nothing is executed); [] when there are none or the file cannot be parsed.

    This is how a refusal is explained whatever words ``torch.load`` uses for it (they differ between torch
    versions and between ``GLOBAL`` and ``STACK_GLOBAL`` pickles)."""
    import io
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                blob = zf.read(name) if name else b""
        else:
            with open(path, "rb") as fh:
                blob = fh.read(64 * 2**20)
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found: list[str] = []
    pos = 0
    while pos < len(blob):  # legacy torch files hold several pickles back to back
        strings: list[str] = []
        end = None
        try:
            stream = io.BytesIO(blob[pos:])
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "STRING",
                               "BINSTRING", "SHORT_BINSTRING"):
                    strings.append(str(arg))
                elif op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif op.name == "STOP":
                    end = stream.tell()
                    break
        except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError):
            break
        if end is None:
            break
        pos += end
    return [g for g in dict.fromkeys(found) if g.split(".", 1)[0] not in SAFE_PICKLE_MODULES]


def _raise_load_error(path: Path, exc: BaseException) -> None:
    """The one-line CheckpointError for a failed ``torch.load``: "holds code" when the pickle names callables, else
    corrupt/truncated with torch's reason (never its advice to retry with ``weights_only=False``)."""
    code = pickled_code(path)
    if code:
        raise CheckpointError(
            f"{path}: refused, the file holds code (a pickled call to {', '.join(code[:3])}) that is never "
            "loaded or run; only load checkpoints written by `mslstm train`"
        ) from exc
    if isinstance(exc, pickle.UnpicklingError):
        raise CheckpointError(f"{path}: corrupt checkpoint, not a weights-only file ({_unpickler_reason(str(exc))}); "
                              "only load checkpoints written by `mslstm train`") from exc
    first = _unpickler_reason(str(exc)) if str(exc).strip() else type(exc).__name__
    raise CheckpointError(
        f"{path}: corrupt or truncated checkpoint, torch.load failed: {type(exc).__name__}: {first[:200]}"
    ) from exc


def _unpickler_reason(message: str) -> str:
    """The one useful line of torch's weights_only error (e.g. ``Unsupported operand 149``), without torch's advice
    to load the file with ``weights_only=False`` (never to be followed for a file that failed this check)."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest[:200]
            lines = lines[i + 1:]
            break
    useful = [ln for ln in lines if "weights_only" not in ln.replace(" ", "_").lower() and "Weights only" not in ln
              and not ln.startswith(("Check the documentation", "Please file an issue", "(1)", "(2)"))]
    return useful[0][:200] if useful else "the pickle holds something other than tensors and containers"


RESUME_HINT = "the code changed since the checkpoint was written: train anew into another folder"
LOAD_HINT = ("the checkpoint was written by other code or edited since: use one written by this code, or train "
             "anew")


def check_weights(path: str | os.PathLike, state: Mapping[str, Any], model: nn.Module,
                  built_from: str = "the model built from this config", hint: str = RESUME_HINT) -> None:
    """Raise CheckpointError naming the file and the missing / unexpected / mismatched keys (with shapes) when
    ``state`` (a state dict) does not fit ``model`` (e.g. a checkpoint from before a code change, with the same
    model config). The one check behind ``train --resume`` and every :func:`load_model` (evaluate, predict,
    register, layers)."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(want[k].shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape checkpoint vs model", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    if parts:
        raise CheckpointError(f"{path}: weights do not fit {built_from} ({'; '.join(parts)}); {hint}")


def load_weights(path: str | os.PathLike, state: Mapping[str, Any], model: nn.Module,
                 built_from: str = "the model built from this config", hint: str = RESUME_HINT) -> None:
    """Load ``state`` into ``model`` strictly after :func:`check_weights` (a misfit names its keys and ``path``)."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'model' holds {type(state).__name__}, not a state dict of tensors")
    check_weights(path, state, model, built_from, hint)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:   # what check_weights does not see (e.g. a non-tensor value)
        detail = "; ".join(ln.strip() for ln in str(exc).strip().splitlines()[1:] if ln.strip()) or str(exc)
        raise CheckpointError(f"{path}: weights do not fit {built_from} ({detail[:300]}); {hint}") from None


def model_config_of(path: str | os.PathLike, payload: Mapping[str, Any]):
    """The ``ModelConfig`` stored in a payload (validated; CheckpointError when it is not a valid config)."""
    from model import ModelConfig

    from mslstm.config import from_dict
    from mslstm.errors import ConfigError

    try:
        return from_dict(ModelConfig, payload["model_config"], "model")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: model_config in the checkpoint is not valid: {exc}") from exc


def load_model(
    path: str | os.PathLike, map_location: Any = "cpu", expected_model_config: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint, load its weights; returns ``(model in eval mode, payload)``."""
    from model import build_model

    payload = load_checkpoint(path, map_location=map_location, expected_model_config=expected_model_config)
    mcfg = model_config_of(path, payload)
    net = build_model(mcfg)
    load_weights(path, payload["model"], net, f"model {mcfg.name!r} built from the checkpoint's model_config",
                 LOAD_HINT)
    net.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    net.eval()
    return net, payload


# ---------------------------------------------------------------------------------------------- RNG states
def capture_rng_state() -> dict[str, Any]:
    """States of every generator training uses, as weights_only-loadable values (tensors, ints, lists)."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(v) for v in mt], gauss],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any] | None) -> None:
    """Inverse of :func:`capture_rng_state` (missing parts are left as they are)."""
    if not state:
        return
    if state.get("python") is not None:
        version, mt, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in mt), gauss))
    if state.get("numpy") is not None:
        s = state["numpy"]
        keys = s["keys"].numpy() if isinstance(s["keys"], torch.Tensor) else np.asarray(s["keys"])
        np.random.set_state((s["name"], keys.astype(np.uint32), int(s["pos"]), int(s["has_gauss"]),
                             float(s["cached_gaussian"])))
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])
        else:
            log.warning("checkpoint holds %d CUDA RNG states, this machine has %d GPUs: CUDA RNG not restored",
                        len(cuda), torch.cuda.device_count())
