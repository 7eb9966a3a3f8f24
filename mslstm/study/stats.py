"""The study's statistics: mean and 95 % interval of a metric over seeds, and paired differences between models.

Intervals are Student-t confidence intervals for the mean (``scipy.stats.t.interval`` with n - 1 degrees of
freedom and the standard error ``scipy.stats.sem``): with the 2-5 seeds a CPU study affords, a bootstrap of so few
values has no meaningful coverage, and the t interval says honestly how wide the uncertainty is. One value gives a
mean without an interval (``lo``/``hi`` None).

Paired differences (the design: for a given seed every model sees the same batches in the same order from the same
initialisation seed) are ``MS-X minus X`` per seed, over the seeds both models finished, with the t interval of
their mean; ``excludes_zero`` marks an interval that lies wholly on one side of 0 (the difference is then unlikely
to be seed noise). Lower is better for MSE/MAE, higher for SSIM/PSNR/skill: the sign is read with the metric.

    summary = mean_interval([46.1, 47.3, 45.2])           # {"n": 3, "mean": ..., "lo": ..., "hi": ..., "sd": ...}
    diff = paired_difference({0: 40.0, 1: 41.0}, {0: 42.0, 1: 42.5})   # ms minus flat, seeds in common
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

CONFIDENCE = 0.95
#: Metrics whose paired differences the study reports.
PAIRED = ("mse", "ssim", "skill_vs_blank")
INTERVAL_METHOD = "Student-t 95 % interval of the mean over seeds (scipy.stats.t.interval, df = n - 1)"


def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out.append(float(v))
    return out


def mean_interval(values: Sequence[Any], confidence: float = CONFIDENCE) -> dict[str, Optional[float]]:
    """``{"n", "mean", "sd", "lo", "hi"}`` of the finite numbers in ``values`` (None/NaN left out).

    ``lo``/``hi``: the t interval of the mean (None for fewer than 2 values; equal to the mean when every value is
    the same); ``sd``: sample standard deviation (ddof 1). An empty input gives ``n = 0`` and Nones.
    """
    import numpy as np
    from scipy import stats

    x = np.asarray(_finite(values), dtype=float)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lo": None, "hi": None}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "lo": None, "hi": None}
    sd = float(x.std(ddof=1))
    sem = float(stats.sem(x))
    if sem == 0.0:
        return {"n": n, "mean": mean, "sd": sd, "lo": mean, "hi": mean}
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return {"n": n, "mean": mean, "sd": sd, "lo": float(lo), "hi": float(hi)}


def excludes_zero(summary: Mapping[str, Any]) -> bool:
    """True when the interval ``[lo, hi]`` lies wholly above or wholly below 0 (False without an interval)."""
    lo, hi = summary.get("lo"), summary.get("hi")
    if lo is None or hi is None:
        return False
    return (lo > 0 and hi > 0) or (lo < 0 and hi < 0)


def paired_difference(flat: Mapping[int, Any], ms: Mapping[int, Any],
                      confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``ms[seed] - flat[seed]`` over the seeds both hold a finite value for: :func:`mean_interval` of the
    differences plus ``seeds`` (the seeds used) and ``excludes_zero``."""
    seeds = sorted(s for s in set(flat) & set(ms) if _finite([flat[s]]) and _finite([ms[s]]))
    diffs = [float(ms[s]) - float(flat[s]) for s in seeds]
    out: dict[str, Any] = dict(mean_interval(diffs, confidence))
    out["seeds"] = seeds
    out["excludes_zero"] = excludes_zero(out)
    return out
