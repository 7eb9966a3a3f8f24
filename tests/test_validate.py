"""The great-expectations validation step on tiny datasets: pass, and each failing rule caught by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mslstm.cli import main
from mslstm.config import load_config
from mslstm.data.dataset import write_dataset
from mslstm.data.validate import validate_data
from mslstm.errors import DataValidationError

TINY = ["data.input_frames=3", "data.output_frames=3", "model.input_frames=3", "model.output_frames=3",
        "model.frame_size=[16,16]", "model.in_channels=1"]


def cfg(*extra):
    return load_config(None, TINY + list(extra))


def float_dataset(path, mutate=None, n=(8, 4, 4)):
    rng = np.random.default_rng(0)
    splits = {s: rng.uniform(0.1, 0.9, size=(k, 6, 1, 16, 16)).astype(np.float32)
              for s, k in zip(("train", "val", "test"), n)}
    if mutate:
        mutate(splits)
    write_dataset(path, splits, input_frames=3, output_frames=3, source="test")
    return path


def test_tiny_dataset_passes_and_writes_reports(tiny_dataset, tmp_path):
    out = tmp_path / "validation"
    res = validate_data(cfg(), tiny_dataset, out)
    assert res["success"] and res["failed_expectations"] == 0 and res["total_expectations"] >= 12
    assert res["sequences"] == 16 and res["splits"]["val"]["sequences"] == 4
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["success"] is True and on_disk["timing"]["gx_run_s"] > 0
    assert "Data validation passed" in (out / "report.html").read_text()
    table = (out / "sequences.csv").read_text().splitlines()
    assert len(table) == 17 and table[0].startswith("split,index,rank,frames")
    assert {p.name for p in out.iterdir()} == {"result.json", "report.html", "sequences.csv"}


def _fail(data_dir, out, config, fragment):
    with pytest.raises(DataValidationError, match=fragment) as info:
        validate_data(config, data_dir, out)
    msg = str(info.value)
    assert "\n" not in msg and str(data_dir) in msg
    res = json.loads((out / "result.json").read_text())  # written before raising
    assert res["success"] is False and (out / "report.html").is_file()
    assert "Data validation FAILED" in (out / "report.html").read_text()
    return res


def test_nan_and_inf_fail(tmp_path):
    def poison(s):
        s["train"][2, 1, 0, 3, 3] = np.nan
        s["val"][1, 0, 0, 0, 0] = np.inf

    d = float_dataset(tmp_path / "ds", poison)
    res = _fail(d, tmp_path / "v", cfg(), r"sequences\.nan_count .*1 bad rows")
    failed = {(r["column"], r["expectation"]) for r in res["results"] if not r["success"]}
    assert ("nan_count", "expect_column_values_to_be_between") in failed
    assert ("inf_count", "expect_column_values_to_be_between") in failed


def test_values_outside_declared_range_fail(tmp_path):
    def bright(s):
        s["test"][0] = 1.5

    d = float_dataset(tmp_path / "ds", bright)
    res = _fail(d, tmp_path / "v", cfg(), r"sequences\.max")
    bad = [r for r in res["results"] if r["column"] == "max" and not r["success"]][0]
    assert bad["unexpected_examples"] == [1.5]


def test_values_below_declared_range_fail_on_the_min_rule(tmp_path):
    def dark(s):
        s["val"][1, 2, 0, 5, 5] = -0.25      # one pixel below 0; the sequence's max stays inside [0, 1]

    d = float_dataset(tmp_path / "ds", dark)
    res = _fail(d, tmp_path / "v", cfg(), r"sequences\.min")
    failed = [r for r in res["results"] if not r["success"]]
    assert [(r["column"], r["expectation"]) for r in failed] == [("min", "expect_column_values_to_be_between")]
    assert failed[0]["unexpected_examples"] == [-0.25]


@pytest.mark.parametrize("values, ok", [((0.0, 1.0), True), ((-0.01,), False), ((1.01,), False)])
def test_range_rule_boundaries(tmp_path, values, ok):
    """The declared range [0, 1] is inclusive; a value 0.01 outside it fails (min rule below, max rule above)."""
    value = values[0]

    def put(s):
        for i, v in enumerate(values):
            s["train"][0, 0, 0, 0, i] = v

    d = float_dataset(tmp_path / "ds", put)
    if ok:
        assert validate_data(cfg(), d, tmp_path / "v")["success"]
    else:
        _fail(d, tmp_path / "v", cfg(), r"sequences\.min" if value < 0 else r"sequences\.max")


def test_blank_sequences_over_threshold_fail(tmp_path):
    def blank(s):
        s["train"][:2] = 0.0  # 2 of 8 training sequences entirely empty

    d = float_dataset(tmp_path / "ds", blank)
    res = _fail(d, tmp_path / "v", cfg("validate.max_blank_fraction=0.1"), r"splits\.blank_fraction")
    assert res["splits"]["train"]["blank_fraction"] == pytest.approx(0.25)
    validate_data(cfg("validate.max_blank_fraction=0.3"), d, tmp_path / "v2")  # within a looser threshold


def test_too_few_sequences_and_missing_split_fail(tmp_path):
    d = float_dataset(tmp_path / "ds", n=(8, 2, 4))
    _fail(d, tmp_path / "v", cfg("validate.min_sequences=3"), r"splits\.sequences .*min_value.: 3")
    meta = json.loads((d / "meta.json").read_text())
    del meta["splits"]["test"]
    (d / "meta.json").write_text(json.dumps(meta))
    _fail(d, tmp_path / "v2", cfg("validate.min_sequences=1"), r"splits\.split distinct_values_to_contain_set")


def test_frame_size_channels_and_frames_checked_against_model(tiny_dataset, tmp_path):
    res = _fail(tiny_dataset, tmp_path / "v", cfg("model.frame_size=[32,32]"), r"sequences\.height")
    assert {r["column"] for r in res["results"] if not r["success"]} == {"height", "width"}
    res = _fail(tiny_dataset, tmp_path / "v2", cfg("validate.frames=8"), r"sequences\.frames")
    res = _fail(tiny_dataset, tmp_path / "v3", cfg("validate.channels=3"), r"sequences\.channels")


def test_cli_exit_codes(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["-q", *sets, "validate", "--data-dir", str(tiny_dataset), "--out", "ok"]) == 0
    assert "validation passed" in capsys.readouterr().out
    rc = main(["-q", *sets, "--set", "validate.min_sequences=100", "validate", "--data-dir", str(tiny_dataset),
               "--out", "bad"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {tiny_dataset}: data validation failed")
    assert (tmp_path / "bad" / "result.json").is_file()
    rc = main(["-q", *sets, "validate", "--data-dir", str(tmp_path / "nowhere"), "--out", "none"])
    assert rc == 2 and "meta.json: meta.json not found" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
