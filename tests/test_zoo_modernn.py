"""MoDeRNN and MS-MoDeRNN (model/zoo/modernn.py): parameter count against the authors' code, the cell equations,
and a tiny training run of both networks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo_checks import check_trains_and_predicts
from model import ModelConfig, build_model, count_parameters
from model.zoo.modernn import AUTHORS_PARAMS, MoDeRNNCell

torch.set_num_threads(1)

HID = 64
# Duplicate biases removed by fusing Conv(x) + Conv(h) in the ConvLSTM gates (4 blocks) of each layer.
FUSED_BIASES = 6 * HID * 4   # 1,536


def tiny(name: str) -> ModelConfig:
    return ModelConfig(name=name, hidden=8, layers=6, frame_size=(16, 16), input_frames=3, output_frames=3)


@pytest.mark.parametrize("name", ["modernn", "msmodernn"])
def test_parameter_count_against_the_authors(name):
    with torch.device("meta"):
        net = build_model(ModelConfig(name=name))
    assert count_parameters(net) == 5_853_121 == AUTHORS_PARAMS - FUSED_BIASES


def test_cell_matches_the_equations():
    torch.manual_seed(0)
    cell = MoDeRNNCell(4, 4, 3, iters=5)
    x, h, c = (torch.randn(2, 4, 9, 8) for _ in range(3))

    def mean_conv(convs, t):   # (Conv3x3(t) + Conv5x5(t) + Conv7x7(t)) / 3
        return sum(F.conv2d(t, cv.weight, cv.bias, padding=cv.weight.shape[-1] // 2) for cv in convs) / 3

    assert [cv.weight.shape[-1] for cv in cell.dcb_x.convs] == [3, 5, 7]
    xr, hr = x, h
    for j in range(1, 6):
        if j % 2:
            xr = 2 * torch.sigmoid(mean_conv(cell.dcb_h.convs, hr)) * xr
        else:
            hr = 2 * torch.sigmoid(mean_conv(cell.dcb_x.convs, xr)) * hr
    w, b = cell.gates.weight, cell.gates.bias
    z = F.conv2d(xr, w[:, :4], b, padding=1) + F.conv2d(hr, w[:, 4:], padding=1)
    i, f, g, o = z.chunk(4, 1)
    c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_t = torch.sigmoid(o) * torch.tanh(c_t)
    h_out, (h2, c2) = cell(x, (h, c))
    for got, ref in zip((h_out, h2, c2), (h_t, h_t, c_t)):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["modernn", "msmodernn"])
def test_tiny_network_trains_and_predicts(name):
    torch.manual_seed(3)
    cfg = tiny(name)
    net = build_model(cfg)
    assert net.core.scales == ((1, 2, 4, 4, 2, 1) if name == "msmodernn" else (1,) * 6)
    check_trains_and_predicts(net, cfg)
