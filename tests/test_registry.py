"""register(): the gate with real MLflow on SQLite in tmp; pyfunc round trip equals the in-memory model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_evaluate_common import make_checkpoint, mlflow_env, tiny_config  # noqa: F401

from mslstm.release.registry import gate, register
from mslstm.io import write_json


def _candidate(root, cfg, mse: float, hours: float = 0.01, seed: int = 0):
    """train/eval/profile dirs of one candidate (the checkpoint is real, the scores are given)."""
    make_checkpoint(root / "train" / "best.pt", cfg, seed=seed)
    write_json(root / "eval" / "metrics.json", {"mse": mse, "mae": 2 * mse, "ssim": 0.5, "psnr": 20.0,
                                                "sequences": 4})
    write_json(root / "profile" / "cost.json", {"model": cfg.model.name, "params": 100, "flops_forward": 1e6,
                                                "estimate": {"device_hours": hours}})
    return root / "train", root / "eval", root / "profile"


def test_better_model_is_promoted_worse_refused(tmp_path, mlflow_env):  # noqa: F811
    import mlflow

    cfg = tiny_config("register.min_improvement=0.05")
    client = mlflow.MlflowClient()

    first = register(cfg, *_candidate(tmp_path / "a", cfg, mse=100.0), tmp_path / "reg_a")
    assert first["promoted"] and first["alias"] == "champion" and first["version"] == "1"
    assert first["compared"]["champion"] is None

    better = register(cfg, *_candidate(tmp_path / "b", cfg, mse=90.0, seed=1), tmp_path / "reg_b")
    assert better["promoted"] and better["version"] == "2"
    assert str(client.get_model_version_by_alias("mslstm", "champion").version) == "2"
    assert better["compared"]["champion"] == pytest.approx(100.0)
    mv = client.get_model_version("mslstm", "2")
    assert mv.tags["test_mse"] == "90.0" and mv.tags["gate"] == "passed"
    assert "beats the champion's 100" in mv.description

    # 88 is better than 90 but not by the 5 % margin: refused, registered as challenger only
    worse = register(cfg, *_candidate(tmp_path / "c", cfg, mse=88.0, seed=2), tmp_path / "reg_c")
    assert not worse["promoted"] and worse["alias"] == "challenger" and worse["version"] == "3"
    assert str(client.get_model_version_by_alias("mslstm", "champion").version) == "2"
    assert str(client.get_model_version_by_alias("mslstm", "challenger").version) == "3"
    saved = json.loads((tmp_path / "reg_c" / "decision.json").read_text())
    assert saved["promoted"] is False and "does not beat" in saved["reasons"][0]

    cfg_nothing = tiny_config("register.on_reject=nothing")
    refused = register(cfg_nothing, *_candidate(tmp_path / "d", cfg, mse=500.0), tmp_path / "reg_d")
    assert not refused["promoted"] and refused["version"] is None and refused["model_uri"] is None
    assert len(client.search_model_versions("name='mslstm'")) == 3


def test_cost_budget_refuses_a_better_but_costly_model(tmp_path, mlflow_env):  # noqa: F811
    cfg = tiny_config("register.max_device_hours=1.0", "register.on_reject=nothing")
    ok = register(cfg, *_candidate(tmp_path / "a", cfg, mse=100.0, hours=0.5), tmp_path / "ra")
    assert ok["promoted"]
    costly = register(cfg, *_candidate(tmp_path / "b", cfg, mse=10.0, hours=3.0), tmp_path / "rb")
    assert not costly["promoted"]
    assert any("over the budget" in r for r in costly["reasons"])


def test_gate_pure_directions():
    cfg = tiny_config("register.metric=ssim", "register.max_flops=1e9")
    ok, _ = gate(cfg, {"ssim": 0.8}, {"flops_forward": 1e6}, 0.7)
    assert ok
    ok, reasons = gate(cfg, {"ssim": 0.6}, {"flops_forward": 1e6}, 0.7)
    assert not ok
    ok, reasons = gate(cfg, {"ssim": 0.9}, {"flops_forward": 1e10}, 0.7)
    assert not ok and "over the budget" in reasons[-1]


def test_gate_boundaries():
    """Documented rule: promoted when new <= champion x (1 - margin) (lower is better; >= champion x (1 + margin)
    when higher is better), and when each cost is <= its budget. Exactly on a boundary passes; one float step past
    it fails."""
    import math

    up, down = (lambda v: math.nextafter(v, math.inf)), (lambda v: math.nextafter(v, -math.inf))
    cfg = tiny_config("register.min_improvement=0.05", "register.max_device_hours=2.0", "register.max_flops=1e9")
    cost = {"flops_forward": 1e6, "estimate": {"device_hours": 0.5}}
    edge = 100.0 * (1 - 0.05)
    assert gate(cfg, {"mse": edge}, cost, 100.0)[0]
    assert not gate(cfg, {"mse": up(edge)}, cost, 100.0)[0]
    assert gate(cfg, {"mse": 1000.0}, cost, None)[0]                       # no champion yet: the first passes
    hi = tiny_config("register.metric=ssim", "register.min_improvement=0.05")
    edge = 0.7 * (1 + 0.05)
    assert gate(hi, {"ssim": edge}, cost, 0.7)[0]
    assert not gate(hi, {"ssim": down(edge)}, cost, 0.7)[0]
    # costs: equal to the budget is within it
    for hours, flops in ((2.0, 1e6), (0.5, 1e9)):
        ok, reasons = gate(cfg, {"mse": 50.0}, {"flops_forward": flops, "estimate": {"device_hours": hours}}, 100.0)
        assert ok and not any("over the budget" in r for r in reasons), (hours, flops)
    for hours, flops in ((up(2.0), 1e6), (0.5, up(1e9))):
        ok, reasons = gate(cfg, {"mse": 50.0}, {"flops_forward": flops, "estimate": {"device_hours": hours}}, 100.0)
        assert not ok and sum("over the budget" in r for r in reasons) == 1, (hours, flops)
    # a better score does not buy an over-budget model, nor a cheap model a worse score
    assert not gate(cfg, {"mse": 1.0}, {"flops_forward": 2e9, "estimate": {"device_hours": 0.5}}, 100.0)[0]
    assert not gate(cfg, {"mse": 99.0}, cost, 100.0)[0]


def test_pyfunc_round_trip_equals_in_memory_model(tmp_path, mlflow_env):  # noqa: F811
    import mlflow.pyfunc

    from mslstm.training.checkpoint import load_model

    cfg = tiny_config()
    dirs = _candidate(tmp_path / "a", cfg, mse=1.0, seed=3)
    decision = register(cfg, *dirs, tmp_path / "reg")
    assert decision["model_uri"] == "models:/mslstm@champion"
    model = mlflow.pyfunc.load_model("models:/mslstm@champion")
    x = np.random.default_rng(0).random((2, 3, 1, 16, 16), dtype=np.float32)
    got = model.predict(x)
    net, _ = load_model(dirs[0] / "best.pt")
    with torch.no_grad():
        want = net.predict(torch.from_numpy(x), 3).clamp(0, 1).numpy()
    assert got.shape == (2, 3, 1, 16, 16) and got.dtype == np.float32
    inside = (want > 0) & (want < 1)
    assert inside.mean() > 0.2, "the clamp hides the comparison: pick another seed"  # not all clamped to 0 / 1
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    longer = model.predict(x, params={"n_future": 5})
    assert longer.shape == (2, 5, 1, 16, 16)
    np.testing.assert_allclose(longer[:, :3], want, rtol=1e-5, atol=1e-6)


def test_register_missing_eval_names_the_file(tmp_path, mlflow_env):  # noqa: F811
    from mslstm.errors import RegistryError

    cfg = tiny_config()
    make_checkpoint(tmp_path / "train" / "best.pt", cfg)
    with pytest.raises(RegistryError, match="eval.*metrics.json.*not found"):
        register(cfg, tmp_path / "train", tmp_path / "eval", tmp_path / "profile", tmp_path / "reg")


def test_cli_register_door(tmp_path, mlflow_env, capsys):  # noqa: F811
    from test_evaluate_common import cli_sets

    from mslstm.cli import main

    cfg = tiny_config()
    train, ev, prof = _candidate(tmp_path / "a", cfg, mse=5.0)
    rc = main([*cli_sets(), "register", "--train-dir", str(train), "--eval-dir", str(ev), "--profile-dir", str(prof),
               "--out", str(tmp_path / "reg")])
    assert rc == 0
    assert "PROMOTED -> models:/mslstm@champion (version 1)" in capsys.readouterr().out
    assert json.loads((tmp_path / "reg" / "decision.json").read_text())["promoted"] is True


def test_pyfunc_is_models_from_code_with_signature_and_no_pickle_warning(tmp_path, mlflow_env, caplog):  # noqa: F811
    """The registered pyfunc is logged from a code file (nothing CloudPickled), with a signature and an input
    example; logging and loading it emit no CloudPickle / missing-signature warning."""
    import logging
    import warnings

    import mlflow.pyfunc
    from mlflow.models import get_model_info

    from mslstm.release.pyfunc import MODEL_CODE

    cfg = tiny_config()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="mlflow"):
        warnings.simplefilter("always")
        decision = register(cfg, *_candidate(tmp_path / "a", cfg, mse=1.0), tmp_path / "reg")
        model = mlflow.pyfunc.load_model(decision["model_uri"])
        out = model.predict(np.zeros((1, 3, 1, 16, 16), np.float32))
    assert out.shape == (1, 3, 1, 16, 16)
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    for text in said:
        assert "cloudpickle" not in text.lower() and "without a signature" not in text.lower(), text
    info = get_model_info(decision["model_uri"])
    assert info.signature is not None and info.signature.params is not None
    assert [p.name for p in info.signature.params.params] == ["n_future"]
    flavor = info.flavors["python_function"]
    assert flavor.get("model_code_path", "").endswith(MODEL_CODE.name), flavor  # models-from-code
    assert "python_model" not in flavor  # no python_model.pkl to unpickle
    assert info.saved_input_example_info is not None


def test_pyfunc_class_definition_warns_nothing():
    """MLflow checks the ``predict`` type hints when the wrapper class is defined: no warning may come of it."""
    import subprocess
    import sys

    code = ("import warnings, mlflow.pyfunc\n"
            "warnings.simplefilter('error')\n"
            "import mslstm.release.pyfunc\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
