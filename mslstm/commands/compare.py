"""The comparison in one command: train, evaluate and profile any list of registered models on the same data and
budget (the ``ablation`` section: ``steps``, ``epochs``, ``eval_sequences``, ``overrides``), then write the
comparison table (compare.md with the MS- vs flat pairs, compare.csv, compare.json), a radar chart and bar
charts, with one MLflow parent run and one nested child run per model.

    mslstm compare --data-dir artifacts/dataset                       # every registered model (flat and MS-)
    mslstm compare --models predrnn,mspredrnn,trajgru,mstrajgru
    mslstm compare --tag paper                                        # = mslstm ablation
    mslstm --params configs/kth.yaml compare --models convlstm,smslstm --data-dir artifacts/kth
                                                     # any experiment of `mslstm experiments` (its data prepared)
"""
from __future__ import annotations

HELP = "train + evaluate + profile any list of models on one budget; table (+ MS- vs flat), charts, MLflow runs"


def add_arguments(parser) -> None:
    parser.add_argument("--models", default=None,
                        help="comma-separated registered models (default: every model, flat and MS-)")
    parser.add_argument("--tag", default=None, help="every model with this registry tag (e.g. paper)")
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--out", default="artifacts/compare", help="output folder (default: %(default)s)")


def selected_models(models: str | None, tag: str | None) -> list[str]:
    """The models to compare: ``--models`` in the given order, else those tagged ``--tag``, else every model."""
    from model import model_names

    if models:
        return [m.strip() for m in models.split(",") if m.strip()]
    return list(model_names(tag))


def run(args, cfg) -> int:
    import time

    from mslstm.evaluation.ablation import compare_models, markdown_table, pair_markdown

    t0 = time.perf_counter()
    summary = compare_models(cfg, args.data_dir, args.out, selected_models(args.models, args.tag), stem="compare")
    print(markdown_table(summary["rows"]), end="")
    if summary["pairs"]:
        print()
        print(pair_markdown(summary["pairs"]), end="")
    print(f"{len(summary['rows'])} models in {time.perf_counter() - t0:.1f} s "
          f"({(time.perf_counter() - t0) / 60:.1f} min); files: {', '.join(summary['files'])}")
    if summary.get("run_id"):
        print(f"MLflow parent run {summary['run_id']} (one child run per model)")
    return 0
