"""(not yet implemented)"""
from __future__ import annotations

HELP = "predict step (not yet implemented)"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    raise SystemExit("mslstm predict: not implemented yet")
