"""Checkpoints: atomic save, safe load (weights_only), every bad input a clear CheckpointError, nothing overwritten."""
from __future__ import annotations

import builtins
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from model import ModelConfig, build_model
from mslstm.config import load_config, to_dict
from mslstm.errors import CheckpointError
from mslstm.training.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    find_checkpoint,
    load_checkpoint,
    load_model,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)

TINY = dict(name="mslstm", frame_size=(16, 16), input_frames=3, output_frames=3, hidden=8, layers=2, scales=(1, 1))


def _payload(mcfg: ModelConfig) -> dict:
    torch.manual_seed(0)
    net = build_model(mcfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(2, 6, 1, 16, 16)).mean().backward()
    opt.step()
    return {"format_version": FORMAT_VERSION, "model_config": to_dict(mcfg), "config": load_config(None).to_dict(),
            "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": None, "scaler": None,
            "epoch": 1, "step": 4, "rng": capture_rng_state(), "metrics": {"val_mse": 0.1}}


@pytest.fixture
def good_ckpt(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "good.pt", _payload(ModelConfig(**TINY)))


def test_roundtrip_and_load_model_predicts_like_the_saved_weights(good_ckpt):
    payload = load_checkpoint(good_ckpt)
    assert payload["format_version"] == FORMAT_VERSION and payload["step"] == 4
    assert isinstance(payload["rng"]["numpy"]["keys"], torch.Tensor)
    net, p2 = load_model(good_ckpt)
    assert not net.training
    ref = build_model(ModelConfig(**TINY))
    ref.load_state_dict(payload["model"])
    ref.eval()
    x = torch.rand(2, 6, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))
    assert p2["metrics"] == {"val_mse": 0.1}
    # the expected config may be given as the dataclass: same config passes
    load_checkpoint(good_ckpt, expected_model_config=ModelConfig(**TINY))


def test_rng_state_roundtrip_through_weights_only(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_checkpoint(tmp_path / "r.pt", {"model_config": {}, "model": {}, "rng": capture_rng_state()})
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_unwrap_model_strips_compile_wrapper():
    net = build_model(ModelConfig(**TINY))
    compiled = torch.compile(net)
    assert unwrap_model(compiled) is net
    assert not any(k.startswith("_orig_mod.") for k in unwrap_model(compiled).state_dict())


@pytest.mark.parametrize("damage", ["truncated", "corrupted", "empty", "garbage"])
def test_damaged_checkpoint_is_a_clear_error(good_ckpt, damage):
    data = good_ckpt.read_bytes()
    if damage == "truncated":
        good_ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "corrupted":
        good_ckpt.write_bytes(b"\x00" * 64 + data[64:])
    elif damage == "empty":
        good_ckpt.write_bytes(b"")
    else:
        good_ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(good_ckpt)
    msg = str(exc.value)
    assert str(good_ckpt) in msg and "\n" not in msg
    assert ("empty" in msg) if damage == "empty" else ("corrupt" in msg)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="not an mslstm checkpoint"):
        load_checkpoint(tmp_path / "tensor.pt")
    torch.save({"format_version": 99, "model_config": {}, "model": {}}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tmp_path / "v99.pt")


def test_checkpoint_of_another_model_or_shape_is_refused(tmp_path):
    other = save_checkpoint(tmp_path / "conv.pt", _payload(ModelConfig(**{**TINY, "name": "convlstm"})))
    with pytest.raises(CheckpointError, match=r"another model/config.*model\.name: checkpoint 'convlstm'"):
        load_checkpoint(other, expected_model_config=ModelConfig(**TINY))
    wide = save_checkpoint(tmp_path / "wide.pt", _payload(ModelConfig(**{**TINY, "hidden": 16})))
    with pytest.raises(CheckpointError, match="model.hidden"):
        load_model(wide, expected_model_config=to_dict(ModelConfig(**TINY)))
    # a state dict that does not fit its own model_config
    p = _payload(ModelConfig(**TINY))
    p["model_config"] = to_dict(ModelConfig(**{**TINY, "hidden": 4}))
    save_checkpoint(tmp_path / "mismatch.pt", p)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(tmp_path / "mismatch.pt")


class _Evil:
    """Unpickling this calls open(marker, "w"): creates a file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_pickle_with_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "model_config": {}, "model": {}, "x": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused") as exc:
        load_checkpoint(evil)
    assert str(evil) in str(exc.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_model(evil)
    assert not marker.exists()
    # control: the same kind of file *does* run code when unpickled unsafely, so the refusal above is meaningful
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control))).close()
    assert control.exists()


def test_save_is_atomic_a_failed_write_keeps_the_old_file(good_ckpt):
    before = good_ckpt.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(good_ckpt, {"model_config": {}, "model": {}, "bad": lambda: None})  # not picklable
    assert good_ckpt.read_bytes() == before
    assert [p.name for p in good_ckpt.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_find_checkpoint_prefers_best_then_last_and_names_the_folder(tmp_path, good_ckpt):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'run'}: no best.pt or last.pt"):
        find_checkpoint(tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(good_ckpt.read_bytes())
    assert find_checkpoint(tmp_path / "run") == tmp_path / "run" / "last.pt"
    (tmp_path / "run" / "best.pt").write_bytes(good_ckpt.read_bytes())
    assert find_checkpoint(tmp_path / "run") == tmp_path / "run" / "best.pt"
