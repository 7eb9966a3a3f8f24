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

import numpy as np

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


# ------------------------------------------------------------------------------- sequences per split (counts)
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitCounts:
    """Sequences per split that an experiment's configuration builds (``project``) and that the authors' loader
    builds from the same files (``authors``; their val split is their test split, so it is None), with how each
    was found (``how``: from the config, from the user's files, from the distribution's known sizes, or why
    not known)."""

    project: Optional[dict[str, int]]
    authors: Optional[dict[str, Optional[int]]]
    how: str

    def row(self) -> dict:
        return {"project": self.project, "authors": self.authors, "how": self.how}


def _kth_counts(cfg) -> SplitCounts:
    """From the segment list (``data.segments`` or ``<data.path>/00sequences.txt``) alone: every listed range of
    the kept actions, windowed by the project's rule (persons by split, per-action strides) and by the authors'
    (``range(a, b - T + 2, n_skip)``, persons 1-16 train and 17-25 test, MS-RNN util/load_kth_only_run.py)."""
    from mslstm.data.sources import kth
    from mslstm.data.sources._frames import window_starts

    d = cfg.data
    path = Path(d.segments) if d.segments not in ("", "none") else Path(d.path) / kth.SEGMENTS_FILE
    if d.segments == "none" or not path.is_file():
        return SplitCounts(None, None, f"no segment list at {path}: counting whole videos needs the videos decoded "
                                       "(run `mslstm data`); the authors' counts need their list")
    segments = kth.read_segments(path)
    wanted = tuple(d.actions) or kth.ACTIONS
    total = d.input_frames + d.output_frames
    authors_skip = {"running": 3, "jogging": 10, "walking": 10}
    project = dict.fromkeys(SPLIT_NAMES, 0)
    authors: dict[str, Optional[int]] = {"train": 0, "val": None, "test": 0}
    for name, segs in segments.items():
        _, action, _ = name.split("_")
        if action not in wanted:
            continue
        person = int(name[6:8])
        split = kth.split_of(person, tuple(d.val_persons), tuple(d.test_persons))
        stride = kth.stride_of(d, action)
        for s in segs:
            project[split] += len(window_starts(s.end - s.start + 1, total, d.frame_stride, stride))
            if action in authors_skip:
                side = "test" if person >= 17 else "train"
                authors[side] = int(authors[side] or 0) + len(range(s.start, s.end - total + 2, authors_skip[action]))
    return SplitCounts(project, authors, f"from the segment list {path} (ranges assumed inside their videos)")


def _taxibj_counts(cfg) -> SplitCounts:
    """From the files' ``date`` arrays: the project's windows inside each split's gap-free runs; the authors':
    per file, after dropping incomplete days, one window for each slot whose T preceding slots exist (the slot
    itself is not in it), the last 4 weeks x 48 = 1,344 windows as test (util/load_taxibj.py)."""
    import h5py

    from mslstm.data.sources import taxibj
    from mslstm.data.sources._frames import window_starts

    d = cfg.data
    root = Path(d.path)
    if not root.is_dir() or not any(taxibj.FILE_RE.match(p.name) for p in root.glob(taxibj.FILE_GLOB)):
        return SplitCounts(None, {"train": None, "val": None, "test": 48 * 7 * 4},
                           f"no TaxiBJ files at {root}: the authors' test split is 4 weeks x 48 = 1,344 windows, "
                           "train all windows before them")
    total = d.input_frames + d.output_frames
    all_times, authors_windows = [], 0
    for p in taxibj.list_files(root):
        with h5py.File(p, "r") as f:
            raw = np.asarray(f["date"][()])
        times, labels = taxibj.parse_dates(raw, p)
        all_times.append(times)
        days: dict[str, int] = {}
        for lab in labels:
            days[lab[:8]] = days.get(lab[:8], 0) + 1
        kept = np.array([t for t, lab in zip(times, labels) if days[lab[:8]] == 48], dtype="datetime64[m]")
        present = set(kept.tolist())
        authors_windows += sum(all((t - j * taxibj.SLOT).tolist() in present for j in range(1, total + 1))
                               for t in kept[total:])
    times = np.sort(np.concatenate(all_times))
    bounds = taxibj.split_bounds(times, d.test_weeks, d.val_weeks)
    runs = taxibj.runs_by_split(times, bounds)
    project = {s: sum(len(window_starts(e - a, total, d.frame_stride, d.sequence_stride)) for a, e in runs[s])
               for s in SPLIT_NAMES}
    test = min(48 * 7 * 4, authors_windows)
    return SplitCounts(project, {"train": authors_windows - test, "val": None, "test": test},
                       f"from the date arrays of the files in {root}")


def _dwd_counts(cfg) -> SplitCounts:
    """From the scan times (RADOLAN file names, or the HDF5 keys): the project's windows inside gap-free runs of
    each split; the authors': back-to-back blocks of (in + out) x 6 scans by position in each split's sorted file
    list, no gap check (util/load_hko.py, used for DWD)."""
    from mslstm.data.sources import dwd
    from mslstm.data.sources._frames import split_runs, window_starts

    d = cfg.data
    root = Path(d.path)
    total = d.input_frames + d.output_frames
    if root.is_dir():
        found = [(dwd.RADOLAN_RE.match(p.name), p) for p in root.rglob("raa01-*")]
        stamps = sorted(m.group(2) for m, _ in found if m)
        times = np.array([np.datetime64(f"20{s[:2]}-{s[2:4]}-{s[4:6]}T{s[6:8]}:{s[8:10]}", "m") for s in stamps],
                         dtype="datetime64[m]")
    elif root.is_file():
        scans, _, _ = dwd.h5_scans(root, d.rain_unit)
        times = np.array([s.time for s in scans], dtype="datetime64[m]")
    else:
        return SplitCounts(None, None, f"no composites at {root}: counts need the files")
    if len(times) < 2:
        return SplitCounts(None, None, f"{root}: fewer than two scans")
    diffs = np.diff(times)
    vals, n = np.unique(diffs[diffs > np.timedelta64(0)], return_counts=True)
    step = vals[np.argmax(n)]
    scans = [dwd.Scan(t, "", root) for t in times]
    parts = dwd.split_scans(d, scans)
    project, authors = {}, {}
    for split in SPLIT_NAMES:
        ts = np.array([s.time for s in parts[split]], dtype="datetime64[m]")
        project[split] = sum(len(window_starts(e - a, total, d.frame_stride, d.sequence_stride))
                             for a, e in split_runs(ts, step))
        authors[split] = len(ts) // (total * 6)
    # their loader (util/load_data.py -> load_hko.py) validates on the test split
    authors_out: dict[str, Optional[int]] = {"train": authors["train"], "val": None, "test": authors["test"]}
    return SplitCounts(project, authors_out, f"from the scan times of {root} (authors: the same year split, "
                                             f"back-to-back blocks of {total * 6} scans, no gap check)")


def split_counts(cfg) -> SplitCounts:
    """:class:`SplitCounts` of a validated config (cheap: reads lists, dates and file names, never frames)."""
    d = cfg.data
    if d.source == "kth":
        return _kth_counts(cfg)
    if d.source == "taxibj":
        return _taxibj_counts(cfg)
    if d.source == "dwd":
        return _dwd_counts(cfg)
    from mslstm.data.sources import get_source

    if get_source(d.source).kind == "generated":
        authors = ({"train": 10500, "val": None, "test": 4500} if d.mnist_recipe == "authors" else None)
        return SplitCounts(dict(d.split_sizes), authors,
                           "from the config (the authors: 15,000 sequences cut 7:3, util/load_mnist.py)")
    return SplitCounts(None, None, "counted when `mslstm data` builds the dataset")
