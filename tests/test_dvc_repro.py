"""`dvc repro` end to end on a tiny config in a temporary copy of the repository (git init + tracked files).

Then: a second `dvc repro` is a no-op; a changed parameter re-runs only the stages that read it;
`dvc exp run -S`, `dvc metrics diff` and `dvc plots diff` work. About 2-4 minutes on 2 shared cores.
"""
from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from test_pipeline_helpers import run as _run

STAGES = ("data", "validate", "train", "evaluate", "profile", "register")


def run(cmd, cwd, **kw):
    return _run(cmd, cwd, PYTHONPATH=str(cwd), **kw)  # the copy's own code, which dvc.yaml's deps hash


def _ran(out: str) -> set[str]:
    """Stages a `dvc repro` ran: ``data`` for the root dvc.yaml, ``compare/dvc.yaml:compare`` for another file's."""
    return set(re.findall(r"Running stage '([\w/.:-]+)'", out))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    from test_pipeline_helpers import repo_copy

    return repo_copy(tmp_path_factory.mktemp("dvcrepo") / "repo")


def test_dvc_yaml_lists_every_stage_with_its_section():
    from test_pipeline_helpers import ROOT

    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert tuple(doc["stages"]) == STAGES
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in doc["stages"].items():
        assert stage["cmd"].startswith(f"mslstm {name} "), name
        listed = [p if isinstance(p, str) else next(iter(p)) for p in stage["params"]]
        assert name in listed, f"stage {name} must read its own section"
        for key in listed:  # every listed key exists in params.yaml
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name}: params key {key} not in params.yaml"
                node = node[part]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dvc_repro_chain_noop_and_selective_rerun(repo):
    # The raw data folder is DVC-tracked (data.dvc) and not in git: rebuild + hash-check it first (or `dvc pull`).
    run(["mslstm", "data", "--raw-only"], repo)
    t0 = time.perf_counter()
    first = run(["dvc", "repro"], repo)
    print(f"first dvc repro: {time.perf_counter() - t0:.1f} s")
    assert _ran(first.stdout) == set(STAGES), first.stdout
    a = repo / "artifacts"
    for rel in ("dataset/meta.json", "dataset/train.npy", "validation/result.json", "validation/report.html",
                "train/best.pt", "train/metrics.json", "train/history.csv", "train/run.json", "eval/metrics.json",
                "eval/per_frame.csv", "profile/cost.json", "register/decision.json"):
        assert (a / rel).is_file(), rel
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    # the MLflow run of training got the evaluation and a registered model version
    decision = json.loads((a / "register" / "decision.json").read_text())
    assert decision["promoted"] is True and decision["version"] == "1" and decision["alias"] == "champion", decision
    assert decision["model_uri"] == f"models:/{decision['model_name']}@champion"
    assert json.loads((a / "train" / "metrics.json").read_text())["steps"] == 2       # train.max_steps of TINY
    assert json.loads((a / "validation" / "result.json").read_text())["success"] is True
    run(["git", "add", "-A"], repo)  # dvc.lock and the metrics/plots files it records (cache: false, in git)
    run(["git", "commit", "-qm", "first run"], repo)

    # nothing changed: a no-op
    t0 = time.perf_counter()
    again = run(["dvc", "repro"], repo)
    noop_s = time.perf_counter() - t0
    print(f"no-op dvc repro: {noop_s:.2f} s")
    assert _ran(again.stdout) == set(), again.stdout
    assert noop_s < 30, f"no-op dvc repro took {noop_s:.1f} s"  # ~2-3 s on an idle machine; loose on a busy one
    status = run(["dvc", "status", "dvc.yaml"], repo)   # the chain (a bare `dvc status` also lists compare/dvc.yaml)
    assert "up to date" in status.stdout

    # a changed evaluate parameter re-runs evaluate (and what reads its output), never data/validate/train
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["num_examples"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = run(["dvc", "repro"], repo)
    ran = _ran(changed.stdout)
    assert "evaluate" in ran and not ran & {"data", "validate", "train", "profile"}, changed.stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "two examples"], repo)

    # an experiment with another learning rate, compared with the last commit
    exp = run(["dvc", "exp", "run", "-S", "train.lr=0.003"], repo)
    assert "train" in _ran(exp.stdout) and "data" not in _ran(exp.stdout), exp.stdout
    diff = json.loads(run(["dvc", "params", "diff", "--json"], repo).stdout)
    assert diff["params.yaml"]["train.lr"]["new"] == 0.003
    mdiff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    assert "artifacts/train/metrics.json" in mdiff, mdiff
    changed_metric = next(iter(mdiff["artifacts/train/metrics.json"].values()))
    assert changed_metric["old"] is not None and changed_metric["new"] is not None, mdiff  # old read from git
    assert set(mdiff) <= {"artifacts/train/metrics.json", "artifacts/eval/metrics.json",
                          "artifacts/profile/metrics.json"}, mdiff  # numeric metrics files only
    shown = run(["dvc", "exp", "show", "--json"], repo).stdout
    assert "0.003" in shown and json.loads(shown), shown[:2000]  # the experiment's lr is listed
    out = repo / "plots-diff"
    run(["dvc", "plots", "diff", "-o", str(out)], repo)
    html = (out / "index.html").read_text()
    assert "Training loss" in html and "Test MSE per predicted frame" in html
    assert "cdn.jsdelivr" not in html  # plots/template.html carries Vega inline


def test_compare_stage_is_its_own_pipeline_reading_the_root_dataset():
    """compare/dvc.yaml runs `mslstm compare` from the repository root on the root pipeline's validated dataset, and
    stays out of the root dvc.yaml (so `dvc repro` / `make run` never starts the ~40-minute comparison)."""
    from test_pipeline_helpers import ROOT

    stage = yaml.safe_load((ROOT / "compare" / "dvc.yaml").read_text())["stages"]["compare"]
    assert stage["wdir"] == ".." and stage["cmd"].startswith("mslstm compare ")
    assert {"artifacts/dataset", "artifacts/validation/result.json", "model", "mslstm"} <= set(stage["deps"])
    assert {"model", "train", "ablation", "evaluate", "profile"} <= set(stage["params"])
    assert stage["outs"] == ["artifacts/compare"]
    assert "compare" not in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dvc_repro_compare_stage(repo):
    """`dvc repro compare/dvc.yaml` (two models here; the committed stage runs every model): the comparison's table
    and one folder per model, its own compare/dvc.lock; the root pipeline is not re-run when it is up to date."""
    dvc_yaml = repo / "compare" / "dvc.yaml"
    doc = yaml.safe_load(dvc_yaml.read_text())
    doc["stages"]["compare"]["cmd"] += " --models convlstm,mslstm"
    dvc_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    run(["mslstm", "data", "--raw-only"], repo)
    run(["dvc", "repro", "validate"], repo)            # the root chain's data + validate (a no-op when up to date)
    out = run(["dvc", "repro", "compare/dvc.yaml"], repo)
    assert _ran(out.stdout) == {"compare/dvc.yaml:compare"}, out.stdout
    a = repo / "artifacts" / "compare"
    assert (a / "compare.md").is_file() and (a / "steps" / "convlstm" / "seed0" / "eval" / "metrics.json").is_file()
    assert {r["model"] for r in json.loads((a / "compare.json").read_text())["rows"]} == {"convlstm", "mslstm"}
    assert "compare" in yaml.safe_load((repo / "compare" / "dvc.lock").read_text())["stages"]
    assert _ran(run(["dvc", "repro", "compare/dvc.yaml"], repo).stdout) == set()   # then a no-op


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_failed_validation_stops_dvc_repro(tmp_path):
    """validate fails (min_sequences above the split sizes): `dvc repro` exits non-zero after data and validate;
    train and everything after it never run, and `dvc status` still lists them as stale."""
    from test_pipeline_helpers import repo_copy

    repo = repo_copy(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["validate"]["min_sequences"] = 1000
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["mslstm", "data", "--raw-only"], repo)
    proc = run(["dvc", "repro"], repo, check=False)
    assert proc.returncode != 0, proc.stdout
    assert _ran(proc.stdout) == {"data", "validate"}, proc.stdout
    assert "data validation failed" in proc.stdout + proc.stderr
    # (artifacts/train/metrics.json and history.csv are the committed baseline; the checkpoints are train's outputs)
    assert not list((repo / "artifacts" / "train").glob("*.pt")) and not (repo / "artifacts" / "register").exists()
    result = json.loads((repo / "artifacts" / "validation" / "result.json").read_text())
    assert result["success"] is False
    status = run(["dvc", "status"], repo).stdout
    assert "train:" in status and "validate:" in status, status
