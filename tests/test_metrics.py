"""Metric functions against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mslstm.evaluation.metrics import MetricAccumulator, frame_metrics, psnr_from_mse

C1 = 0.01**2  # SSIM constants for data_range 1
C2 = 0.03**2


def const(value: float, b=2, t=3, c=1, h=16, w=16) -> torch.Tensor:
    return torch.full((b, t, c, h, w), value)


def test_mse_mae_constant_images_sum_and_pixel_mean():
    m = frame_metrics(const(0.5), const(0.25))
    # 256 pixels, each off by 0.25: MSE sum 256 * 0.0625 = 16, MAE sum 256 * 0.25 = 64
    assert torch.allclose(m["mse"], torch.full((2, 3), 16.0, dtype=torch.float64))
    assert torch.allclose(m["mae"], torch.full((2, 3), 64.0, dtype=torch.float64))
    assert torch.allclose(m["mse_pixel"], torch.full((2, 3), 0.0625, dtype=torch.float64))
    assert torch.allclose(m["mae_pixel"], torch.full((2, 3), 0.25, dtype=torch.float64))


def test_predictions_are_clipped_to_unit_range():
    m = frame_metrics(const(1.7), const(1.0))
    assert float(m["mse"].max()) == 0.0
    m = frame_metrics(const(-0.5), const(0.5))
    assert torch.allclose(m["mse_pixel"], torch.full((2, 3), 0.25, dtype=torch.float64))


def test_psnr_for_known_mse():
    # constant offset 0.1 -> per-pixel MSE 0.01 -> PSNR 20 dB
    m = frame_metrics(const(0.6), const(0.5))
    assert torch.allclose(m["psnr"], torch.full((2, 3), 20.0, dtype=torch.float64), atol=1e-4)
    assert psnr_from_mse(0.01) == pytest.approx(20.0)


def test_ssim_identical_is_one_and_constant_images_match_closed_form():
    x = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(frame_metrics(x, x)["ssim"], torch.ones(2, 3, dtype=torch.float64), atol=1e-5)
    # constant images a, b: local means a, b and zero variances, so
    # SSIM = (2ab + C1) / (a^2 + b^2 + C1) * (C2 / C2), whatever the window
    a, b = 0.8, 0.3
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    got = frame_metrics(const(a), const(b))["ssim"]
    # float32: E[x^2] - E[x]^2 rounds to ~1e-7, against C2 = 9e-4 that is ~3e-4 of SSIM on flat images
    assert torch.allclose(got, torch.full((2, 3), expected, dtype=torch.float64), atol=1e-3)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Hand-written SSIM (Wang et al. 2004): Gaussian 11x11, sigma 1.5, reflect padding, mean over the frame."""
    k = 11
    ax = np.arange(k) - (k - 1) / 2
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)
    pad = (k - 1) // 2

    def filt(img):
        p = np.pad(img, pad, mode="reflect")
        out = np.zeros_like(img)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                out[i, j] = (p[i:i + k, j:j + k] * win).sum()
        return out

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx**2 + my**2 + C1) * (sxx + syy + C2))
    return float(s.mean())


def test_ssim_matches_hand_computation_on_random_case():
    rng = np.random.default_rng(1)
    x = rng.random((20, 20))
    y = np.clip(x + 0.2 * rng.standard_normal((20, 20)), 0, 1)
    got = frame_metrics(torch.tensor(y).float()[None, None, None], torch.tensor(x).float()[None, None, None])["ssim"]
    assert float(got) == pytest.approx(_ssim_reference(y, x), abs=1e-5)


def test_accumulator_per_frame_average_over_sequences():
    acc = MetricAccumulator()
    target = torch.zeros(3, 2, 1, 8, 8)
    pred = target.clone()
    pred[:, 1] = 0.5                 # frame 1 wrong in every sequence, frame 0 exact
    acc.update(pred[:2], target[:2])
    acc.update(pred[2:], target[2:])  # a second batch of a different size
    avg, per_frame = acc.compute()
    assert per_frame["mse"] == pytest.approx([0.0, 64 * 0.25])
    assert avg["mse"] == pytest.approx(8.0)
    assert per_frame["psnr"][0] == pytest.approx(100.0)   # exact frame capped, not inf
    assert math.isfinite(avg["psnr"])
    assert acc.count == 3


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differs"):
        frame_metrics(const(0.1, t=2), const(0.1, t=3))


def test_ssim_window_is_the_documented_gaussian_11x11_on_structured_frames():
    """torchmetrics derives a Gaussian window's size from sigma (int(3.5 sigma + 0.5) * 2 + 1), not from kernel_size:
    SSIM_KERNEL must be that size. On a structured pair (an edge moved by 3 pixels, where the window's extent
    matters, unlike i.i.d. noise) SSIM equals the hand-written 11x11 sigma-1.5 reference."""
    from mslstm.evaluation.metrics import SSIM_KERNEL, SSIM_SIGMA

    assert SSIM_KERNEL == int(3.5 * SSIM_SIGMA + 0.5) * 2 + 1 == 11 and SSIM_SIGMA == 1.5
    x = np.zeros((24, 24))
    x[6:14, 5:15] = 0.9
    y = np.zeros((24, 24))
    y[9:17, 7:17] = 0.8
    y += 0.05 * np.random.default_rng(2).random((24, 24))
    got = frame_metrics(torch.tensor(y).float()[None, None, None], torch.tensor(x).float()[None, None, None])["ssim"]
    assert float(got) == pytest.approx(_ssim_reference(y, x), abs=1e-4)


# ------------------------------------------------------------------------ the authors' PSNR and GDL
def _averaged(pred, target, **kw) -> dict:
    acc = MetricAccumulator(**kw)
    acc.update(pred, target)
    return acc.compute()[0]


def test_authors_psnr_is_their_formula_and_the_standard_one_stays():
    # per-pixel MSE 0.01 (up to float32's 0.6 - 0.5): authors 10 log10(1 / (0.01 + 1e-5)) = 19.99566 dB; standard 20
    authors = _averaged(const(0.6), const(0.5), psnr="authors")["psnr"]
    mse = float((torch.tensor(0.6) - torch.tensor(0.5)).double() ** 2)
    assert authors == pytest.approx(10 * math.log10(1 / (mse + 1e-5)), abs=1e-9)
    assert authors == pytest.approx(19.995659, abs=1e-5)
    assert _averaged(const(0.6), const(0.5))["psnr"] == pytest.approx(20.0, abs=1e-4)
    # an exact prediction: the authors' epsilon bounds it at 50 dB, the standard one is capped at 100 dB
    assert _averaged(const(0.5), const(0.5), psnr="authors")["psnr"] == pytest.approx(50.0, abs=1e-9)
    assert _averaged(const(0.5), const(0.5))["psnr"] == 100.0


def test_authors_psnr_averages_per_frame_values_not_the_mse():
    # two sequences with per-pixel MSE 0.01 and 0.0001: mean of the two PSNRs, not PSNR of the mean MSE
    pred = torch.cat([const(0.6, b=1, t=1), const(0.51, b=1, t=1)])
    got = _averaged(pred, const(0.5, b=2, t=1), psnr="authors")["psnr"]
    want = (10 * math.log10(1 / (0.01 + 1e-5)) + 10 * math.log10(1 / (0.0001 + 1e-5))) / 2
    assert got == pytest.approx(want, abs=1e-4)


def test_unknown_psnr_convention_raises():
    with pytest.raises(ValueError, match="psnr: 'peak' unknown"):
        MetricAccumulator(psnr="peak")


def test_gdl_equals_a_hand_computed_value():
    from mslstm.evaluation.metrics import gradient_difference

    p = torch.tensor([[0.0, 0.5, 0.5], [1.0, 0.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    # vertical: |dp| = 1, 0.5, 0 against |dy| = 0.5, 0.5, 0.5 -> 0.5 + 0 + 0.5 = 1
    # horizontal: |dp| = 0.5, 0 | 1, 0.5 against |dy| = 0, 0 | 0, 0 -> 2
    assert gradient_difference(p.reshape(1, 1, 1, 2, 3), y.reshape(1, 1, 1, 2, 3)).tolist() == [[3.0]]
    # the same patch in the corner of 16x16 zero frames, through the metric: 3 inside, plus the patch's borders:
    # row 1 -> row 2 (zeros): |1 - .5| + |0 - .5| + |.5 - .5| = 1; column 2 -> column 3: |.5 - 0| + |.5 - .5| = .5
    big_p, big_y = torch.zeros(1, 1, 1, 16, 16), torch.zeros(1, 1, 1, 16, 16)
    big_p[..., :2, :3], big_y[..., :2, :3] = p.float(), y.float()
    assert frame_metrics(big_p, big_y)["gdl"].tolist() == [[4.5]]
    assert _averaged(big_p, big_y)["gdl"] == 4.5
    assert frame_metrics(const(0.3), const(0.3))["gdl"].abs().max() == 0.0
    # shifted copies of a gradient image: same gradients, GDL 0, while MSE is not
    ramp = torch.linspace(0, 0.5, 16).expand(16, 16).reshape(1, 1, 1, 16, 16)
    m = frame_metrics(ramp + 0.25, ramp)
    assert float(m["gdl"]) == pytest.approx(0.0, abs=1e-5) and float(m["mse"]) > 1.0
