"""The comparison study in one command: registered models x seeds x budgets trained, evaluated and profiled on the
same data (paired: for a given seed every model sees the same batches from the same initialisation seed); a table
of means with 95 % t intervals, the MS-X minus X paired differences, the cost columns, the figures; one MLflow
parent run with a child run per (model, seed, budget). An interrupted study run again skips its finished cells.

    mslstm study --preset ablation --seeds 3 --budget both --steps 256 --seconds 150     # the paper's ablation
    mslstm study --preset pairs --seeds 2 --budget steps --steps 96                      # all 11 MS-X vs X pairs
    mslstm study --preset ablation --seeds 3 --budget both --dry-run                     # the grid + estimated minutes
    mslstm study --preset ablation --kfp-package study.yaml       # the Kubeflow variant (ParallelFor over the cells)

The budget flags set the ``ablation`` section (``--seeds`` = ablation.seeds, ``--budget`` = ablation.budget,
``--steps`` = ablation.steps, ``--seconds`` = ablation.seconds); ``mslstm compare`` and ``mslstm ablation`` are the
same command with a model list (``--models`` / ``--tag``) or the ablation's models. See docs/results.md.
"""
from __future__ import annotations

HELP = "models x seeds x budgets on the same data: means with 95 %% intervals, paired MS-X vs X, cost, MLflow runs"


def add_arguments(parser) -> None:
    from mslstm.commands._study import add_budget_arguments

    parser.add_argument("--preset", choices=("ablation", "pairs"), default="ablation",
                        help="ablation: the ablation.models list (ConvLSTM, SMS-, TMS-, MS-LSTM); pairs: every flat "
                             "ConvRNN and its MS- version (22 models) (default: %(default)s)")
    parser.add_argument("--models", default=None, help="comma-separated registered models (instead of the preset)")
    parser.add_argument("--out", default=None, help="output folder (default: artifacts/study/<preset>)")
    add_budget_arguments(parser)
    parser.add_argument("--kfp-package", default=None, metavar="YAML",
                        help="compile the Kubeflow study pipeline (ParallelFor over the cells) to YAML; run nothing")


def run(args, cfg) -> int:
    from mslstm.commands._study import apply_budget, run_study_command
    from mslstm.study.grid import preset_models

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else \
        preset_models(cfg, args.preset)
    if args.kfp_package:
        from pipelines.study import compile_study_pipeline

        path = compile_study_pipeline(apply_budget(args, cfg), args.kfp_package, models,
                                      args.preset if not args.models else "study")
        print(f"Kubeflow study pipeline: {path}")
        return 0
    out = args.out or f"artifacts/study/{args.preset if not args.models else 'custom'}"
    return run_study_command(args, cfg, models, out, args.preset if not args.models else "study")
