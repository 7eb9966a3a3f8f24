"""The study (mslstm.study): intervals against hand-computed values, the cells' configs, the paired design (same
batches for every model of a seed), the training time limit, the MLflow parent/child layout and the resume of an
interrupted study (real MLflow on SQLite), the summary files. Tiny shapes, 2-step budgets."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from test_evaluate_common import mlflow_env, tiny_config  # noqa: F401

from mslstm.study.stats import excludes_zero, mean_interval, paired_difference

TINY_STUDY = ("ablation.epochs=1", "ablation.steps=2", "ablation.eval_sequences=2", "evaluate.num_examples=0",
              "profile.batch_size=2", "profile.warmup=0", "profile.repeats=1", "train.batch_size=4")


# ------------------------------------------------------------------------------------------------------ stats
def test_mean_interval_matches_a_hand_computed_t_interval():
    # [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.290994, sem 0.645497, t(0.975, df 3) = 3.182446
    # half-width 2.054260 -> [0.445740, 4.554260]
    s = mean_interval([1, 2, 3, 4])
    assert s["n"] == 4 and s["mean"] == pytest.approx(2.5)
    assert s["sd"] == pytest.approx(1.290994, abs=1e-6)
    assert (s["lo"], s["hi"]) == (pytest.approx(0.445740, abs=1e-5), pytest.approx(4.554260, abs=1e-5))
    # one value: a mean, no interval; equal values: a zero-width interval; None / NaN left out
    assert mean_interval([3.0]) == {"n": 1, "mean": 3.0, "sd": None, "lo": None, "hi": None}
    assert mean_interval([2.0, 2.0, None, float("nan")])["lo"] == 2.0
    assert mean_interval([])["n"] == 0


def test_paired_difference_hand_computed_and_zero_flag():
    # seeds 0..2 in common (seed 3 only in the MS- model): diffs -1, -2, -0.5 -> mean -7/6, sd 0.763763,
    # sem 0.440959, t(0.975, df 2) = 4.302653 -> [-3.064, 0.731]: includes 0
    d = paired_difference({0: 10.0, 1: 12.0, 2: 11.0}, {0: 9.0, 1: 10.0, 2: 10.5, 3: 5.0})
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert d["mean"] == pytest.approx(-7 / 6)
    assert (d["lo"], d["hi"]) == (pytest.approx(-3.06396, abs=1e-4), pytest.approx(0.73063, abs=1e-4))
    assert d["excludes_zero"] is False
    # diffs -1, -1.1, -0.9: mean -1, sem 0.057735 -> [-1.2484, -0.7516]: excludes 0
    d = paired_difference({0: 5.0, 1: 5.0, 2: 5.0}, {0: 4.0, 1: 3.9, 2: 4.1})
    assert (d["lo"], d["hi"]) == (pytest.approx(-1.24841, abs=1e-4), pytest.approx(-0.75159, abs=1e-4))
    assert d["excludes_zero"] is True
    assert excludes_zero({"lo": 0.1, "hi": 0.3}) and not excludes_zero({"lo": None, "hi": None})


# ------------------------------------------------------------------------------------------------------ cells
def test_cells_configs_and_order():
    from mslstm.study.budget import budgets_of, cell_config, plan_cells, plan_steps_for_seconds, seeds_of

    cfg = tiny_config("train.seed=7", "ablation.seeds=3", "ablation.budget=both", "ablation.steps=5",
                      "ablation.seconds=12", "ablation.epochs=1", "ablation.overrides={train.batch_size: 2}")
    assert seeds_of(cfg) == [7, 8, 9] and budgets_of("both") == ["steps", "seconds"]
    cells = plan_cells(["convlstm", "mslstm"], [7, 8], ["seconds", "steps"])
    assert [(c["budget"], c["seed"], c["model"]) for c in cells[:3]] == \
        [("steps", 7, "convlstm"), ("steps", 7, "mslstm"), ("steps", 8, "convlstm")]
    assert cells[-1] == {"model": "mslstm", "seed": 8, "budget": "seconds"}
    c = cell_config(cfg, "convlstm", 8, "steps", n_train=8)
    # 8 sequences / batch 2 = 4 steps per epoch: 2 epochs reach the 5 steps
    assert (c.model.name, c.train.seed, c.train.max_steps, c.train.epochs, c.train.max_seconds, c.train.batch_size) \
        == ("convlstm", 8, 5, 2, 0.0, 2)
    s = cell_config(cfg, "mslstm", 9, "seconds", planned_steps=30, n_train=8)
    assert (s.train.max_steps, s.train.max_seconds, s.train.epochs, s.train.seed) == (30, 12.0, 8, 9)
    with pytest.raises(ValueError, match="planned step count"):
        cell_config(cfg, "mslstm", 9, "seconds")
    assert plan_steps_for_seconds(10.0, 0.3) == 33 and plan_steps_for_seconds(0.1, 1.0) == 1
    assert cfg.model.name == "mslstm" and cfg.train.seed == 7        # the study's config is left alone
    from mslstm.errors import ConfigError

    with pytest.raises(ConfigError, match="ablation.seeds"):
        tiny_config("ablation.seeds=0")
    with pytest.raises(ConfigError, match="train.max_seconds"):
        tiny_config("train.max_seconds=-1")


def test_estimate_is_the_sum_of_its_parts():
    from mslstm.study.budget import plan_cells
    from mslstm.study.estimate import OVERHEAD_S, PROFILE_FIXED_S, estimate_seconds

    cfg = tiny_config(*TINY_STUDY, "ablation.budget=both", "ablation.seconds=10", "train.val_batches=0")
    cells = plan_cells(["convlstm"], [0], ["steps", "seconds"])
    est = estimate_seconds(cfg, cells, {"convlstm": {"step_time_s": 0.5, "predict_time_s": 0.1}},
                           n_train=8, n_val=4, n_test=4)
    steps, secs = est["cells"]
    # steps: 2 x 0.5 train + 1 validation x 4 x 0.1 + 2 test x 0.1 + profile (0 + 1) x 0.5 x 2/4 + fixed
    assert steps["total_s"] == pytest.approx(1.0 + 0.4 + 0.2 + 0.25 + PROFILE_FIXED_S + OVERHEAD_S)
    # seconds: 10 s = 20 planned steps = 10 epochs of 2 steps -> 10 validations; the steps run times the plan
    assert secs["steps"] == 20 and secs["total_s"] == pytest.approx(10 + 10 * 0.4 + 0.2 + OVERHEAD_S)
    assert est["total_s"] == pytest.approx(steps["total_s"] + secs["total_s"])


# ---------------------------------------------------------------------------------------------- paired design
def test_every_model_of_a_seed_trains_on_the_same_batches(tiny_dataset, tmp_path, monkeypatch):
    """The paired design: two models with the same seed read the same training sequences in the same order and
    draw the same scheduled-sampling masks; another seed reads another order."""
    from mslstm.data.dataset import VideoDataset
    from mslstm.study.budget import cell_config
    from mslstm.training import recipe
    from mslstm.training.train import train

    torch.set_num_threads(1)
    seen: list[tuple[int, ...]] = []
    masks: list[torch.Tensor] = []
    original_get_batch, original_mask = VideoDataset.get_batch, recipe.Recipe.mask

    def recording_get_batch(self, indices):
        if self.split == "train":
            seen.append(tuple(int(i) for i in indices))
        return original_get_batch(self, indices)

    def recording_mask(self, *args, **kwargs):
        m = original_mask(self, *args, **kwargs)
        masks.append(None if m is None else m.clone())
        return m

    monkeypatch.setattr(VideoDataset, "get_batch", recording_get_batch)
    monkeypatch.setattr(recipe.Recipe, "mask", recording_mask)
    cfg = tiny_config(*TINY_STUDY, "ablation.steps=4", "tracking.enabled=false", "train.batch_size=2")
    order, drawn = {}, {}
    for model, seed in (("convlstm", 3), ("mslstm", 3), ("convlstm", 4)):
        seen.clear()
        masks.clear()
        c = cell_config(cfg, model, seed, "steps", n_train=8)
        train(c, tiny_dataset, tmp_path / f"{model}-{seed}")
        order[(model, seed)], drawn[(model, seed)] = list(seen), list(masks)
    assert len(order[("convlstm", 3)]) == 4                         # 4 steps of 2 sequences, 2 epochs
    assert order[("convlstm", 3)] == order[("mslstm", 3)]
    assert order[("convlstm", 4)] != order[("convlstm", 3)]
    assert all(torch.equal(a, b) for a, b in zip(drawn[("convlstm", 3)], drawn[("mslstm", 3)]))
    assert len(drawn[("convlstm", 3)]) == 4


def test_max_seconds_stops_after_the_step_that_passes_it(tiny_dataset, tmp_path):
    """train.max_seconds: the loop stops after the first step past the limit, validates, writes the checkpoint."""
    from mslstm.training.train import train

    torch.set_num_threads(1)
    cfg = tiny_config(*TINY_STUDY, "tracking.enabled=false", "train.epochs=50", "train.max_steps=100",
                      "train.max_seconds=1e-6")
    m = train(cfg, tiny_dataset, tmp_path / "t")
    assert m["steps"] == 1 and m["val_mse"] is not None
    assert (tmp_path / "t" / "best.pt").is_file()


# ------------------------------------------------------------------------------------------- MLflow and resume
class Interrupt(KeyboardInterrupt):
    pass


def test_study_parent_child_layout_and_resume_after_interrupt(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    """2 models x 2 seeds at 2 steps: interrupted (Ctrl-C) after 2 cells, the parent is KILLED; run again, it
    continues that parent, skips the 2 finished cells (their runs and files untouched) and runs the other 2."""
    import mlflow

    from mslstm.study.grid import run_study

    torch.set_num_threads(1)
    cfg = tiny_config(*TINY_STUDY, "ablation.seeds=2")
    out = tmp_path / "study"
    done: list[str] = []

    def stop_after_two(cell, result, skipped):
        done.append(f"{cell['model']}/{cell['seed']}")
        if len(done) == 2:
            raise Interrupt()

    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, tiny_dataset, out, ["convlstm", "smslstm"], stem="t", on_cell=stop_after_two,
                  layer_figures=False)
    client = mlflow.MlflowClient(mlflow_env)
    (first,) = client.search_runs([client.get_experiment_by_name("evaltest").experiment_id],
                                  filter_string="tags.`mslstm.step` = 'study'")
    assert first.info.status == "KILLED"
    ckpt = out / "steps" / "convlstm" / "seed0" / "train" / "best.pt"
    stamp = ckpt.stat().st_mtime_ns

    log: list[tuple[str, bool]] = []
    summary = run_study(cfg, tiny_dataset, out, ["convlstm", "smslstm"], stem="t",
                        on_cell=lambda c, r, s: log.append((f"{c['model']}/{c['seed']}", s)), layer_figures=False)
    assert summary["run_id"] == first.info.run_id
    assert log == [("convlstm/0", True), ("smslstm/0", True), ("convlstm/1", False), ("smslstm/1", False)]
    assert summary["skipped"] == ["steps/convlstm/seed0", "steps/smslstm/seed0"]
    assert ckpt.stat().st_mtime_ns == stamp
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["mslstm.study_key"] == summary["study_key"]
    assert parent.data.params["study.models"] == "convlstm,smslstm" and parent.data.params["study.seeds"] == "0,1"
    assert parent.data.metrics["study/cells_skipped"] == 2.0
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/t.md", "study/t.csv", "study/t_runs.csv", "study/t_pairs.csv", "study/bars.png",
            "study/radar.png", "study/pairs.png"} <= arts
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    cells = {(c.data.tags["mslstm.model"], c.data.tags["mslstm.seed"], c.data.tags["mslstm.budget"]): c
             for c in children}
    assert set(cells) == {(m, s, "steps") for m in ("convlstm", "smslstm") for s in ("0", "1")}
    for (model, seed, _), child in cells.items():
        assert child.data.params["model.name"] == model and child.data.params["train.seed"] == seed
        assert child.data.metrics["study/mse"] > 0 and "test_mse" in child.data.metrics
        assert child.data.metrics["cost_step_time_s"] > 0           # the cost in every child, measured once
        assert summary["child_run_ids"][f"steps/{model}/seed{seed}"] == child.info.run_id
    # the table: one row per model with both seeds, its interval and the paired difference
    rows = {r["model"]: r for r in summary["rows"]}
    assert rows["convlstm"]["seeds"] == 2 and rows["convlstm"]["mse_n"] == 2
    assert rows["convlstm"]["mse_lo"] <= rows["convlstm"]["mse"] <= rows["convlstm"]["mse_hi"]
    runs = list(csv.DictReader((out / "t_runs.csv").open()))
    mses = [float(r["mse"]) for r in runs if r["model"] == "convlstm"]
    assert rows["convlstm"]["mse"] == pytest.approx(sum(mses) / 2)
    (pair,) = summary["pairs"]
    assert (pair["flat"], pair["ms"], pair["mse"]["seeds"]) == ("convlstm", "smslstm", [0, 1])
    smse = [float(r["mse"]) for r in runs if r["model"] == "smslstm"]
    assert pair["mse"]["mean"] == pytest.approx(sum(smse) / 2 - sum(mses) / 2)
    # a finished study is not continued: a new run starts a new parent
    again = run_study(cfg, tiny_dataset, tmp_path / "again", ["convlstm", "smslstm"], stem="t", layer_figures=False)
    assert again["study_key"] == summary["study_key"]
    assert again["run_id"] != summary["run_id"] and again["skipped"] == []
    # paired and deterministic: the same seed gives the same numbers in the new runs
    assert [r["mse"] for r in again["cells"]] == [r["mse"] for r in summary["cells"]]


def test_study_both_budgets_plans_seconds_from_the_steps_runs(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    """budget both, one seed: the steps runs, then the seconds runs with a step count planned from their measured
    time per step, capped by train.max_seconds; the layer-output figure of each model from its checkpoint."""
    import mlflow

    from mslstm.study.grid import run_study

    torch.set_num_threads(1)
    cfg = tiny_config(*TINY_STUDY, "ablation.budget=both", "ablation.seconds=1.5")
    out = tmp_path / "study"
    summary = run_study(cfg, tiny_dataset, out, ["convlstm", "smslstm"], stem="ablation")
    plan = json.loads((out / "plan.json").read_text())
    by = {(c["budget"], c["model"]): c for c in summary["cells"]}
    for m in ("convlstm", "smslstm"):
        assert plan[m]["source"].startswith("mean of 1 equal-steps")
        step = by[("steps", m)]["train_time_s"] / by[("steps", m)]["train_steps"]
        assert plan[m]["planned_steps"] == max(1, int(1.5 // step))
        sec = by[("seconds", m)]
        assert sec["planned_steps"] == plan[m]["planned_steps"] and 1 <= sec["train_steps"] <= sec["planned_steps"]
        # stopped by the planned steps or by the time limit, at most one step past it
        assert sec["train_steps"] == sec["planned_steps"] or sec["train_time_s"] >= 1.5
        assert (out / "layers" / f"{m}.png").stat().st_size > 1000
    assert {r["budget"] for r in summary["rows"]} == {"steps", "seconds"}
    for name in ("bars_steps.png", "bars_seconds.png", "radar_steps.png", "radar_seconds.png"):
        assert (out / name).stat().st_size > 1000, name
    md = (out / "ablation.md").read_text()
    assert "## Equal steps: 2 optimizer steps per model" in md and "## Equal time: 1.5 s" in md
    assert "GMACs fwd / seq (thop" in md and "SMS-LSTM − ConvLSTM" in md
    # the cost columns: both FLOP conventions, the model's own numbers
    from model.flops import model_flops, model_macs

    for r in summary["rows"]:
        mcfg = cfg.replace({"model.name": r["model"]}).model
        assert r["flops_forward"] == model_flops(mcfg) and r["macs_forward"] == model_macs(mcfg)
        assert r["peak_memory_mib"] > 0 and r["step_time_ms"] > 0 and r["wall_s"] > 0
    client = mlflow.MlflowClient(mlflow_env)
    parent = client.get_run(summary["run_id"])
    assert json.loads(parent.data.params["study.plan.convlstm"])["planned_steps"] == plan["convlstm"]["planned_steps"]


# ------------------------------------------------------------------------------------------------ the summary
def test_redraw_draws_the_finished_study_again_from_its_runs(tiny_dataset, tmp_path, mlflow_env, capsys):  # noqa: F811
    """--redraw: the same tables from the parent's child runs, nothing trained, the files logged to the same parent;
    a study that never ran, or one with unfinished cells, is named and refused."""
    import mlflow

    from mslstm.cli import main
    from mslstm.errors import MSLSTMError
    from mslstm.study.grid import redraw_study, run_study

    torch.set_num_threads(1)
    cfg = tiny_config(*TINY_STUDY)
    out = tmp_path / "study"
    ran = run_study(cfg, tiny_dataset, out, ["convlstm", "smslstm"], stem="t", layer_figures=False)
    ckpt = out / "steps" / "convlstm" / "seed0" / "train" / "best.pt"
    stamp = ckpt.stat().st_mtime_ns
    (out / "t.md").unlink()
    (out / "radar.png").unlink()
    again = redraw_study(cfg, tiny_dataset, out, ["convlstm", "smslstm"], stem="t", layer_figures=False)
    assert again["run_id"] == ran["run_id"] and again["study_key"] == ran["study_key"]
    assert [r["mse"] for r in again["cells"]] == [r["mse"] for r in ran["cells"]]
    assert again["rows"] == ran["rows"] and again["total_time_s"] == pytest.approx(ran["total_time_s"])
    assert (out / "t.md").is_file() and (out / "radar.png").stat().st_size > 1000
    assert ckpt.stat().st_mtime_ns == stamp  # nothing trained
    client = mlflow.MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("evaltest")
    assert len(client.search_runs([exp.experiment_id], filter_string="tags.`mslstm.step` = 'study'")) == 1
    assert "study/radar.png" in {a.path for a in client.list_artifacts(ran["run_id"], "study")}
    # the door, naming the parent
    from test_evaluate_common import TINY

    assert main([*[f"--set={o}" for o in (*TINY, *TINY_STUDY)], "study", "--models", "convlstm,smslstm",
                 "--data-dir", str(tiny_dataset), "--out", str(out), "--redraw", "--parent", ran["run_id"]]) == 0
    assert ran["run_id"] in capsys.readouterr().out
    # another grid of the same study never ran: refused, naming it
    with pytest.raises(MSLSTMError, match="no MLflow parent run"):
        redraw_study(cfg.replace({"ablation.seeds": 2}), tiny_dataset, out, ["convlstm", "smslstm"], stem="t")
    with pytest.raises(MSLSTMError, match=r"1 of the 3 runs .* did not finish \(steps/tmslstm/seed0\)"):
        redraw_study(cfg, tiny_dataset, out, ["convlstm", "smslstm", "tmslstm"], stem="t",
                     parent_run_id=ran["run_id"])


def test_adding_a_seed_reuses_the_earlier_study_s_finished_runs(tiny_dataset, tmp_path, mlflow_env, capsys):  # noqa: F811
    """reuse: one seed ran; asked for two seeds with reuse, only seed 1 trains (seed 0's runs, files and numbers
    taken as they are), the new parent names the earlier one and a redraw reads both; a changed config is refused
    naming the key before anything trains; a run id not in the store trains every cell."""
    import mlflow

    from mslstm.cli import main
    from mslstm.errors import ConfigError
    from mslstm.study.grid import redraw_study, run_study
    from test_evaluate_common import TINY

    torch.set_num_threads(1)
    models = ["convlstm", "smslstm"]
    cfg = tiny_config(*TINY_STUDY)
    first = run_study(cfg, tiny_dataset, tmp_path / "one", models, stem="t", layer_figures=False)
    ckpt = tmp_path / "one" / "steps" / "convlstm" / "seed0" / "train" / "best.pt"
    stamp = ckpt.stat().st_mtime_ns
    two = cfg.replace({"ablation.seeds": 2})
    log: list[tuple[str, bool]] = []
    summary = run_study(two, tiny_dataset, tmp_path / "two", models, stem="t", layer_figures=False,
                        reuse=first["run_id"], on_cell=lambda c, r, s: log.append((f"{c['model']}/{c['seed']}", s)))
    assert log == [("convlstm/0", True), ("smslstm/0", True), ("convlstm/1", False), ("smslstm/1", False)]
    assert summary["reused"] == summary["skipped"] == ["steps/convlstm/seed0", "steps/smslstm/seed0"]
    for k in summary["reused"]:
        assert summary["child_run_ids"][k] == first["child_run_ids"][k]
    assert ckpt.stat().st_mtime_ns == stamp and not (tmp_path / "two" / "steps" / "convlstm" / "seed0").exists()
    by = {(c["model"], c["seed"]): c["mse"] for c in summary["cells"]}
    assert [by[(m, 0)] for m in models] == [c["mse"] for c in first["cells"]]
    rows = {r["model"]: r for r in summary["rows"]}
    assert rows["convlstm"]["mse_n"] == 2 and rows["convlstm"]["mse"] == pytest.approx(
        (by[("convlstm", 0)] + by[("convlstm", 1)]) / 2)
    client = mlflow.MlflowClient(mlflow_env)
    parent = client.get_run(summary["run_id"])
    assert parent.data.tags["mslstm.study_reuses"] == first["run_id"] != summary["run_id"]
    assert parent.data.params["study.reused_from"] == first["run_id"]
    assert parent.data.params["study.cells_reused"] == "2" and parent.data.metrics["study/cells_skipped"] == 2.0
    own = client.search_runs([parent.info.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    assert sorted(c.data.tags["mslstm.cell"] for c in own) == ["steps/convlstm/seed1", "steps/smslstm/seed1"]
    again = redraw_study(two, tiny_dataset, tmp_path / "two", models, stem="t", layer_figures=False)
    assert again["run_id"] == summary["run_id"] and again["rows"] == summary["rows"]
    assert again["reused"] == summary["reused"]
    # another config: refused before anything trains, naming the key
    n_parents = len(client.search_runs([parent.info.experiment_id], filter_string="tags.`mslstm.step` = 'study'"))
    with pytest.raises(ConfigError, match=r"reuse: steps/convlstm/seed0 .* train\.lr differ"):
        run_study(two.replace({"train.lr": 0.5}), tiny_dataset, tmp_path / "lr", models, stem="t",
                  layer_figures=False, reuse=first["run_id"])
    assert len(client.search_runs([parent.info.experiment_id],
                                  filter_string="tags.`mslstm.step` = 'study'")) == n_parents
    assert not (tmp_path / "lr").exists()
    # the same config on another data set (its meta.json differs): refused
    import shutil

    other = tmp_path / "other-data"
    shutil.copytree(tiny_dataset, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["raw_hash"] = "0" * 32
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="another data set"):
        run_study(two, other, tmp_path / "other", models, stem="t", layer_figures=False, reuse=first["run_id"])
    assert not (tmp_path / "other").exists()
    # the door's dry run estimates only the runs to train
    capsys.readouterr()
    flags = [f"--set={o}" for o in (*TINY, *TINY_STUDY)]
    assert main([*flags, "study", "--models", "convlstm,smslstm", "--seeds", "2", "--data-dir", str(tiny_dataset),
                 "--reuse", first["run_id"], "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"= 4 runs, 2 of them taken from study run {first['run_id']}" in out
    assert "steps/smslstm/seed1" in out and "steps/convlstm/seed0" not in out
    # the door; a run id not in the store: every cell trains
    assert main([*[f"--set={o}" for o in (*TINY, *TINY_STUDY)], "study", "--models", "convlstm", "--data-dir",
                 str(tiny_dataset), "--out", str(tmp_path / "door"), "--reuse", "0" * 32]) == 0
    out = capsys.readouterr().out
    assert "steps/convlstm/seed0: mse" in out and "(finished in run" not in out and "(0 not trained here" in out


def _cell(model, seed, mse, budget="steps"):
    return {"model": model, "seed": seed, "budget": budget,
            "metrics": {"mse": mse, "ssim": 0.5 + seed / 100, "skill_vs_blank": 1 - mse / 100, "mae": 1.0,
                        "psnr": 20.0, "baseline_blank_mse": 100.0},
            "cost": {"params": 10, "flops_forward": 2e9, "flops_train": 6e9, "peak_memory_bytes": 2**21,
                     "step_time_s": 0.25, "predict_time_s": 0.01},
            "train": {"steps": 4, "time_s": 1.0, "planned_steps": 4}, "wall_s": 3.0}


def test_summarize_study_intervals_pairs_and_files(tmp_path):
    from mslstm.study.report import summarize_study

    results = [_cell("convlstm", s, m) for s, m in ((0, 50.0), (1, 52.0), (2, 51.0))]
    results += [_cell("smslstm", s, m) for s, m in ((0, 49.0), (1, 51.1), (2, 49.9))]   # diffs -1, -0.9, -1.1
    s = summarize_study(results, tmp_path, stem="t")
    rows = {r["model"]: r for r in s["rows"]}
    conv = rows["convlstm"]
    assert conv["mse"] == pytest.approx(51.0) and conv["mse_n"] == 3
    # [50, 52, 51]: sd 1, sem 0.57735, t(0.975, 2) 4.302653 -> half-width 2.48414
    assert (conv["mse_lo"], conv["mse_hi"]) == (pytest.approx(48.51586, abs=1e-4), pytest.approx(53.48414, abs=1e-4))
    assert conv["macs_forward"] == 1e9 and conv["peak_memory_mib"] == 2.0 and conv["step_time_ms"] == 250.0
    (pair,) = s["pairs"]
    assert pair["mse"]["excludes_zero"] and pair["mse"]["mean"] == pytest.approx(-1.0)
    assert not pair["ssim"]["excludes_zero"]            # identical SSIM per seed: a zero difference
    md = (tmp_path / "t.md").read_text()
    assert "51.00 [48.52, 53.48]" in md and "-1.00 [-1.25, -0.75] *" in md
    assert "Student-t 95 % interval" in md
    pairs = list(csv.DictReader((tmp_path / "t_pairs.csv").open()))
    assert {(p["metric"], p["excludes_zero"]) for p in pairs} >= {("mse", "True"), ("ssim", "False")}
    assert len(list(csv.DictReader((tmp_path / "t.csv").open()))) == 2
    assert len(list(csv.DictReader((tmp_path / "t_runs.csv").open()))) == 6
    radar = s["radar"]["steps"]["SMS-LSTM"]
    assert radar["mse"] == pytest.approx(50.0 / 51.0) and radar["mse_lo"] < radar["mse"] < radar["mse_hi"]
    for f in ("bars.png", "radar.png", "pairs.png"):
        assert (tmp_path / f).stat().st_size > 1000
    assert json.loads((tmp_path / "t.json").read_text())["interval"].startswith("Student-t")
    assert not math.isnan(s["rows"][0]["ssim"])


def test_many_models_get_one_small_radar_per_pair_on_a_shared_scale(tmp_path):
    """More than RADAR_MAX_LINES models (the pairs preset): radar.png is a grid of one radar per MS-X vs X pair,
    each indicator still divided by its largest value over every model; a few models keep the single radar."""
    from PIL import Image

    from model.registry import label_of, ms_pairs
    from mslstm.study.figures import RADAR_MAX_LINES
    from mslstm.study.report import summarize_study

    pairs = ms_pairs()[:4]
    names = [m for pair in pairs for m in pair]
    assert len(names) > RADAR_MAX_LINES
    results = [_cell(m, s, 40.0 + 2 * i + s) for i, m in enumerate(names) for s in (0, 1)]
    s = summarize_study(results, tmp_path / "many", stem="pairs", preset_pairs=names)
    width, height = Image.open(tmp_path / "many" / "radar.png").size
    assert width > 2.5 * height                          # 4 panels in one row
    top = max(r["mse"] for r in s["rows"])
    for r in s["rows"]:                                  # normalised over all 8 models, not per pair
        assert s["radar"]["steps"][label_of(r["model"])]["mse"] == pytest.approx(r["mse"] / top)
    few = summarize_study(results[:4], tmp_path / "few", stem="pairs", preset_pairs=names[:2])
    width, height = Image.open(tmp_path / "few" / "radar.png").size
    assert 0.6 < width / height < 1.6 and len(few["rows"]) == 2


def test_study_cli_dry_run_prints_the_grid_and_an_estimate(tiny_dataset, capsys):
    from mslstm.cli import main

    torch.set_num_threads(1)
    from test_evaluate_common import TINY

    rc = main([*[f"--set={o}" for o in (*TINY, *TINY_STUDY)], "study", "--models", "convlstm,smslstm",
               "--seeds", "2", "--budget", "both", "--seconds", "3", "--data-dir", str(tiny_dataset), "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 models x 2 seed(s) [0, 1] x budget both" in out and "= 8 runs" in out
    assert "seconds/smslstm/seed1" in out and "estimated total:" in out
    rc = main([*[f"--set={o}" for o in (*TINY, *TINY_STUDY)], "study", "--models", "convlstm", "--steps", "100000",
               "--data-dir", str(tiny_dataset), "--max-minutes", "0.01"])
    assert rc == 2
    assert "--max-minutes 0.01: the study is estimated at" in capsys.readouterr().err
