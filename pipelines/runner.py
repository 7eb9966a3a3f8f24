"""Compile, validate, run locally and submit the Kubeflow pipelines (the logic behind ``mslstm pipeline``).

    from pipelines.runner import compile_pipeline, run_local, submit, validate_package
    compile_pipeline(cfg, "artifacts/pipeline.yaml")               # written atomically, then validated
    run_local(cfg, "artifacts/kfp_local", {"epochs": 1})           # kfp.local.SubprocessRunner
    url = submit(cfg, "https://kfp.example.com/pipeline", "mslstm", {"nodes": 2, "gpus": 4})

Runs on the machine that builds or launches pipelines (never inside a task); the pipelines themselves are
:mod:`pipelines.training`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mslstm.config import Config
from mslstm.errors import ConfigError
from mslstm.io import atomic_path
from pipelines.training import build_pipeline


def check_arguments(pipeline_func: Any, arguments: dict[str, Any]) -> None:
    """Refuse pipeline arguments the pipeline does not declare (names them and lists the known ones)."""
    known = set(pipeline_func.component_spec.inputs or {})
    for name in arguments:
        if name not in known:
            raise ConfigError(f"--arg {name}: not a parameter of the pipeline (known: {', '.join(sorted(known))})")


def compile_pipeline(cfg: Config, out: str | Path, ablation: bool | None = None) -> Path:
    """Compile the pipeline for ``cfg`` to ``out`` (atomically) and validate the result."""
    from kfp import compiler

    out = Path(out)
    with atomic_path(out) as tmp:
        compiled = tmp.with_suffix(".yaml")
        compiler.Compiler().compile(build_pipeline(cfg, ablation), str(compiled))
        compiled.replace(tmp)
    validate_package(out)
    return out


def validate_package(path: str | Path) -> Any:
    """Load a compiled pipeline back: the PipelineSpec (and PlatformSpec) protos and kfp's YAML loader.

    Returns:
        The ``PipelineSpec`` message.
    """
    import yaml
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d]
    if not docs:
        raise ConfigError(f"{path}: empty pipeline file")
    try:
        spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        for extra in docs[1:]:
            json_format.ParseDict(extra, pipeline_spec_pb2.PlatformSpec())
        components.load_component_from_file(str(path))
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid KFP pipeline: {exc}") from exc
    if not spec.root.dag.tasks:
        raise ConfigError(f"{path}: the pipeline has no tasks")
    return spec


def run_local(cfg: Config, root: str | Path, arguments: dict[str, Any], ablation: bool | None = None) -> Path:
    """Run the pipeline for real with ``kfp.local.SubprocessRunner(use_venv=False)``; returns the outputs folder."""
    import kfp.local

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri
    if uri.startswith("sqlite:") and cfg.pipeline.ablation_parallelism != 1:
        # SQLite takes one writer at a time: parallel ablation tasks would race on it.
        cfg = cfg.replace({"pipeline.ablation_parallelism": 1})
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline_func = build_pipeline(cfg, ablation)
    check_arguments(pipeline_func, arguments)
    pipeline_func(**arguments)
    return root


def submit(cfg: Config, host: str, experiment: str, arguments: dict[str, Any], run_name: str | None = None,
           namespace: str | None = None, package: str | Path | None = None, ablation: bool | None = None) -> str:
    """Submit a run to ``host`` (``kfp.Client.create_run_from_pipeline_package``); returns the run's URL."""
    import tempfile
    import time

    import kfp

    check_arguments(build_pipeline(cfg, ablation), arguments)
    run_name = run_name or f"{cfg.pipeline.name}{'-ablation' if ablation else ''} {time.strftime('%Y-%m-%d %H-%M-%S')}"
    with tempfile.TemporaryDirectory(prefix="mslstm-submit-") as tmp:
        pkg = Path(package) if package else compile_pipeline(cfg, Path(tmp) / "pipeline.yaml", ablation)
        validate_package(pkg)
        client = kfp.Client(host=host, namespace=namespace) if namespace else kfp.Client(host=host)
        result = client.create_run_from_pipeline_package(
            str(pkg), arguments=arguments, run_name=run_name, experiment_name=experiment, namespace=namespace,
        )
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
