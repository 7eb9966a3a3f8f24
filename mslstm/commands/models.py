"""Print the model family at the reference configuration: name, parameters, forward FLOPs per sequence."""
from __future__ import annotations

HELP = "table of the model family: parameters and forward FLOPs per sequence (not yet implemented)"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    raise SystemExit("mslstm models: not implemented yet")
