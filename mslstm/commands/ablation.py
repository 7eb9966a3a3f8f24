"""The paper's ablation in one command: ConvLSTM, SMS-LSTM, TMS-LSTM and MS-LSTM (``ablation.models``) trained,
evaluated and profiled on the same data at the ``ablation`` section's budget and seeds (``mslstm study --preset
ablation``): the table of means with 95 % intervals, each model against ConvLSTM and each MS- version against its
flat model as paired differences, the radar chart (the paper's Figure 4, with the MSE interval), bars, the layer
outputs (Figure 5) of the trained models.

    mslstm ablation --data-dir artifacts/dataset --out artifacts/ablation
    mslstm ablation --seeds 3 --budget both --steps 256 --seconds 150
    mslstm ablation --set ablation.models=[convlstm,mslstm] --steps 100
    mslstm --params configs/paper.yaml ablation          # the full configuration, on a GPU

Any other list of models: ``mslstm compare --models ...`` (the same study).
"""
from __future__ import annotations

HELP = "the four models of the paper's ablation x seeds x budgets; table with intervals, radar chart, MLflow runs"


def add_arguments(parser) -> None:
    from mslstm.commands._study import add_budget_arguments

    parser.add_argument("--out", default=None, help="output folder (default: ablation.out_dir, artifacts/ablation)")
    add_budget_arguments(parser)


def run(args, cfg) -> int:
    from mslstm.commands._study import run_study_command

    return run_study_command(args, cfg, list(cfg.ablation.models), args.out or cfg.ablation.out_dir, "ablation")
