"""The authors' Moving MNIST recipe (data.mnist_recipe: authors): integer speeds, walls 2 px beyond the canvas,
digits added then clipped, every split from the whole digit pool; the standard recipe is unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from mslstm.config import load_config
from mslstm.data.dataset import read_meta
from mslstm.data.moving_mnist import (
    AUTHORS_MARGIN, Trajectories, draw_authors_trajectories, draw_trajectories, generate, make_rng, render,
)
from mslstm.data.prepare import prepare_data
from mslstm.errors import ConfigError


def _pair_pool(value: int, size: int = 4) -> np.ndarray:
    return np.full((2, size, size), value, dtype=np.uint8)


def test_overlaps_added_then_clipped_versus_max():
    traj = Trajectories(digits=np.array([[0, 1]]), positions=np.zeros((1, 1, 2, 2), dtype=np.int32))
    assert render(_pair_pool(100), traj, 8, combine="sum")[0, 0, 0, 0, 0] == 200
    assert render(_pair_pool(100), traj, 8)[0, 0, 0, 0, 0] == 100
    assert render(_pair_pool(200), traj, 8, combine="sum")[0, 0, 0, 0, 0] == 255


def test_digit_beyond_the_edge_is_cut():
    pos = np.array([[[[-2, -2], [5, 6]]]], dtype=np.int32)          # (n, T, D, 2): rows, cols
    out = render(_pair_pool(50), Trajectories(np.array([[0, 1]]), pos), 8, combine="sum", margin=AUTHORS_MARGIN)
    frame = out[0, 0, 0]
    assert frame.shape == (8, 8)
    assert frame[:2, :2].tolist() == [[50, 50], [50, 50]] and frame[2, 0] == 0 and frame[0, 2] == 0  # 2x2 left
    assert (frame[5:, 6:] == 50).all() and frame.sum() == 50 * (4 + 3 * 2)


def test_authors_kinematics_integer_speed_and_walls():
    rng = make_rng(0, 1)
    lim = 64 - 28
    traj = draw_authors_trajectories(rng, 400, 10, frames=30, num_digits=1, canvas_size=64, digit_size=28,
                                     speed_range=(6, 6))
    p = traj.positions[:, :, 0].astype(float)                      # (n, T, 2)
    assert p.min() >= -AUTHORS_MARGIN and p.max() <= lim + AUTHORS_MARGIN
    assert (p < 0).any() and (p > lim).any()                      # they do cross the canvas edge (by <= 2 px)
    step = np.sqrt(((p[:, 1:] - p[:, :-1]) ** 2).sum(-1))         # truncation blurs single steps by < 1.5 px
    assert abs(step.mean() - 6.0) < 0.3 and step.max() < 6.0 + 1.5
    # the speed is a whole number drawn from the range: with [2, 2] every step is about 2
    slow = draw_authors_trajectories(make_rng(0, 1), 200, 10, frames=10, num_digits=1, speed_range=(2, 2))
    q = slow.positions[:, :, 0].astype(float)
    assert abs(np.sqrt(((q[:, 1:] - q[:, :-1]) ** 2).sum(-1)).mean() - 2.0) < 0.3
    # the standard recipe reflects inside the canvas
    std = draw_trajectories(make_rng(0, 1), 400, 10, frames=30, num_digits=1, speed_range=(6.0, 6.0))
    assert std.positions.min() >= 0 and std.positions.max() <= lim


def test_generate_recipes_differ_and_standard_is_the_default():
    pool = np.random.default_rng(0).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    std = generate(pool, 6, seed=3, frames=5)
    assert np.array_equal(std, generate(pool, 6, seed=3, frames=5, recipe="standard"))
    auth = generate(pool, 6, seed=3, frames=5, speed_range=(2, 6), recipe="authors")
    assert auth.shape == std.shape == (6, 5, 1, 64, 64) and auth.dtype == np.uint8
    assert np.array_equal(auth, generate(pool, 6, seed=3, frames=5, speed_range=(2, 6), recipe="authors", chunk=4))
    with pytest.raises(ValueError, match="mnist_recipe"):
        generate(pool, 2, seed=3, frames=5, recipe="nope")


def test_prepare_with_authors_recipe_uses_the_whole_pool(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = ["data.input_frames=3", "data.output_frames=3", "model.input_frames=3", "model.output_frames=3"]
    small = frames + ["data.canvas_size=32", "data.digit_size=14", "data.train_sequences=6", "data.val_sequences=2",
                      "data.test_sequences=2", "data.mnist_recipe=authors", "data.speed_range=[2,6]"]
    cfg = load_config(None, small)
    prepare_data(cfg, "ds")
    gen = read_meta("ds")["generator"]
    assert gen["recipe"] == "authors"
    assert gen["pool_sizes"]["train"] == gen["pool_sizes"]["test"] == 5000   # no disjoint digit pools
    with pytest.raises(ConfigError, match="speed_range: the authors' recipe draws integer speeds"):
        load_config(None, small[:-1] + ["data.speed_range=[2.5,6]"])
