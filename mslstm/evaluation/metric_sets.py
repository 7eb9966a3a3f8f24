"""Metric sets: what the evaluate step scores and draws for a kind of data, picked by name, never by an if-chain.

    from mslstm.evaluation.metric_sets import metric_set_for
    mset = metric_set_for(cfg.evaluate.metric_set, source)   # "auto" -> the set that claims the data source
    acc = mset.accumulator(psnr=cfg.evaluate.psnr)            # .update(pred, target); .compute()
    files = mset.pictures(out_dir, i, inputs, target, pred, title)

Registered sets:

- ``video`` (default): per-frame MSE/MAE (sum over pixels), SSIM, PSNR (``psnr``: the standard or the authors'
  convention), GDL; grey/RGB strips and a GIF per example
  (Moving MNIST, KTH).
- ``flow``: the same metrics; inflow/outflow heat maps and a GIF per example (TaxiBJ).
- ``precipitation``: the same metrics plus POD, FAR, CSI, HSS per rain-rate threshold (0.5, 2, 5, 10, 30 mm/h)
  and balanced MSE/MAE (the authors' definitions, :mod:`mslstm.evaluation.metrics`); radar frames in a rain-rate
  colour map per example, and for the first example the hits/misses/false alarms per threshold (DWD).

``evaluate.metric_set: auto`` takes the set whose ``sources`` list the data source (the part of meta.json's
``source`` before ``:``, or ``data.source``), else ``video``. A new kind of data registers its own set with
:func:`register_metric_set` and adds its name to ``EvaluateConfig.metric_set`` (a ``Literal``, so the config layer
needs no import of this module; a test checks the two agree).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mslstm.evaluation.metrics import METRICS, RAIN_THRESHOLDS, precip_metric_names

DEFAULT = "video"
AUTO = "auto"


class CombinedAccumulator:
    """Several accumulators fed the same batches; ``compute()`` merges their (averaged, per_frame) dicts."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)

    def update(self, pred: Any, target: Any) -> None:
        for part in self.parts:
            part.update(pred, target)

    def compute(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        averaged: dict[str, float] = {}
        per_frame: dict[str, list[float]] = {}
        for part in self.parts:
            a, p = part.compute()
            averaged.update(a)
            per_frame.update(p)
        return averaged, per_frame


PictureFn = Callable[[Path, int, Any, Any, Any, str], list[Path]]


@dataclass(frozen=True)
class MetricSet:
    """One metric set.

    Attributes:
        name: the value of ``evaluate.metric_set``.
        description: one line for listings.
        metrics: names of the metrics it reports (``metrics.json`` keys besides the baselines).
        make_accumulators: ``(psnr="standard") -> [accumulator, ...]`` (each with ``update(pred, target)`` and
            ``compute()``); ``psnr`` is the PSNR convention (``evaluate.psnr``).
        pictures: ``(out_dir, i, inputs, target, pred, title) -> [paths]`` for example ``i`` (frames (T, C, H, W)).
        sources: data sources this set is the default for under ``evaluate.metric_set: auto``.
        plots: metrics drawn as per-frame line plots.
    """

    name: str
    description: str
    metrics: tuple[str, ...]
    make_accumulators: Callable[[], list]
    pictures: PictureFn
    sources: tuple[str, ...] = ()
    plots: tuple[str, ...] = METRICS

    def accumulator(self, psnr: str = "standard") -> CombinedAccumulator:
        return CombinedAccumulator(self.make_accumulators(psnr=psnr))


_SETS: dict[str, MetricSet] = {}


def register_metric_set(mset: MetricSet) -> MetricSet:
    """Add ``mset``; a name or a claimed source registered twice is a ``ValueError``."""
    if mset.name in _SETS or mset.name == AUTO:
        raise ValueError(f"metric_set: {mset.name!r} is already registered (or reserved)")
    for other in _SETS.values():
        both = set(other.sources) & set(mset.sources)
        if both:
            raise ValueError(f"metric_set: source {sorted(both)[0]!r} is already claimed by {other.name!r}")
    _SETS[mset.name] = mset
    return mset


def metric_set_names() -> tuple[str, ...]:
    return tuple(_SETS)


def get_metric_set(name: str) -> MetricSet:
    """The set ``name``; unknown -> ``ValueError("metric_set: ...")``."""
    if name not in _SETS:
        raise ValueError(f"metric_set: {name!r} unknown; use {AUTO} or one of {', '.join(_SETS)}")
    return _SETS[name]


def metric_set_for(name: str, source: str = "") -> MetricSet:
    """``name``'s set, or for ``auto`` the set that claims ``source`` (``"dwd"`` or meta.json's ``"dwd:RYDL.hdf5"``),
    else :data:`DEFAULT`."""
    if name != AUTO:
        return get_metric_set(name)
    base = (source or "").split(":", 1)[0]
    for mset in _SETS.values():
        if base in mset.sources:
            return mset
    return _SETS[DEFAULT]


# ------------------------------------------------------------------------------------------------ the sets
def _video_accumulators(psnr: str = "standard") -> list:
    from mslstm.evaluation.metrics import MetricAccumulator

    return [MetricAccumulator(psnr=psnr)]


def _precip_accumulators(psnr: str = "standard") -> list:
    from mslstm.evaluation.metrics import MetricAccumulator, PrecipAccumulator

    return [MetricAccumulator(psnr=psnr), PrecipAccumulator()]


def _gif(out_dir: Path, i: int, x: Any, y: Any, p: Any) -> Path:
    from mslstm.evaluation import visuals

    return visuals.save_gif(Path(out_dir) / f"example_{i}.gif", x, y, p)


def _video_pictures(out_dir: str | os.PathLike, i: int, x: Any, y: Any, p: Any, title: str) -> list[Path]:
    from mslstm.evaluation import visuals

    out_dir = Path(out_dir)
    return [visuals.save_strip(out_dir / f"example_{i}.png", x, y, p, f"{title}: input | truth | prediction | "
                                                                         "|error|"),
            _gif(out_dir, i, x, y, p)]


def _flow_pictures(out_dir: str | os.PathLike, i: int, x: Any, y: Any, p: Any, title: str) -> list[Path]:
    from mslstm.evaluation import visuals

    out_dir = Path(out_dir)
    return [visuals.save_flow_maps(out_dir / f"example_{i}.png", x, y, p, f"{title}: crowd flows"),
            _gif(out_dir, i, x, y, p)]


def _precip_pictures(out_dir: str | os.PathLike, i: int, x: Any, y: Any, p: Any, title: str) -> list[Path]:
    from mslstm.evaluation import visuals

    out_dir = Path(out_dir)
    files = [visuals.save_rain_strip(out_dir / f"example_{i}.png", x, y, p, f"{title}: rain rate"),
             _gif(out_dir, i, x, y, p)]
    if i == 0:
        files.append(visuals.save_contingency_maps(
            out_dir / f"contingency_{i}.png", y, p, RAIN_THRESHOLDS,
            f"{title}: contingency per threshold and frame"))
    return files


register_metric_set(MetricSet(
    "video", "MSE/MAE (sum over pixels per frame), SSIM, PSNR, GDL; grey strips", METRICS, _video_accumulators,
    _video_pictures,
))
register_metric_set(MetricSet(
    "flow", "MSE/MAE, SSIM, PSNR, GDL; inflow/outflow heat maps", METRICS, _video_accumulators, _flow_pictures,
    sources=("taxibj",),
))
register_metric_set(MetricSet(
    "precipitation", "MSE/MAE, SSIM, PSNR, GDL + POD/FAR/CSI/HSS at 0.5, 2, 5, 10, 30 mm/h, B-MSE/B-MAE; rain maps",
    METRICS + tuple(precip_metric_names()), _precip_accumulators, _precip_pictures, sources=("dwd",),
    plots=METRICS + ("csi_30", "hss_30", "b_mse"),
))
