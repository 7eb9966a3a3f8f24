"""`mslstm predict`: checkpoint and registry doors, output equals the model's prediction, clear errors on bad input."""
from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from test_evaluate_common import make_checkpoint, mlflow_env, tiny_config  # noqa: F401

from mslstm.cli import main
from mslstm.errors import DataError
from mslstm.release.predict import check_frames


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "best.pt", tiny_config(), seed=5)


def _frames(path, shape=(2, 3, 1, 16, 16), dtype=np.float32):
    x = np.random.default_rng(0).random(shape).astype(dtype)
    np.save(path, x)
    return x


def test_predict_from_checkpoint_writes_npy_and_gif(tmp_path, ckpt):
    from mslstm.training.checkpoint import load_model

    x = _frames(tmp_path / "in.npy")
    rc = main(["predict", "--model", str(ckpt), "--input", str(tmp_path / "in.npy"),
               "--output", str(tmp_path / "out.npy"), "--gif", str(tmp_path / "out.gif"), "--n-future", "4"])
    assert rc == 0
    pred = np.load(tmp_path / "out.npy")
    net, _ = load_model(ckpt)
    with torch.no_grad():
        want = net.predict(torch.from_numpy(x), 4).clamp(0, 1).numpy()
    assert pred.shape == (2, 4, 1, 16, 16)
    np.testing.assert_allclose(pred, want, rtol=1e-6, atol=1e-7)
    assert iio.imread(tmp_path / "out.gif").shape[0] == 3 + 4


def test_predict_single_sequence_and_uint8(tmp_path, ckpt):
    x = (np.random.default_rng(1).random((3, 1, 16, 16)) * 255).astype(np.uint8)
    np.save(tmp_path / "in.npy", x)
    assert main(["predict", "--model", str(ckpt), "--input", str(tmp_path / "in.npy"),
                 "--output", str(tmp_path / "out.npy")]) == 0
    assert np.load(tmp_path / "out.npy").shape == (1, 3, 1, 16, 16)


@pytest.mark.parametrize("shape,value,message", [
    ((3, 16, 16), None, r"expected frames of shape \(B, T_in, C, H, W\)"),      # wrong rank
    ((2, 3, 1, 32, 32), None, "frame size 32x32 differs from the model's 16x16"),
    ((2, 3, 2, 16, 16), None, "2 channels, the model expects 1"),
    ((2, 3, 1, 16, 16), np.nan, "NaN/inf"),
    ((2, 3, 1, 16, 16), 3.0, r"must be in \[0, 1\]"),
])
def test_bad_input_gets_a_clear_error_naming_the_file(tmp_path, ckpt, capsys, shape, value, message):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    if value is not None:
        x[0, 0, 0, 0, 0] = value
    bad = tmp_path / "bad_frames.npy"
    np.save(bad, x)
    rc = main(["predict", "--model", str(ckpt), "--input", str(bad), "--output", str(tmp_path / "o.npy")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and "bad_frames.npy" in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "o.npy").exists()


def test_missing_or_pickled_input(tmp_path, ckpt, capsys):
    assert main(["predict", "--model", str(ckpt), "--input", str(tmp_path / "nope.npy"),
                 "--output", str(tmp_path / "o.npy")]) == 2
    assert "nope.npy: input file not found" in capsys.readouterr().err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["predict", "--model", str(ckpt), "--input", str(tmp_path / "obj.npy"),
                 "--output", str(tmp_path / "o.npy")]) == 2
    assert "obj.npy" in capsys.readouterr().err


def test_check_frames_unit():
    cfg = tiny_config().model
    with pytest.raises(DataError, match="no frames"):
        check_frames(np.zeros((1, 0, 1, 16, 16), np.float32), cfg, "x.npy")
    assert check_frames(np.zeros((3, 1, 16, 16), np.float32), cfg).shape == (1, 3, 1, 16, 16)


def test_predict_from_registry_alias(tmp_path, mlflow_env):  # noqa: F811
    from mslstm.release.registry import register
    from mslstm.io import write_json

    cfg = tiny_config()
    make_checkpoint(tmp_path / "train" / "best.pt", cfg, seed=5)
    write_json(tmp_path / "eval" / "metrics.json", {"mse": 1.0})
    write_json(tmp_path / "profile" / "cost.json", {"flops_forward": 1.0, "estimate": {"device_hours": 0.1}})
    register(cfg, tmp_path / "train", tmp_path / "eval", tmp_path / "profile", tmp_path / "reg")
    x = _frames(tmp_path / "in.npy")
    assert main(["predict", "--model", "models:/mslstm@champion", "--input", str(tmp_path / "in.npy"),
                 "--output", str(tmp_path / "reg.npy")]) == 0
    assert main(["predict", "--model", str(tmp_path / "train" / "best.pt"), "--input", str(tmp_path / "in.npy"),
                 "--output", str(tmp_path / "ckpt.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "reg.npy"), np.load(tmp_path / "ckpt.npy"), rtol=1e-6)
    assert np.load(tmp_path / "reg.npy").shape == x.shape
