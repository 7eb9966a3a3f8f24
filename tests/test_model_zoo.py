"""The model registry: every registered model builds at tiny shapes and runs forward, backward and predict;
names are unique; unknown names and bad specs are refused; a model may bring its own core and an aux loss."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import model
from model import ModelConfig, build_model, get_spec, list_specs, model_names, register_family, register_model
from model.registry import ModelSpec, unregister

torch.set_num_threads(1)


def tiny(name: str, **kw) -> ModelConfig:
    base = dict(name=name, hidden=4, layers=4, scales=(1, 2, 2, 1), frame_size=(8, 8), input_frames=2,
                output_frames=2, mk_kernels=(1, 3))
    base.update(kw)
    return ModelConfig(**base)


def test_registry_lists_the_paper_family_in_order():
    assert model_names(tag="paper") == ("convlstm", "smslstm", "tmslstm", "mslstm")
    assert set(model_names(tag="paper")) <= set(model_names())
    assert model.MODEL_NAMES == model_names()  # back-compat accessor, read from the registry
    labels = {s.name: s.label for s in list_specs()}
    assert (labels["convlstm"], labels["smslstm"], labels["tmslstm"], labels["mslstm"]) == (
        "ConvLSTM", "SMS-LSTM", "TMS-LSTM", "MS-LSTM")
    assert get_spec("smslstm").arrangement == "pyramid" and get_spec("convlstm").arrangement == "stack"


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_builds_runs_and_predicts(name):
    spec = get_spec(name)
    assert spec.label and spec.description and "\n" not in spec.description and spec.paper
    cfg = tiny(name)
    torch.manual_seed(0)
    net = build_model(cfg)
    x = torch.rand(2, cfg.total_frames, 1, 8, 8)
    out, aux = net(x, torch.rand(2, cfg.output_frames - 1), return_aux=True)
    assert out.shape == (2, cfg.total_frames - 1, 1, 8, 8) and torch.isfinite(out).all()
    (out.pow(2).mean() + sum(aux.values())).backward()
    assert all(p.grad is not None for p in net.parameters())
    fut = net.eval().predict(x[:, : cfg.input_frames], 3)
    assert fut.shape == (2, 3, 1, 8, 8)
    assert cfg.layer_scales == ((1, 2, 2, 1) if spec.arrangement == "pyramid" else (1, 1, 1, 1))


def test_duplicate_name_is_refused():
    spec = get_spec("convlstm")
    with pytest.raises(ValueError, match="model 'convlstm' is already registered"):
        register_model(spec)
    # a family whose MS- name collides registers neither half
    with pytest.raises(ValueError, match="'mslstm' is already registered"):
        register_family("zz-flat", "ZZ", "throw-away", "none", spec.make_cell, ms_name="mslstm")
    assert "zz-flat" not in model_names()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"^name: 'transformer' is not a model; use one of 'convlstm', 'smslstm'"):
        get_spec("transformer")
    with pytest.raises(ValueError, match="^name: "):
        ModelConfig(name="transformer").validate()


def test_bad_spec_fields_are_refused():
    make = get_spec("convlstm").make_cell
    with pytest.raises(ValueError, match="arrangement"):
        ModelSpec("zz", "ZZ", "d", "p", "ring", make)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        ModelSpec("Bad Name", "ZZ", "d", "p", "stack", make)
    with pytest.raises(ValueError, match="one-line description"):
        ModelSpec("zz", "ZZ", "two\nlines", "p", "stack", make)


class _SumCore(nn.Module):
    """A core of its own (as PredRNN/MIM bring): every cell reads the embedded frame, outputs are summed; it
    reports an aux loss. Same contract as RecurrentCore."""

    def __init__(self, cells, scales):
        super().__init__()
        self.cells = nn.ModuleList(cells)
        self._aux = None

    def init_state(self, batch, height, width, device=None, dtype=None, channels_last=False):
        return [c.init_state(batch, height, width, device, dtype, channels_last) for c in self.cells]

    def forward(self, x, states):
        hs, new = [], []
        for cell, st in zip(self.cells, states):
            h, st = cell(x, st)
            hs.append(h)
            new.append(st)
        self._aux = sum(h.abs().mean() for h in hs)
        return sum(hs), new

    def aux_losses(self):
        return {"sum": self._aux}


def test_a_model_brings_its_own_core_and_recipe():
    make = get_spec("convlstm").make_cell
    flat, ms = register_family("zz-sum", "ZZ", "cells side by side (test)", "none", make, core=_SumCore,
                               recipe={"aux_loss_weights": {"sum": 0.5}})
    try:
        assert ms.name == "mszz-sum" and ms.label == "MS-ZZ" and ms.recipe["aux_loss_weights"] == {"sum": 0.5}
        with pytest.raises(TypeError):
            ms.recipe["sampling"] = "reverse"  # specs are read-only
        net = build_model(tiny("zz-sum"))
        assert isinstance(net.core, _SumCore)
        out, aux = net(torch.rand(1, 4, 1, 8, 8), return_aux=True)
        assert out.shape == (1, 3, 1, 8, 8) and aux["sum"] > 0
        assert torch.equal(net(torch.zeros(1, 4, 1, 8, 8)), net(torch.zeros(1, 4, 1, 8, 8), return_aux=True)[0])
        # a model without auxiliary losses returns none
        assert build_model(tiny("convlstm"))(torch.rand(1, 4, 1, 8, 8), return_aux=True)[1] == {}
    finally:
        unregister(flat.name)
        unregister(ms.name)
    assert "zz-sum" not in model_names()
