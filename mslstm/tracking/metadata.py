"""What a run is tagged and named with: git commit and dirty flag, the data hashes, the run name."""
from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mslstm.tracking.config import section

log = logging.getLogger(__name__)


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the working tree, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    """True when tracked files have uncommitted changes (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def data_hashes(data_dir: str | os.PathLike | None = None, dvc_file: str | os.PathLike = "data.dvc") -> dict[str, str]:
    """The DVC hash of the raw data (``outs[0].md5`` of ``data.dvc``) and ``raw_hash`` of the dataset's meta.json."""
    tags: dict[str, str] = {}
    dvc_path = Path(dvc_file)
    if dvc_path.is_file():
        try:
            spec = yaml.safe_load(dvc_path.read_text(encoding="utf-8")) or {}
            outs = spec.get("outs") or []
            if outs and isinstance(outs[0], dict) and outs[0].get("md5"):
                tags["data.dvc_md5"] = str(outs[0]["md5"])
        except (OSError, yaml.YAMLError) as exc:
            log.warning("%s: cannot read the DVC hash (%s)", dvc_path, exc)
    if data_dir is not None:
        meta_path = Path(data_dir) / "meta.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if meta.get("raw_hash"):
                    tags["data.raw_hash"] = str(meta["raw_hash"])
                if meta.get("source"):
                    tags["data.source"] = str(meta["source"])[:500]
            except (OSError, ValueError) as exc:
                log.warning("%s: cannot read the data hash (%s)", meta_path, exc)
    return tags


def run_tags(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Tags every training run carries: git commit (+ dirty flag) and data hashes."""
    tags = data_hashes(data_dir)
    # the working directory's repository, else the one the mslstm package is imported from (editable install)
    code_dir = Path(__file__).resolve().parent
    commit = git_commit() or git_commit(code_dir)
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.commit"] = commit
    dirty = git_dirty() if git_commit() else git_dirty(code_dir)
    if dirty is not None:
        tags["git.dirty"] = str(dirty).lower()
    return tags


def run_name(cfg: Any, step: str | None = None) -> str | None:
    """The name of a new run: ``tracking.run_name`` when set, else what ran, what tells runs apart first, e.g.
    ``mslstm lr=0.002 bs=16 ep=4 moving_mnist`` (``step`` prefixes it for a step run on its own, e.g.
    ``evaluate mslstm ...``). The MLflow UI cuts long names at the end (runs table, chart cards), so the model and
    the knobs come before the data source. None without a full Config (MLflow then picks a name)."""
    explicit = getattr(section(cfg), "run_name", None)
    if explicit:
        return str(explicit)
    model, data, train = (getattr(cfg, k, None) for k in ("model", "data", "train"))
    if model is None or train is None:
        return None
    batch = getattr(train, "global_batch_size", None) or getattr(train, "batch_size", "?")
    parts = [getattr(model, "name", "model"), f"lr={getattr(train, 'lr', '?'):g}", f"bs={batch}",
             f"ep={getattr(train, 'epochs', '?')}"]
    if getattr(train, "max_steps", 0):
        parts.append(f"steps={train.max_steps}")
    parts.append(str(getattr(data, "source", "") or "").replace("-", "_"))
    name = " ".join(p for p in parts if p)
    return f"{step} {name}" if step else name
