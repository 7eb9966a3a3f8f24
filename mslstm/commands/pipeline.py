"""Kubeflow pipeline of the steps: compile it, run it locally with kfp's local runner, or submit it to a cluster.

  mslstm pipeline compile [--out pipeline.yaml] [--ablation]          # defaults: params.yaml + --set
  mslstm pipeline run --local [--root DIR] [--arg epochs=1 ...]
  mslstm pipeline submit --host URL [--experiment NAME] [--arg nodes=2 --arg gpus=4 ...]

The pipeline's parameter defaults and the ``config`` parameter come from params.yaml (plus --set overrides);
``--arg name=value`` (run and submit) changes a pipeline parameter for this run only; compile takes none (change
the defaults with --set). The image of every component and of the TrainJob nodes is ``pipeline.image``
(``--set pipeline.image=...``), fixed when the pipeline is compiled. A thin door onto :mod:`pipelines.runner`.
"""
from __future__ import annotations

import argparse
from typing import Any

HELP = "Kubeflow pipeline: compile the YAML, run it locally (kfp.local), or submit a run to a KFP endpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ablation", action="store_true", default=None,
                        help="the ablation pipeline (ParallelFor over the models) instead of the training one")
    run_args = argparse.ArgumentParser(add_help=False)
    run_args.add_argument("--arg", dest="args", action="append", default=[], metavar="NAME=VALUE",
                          help="pipeline parameter for this run, e.g. --arg epochs=5 (repeatable); the image is "
                          "not one: --set pipeline.image=...")

    c = sub.add_parser("compile", parents=[common], help="write the pipeline YAML and validate it",
                       description="Write the pipeline YAML and validate it. Its parameter defaults and the image "
                       "of every component and TrainJob node come from params.yaml and --set (e.g. mslstm --set "
                       "pipeline.image=registry/mslstm:1.0 pipeline compile); values for one run are given to "
                       "`run` and `submit`.")
    c.add_argument("--out", default=None, help="output file (default: pipeline.package, artifacts/pipeline.yaml)")

    r = sub.add_parser("run", parents=[common, run_args], help="run the whole pipeline on this machine")
    r.add_argument("--local", action="store_true", required=True,
                   help="use kfp.local.SubprocessRunner (lightweight components in this Python environment)")
    r.add_argument("--root", default=None, help="folder of the task outputs (default: pipeline.local_root)")

    s = sub.add_parser("submit", parents=[common, run_args], help="submit a run to a Kubeflow Pipelines endpoint")
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


def run(args: argparse.Namespace, cfg: Any) -> int:
    from mslstm.errors import ConfigError
    from pipelines.runner import compile_pipeline, run_local, submit

    p = cfg.pipeline
    if args.action == "compile":
        out = compile_pipeline(cfg, args.out or p.package, args.ablation)
        print(f"wrote {out} (validated as a KFP PipelineSpec)")
        return 0
    arguments = parse_args_list(args.args)
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
