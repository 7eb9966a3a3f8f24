"""Kubeflow pipeline of the steps: compile it, run it locally with kfp's local runner, or submit it to a cluster.

  mslstm pipeline compile [--out pipeline.yaml] [--ablation]
  mslstm pipeline run --local [--root DIR] [--arg epochs=1 ...]
  mslstm pipeline submit --host URL [--experiment NAME] [--arg nodes=2 --arg gpus=4 ...]

The pipeline's parameter defaults and the ``config`` parameter come from params.yaml (plus --set overrides);
``--arg name=value`` changes a pipeline parameter for this run only.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

HELP = "Kubeflow pipeline: compile the YAML, run it locally (kfp.local), or submit a run to a KFP endpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ablation", action="store_true", default=None,
                        help="the ablation pipeline (ParallelFor over the models) instead of the training one")
    common.add_argument("--arg", dest="args", action="append", default=[], metavar="NAME=VALUE",
                        help="pipeline parameter for this run, e.g. --arg epochs=5 (repeatable)")

    c = sub.add_parser("compile", parents=[common], help="write the pipeline YAML and validate it")
    c.add_argument("--out", default=None, help="output file (default: pipeline.package, artifacts/pipeline.yaml)")

    r = sub.add_parser("run", parents=[common], help="run the whole pipeline on this machine")
    r.add_argument("--local", action="store_true", required=True,
                   help="use kfp.local.SubprocessRunner (lightweight components in this Python environment)")
    r.add_argument("--root", default=None, help="folder of the task outputs (default: pipeline.local_root)")

    s = sub.add_parser("submit", parents=[common], help="submit a run to a Kubeflow Pipelines endpoint")
    s.add_argument("--host", default=None, help="KFP API endpoint, e.g. https://kfp.example.com/pipeline (default: pipeline.host)")
    s.add_argument("--experiment", default=None, help="experiment name (default: pipeline.experiment)")
    s.add_argument("--run-name", default=None, help="run name (default: <pipeline name> <timestamp>)")
    s.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installations)")
    s.add_argument("--package", default=None, help="submit this compiled YAML instead of compiling now")


def parse_args_list(items: list[str]) -> dict[str, Any]:
    """``["epochs=3", "lr=1e-3"] -> {"epochs": 3, "lr": 0.001}`` (values parsed as YAML)."""
    from mslstm.config import parse_override
    from mslstm.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--arg {item!r}: expected NAME=VALUE")
        name, _ = item.split("=", 1)
        _, value = parse_override(f"p.{item}")
        out[name.strip()] = value
    return out


def check_arguments(pipeline_func: Any, arguments: dict[str, Any]) -> None:
    """Refuse pipeline arguments the pipeline does not declare (names them and lists the known ones)."""
    from mslstm.errors import ConfigError

    known = set(pipeline_func.component_spec.inputs or {})
    for name in arguments:
        if name not in known:
            raise ConfigError(f"--arg {name}: not a parameter of the pipeline (known: {', '.join(sorted(known))})")


def compile_pipeline(cfg: Any, out: str | Path, ablation: bool | None = None) -> Path:
    """Compile the pipeline for ``cfg`` to ``out`` (atomically) and validate the result."""
    from kfp import compiler

    from mslstm.io import atomic_path
    from pipelines.training import build_pipeline

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

    from mslstm.errors import ConfigError

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


def run_local(cfg: Any, root: str | Path, arguments: dict[str, Any], ablation: bool | None = None) -> Path:
    """Run the pipeline for real with ``kfp.local.SubprocessRunner(use_venv=False)``; returns the outputs folder."""
    import kfp.local

    from pipelines.training import build_pipeline

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


def submit(cfg: Any, host: str, experiment: str, arguments: dict[str, Any], run_name: str | None = None,
           namespace: str | None = None, package: str | Path | None = None, ablation: bool | None = None) -> str:
    """Submit a run to ``host`` (``kfp.Client.create_run_from_pipeline_package``); returns the run's URL."""
    import tempfile
    import time

    import kfp

    from pipelines.training import build_pipeline

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


def run(args: argparse.Namespace, cfg: Any) -> int:
    from mslstm.errors import ConfigError

    p = cfg.pipeline
    arguments = parse_args_list(args.args)
    if args.action == "compile":
        if arguments:
            raise ConfigError("--arg: compile takes no run arguments; use --set to change the defaults")
        out = compile_pipeline(cfg, args.out or p.package, args.ablation)
        print(f"wrote {out} (validated as a KFP PipelineSpec)")
        return 0
    if args.action == "run":
        root = run_local(cfg, args.root or p.local_root, arguments, args.ablation)
        print(f"pipeline finished; task outputs under {root}")
        return 0
    host = args.host or p.host
    if not host:
        raise ConfigError("--host: give the KFP endpoint (or set pipeline.host in params.yaml)")
    url = submit(cfg, host, args.experiment or p.experiment, arguments, args.run_name, args.namespace,
                 args.package, args.ablation)
    print(url)
    return 0
