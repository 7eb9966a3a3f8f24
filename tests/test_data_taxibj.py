"""Source ``taxibj``: HDF5 files in the published BJxx_M32x32_T30_InOut.h5 layout (with a gap in ``date``) ->
processed dataset -> validate -> train -> evaluate; min-max fitted on train only; no sequence spans a gap; every
bad input as one clear line with nothing left behind."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mslstm.config import load_config
from mslstm.data.prepare import prepare_data
from mslstm.data.sources import taxibj
from mslstm.data.sources._frames import split_runs
from test_data_real_common import CHAIN, cli, run_chain, taxibj_slots, write_taxibj

BASE = ["data.source=taxibj", "data.test_weeks=1", "data.val_weeks=1", "model.frame_size=[32, 32]"]
GAP = 100  # slot index left out of the 2013 file


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_set(root: Path) -> Path:
    """2013: 4 days with one missing slot (train); 2014: 14 days (val = first week, test = last week)."""
    write_taxibj(root / "BJ13_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2013, 7, 1), 4, skip=[GAP]), seed=1)
    write_taxibj(root / "BJ14_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2014, 3, 1), 14), seed=2)
    return root


def test_dates_parse_to_half_hour_slots(tmp_path):
    times, labels = taxibj.parse_dates(np.array([b"2013070101", b"2013070147", b"2013070148", b"2013070201"]),
                                       tmp_path)
    assert [str(t) for t in times] == ["2013-07-01T00:00", "2013-07-01T23:00", "2013-07-01T23:30",
                                       "2013-07-02T00:00"]
    assert labels[1] == "2013070147"
    assert split_runs(times, taxibj.SLOT) == [(0, 1), (1, 4)]  # midnight is no gap; 00:30..22:30 is


def test_taxibj_through_data_validate_train_evaluate_inflow_only(work):
    root = write_set(work / "TaxiBJ")
    out = run_chain(work, [*BASE, f"data.path={root}", "data.channels=inflow", "model.in_channels=1"])
    meta = out["meta"]
    # train: runs of 100 and 91 slots around the gap -> 16 + 15 sequences of 6; val/test: 336 slots -> 56 each
    assert {s: v["shape"][0] for s, v in meta["splits"].items()} == {"train": 31, "val": 56, "test": 56}
    assert meta["channels"] == 1 and meta["frame_size"] == [32, 32] and meta["dtype"] == "float32"
    with h5py.File(root / "BJ13_M32x32_T30_InOut.h5") as f:
        train_raw = f["data"][:, 0]
    with h5py.File(root / "BJ14_M32x32_T30_InOut.h5") as f:
        later = f["data"][:, 0]
    lo, hi = float(train_raw.min()), float(train_raw.max())
    assert meta["value_range"] == [lo, hi] and meta["taxibj"]["fitted_on"] == "train"  # fitted on train only
    assert out["validation"]["success"] is True
    assert out["train"]["steps"] == 2 and np.isfinite(out["eval"]["mse"])
    ds = work / "out" / "dataset"
    test, train = np.load(ds / "test.npy"), np.load(ds / "train.npy")
    np.testing.assert_array_equal(test[0, :, 0], np.clip(later[336:342], lo, hi))  # test = the last week
    np.testing.assert_array_equal(train[15, :, 0], train_raw[90:96])  # last sequence before the gap
    np.testing.assert_array_equal(train[16, :, 0], train_raw[GAP:GAP + 6])  # first after it (file index shifts)


def test_both_channels_and_strides(work):
    root = write_set(work / "TaxiBJ")
    cfg = load_config(None, [*CHAIN, *BASE, f"data.path={root}", "model.in_channels=2", "data.sequence_stride=2",
                             "data.frame_stride=2"])
    prepare_data(cfg, work / "ds")
    shapes = {s: np.load(work / "ds" / f"{s}.npy", mmap_mode="r").shape for s in ("train", "val", "test")}
    # a sequence spans 11 slots, a new one every 4 slots: runs 100, 91 -> 23 + 21; 336 -> 82
    assert shapes == {"train": (44, 6, 2, 32, 32), "val": (82, 6, 2, 32, 32), "test": (82, 6, 2, 32, 32)}


def _bad(kind: str, root: Path) -> tuple[list[str], str]:
    f13 = root / "BJ13_M32x32_T30_InOut.h5"
    if kind == "missing-folder":
        return [f"data.path={root / 'nope'}"], "nope: file not found"
    root.mkdir()
    if kind == "no-files":
        (root / "BJ13_M32x32.h5").write_bytes(b"")
        return [], "no TaxiBJ files BJ*_M32x32_T30_InOut.h5"
    if kind == "corrupt":
        f13.write_bytes(b"\x89HDF\r\n" + b"\x00" * 200)
        return [], "BJ13_M32x32_T30_InOut.h5: cannot read as HDF5"
    if kind == "shape":
        with h5py.File(f13, "w") as f:
            f["data"] = np.zeros((4, 3, 32, 32))
            f["date"] = np.array(taxibj_slots(dt.date(2013, 7, 1), 1)[:4], dtype="S10")
        return [], "BJ13_M32x32_T30_InOut.h5: data has shape (4, 3, 32, 32), expected (N, 2, H, W)"
    if kind == "date-count":
        with h5py.File(f13, "w") as f:
            f["data"] = np.zeros((4, 2, 32, 32))
            f["date"] = np.array(taxibj_slots(dt.date(2013, 7, 1), 1)[:3], dtype="S10")
        return [], "BJ13_M32x32_T30_InOut.h5: date has shape (3,) but data has 4 slots"
    if kind == "bad-slot":
        with h5py.File(f13, "w") as f:
            f["data"] = np.zeros((2, 2, 32, 32))
            f["date"] = np.array([b"2013070101", b"2013070149"], dtype="S10")
        return [], "date[1] = '2013070149' is not YYYYMMDDSS"
    if kind == "duplicate":
        write_taxibj(f13, taxibj_slots(dt.date(2013, 7, 1), 1))
        write_taxibj(root / "BJ14_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2013, 7, 1), 1)[47:])
        return [], "time stamp BJ14_M32x32_T30_InOut.h5:2013070148 repeats BJ13_M32x32_T30_InOut.h5:2013070148"
    if kind == "too-short":  # every third slot missing: no run of 6 consecutive slots
        write_taxibj(f13, taxibj_slots(dt.date(2013, 7, 1), 15, skip=range(0, 15 * 48, 3)))
        return [], "split 'train' gets no sequence of 6 frames"
    if kind == "weeks":
        write_taxibj(f13, taxibj_slots(dt.date(2013, 7, 1), 3))
        return [], "leave split 'train' empty with data.test_weeks=1, data.val_weeks=1"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing-folder", "no-files", "corrupt", "shape", "date-count", "bad-slot",
                                  "duplicate", "too-short", "weeks"])
def test_bad_input_one_line_error_and_no_output(kind, work, capsys):
    root = work / "TaxiBJ"
    extra, fragment = _bad(kind, root)
    path = [] if kind == "missing-folder" else [f"data.path={root}"]
    rc = cli([*CHAIN, *BASE, "data.channels=inflow", *path, *extra], "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert not (work / "out").exists() or list((work / "out").iterdir()) == []


# ------------------------------------------------------------------------------------ the authors' protocol
PAPER = ["data.sequence_stride=1", "data.window_order=newest-first", "data.minmax_channels=both",
         "data.quantize=uint8", "data.channels=inflow", "model.in_channels=1"]


def test_paper_protocol_windows_order_scaling_and_8_bits(work):
    """Stride 1: a gap-free run of N slots gives N - T + 1 windows; each stored newest slot first; min-max over
    both flows of the train slots; floor(255 x) as uint8, as mazhf/MS-RNN util/load_taxibj.py."""
    root = write_set(work / "TaxiBJ")
    with h5py.File(root / "BJ13_M32x32_T30_InOut.h5", "r+") as f:   # outflow reaches higher than inflow
        f["data"][:, 1] += 60
    cfg = load_config(None, [*CHAIN, *BASE, f"data.path={root}", *PAPER])
    prepare_data(cfg, work / "ds")
    meta = json.loads((work / "ds" / "meta.json").read_text())
    t = 6
    counts = {s: v["shape"][0] for s, v in meta["splits"].items()}
    # train: runs of 100 and 91 slots around the gap; val and test: one run of 336 slots each
    assert counts == {"train": (100 - t + 1) + (91 - t + 1), "val": 336 - t + 1, "test": 336 - t + 1}
    assert meta["dtype"] == "uint8" and meta["value_range"] == [0, 255]
    with h5py.File(root / "BJ13_M32x32_T30_InOut.h5") as f:
        raw13 = f["data"][()]
    with h5py.File(root / "BJ14_M32x32_T30_InOut.h5") as f:
        raw14 = f["data"][()]
    lo, hi = raw13.min(), raw13.max()            # the train slots, inflow AND outflow
    assert meta["taxibj"]["minmax"] == [float(lo), float(hi)] and hi > raw13[:, 0].max()

    def authors(x):                                # their MinMaxNormalization.transform, then * 255 as uint8
        return (1.0 * (np.clip(x, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)

    test = np.load(work / "ds" / "test.npy")
    train = np.load(work / "ds" / "train.npy")
    assert test.dtype == np.uint8 and test.shape[1:] == (t, 1, 32, 32)
    # test window k holds slots 336 + k .. 336 + k + 5 of the 2014 file, newest first: [t-1, t-2, ..., t-6]
    for k in (0, 1, counts["test"] - 1):
        np.testing.assert_array_equal(test[k, :, 0], authors(raw14[336 + k: 336 + k + t, 0])[::-1])
    np.testing.assert_array_equal(train[94, :, 0], authors(raw13[94:100, 0])[::-1])   # last window before the gap
    np.testing.assert_array_equal(train[95, :, 0], authors(raw13[GAP:GAP + t, 0])[::-1])  # first after it


def test_minmax_over_kept_channel_and_time_order_by_default(work):
    root = write_set(work / "TaxiBJ")
    cfg = load_config(None, [*CHAIN, *BASE, f"data.path={root}", "data.sequence_stride=1", "data.channels=inflow",
                             "model.in_channels=1"])
    prepare_data(cfg, work / "ds")
    with h5py.File(root / "BJ13_M32x32_T30_InOut.h5") as f:
        raw13 = f["data"][()]
    meta = json.loads((work / "ds" / "meta.json").read_text())
    assert meta["value_range"] == [float(raw13[:, 0].min()), float(raw13[:, 0].max())]
    train = np.load(work / "ds" / "train.npy")
    assert train.dtype == np.float32
    np.testing.assert_array_equal(train[1, :, 0], raw13[1:7, 0])  # oldest first, one slot apart


def test_a_file_of_another_grid_is_named(work, capsys):
    root = work / "TaxiBJ"
    write_taxibj(root / "BJ13_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2013, 7, 1), 2), seed=1)
    write_taxibj(root / "BJ14_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2014, 3, 1), 2), seed=2, grid=16)
    write_taxibj(root / "BJ15_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2015, 3, 1), 2), seed=3)
    rc = cli([*CHAIN, *BASE, f"data.path={root}"], "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert f"{root / 'BJ14_M32x32_T30_InOut.h5'}: frames of shape (2, 16, 16) where BJ13_M32x32_T30_InOut.h5 " \
           "holds (2, 32, 32)" in err, err
    assert not (work / "out").exists() or list((work / "out").iterdir()) == []


@pytest.mark.parametrize("sets, fragment", [
    (["data.window_order=backwards"], "data.window_order: must be one of 'oldest-first', 'newest-first'"),
    (["data.quantize=uint16"], "data.quantize: must be one of 'none', 'uint8'"),
    (["data.minmax_channels=outflow"], "data.minmax_channels: must be one of 'kept', 'both'"),
])
def test_bad_protocol_option_is_one_config_error(sets, fragment, work, capsys):
    rc = cli([*CHAIN, *BASE, "data.path=TaxiBJ", *sets], "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (work / "out").exists()


def test_protocol_options_of_other_sources_are_refused(work, capsys):
    rc = cli([*CHAIN, "data.window_order=newest-first"], "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2 and "data.window_order: applies to source taxibj only" in err, err
