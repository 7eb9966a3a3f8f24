"""Video prediction metrics per predicted frame and averaged, as the field reports them.

For predictions ``pred`` and ground truth ``target`` of shape ``(B, T, C, H, W)`` in [0, 1] (predictions are
clipped to [0, 1] first), for each sequence ``b`` and frame ``t``:

- ``mse``  = sum over the C*H*W pixels of (pred - target)^2   (per-frame sum, as PredRNN/OpenSTL report "MSE")
- ``mae``  = sum over the pixels of |pred - target|
- ``mse_pixel`` / ``mae_pixel`` = the same divided by C*H*W (per-pixel mean)
- ``ssim`` = torchmetrics SSIM, Gaussian window 11, sigma 1.5, data_range 1.0 (mean over the frame, float32)
- ``psnr`` = two conventions (``evaluate.psnr``): ``standard``: torchmetrics PSNR, data_range 1.0, over the
  frame, 10 log10(1 / mse_pixel), an exact frame capped at 100 dB; ``authors``: 10 log10(1 / (mse_pixel + 1e-5)),
  hence at most 50 dB (mazhf/MS-RNN ``util/evaluation.py`` ``get_PSNR``: MSE averaged over C, H, W of [0, 1] frames)
- ``gdl`` = gradient difference, the authors' metric (``util/numba_accelerated.py`` ``get_GDL_numba``): sum over
  the pixels of | |p[i+1, j] - p[i, j]| - |y[i+1, j] - y[i, j]| | (vertical neighbours) plus the same for
  horizontal neighbours (they read channel 0 only; every data set they score has one channel, here all channels
  are summed)

Per-frame values are averaged over sequences; the averaged figure is the mean over frames (equal to the mean
over all (sequence, frame) pairs). LPIPS is not offered: its pretrained weights ship in no installed package.

Radar frames also get the precipitation scores (:class:`PrecipAccumulator`, the authors' definitions): POD, FAR,
CSI, HSS per rain-rate threshold (0.5, 2, 5, 10, 30 mm/h) and balanced MSE/MAE; see the section below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

METRICS = ("mse", "mae", "mse_pixel", "mae_pixel", "ssim", "psnr", "gdl")
LOWER_IS_BETTER = {"mse": True, "mae": True, "mse_pixel": True, "mae_pixel": True, "ssim": False, "psnr": False,
                   "gdl": True}
PSNR_CONVENTIONS = ("standard", "authors")
AUTHORS_PSNR_EPS = 1e-5   # util/evaluation.py get_PSNR: 10 log10(1 / (mse + eps)) <= 50 dB
SSIM_KERNEL = 11
SSIM_SIGMA = 1.5


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    if pred.dim() != 5:
        raise ValueError(f"expected (B, T, C, H, W) tensors, got shape {tuple(pred.shape)}")


@torch.no_grad()
def frame_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-(sequence, frame) metrics: each value is a float64 tensor of shape (B, T).

    ``pred`` is clipped to [0, 1]; ``target`` is expected in [0, 1]. Always computed in fp32 (float64 sums):
    bf16/fp16 inputs are cast up first, and an enclosing autocast region is switched off here.
    """
    _check(pred, target)
    with torch.autocast(pred.device.type, enabled=False):
        return _frame_metrics_fp32(pred, target)


def _frame_metrics_fp32(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    b, t, c, h, w = pred.shape
    pred = pred.detach().float().clamp(0.0, 1.0)
    target = target.detach().float()
    diff = (pred - target).double()
    npix = c * h * w
    mse = diff.pow(2).sum(dim=(2, 3, 4))          # (B, T)
    mae = diff.abs().sum(dim=(2, 3, 4))           # (B, T)
    # float32 (CPU float64 convolutions are ~100x slower); the variance terms E[x^2] - E[x]^2 then carry
    # rounding of about 1e-4 of SSIM on flat images, far below what separates models
    flat_p = pred.reshape(b * t, c, h, w)
    flat_t = target.reshape(b * t, c, h, w)
    ssim = structural_similarity_index_measure(
        flat_p, flat_t, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL,
        reduction="none", data_range=1.0,
    )
    psnr = peak_signal_noise_ratio(flat_p, flat_t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return {
        "mse": mse,
        "mae": mae,
        "mse_pixel": mse / npix,
        "mae_pixel": mae / npix,
        "ssim": ssim.double().reshape(b, t),
        "psnr": psnr.double().reshape(b, t),
        "gdl": gradient_difference(pred.double(), target.double()),
    }


def gradient_difference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-(sequence, frame) gradient difference (B, T): the sum over pixels (and channels) of
    | |dp| - |dy| | over vertical and horizontal neighbour differences (the authors' GDL)."""
    dh = ((pred[..., 1:, :] - pred[..., :-1, :]).abs() - (target[..., 1:, :] - target[..., :-1, :]).abs()).abs()
    dw = ((pred[..., :, 1:] - pred[..., :, :-1]).abs() - (target[..., :, 1:] - target[..., :, :-1]).abs()).abs()
    return dh.sum(dim=(2, 3, 4)) + dw.sum(dim=(2, 3, 4))


def authors_psnr(mse_pixel: torch.Tensor) -> torch.Tensor:
    """The authors' PSNR of per-pixel MSEs of [0, 1] frames: 10 log10(1 / (mse + 1e-5)), at most 50 dB."""
    return 10.0 * torch.log10(1.0 / (mse_pixel + AUTHORS_PSNR_EPS))


@dataclass
class MetricAccumulator:
    """Running per-frame sums over batches of sequences; ``compute()`` gives per-frame and averaged metrics.

    ``psnr``: ``standard`` (non-finite PSNR, a frame predicted exactly, capped at ``psnr_cap`` = 100 dB so that
    averages stay finite) or ``authors`` (10 log10(1 / (mse_pixel + 1e-5)), at most 50 dB).
    """

    psnr_cap: float = 100.0
    psnr: str = "standard"
    count: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.psnr not in PSNR_CONVENTIONS:
            raise ValueError(f"psnr: {self.psnr!r} unknown; use one of {', '.join(PSNR_CONVENTIONS)}")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        values = frame_metrics(pred, target)
        if self.psnr == "authors":
            values["psnr"] = authors_psnr(values["mse_pixel"])
        else:
            values["psnr"] = values["psnr"].nan_to_num(posinf=self.psnr_cap).clamp(max=self.psnr_cap)
        for name, v in values.items():
            s = v.sum(dim=0)  # (T,)
            if name in self.sums:
                if self.sums[name].shape != s.shape:
                    raise ValueError(f"frame count changed between batches: {self.sums[name].shape[0]} vs {s.shape[0]}")
                self.sums[name] += s
            else:
                self.sums[name] = s.clone()
        self.count += pred.shape[0]

    def compute(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """-> (averaged {metric: value}, per-frame {metric: [value per frame]})."""
        if self.count == 0:
            raise ValueError("no sequences were scored")
        per_frame = {name: (s / self.count).tolist() for name, s in self.sums.items()}
        averaged = {name: float(sum(v) / len(v)) for name, v in per_frame.items()}
        return averaged, per_frame


def psnr_from_mse(mse_pixel: float, data_range: float = 1.0) -> float:
    """PSNR in dB for a per-pixel MSE (reference formula, used in tests and docs)."""
    return math.inf if mse_pixel == 0 else 10.0 * math.log10(data_range**2 / mse_pixel)


# ------------------------------------------------------------------------------------------------ precipitation
# Radar frames hold pixel = (dBZ + 10) / 70 clipped to [0, 1], with dBZ = 10 log10 Z and Z = 256 R^1.42 (R in mm/h),
# the conversion of the authors' DWD loader (mazhf/MS-RNN util/load_DWD.py). Their scores (util/evaluation.py,
# util/numba_accelerated.py, config.py): rain-rate thresholds 0.5, 2, 5, 10, 30 mm/h; a pixel is "rain" when its
# value is >= the threshold (prediction and truth alike); hits, misses, false alarms and correct negatives are
# summed per predicted frame over all sequences, POD/FAR/CSI/HSS computed per frame from those totals (a 0/0 score
# counts as 0) and averaged over frames. Balanced MSE/MAE weigh each pixel's error by the truth's rain class:
# weight 1, 1, 2, 5, 10, 30 below 0.5 / 2 / 5 / 10 / 30 mm/h and at or above 30; sums over the pixels of a frame
# (in pixel units, like MSE), averaged like MSE.
RAIN_THRESHOLDS = (0.5, 2.0, 5.0, 10.0, 30.0)          # mm/h
BALANCING_WEIGHTS = (1.0, 1.0, 2.0, 5.0, 10.0, 30.0)   # one more than the thresholds
PRECIP_SCORES = ("pod", "far", "csi", "hss")
PRECIP_LOWER_IS_BETTER = {"pod": False, "far": True, "csi": False, "hss": False, "b_mse": True, "b_mae": True}


def rain_to_pixel(rate: Any) -> Any:
    """Rain rate (mm/h, array or float) -> pixel in [0, 1]: Z = 256 R^1.42, dBZ = 10 log10 Z, (dBZ + 10) / 70."""
    r = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        dbz = 10.0 * np.log10(256.0) + 14.2 * np.log10(r)
    return np.clip((dbz + 10.0) / 70.0, 0.0, 1.0)


def pixel_to_rain(pixel: Any) -> Any:
    """Pixel in [0, 1] -> rain rate (mm/h), the inverse of :func:`rain_to_pixel` (0 px -> 10^(-3.54/1.42) mm/h)."""
    dbz = np.asarray(pixel, dtype=np.float64) * 70.0 - 10.0
    return (10.0 ** (dbz / 10.0) / 256.0) ** (1.0 / 1.42)


def threshold_label(rate: float) -> str:
    """``0.5`` -> ``"0.5"``, ``2.0`` -> ``"2"``: the suffix of the per-threshold metric names (``csi_2``)."""
    return f"{rate:g}"


def precip_metric_names(thresholds: Sequence[float] = RAIN_THRESHOLDS) -> list[str]:
    """``pod_0.5 ... hss_30, b_mse, b_mae``: the names :class:`PrecipAccumulator` reports."""
    return [f"{s}_{threshold_label(t)}" for s in PRECIP_SCORES for t in thresholds] + ["b_mse", "b_mae"]


def _pixel_thresholds(thresholds: Sequence[float]) -> torch.Tensor:
    rates = list(thresholds)
    if not rates or any(not math.isfinite(t) or t <= 0 for t in rates) or sorted(rates) != rates:
        raise ValueError(f"thresholds: positive rain rates in increasing order (got {rates})")
    return torch.tensor(rain_to_pixel(rates), dtype=torch.float32).reshape(-1)


@torch.no_grad()
def contingency_counts(pred: torch.Tensor, target: torch.Tensor,
                       thresholds: Sequence[float] = RAIN_THRESHOLDS) -> torch.Tensor:
    """Per-frame contingency table summed over the batch and the pixels: int64 (T, K, 4) with, per threshold,
    ``[hits, misses, false_alarms, correct_negatives]``; ``pred`` (clipped to [0, 1]) and ``target`` are radar
    pixels (B, T, C, H, W), the K thresholds rain rates in mm/h."""
    _check(pred, target)
    px = _pixel_thresholds(thresholds).to(pred.device)                         # (K,)
    p = pred.detach().float().clamp(0.0, 1.0).unsqueeze(-1) >= px              # (B, T, C, H, W, K)
    y = target.detach().float().unsqueeze(-1) >= px
    dims = (0, 2, 3, 4)
    hits = (p & y).sum(dim=dims)
    misses = (~p & y).sum(dim=dims)
    false_alarms = (p & ~y).sum(dim=dims)
    negatives = (~p & ~y).sum(dim=dims)
    return torch.stack([hits, misses, false_alarms, negatives], dim=-1).long().cpu()


def skill_scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """POD, FAR, CSI, HSS (float64, shape ``counts.shape[:-1]``) from ``[hits, misses, false_alarms,
    correct_negatives]`` tables; a score whose denominator is 0 is 0 (as the authors' ``nan_to_num``)."""
    a, c, b, d = (counts[..., i].double() for i in range(4))   # hits, misses, false alarms, correct negatives

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))

    return {
        "pod": ratio(a, a + c),
        "far": ratio(b, a + b),
        "csi": ratio(a, a + b + c),
        "hss": ratio(2.0 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)),
    }


@torch.no_grad()
def balancing_weights(target: torch.Tensor, thresholds: Sequence[float] = RAIN_THRESHOLDS,
                      weights: Sequence[float] = BALANCING_WEIGHTS) -> torch.Tensor:
    """Per-pixel weight by the truth's rain class: ``weights[k]`` for the k thresholds at or below the pixel's
    rate (``weights[0]`` below the first one)."""
    if len(weights) != len(thresholds) + 1:
        raise ValueError(f"weights: need one more weight ({len(thresholds) + 1}) than thresholds, got {len(weights)}")
    px = _pixel_thresholds(thresholds).to(target.device)
    cls = torch.bucketize(target.detach().float().contiguous(), px, right=True)   # number of thresholds <= value
    return torch.tensor(list(weights), dtype=torch.float64, device=target.device)[cls]


@dataclass
class PrecipAccumulator:
    """Precipitation scores over batches: contingency tables and balanced errors per frame.

    ``compute()`` -> (averaged, per_frame) with keys :func:`precip_metric_names`: ``pod_<t>``, ``far_<t>``,
    ``csi_<t>``, ``hss_<t>`` per threshold t (mm/h) and ``b_mse``, ``b_mae``.
    """

    thresholds: tuple[float, ...] = RAIN_THRESHOLDS
    weights: tuple[float, ...] = BALANCING_WEIGHTS
    count: int = 0
    counts: Optional[torch.Tensor] = None          # (T, K, 4) int64
    balanced: Optional[torch.Tensor] = None        # (2, T) float64: summed b_mse, b_mae

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        counts = contingency_counts(pred, target, self.thresholds)
        w = balancing_weights(target, self.thresholds, self.weights)
        diff = pred.detach().float().clamp(0.0, 1.0).double() - target.detach().double()
        bal = torch.stack([(w * diff.pow(2)).sum(dim=(0, 2, 3, 4)), (w * diff.abs()).sum(dim=(0, 2, 3, 4))]).cpu()
        if self.counts is None:
            self.counts, self.balanced = counts, bal
        else:
            if self.counts.shape != counts.shape:
                raise ValueError(f"frame count changed between batches: {self.counts.shape[0]} vs {counts.shape[0]}")
            self.counts += counts
            self.balanced += bal
        self.count += pred.shape[0]

    def compute(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """-> (averaged {metric: value}, per-frame {metric: [value per frame]})."""
        if self.count == 0 or self.counts is None or self.balanced is None:
            raise ValueError("no sequences were scored")
        per_frame: dict[str, list[float]] = {}
        scores = skill_scores(self.counts)                               # each (T, K)
        for name in PRECIP_SCORES:
            for k, t in enumerate(self.thresholds):
                per_frame[f"{name}_{threshold_label(t)}"] = scores[name][:, k].tolist()
        per_frame["b_mse"] = (self.balanced[0] / self.count).tolist()
        per_frame["b_mae"] = (self.balanced[1] / self.count).tolist()
        averaged = {name: float(sum(v) / len(v)) for name, v in per_frame.items()}
        return averaged, per_frame

