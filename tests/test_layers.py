"""Who may import whom (docs/architecture.md, "Layout and owners"), read from the source with ``ast``: module-level
and function-local imports alike. The core never reaches the Kubeflow layer, and no import cycle exists."""
from __future__ import annotations

import pytest
from import_graph import imports_of, modules

#: Modules inside mslstm/ that are doors (command line), not core.
DOORS = ("mslstm.cli", "mslstm.__main__", "mslstm.training.__main__", "mslstm.commands")


def layer(module: str) -> str:
    if module.split(".")[0] != "mslstm":
        return module.split(".")[0]
    return "door" if any(module == d or module.startswith(d + ".") for d in DOORS) else "core"


#: layer -> the layers it may import (its own included).
ALLOWED = {
    "model": {"model"},
    "core": {"model", "core"},
    "door": {"model", "core", "door", "pipelines"},
    "components": {"model", "core", "components"},
    "pipelines": {"model", "core", "components", "pipelines"},
}


def test_the_graph_sees_every_package_and_function_local_imports():
    mods = modules()
    assert {"model.config", "mslstm.config", "components.steps", "pipelines.training"} <= set(mods)
    # components.steps imports the core only inside the component bodies: those must be found
    assert "mslstm.release.registry" in imports_of("components.steps")
    assert "pipelines.runner" in imports_of("mslstm.commands.pipeline")  # imported inside run()


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_respect_the_layers(module):
    mine = layer(module)
    bad = sorted(m for m in imports_of(module) if layer(m) not in ALLOWED[mine])
    assert not bad, f"{module} ({mine}) may import only {sorted(ALLOWED[mine])}; it imports {bad}"


def test_core_never_imports_pipelines_or_components():
    offenders = {
        m: sorted(i for i in imports_of(m) if i.split(".")[0] in ("pipelines", "components"))
        for m in modules() if m.split(".")[0] in ("model", "mslstm") and not m.startswith("mslstm.commands")
    }
    assert not {m: v for m, v in offenders.items() if v}


def test_no_import_cycle():
    from import_graph import cycles

    assert cycles() == []
