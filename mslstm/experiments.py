"""The paper's experiments: one config file each in ``configs/`` (``mnist.yaml``, ``kth.yaml``, ``taxibj.yaml``,
``dwd.yaml``), listed from the files themselves.

    from mslstm.experiments import list_experiments
    for e in list_experiments():          # every configs/*.yaml that is not a symbolic link (those are aliases)
        print(e.name, e.source, e.frames, e.size, e.metrics)

An experiment is its config file: its name is the file name, its title the file's first comment line; the data
source, frames, frame size, epochs and the metric set (``evaluate.metric_set``; ``auto`` resolved by the data source)
are read from the validated config. A symbolic link in the folder is an alias (``paper.yaml -> mnist.yaml``).
Adding an experiment is adding a config file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mslstm.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Experiment:
    """One experiment, as its config file declares it."""

    name: str
    title: str
    config: Path
    source: str
    input_frames: int
    output_frames: int
    channels: int
    frame_size: tuple[int, int]
    epochs: int
    global_batch: Optional[int]
    metric_set: str
    metrics: tuple[str, ...]
    aliases: tuple[str, ...] = field(default=())

    @property
    def frames(self) -> str:
        return f"{self.input_frames} -> {self.output_frames}"

    @property
    def size(self) -> str:
        return f"{self.frame_size[0]}x{self.frame_size[1]}x{self.channels}"

    def row(self) -> dict:
        """A JSON-ready row."""
        return {"name": self.name, "title": self.title, "config": str(self.config), "source": self.source,
                "frames": self.frames, "size": self.size, "epochs": self.epochs, "global_batch": self.global_batch,
                "metric_set": self.metric_set, "metrics": list(self.metrics), "aliases": list(self.aliases)}


def config_dir(path: Optional[str | os.PathLike] = None) -> Path:
    """The experiments folder: ``path``, else ``./configs`` when it exists, else the repository's ``configs/``."""
    if path is not None:
        folder = Path(path)
    elif (Path.cwd() / "configs").is_dir():
        folder = Path.cwd() / "configs"
    else:
        folder = PACKAGE_ROOT / "configs"
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no experiments folder (the configs/ of the repository)")
    return folder


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def load_experiment(path: str | os.PathLike, aliases: tuple[str, ...] = ()) -> Experiment:
    """The experiment of one config file (validated: a bad file raises ``ConfigError`` naming file and key)."""
    from mslstm.config import load_config
    from mslstm.evaluation.metric_sets import metric_set_for

    path = Path(path)
    cfg = load_config(path)
    mset = metric_set_for(cfg.evaluate.metric_set, cfg.data.source)
    m = cfg.model
    return Experiment(
        name=path.stem, title=_title(path), config=path, source=cfg.data.source, input_frames=m.input_frames,
        output_frames=m.output_frames, channels=m.in_channels, frame_size=tuple(m.frame_size),
        epochs=cfg.train.epochs, global_batch=cfg.train.global_batch_size, metric_set=mset.name,
        metrics=mset.metrics, aliases=aliases,
    )


def list_experiments(folder: Optional[str | os.PathLike] = None) -> list[Experiment]:
    """Every experiment in :func:`config_dir` (``*.yaml`` files; symbolic links are listed as aliases)."""
    folder = config_dir(folder)
    files = sorted(folder.glob("*.yaml"))
    aliases: dict[str, list[str]] = {}
    for f in files:
        if f.is_symlink():
            aliases.setdefault(f.resolve().stem, []).append(f.stem)
    return [load_experiment(f, tuple(aliases.get(f.stem, ()))) for f in files if not f.is_symlink()]


def summarise_metrics(metrics: tuple[str, ...]) -> str:
    """One line: per-threshold names grouped (``pod_0.5 ... pod_30`` -> ``pod@0.5/2/5/10/30``)."""
    parts: list[str] = []
    grouped: dict[str, list[str]] = {}
    for m in metrics:
        head, _, tail = m.partition("_")
        try:
            float(tail)
        except ValueError:
            parts.append(m)
            continue
        if head not in grouped:
            grouped[head] = []
            parts.append(head)
        grouped[head].append(tail)
    return ", ".join(f"{p}@{'/'.join(grouped[p])} mm/h" if p in grouped else p for p in parts)
