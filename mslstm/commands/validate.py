"""Check the processed dataset with a great-expectations suite (thresholds from the validate section); write
result.json and report.html to --out; exit non-zero when the data fails, so that no training starts on it."""
from __future__ import annotations

HELP = "validate the processed dataset with great-expectations (result.json + report.html)"


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", default="artifacts/dataset", help="processed dataset (default: %(default)s)")
    parser.add_argument("--out", default="artifacts/validation", help="report folder (default: %(default)s)")


def run(args, cfg) -> int:
    from mslstm.data.validate import validate_data

    result = validate_data(cfg, args.data_dir, args.out)  # raises DataValidationError (exit 2) on failure
    print(f"validation passed: {result['passed_expectations']}/{result['total_expectations']} expectations, "
          f"report {result['report']}")
    return 0
