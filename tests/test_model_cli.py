"""`mslstm models`: the door prints the family with exact parameter counts; FLOP helpers agree."""
from __future__ import annotations

import json
import subprocess
import sys

import torch

from model import ModelConfig, build_model, count_flops, model_flops

REFERENCE_COUNTS = {"convlstm": "1,771,201", "smslstm": "1,771,201", "tmslstm": "7,573,825", "mslstm": "7,573,825"}


def test_models_command_prints_family(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mslstm", "models"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split()}
    for name, count in REFERENCE_COUNTS.items():
        assert name in lines and count in lines[name], proc.stdout
    assert "T = 20" in proc.stdout


def test_models_command_from_params_json(tmp_path, capsys, monkeypatch):
    from mslstm.cli import main

    monkeypatch.chdir(tmp_path)
    # the paper's layers on top of the embedded default (whose model is a small variant): ModelConfig() below
    paper = ["--set", "model.layers=6", "--set", "model.scales=[1, 2, 4, 4, 2, 1]", "--set", "model.patch_size=1"]
    rc = main([*paper, "--set", "model.hidden=8", "--set", "model.frame_size=[16, 16]", "models", "--from-params",
               "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:4] == ["convlstm", "smslstm", "tmslstm", "mslstm"]  # the paper's first
    cfg = ModelConfig(name="smslstm", hidden=8, frame_size=(16, 16))
    row = rows[1]
    assert row["parameters"] == sum(p.numel() for p in build_model(cfg).parameters())
    # meta-device count == count on real tensors
    real = count_flops(build_model(cfg), torch.rand(1, cfg.total_frames, 1, 16, 16))
    assert row["forward_flops"] == real == model_flops(cfg)
    assert rows[3]["forward_flops"] > rows[1]["forward_flops"]  # MK cells cost more than ConvLSTM cells
