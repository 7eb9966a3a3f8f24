"""Helpers (no tests) shared by the end-to-end pipeline tests: a tiny config and a throw-away copy of the repository."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Seconds, not minutes: 3 -> 3 frames, 8 training sequences, 2 optimizer steps, a two-layer pyramid.
TINY: dict[str, dict[str, Any]] = {
    "data": {"train_sequences": 8, "val_sequences": 4, "test_sequences": 4, "input_frames": 3, "output_frames": 3},
    "validate": {"min_sequences": 2},
    "model": {"input_frames": 3, "output_frames": 3, "hidden": 4, "layers": 2, "scales": [1, 1], "patch_size": 4},
    "train": {"epochs": 1, "batch_size": 4, "max_steps": 2, "progress": "quiet", "val_batches": 1, "device": "cpu"},
    "tracking": {"system_metrics": False, "log_model": False, "log_checkpoint": False},
    "evaluate": {"batch_size": 4, "num_examples": 1, "max_sequences": 4},
    "profile": {"device": "cpu", "batch_size": 1, "warmup": 0, "repeats": 1},
    "ablation": {"models": ["convlstm", "mslstm"], "epochs": 1, "steps": 1, "eval_sequences": 2},
}


def tiny_params(base: Path = ROOT / "params.yaml") -> dict[str, Any]:
    tree = yaml.safe_load(base.read_text())
    for section, values in TINY.items():
        tree.setdefault(section, {}).update(values)
    return tree


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "KF_PIPELINES"))}
    e.update(
        PATH=f"{BIN}:{e.get('PATH', '')}",
        PYTHONPATH=str(ROOT),  # this checkout's code, whatever the editable install points at
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@localhost",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@localhost",
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    e.update(extra)
    return e


def run(cmd: list[str], cwd: Path, timeout: float = 600, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def repo_copy(dest: Path) -> Path:
    """The repository's tracked files (as in the working tree) in a fresh git repo, with the tiny params.yaml."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    for rel in filter(None, files.split("\0")):
        src = ROOT / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    run(["git", "init", "-q"], dest)  # (repo_copy callers run the copy's own code: PYTHONPATH=dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy"], dest)
    return dest
