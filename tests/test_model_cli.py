"""`mslstm models`: the door lists every model and its MS- version with exact parameter and FLOP counts at the
reference configuration (asserted here); the fast FLOP count (two steps extrapolated) equals the full count."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from model import ModelConfig, build_model, count_flops, model_flops, model_names
from model.registry import ms_pairs

# name: (parameters, forward FLOPs per sequence) at ModelConfig() (64x64, 10 -> 10, hidden 64, 6 layers), batch 1
REFERENCE = {
    "convlstm": (1_771_201, 275_434_700_800), "smslstm": (1_771_201, 120_513_888_256),
    "tmslstm": (7_573_825, 1_178_183_139_328), "mslstm": (7_573_825, 515_466_330_112),
    "cmslstm": (4_480_705, 3_507_733_135_360), "mscmslstm": (4_480_705, 1_323_780_014_080),
    "mim": (6_359_809, 988_835_479_552), "msmim": (6_359_809, 384_213_975_040),
    "modernn": (5_853_121, 1_862_894_878_720), "msmodernn": (5_853_121, 815_027_716_096),
    "motionrnn": (6_894_664, 1_057_406_984_192), "msmotionrnn": (6_894_664, 406_499_714_048),
    "preciplstm": (7_036_225, 1_585_567_498_240), "mspreciplstm": (7_036_225, 653_532_332_032),
    "predrnn": (3_592_129, 558_499_889_152), "mspredrnn": (3_592_129, 244_354_908_160),
    "predrnnv2": (3_596_289, 558_499_889_152), "mspredrnnv2": (3_596_289, 244_354_908_160),
    "predrnnpp": (4_869_825, 757_410_562_048), "mspredrnnpp": (4_869_825, 327_074_971_648),
    "trajgru": (1_915_321, 297_668_706_304), "mstrajgru": (1_915_321, 130_241_265_664),
}


def test_models_command_lists_every_model_and_its_ms_version_with_reference_counts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mslstm", "models", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == set(model_names()) == set(REFERENCE), "a model was added: add its counts to REFERENCE"
    for name, (params, flops) in REFERENCE.items():
        assert (rows[name]["parameters"], rows[name]["forward_flops"]) == (params, flops), name
    pairs = ms_pairs()
    assert len(pairs) == 11 and ("convlstm", "smslstm") in pairs and ("tmslstm", "mslstm") in pairs
    for flat, ms in pairs:   # every MS- version: same parameters, fewer FLOPs than its flat twin
        assert rows[ms]["ms_of"] == flat and rows[flat]["ms_of"] is None
        assert rows[ms]["parameters"] == rows[flat]["parameters"]
        assert rows[ms]["forward_flops"] < rows[flat]["forward_flops"]


def test_models_table_columns_fit_their_labels(capsys, tmp_path, monkeypatch):
    from mslstm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["models", "--names", "mscmslstm,mspreciplstm,smslstm", "--tag", "paper"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index(next(line for line in out if line.startswith("model")))
    table = out[start:out.index("", start)]
    assert len(table) == 3 and table[2].split()[:3] == ["smslstm", "SMS-LSTM", "1,771,201"]
    assert main(["models", "--names", "mspredrnnv2,predrnnv2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "PredRNN-V2" in line]
    # the longest label (MS-PredRNN-V2) does not push its row's columns out of line
    assert len({line.index("3,596,289") for line in lines}) == 1 and "44% of predrnnv2" in lines[0]
    assert main(["models", "--names", "nope"]) == 2


@pytest.mark.parametrize("name", model_names())
def test_fast_flop_count_equals_the_full_rollout_count(name):
    cfg = ModelConfig(name=name, hidden=8, layers=4, scales=(1, 2, 2, 1), frame_size=(16, 16), input_frames=3,
                      output_frames=3)
    assert model_flops(cfg, total_frames=7) == model_flops(cfg, total_frames=7, exact=True)   # 6 steps


def test_models_command_from_params_json(tmp_path, capsys, monkeypatch):
    from mslstm.cli import main

    monkeypatch.chdir(tmp_path)
    # the paper's layers on top of the embedded default (whose model is a small variant): ModelConfig() below
    paper = ["--set", "model.layers=6", "--set", "model.scales=[1, 2, 4, 4, 2, 1]", "--set", "model.patch_size=1"]
    rc = main([*paper, "--set", "model.hidden=8", "--set", "model.frame_size=[16, 16]", "models", "--from-params",
               "--json", "--tag", "paper"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["convlstm", "smslstm", "tmslstm", "mslstm"]  # the paper's, in order
    cfg = ModelConfig(name="smslstm", hidden=8, frame_size=(16, 16))
    row = rows[1]
    assert row["parameters"] == sum(p.numel() for p in build_model(cfg).parameters())
    # meta-device count == count on real tensors
    real = count_flops(build_model(cfg), torch.rand(1, cfg.total_frames, 1, 16, 16))
    assert row["forward_flops"] == real == model_flops(cfg)
    assert rows[3]["forward_flops"] > rows[1]["forward_flops"]  # MK cells cost more than ConvLSTM cells
