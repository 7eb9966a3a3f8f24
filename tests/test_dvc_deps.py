"""``dvc.yaml`` deps cover the code each stage runs: from the stage's command (``mslstm <stage>``: the CLI door, which
loads the config, and ``mslstm/commands/<stage>.py``) every project module reached through imports, function-local
ones included, read with ``ast``. A module left out would let ``dvc repro`` skip a stage whose code changed."""
from __future__ import annotations

import pytest
import yaml
from import_graph import ROOT, modules, reachable

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = DVC["stages"]
#: Modules a stage runs that no import names: the registered pyfunc's models-from-code file, which MLflow runs
#: by path when the register step logs the model.
LOADED_BY_PATH = {"register": ["mslstm.release.pyfunc_model"]}


def entry_modules(stage: str) -> list[str]:
    cmd = STAGES[stage]["cmd"].split()
    assert cmd[0] == "mslstm", f"stage {stage}: expected an `mslstm <step>` command, got {cmd[:2]}"
    return ["mslstm.cli", f"mslstm.commands.{cmd[1]}", *LOADED_BY_PATH.get(stage, [])]


def covered(rel: str, deps: list[str]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_import_follower_sees_function_local_imports():
    # mslstm.commands.evaluate imports the step only inside run(); the step imports tracking inside functions
    got = reachable("mslstm.commands.evaluate")
    assert "mslstm.evaluation.evaluate" in got and "mslstm.training.checkpoint" in got


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_deps_cover_every_module_it_reaches(stage):
    deps = [d if isinstance(d, str) else next(iter(d)) for d in STAGES[stage]["deps"]]
    files = sorted(modules()[m].relative_to(ROOT).as_posix() for m in reachable(*entry_modules(stage)))
    missing = [f for f in files if not covered(f, deps)]
    assert not missing, f"dvc.yaml stage {stage}: add to deps (or a folder holding them): {missing}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_code_deps_exist(stage):
    for dep in STAGES[stage]["deps"]:
        if dep.startswith("artifacts/") or dep == "data":  # outputs of earlier stages; data/ is DVC-tracked
            continue
        assert (ROOT / dep).exists(), f"dvc.yaml stage {stage}: dep {dep} does not exist (dvc repro would fail)"


def test_a_missing_module_is_reported():
    """The check can fail: drop the evaluation folder from the evaluate stage and its modules are named."""
    deps = [d for d in STAGES["evaluate"]["deps"] if d != "mslstm/evaluation"]
    files = [modules()[m].relative_to(ROOT).as_posix() for m in reachable(*entry_modules("evaluate"))]
    assert "mslstm/evaluation/evaluate.py" in [f for f in files if not covered(f, deps)]
