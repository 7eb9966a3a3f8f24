"""``run.json``: the identity of the run training opened (``{"run_id", "tracking_uri", "experiment_id",
"experiment_name"}``), written next to a step's outputs so that later steps log into the same run."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from mslstm.io import write_json

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
RUN_INFO_KEYS = ("run_id", "tracking_uri", "experiment_id", "experiment_name")


def write_run_info(out_dir: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    """Write ``<out_dir>/run.json`` atomically."""
    return write_json(Path(out_dir) / RUN_JSON, {k: info.get(k) for k in RUN_INFO_KEYS})


def read_run_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read ``run.json`` (``path`` is the file or its folder); None when absent or unreadable."""
    p = Path(path)
    if p.is_dir():
        p = p / RUN_JSON
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable run info (%s); a new MLflow run will be used", p, exc)
        return None
    return info if isinstance(info, dict) and info.get("run_id") else None


def find_run_info(*candidates: Optional[str | os.PathLike]) -> Optional[dict[str, Any]]:
    """The first readable ``run.json`` among files/folders (None entries skipped)."""
    for c in candidates:
        if c is None:
            continue
        info = read_run_info(c) if Path(c).exists() else None
        if info:
            return info
    return None
