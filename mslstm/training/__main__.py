"""``python -m mslstm.training [GLOBAL OPTIONS] [--data-dir ...] [--out ...] [--resume]`` == ``mslstm train``.

Global options (``--params``, ``--set``, ``-v``, ``-q``) may come first, as with ``mslstm``.
"""
import sys

from mslstm.cli import main


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    head: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--params", "--set") and i + 1 < len(argv):
            head += argv[i : i + 2]
            i += 2
        elif a in ("-v", "--verbose", "-q", "--quiet") or a.startswith(("--params=", "--set=")):
            head.append(a)
            i += 1
        else:
            break
    return head, argv[i:]


head, rest = _split(sys.argv[1:])
sys.exit(main([*head, "train", *rest]))
