"""The whole study of docs/results.md with a planned wall time: for each stage of study/dvc.yaml (its grid in the
file's ``vars``), print the grid and its estimated minutes (each model's step timed now), refuse to start a stage
whose estimate exceeds its planned minutes, then ``dvc repro study/dvc.yaml:<stage>`` and report the wall time
against the estimate.

    .venv/bin/python bench/run_study.py --dry-run                   # the estimates only (~1 min: times 22 models)
    .venv/bin/python bench/run_study.py                             # ablation (<= 90 min) then pairs (<= 120 min)
    .venv/bin/python bench/run_study.py --only ablation --minutes ablation=100

Run it on the idle machine (the estimate and the equal-time budget both read the machine's speed) from the
repository root, with the root pipeline's data in place (``mslstm data --raw-only``; DVC runs ``validate`` itself).
An interrupted stage run again continues its MLflow parent run and skips the finished runs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLANNED_MINUTES = {"ablation": 90.0, "pairs": 120.0}


def stage_grid(stage: str) -> dict:
    """The stage's grid from study/dvc.yaml's ``vars`` (``<stage>_study``)."""
    doc = yaml.safe_load((ROOT / "study" / "dvc.yaml").read_text(encoding="utf-8"))
    for item in doc.get("vars", []):
        if f"{stage}_study" in item:
            return dict(item[f"{stage}_study"])
    raise SystemExit(f"study/dvc.yaml: no vars entry {stage}_study")


def estimate_minutes(stage: str, grid: dict) -> float:
    """The dry run's estimate in minutes (``mslstm.commands.study.print_plan``), printed as it goes."""
    sys.path.insert(0, str(ROOT))
    from mslstm.commands._study import print_plan
    from mslstm.config import load_config
    from mslstm.study.grid import preset_models

    cfg = load_config(ROOT / "params.yaml", [f"ablation.{k}={v}" for k, v in grid.items() if k != "reuse"])
    return print_plan(cfg, preset_models(cfg, stage), ROOT / "artifacts" / "dataset",
                      reuse=grid.get("reuse") or None) / 60.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=tuple(PLANNED_MINUTES), default=None)
    ap.add_argument("--minutes", action="append", default=[], metavar="STAGE=MIN",
                    help="planned minutes of a stage (default ablation=90, pairs=120)")
    ap.add_argument("--dry-run", action="store_true", help="estimates only")
    args = ap.parse_args()
    planned = dict(PLANNED_MINUTES)
    for item in args.minutes:
        k, v = item.split("=", 1)
        planned[k] = float(v)
    stages = [args.only] if args.only else list(PLANNED_MINUTES)
    for stage in stages:
        grid = stage_grid(stage)
        print(f"== {stage}: {grid}, planned <= {planned[stage]:g} min")
        est = estimate_minutes(stage, grid)
        if args.dry_run:
            continue
        if est > planned[stage]:
            print(f"{stage}: estimated {est:.1f} min > planned {planned[stage]:g} min: lower the grid in "
                  "study/dvc.yaml's vars, or pass --minutes", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        proc = subprocess.run(["dvc", "repro", f"study/dvc.yaml:{stage}"], cwd=ROOT)
        wall = (time.perf_counter() - t0) / 60
        print(f"{stage}: dvc repro exit {proc.returncode}, wall {wall:.1f} min (estimated {est:.1f} min)")
        if proc.returncode:
            return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
