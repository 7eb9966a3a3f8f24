"""FLOPs written out by hand: one MK-LSTM cell, one pyramid step, the four networks of the paper; the README's and
docs/model.md's tables pinned to ``model_flops`` and to those formulas.

Convention of ``torch.utils.flop_counter``: a convolution costs 2 x (multiply-adds) = 2 * H * W * C_in * C_out * k^2
(bias, gates' element-wise math, pooling and interpolation are not counted).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model import ModelConfig, build_model, count_flops, label_of, model_flops, model_names
from model.zoo.mklstm import MKLSTMCell

ROOT = Path(__file__).resolve().parents[1]
PAPER = ("convlstm", "smslstm", "tmslstm", "mslstm")


def conv(h: int, w: int, c_in: int, c_out: int, k: int) -> int:
    return 2 * h * w * c_in * c_out * k * k


def mk_cell_flops(h: int, w: int, c_in: int, hidden: int, kernels=(3, 5)) -> int:
    """Per branch k: gates Conv_k([x; h]) (c_in + hidden -> 4 hidden) and ConvC_k(c_k) (hidden -> hidden);
    then the 1x1 fusion of the branches' memories (n * hidden -> hidden)."""
    per_branch = sum(conv(h, w, c_in + hidden, 4 * hidden, k) + conv(h, w, hidden, hidden, k) for k in kernels)
    return per_branch + conv(h, w, len(kernels) * hidden, hidden, 1)


def convlstm_cell_flops(h: int, w: int, c_in: int, hidden: int, k: int = 3) -> int:
    return conv(h, w, c_in + hidden, 4 * hidden, k)


def network_step_flops(cfg: ModelConfig) -> int:
    """One time step of embed -> cells (layer i at H/s_i x W/s_i) -> head, patch p applied first."""
    p = cfg.patch_size
    h, w = cfg.frame_size[0] // p, cfg.frame_size[1] // p
    cp = cfg.in_channels * p * p
    scales = cfg.scales if cfg.name in ("smslstm", "mslstm") else (1,) * cfg.layers
    cell = mk_cell_flops if cfg.name in ("tmslstm", "mslstm") else convlstm_cell_flops
    kw = {"kernels": cfg.mk_kernels} if cell is mk_cell_flops else {"k": cfg.kernel_size}
    cells = sum(cell(h // s, w // s, cfg.hidden, cfg.hidden, **kw) for s in scales)
    return conv(h, w, cp, cfg.hidden, 1) + cells + conv(h, w, cfg.hidden, cp, 1)


def counted(module: torch.nn.Module, *args) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args)
    return int(counter.get_total_flops())


def test_one_mk_cell_by_hand():
    cell = MKLSTMCell(5, 6, (3, 5))
    x, state = torch.rand(2, 5, 12, 10), cell.init_state(2, 12, 10)
    assert counted(cell, x, state) == 2 * mk_cell_flops(12, 10, 5, 6)
    # three branches, as the config allows any number of distinct odd kernels
    cell3 = MKLSTMCell(4, 4, (1, 3, 7))
    assert counted(cell3, torch.rand(1, 4, 8, 8), cell3.init_state(1, 8, 8)) == mk_cell_flops(8, 8, 4, 4, (1, 3, 7))


@pytest.mark.parametrize("name", PAPER)
def test_one_pyramid_step_by_hand(name):
    """T = 2 frames = one step; scales (1, 2, 4, 4, 2, 1): layers at 32, 16, 8, 8, 16, 32 pixels."""
    cfg = ModelConfig(name=name, hidden=4, layers=6, scales=(1, 2, 4, 4, 2, 1), frame_size=(32, 32), input_frames=1,
                      output_frames=1, in_channels=2, patch_size=1)
    net = build_model(cfg)
    frames = torch.rand(3, 2, 2, 32, 32)
    assert count_flops(net, frames) == 3 * network_step_flops(cfg)
    # with patching: the grid is H/p x W/p with C*p*p channels
    cfg_p = ModelConfig(name=name, hidden=4, layers=4, scales=(1, 2, 2, 1), frame_size=(32, 32), input_frames=2,
                        output_frames=2, patch_size=4)
    assert count_flops(build_model(cfg_p), torch.rand(1, 4, 1, 32, 32)) == 3 * network_step_flops(cfg_p)


@functools.cache
def reference_flops(name: str) -> int:
    """``model_flops`` of the paper's network (64x64, hidden 64, 6 layers, 10 + 10 frames); counted once per name."""
    return model_flops(ModelConfig(name=name))


@pytest.mark.parametrize("name", PAPER)
def test_model_flops_of_the_reference_network_by_hand(name):
    cfg = ModelConfig(name=name)
    assert reference_flops(name) == (cfg.total_frames - 1) * network_step_flops(cfg)


def test_model_flops_scales_with_batch_and_frames():
    cfg = ModelConfig(name="mslstm", hidden=4, frame_size=(16, 16), input_frames=2, output_frames=2)
    one = model_flops(cfg)
    assert one == 3 * network_step_flops(cfg)
    assert model_flops(cfg, batch=3) == 3 * one and model_flops(cfg, total_frames=6) == 5 * network_step_flops(cfg)


def _table(path: Path, heading: str) -> dict[str, tuple[int, float]]:
    """{first cell: (parameters, GFLOPs / sequence)} of the markdown table whose header starts with ``heading``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading) and "GFLOPs / sequence" in line)
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = (int(cells[1].replace(",", "")), float(cells[-1].replace(",", "")))
    return rows


def _meta_params(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(ModelConfig(name=name)).parameters())


@pytest.mark.parametrize("doc, key", [("README.md", label_of), ("docs/model.md", str)])
def test_doc_tables_are_model_flops(doc, key):
    table = _table(ROOT / doc, "| model | parameters | authors' code |")
    assert set(table) == {key(n) for n in PAPER}, table
    assert set(PAPER) <= set(model_names())
    for name in PAPER:
        params, gflops = table[key(name)]
        flops = reference_flops(name)
        assert gflops == round(flops / 1e9, 2), (doc, name, flops)
        assert params == _meta_params(name), (doc, name)
    # the pyramid's saving, as the docs state it: MS- costs well under half of its full-resolution twin
    assert table[key("mslstm")][1] < 0.5 * table[key("tmslstm")][1]
    assert table[key("smslstm")][1] < 0.5 * table[key("convlstm")][1]


def test_counter_sees_every_conv_of_the_network():
    """Sum over modules of their own conv FLOPs = the network's total: nothing outside convs is counted, no conv
    is missed (one step, so each conv runs once)."""
    cfg = ModelConfig(name="mslstm", hidden=4, layers=4, scales=(1, 2, 2, 1), frame_size=(16, 16), input_frames=1,
                      output_frames=1)
    net = build_model(cfg)
    sizes: dict[torch.nn.Module, tuple[int, int]] = {}
    def record(mod, inp, out):
        sizes[mod] = tuple(out.shape[-2:])

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    total = count_flops(net, torch.rand(1, 2, 1, 16, 16))
    for hook in hooks:
        hook.remove()
    by_hand = sum(conv(h, w, m.in_channels, m.out_channels, m.kernel_size[0]) for m, (h, w) in sizes.items())
    assert len(sizes) == sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert total == by_hand


# --------------------------------------------------------------- two conventions: FLOPs (MAC = 2) and thop's MACs
def thop_conv_macs(h: int, w: int, c_in: int, c_out: int, k: int) -> int:
    """thop's count of a Conv2d (thop/vision/basic_hooks.py count_convNd): output elements x C_in x k_h x k_w, one
    per multiply-accumulate, no bias term."""
    return (c_out * h * w) * c_in * k * k


def test_convlstm_both_conventions_equal_the_analytic_count():
    """ConvLSTM, 2 frames in, 3 out (4 rollout steps), by hand: per step the 1x1 embedding, per layer the gates'
    conv over [x; h] (c + hidden -> 4 hidden, k x k), the 1x1 head; MACs = thop's count, FLOPs = 2 x MACs."""
    from model.flops import model_macs

    cfg = ModelConfig(name="convlstm", hidden=6, layers=3, scales=(1, 1, 1), frame_size=(12, 8), input_frames=2,
                      output_frames=3, in_channels=2, patch_size=1, kernel_size=3)
    h, w, hid = 12, 8, 6
    step = thop_conv_macs(h, w, 2, hid, 1) + 3 * thop_conv_macs(h, w, hid + hid, 4 * hid, 3) \
        + thop_conv_macs(h, w, hid, 2, 1)
    assert step == 12 * 8 * (2 * 6 + 3 * 12 * 24 * 9 + 6 * 2)
    steps = cfg.total_frames - 1
    assert model_macs(cfg) == steps * step
    assert model_flops(cfg) == 2 * steps * step
    assert model_macs(cfg, batch=2) == 2 * steps * step
    # the same on real tensors with the counter, whole rollout
    real = count_flops(build_model(cfg), torch.rand(1, cfg.total_frames, 2, 12, 8))
    assert real == model_flops(cfg, exact=True) == 2 * model_macs(cfg)


def test_models_table_names_both_conventions(tmp_path, monkeypatch, capsys):
    from mslstm.cli import main
    from model.flops import model_macs

    monkeypatch.chdir(tmp_path)
    small = ["--set", "model.hidden=8", "--set", "model.frame_size=[16, 16]"]
    assert main([*small, "models", "--from-params", "--json", "--names", "convlstm"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    from mslstm.config import load_config

    cfg = dataclasses.replace(load_config(None, ["model.hidden=8", "model.frame_size=[16, 16]"]).model,
                              name="convlstm")
    assert row["forward_macs"] == model_macs(cfg) and row["forward_flops"] == 2 * row["forward_macs"]
    assert main([*small, "models", "--from-params", "--names", "convlstm"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs/seq" in out and "GMACs/seq (thop)" in out and "which the paper's tables call FLOPs" in out
