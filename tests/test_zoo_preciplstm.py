"""PrecipLSTM and MS-PrecipLSTM (model/zoo/preciplstm.py): parameter count against the authors' code, the plain
PyTorch local attention against the window semantics of the authors' CUDA extension, the cell equations, the core's
wiring (temporal difference of each layer's input, zig-zag memory) and a tiny training run of both networks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_checks import check_trains_and_predicts
from model import ModelConfig, build_model, count_parameters
from model.zoo.preciplstm import AUTHORS_PARAMS, LocalAttention, PrecipLSTMCell, rescale

torch.set_num_threads(1)

HID = 64
# Duplicate biases removed by fusing Conv(x) + Conv(h) in the four gate blocks of each layer: c (4), m, ms, mt (3).
FUSED_BIASES = 6 * HID * (4 + 3 + 3 + 3)   # 4,992


def tiny(name: str) -> ModelConfig:
    return ModelConfig(name=name, hidden=8, layers=6, frame_size=(16, 16), input_frames=3, output_frames=3)


@pytest.mark.parametrize("name", ["preciplstm", "mspreciplstm"])
def test_parameter_count_against_the_authors(name):
    with torch.device("meta"):
        net = build_model(ModelConfig(name=name))
    # authors: 7,041,217 = 6 x (1,161,216 conv weights + 3 x 64 x 64 bias-free local-attention projections) + 193
    assert AUTHORS_PARAMS == 6 * (1_161_216 + 3 * HID * HID) + 193
    assert count_parameters(net) == 7_036_225 == AUTHORS_PARAMS - FUSED_BIASES


def _local_attention_reference(att: LocalAttention, x: torch.Tensor) -> torch.Tensor:
    """Loop form of Image-Local-Attention: window offsets [-(k//2), k-1-k//2] on each axis; out-of-frame window
    positions have score 0 (kept in the softmax) and value 0."""
    q, k, v = att.q(x), att.k(x), att.v(x)
    b, c, hh, ww = q.shape
    lo = -(att.window // 2)
    out = torch.zeros_like(v)
    for r in range(hh):
        for col in range(ww):
            scores, values = [], []
            for a in range(lo, lo + att.window):
                for d in range(lo, lo + att.window):
                    rr, cc = r + a, col + d
                    if 0 <= rr < hh and 0 <= cc < ww:
                        scores.append((q[:, :, r, col] * k[:, :, rr, cc]).sum(1))
                        values.append(v[:, :, rr, cc])
                    else:
                        scores.append(torch.zeros(b))
                        values.append(torch.zeros(b, c))
            w = torch.softmax(torch.stack(scores, 1), dim=1)                 # (B, window^2)
            out[:, :, r, col] = torch.einsum("bn,bnc->bc", w, torch.stack(values, 1))
    return out


@pytest.mark.parametrize("window", [1, 3, 4, 30])
def test_local_attention_matches_the_window_semantics(window):
    torch.manual_seed(window)
    att = LocalAttention(3, 5, window)
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(att(x), _local_attention_reference(att, x), atol=1e-5, rtol=1e-5)


def _split(conv, a, b):
    """Conv([a; b]) computed the authors' way: Conv(a) (with the bias) + Conv(b)."""
    ca = a.shape[1]
    pad = conv.padding
    return F.conv2d(a, conv.weight[:, :ca], conv.bias, padding=pad) + F.conv2d(b, conv.weight[:, ca:], padding=pad)


def test_cell_matches_the_equations():
    torch.manual_seed(0)
    cell = PrecipLSTMCell(4, 4, 3, window=3)
    x, x_prev, m = (torch.randn(2, 4, 6, 5) for _ in range(3))
    h, c, ms, mt = (torch.randn(2, 4, 6, 5) for _ in range(4))
    xa = x + cell.conv_att(_local_attention_reference(cell.attn, x))

    def mem(conv, inp, state):
        i, f, g = _split(conv, inp, state).chunk(3, 1)
        return torch.sigmoid(f) * state + torch.sigmoid(i) * torch.tanh(g)

    i, f, g, o = _split(cell.gates, xa, h).chunk(4, 1)
    c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    m_t, ms_t, mt_t = mem(cell.gates_m, xa, m), mem(cell.gates_ms, xa, ms), mem(cell.gates_mt, x - x_prev, mt)
    o = torch.sigmoid(o + cell.conv_c2o(c_t) + cell.conv_ms2o(ms_t) + cell.conv_mt2o(mt_t) + cell.conv_m2o(m_t))
    h_t = o * torch.tanh(cell.fuse(torch.cat([c_t, ms_t, mt_t, m_t], 1)))
    h_out, m_out, state = cell(x, x_prev, m, (h, c, ms, mt))
    for got, ref in zip((h_out, m_out, *state), (h_t, m_t, h_t, c_t, ms_t, mt_t)):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["preciplstm", "mspreciplstm"])
def test_core_wiring_temporal_difference_and_zigzag_memory(name):
    """Layer l at step t reads x_prev = its own input at t-1 (zeros at t = 0); m goes up the layers and from the top
    layer at t-1 to layer 0 at t; every layer runs at its scale."""
    torch.manual_seed(2)
    net = build_model(tiny(name))
    scales = net.core.scales
    assert scales == ((1, 2, 4, 4, 2, 1) if name == "mspreciplstm" else (1,) * 6)
    calls: list[dict] = []

    def pre(mod, args):
        calls.append({"x": args[0], "x_prev": args[1], "m_in": args[2]})

    def post(mod, args, out):
        calls[-1]["m_out"] = out[1]

    for cell in net.core.cells:
        cell.register_forward_pre_hook(pre)
        cell.register_forward_hook(post)
    with torch.no_grad():
        net(torch.rand(1, 6, 1, 16, 16))
    steps = [calls[t * 6:(t + 1) * 6] for t in range(len(calls) // 6)]
    assert len(steps) == 5
    for t, step in enumerate(steps):
        for i, call in enumerate(step):
            assert call["x"].shape[-1] == 16 // scales[i]
            want = steps[t - 1][i]["x"] if t else torch.zeros_like(call["x"])
            torch.testing.assert_close(call["x_prev"], want)
            if i > 0:
                torch.testing.assert_close(call["m_in"], rescale(step[i - 1]["m_out"], scales[i - 1], scales[i]))
        if t:
            torch.testing.assert_close(step[0]["m_in"], steps[t - 1][-1]["m_out"])


@pytest.mark.parametrize("name", ["preciplstm", "mspreciplstm"])
def test_tiny_network_trains_and_predicts(name):
    torch.manual_seed(3)
    cfg = tiny(name)
    net = build_model(cfg)
    check_trains_and_predicts(net, cfg)
