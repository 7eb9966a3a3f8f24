"""profile(): positive, consistent numbers; FLOP counts of a conv layer equal the analytical count."""
from __future__ import annotations

import json

import pytest
import torch
from test_evaluate_common import mlflow_env, tiny_config  # noqa: F401
from torch import nn

from mslstm.evaluation.profile import count_forward_flops, count_train_flops, measure, profile, training_steps


class OneConv(nn.Module):
    """(B, T, C, H, W) -> (B, T-1, C, H, W) with one 3x3 conv per frame (the Forecaster calling convention)."""

    def __init__(self, c: int = 2, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c, c, k, padding=k // 2)

    def forward(self, frames, mask=None):
        b, t, c, h, w = frames.shape
        x = frames[:, :-1].reshape(b * (t - 1), c, h, w)
        return self.conv(x).reshape(b, t - 1, c, h, w)


def test_conv_flops_equal_analytical_count():
    c, k, h, w, t = 2, 3, 8, 8, 5
    frames = torch.rand(1, t, c, h, w)
    analytical = 2 * (t - 1) * (c * h * w) * (c * k * k)        # 2 FLOPs per multiply-add, per output pixel
    assert count_forward_flops(OneConv(c, k), frames) == analytical
    # backward: the weight gradient costs one more forward (the input needs no gradient)
    assert count_train_flops(OneConv(c, k), frames) == 2 * analytical


def test_profile_numbers_positive_and_files(tmp_path, mlflow_env):  # noqa: F811
    import mlflow

    torch.set_num_threads(1)
    cfg = tiny_config("profile.estimated_steps=100", "train.batch_size=8")
    res = profile(cfg, tmp_path / "profile")
    for key in ("params", "flops_forward", "flops_train", "peak_memory_bytes", "step_time_s", "predict_time_s",
                "train_throughput_seq_s", "predict_throughput_seq_s"):
        assert res[key] > 0, key
    assert res["flops_train"] > 2 * res["flops_forward"]          # backward costs about twice the forward
    assert res["device"] == "cpu" and "torch.profiler" in res["memory_measure"]
    # the memory holds at least weights + grads + two Adam moments (4 copies of the parameters)
    assert res["peak_memory_bytes"] >= 4 * 4 * res["params"]
    e = res["estimate"]
    assert e["steps"] == 100 and e["steps_from"] == "profile.estimated_steps"
    # train batch 8 (set above), profiled at batch 2: hours = 100 steps x step time x 8/2
    assert e["device_hours"] == pytest.approx(100 * res["step_time_s"] * 4 / 3600)
    assert e["usd"] == pytest.approx(e["device_hours"] * 0.1)
    saved = json.loads((tmp_path / "profile" / "cost.json").read_text())
    assert saved["params"] == res["params"]
    md = (tmp_path / "profile" / "cost.md").read_text()
    assert "| parameters |" in md and "estimated training cost" in md
    assert mlflow.get_run(res["run_id"]).data.metrics["cost_params"] == res["params"]


def test_profile_flops_match_model_counter():
    from model import build_model
    from model.flops import model_flops

    cfg = tiny_config()
    frames = torch.rand(1, 6, 1, 16, 16)
    assert count_forward_flops(build_model(cfg.model), frames) == model_flops(cfg.model, batch=1)


def test_training_steps_from_train_section():
    cfg = tiny_config("train.epochs=3", "train.batch_size=8", "data.train_sequences=100")
    assert training_steps(cfg) == (3 * 13, "train.epochs x ceil(data.train_sequences / train batch)")
    cfg = tiny_config("train.max_steps=5")
    assert training_steps(cfg)[0] == 5


def test_profile_config_rejects_bad_price():
    from mslstm.errors import ConfigError

    with pytest.raises(ConfigError, match="profile.prices.cpu"):
        tiny_config("profile.prices={cpu: -1}")


def test_cli_profile_door(tmp_path, mlflow_env, capsys):  # noqa: F811
    from test_evaluate_common import cli_sets

    from mslstm.cli import main

    rc = main([*cli_sets("model.name=convlstm"), "profile", "--out", str(tmp_path / "p")])
    assert rc == 0
    assert "| parameters |" in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "cost.json").read_text())["model"] == "convlstm"


def test_profile_times_the_trainers_method():
    """profile follows train.amp through the trainer's one AMP policy (bf16 autocast on CPU when asked for) and
    refuses what training refuses (fp16 on CPU)."""
    from mslstm.errors import ConfigError

    torch.set_num_threads(1)
    assert measure(tiny_config("train.amp=bf16", "train.loss=mse", "profile.device=cpu"))["amp"] == "bfloat16"
    with pytest.raises(ConfigError, match="train.amp: fp16"):
        measure(tiny_config("train.amp=fp16", "profile.device=cpu"))
