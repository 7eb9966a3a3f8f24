"""Per-data-set pictures: flow heat maps (TaxiBJ), rain-rate strips and contingency maps (radar)."""
from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mslstm.evaluation import visuals
from mslstm.evaluation.metric_sets import get_metric_set
from mslstm.evaluation.metrics import RAIN_THRESHOLDS, rain_to_pixel

H = W = 8
PAD = visuals.PAD


def _radar(rates: np.ndarray) -> torch.Tensor:
    """(T, H, W) rain rates -> (T, 1, H, W) pixels."""
    return torch.tensor(rain_to_pixel(rates), dtype=torch.float32)[:, None]


def test_contingency_image_colours_hits_misses_false_alarms():
    truth = np.zeros((2, H, W))
    pred = np.zeros((2, H, W))
    truth[0, 0, 0], pred[0, 0, 0] = 12.0, 12.0     # hit at 0.5, 2, 5, 10; correct negative at 30
    truth[0, 0, 1] = 3.0                            # miss at 0.5 and 2
    pred[1, 5, 5] = 40.0                            # false alarm at every threshold (frame 2)
    img = visuals.contingency_image(_radar(truth), _radar(pred), RAIN_THRESHOLDS)
    k = len(RAIN_THRESHOLDS)
    assert img.shape == (k * (H + PAD) - PAD, 2 * (W + PAD) - PAD, 3)
    col = visuals.CONTINGENCY_COLOURS

    def pixel(row, frame, y, x):
        return tuple(np.round(img[row * (H + PAD) + y, frame * (W + PAD) + x], 3))

    rnd = {name: tuple(np.round(np.float32(c), 3)) for name, c in col.items()}
    assert pixel(0, 0, 0, 0) == rnd["hit"]
    assert pixel(3, 0, 0, 0) == rnd["hit"]
    assert pixel(4, 0, 0, 0) == rnd["correct negative"]
    assert pixel(0, 0, 0, 1) == rnd["miss"] and pixel(2, 0, 0, 1) == rnd["correct negative"]
    assert pixel(4, 1, 5, 5) == rnd["false alarm"]
    assert pixel(0, 1, 0, 0) == rnd["correct negative"]


def test_rain_colours_follow_rate_classes():
    rates = np.array([[[0.0, 0.2, 1.0, 3.0, 7.0, 20.0, 50.0, 150.0]]])
    rgb = visuals.rain_colours(_radar(rates).expand(1, 1, 1, 8))          # (1, 3, 1, 8)
    got = [tuple(np.round(rgb[0, :, 0, i], 3)) for i in range(8)]
    assert got == [tuple(np.round(np.float32(c), 3)) for c in visuals.RAIN_COLOURS]


def test_flow_image_has_a_row_block_per_channel():
    g = torch.Generator().manual_seed(0)
    x, y, p = (torch.rand(4, 2, H, W, generator=g) for _ in range(3))
    img, labels = visuals.flow_image(x, y, p)
    assert labels[0] == "inflow input" and labels[4] == "outflow input" and len(labels) == 8
    assert img.shape == (8 * (H + PAD) - PAD, 4 * (W + PAD) - PAD, 3)
    # the outflow truth row shows channel 1 in the flow colour map
    import matplotlib

    expect = matplotlib.colormaps[visuals.FLOW_CMAP](float(y[0, 1, 2, 3]))[:3]
    assert np.allclose(img[5 * (H + PAD) + 2, 3], expect, atol=1e-6)


@pytest.mark.parametrize("name, channels, extra", [
    ("video", 1, []), ("flow", 2, []), ("precipitation", 1, ["contingency_0.png"]),
])
def test_metric_set_pictures_write_png_and_gif(tmp_path, name, channels, extra):
    g = torch.Generator().manual_seed(0)
    x, y, p = (torch.rand(3, channels, H, W, generator=g) for _ in range(3))
    files = get_metric_set(name).pictures(tmp_path, 0, x, y, p, "test")
    assert sorted(f.name for f in files) == sorted(["example_0.png", "example_0.gif", *extra])
    gif = iio.imread(tmp_path / "example_0.gif", index=0)
    assert gif.shape[:2] == (H, 2 * W + PAD)   # truth beside prediction
    png = iio.imread(tmp_path / "example_0.png")
    grid = {"video": lambda: visuals.strip_image(x, y, p), "flow": lambda: visuals.flow_image(x, y, p)[0],
            "precipitation": lambda: visuals.rain_image(x, y, p)}[name]()
    assert png.shape[0] > grid.shape[0] and png.shape[1] > grid.shape[1]   # every grid pixel drawn, plus labels
    if name == "precipitation":
        # the contingency figure holds the hit colour (legend) and the one-per-threshold rows
        cont = iio.imread(tmp_path / "contingency_0.png")[..., :3].astype(int)
        hit = np.round(np.asarray(visuals.CONTINGENCY_COLOURS["hit"]) * 255).astype(int)
        assert (np.abs(cont - hit).sum(axis=-1) <= 3).any()
