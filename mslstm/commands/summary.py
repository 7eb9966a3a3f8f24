"""Print what the last run produced, in a few lines: test MSE/SSIM against the blank-frame and copy-last-frame
baselines, the registry's decision (champion version), where the example pictures are and the ``mlflow ui`` command.
Reads the files under --artifacts only (no MLflow call); ``make run`` prints it after ``dvc repro``.

    mslstm summary                      # artifacts/ of the working directory
    mslstm summary --json               # the same facts as JSON
"""
from __future__ import annotations

HELP = "a few lines on the last run: test figures vs baselines, champion, pictures, mlflow ui command"


def add_arguments(parser) -> None:
    parser.add_argument("--artifacts", default="artifacts", help="artifacts folder (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")


def run(args, cfg) -> int:
    import json

    from mslstm.release.summary import format_summary, read_summary
    from mslstm.tracking import resolve_tracking_uri

    s = read_summary(args.artifacts, tracking_uri=resolve_tracking_uri(cfg))
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
    return 0
