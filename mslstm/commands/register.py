"""Register the trained model in the MLflow Model Registry behind the promotion gate (``register`` section): the
``champion`` alias moves only when the test metric beats the current champion's by the margin and the cost is
within budget; otherwise nothing is registered or the version becomes ``challenger``. Writes decision.json.

    mslstm register --train-dir artifacts/train --eval-dir artifacts/eval --profile-dir artifacts/profile \\
        --out artifacts/register
"""
from __future__ import annotations

HELP = "promote the model into the MLflow Model Registry if the gate passes (decision.json)"


def add_arguments(parser) -> None:
    parser.add_argument("--train-dir", default="artifacts/train", help="best.pt + run.json (default: %(default)s)")
    parser.add_argument("--eval-dir", default="artifacts/eval", help="metrics.json (default: %(default)s)")
    parser.add_argument("--profile-dir", default="artifacts/profile", help="cost.json (default: %(default)s)")
    parser.add_argument("--out", default="artifacts/register", help="output folder (default: %(default)s)")


def run(args, cfg) -> int:
    from mslstm.release.registry import register

    d = register(cfg, args.train_dir, args.eval_dir, args.profile_dir, args.out)
    verdict = "PROMOTED" if d["promoted"] else "not promoted"
    where = f"{d['model_uri']} (version {d['version']})" if d["version"] else "nothing registered"
    print(f"{d['model_name']}: {verdict} -> {where}")
    for reason in d["reasons"]:
        print(f"  - {reason}")
    return 0
