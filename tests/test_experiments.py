"""The paper's four experiments: each config loads as written, states the authors' values, keeps a global batch
of 4 on 1 or 4 processes and ends scheduled sampling at teacher forcing 0 on the run's last step; `mslstm
experiments` lists them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mslstm.cli import main
from mslstm.config import load_config
from mslstm.experiments import list_experiments
from mslstm.training.distributed import DistInfo
from mslstm.training.recipe import build_recipe, ss_decay_steps
from mslstm.training.train import plan_steps

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# name: (data source, frames in, out, size, channels, epochs, metric set) as the authors' config.py / util/ set them
PAPER = {
    "mnist": ("mnist-idx", 10, 10, 64, 1, 20, "video"),
    "kth": ("kth", 10, 10, 88, 1, 20, "video"),
    "taxibj": ("taxibj", 4, 4, 32, 1, 20, "flow"),
    "dwd": ("dwd", 5, 5, 124, 1, 16, "precipitation"),
}
SECTIONS = {"data", "validate", "model", "train", "tracking", "evaluate", "profile", "register", "ablation", "pipeline"}


def _load(name: str):
    """Load configs/<name>.yaml; a data source that is not registered fails with a message saying so."""
    from mslstm.data.sources import source_names

    path = CONFIGS / f"{name}.yaml"
    source = yaml.safe_load(path.read_text())["data"]["source"]
    assert source in source_names(), (
        f"{path}: data.source {source!r} is not a registered data source ({', '.join(source_names())}); "
        "the experiment needs mslstm/data/sources/" + source.replace("-", "_") + ".py")
    return load_config(path)


@pytest.mark.parametrize("name", list(PAPER))
def test_config_holds_the_authors_values_as_written(name):
    cfg = _load(name)
    path = CONFIGS / f"{name}.yaml"
    tree = yaml.safe_load(path.read_text())
    assert set(tree) == SECTIONS, f"{path.name}: sections {sorted(tree)}"
    flat = cfg.flat()
    for section, values in tree.items():
        for key, value in values.items():
            got = flat.get(f"{section}.{key}", cfg.to_dict()[section].get(key))
            if (section, key) == ("pipeline", "image"):  # no tag in the file: the project version is the tag
                from mslstm.pipeline_config import image_with_version

                value = image_with_version(value)
            assert got == value, f"{path.name}: {section}.{key}: file {value!r}, config {got!r}"
    source, t_in, t_out, size, channels, epochs, mset = PAPER[name]
    m, t, d = cfg.model, cfg.train, cfg.data
    assert (d.source, m.input_frames, m.output_frames, m.frame_size, m.in_channels) == \
        (source, t_in, t_out, (size, size), channels)
    assert (d.input_frames, d.output_frames) == (t_in, t_out)
    assert (m.name, m.hidden, m.layers, m.patch_size) == ("mslstm", 64, 6, 1)
    assert (t.epochs, t.lr, t.lr_scaling, t.schedule, t.optimizer, t.loss, t.amp) == \
        (epochs, 3e-4, "none", "none", "adam", "l1l2", "off")
    assert (t.ss_start, t.ss_end, t.ss_decay_fraction) == (1.0, 0.0, 1.0)
    assert cfg.evaluate.metric_set == mset and cfg.evaluate.frames == "all"


@pytest.mark.parametrize("name", list(PAPER))
def test_global_batch_4_and_schedule_ends_at_zero_on_the_last_step_for_1_and_4_processes(name):
    cfg = _load(name)
    n_train = cfg.data.train_sequences if cfg.data.source.startswith("mnist") else 1003  # any split size
    totals = set()
    for world in (1, 4):
        batch, global_batch, per_epoch, total = plan_steps(cfg.train, n_train, DistInfo(world_size=world))
        assert global_batch == 4 and batch * world == 4, f"{name}: world {world}: batch {batch}"
        assert per_epoch == -(-n_train // 4)
        totals.add(total)
        recipe = build_recipe(cfg.train, torch.device("cpu"), total_steps=total)
        assert recipe.teacher_forcing_prob(0) == 1.0
        assert recipe.teacher_forcing_prob(total - 1) == 0.0          # the last step of the run: no teacher forcing
        assert recipe.teacher_forcing_prob(total - 2) > 0.0           # ... and not before
        assert recipe.teacher_forcing_prob(total // 2) == pytest.approx(0.5, abs=1e-3)
    assert len(totals) == 1, f"{name}: total steps differ between 1 and 4 processes: {totals}"


def test_decay_fraction_follows_any_run_length():
    cfg = load_config(None, ["train.ss_decay_fraction=0.5", "train.ss_decay_steps=7"])
    assert ss_decay_steps(cfg.train, 101) == 50 and ss_decay_steps(cfg.train, 1) == 0
    r = build_recipe(cfg.train, torch.device("cpu"), total_steps=101)
    assert r.teacher_forcing_prob(25) == 0.5 and r.teacher_forcing_prob(50) == 0.0
    # without the fraction (or without a run: profiling) train.ss_decay_steps holds
    assert build_recipe(cfg.train, torch.device("cpu")).teacher_forcing_prob(7) == 0.0
    off = load_config(None, ["train.ss_decay_steps=10"]).train
    assert build_recipe(off, torch.device("cpu"), total_steps=1000).teacher_forcing_prob(5) == 0.5
    from mslstm.errors import ConfigError

    with pytest.raises(ConfigError, match="ss_decay_fraction"):
        load_config(None, ["train.ss_decay_fraction=1.5"])


def test_experiments_command_lists_the_four(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for name in PAPER:
        _load(name)  # a clear message when a source is missing
    assert main(["-q", "experiments", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(PAPER)
    assert rows["mnist"]["aliases"] == ["paper"] and rows["dwd"]["frames"] == "5 -> 5"
    assert rows["kth"]["size"] == "88x88x1" and "csi_30" in rows["dwd"]["metrics"]
    assert (CONFIGS / "paper.yaml").resolve() == (CONFIGS / "mnist.yaml").resolve()
    assert main(["-q", "experiments"]) == 0
    table = capsys.readouterr().out
    assert "taxibj" in table and "csi@0.5/2/5/10/30 mm/h" in table
    assert [e.name for e in list_experiments(CONFIGS)] == sorted(PAPER)


def test_each_experiment_compiles_to_a_kfp_pipeline_carrying_its_config(tmp_path):
    """The KFP door runs an experiment unchanged: its whole config is the default of the `config` parameter."""
    from pipelines.runner import compile_pipeline

    for name in PAPER:
        cfg = _load(name)
        spec = next(d for d in yaml.safe_load_all(compile_pipeline(cfg, tmp_path / f"{name}.yaml", False).read_text())
                    if d)
        default = spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]
        carried = json.loads(default)
        assert carried["evaluate"]["metric_set"] == PAPER[name][6]
        assert carried["train"]["global_batch_size"] == 4 and carried["train"]["ss_decay_fraction"] == 1.0
        assert carried["data"]["source"] == PAPER[name][0]


# ------------------------------------------------------------------------ sequences per split beside the authors'
def test_counts_of_mnist_come_from_the_config_beside_the_authors_7_3_cut():
    from mslstm.experiments import split_counts

    c = split_counts(_load("mnist"))
    assert c.project == {"train": 10500, "val": 4500, "test": 4500}
    assert c.authors == {"train": 10500, "val": None, "test": 4500}


def test_counts_of_kth_from_its_segment_list_by_both_rules(tmp_path):
    from mslstm.experiments import split_counts

    lst = tmp_path / "00sequences.txt"
    lst.write_text("Training: person11, 12\n\n"
                   "person01_running_d1\t\tframes\t1-40, 50-69\n"    # train: 20-frame clips every 3 frames
                   "person16_walking_d1\t\tframes\t1-60\n"           # val here, train for the authors
                   "person17_jogging_d1\t\tframes\t11-50\n"          # test
                   "person01_boxing_d1\t\tframes\t1-95\n")           # not a kept action
    cfg = load_config(CONFIGS / "kth.yaml", [f"data.path={tmp_path}"])
    c = split_counts(cfg)
    running = len(range(1, 40 - 20 + 2, 3)) + len(range(50, 69 - 20 + 2, 3))   # 7 + 1
    walking, jogging = len(range(1, 60 - 20 + 2, 10)), len(range(11, 50 - 20 + 2, 10))  # 5, 3
    assert (running, walking, jogging) == (8, 5, 3)
    assert c.project == {"train": running, "val": walking, "test": jogging}
    assert c.authors == {"train": running + walking, "val": None, "test": jogging}
    assert "00sequences.txt" in c.how


def test_counts_of_taxibj_from_the_dates_n_minus_t_plus_1_here_n_minus_t_for_the_authors(tmp_path):
    import datetime as dt

    from test_data_real_common import taxibj_slots, write_taxibj

    from mslstm.experiments import split_counts

    # 2013: 4 days, slot 100 (day 3) missing; 2014: 5 weeks
    write_taxibj(tmp_path / "BJ13_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2013, 7, 1), 4, skip=[100]))
    write_taxibj(tmp_path / "BJ14_M32x32_T30_InOut.h5", taxibj_slots(dt.date(2014, 3, 1), 35))
    c = split_counts(load_config(CONFIGS / "taxibj.yaml", [f"data.path={tmp_path}"]))
    t = 8
    # here: windows inside each split's gap-free runs, one a slot: test = the last 4 weeks, val = the week before
    # (2014's first), train = 2013 (runs of 100 and 91 slots)
    assert c.project == {"train": (100 - t + 1) + (91 - t + 1), "val": 336 - t + 1, "test": 1344 - t + 1}
    # the authors: day 3 of 2013 dropped (incomplete) -> runs of 96 and 48 slots; one window per slot with its 8
    # predecessors present (the slot itself not in it): 88 + 40, and 35 x 48 - 8 in 2014; the last 1,344 are test
    total = (96 - t) + (48 - t) + (35 * 48 - t)
    assert c.authors == {"train": total - 1344, "val": None, "test": 1344}


def test_experiments_command_prints_the_counts(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["-q", "experiments"]) == 0
    out = capsys.readouterr().out
    assert "sequences train / val / test: this config 10,500 / 4,500 / 4,500; the authors' 10,500 / - / 4,500" in out
    assert main(["-q", "experiments", "--json", "--no-counts"]) == 0
    assert "sequences" not in json.loads(capsys.readouterr().out)[0]


def test_counts_of_dwd_from_the_scan_times_gaps_respected_here_not_by_the_authors(tmp_path):
    from test_data_dwd import write_h5

    from mslstm.experiments import split_counts

    # 130 five-minute scans a year; 2016 misses scan 30. A sequence spans 55 scans (10 frames 6 apart), back to back
    h5 = write_h5(tmp_path / "RYDL.hdf5", years=(2014, 2015, 2016), per_year=130, drop=((2016, 30),))
    c = split_counts(load_config(CONFIGS / "dwd.yaml", [f"data.path={h5}"]))
    # here: starts 0 and 60 in a run of 130; 2016's runs of 30 and 99 scans hold 0 and 1
    assert c.project == {"train": 2, "val": 2, "test": 1}
    # the authors: blocks of 60 scans by position, no gap check: 130 // 60 and 129 // 60; val is their test
    assert c.authors == {"train": 2, "val": None, "test": 2}
