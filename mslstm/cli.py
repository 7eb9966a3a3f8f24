"""``mslstm``: the command-line door onto the step functions.

Each sub-command lives in ``mslstm/commands/<name>.py`` and defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args, cfg) -> int``. Command modules import only argparse-level things at import time, so that
``mslstm --help`` is instant; heavy imports (torch, mlflow, great_expectations) happen inside ``run``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from mslstm.errors import MSLSTMError

# Order is the order of the pipeline; --help lists every step.
COMMANDS = (
    "experiments",
    "models",
    "data",
    "validate",
    "train",
    "evaluate",
    "profile",
    "register",
    "predict",
    "ablation",
    "compare",
    "study",
    "layers",
    "pipeline",
    "image",
    "summary",
    "tracking-server",
)

log = logging.getLogger("mslstm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mslstm",
        description="MS-LSTM video prediction pipeline: data -> validate -> train -> evaluate -> profile -> register.",
    )
    parser.add_argument("--params", default="params.yaml", help="config file (default: params.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.lr=1e-3 (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = importlib.import_module(f"mslstm.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip())
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def load_cli_config(args: argparse.Namespace):
    """Load ``--params`` with ``--set`` overrides; without the file (and no explicit --params) use defaults."""
    from pathlib import Path

    from mslstm.config import load_config

    path = args.params
    if path == "params.yaml" and not Path(path).exists():
        path = None
    return load_config(path, args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from mslstm.devices import apply_thread_default

        apply_thread_default()  # torch threads = the cores this process may use (MSLSTM_NUM_THREADS overrides)
        cfg = load_cli_config(args) if getattr(args._module, "NEEDS_CONFIG", True) else None
        return int(args._module.run(args, cfg) or 0)
    except MSLSTMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk / read-only folder that no step mapped itself: still one line, exit 2
        from mslstm.io import output_error

        err = output_error(exc.filename or "output", exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
