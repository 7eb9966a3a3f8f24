"""Source ``kth``: real MPEG-4 AVIs in the KTH layout -> processed dataset -> validate -> train -> evaluate, and
every bad input as one clear line with nothing left behind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mslstm.data.sources import kth
from mslstm.data.sources._frames import resize_frames, window_starts
from mslstm.errors import DataError
from test_data_real_common import CHAIN, cli, kth_frames, run_chain, write_avi, write_kth

KTH = ["data.source=kth", "data.frame_size=[16, 16]", "model.frame_size=[16, 16]", "data.val_persons=[16]",
       "data.test_persons=[17, 18]"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_decode_gives_the_written_gray_frames(tmp_path):
    frames = kth_frames(12, seed=3)
    p = write_avi(tmp_path / "boxing" / "person01_boxing_d1_uncomp.avi", frames)
    got = kth.decode_video(p)
    assert got.shape == (12, 120, 160) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - frames).mean() < 6  # MPEG-4 is lossy, but close


def test_list_videos_parses_names_and_filters_actions(tmp_path):
    write_kth(tmp_path, [1, 17], ["boxing", "running"], n_frames=8, scenarios=(1, 3))
    (tmp_path / "running" / "notes.avi").write_bytes(b"x")  # not a KTH name: skipped with a warning
    vids = kth.list_videos(tmp_path, ("running",))
    assert [(v.person, v.action, v.scenario) for v in vids] == [(1, "running", 1), (1, "running", 3),
                                                                  (17, "running", 1), (17, "running", 3)]
    assert len(kth.list_videos(tmp_path)) == 8
    assert kth.split_of(16, (16,), (17,)) == "val" and kth.split_of(17, (16,), (17,)) == "test"
    assert kth.split_of(3, (16,), (17,)) == "train"


def test_kth_folder_through_data_validate_train_evaluate(work):
    root = write_kth(work / "kth", [1, 16, 17], ["running", "walking"], n_frames=30)
    out = run_chain(work, [*KTH, f"data.path={root}", "data.actions=[running, walking]"])
    meta = out["meta"]
    # 2 videos per split x 30 frames / 6 frames back to back = 10 sequences each
    shapes = {s: v["shape"] for s, v in meta["splits"].items()}
    assert shapes == {s: [10, 6, 1, 16, 16] for s in ("train", "val", "test")}
    assert meta["source"] == "kth:kth" and meta["dtype"] == "uint8" and meta["kth"]["actions"] == ["running", "walking"]
    assert out["validation"]["success"] is True
    assert out["train"]["steps"] == 2 and np.isfinite(out["train"]["best_val_mse"])
    assert out["eval"]["sequences"] == 10 and np.isfinite(out["eval"]["mse"])
    # the stored frames are the video's frames, resized: first test sequence = person 17 running, frames 0..5
    test = np.load(work / "out" / "dataset" / "test.npy")
    ref = resize_frames(kth_frames(30, seed=171)[:6, None], (16, 16))
    assert np.abs(test[0].astype(int) - ref).mean() < 6


def test_actions_strides_and_crop(work):
    root = write_kth(work / "kth", [2, 16, 17], ["boxing", "running"], n_frames=30)
    sets = [*KTH, f"data.path={root}", "data.actions=[running]", "data.frame_stride=2", "data.sequence_stride=1",
            "data.crop=[0, 20, 120, 120]"]
    assert cli(_chain_sets(sets), "data", "--out", "ds") == 0
    n = len(window_starts(30, 6, 2, 1))  # span 11 frames, a new sequence every 2 frames -> 10
    assert n == 10
    for split in ("train", "val", "test"):
        assert np.load(work / "ds" / f"{split}.npy").shape == (n, 6, 1, 16, 16)


def _chain_sets(sets):
    return [*CHAIN, *sets]


def _bad(kind: str, work: Path) -> tuple[list[str], str]:
    root = work / "kth"
    if kind == "missing-folder":
        return [f"data.path={work / 'nope'}"], "nope: file not found"
    if kind == "no-videos":
        (root / "boxing").mkdir(parents=True)
        (root / "boxing" / "clip.mp4").write_bytes(b"")
        return [f"data.path={root}"], "no KTH videos"
    if kind == "corrupt":
        write_kth(root, [1, 16, 17], ["boxing"], n_frames=12)
        (root / "boxing" / "person02_boxing_d1_uncomp.avi").write_bytes(b"RIFF\x00\x00garbage" * 50)
        return [f"data.path={root}"], "person02_boxing_d1_uncomp.avi: cannot decode the video"
    if kind == "empty-video":
        write_kth(root, [1, 16, 17], ["boxing"], n_frames=12)
        (root / "boxing" / "person03_boxing_d1_uncomp.avi").write_bytes(b"")
        return [f"data.path={root}"], "person03_boxing_d1_uncomp.avi: cannot decode the video"
    if kind == "too-short":
        write_kth(root, [1, 16, 17], ["boxing"], n_frames=4)
        return [f"data.path={root}"], "split 'train' gets no sequence of 6 frames"
    if kind == "no-test-person":
        write_kth(root, [1, 16], ["boxing"], n_frames=12)
        return [f"data.path={root}"], "split 'test' gets no sequence"
    if kind == "size":
        write_kth(root, [1, 16, 17], ["boxing"], n_frames=12)
        return [f"data.path={root}", "data.frame_size=[20, 20]"], "data.frame_size: frames come out 20x20, not div"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing-folder", "no-videos", "corrupt", "empty-video", "too-short",
                                  "no-test-person", "size"])
def test_bad_input_one_line_error_and_no_output(kind, work, capsys):
    extra, fragment = _bad(kind, work)
    rc = cli(_chain_sets([*KTH, *extra]), "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert not (work / "out").exists() or list((work / "out").iterdir()) == []


def test_unknown_action_is_a_config_error(work, capsys):
    rc = cli(_chain_sets([*KTH, "data.path=kth", "data.actions=[dancing]"]), "data", "--out", "ds")
    assert rc == 2 and "data.actions: unknown KTH action 'dancing'" in capsys.readouterr().err


def test_decode_error_is_a_data_error(tmp_path):
    p = tmp_path / "x.avi"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="x.avi: cannot decode"):
        kth.decode_video(p)


# ------------------------------------------------------------------------ person-visible segments (the paper)
SEGMENTS = """
This database contains sequences of six classes of actions performed by
25 subjects in four different conditions (see below).

Training:   person11, 12, 13, 14, 15, 16, 17, 18
Validation: person19, 20, 21, 23, 24, 25, 01, 04

person01_running_d1\t\tframes\t1-12, 20-35
person01_walking_d1\t\tframes\t3-20
person13_handclapping_d3\t*missing*
person02_boxing_d1\t\tframes\t1-95, 96-185
person16_running_d1    \tframes\t5-40
person16_walking_d1\t\tframes\t1-40
person17_running_d1\t\tframes\t1-6
person17_walking_d1 11 30
"""
STRIDES = ["data.action_strides={running: 3, walking: 10}", "data.actions=[running, walking]"]


def _expected_starts(a: int, b: int, t: int, stride: int) -> list[int]:
    """The authors' clip starts (1-based) in a listed range a-b: range(a, b - t + 2, stride)."""
    return list(range(a, b - t + 2, stride))


def test_clips_lie_inside_the_listed_segments_with_per_action_strides(work):
    root = write_kth(work / "kth", [1, 16, 17], ["running", "walking"], n_frames=40)
    (root / "00sequences.txt").write_text(SEGMENTS)  # beside the videos: found without data.segments
    assert cli(_chain_sets([*KTH, f"data.path={root}", *STRIDES]), "data", "--out", "ds") == 0
    t = 6
    plan = {"train": [("running", 1, [(1, 12), (20, 35)]), ("walking", 1, [(3, 20)])],
            "val": [("running", 16, [(5, 40)]), ("walking", 16, [(1, 40)])],
            "test": [("running", 17, [(1, 6)]), ("walking", 17, [(11, 30)])]}
    for split, videos in plan.items():
        got = np.load(work / "ds" / f"{split}.npy")
        want = []
        for action, person, ranges in videos:
            frames = resize_frames(kth.decode_video(root / action / f"person{person:02d}_{action}_d1_uncomp.avi")
                                   [:, None], (16, 16))
            stride = 3 if action == "running" else 10
            for a, b in ranges:
                want += [frames[s - 1: s - 1 + t] for s in _expected_starts(a, b, t, stride)]
        assert got.shape[0] == len(want), split
        np.testing.assert_array_equal(got, np.stack(want))
    # train: running 1-12 -> starts 1, 4, 7; 20-35 -> 20, 23, 26, 29; walking 3-20 -> 3, 13
    assert np.load(work / "ds" / "train.npy").shape[0] == 3 + 4 + 2
    meta = json.loads((work / "ds" / "meta.json").read_text())
    assert meta["kth"]["action_strides"] == {"running": 3, "walking": 10}
    assert meta["kth"]["segments"] == str(root / "00sequences.txt")


def test_mcnet_trimmed_list_named_by_data_segments(work):
    root = write_kth(work / "kth", [1, 16, 17], ["running"], n_frames=30)
    lst = work / "trimmed.txt"
    lst.write_text("person01_running_d1 4 29\nperson16_running_d1 1 30\nperson17_running_d1 2 25\n")
    assert cli(_chain_sets([*KTH, f"data.path={root}", f"data.segments={lst}", "data.actions=[running]",
                            "data.action_strides={running: 3}"]), "data", "--out", "ds") == 0
    counts = {s: np.load(work / "ds" / f"{s}.npy").shape[0] for s in ("train", "val", "test")}
    assert counts == {"train": len(_expected_starts(4, 29, 6, 3)), "val": len(_expected_starts(1, 30, 6, 3)),
                      "test": len(_expected_starts(2, 25, 6, 3))} == {"train": 7, "val": 9, "test": 7}


def test_without_a_list_whole_videos_are_windowed_and_the_log_says_so(work, caplog):
    root = write_kth(work / "kth", [1, 16, 17], ["running"], n_frames=12)
    with caplog.at_level("WARNING", logger="mslstm.data.sources.kth"):
        assert cli(_chain_sets([*KTH, f"data.path={root}"]), "data", "--out", "ds") == 0
    said = [r.getMessage() for r in caplog.records if "whole videos" in r.getMessage()]
    assert len(said) == 1 and "differs from the paper" in said[0]
    assert np.load(work / "ds" / "train.npy").shape[0] == 2  # 12 frames, back to back


def _bad_segments(kind: str, work: Path) -> tuple[list[str], str]:
    root = write_kth(work / "kth", [1, 16, 17], ["running"], n_frames=30)
    lst = root / "00sequences.txt"
    good = "person01_running_d1\t\tframes\t1-12\nperson16_running_d1\t\tframes\t1-30\n" \
           "person17_running_d1\t\tframes\t1-30\n"
    if kind == "missing-video":
        lst.write_text(good + "person02_running_d1\t\tframes\t1-20\n")
        return [], f"00sequences.txt:4: person02_running_d1: no video {root / 'running' / 'person02_running_d1'}"
    if kind == "past-the-end":
        lst.write_text(good.replace("1-30\n", "1-30, 28-31\n", 1))
        return [], f"00sequences.txt:2: frames 28-31 run past the end of {root / 'running'}"
    if kind == "malformed":
        lst.write_text(good + "person17_running_d1\t\tframes\t1-12; 20-30\n")
        return [], "00sequences.txt:4: malformed segment line 'person17_running_d1\\t\\tframes\\t1-12; 20-30'"
    if kind == "reversed":
        lst.write_text("header\n" + good.replace("1-12", "12-1"))
        return [], "00sequences.txt:2: person01_running_d1: frame range 12-1 is empty"
    if kind == "not-a-list":
        lst.write_text("nothing to see here\n")
        return [], "00sequences.txt: no segment line"
    if kind == "missing-list":
        return [f"data.segments={work / 'nope.txt'}"], "nope.txt: segment list not found"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing-video", "past-the-end", "malformed", "reversed", "not-a-list",
                                  "missing-list"])
def test_bad_segment_list_one_line_error_naming_file_and_line_nothing_written(kind, work, capsys):
    extra, fragment = _bad_segments(kind, work)
    rc = cli(_chain_sets([*KTH, f"data.path={work / 'kth'}", "data.actions=[running]", *extra]), "data",
             "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert not (work / "out").exists() or list((work / "out").iterdir()) == []


@pytest.mark.parametrize("value, fragment", [
    ("{dancing: 3}", "data.action_strides: unknown KTH action 'dancing'"),
    ("{running: 0}", "data.action_strides: running: a stride is an integer >= 1 (got 0)"),
    ("{running: fast}", "data.action_strides: running: a stride is an integer >= 1 (got 'fast')"),
])
def test_bad_action_strides_is_one_config_error(value, fragment, work, capsys):
    rc = cli(_chain_sets([*KTH, "data.path=kth", f"data.action_strides={value}"]), "data", "--out", "out/ds")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (work / "out").exists()
