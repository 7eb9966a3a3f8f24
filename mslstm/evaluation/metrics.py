"""Video prediction metrics per predicted frame and averaged, as the field reports them.

For predictions ``pred`` and ground truth ``target`` of shape ``(B, T, C, H, W)`` in [0, 1] (predictions are
clipped to [0, 1] first), for each sequence ``b`` and frame ``t``:

- ``mse``  = sum over the C*H*W pixels of (pred - target)^2   (per-frame sum, as PredRNN/OpenSTL report "MSE")
- ``mae``  = sum over the pixels of |pred - target|
- ``mse_pixel`` / ``mae_pixel`` = the same divided by C*H*W (per-pixel mean)
- ``ssim`` = torchmetrics SSIM, Gaussian window 11, sigma 1.5, data_range 1.0 (mean over the frame, float32)
- ``psnr`` = torchmetrics PSNR, data_range 1.0, over the frame (10 log10(1 / mse_pixel))

Per-frame values are averaged over sequences; the averaged figure is the mean over frames (equal to the mean
over all (sequence, frame) pairs). LPIPS is not offered: its pretrained weights ship in no installed package.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

METRICS = ("mse", "mae", "mse_pixel", "mae_pixel", "ssim", "psnr")
LOWER_IS_BETTER = {"mse": True, "mae": True, "mse_pixel": True, "mae_pixel": True, "ssim": False, "psnr": False}
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
    }


@dataclass
class MetricAccumulator:
    """Running per-frame sums over batches of sequences; ``compute()`` gives per-frame and averaged metrics.

    Non-finite PSNR (a frame predicted exactly) is capped at 100 dB so that averages stay finite.
    """

    psnr_cap: float = 100.0
    count: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        values = frame_metrics(pred, target)
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


def is_better(metric: str, new: float, old: float, margin: float = 0.0) -> bool:
    """True when ``new`` beats ``old`` by the relative ``margin`` (direction depends on the metric)."""
    if LOWER_IS_BETTER[metric]:
        return new <= old * (1.0 - margin) and new < old
    return new >= old * (1.0 + margin) and new > old
