"""Source ``dwd``: RADOLAN RY/RW binary composites (ASCII header + ETX + little-endian uint16 with flag bits) and
the authors' HDF5 layout -> rain rate -> dBZ -> [0, 1] pixels -> processed dataset -> validate -> train ->
evaluate; sequences of consecutive scans only; every bad input as one clear line with nothing left behind."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mslstm.config import load_config
from mslstm.data.prepare import prepare_data
from mslstm.data.sources import dwd
from test_data_real_common import (
    CHAIN, RADOLAN_FLAG_CLUTTER, RADOLAN_FLAG_NODATA, cli, radolan_header, rain_field, run_chain, write_radolan,
)

BASE = ["data.source=dwd", "model.frame_size=[16, 16]", "validate.min_sequences=1"]
T0 = dt.datetime(2016, 5, 3, 14, 0)
MISSING = 17  # scan index left out (a gap)


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def real_ry_file(tmp_path_factory) -> Path:
    """One full-size 900x900 RY composite (written once per session)."""
    return write_radolan(tmp_path_factory.mktemp("ry900"), "RY", T0, rain_field(0, 900, 900), compress=True)


def write_ry_series(folder: Path, n: int = 80, grid: int = 32) -> Path:
    for i in range(n):
        if i != MISSING:
            write_radolan(folder, "RY", T0 + dt.timedelta(minutes=5 * i), rain_field(i, grid, grid),
                          compress=i % 2 == 0)
    return folder


def test_rain_to_pixel_is_the_authors_conversion():
    r30 = (10 ** 3 / 256) ** (1 / 1.42)  # the rain rate of 30 dBZ under Z = 256 R^1.42
    r = np.array([0.0, 1.0, r30, np.nan, -1.0, 1e6])
    p = dwd.rain_to_pixel(r)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p[:3], [0.0, (10 * np.log10(256) + 10) / 70, 40 / 70], rtol=1e-6)
    assert p[3] == 0 and p[4] == 0 and p[5] == 1  # no data / negative -> no rain; clipped at 60 dBZ


def test_full_size_radolan_file_read_with_wradlib(real_ry_file):
    values, attrs = dwd.read_radolan(real_ry_file)
    assert values.shape == (900, 900) and attrs["producttype"] == "RY" and attrs["intervalseconds"] == 300
    raw = rain_field(0, 900, 900)
    assert np.isnan(values[0, 0])  # 0x2000: no data
    assert values[1, 1] == pytest.approx(0.05)  # 0x8000 clutter flag stripped, value kept (units of 0.01 mm)
    i, j = np.unravel_index(np.argmax(raw & 0xFFF), raw.shape)
    assert values[i, j] == pytest.approx((raw[i, j] & 0xFFF) * 0.01)
    assert radolan_header("RY", T0, 900, 900).startswith(b"RY031400100000516BY1620")


def test_radolan_folder_through_data_validate_train_evaluate(work):
    folder = write_ry_series(work / "radolan")
    out = run_chain(work, [*BASE, f"data.path={folder}", "data.frame_size=[16, 16]"])
    meta = out["meta"]
    # 79 scans; train = first 63 (runs of 17 and 46 around the gap -> 2 + 7 sequences), val 8, test 8 -> 1 each
    assert {s: v["shape"] for s, v in meta["splits"].items()} == {
        "train": [9, 6, 1, 16, 16], "val": [1, 6, 1, 16, 16], "test": [1, 6, 1, 16, 16]}
    assert meta["dwd"]["step_minutes"] == 5 and meta["dwd"]["grid"] == [32, 32] and meta["value_range"] == [0, 1]
    assert out["validation"]["success"] is True
    assert out["train"]["steps"] == 2 and np.isfinite(out["eval"]["mse"])


def test_pixels_are_exact_for_a_crop_without_resize(work):
    folder = write_ry_series(work / "radolan", n=30)
    cfg = load_config(None, [*CHAIN, *BASE, f"data.path={folder}", "data.crop=[8, 0, 16, 16]",
                             "data.pool_fractions=[0.4, 0.3, 0.3]"])
    prepare_data(cfg, work / "ds")
    train = np.load(work / "ds" / "train.npy")
    raw = rain_field(0, 32, 32)
    rate = np.where(raw & RADOLAN_FLAG_NODATA, np.nan, (raw & 0xFFF) * 0.01 * 12)  # mm/5 min -> mm/h
    np.testing.assert_allclose(train[0, 0, 0], dwd.rain_to_pixel(rate)[8:24, 0:16], atol=1e-6)
    assert raw[1, 1] & RADOLAN_FLAG_CLUTTER


def test_rw_hourly_and_frame_stride(work):
    folder = work / "rw"
    for i in range(60):
        write_radolan(folder, "RW", T0 + dt.timedelta(hours=i), rain_field(i, 16, 16))
    cfg = load_config(None, [*CHAIN, *BASE, f"data.path={folder}", "data.frame_stride=2",
                             "data.pool_fractions=[0.4, 0.3, 0.3]"])
    s = prepare_data(cfg, work / "ds")
    # 24 / 18 / 18 hourly scans; a sequence spans 11 hours, a new one every 12 -> 2 / 1 / 1
    assert {k: v[0] for k, v in s["splits"].items()} == {"train": 2, "val": 1, "test": 1}
    val = np.load(work / "ds" / "val.npy")
    raw = rain_field(24 + 2, 16, 16)  # val starts at scan 24; its second frame is 2 scans later
    rate = np.where(raw & RADOLAN_FLAG_NODATA, np.nan, (raw & 0xFFF) * 0.1)  # RW: 0.1 mm per hour = mm/h
    np.testing.assert_allclose(val[0, 1, 0], dwd.rain_to_pixel(rate), atol=1e-6)


def write_h5(path: Path, years=(2014, 2015, 2016), per_year: int = 12, drop: tuple = ()) -> Path:
    """The authors' RYDL.hdf5 layout: one (H, W) float dataset per 5-minute scan, named YYYYMMDDHHMM, in mm/5min."""
    with h5py.File(path, "w") as f:
        for y in years:
            for i in range(per_year):
                if (y, i) in drop:
                    continue
                t = dt.datetime(y, 6, 1, 12, 0) + dt.timedelta(minutes=5 * i)
                f.create_dataset(f"{t:%Y%m%d%H%M}", data=(rain_field(i, 24, 24) & 0xFFF) * 0.01)
    return path


def test_authors_hdf5_layout_split_by_year(work):
    h5 = write_h5(work / "RYDL.hdf5", drop=((2014, 5),))
    cfg = load_config(None, [*CHAIN, *BASE, f"data.path={h5}", "data.frame_size=[16, 16]", "data.val_years=[2015]",
                             "data.test_years=[2016]"])
    s = prepare_data(cfg, work / "ds")
    # 2014: runs 5 and 6 around the dropped scan -> 0 + 1; 2015 and 2016: 12 consecutive -> 2 each
    assert {k: v[0] for k, v in s["splits"].items()} == {"train": 1, "val": 2, "test": 2}
    test = np.load(work / "ds" / "test.npy")
    want = dwd.rain_to_pixel((rain_field(0, 24, 24) & 0xFFF) * 0.01 * 12)
    from mslstm.data.sources._frames import resize_frames

    np.testing.assert_allclose(test[0, 0], resize_frames(want[None, None], (16, 16))[0], atol=1e-5)


def _bad(kind: str, work: Path) -> tuple[list[str], str]:
    folder = work / "radolan"
    when = T0
    if kind == "missing":
        return [f"data.path={work / 'nope'}"], "nope: file not found"
    if kind == "other-file":
        p = work / "notes.txt"
        p.write_text("x")
        return [f"data.path={p}"], "notes.txt: neither a folder of RADOLAN files nor an HDF5 file"
    if kind == "no-files":
        folder.mkdir()
        (folder / "radar.bin").write_bytes(b"")
        return [f"data.path={folder}"], "no RADOLAN files raa01-ry_10000-YYMMDDHHMM-dwd---bin"
    write_ry_series(folder, n=20)
    if kind == "no-etx":
        (folder / f"raa01-ry_10000-{when:%y%m%d}2359-dwd---bin").write_bytes(b"RY0314001000005" + b"x" * 50)
        return [f"data.path={folder}"], "-dwd---bin: not a readable RADOLAN composite"
    if kind == "truncated":
        p = write_radolan(folder, "RY", when + dt.timedelta(minutes=5 * MISSING), rain_field(0, 32, 32))
        p.write_bytes(p.read_bytes()[:-100])
        return [f"data.path={folder}"], f"{p.name}: not a readable RADOLAN composite"
    if kind == "product":
        p = write_radolan(folder, "RY", when - dt.timedelta(minutes=5), rain_field(0, 32, 32))
        p.write_bytes(b"RX" + p.read_bytes()[2:])
        return [f"data.path={folder}"], f"{p.name}: RADOLAN product 'RX'; only RW, RY"
    if kind == "grid":
        p = write_radolan(folder, "RY", when - dt.timedelta(minutes=5), rain_field(0, 16, 16))
        return [f"data.path={folder}"], "grid 32x32 differs from the 16x16 of the other files"
    if kind == "mixed":
        write_radolan(folder, "RW", when + dt.timedelta(hours=5), rain_field(0, 32, 32))
        return [f"data.path={folder}"], "product RW mixed with RY"
    if kind == "duplicate":  # the same scan twice, plain and gzipped
        write_radolan(folder, "RY", when, rain_field(0, 32, 32), compress=False)
        return [f"data.path={folder}"], "repeats"
    if kind == "too-short":
        return [f"data.path={folder}", "data.frame_stride=3"], "split 'train' gets no sequence of 6 frames"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "other-file", "no-files", "no-etx", "truncated", "product", "grid",
                                  "mixed", "duplicate", "too-short"])
def test_bad_input_one_line_error_and_no_output(kind, work, capsys):
    extra, fragment = _bad(kind, work)
    rc = cli([*CHAIN, *BASE, *extra], "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert not (work / "out").exists() or list((work / "out").iterdir()) == []


@pytest.mark.parametrize("kind", ["corrupt", "no-keys", "3d"])
def test_bad_hdf5(kind, work, capsys):
    p = work / "RYDL.hdf5"
    if kind == "corrupt":
        p.write_bytes(b"\x89HDF\r\n" + b"\x00" * 100)
        fragment = "RYDL.hdf5: cannot read as HDF5"
    elif kind == "no-keys":
        with h5py.File(p, "w") as f:
            f["frames"] = np.zeros((4, 4))
        fragment = "RYDL.hdf5: no scan datasets named by time stamp"
    else:
        with h5py.File(p, "w") as f:
            f["201605031400"] = np.zeros((2, 4, 4))
        fragment = "dataset '201605031400' has shape (2, 4, 4), expected one 2-D scan"
    rc = cli([*CHAIN, *BASE, f"data.path={p}"], "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and err.count("\n") == 1, err


@pytest.mark.parametrize("frame_stride,sequence_stride", [(1, 0), (1, 1), (2, 1), (3, 4), (6, 0)])
def test_streamed_windows_equal_whole_run_windows(frame_stride, sequence_stride):
    from mslstm.data.sources._frames import StreamCutter, cut_sequences

    run = np.arange(50, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    whole = cut_sequences(run, 6, frame_stride, sequence_stride)
    cut = StreamCutter(6, frame_stride, sequence_stride)
    streamed = [s for s in (cut.push(f) for f in run) if s is not None]
    assert len(streamed) == whole.shape[0] > 0
    np.testing.assert_array_equal(np.stack(streamed), whole)
    assert whole[0, :, 0, 0, 0].tolist() == [i * frame_stride for i in range(6)]


def test_npy_appender_writes_a_plain_npy(tmp_path):
    from mslstm.data.sources._frames import NpyAppender

    w = NpyAppender(tmp_path / "x.npy", (3, 1, 4, 4), np.float32)
    blocks = [np.random.default_rng(i).random((n, 3, 1, 4, 4), dtype=np.float32) for i, n in enumerate((2, 0, 5))]
    for b in blocks:
        w.append(b)
    assert w.close() == [7, 3, 1, 4, 4]
    got = np.load(tmp_path / "x.npy", mmap_mode="r", allow_pickle=False)
    np.testing.assert_array_equal(got, np.concatenate(blocks))


def test_authors_8_bit_frames_quantised_before_the_resize(work):
    """data.quantize: uint8 stores floor(255 x pixel) of the cropped composite (their 8-bit PNG), then resizes the
    8-bit frame (their cv2.resize of the PNG): a uint8 dataset read back as value / 255."""
    from mslstm.data.sources._frames import resize_frames

    folder = write_ry_series(work / "radolan", n=30)
    sets = [*CHAIN, *BASE, f"data.path={folder}", "data.crop=[8, 0, 16, 16]", "data.pool_fractions=[0.4, 0.3, 0.3]",
            "data.quantize=uint8"]
    prepare_data(load_config(None, sets), work / "ds")
    prepare_data(load_config(None, [*sets, "data.frame_size=[8, 8]", "model.frame_size=[8, 8]"]), work / "ds8")
    raw = rain_field(0, 32, 32)
    rate = np.where(raw & RADOLAN_FLAG_NODATA, np.nan, (raw & 0xFFF) * 0.01 * 12)
    pixel = dwd.rain_to_pixel(rate)[8:24, 0:16]
    q = np.floor(pixel.astype(np.float64) * 255).astype(np.uint8)
    train = np.load(work / "ds" / "train.npy")
    assert train.dtype == np.uint8 and 0 < int(q.max()) < 255
    np.testing.assert_array_equal(train[0, 0, 0], q)
    np.testing.assert_array_equal(np.load(work / "ds8" / "train.npy")[0, 0], resize_frames(q[None, None], (8, 8))[0])
    meta = json.loads((work / "ds" / "meta.json").read_text())
    assert meta["dtype"] == "uint8" and meta["value_range"] == [0, 255] and meta["dwd"]["quantize"] == "uint8"
