"""Helpers (no tests): the import graph of the project's own modules, read with ``ast`` (never imported).

Every ``import`` / ``from ... import`` counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (they never run). ``from pkg import name`` counts ``pkg.name`` when that is a module of
the project, else ``pkg``.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Top-level packages of the project.
PACKAGES = ("model", "mslstm", "components", "pipelines")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    """Module name -> file, for every ``.py`` of the project packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[module_name(path)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str | None:
    """The project module ``name`` runs: itself, else its longest prefix that is a project module."""
    mods = modules()
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in mods:
            return cand
    return None


@lru_cache(maxsize=None)
def imports_of(module: str) -> frozenset[str]:
    """The project modules ``module`` imports directly (any scope)."""
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                found.add(full if full in modules() else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return frozenset(m for m in (_resolve(n) for n in found if n) if m and m != module)


def parents(module: str) -> list[str]:
    """The packages Python runs before ``module`` (``a.b.c`` -> ``a``, ``a.b``)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules()]


def reachable(*start: str, with_parents: bool = False) -> set[str]:
    """Every project module that running ``start`` may import, transitively; ``with_parents`` adds the packages
    Python runs on the way (``a/__init__.py`` for ``a.b``)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(imports_of(mod))
        if with_parents:
            todo.extend(parents(mod))
    return seen


def cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module in the explicit-import graph (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(imports_of(v)):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for mod in sorted(modules()):
        if mod not in index:
            strong(mod)
    return out
