"""`mslstm predict` streams: a memory-mapped input predicted batch by batch into an output written as it goes
(renamed at the end), bounded memory, a size limit, and one line for a file that is not a .npy array."""
from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
import torch
from test_evaluate_common import make_checkpoint, tiny_config

from mslstm.cli import main
from mslstm.release.predict import open_frames, predict_stream

N_FUTURE = 2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", tiny_config(), seed=5)


def _whole(ckpt, x: np.ndarray) -> np.ndarray:
    """The whole-array prediction, in one forward pass."""
    from mslstm.training.checkpoint import load_model

    net, _ = load_model(ckpt)
    with torch.no_grad():
        return net.eval().predict(torch.from_numpy(x), N_FUTURE).clamp(0, 1).numpy()


def _predict(ckpt, inp, out, *extra):
    return main(["-q", "predict", "--model", str(ckpt), "--input", str(inp), "--output", str(out),
                 "--n-future", str(N_FUTURE), *extra])


def test_a_memory_mapped_input_many_batches_long_streams_with_bounded_memory(ckpt, tmp_path):
    from mslstm.release.predict import load_predictor

    n, batch = 192, 4                                     # 48 batches
    x = np.random.default_rng(0).random((n, 3, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    frames = open_frames(tmp_path / "in.npy")
    assert isinstance(frames, np.memmap) and frames.shape == x.shape      # mapped, nothing read yet
    predictor = load_predictor(ckpt)
    predictor.batch_size = batch
    np.save(tmp_path / "warm.npy", x[:1])                # first-call costs (lazy imports) out of the measurement
    predict_stream(predictor, open_frames(tmp_path / "warm.npy"), tmp_path / "warm_out.npy", N_FUTURE, batch,
                   "warm.npy", progress=False)
    (tmp_path / "warm.npy").unlink()
    (tmp_path / "warm_out.npy").unlink()
    tracemalloc.start()
    try:
        shape = predict_stream(predictor, frames, tmp_path / "out.npy", N_FUTURE, batch, "in.npy", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shape == (n, N_FUTURE, 1, 16, 16)
    # NumPy's allocations (tracemalloc sees them) stay at a few batches: a whole-array read and a concatenated
    # output would each hold n sequences at once (x.nbytes = 192 sequences; one batch of input + output is 4)
    # (measured: 50 kB streaming, 1.6 MB for Predictor.predict on the whole array; the bound is 147 kB)
    assert peak < x.nbytes / 4, (peak, x.nbytes)
    pred = np.load(tmp_path / "out.npy", allow_pickle=False)
    np.testing.assert_allclose(pred, _whole(ckpt, x), rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy"]   # no temp file left


def test_cli_streams_uint8_and_a_single_sequence_like_the_whole_array(ckpt, tmp_path, caplog):
    x8 = (np.random.default_rng(1).random((10, 3, 1, 16, 16)) * 255).astype(np.uint8)
    np.save(tmp_path / "in.npy", x8)
    with caplog.at_level(logging.INFO, logger="mslstm.release.predict"):
        assert main(["predict", "--model", str(ckpt), "--input", str(tmp_path / "in.npy"), "--output",
                     str(tmp_path / "out.npy"), "--n-future", str(N_FUTURE), "--batch-size", "3"]) == 0
    want = _whole(ckpt, x8.astype(np.float32) / 255.0)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=1e-5, atol=1e-6)
    # no terminal here: progress as log lines instead of a bar, the last one at 10/10
    assert any("predict: 10/10 sequences" in r.getMessage() for r in caplog.records)
    np.save(tmp_path / "one.npy", x8[0])
    assert _predict(ckpt, tmp_path / "one.npy", tmp_path / "one_out.npy") == 0
    np.testing.assert_allclose(np.load(tmp_path / "one_out.npy"), want[:1], rtol=1e-5, atol=1e-6)


def test_a_bad_batch_mid_stream_names_its_sequences_and_keeps_the_old_output(ckpt, tmp_path, capsys):
    x = np.random.default_rng(2).random((12, 3, 1, 16, 16)).astype(np.float32)
    x[9, 1, 0, 3, 3] = np.nan
    np.save(tmp_path / "in.npy", x)
    old = np.arange(3, dtype=np.float32)
    np.save(tmp_path / "out.npy", old)                   # an earlier result: must survive the failed run
    rc = _predict(ckpt, tmp_path / "in.npy", tmp_path / "out.npy", "--batch-size", "4")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "in.npy sequences 8..11: holds 1 NaN/inf" in err, err
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy"]


def test_an_input_over_the_size_limit_is_refused_in_one_line(ckpt, tmp_path, capsys):
    x = np.zeros((40, 3, 1, 16, 16), dtype=np.float32)   # 122,880 bytes of data
    np.save(tmp_path / "big.npy", x)
    rc = _predict(ckpt, tmp_path / "big.npy", tmp_path / "out.npy", "--max-input-gb", "0.0001")  # 100 kB
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    size = (tmp_path / "big.npy").stat().st_size
    assert f"big.npy: {size:,} bytes is over the predict input limit of 0.0001 GB (100,000 bytes)" in err, err
    assert "--max-input-gb" in err, err
    assert not (tmp_path / "out.npy").exists()
    # the same file under the limit, and with the limit off (0)
    assert _predict(ckpt, tmp_path / "big.npy", tmp_path / "out.npy", "--max-input-gb", "0.001") == 0
    assert _predict(ckpt, tmp_path / "big.npy", tmp_path / "out2.npy", "--max-input-gb", "0") == 0
    assert _predict(ckpt, tmp_path / "big.npy", tmp_path / "out3.npy", "--max-input-gb", "-1") == 2
    assert "--max-input-gb: must be >= 0" in capsys.readouterr().err


def _text(p):
    p.write_text("0.1 0.2 0.3\n0.4 0.5 0.6\n")


def _headerless(p):
    np.random.default_rng(0).random((2, 3, 1, 16, 16)).astype(np.float32).tofile(p)


def _npz(p):
    with open(p, "wb") as fh:
        np.savez(fh, frames=np.zeros((1, 3, 1, 16, 16), np.float32))


def _objects(p):
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _truncated(p):
    np.save(p, np.zeros((4, 3, 1, 16, 16), np.float32))
    p.write_bytes(p.read_bytes()[:-1000])


def _damaged_header(p):
    np.save(p, np.zeros((4, 3, 1, 16, 16), np.float32))
    data = bytearray(p.read_bytes())
    data[10:30] = b"garbage!" * 2 + b"xxxx"
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("make,message", [
    (_text, "not a .npy array (no NumPy header: a text, headerless or other file)"),
    (_headerless, "not a .npy array (no NumPy header"),
    (_npz, "a .npz archive, not a .npy array"),
    (_objects, "holds Python objects (dtype object), not numbers"),
    (_truncated, "truncated: its header says shape (4, 3, 1, 16, 16) float32 (12,288 bytes of data)"),
    (_damaged_header, "damaged .npy header"),
])
def test_a_file_that_is_not_an_npy_array_says_so_in_one_line(ckpt, tmp_path, capsys, make, message):
    bad = tmp_path / "frames.npy"
    make(bad)
    rc = _predict(ckpt, bad, tmp_path / "out.npy")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {bad}: ") and message in err, err
    assert "allow_pickle" not in err and "pickle.load" not in err, err
    assert not (tmp_path / "out.npy").exists()
