"""The paper's ablation in one command: train, evaluate and profile ConvLSTM, SMS-LSTM, TMS-LSTM and MS-LSTM on
the same data and budget (``ablation`` section), then write the comparison table (ablation.md/.csv/.json) and a
normalised radar chart of params, FLOPs, memory, time and MSE (radar.png; closer to the centre is better).

    mslstm ablation --data-dir artifacts/dataset --out artifacts/ablation
    mslstm ablation --set ablation.models=[convlstm,mslstm] --set ablation.steps=100
    mslstm --params configs/paper.yaml ablation          # the full configuration, on a GPU

Any other list of models: ``mslstm compare --models ...`` (same core, ``compare_models``).
"""
from __future__ import annotations

HELP = "train + evaluate + profile the four models on the same budget; comparison table and radar chart"


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--out", default=None, help="output folder (default: ablation.out_dir, artifacts/ablation)")


def run(args, cfg) -> int:
    from mslstm.evaluation.ablation import markdown_table, run_ablation

    summary = run_ablation(cfg, args.data_dir, args.out)
    print(markdown_table(summary["rows"]), end="")
    print(f"total {summary['total_time_s']:.1f} s; files: {', '.join(summary['files'])}")
    return 0
