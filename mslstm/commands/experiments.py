"""List the paper's experiments: one config file each in ``configs/`` (name, data source, frames in -> out, frame
size, epochs, metric set and the metrics it reports). Run one with ``mslstm --params configs/<name>.yaml ...``,
``cp configs/<name>.yaml params.yaml && dvc exp run``, or ``mslstm --params configs/<name>.yaml pipeline submit``.
"""
from __future__ import annotations

HELP = "list the paper's experiments (configs/*.yaml): data, frames, size, metrics"
NEEDS_CONFIG = False


def add_arguments(parser) -> None:
    parser.add_argument("--dir", default=None, help="experiments folder (default: ./configs, else the repository's)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")


def run(args, cfg) -> int:
    import json

    from mslstm.experiments import list_experiments, summarise_metrics

    from pathlib import Path

    rows = list_experiments(args.dir)
    here = Path.cwd()
    if args.json:
        print(json.dumps([e.row() for e in rows], indent=2))
        return 0
    header = f"{'experiment':<11} {'source':<14} {'frames':<8} {'size':<10} {'epochs':>6}  {'metric set':<14} config"
    print(header)
    print("-" * len(header))
    for e in rows:
        alias = f" (alias: {', '.join(e.aliases)})" if e.aliases else ""
        print(f"{e.name:<11} {e.source:<14} {e.frames:<8} {e.size:<10} {e.epochs:>6}  {e.metric_set:<14} "
              f"{e.config.relative_to(here) if e.config.is_relative_to(here) else e.config}{alias}")
    print()
    for e in rows:
        print(f"{e.name}: {e.title}")
        print(f"  metrics: {summarise_metrics(e.metrics)}")
    return 0
