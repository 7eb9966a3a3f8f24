"""List the paper's experiments: one config file each in ``configs/`` (name, data source, frames in -> out, frame
size, epochs, metric set and the metrics it reports), and the train/val/test sequences each configuration builds
from the user's files (or the config, or the distribution's known sizes) beside the authors' loader's counts
(their validation split is their test split). Run one with ``mslstm --params configs/<name>.yaml ...``,
``cp configs/<name>.yaml params.yaml && dvc exp run``, or ``mslstm --params configs/<name>.yaml pipeline submit``.
"""
from __future__ import annotations

HELP = "list the paper's experiments (configs/*.yaml): data, frames, size, metrics"
NEEDS_CONFIG = False


def add_arguments(parser) -> None:
    parser.add_argument("--dir", default=None, help="experiments folder (default: ./configs, else the repository's)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--no-counts", action="store_true", help="skip the sequence counts (they read the segment "
                        "list, TaxiBJ dates and DWD file names when present)")


def run(args, cfg) -> int:
    import json

    from pathlib import Path

    from mslstm.config import load_config
    from mslstm.experiments import list_experiments, split_counts, summarise_metrics

    rows = list_experiments(args.dir)
    here = Path.cwd()
    counts = {} if args.no_counts else {e.name: split_counts(load_config(e.config)) for e in rows}
    if args.json:
        print(json.dumps([{**e.row(), **({"sequences": counts[e.name].row()} if e.name in counts else {})}
                          for e in rows], indent=2))
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
        if e.name in counts:
            c = counts[e.name]
            print(f"  sequences train / val / test: this config {_three(c.project)}; the authors' {_three(c.authors)}")
            print(f"    ({c.how})")
    return 0


def _three(split: dict | None) -> str:
    """``10,500 / 4,500 / 4,500``; ``-`` where not known; the authors' val is their test split."""
    if split is None:
        return "not known"
    return " / ".join("-" if split.get(s) is None else f"{split[s]:,}" for s in ("train", "val", "test"))
