"""MIM and MS-MIM (model/zoo/mim.py): parameter count against the authors' code, the cell equations, the core's
wiring (differential input, zig-zag memory, pyramid scales), and a tiny training run of both networks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_checks import check_trains_and_predicts
from model import ModelConfig, build_model, count_parameters
from model.zoo.mim import AUTHORS_DEAD_PARAMS, AUTHORS_PARAMS, MIMBlockCell, STLSTMCell, rescale

torch.set_num_threads(1)

HID, K = 64, 3
CONV = HID * HID * K * K + HID                      # one hidden -> hidden 3x3 conv block with its bias
# The authors' first layer holds MIM-N and MIM-S convs whose outputs it discards: x2h_n, n2h_n (3 blocks each),
# diff2o, n2o (1 each), x2h_s, c2h_s (4 each), s2o (1) = 17 blocks.
FIRST_LAYER_DEAD = 17 * CONV                        # 627,776
# Their 5 MIM layers compute a forget gate in x2h and h2h that c_t = T_t + i ⊙ g never reads.
FORGET_GATE_DEAD = 5 * 2 * CONV                     # 369,280
# Duplicate biases removed by fusing Conv(x) + Conv(h): ST-LSTM gates (4) and m gates (3); MIM layers: N (3),
# S (4), cell (3), m (3) gate blocks.
FUSED_BIASES = HID * (4 + 3) + 5 * HID * (3 + 4 + 3 + 3)   # 4,608


def tiny(name: str) -> ModelConfig:
    return ModelConfig(name=name, hidden=8, layers=6, frame_size=(16, 16), input_frames=3, output_frames=3)


@pytest.mark.parametrize("name", ["mim", "msmim"])
def test_parameter_count_against_the_authors(name):
    with torch.device("meta"):
        net = build_model(ModelConfig(name=name))
    assert AUTHORS_DEAD_PARAMS == FIRST_LAYER_DEAD + FORGET_GATE_DEAD
    assert count_parameters(net) == 6_359_809
    assert count_parameters(net) == AUTHORS_PARAMS - FIRST_LAYER_DEAD - FORGET_GATE_DEAD - FUSED_BIASES


def _split(conv, a, b):
    """Conv([a; b]) computed the authors' way: Conv(a) (with the bias) + Conv(b)."""
    ca = a.shape[1]
    pad = conv.padding
    return F.conv2d(a, conv.weight[:, :ca], conv.bias, padding=pad) + F.conv2d(b, conv.weight[:, ca:], padding=pad)


def test_mim_block_matches_the_equations():
    torch.manual_seed(0)
    cell = MIMBlockCell(4, 4, 3)
    x, x_prev, m = (torch.randn(2, 4, 6, 7) for _ in range(3))
    h, c, n, s = (torch.randn(2, 4, 6, 7) for _ in range(4))
    d = x - x_prev
    i_n, f_n, g_n = _split(cell.gates_n, d, n).chunk(3, 1)
    n_t = torch.sigmoid(f_n) * n + torch.sigmoid(i_n) * torch.tanh(g_n)
    dd = torch.sigmoid(cell.conv_d2o(d) + cell.conv_n2o(n_t)) * torch.tanh(n_t)
    i_s, f_s, g_s, o_s = _split(cell.gates_s, dd, c).chunk(4, 1)
    s_t = torch.sigmoid(f_s) * s + torch.sigmoid(i_s) * torch.tanh(g_s)
    tt = torch.sigmoid(o_s + cell.conv_s2o(s_t)) * torch.tanh(s_t)
    i, g, o = _split(cell.gates, x, h).chunk(3, 1)
    c_t = tt + torch.sigmoid(i) * torch.tanh(g)
    i_m, f_m, g_m = _split(cell.gates_m, x, m).chunk(3, 1)
    m_t = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
    h_t = torch.sigmoid(o + cell.conv_c2o(c_t) + cell.conv_m2o(m_t)) * torch.tanh(cell.fuse(torch.cat([c_t, m_t], 1)))
    h_out, m_out, state = cell(x, x_prev, m, (h, c, n, s))
    for got, ref in zip((h_out, m_out, *state), (h_t, m_t, h_t, c_t, n_t, s_t)):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_st_lstm_first_layer_matches_the_equations():
    torch.manual_seed(1)
    cell = STLSTMCell(4, 4, 3)
    x, m, h, c = (torch.randn(1, 4, 5, 5) for _ in range(4))
    i, f, g, o = _split(cell.gates, x, h).chunk(4, 1)
    c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    i_m, f_m, g_m = _split(cell.gates_m, x, m).chunk(3, 1)
    m_t = torch.sigmoid(f_m) * m + torch.sigmoid(i_m) * torch.tanh(g_m)
    h_t = torch.sigmoid(o + cell.conv_c2o(c_t) + cell.conv_m2o(m_t)) * torch.tanh(cell.fuse(torch.cat([c_t, m_t], 1)))
    h_out, m_out, (h2, c2) = cell(x, torch.randn_like(x), m, (h, c))   # x_prev is not read by the first layer
    for got, ref in zip((h_out, m_out, h2, c2), (h_t, m_t, h_t, c_t)):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["mim", "msmim"])
def test_core_wiring_differential_input_and_zigzag_memory(name):
    """Layer l at step t reads x_prev = h_{t-1}^{l-1} at its own scale; m goes up the layers and from the top layer
    at t-1 to layer 0 at t; every layer runs at its scale."""
    torch.manual_seed(2)
    net = build_model(tiny(name))
    scales = net.core.scales
    assert scales == ((1, 2, 4, 4, 2, 1) if name == "msmim" else (1,) * 6)
    calls: list[dict] = []

    def pre(layer):
        def hook(mod, args):
            calls.append({"layer": layer, "x": args[0], "x_prev": args[1], "m_in": args[2]})
        return hook

    def post(layer):
        def hook(mod, args, out):
            calls[-1].update(h=out[0], m_out=out[1])
        return hook

    for i, cell in enumerate(net.core.cells):
        cell.register_forward_pre_hook(pre(i))
        cell.register_forward_hook(post(i))
    with torch.no_grad():
        net(torch.rand(1, 6, 1, 16, 16))
    steps = [calls[t * 6:(t + 1) * 6] for t in range(len(calls) // 6)]
    assert len(steps) == 5
    for t, step in enumerate(steps):
        for i, call in enumerate(step):
            assert call["x"].shape[-1] == 16 // scales[i] and call["h"].shape[-1] == 16 // scales[i]
            if i > 0:
                want = rescale(steps[t - 1][i - 1]["h"], scales[i - 1], scales[i]) if t else torch.zeros_like(call["x"])
                torch.testing.assert_close(call["x_prev"], want)
                torch.testing.assert_close(call["m_in"], rescale(step[i - 1]["m_out"], scales[i - 1], scales[i]))
        if t:
            torch.testing.assert_close(step[0]["m_in"], steps[t - 1][-1]["m_out"])


@pytest.mark.parametrize("name", ["mim", "msmim"])
def test_tiny_network_trains_and_predicts(name):
    torch.manual_seed(3)
    cfg = tiny(name)
    net = build_model(cfg)
    check_trains_and_predicts(net, cfg)
