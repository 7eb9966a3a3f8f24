"""Progress display for the long loops (training steps, evaluation batches): a tqdm bar on a terminal, log lines
elsewhere.

The rule (``train.progress: bar``): when stderr is a terminal (``make run``, ``dvc repro`` and ``mslstm train``
from a shell: DVC hands the terminal to the stage's command) a tqdm bar on stderr shows the step, its rate and a
postfix with the loss and sequences/s; when stderr is not a terminal (a CI log, a KFP pod, a redirected file) a
bar's carriage-return redraws would pile up into one unreadable line, so no bar is drawn and the trainer writes a
plain log line every ``train.log_every_steps`` steps instead. ``train.progress: quiet`` never draws a bar.

    bar = progress_bar(total=100, desc="train mslstm", unit="step")   # None: log lines instead
    if bar is not None:
        bar.update(1); bar.set_postfix(loss="0.1", seq_s="3.2"); bar.close()
"""
from __future__ import annotations

import sys
from typing import Any, Optional, TextIO


def interactive(stream: Optional[TextIO] = None) -> bool:
    """True when ``stream`` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(total: int, desc: str, unit: str, initial: int = 0, enabled: bool = True,
                 leave: bool = True) -> Any:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else ``None`` (the caller logs lines).

    While the bar is open, console log lines (the root logger's stream handlers) are written above it instead
    of through it; ``close()`` restores them.
    """
    if not (enabled and interactive()):
        return None
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    class _Bar(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._redirect = logging_redirect_tqdm(tqdm_class=tqdm)
            self._redirect.__enter__()

        def close(self) -> None:
            try:
                super().close()
            finally:
                redirect, self._redirect = getattr(self, "_redirect", None), None
                if redirect is not None:
                    redirect.__exit__(None, None, None)

    return _Bar(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, leave=leave)
