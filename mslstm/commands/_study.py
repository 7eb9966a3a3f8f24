"""What the study's doors share (``mslstm study``, ``mslstm compare``, ``mslstm ablation``): the budget options, the
dry run and the run with its printed tables. Not a command itself; it imports no Kubeflow code, so that the compare
stage of DVC depends on the core alone."""
from __future__ import annotations


def add_budget_arguments(parser) -> None:
    """The options every door of the study shares (study, compare, ablation)."""
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per model (ablation.seeds)")
    parser.add_argument("--budget", choices=("steps", "seconds", "both"), default=None,
                        help="equal steps, equal wall-clock seconds of training, or both (ablation.budget)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per model (ablation.steps)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds of training loop per model at the seconds budget (ablation.seconds)")
    parser.add_argument("--metrics", default=None, metavar="JSON",
                        help="also write the means, intervals and paired differences as a DVC metrics file")
    parser.add_argument("--fresh", action="store_true",
                        help="start a new MLflow parent run even when an unfinished one of this study exists")
    parser.add_argument("--reuse", default=None, metavar="RUN_ID",
                        help="take the cells that the study with this MLflow parent run finished with the same "
                             "config from it instead of training them (adding seeds: only the new ones train); a "
                             "config difference is refused naming the keys, a run not in the store trains all")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the grid and the estimated minutes (times each model's step), run nothing")
    parser.add_argument("--redraw", action="store_true",
                        help="draw the tables and figures of the study that ran (its MLflow parent run and finished "
                             "child runs) again, training nothing; logged to that parent run")
    parser.add_argument("--parent", default=None, metavar="RUN_ID",
                        help="with --redraw: the study's parent run (default: the newest run of this study's config)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="refuse to start when the estimate exceeds this many minutes (times each model first)")


def apply_budget(args, cfg):
    """``cfg`` with the budget flags given on the command line written into its ``ablation`` section."""
    over = {}
    for flag, key in (("seeds", "seeds"), ("budget", "budget"), ("steps", "steps"), ("seconds", "seconds")):
        value = getattr(args, flag, None)
        if value is not None:
            over[f"ablation.{key}"] = value
    return cfg.replace(over) if over else cfg


def print_plan(cfg, models, data_dir, measure: bool = True, reuse: str | None = None) -> float:
    """Print the grid and, with ``measure``, the estimated minutes of the runs to train (those ``reuse``'s study
    finished left out); returns the estimate in seconds (0 without)."""
    from mslstm.study.budget import budgets_of, cell_key, plan_cells, seeds_of, train_sequences
    from mslstm.study.estimate import estimate_seconds, measure_step_times, split_sizes

    cells = plan_cells(models, seeds_of(cfg), budgets_of(cfg.ablation.budget))
    a = cfg.ablation
    taken: dict = {}
    if reuse:
        from mslstm.study.grid import reusable_cells

        taken, _ = reusable_cells(cfg, reuse, cells, train_sequences(data_dir), data_dir, models)
    print(f"study: {len(models)} models x {a.seeds} seed(s) {seeds_of(cfg)} x budget {a.budget} "
          f"(steps {a.steps or cfg.train.max_steps}, seconds {a.seconds:g}) = {len(cells)} runs"
          + (f", {len(taken)} of them taken from study run {reuse}" if taken else ""))
    cells = [c for c in cells if cell_key(c) not in taken]
    if not measure or not cells:
        for c in cells:
            print(f"  {cell_key(c)}")
        return 0.0
    n_train, n_val, n_test = split_sizes(data_dir)
    trained = list(dict.fromkeys(c["model"] for c in cells))
    est = estimate_seconds(cfg, cells, measure_step_times(cfg, trained), n_train, n_val, n_test)
    for c in est["cells"]:
        print(f"  {cell_key(c):<40} {c['steps']:>6} steps  ~{c['total_s'] / 60:5.1f} min")
    print(f"estimated total: {est['total_s'] / 60:.1f} min (from step times measured now, on this machine's load)")
    return float(est["total_s"])


def run_study_command(args, cfg, models, out, stem) -> int:
    """The shared body of ``mslstm study`` / ``compare`` / ``ablation``."""
    import time

    from mslstm.errors import ConfigError
    from mslstm.study.budget import cell_key
    from mslstm.study.grid import check_models, redraw_study, run_study

    cfg = apply_budget(args, cfg)
    models = check_models(models)
    if getattr(args, "redraw", False):
        t0 = time.perf_counter()
        summary = redraw_study(cfg, args.data_dir, out, models, stem=stem, parent_run_id=args.parent)
        _print_summary(args, summary, t0)
        return 0
    if args.dry_run or args.max_minutes is not None:
        estimate = print_plan(cfg, models, args.data_dir, reuse=getattr(args, "reuse", None) or None)
        if args.dry_run:
            return 0
        if estimate / 60 > args.max_minutes:
            raise ConfigError(f"--max-minutes {args.max_minutes:g}: the study is estimated at "
                              f"{estimate / 60:.1f} min; lower --steps / --seconds / --seeds or the models")
    t0 = time.perf_counter()

    def progress(cell, result, skipped):
        mse = result.get("metrics", {}).get("mse")
        state = (f"not trained (finished in run {result.get('run_id')})" if skipped
                 else f"{result.get('wall_s', 0):.0f} s")
        print(f"{cell_key(cell)}: mse {mse:.3f} {state}" if mse is not None else f"{cell_key(cell)}: {state}",
              flush=True)

    summary = run_study(cfg, args.data_dir, out, models, stem=stem, fresh=args.fresh, on_cell=progress,
                        reuse=getattr(args, "reuse", None) or None)
    _print_summary(args, summary, t0)
    return 0


def _print_summary(args, summary, t0: float) -> None:
    """The DVC metrics file (``--metrics``) and the tables, printed."""
    import time

    from mslstm.study.report import cost_markdown, pairs_markdown, quality_markdown

    if args.metrics:
        from mslstm.io import write_json
        from mslstm.study.report import dvc_metrics

        write_json(args.metrics, dvc_metrics(summary))
    for b in dict.fromkeys(r["budget"] for r in summary["rows"]):
        print(f"\n{b} budget:")
        print(quality_markdown([r for r in summary["rows"] if r["budget"] == b]), end="")
        pairs = [p for p in summary["pairs"] if p["budget"] == b]
        if pairs:
            print()
            print(pairs_markdown(pairs), end="")
    print()
    print(cost_markdown(summary["rows"]), end="")
    dt = time.perf_counter() - t0
    print(f"{len(summary['rows'])} model rows from {len(summary['cells'])} runs "
          f"({len(summary['skipped'])} not trained here: resumed or reused) "
          f"in {dt:.1f} s ({dt / 60:.1f} min); files: {', '.join(summary['files'])}")
    if summary.get("run_id"):
        print(f"MLflow parent run {summary['run_id']} (one child run per model, seed and budget)")
