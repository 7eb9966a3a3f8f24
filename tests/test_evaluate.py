"""evaluate(): metrics.json / per_frame.csv / pictures on a tiny dataset, MLflow logging into the training run."""
from __future__ import annotations

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from test_evaluate_common import make_checkpoint, mlflow_env, tiny_config  # noqa: F401

from mslstm.errors import DataError
from mslstm.evaluation.evaluate import evaluate


def test_evaluate_writes_outputs_and_logs_to_new_run(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    import mlflow

    cfg = tiny_config()
    ckpt = make_checkpoint(tmp_path / "train" / "best.pt", cfg)
    res = evaluate(cfg, ckpt, tiny_dataset, tmp_path / "eval")
    out = tmp_path / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mse", "mae", "mse_pixel", "ssim", "psnr"):
        assert np.isfinite(metrics[key])
    assert metrics["sequences"] == 4
    assert metrics["mse"] == pytest.approx(metrics["mse_pixel"] * 16 * 16)
    rows = list(csv.DictReader((out / "per_frame.csv").open()))
    assert [int(r["frame"]) for r in rows] == [4, 5, 6]          # the 3 future frames of 3 in + 3 out
    assert np.mean([float(r["mse"]) for r in rows]) == pytest.approx(metrics["mse"], rel=1e-4)
    assert (out / "example_0.png").stat().st_size > 0 and (out / "example_1.gif").is_file()
    assert not (out / "example_2.png").exists()                   # num_examples = 2
    assert iio.imread(out / "example_0.gif").shape[0] == 6       # 3 inputs + 3 predicted frames
    assert (out / "per_frame_ssim.png").is_file()
    run = mlflow.get_run(res["run_id"])
    assert run.data.metrics["test_mse"] == pytest.approx(metrics["mse"])
    assert run.info.status == "FINISHED"
    hist = mlflow.MlflowClient().get_metric_history(res["run_id"], "test_mse_frame")
    assert sorted(m.step for m in hist) == [4, 5, 6]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(res["run_id"], "eval")}
    assert "eval/metrics.json" in arts


def test_evaluate_matches_manual_computation_and_all_frames_mode(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    from mslstm.data.dataset import VideoDataset
    from mslstm.training.checkpoint import load_model

    cfg = tiny_config("evaluate.frames=all", "tracking.enabled=false")
    ckpt = make_checkpoint(tmp_path / "best.pt", cfg)
    res = evaluate(cfg, ckpt, tiny_dataset, tmp_path / "eval")
    assert res["frames"] == [2, 3, 4, 5, 6] and res["run_id"] is None
    net, _ = load_model(ckpt)
    x = VideoDataset(tiny_dataset, "test").get_batch(range(4))
    with torch.no_grad():
        pred = net(x).clamp(0, 1)
    want = ((pred - x[:, 1:]) ** 2).sum(dim=(2, 3, 4)).mean().item()
    assert res["metrics"]["mse"] == pytest.approx(want, rel=1e-5)


def test_evaluate_logs_into_training_run_from_run_json(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    import mlflow

    from mslstm.tracking import write_run_info

    cfg = tiny_config("evaluate.max_sequences=2", "evaluate.num_examples=0")
    mlflow.set_tracking_uri(mlflow_env)
    exp = mlflow.set_experiment("evaltest")
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        pass
    write_run_info(tmp_path / "train", {"run_id": run.info.run_id, "tracking_uri": mlflow_env,
                                         "experiment_id": exp.experiment_id, "experiment_name": "evaltest"})
    ckpt = make_checkpoint(tmp_path / "train" / "best.pt", cfg)
    res = evaluate(cfg, ckpt, tiny_dataset, tmp_path / "eval")
    assert res["run_id"] == run.info.run_id and res["sequences"] == 2
    assert "test_ssim" in mlflow.get_run(run.info.run_id).data.metrics


def test_evaluate_rejects_data_of_another_frame_size(tiny_dataset, tmp_path):
    cfg = tiny_config("model.frame_size=[32, 32]", "tracking.enabled=false")
    ckpt = make_checkpoint(tmp_path / "best.pt", cfg)
    with pytest.raises(DataError, match="test.npy.*16x16"):
        evaluate(cfg, ckpt, tiny_dataset, tmp_path / "eval")


def test_cli_evaluate_door(tiny_dataset, tmp_path, mlflow_env, capsys):  # noqa: F811
    from test_evaluate_common import cli_sets

    from mslstm.cli import main

    make_checkpoint(tmp_path / "train" / "best.pt", tiny_config())
    rc = main([*cli_sets("evaluate.num_examples=0"), "evaluate", "--checkpoint", str(tmp_path / "train" / "best.pt"),
               "--data-dir", str(tiny_dataset), "--out", str(tmp_path / "ev")])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["sequences"] == 4 and printed["mse"] == pytest.approx(
        json.loads((tmp_path / "ev" / "metrics.json").read_text())["mse"], rel=1e-5)
    rc = main([*cli_sets(), "evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data-dir",
               str(tiny_dataset), "--out", str(tmp_path / "ev2")])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err


def test_evaluate_reports_trivial_baselines(tiny_dataset, tmp_path, mlflow_env):  # noqa: F811
    """A model that outputs blank frames scores exactly the blank-frame baseline (skill 0); the copy-last
    baseline equals the hand computation on the dataset."""
    from mslstm.data.dataset import VideoDataset

    cfg = tiny_config("evaluate.num_examples=0")
    ckpt = make_checkpoint(tmp_path / "blank.pt", cfg, bias=0.0)   # head weight 0, bias 0: predicts 0
    m = evaluate(cfg, ckpt, tiny_dataset, tmp_path / "eval")["metrics"]
    x = VideoDataset(tiny_dataset, "test").get_batch(list(range(4)))[:, :6]   # (B, T, C, H, W)
    fut, last = x[:, 3:], x[:, 2:3]
    assert m["baseline_blank_mse"] == pytest.approx(float(fut.pow(2).sum((2, 3, 4)).mean()), rel=1e-5)
    assert m["baseline_copy_last_mse"] == pytest.approx(float((fut - last).pow(2).sum((2, 3, 4)).mean()), rel=1e-5)
    assert m["mse"] == pytest.approx(m["baseline_blank_mse"], rel=1e-5)
    assert abs(m["skill_vs_blank"]) < 1e-5
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk["skill_vs_blank"] == pytest.approx(m["skill_vs_blank"])


def test_weights_choice_picks_best_or_last_of_a_training_folder(tiny_dataset, tmp_path):
    from mslstm.errors import CheckpointError
    from mslstm.evaluation.evaluate import pick_checkpoint

    cfg = tiny_config("tracking.enabled=false", "evaluate.num_examples=0")
    train = tmp_path / "train"
    make_checkpoint(train / "best.pt", cfg, bias=0.0)
    make_checkpoint(train / "last.pt", cfg, bias=1.0)
    best = evaluate(cfg, train, tiny_dataset, tmp_path / "ev_best")
    last = evaluate(tiny_config("tracking.enabled=false", "evaluate.num_examples=0", "evaluate.weights=last"), train,
                    tiny_dataset, tmp_path / "ev_last")
    assert best["checkpoint"] == str(train / "best.pt") and last["checkpoint"] == str(train / "last.pt")
    assert last["weights"] == "last" and best["metrics"]["mse"] != last["metrics"]["mse"]
    assert pick_checkpoint(train / "best.pt", "last") == train / "best.pt"   # a file is scored as given
    (train / "last.pt").unlink()
    with pytest.raises(CheckpointError, match="no last.pt in this folder"):
        pick_checkpoint(train, "last")


@pytest.mark.parametrize("name", ["mnist", "kth", "taxibj", "dwd"])
def test_paper_configs_score_the_last_weights_with_the_authors_psnr(name):
    from pathlib import Path

    from mslstm.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert (cfg.evaluate.weights, cfg.evaluate.psnr) == ("last", "authors")


def test_bad_weights_or_psnr_value_is_one_config_error(tmp_path, capsys):
    from test_evaluate_common import cli_sets

    from mslstm.cli import main

    for key, value, fragment in (("weights", "first", "'best', 'last'"), ("psnr", "peak", "'standard', 'authors'")):
        rc = main([*cli_sets(f"evaluate.{key}={value}"), "evaluate", "--checkpoint", str(tmp_path),
                   "--out", str(tmp_path / "ev")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and f"evaluate.{key}: must be one of {fragment}" in err, err
        assert not (tmp_path / "ev").exists()


def test_cli_evaluate_on_weights_that_do_not_fit_names_the_keys_and_the_file(tiny_dataset, tmp_path, capsys):
    # the same model_config, other weights (as after a code change): one line naming the file and the missing,
    # unexpected and mismatched keys, as `train --resume` does (one check behind both: checkpoint.check_weights)
    from test_evaluate_common import cli_sets

    from mslstm.cli import main

    ckpt = make_checkpoint(tmp_path / "best.pt", tiny_config())
    payload = torch.load(ckpt, weights_only=True)
    keys = sorted(payload["model"])
    payload["model"][keys[0]] = torch.zeros(3, 3)            # mismatched shape
    dropped = keys[1]
    del payload["model"][dropped]                             # missing
    payload["model"]["head.extra"] = torch.zeros(1)           # unexpected
    torch.save(payload, ckpt)
    rc = main([*cli_sets("tracking.enabled=false"), "evaluate", "--checkpoint", str(ckpt), "--data-dir",
               str(tiny_dataset), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {ckpt}: weights do not fit model 'mslstm'"), err
    assert f"missing: {dropped}" in err and "unexpected: head.extra" in err, err
    assert f"{keys[0]} (3, 3) vs" in err and "Error(s) in loading state_dict" not in err, err
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").iterdir())
