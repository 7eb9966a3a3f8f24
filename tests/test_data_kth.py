"""Source ``kth``: real MPEG-4 AVIs in the KTH layout -> processed dataset -> validate -> train -> evaluate, and
every bad input as one clear line with nothing left behind."""
from __future__ import annotations

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
