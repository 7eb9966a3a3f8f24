"""The Kubeflow study pipeline (pipelines/study.py) compiles, loads back as a PipelineSpec and fans the (model,
seed, budget) cells out with a ParallelFor whose results a summary task collects; the CLI door compiles it too."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from mslstm.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _cfg(*extra):
    return load_config(ROOT / "params.yaml", ["pipeline.image=registry.example.com/mslstm:test", *extra])


def test_study_pipeline_compiles_with_a_parallelfor_over_the_cells(tmp_path):
    from pipelines.runner import validate_package
    from pipelines.study import compile_study_pipeline

    cfg = _cfg("ablation.seeds=3", "ablation.budget=both")
    out = compile_study_pipeline(cfg, tmp_path / "study.yaml", ["convlstm", "smslstm"], study="ablation")
    validate_package(out)
    spec = next(d for d in yaml.safe_load_all(out.read_text()) if d)
    params = spec["root"]["inputDefinitions"]["parameters"]
    cells = params["cells"]["defaultValue"]
    assert len(cells) == 2 * 3 * 2 and cells[0] == {"model": "convlstm", "seed": 0, "budget": "steps"}
    assert cells[-1] == {"model": "smslstm", "seed": 2, "budget": "seconds"}
    assert params["models"]["defaultValue"] == ["convlstm", "smslstm"]
    assert json.loads(params["config"]["defaultValue"])["ablation"]["seeds"] == 3
    text = json.dumps(spec)
    assert "parameterIterator" in text                                  # the ParallelFor over the cells
    comps = spec["components"]
    assert {"comp-study-open", "comp-study-cell", "comp-study-summary"} <= set(comps)
    collected = comps["comp-study-summary"]["inputDefinitions"]["parameters"]["results"]
    assert collected["parameterType"] == "LIST"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/mslstm:test"}
    assert "parallelismLimit" not in json.dumps(comps)                  # 0 = every cell at once
    one = compile_study_pipeline(cfg.replace({"pipeline.ablation_parallelism": 1}), tmp_path / "one.yaml")
    assert '"parallelismLimit": 1' in json.dumps(next(d for d in yaml.safe_load_all(one.read_text()) if d))


def test_study_cli_compiles_the_kfp_variant(tmp_path, capsys):
    from mslstm.cli import main

    out = tmp_path / "s.yaml"
    rc = main(["--params", str(ROOT / "params.yaml"), "--set", "pipeline.image=registry.example.com/mslstm:test",
               "study", "--preset", "ablation", "--seeds", "2", "--kfp-package", str(out)])
    assert rc == 0 and f"Kubeflow study pipeline: {out}" in capsys.readouterr().out
    spec = next(d for d in yaml.safe_load_all(out.read_text()) if d)
    assert len(spec["root"]["inputDefinitions"]["parameters"]["cells"]["defaultValue"]) == 4 * 2
