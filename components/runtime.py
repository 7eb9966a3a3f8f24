"""Helpers the component bodies import inside the project image (kept out of the bodies so they stay thin).

Everything here maps pipeline parameters and artifact paths onto the step functions' arguments; no step logic.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from mslstm.config import Config

log = logging.getLogger(__name__)

# Pipeline parameter -> config key it overrides (0 / "" = keep the config's value).
RUN_PARAMS = {
    "model_name": "model.name",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
}


def run_overrides(**values: Any) -> dict[str, Any]:
    """Per-run pipeline parameters -> ``{"section.key": value}``, skipping the "keep" values (0, 0.0, "")."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        key = RUN_PARAMS[name]
        if value in (None, "", 0, 0.0):
            continue
        # Locally, numbers that travel through dsl.Collected or JSON may arrive as floats: cast back.
        if name in ("epochs", "batch_size"):
            value = int(value)
        elif name == "lr":
            value = float(value)
        out[key] = value
    return out


def load_config_json(config_json: str, overrides: Mapping[str, Any] | None = None) -> Config:
    """The config that travels as a pipeline parameter (JSON of ``Config.to_dict()``), validated, overridden."""
    from mslstm.config import config_from_dict
    from mslstm.errors import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        tree = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"pipeline parameter config: not valid JSON: {exc}") from exc
    cfg = config_from_dict(tree, "pipeline parameter config")
    return cfg.replace(dict(overrides)) if overrides else cfg


def numeric_items(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten a (nested) dict to the finite numbers in it: ``{"a": {"b": 1}} -> {"a.b": 1.0}``."""
    from mslstm.configtools import flatten

    return {
        k: float(v) for k, v in flatten(d, prefix).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def log_metrics(metrics: Any, values: Mapping[str, Any]) -> dict[str, float]:
    """Log the numbers of ``values`` into a KFP ``Metrics`` artifact (shown in the run's UI)."""
    nums = numeric_items(values)
    for key, value in nums.items():
        metrics.log_metric(key, value)
    return nums


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Copy ``src`` onto an artifact path if it exists (reports are optional outputs of some steps)."""
    src = Path(src)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        shutil.copyfile(src, dst)
        return True
    Path(dst).write_text(f"({src.name} was not produced)\n", encoding="utf-8")
    return False


def checkpoint_in(model_dir: str | os.PathLike) -> str:
    """The checkpoint a ``Model`` artifact directory holds (best.pt, else last.pt)."""
    from mslstm.training.checkpoint import find_checkpoint

    return str(find_checkpoint(model_dir))


def run_id_in(model_dir: str | os.PathLike) -> str | None:
    """The MLflow run id training opened (``run.json``), if any."""
    return read_json(Path(model_dir) / "run.json").get("run_id") or None


def write_params(cfg: Config, path: str | os.PathLike) -> Path:
    """Write a Config as a params file (for torchrun sub-processes)."""
    from mslstm.io import write_json

    return write_json(path, cfg.to_dict())  # JSON is valid YAML


def ablation_results(results: list[Any]) -> list[dict[str, Any]]:
    """The collected per-model results (JSON strings from the evaluate tasks) as dicts, in model order."""
    out = []
    for item in results:
        out.append(json.loads(item) if isinstance(item, str) else dict(item))
    return out


def html_report(path: str | os.PathLike, title: str, metrics: Mapping[str, float], pictures_dir: str | os.PathLike) -> Path:
    """A self-contained HTML page: the metrics table and the step's PNG pictures inlined (KFP UI shows it)."""
    import base64
    import html

    from mslstm.io import write_text

    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.6g}</td></tr>" for k, v in sorted(metrics.items())
    )
    images = []
    for png in sorted(Path(pictures_dir).glob("*.png"))[:8]:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        images.append(f'<figure><img src="data:image/png;base64,{data}"/><figcaption>{html.escape(png.name)}</figcaption></figure>')
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><table border='1'><tr><th>metric</th><th>value</th></tr>{rows}</table>"
        f"{''.join(images)}</body></html>\n"
    )
    return write_text(path, page)
