"""`mslstm layers`: the paper's layer-output figure (Figure 5) from a tiny checkpoint; every registered model's
layers can be read."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_evaluate_common import make_checkpoint, tiny_config

from model import ModelConfig, build_model, get_spec, model_names
from mslstm.evaluation.layers import layer_maps


@pytest.mark.parametrize("name", model_names())
def test_every_model_exposes_one_map_per_layer_and_step(name):
    cfg = ModelConfig(name=name, hidden=8, layers=4, scales=(1, 2, 2, 1), frame_size=(16, 16), input_frames=2,
                      output_frames=2)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    frames = torch.rand(4, 1, 16, 16)
    maps, pred = layer_maps(net, frames, "pca" if name.endswith("lstm") else "mean")
    expect = (1, 2, 2, 1) if get_spec(name).arrangement == "pyramid" else (1, 1, 1, 1)
    assert [m.shape for m in maps] == [(3, 16 // s, 16 // s) for s in expect]
    assert pred.shape == (3, 1, 16, 16) and all(np.isfinite(m).all() for m in maps)
    torch.testing.assert_close(torch.from_numpy(pred), net(frames[None])[0])   # hooks change nothing


def test_layer_mean_is_the_channel_mean_and_pca_follows_it():
    from mslstm.evaluation.layers import _reduce

    h = torch.rand(3, 5, 4, 4)
    np.testing.assert_allclose(_reduce(h, "mean"), h.mean(dim=1).numpy(), rtol=1e-6)
    one = torch.rand(3, 1, 4, 4).repeat(1, 5, 1, 1) * torch.arange(1.0, 6.0).view(1, 5, 1, 1)   # rank one
    p = _reduce(one, "pca")
    assert np.corrcoef(p.ravel(), one.mean(dim=1).numpy().ravel())[0, 1] > 0.999


def test_layers_command_writes_the_figure_from_a_tiny_checkpoint(tiny_dataset, tmp_path, capsys):
    from mslstm.cli import main

    cfg = tiny_config("model.name=mslstm")
    ckpt = make_checkpoint(tmp_path / "train" / "best.pt", cfg)
    out = tmp_path / "fig" / "layers.png"
    assert main(["layers", "--checkpoint", str(ckpt.parent), "--data-dir", str(tiny_dataset), "--out", str(out),
                 "--index", "1", "--reduce", "pca"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as z:
        layers = sorted(k for k in z.files if k.startswith("layer_"))
        assert len(layers) == cfg.model.layers and z["prediction"].shape[0] == cfg.model.total_frames - 1
    assert "mslstm:" in capsys.readouterr().out
    assert main(["layers", "--checkpoint", str(ckpt), "--data-dir", str(tiny_dataset), "--out", str(out),
                 "--index", "99"]) == 2
