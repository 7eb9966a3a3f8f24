"""study/dvc.yaml: its stages read the root pipeline's validated dataset, list the code they run (the import graph,
as tests/test_dvc_deps.py checks for the root stages), and `dvc repro` reproduces the study: the table, the DVC
metrics, the MLflow parent run holding the table; run again, a no-op; forced, the same numbers (CPU training is
deterministic)."""
from __future__ import annotations

import json

import pytest
import yaml
from import_graph import ROOT, modules, reachable
from test_pipeline_helpers import run as _run

STUDY = yaml.safe_load((ROOT / "study" / "dvc.yaml").read_text(encoding="utf-8"))


def run(cmd, cwd, **kw):
    return _run(cmd, cwd, PYTHONPATH=str(cwd), **kw)  # the copy's own code, which the stage's deps hash


@pytest.mark.parametrize("stage", list(STUDY["stages"]))
def test_study_stage_reads_the_validated_dataset_and_covers_its_code(stage):
    s = STUDY["stages"][stage]
    assert s["wdir"] == ".." and s["cmd"].startswith(f"mslstm study --preset {stage} ")
    deps = s["deps"]
    assert {"artifacts/dataset", "artifacts/validation/result.json", "model", "mslstm"} <= set(deps)
    files = sorted(modules()[m].relative_to(ROOT).as_posix()
                   for m in reachable("mslstm.cli", "mslstm.commands.study"))
    missing = [f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
    assert not missing, f"study/dvc.yaml stage {stage}: add to deps: {missing}"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in s["params"]:
        node = params
        for part in key.split("."):
            assert part in node, f"stage {stage}: params key {key} not in params.yaml"
            node = node[part]
    # the grid is the stage's own (vars), not params.yaml's quick default
    assert not {"ablation", "ablation.seeds", "ablation.budget", "ablation.steps"} & set(s["params"])
    assert stage not in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _numbers(metrics):
    return {(b, m, k): v for b, models in metrics.items() if b != "pairs" for m, row in models.items()
            for k, v in row.items() if k in ("mse", "ssim", "skill_vs_blank", "train_steps")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dvc_repro_study_stage_reproduces(tmp_path):
    from test_pipeline_helpers import repo_copy

    repo = repo_copy(tmp_path / "repo")
    dvc_yaml = repo / "study" / "dvc.yaml"
    doc = yaml.safe_load(dvc_yaml.read_text())
    doc["vars"] = [{"ablation_study": {"seeds": 2, "budget": "steps", "steps": 2, "seconds": 1, "reuse": ""}},
                   {"pairs_study": {"seeds": 1, "budget": "steps", "steps": 1, "seconds": 1, "reuse": ""}}]
    dvc_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    run(["git", "commit", "-qam", "tiny study"], repo)
    run(["mslstm", "data", "--raw-only"], repo)
    out = run(["dvc", "repro", "study/dvc.yaml:ablation"], repo)
    assert "Running stage 'study/dvc.yaml:ablation'" in out.stdout, out.stdout
    a = repo / "artifacts" / "study"
    first = json.loads((a / "ablation.metrics.json").read_text())
    assert set(first["steps"]) == {"convlstm", "mslstm"}
    assert first["steps"]["convlstm"]["seeds"] == 2 and "mse_lo" in first["steps"]["convlstm"]
    assert "mslstm-convlstm" in first["pairs"]["steps"]
    summary = json.loads((a / "ablation" / "ablation.json").read_text())
    assert len(summary["cells"]) == 4 and (a / "ablation" / "radar.png").is_file()
    lock = yaml.safe_load((repo / "study" / "dvc.lock").read_text())["stages"]["ablation"]
    assert "--seeds 2" in lock["cmd"]
    # the MLflow parent run (the copy's own store) holds the table
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert "study/ablation.md" in {x.path for x in client.list_artifacts(parent.info.run_id, "study")}
    # up to date: a no-op; forced: a new parent run with the same numbers
    again = run(["dvc", "repro", "study/dvc.yaml:ablation"], repo)
    assert "Running stage" not in again.stdout, again.stdout
    run(["dvc", "repro", "-f", "study/dvc.yaml:ablation"], repo)
    second = json.loads((a / "ablation.metrics.json").read_text())
    assert _numbers(second) == _numbers(first)
    assert json.loads((a / "ablation" / "ablation.json").read_text())["run_id"] != summary["run_id"]
