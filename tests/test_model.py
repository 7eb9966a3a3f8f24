"""The model family: shapes, gradients, exact parameter counts, MK-LSTM equations, rollout, errors.

Tiny shapes everywhere (hidden 4-8, 16x16 frames, 3 + 3 frames) except the parameter-count tests, which only
construct the reference models.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model import (
    ConvLSTMCell,
    MKLSTMCell,
    ModelConfig,
    build_model,
    count_flops,
    count_parameters,
    patchify,
    model_names,
    unpatchify,
)

MODEL_NAMES = model_names(tag="paper")  # the four networks of the paper (every registered model: test_model_zoo.py)

torch.set_num_threads(1)


def tiny(name: str = "mslstm", **kw) -> ModelConfig:
    base = dict(name=name, hidden=6, frame_size=(16, 16), input_frames=3, output_frames=3)
    base.update(kw)
    return ModelConfig(**base)


def frames_for(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, cfg.total_frames, cfg.in_channels, *cfg.frame_size, generator=g)


# ---------------------------------------------------------------------------------------------------- counts
# The authors' cells compute each gate block as Conv(x) + Conv(h), each conv with its own bias. Ours fuse the two
# into one conv over [x; h] (the same function) with ONE bias per gate block: 4 * hidden = 256 fewer parameters
# per fused pair at hidden 64. Authors' numbers: MS-LSTM 7,576,897 (one MK cell 1,262,784: two fused pairs),
# SMS-LSTM with ConvLSTM k3 cells 1,772,737 (one pair per cell). 7,576,897 - 6 * 2 * 256 = 7,573,825 and
# 1,772,737 - 6 * 256 = 1,771,201. Pooling/upsampling have no parameters, so each full-resolution stack has the
# count of its pyramid twin.
REFERENCE_COUNTS = {
    "convlstm": 1_771_201,
    "smslstm": 1_771_201,
    "tmslstm": 7_573_825,
    "mslstm": 7_573_825,
}
AUTHORS_COUNTS = {"mslstm": 7_576_897, "smslstm": 1_772_737}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reference_parameter_counts(name):
    net = build_model(ModelConfig(name=name))
    assert count_parameters(net) == REFERENCE_COUNTS[name]
    if name in AUTHORS_COUNTS:
        fused_pairs = 6 * (2 if name == "mslstm" else 1)
        assert count_parameters(net) + fused_pairs * 4 * 64 == AUTHORS_COUNTS[name]


def test_reference_cell_counts():
    mk = MKLSTMCell(64, 64, (3, 5))
    assert count_parameters(mk) == 1_262_272  # authors 1,262,784 = 1,262,272 + 2 * 256
    assert count_parameters(ConvLSTMCell(64, 64, 3)) == 295_168


def test_reference_defaults_are_the_paper():
    cfg = ModelConfig()
    assert (cfg.name, cfg.hidden, cfg.layers, cfg.frame_size) == ("mslstm", 64, 6, (64, 64))
    assert (cfg.input_frames, cfg.output_frames, cfg.scales, cfg.mk_kernels) == (10, 10, (1, 2, 4, 4, 2, 1), (3, 5))
    cfg.validate()


# ---------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size,patch", [((16, 16), 1), ((16, 24), 1), ((8, 12), 1), ((16, 24), 2)])
def test_forward_and_predict_shapes(name, size, patch):
    cfg = tiny(name, frame_size=size, patch_size=patch, hidden=4)
    net = build_model(cfg)
    x = frames_for(cfg)
    out = net(x)
    assert out.shape == (2, cfg.total_frames - 1, 1, *size)
    out_m = net(x, torch.ones(2, cfg.output_frames - 1))
    assert out_m.shape == out.shape
    fut = net.predict(x[:, : cfg.input_frames], 4)
    assert fut.shape == (2, 4, 1, *size)


def test_multichannel_and_custom_pyramid():
    cfg = tiny("mslstm", in_channels=3, layers=4, scales=(1, 2, 2, 1), mk_kernels=(1, 3, 5))
    net = build_model(cfg)
    x = frames_for(cfg)
    assert net(x).shape == (2, 5, 3, 16, 16)


def test_pyramid_skip_wiring():
    """Layer 5 input = up(out4) + out2 and layer 6 input = up(out5) + out1 (1-indexed), recorded with hooks."""
    cfg = tiny("smslstm", hidden=4)
    net = build_model(cfg)
    seen_in, seen_out = {}, {}

    def record(i):
        def hook(module, args, output):
            seen_in[i], seen_out[i] = args[0], output[0]

        return hook

    for i, cell in enumerate(net.core.cells):
        cell.register_forward_hook(record(i))
    x = torch.rand(1, 4, 16, 16)  # an embedded frame (B, hidden, H, W)
    states = net.core.init_state(1, 16, 16)
    net.core(x, states)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    assert [seen_in[i].shape[-1] for i in range(6)] == [16, 8, 4, 4, 8, 16]
    torch.testing.assert_close(seen_in[1], F.max_pool2d(seen_out[0], 2))
    torch.testing.assert_close(seen_in[2], F.max_pool2d(seen_out[1], 2))
    torch.testing.assert_close(seen_in[3], seen_out[2])
    torch.testing.assert_close(seen_in[4], up(seen_out[3]) + seen_out[1])
    torch.testing.assert_close(seen_in[5], up(seen_out[4]) + seen_out[0])


# ---------------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name):
    cfg = tiny(name, hidden=4)
    torch.manual_seed(0)
    net = build_model(cfg)
    x = frames_for(cfg)
    loss = (net(x, torch.rand(2, cfg.output_frames - 1)) - x[:, 1:]).pow(2).mean()
    loss.backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, pname


# ---------------------------------------------------------------------------------------------------- MK-LSTM math
def _mk_reference(cell: MKLSTMCell, x, state):
    """MK-LSTM written from the paper's equations with SEPARATE x and h convs (weights split from the fused cell):
    [i_k,f_k,g_k,o_k] = Conv_k(x) + Conv_k(h); c_k = s(f_k) c_k + s(i_k) tanh(g_k);
    o = s(o_3 + o_5 + Conv3x3(c_3) + Conv5x5(c_5)); h = o * tanh(Conv1x1([c_3; c_5]))."""
    h, c3, c5 = state
    n_in, hid = cell.in_channels, cell.hidden
    new_c, o_terms = [], []
    for gates, cconv, c, k in zip(cell.gates, cell.cell_convs, (c3, c5), (3, 5)):
        w_x, w_h = gates.weight[:, :n_in], gates.weight[:, n_in:]
        zx = F.conv2d(x, w_x, gates.bias, padding=k // 2)
        zh = F.conv2d(h, w_h, None, padding=k // 2)
        z = zx + zh
        i, f, g, o = z[:, :hid], z[:, hid : 2 * hid], z[:, 2 * hid : 3 * hid], z[:, 3 * hid :]
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        new_c.append(c_new)
        o_terms.append(o + F.conv2d(c_new, cconv.weight, cconv.bias, padding=k // 2))
    o = torch.sigmoid(o_terms[0] + o_terms[1])
    m = F.conv2d(torch.cat(new_c, 1), cell.fuse.weight, cell.fuse.bias)
    h_new = o * torch.tanh(m)
    return h_new, (h_new, new_c[0], new_c[1])


def test_mk_cell_matches_unfused_equations():
    torch.manual_seed(1)
    cell = MKLSTMCell(5, 7, (3, 5))
    x = torch.randn(2, 5, 9, 11)
    state = tuple(torch.randn(2, 7, 9, 11) for _ in range(3))
    for _ in range(3):  # a few steps, feeding the state back
        h, new = cell(x, state)
        h_ref, new_ref = _mk_reference(cell, x, state)
        torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)
        for a, b in zip(new, new_ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        state = new


def test_convlstm_cell_matches_equations():
    torch.manual_seed(2)
    cell = ConvLSTMCell(3, 4, 3)
    x, h, c = torch.randn(1, 3, 6, 6), torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    z = F.conv2d(x, cell.gates.weight[:, :3], cell.gates.bias, padding=1) + F.conv2d(h, cell.gates.weight[:, 3:], padding=1)
    i, f, g, o = z.split(4, 1)
    c_ref = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    h_out, (h2, c2) = cell(x, (h, c))
    torch.testing.assert_close(h_out, h_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(c2, c_ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------- rollout
@pytest.mark.parametrize("name", ["convlstm", "mslstm"])
def test_predict_equals_forward_future_part(name):
    cfg = tiny(name, hidden=4)
    net = build_model(cfg).eval()
    x = frames_for(cfg)
    with torch.no_grad():
        out = net(x)
    fut = net.predict(x[:, : cfg.input_frames], cfg.output_frames)
    torch.testing.assert_close(fut, out[:, cfg.input_frames - 1 :], atol=1e-6, rtol=0)


def test_mask_ones_is_teacher_forcing_and_future_is_ignored_without_mask():
    cfg = tiny("tmslstm", hidden=4)
    net = build_model(cfg)
    x = frames_for(cfg)
    y = x.clone()
    y[:, cfg.input_frames + 1 :] = torch.rand_like(y[:, cfg.input_frames + 1 :])
    with torch.no_grad():
        # mask None: ground-truth future frames are never read
        torch.testing.assert_close(net(x), net(y))
        # mask of ones: every step reads ground truth, so the output changes with the future frames ...
        ones = torch.ones(2, cfg.output_frames - 1)
        assert (net(x, ones) - net(y, ones))[:, cfg.input_frames :].abs().max() > 0
        # ... and equals a full teacher-forced run: with all input_frames = T-1 teacher-forced
        full = dataclasses.replace(cfg, input_frames=cfg.total_frames - 1, output_frames=1)
        tf = build_model(full)
        tf.load_state_dict(net.state_dict())
        torch.testing.assert_close(net(x, ones), tf(x))
        # bool masks are accepted
        torch.testing.assert_close(net(x, ones.bool()), net(x, ones))


def test_determinism_under_fixed_seed():
    cfg = tiny("mslstm")
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = build_model(cfg)
        outs.append(net(frames_for(cfg, seed=5)))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def _moving_square(batch: int, t: int, size: int) -> torch.Tensor:
    x = torch.zeros(batch, t, 1, size, size)
    for b in range(batch):
        for s in range(t):
            r, c = 2 + b, 1 + s * 2
            x[b, s, 0, r : r + 4, c : c + 4] = 1.0
    return x


def test_small_model_overfits_one_batch():
    torch.manual_seed(0)
    cfg = tiny("mslstm", hidden=8, layers=4, scales=(1, 2, 2, 1))
    net = build_model(cfg)
    x = _moving_square(2, cfg.total_frames, 16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    ones = torch.ones(2, cfg.output_frames - 1)
    first = None
    for _ in range(100):
        loss = F.mse_loss(net(x, ones), x[:, 1:])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10, (first, loss.item())


# ---------------------------------------------------------------------------------------------------- speed options
def test_channels_last_matches_contiguous():
    cfg = tiny("mslstm")
    torch.manual_seed(0)
    net = build_model(cfg)
    net_cl = build_model(dataclasses.replace(cfg, channels_last=True))
    net_cl.load_state_dict(net.state_dict())
    assert net_cl.core.cells[0].gates[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = frames_for(cfg)
    torch.testing.assert_close(net_cl(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["smslstm", "mslstm"])
def test_bf16_autocast_on_cpu(name):
    cfg = tiny(name)
    torch.manual_seed(0)
    net = build_model(cfg)
    x = frames_for(cfg)
    ref = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        loss = out.float().pow(2).mean()
    loss.backward()
    assert out.shape == ref.shape and torch.isfinite(out).all()
    # relative to the output's size: bf16 keeps 8 significant bits; measured max difference 0.4 % (SMS-LSTM) and
    # 1.2 % (MS-LSTM, 7.4e-4 of 0.059) of the largest output value. 5 % leaves head-room; an all-zero output fails
    scale = float(ref.detach().abs().max())
    assert scale > 1e-2
    diff = float((out.float() - ref).detach().abs().max())
    assert diff < 0.05 * scale, (diff, scale)
    assert all(p.grad is not None for p in net.parameters())


# ---------------------------------------------------------------------------------------------------- FLOPs
def test_count_flops_matches_conv_arithmetic():
    cfg = tiny("convlstm", hidden=4, layers=1, scales=(1,))
    net = build_model(cfg)
    x = frames_for(cfg, batch=1)
    h, w = cfg.frame_size
    per_step = 2 * h * w * (1 * 4 + (4 + 4) * 16 * 9 + 4 * 1)  # embed + gates + head, 2 FLOPs per MAC
    assert count_flops(net, x) == per_step * (cfg.total_frames - 1)


# ---------------------------------------------------------------------------------------------------- patching
@pytest.mark.parametrize("p", [1, 2, 4])
def test_patchify_round_trip(p):
    x = torch.rand(2, 3, 3, 16, 24)
    y = patchify(x, p)
    assert y.shape == (2, 3, 3 * p * p, 16 // p, 24 // p)
    torch.testing.assert_close(unpatchify(y, p), x, atol=0, rtol=0)
    if p == 2:  # channel c*p*p + i*p + j holds pixel (i, j) of each patch of channel c
        torch.testing.assert_close(y[:, :, 1 * 4 + 1 * 2 + 0], x[:, :, 1, 1::2, 0::2])


def test_patchify_rejects_indivisible():
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.rand(1, 1, 1, 10, 10), 4)


# ---------------------------------------------------------------------------------------------------- errors
def test_error_wrong_rank():
    net = build_model(tiny("convlstm", hidden=4))
    with pytest.raises(ValueError, match=r"5-D tensor \(B, T, C, H, W\)"):
        net(torch.rand(2, 6, 16, 16))
    with pytest.raises(ValueError, match="5-D"):
        net.predict(torch.rand(6, 1, 16, 16), 2)


def test_error_channel_mismatch():
    net = build_model(tiny("mslstm", hidden=4))
    with pytest.raises(ValueError, match="3 channels but model.in_channels is 1"):
        net(torch.rand(1, 6, 3, 16, 16))


def test_error_frame_size_not_divisible():
    with pytest.raises(ValueError, match=r"frame_size: \(30, 64\) is not divisible by 8 = patch_size 2 x pyramid factor 4"):
        build_model(tiny("mslstm", frame_size=(30, 64), patch_size=2))
    net = build_model(tiny("smslstm", hidden=4))
    with pytest.raises(ValueError, match=r"frame size \(18, 16\) is not divisible by 4"):
        net(torch.rand(1, 6, 1, 18, 16))
    # a full-resolution stack takes any size
    build_model(tiny("convlstm", frame_size=(18, 17), hidden=4))(torch.rand(1, 6, 1, 18, 17))


def test_error_sequence_too_short_and_bad_mask():
    net = build_model(tiny("convlstm", hidden=4))
    with pytest.raises(ValueError, match="need at least input_frames \\+ 1 = 4"):
        net(torch.rand(1, 3, 1, 16, 16))
    with pytest.raises(ValueError, match=r"mask: expected shape .* \(1, 2\)"):
        net(torch.rand(1, 6, 1, 16, 16), torch.ones(1, 3))


@pytest.mark.parametrize(
    "scales,layers,msg",
    [
        ((1, 2, 4, 2, 1), 6, "has 5 entries but layers is 6"),
        ((1, 3, 3, 1), 4, "power of two"),
        ((2, 2, 2, 2), 4, "full resolution"),
        ((1, 2, 4, 2, 2, 1), 6, "palindrome"),
        ((1, 4, 4, 1), 4, "factor 2 at most"),
        ((1, 2, 1, 1, 2, 1), 6, "rise then fall"),
    ],
)
def test_error_bad_scales(scales, layers, msg):
    with pytest.raises(ValueError, match=f"scales: .*{msg}"):
        build_model(tiny("mslstm", scales=scales, layers=layers))


def test_error_bad_values_name_the_key():
    for kw, key in [({"hidden": 0}, "hidden"), ({"kernel_size": 4}, "kernel_size"), ({"mk_kernels": (3, 3)}, "mk_kernels"),
                    ({"name": "lstm"}, "name")]:
        with pytest.raises(ValueError, match=f"^{key}: "):
            tiny(**kw).validate()


def test_config_loader_turns_errors_into_config_error():
    from mslstm.config import load_config
    from mslstm.errors import ConfigError

    cfg = load_config(None, ["model.scales=[1, 2, 2, 1]", "model.layers=4", "model.frame_size=[32, 48]"])
    assert cfg.model.scales == (1, 2, 2, 1) and cfg.model.frame_size == (32, 48)
    with pytest.raises(ConfigError, match="model.frame_size: .*not divisible by 4"):
        # the paper's network (patch 1, pyramid up to x4) on top of the embedded default's small variant
        load_config(None, ["model.frame_size=[30, 64]", "model.patch_size=1", "model.layers=6",
                           "model.scales=[1, 2, 4, 4, 2, 1]"])
