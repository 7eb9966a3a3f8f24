"""The baseline ConvRNNs of the zoo (TrajGRU, PredRNN, PredRNN++, PredRNN-V2, MotionRNN), flat and MS-:
parameter counts against the authors' code, tiny-shape forward / predict / two training steps, the cells' own
mechanics (warping, zigzag memory across scales, GHU placement, MIM / MotionGRU placement), PredRNN-V2's
decoupling loss and reverse scheduled sampling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model import ModelConfig, build_model, count_parameters, get_spec
from model.networks import layer_input, rescale
from model.zoo._ops import warp
from model.zoo.motionrnn import MotionRNNCell
from model.zoo.predrnn import STLSTMCell
from model.zoo.predrnn_v2 import decoupling_loss
from mslstm.training.recipe import reverse_sampling_mask, reverse_schedule

torch.set_num_threads(1)

FAMILIES = ("trajgru", "predrnn", "predrnnpp", "predrnnv2", "motionrnn")
NAMES = FAMILIES + tuple("ms" + n for n in FAMILIES)

# ------------------------------------------------------------------------------------------- parameter counts
# Reference configuration: hidden 64, 6 layers, kernel 3, 64x64, one channel, 1x1 embedding (128) and head (65).
# The authors' counts (mazhf/MS-RNN, models/) minus what we do not build, term by term:
#   fused: the authors compute Conv(x) + Conv(state) with a bias on each conv; one conv over [x; state] keeps
#          one bias per output channel (the same function).
#   dead:  parameters the authors build but their forward never uses (no gradient; DDP refuses them).
H = 64
AUTHORS = {"trajgru": 1_915_705, "predrnn": 3_594_817, "predrnnpp": 5_608_513, "predrnnv2": 3_598_977,
           "motionrnn": 7_560_547}
FUSED = {
    "trajgru": 6 * H,                       # x-to-flow + h-to-flow convs
    "predrnn": 6 * (4 * H + 3 * H),         # gates of c ([x; h]) and of M ([x; M])
    "predrnnpp": 2 * H,                     # GHU [x; z] (the Causal LSTM convs are single convs already)
    "predrnnv2": 6 * (4 * H + 3 * H),       # as PredRNN
    "motionrnn": (4 * H + 3 * H)            # layer 1: gates of c and M
                 + 5 * (3 * H + 4 * H + 4 * H + 3 * H),  # layers 2-6: + MIM-N [d; n] and MIM-S [D; c]
}
DEAD = {
    "trajgru": 0,
    "predrnn": 0,
    "predrnnpp": 5 * 147_712,               # a GHU in every layer; only layer 2's runs
    "predrnnv2": 0,
    "motionrnn": 627_776 + 33_179,          # layer 1's MIM-N/MIM-S (c keeps its forget path); layer 6's MotionGRU
}
OURS = {"trajgru": 1_915_321, "predrnn": 3_592_129, "predrnnpp": 4_869_825, "predrnnv2": 3_596_289,
        "motionrnn": 6_894_664}


@pytest.mark.parametrize("name", NAMES)
def test_reference_parameter_counts_against_the_authors(name):
    family = name[2:] if name.startswith("ms") else name
    with torch.device("meta"):
        net = build_model(ModelConfig(name=name))
    n = count_parameters(net)
    assert n == OURS[family]                                # MS- versions: pooling/upsampling have no parameters
    assert n + FUSED[family] + DEAD[family] == AUTHORS[family]


# ----------------------------------------------------------------------------------------------- tiny models
def tiny(name: str) -> ModelConfig:
    return ModelConfig(name=name, hidden=8, layers=6, frame_size=(16, 16), input_frames=3, output_frames=3)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_predict_and_two_training_steps(name):
    cfg = tiny(name)
    spec = get_spec(name)
    assert spec.arrangement == ("pyramid" if name.startswith("ms") else "stack")
    torch.manual_seed(0)
    net = build_model(cfg)
    frames = torch.rand(2, cfg.total_frames, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])           # (B, T - input_frames - 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)  # the authors LR
    weights = dict((spec.recipe or {}).get("aux_loss_weights", {}))
    losses = []
    for _ in range(2):
        out, aux = net(frames, mask, return_aux=True)
        assert out.shape == (2, cfg.total_frames - 1, 1, 16, 16)
        loss = F.mse_loss(out, frames[:, 1:]) + sum(weights.get(k, 1.0) * v for k, v in aux.items())
        opt.zero_grad()
        loss.backward()
        for pname, p in net.named_parameters():
            assert p.grad is not None, f"{name}: {pname} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[1] < losses[0]
    net.eval()
    fut = net.predict(frames[:, : cfg.input_frames], 4)
    assert fut.shape == (2, 4, 1, 16, 16) and torch.isfinite(fut).all()
    # predict == the autoregressive part of forward without a mask
    ref = net(frames, None)[:, cfg.input_frames - 1:]
    torch.testing.assert_close(fut[:, :3], ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------- helpers
def test_warp_zero_flow_is_identity_and_integer_flow_shifts():
    x = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(warp(x, torch.zeros(2, 2, 5, 7)), x)
    flow = torch.zeros(2, 2, 5, 7)
    flow[:, 0] = 1.0                                         # sample one pixel to the right
    out = warp(x, flow)
    torch.testing.assert_close(out[..., :-1], x[..., 1:])
    assert (out[..., -1] == 0).all()                         # outside the frame reads zeros
    flow = torch.zeros(2, 2, 5, 7)
    flow[:, 1] = 1.0                                         # sample one pixel below (channel 1: vertical, +y down)
    out = warp(x, flow)
    torch.testing.assert_close(out[..., :-1, :], x[..., 1:, :])
    assert (out[..., -1, :] == 0).all()
    flow = torch.zeros(2, 2, 5, 7)
    flow[:, 0], flow[:, 1] = -2.0, -1.0                      # two to the left, one up
    out = warp(x, flow)
    torch.testing.assert_close(out[..., 1:, 2:], x[..., :-1, :-2])
    assert (out[..., 0, :] == 0).all() and (out[..., :2] == 0).all()


def test_rescale_and_layer_input_follow_the_pyramid():
    t = torch.rand(1, 2, 8, 8)
    assert rescale(t, 1, 2).shape == (1, 2, 4, 4) and rescale(t, 2, 1).shape == (1, 2, 16, 16)
    torch.testing.assert_close(rescale(t, 1, 2), F.max_pool2d(t, 2))
    assert rescale(t, 4, 4) is t
    scales = (1, 2, 2, 1)
    outs = [torch.rand(1, 2, 8, 8), torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4)]
    up = F.interpolate(outs[2], scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(layer_input(3, None, outs, scales), up + outs[0])
    torch.testing.assert_close(layer_input(1, None, outs, scales), F.max_pool2d(outs[0], 2))


def test_st_lstm_fused_convs_equal_the_unfused_equations():
    torch.manual_seed(0)
    cell = STLSTMCell(4, 4, 3)
    x, h, c, m = (torch.rand(1, 4, 6, 6) for _ in range(4))
    out, (h1, c1), m1, (dc, dm) = cell(x, (h, c), m)
    wh, bh = cell.gates_h.weight, cell.gates_h.bias
    wm, bm = cell.gates_m.weight, cell.gates_m.bias
    gates = F.conv2d(x, wh[:, :4], bh, padding=1) + F.conv2d(h, wh[:, 4:], None, padding=1)
    i, f, g, o = gates.chunk(4, 1)
    c_ref = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    gm = F.conv2d(x, wm[:, :4], bm, padding=1) + F.conv2d(m, wm[:, 4:], None, padding=1)
    i2, f2, g2 = gm.chunk(3, 1)
    m_ref = torch.sigmoid(f2) * m + torch.sigmoid(i2) * torch.tanh(g2)
    o = torch.sigmoid(o + cell.c2o(c_ref) + cell.m2o(m_ref))
    h_ref = o * torch.tanh(cell.fuse(torch.cat([c_ref, m_ref], 1)))
    for a, b in ((c1, c_ref), (m1, m_ref), (h1, h_ref), (out, h_ref), (dc, torch.sigmoid(i) * torch.tanh(g))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_ms_predrnn_memory_changes_scale_with_the_layers():
    net = build_model(tiny("mspredrnn"))
    seen = []
    for cell in net.core.cells:
        cell.register_forward_hook(lambda mod, args, out: seen.append((args[0].shape[-1], args[2].shape[-1])))
    net(torch.rand(1, 6, 1, 16, 16))
    # every layer reads x and M at its own scale (16 / scales), M included, at every step
    assert seen[:6] == [(16, 16), (8, 8), (4, 4), (4, 4), (8, 8), (16, 16)]
    assert len(seen) == 6 * 5


def test_predrnn_zigzag_memory_reaches_the_bottom_layer_at_the_next_step():
    torch.manual_seed(0)
    net = build_model(tiny("predrnn"))
    b = 1
    states = net.core.init_state(b, 16, 16)
    e = torch.rand(b, 8, 16, 16)
    _, (layers, m_top) = net.core(e, states)
    layers0, m0 = net.core.init_state(b, 16, 16)
    h_a, _ = net.core(e, (layers0, m_top))                   # same layer states, M from the top at t-1 ...
    h_b, _ = net.core(e, (layers0, torch.zeros_like(m_top)))  # ... or a zero M
    assert not torch.allclose(h_a, h_b)


def test_predrnnpp_has_one_gradient_highway_at_layer_two():
    net = build_model(tiny("predrnnpp"))
    assert [cell.ghu is not None for cell in net.core.cells] == [False, True, False, False, False, False]
    states, _ = net.core.init_state(1, 16, 16)
    assert [len(s) for s in states] == [2, 3, 2, 2, 2, 2]    # (h, c) and (h, c, z) for the GHU layer


def test_motionrnn_places_mim_blocks_and_motion_grus_as_the_authors_use_them():
    net = build_model(tiny("msmotionrnn"))
    cells = net.core.cells
    assert [c.mim for c in cells] == [False, True, True, True, True, True]
    assert [c.motion is not None for c in cells] == [True, True, True, True, True, False]
    states, m = net.core.init_state(1, 16, 16)
    assert states[2][-1].shape == (1, 18, 2, 2)              # trend D at half the 4x4 layer, 2 k^2 channels
    with pytest.raises(ValueError, match="hidden: .*multiple of 4"):
        MotionRNNCell(6, 6)
    with pytest.raises(ValueError, match="frame_size: MotionRNN"):
        build_model(ModelConfig(name="msmotionrnn", hidden=8, frame_size=(12, 12), input_frames=2,
                                output_frames=1))(torch.rand(1, 3, 1, 12, 12))


# -------------------------------------------------------------------------------------------------- PredRNN-V2
def test_predrnnv2_declares_its_recipe_in_the_spec():
    for name in ("predrnnv2", "mspredrnnv2"):
        recipe = get_spec(name).recipe
        assert recipe["aux_loss_weights"] == {"decouple": 0.01} and recipe["sampling"] == "reverse"
    assert get_spec("predrnn").recipe is None


def test_decoupling_loss_is_abs_cosine_per_channel():
    adapter = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        adapter.bias.zero_()
    d = torch.rand(2, 3, 4, 4) + 0.1
    torch.testing.assert_close(decoupling_loss(adapter, d, d), torch.ones(2, 3))
    torch.testing.assert_close(decoupling_loss(adapter, d, -2 * d), torch.ones(2, 3))
    a = torch.zeros(1, 3, 2, 2)
    b = torch.zeros(1, 3, 2, 2)
    a[..., 0, 0] = 1.0
    b[..., 1, 1] = 1.0
    torch.testing.assert_close(decoupling_loss(adapter, a, b), torch.zeros(1, 3))


def test_predrnnv2_aux_loss_is_the_mean_over_steps_of_the_layer_sum():
    torch.manual_seed(0)
    net = build_model(tiny("mspredrnnv2"))
    assert net.aux_losses() == {"decouple": 0}                 # before any forward
    _, aux = net(torch.rand(2, 6, 1, 16, 16), return_aux=True)
    loss = aux["decouple"]
    assert loss.dim() == 0 and 0 < loss.item() <= 6 * 8       # 6 layers x 8 channels x |cos| <= 1
    assert net.core._steps == 5


def test_reverse_schedule_matches_the_authors_curves():
    assert reverse_schedule(0.0) == (0.5, 0.5) and reverse_schedule(0.3) == (0.5, 0.5)
    eta_r, eta = reverse_schedule(0.5)
    assert eta_r == pytest.approx(1 - 0.5 * torch.exp(torch.tensor(-2.5)).item()) and eta == pytest.approx(0.25)
    assert reverse_schedule(2 / 3) == (1.0, 0.0) and reverse_schedule(1.0) == (1.0, 0.0)
    with pytest.raises(ValueError, match="progress"):
        reverse_schedule(-0.1)


def test_reverse_sampling_mask_drives_the_input_steps_of_the_rollout():
    g = torch.Generator().manual_seed(0)
    mask = reverse_sampling_mask(1.0, 64, 3, 6, g)
    assert mask.shape == (64, 4)
    assert (mask[:, :2] == 1).all() and (mask[:, 2:] == 0).all()   # end of training: inputs true, outputs free
    early = reverse_sampling_mask(0.0, 4000, 3, 6, g)
    assert 0.45 < early.mean().item() < 0.55
    torch.manual_seed(0)
    net = build_model(tiny("predrnnv2"))
    frames = torch.rand(2, 6, 1, 16, 16)
    teacher = net(frames, torch.ones(2, 2))                   # future mask: every step reads the truth
    torch.testing.assert_close(net(frames, torch.ones(2, 4)), teacher)   # full (B, T-2) mask of ones: same
    free_inputs = torch.ones(2, 4)
    free_inputs[:, 0] = 0                                     # step 1 (an input step) reads the prediction
    out = net(frames, free_inputs)
    torch.testing.assert_close(out[:, :1], teacher[:, :1])    # step 0 always reads frame 0
    assert not torch.allclose(out[:, 1], teacher[:, 1])
    with pytest.raises(ValueError, match=r"mask: expected shape .*\(B, T - 2\) = \(2, 4\)"):
        net(frames, torch.ones(2, 3))
