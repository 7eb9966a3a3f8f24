"""KTH human actions, read from the files as the public distribution ships them.

Layout at ``data.path``: one folder per action, ``<action>/personNN_<action>_dK_uncomp.avi`` (25 persons, 6 actions:
boxing, handclapping, handwaving, jogging, running, walking; 4 scenarios d1..d4; 160x120 grayscale AVI at 25 fps).
Videos are decoded with PyAV (FFmpeg), taken to gray, cropped (``data.crop``), resized to ``data.frame_size`` and
cut into sequences of ``input_frames + output_frames`` frames ``data.frame_stride`` apart, a new sequence every
``data.sequence_stride`` frames. Splits go by person (the standard: persons 1-16 train, 17-25 test); the persons in
``data.val_persons`` are taken out of train for validation. ``data.actions`` keeps only some actions (the authors use
running, jogging and walking in one setting).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mslstm.data.sources import DataSource, register_source
from mslstm.data.sources._frames import (
    SplitWriter, check_size, crop_frames, cut_sequences, require_splits, resize_frames,
)
from mslstm.errors import DataError

log = logging.getLogger(__name__)

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
NAME_RE = re.compile(r"^person(\d{2})_([a-z]+)_d(\d)_uncomp\.avi$")
PERSONS = range(1, 26)


@dataclass(frozen=True)
class Video:
    path: Path
    person: int
    action: str
    scenario: int


def list_videos(root: str | Path, actions: tuple[str, ...] = ()) -> list[Video]:
    """The KTH videos under ``root`` (``<action>/personNN_<action>_dK_uncomp.avi``), sorted; ``actions`` filters."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: KTH folder not found; set data.path to the folder holding boxing/, handclapping/, "
                        "... (the unzipped KTH action archives)")
    wanted = tuple(actions) or ACTIONS
    unknown = [a for a in wanted if a not in ACTIONS]
    if unknown:
        raise DataError(f"data.actions: unknown KTH action {unknown[0]!r}; use some of {', '.join(ACTIONS)}")
    videos = []
    for action in wanted:
        folder = root / action
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob("*.avi")):
            m = NAME_RE.match(p.name)
            if m is None or m.group(2) != action:
                log.warning("%s: not a KTH file name (personNN_%s_dK_uncomp.avi); skipped", p, action)
                continue
            person = int(m.group(1))
            if person not in PERSONS:
                raise DataError(f"{p}: person {person} outside KTH's 1-25; rename or remove the file")
            videos.append(Video(p, person, action, int(m.group(3))))
    if not videos:
        raise DataError(f"{root}: no KTH videos <action>/personNN_<action>_dK_uncomp.avi for actions "
                        f"{', '.join(wanted)}; point data.path at the folder of the unzipped KTH archives")
    return videos


def decode_video(path: str | Path) -> np.ndarray:
    """All frames of a video as gray uint8 (L, H, W)."""
    import av

    path = Path(path)
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream; re-download the file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="gray"))
    except (av.FFmpegError, OSError, ValueError) as exc:  # av.error.* derive from FFmpegError (and OSError)
        raise DataError(f"{path}: cannot decode the video ({exc}); the file is corrupt or not an AVI, "
                        "re-download it") from exc
    if not frames:
        raise DataError(f"{path}: the video has no frames; re-download it")
    return np.stack(frames)


def split_of(person: int, val_persons: tuple[int, ...], test_persons: tuple[int, ...]) -> str:
    if person in test_persons:
        return "test"
    if person in val_persons:
        return "val"
    return "train"


def iter_sequences(d: Any, videos: list[Video]) -> Iterator[tuple[str, Video, np.ndarray]]:
    """``(split, video, sequences (N, T, 1, H, W) uint8)`` for each video (N may be 0)."""
    total = d.input_frames + d.output_frames
    for v in videos:
        frames = decode_video(v.path)[:, None]  # (L, 1, H, W)
        frames = resize_frames(crop_frames(frames, d.crop, str(v.path)), d.frame_size)
        seqs = cut_sequences(frames, total, d.frame_stride, d.sequence_stride)
        if seqs.shape[0] == 0:
            log.warning("%s: %d frames, too short for one sequence of %d frames %d apart; skipped",
                        v.path, frames.shape[0], total, d.frame_stride)
        yield split_of(v.person, tuple(d.val_persons), tuple(d.test_persons)), v, seqs


def build(ctx: Any) -> dict[str, Any]:
    """Decode every video once, cut its sequences and stream them into ``{train,val,test}.npy`` (uint8)."""
    from mslstm.data.dataset import make_meta

    d, root = ctx.data, Path(ctx.path)
    total = d.input_frames + d.output_frames
    if d.frame_size is not None:  # fail before decoding anything
        check_size(*d.frame_size, ctx.size_factor, ctx.size_why, "data.frame_size")
    videos = list_videos(root, tuple(d.actions))
    present = sorted({v.action for v in videos})
    stats: dict[str, dict[str, int]] = {s: {"videos": 0, "sequences": 0} for s in ("train", "val", "test")}
    checked = False
    with SplitWriter(ctx.staging, np.uint8) as writer:
        for split, video, seqs in iter_sequences(d, videos):
            if not checked:
                check_size(seqs.shape[-2], seqs.shape[-1], ctx.size_factor, ctx.size_why, str(video.path))
                checked = True
            writer.append(split, seqs)
            stats[split]["videos"] += 1
            stats[split]["sequences"] += int(seqs.shape[0])
        infos = writer.close()
    persons = sorted({v.person for v in videos})
    require_splits(infos, str(root), total,
                   f"persons present: {persons}; check data.val_persons / data.test_persons, or lower "
                   "data.frame_stride / the frame counts")
    log.info("KTH %s: %s", root, {s: v["sequences"] for s, v in stats.items()})
    return make_meta(
        infos, dtype="uint8", input_frames=d.input_frames, output_frames=d.output_frames, value_range=(0, 255),
        source=f"kth:{root.name}", raw_hash=ctx.raw["raw_hash"],
        kth={"actions": present, "val_persons": list(d.val_persons), "test_persons": list(d.test_persons),
             "frame_stride": d.frame_stride, "sequence_stride": d.sequence_stride or total, "splits": stats},
    )


def check(d: Any) -> None:
    """``ValueError("key: reason")`` for bad KTH keys."""
    bad = [a for a in d.actions if a not in ACTIONS]
    if bad:
        raise ValueError(f"actions: unknown KTH action {bad[0]!r}; use some of {', '.join(ACTIONS)}")
    for key in ("val_persons", "test_persons"):
        bad_p = [p for p in getattr(d, key) if p not in PERSONS]
        if bad_p:
            raise ValueError(f"{key}: KTH persons are 1-25 (got {bad_p[0]})")
    both = set(d.val_persons) & set(d.test_persons)
    if both:
        raise ValueError(f"val_persons: person {min(both)} is also in test_persons; a person is in one split")
    if not d.test_persons:
        raise ValueError("test_persons: name at least one person (the standard test split is 17-25)")
    if not d.val_persons:
        raise ValueError("val_persons: name at least one person for validation, e.g. [16]")


register_source(DataSource(
    "kth", "KTH human actions: the distribution's <action>/personNN_<action>_dK_uncomp.avi folder at data.path",
    "file", build, needs_path=True, value_range=(0.0, 255.0), check=check,
))
