"""The comparison in one command: any list of registered models trained, evaluated and profiled on the same data
at the ``ablation`` section's budget and seeds (``mslstm study`` with a model list): the table of means with 95 %
intervals (one seed: the values), the MS-X vs X paired differences, the cost columns, charts; one MLflow parent run
with a child run per (model, seed, budget).

    mslstm compare --data-dir artifacts/dataset                       # every registered model (flat and MS-)
    mslstm compare --models predrnn,mspredrnn,trajgru,mstrajgru --seeds 3 --budget both --steps 128 --seconds 90
    mslstm compare --tag paper                                        # = mslstm ablation
    mslstm compare --models convlstm,smslstm --seeds 2 --dry-run      # the grid and its estimated minutes
    mslstm --params configs/kth.yaml compare --models convlstm,smslstm --data-dir artifacts/kth
                                                     # any experiment of `mslstm experiments` (its data prepared)
"""
from __future__ import annotations

HELP = "train + evaluate + profile any list of models x seeds x budgets; table with intervals, MS- vs flat, MLflow"


def add_arguments(parser) -> None:
    from mslstm.commands._study import add_budget_arguments

    parser.add_argument("--models", default=None,
                        help="comma-separated registered models (default: every model, flat and MS-)")
    parser.add_argument("--tag", default=None, help="every model with this registry tag (e.g. paper)")
    parser.add_argument("--out", default="artifacts/compare", help="output folder (default: %(default)s)")
    add_budget_arguments(parser)


def selected_models(models: str | None, tag: str | None) -> list[str]:
    """The models to compare: ``--models`` in the given order, else those tagged ``--tag``, else every model."""
    from model import model_names

    if models:
        return [m.strip() for m in models.split(",") if m.strip()]
    return list(model_names(tag))


def run(args, cfg) -> int:
    from mslstm.commands._study import run_study_command

    return run_study_command(args, cfg, selected_models(args.models, args.tag), args.out, "compare")
