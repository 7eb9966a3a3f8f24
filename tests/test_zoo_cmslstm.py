"""CMS-LSTM and MS-CMS-LSTM (model/zoo/cmslstm.py): parameter count against the authors' code, the block
self-attention against a loop over blocks, the cell equations, and a tiny training run of both networks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_checks import check_trains_and_predicts
from model import ModelConfig, build_model, count_parameters
from model.zoo.cmslstm import AUTHORS_PARAMS, BlockSelfAttention, CMSLSTMCell

torch.set_num_threads(1)

HID = 64
# Duplicate biases removed by fusing Conv(x) + Conv(h): ConvLSTM gates (4 blocks) and SE-block gates (3) per layer.
FUSED_BIASES = 6 * HID * (4 + 3)   # 2,688


def tiny(name: str, **kw) -> ModelConfig:
    base = dict(name=name, hidden=8, layers=6, frame_size=(16, 16), input_frames=3, output_frames=3)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("name", ["cmslstm", "mscmslstm"])
def test_parameter_count_against_the_authors(name):
    with torch.device("meta"):
        net = build_model(ModelConfig(name=name))
    assert count_parameters(net) == 4_480_705 == AUTHORS_PARAMS - FUSED_BIASES


def _attention_reference(att: BlockSelfAttention, u: torch.Tensor) -> torch.Tensor:
    """Loop over the s x s blocks: the positions of h and of c in a block attend to each other (no scaling)."""
    q, k, v = (conv(u) for conv in att.qkv)
    b, ch, hh, w2 = u.shape
    w, s = w2 // 2, att.splits
    bh, bw = hh // s, w // s
    out = u.clone()
    for r in range(s):
        for c in range(s):
            rows = slice(r * bh, (r + 1) * bh)
            cols = [slice(c * bw, (c + 1) * bw), slice(w + c * bw, w + (c + 1) * bw)]    # in h, in c

            def tok(t):
                return torch.cat([t[:, :, rows, cl].flatten(2) for cl in cols], dim=2)  # (B, C, 2*bh*bw)

            qt, kt, vt = tok(q), tok(k), tok(v)
            a = torch.softmax(qt.transpose(1, 2) @ kt, dim=-1)                            # (B, N, N)
            ctx = vt @ a.transpose(1, 2)                                                 # (B, C, N)
            for j, cl in enumerate(cols):
                part = ctx[:, :, j * bh * bw:(j + 1) * bh * bw].reshape(b, ch, bh, bw)
                out[:, :, rows, cl] = out[:, :, rows, cl] + part
    return out


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_block_attention_matches_a_loop_over_blocks(splits):
    torch.manual_seed(splits)
    att = BlockSelfAttention(3, splits)
    u = torch.randn(2, 3, 8, 16)                 # [h | c] of an 8 x 8 map
    torch.testing.assert_close(att(u), _attention_reference(att, u), atol=1e-5, rtol=1e-5)


def _split(conv, a, b):
    """Conv([a; b]) computed the authors' way: Conv(a) (with the bias) + Conv(b)."""
    ca = a.shape[1]
    pad = conv.padding
    return F.conv2d(a, conv.weight[:, :ca], conv.bias, padding=pad) + F.conv2d(b, conv.weight[:, ca:], padding=pad)


def test_cell_matches_the_equations():
    torch.manual_seed(0)
    cell = CMSLSTMCell(4, 4, 3, iters=5)
    x, h, c = (torch.randn(2, 4, 8, 8) for _ in range(3))
    xr, hr = x, h
    for j in range(1, 6):
        if j % 2:
            xr = 2 * torch.sigmoid(cell.conv_q(hr)) * xr
        else:
            hr = 2 * torch.sigmoid(cell.conv_r(xr)) * hr
    i, f, g, o = _split(cell.gates, xr, hr).chunk(4, 1)
    c1 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h1 = torch.sigmoid(o) * torch.tanh(c1)
    u = torch.cat([h1, c1], dim=3)
    a = cell.conv_a(torch.cat([_attention_reference(att, u) for att in cell.attn], 1))
    z = cell.conv_z(torch.cat([a[..., :8], a[..., 8:]], 1))
    i, g, o = _split(cell.gates_se, h1, z).chunk(3, 1)
    c_t = (1 - torch.sigmoid(i)) * c1 + torch.sigmoid(i) * torch.tanh(g)
    h_t = torch.sigmoid(o) * c_t
    h_out, (h2, c2) = cell(x, (h, c))
    for got, ref in zip((h_out, h2, c2), (h_t, h_t, c_t)):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_map_not_divisible_by_the_splits_is_a_clear_error():
    net = build_model(tiny("mscmslstm", frame_size=(8, 8)))  # layers at 4 x 4 and 2 x 2: 2 is not split into 4
    with pytest.raises(ValueError, match="frame_size: CMS-LSTM splits"):
        net(torch.rand(1, 6, 1, 8, 8))


@pytest.mark.parametrize("name", ["cmslstm", "mscmslstm"])
def test_tiny_network_trains_and_predicts(name):
    torch.manual_seed(3)
    cfg = tiny(name)
    net = build_model(cfg)
    check_trains_and_predicts(net, cfg)
