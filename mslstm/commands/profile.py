"""Measure what the configured model costs: parameters, FLOPs per sequence (forward and forward+backward, counted by
torch.utils.flop_counter), peak memory and median time of a training step, time per predicted sequence,
throughput, and the estimated training device-hours and price (``profile.prices``).

    mslstm profile --out artifacts/profile
    mslstm profile --set model.name=convlstm --set profile.device=cuda
"""
from __future__ import annotations

HELP = "cost profile of the model: params, FLOPs, memory, time, estimated training cost (cost.json, cost.md)"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="artifacts/profile", help="output folder (default: %(default)s)")
    parser.add_argument("--run-json", default="artifacts/train/run.json",
                        help="log into the MLflow run of this run.json when it exists (default: %(default)s)")
    parser.add_argument("--run-id", default=None, help="MLflow run to log into (wins over --run-json)")


def run(args, cfg) -> int:
    from mslstm.evaluation.profile import cost_markdown, profile

    res = profile(cfg, args.out, run_id=args.run_id, run_info=args.run_json)
    print(cost_markdown(res), end="")
    return 0
