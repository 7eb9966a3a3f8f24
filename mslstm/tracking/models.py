"""Logging a PyTorch model into the active run (signature, input example, pt2 with a pickle fallback)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


def log_pytorch_model(model: Any, input_example: Any, name: str = "model", serialization_format: str = "pt2",
                      metadata: Mapping[str, Any] | None = None) -> str:
    """Log ``model`` into the active run with a signature and input example; returns the model URI."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    example = np.asarray(input_example, dtype=np.float32)
    if example.shape[0] < 2:
        raise ValueError("input_example: needs a batch of at least 2 so that the batch dimension stays dynamic")
    model = model.eval()
    with torch.no_grad():
        output = model(torch.from_numpy(example)).detach().cpu().numpy()
    signature = infer_signature(example, output)
    # explicit requirements: MLflow's inference of them re-imports the model in a subprocess (~15 s per log)
    reqs = [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"]
    kwargs = dict(name=name, signature=signature, input_example=example, metadata=dict(metadata or {}),
                  pip_requirements=reqs)
    if serialization_format == "pt2":
        try:
            info = mlflow.pytorch.log_model(model, serialization_format="pt2", **kwargs)
            return info.model_uri
        except Exception as exc:  # noqa: BLE001 - torch.export raises many kinds; the pickle format still works
            log.warning("torch.export of the model failed (%s: %s); logging it in the pickle format instead",
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
    # the pickle format imports the network's classes at load time: ship the ``model`` package with it
    import model as model_pkg

    info = mlflow.pytorch.log_model(model, serialization_format="pickle",
                                    code_paths=[str(Path(model_pkg.__file__).resolve().parent)], **kwargs)
    return info.model_uri
