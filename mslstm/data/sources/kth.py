"""KTH human actions, read from the files as the public distribution ships them.

Layout at ``data.path``: one folder per action, ``<action>/personNN_<action>_dK_uncomp.avi`` (25 persons, 6 actions:
boxing, handclapping, handwaving, jogging, running, walking; 4 scenarios d1..d4; 160x120 grayscale AVI at 25 fps).
Videos are decoded with PyAV (FFmpeg), taken to gray, cropped (``data.crop``), resized to ``data.frame_size`` and
cut into sequences of ``input_frames + output_frames`` frames ``data.frame_stride`` apart, a new sequence every
``data.sequence_stride`` frames. Splits go by person (the standard: persons 1-16 train, 17-25 test); the persons in
``data.val_persons`` are taken out of train for validation. ``data.actions`` keeps only some actions (the authors use
running, jogging and walking in one setting).

Person-visible segments (``data.segments``): the KTH distribution lists, per video, the frame ranges in which the
person is in view (``00sequences.txt``: ``person01_boxing_d1  frames  1-95, 96-185, ...``, frames numbered from 1,
both ends included; ``*missing*`` for the one video the distribution lacks). The authors (mazhf/MS-RNN
``util/load_kth_only_run.py``) cut clips inside each listed range only, from MCnet's trimmed lists
(``personNN_action_dK a b``, one range a line; both formats are read), a new clip every ``n_skip`` frames (running 3,
jogging and walking 10: ``data.action_strides``). With a list, each range is windowed on its own, exactly as
``range(a, b - T + 2, stride)`` there; without one the whole video is windowed (logged, as it differs from the paper).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

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
SEGMENTS_FILE = "00sequences.txt"
SEGMENT_LINE_RE = re.compile(r"^(person\d{2}_([a-z]+)_d\d)(?=\s|$)")
RANGE_RE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
LINE_FORMS = "'personNN_action_dK  frames  a-b, c-d, ...' (00sequences.txt) or 'personNN_action_dK a b' (MCnet)"


@dataclass(frozen=True)
class Video:
    path: Path
    person: int
    action: str
    scenario: int

    @property
    def name(self) -> str:
        """The name the segment lists use: ``person01_boxing_d1``."""
        return f"person{self.person:02d}_{self.action}_d{self.scenario}"


@dataclass(frozen=True)
class Segment:
    """One listed range: frames ``start``..``end`` (numbered from 1, both included), from line ``line``."""

    line: int
    start: int
    end: int


def read_segments(path: str | Path) -> dict[str, list[Segment]]:
    """``{video name: [Segment, ...]}`` of a segment list: the KTH distribution's ``00sequences.txt`` (header prose
    and ``*missing*`` entries skipped) or MCnet's trimmed lists. A line that starts with a video name but is not one
    of the two forms, a range with start > end or start < 1, or an unknown action is a ``DataError`` naming the
    file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the segment list ({exc})") from exc
    out: dict[str, list[Segment]] = {}
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = SEGMENT_LINE_RE.match(line)
        if m is None:
            continue  # header prose, the split description, blank lines
        name, action, rest = m.group(1), m.group(2), line[m.end():].strip()
        where = f"{path}:{i}"
        if action not in ACTIONS:
            raise DataError(f"{where}: {name}: unknown KTH action {action!r}; use one of {', '.join(ACTIONS)}")
        if rest.strip("*").lower() == "missing":
            continue  # the distribution lists person13_handclapping_d3 as *missing*
        parts = rest.split()
        if rest.startswith("frames"):
            items = [x.strip() for x in rest[len("frames"):].split(",")]
            pairs = [RANGE_RE.match(x) for x in items]
            if not items or None in pairs:
                raise DataError(f"{where}: malformed segment line {line!r}; expected {LINE_FORMS}")
            ranges = [(int(p.group(1)), int(p.group(2))) for p in pairs if p is not None]
        elif len(parts) == 2 and all(x.isdigit() for x in parts):
            ranges = [(int(parts[0]), int(parts[1]))]
        else:
            raise DataError(f"{where}: malformed segment line {line!r}; expected {LINE_FORMS}")
        for a, b in ranges:
            if a < 1 or b < a:
                raise DataError(f"{where}: {name}: frame range {a}-{b} is empty or starts before frame 1; frames are "
                                "numbered from 1 and a range is start-end with start <= end")
            out.setdefault(name, []).append(Segment(i, a, b))
    if not out:
        raise DataError(f"{path}: no segment line ({LINE_FORMS}); not a KTH segment list")
    return out


def segment_file(d: Any, root: Path) -> Optional[Path]:
    """The segment list to use: ``data.segments``, else ``00sequences.txt`` in the KTH folder when present; None =
    whole videos (``data.segments: none``, or no list found: logged, as it differs from the paper)."""
    if d.segments == "none":
        return None
    if d.segments:
        p = Path(d.segments)
        if not p.is_file():
            raise DataError(f"{p}: segment list not found; set data.segments to the KTH distribution's "
                            f"{SEGMENTS_FILE} (or MCnet's trimmed list), or to none for whole videos")
        return p
    p = root / SEGMENTS_FILE
    if p.is_file():
        return p
    log.warning("%s: no %s there and data.segments is unset: windowing whole videos, which differs from the paper "
                "(the authors cut clips inside the person-visible frame ranges KTH lists in %s)", root,
                SEGMENTS_FILE, SEGMENTS_FILE)
    return None


def check_listed(path: Path, segments: dict[str, list[Segment]], videos: list["Video"], root: Path,
                 actions: tuple[str, ...]) -> list["Video"]:
    """Every listed video of the kept actions must be there (a ``DataError`` names the file and line); videos the
    list does not name are left out (logged). Returns the videos to cut."""
    have = {v.name: v for v in videos}
    wanted = tuple(actions) or ACTIONS
    for name, segs in segments.items():
        action = name.split("_")[1]
        if action in wanted and name not in have:
            raise DataError(f"{path}:{segs[0].line}: {name}: no video {root / action / (name + '_uncomp.avi')}; add "
                            "the video, or remove the line from the list")
    unlisted = [v for v in videos if v.name not in segments]
    if unlisted:
        log.warning("%s: %d video(s) not in the segment list %s, left out (first: %s)", root, len(unlisted), path,
                    unlisted[0].path.name)
    return [v for v in videos if v.name in segments]


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


def stride_of(d: Any, action: str) -> int:
    """Frames between clip starts for ``action``: ``data.action_strides[action]``, else ``data.sequence_stride``."""
    return int(d.action_strides.get(action, d.sequence_stride))


def cut_segments(frames: np.ndarray, segs: list[Segment], total: int, frame_stride: int, stride: int,
                 where: str, video: Path) -> np.ndarray:
    """Clips cut inside each listed range on its own ((N, T, ...); N may be 0); a range past the video's end is a
    ``DataError`` naming the list's file and line."""
    out = []
    for seg in segs:
        if seg.end > frames.shape[0]:
            raise DataError(f"{where}:{seg.line}: frames {seg.start}-{seg.end} run past the end of {video} "
                            f"({frames.shape[0]} frames); correct the range")
        out.append(cut_sequences(frames[seg.start - 1: seg.end], total, frame_stride, stride))
    return np.concatenate(out) if out else np.empty((0, total, *frames.shape[1:]), dtype=frames.dtype)


def iter_sequences(d: Any, videos: list[Video], segments: Optional[dict[str, list[Segment]]] = None,
                   seg_path: str = "") -> Iterator[tuple[str, Video, np.ndarray]]:
    """``(split, video, sequences (N, T, 1, H, W) uint8)`` for each video (N may be 0); with ``segments``, clips
    lie inside the video's listed ranges."""
    total = d.input_frames + d.output_frames
    for v in videos:
        frames = decode_video(v.path)[:, None]  # (L, 1, H, W)
        frames = resize_frames(crop_frames(frames, d.crop, str(v.path)), d.frame_size)
        stride = stride_of(d, v.action)
        if segments is None:
            seqs = cut_sequences(frames, total, d.frame_stride, stride)
        else:
            seqs = cut_segments(frames, segments[v.name], total, d.frame_stride, stride, seg_path, v.path)
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
    seg_path = segment_file(d, root)
    segments = None
    if seg_path is not None:
        segments = read_segments(seg_path)
        videos = check_listed(seg_path, segments, videos, root, tuple(d.actions))
    present = sorted({v.action for v in videos})
    stats: dict[str, dict[str, int]] = {s: {"videos": 0, "sequences": 0} for s in ("train", "val", "test")}
    checked = False
    with SplitWriter(ctx.staging, np.uint8) as writer:
        for split, video, seqs in iter_sequences(d, videos, segments, str(seg_path)):
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
             "frame_stride": d.frame_stride, "sequence_stride": d.sequence_stride or total,
             "action_strides": {a: stride_of(d, a) or total for a in present},
             "segments": str(seg_path) if seg_path is not None else None, "splits": stats},
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
    for action, stride in d.action_strides.items():
        if action not in ACTIONS:
            raise ValueError(f"action_strides: unknown KTH action {action!r}; use some of {', '.join(ACTIONS)}")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"action_strides: {action}: a stride is an integer >= 1 (got {stride!r})")


register_source(DataSource(
    "kth", "KTH human actions: the distribution's <action>/personNN_<action>_dK_uncomp.avi folder at data.path",
    "file", build, needs_path=True, value_range=(0.0, 255.0), check=check,
))
