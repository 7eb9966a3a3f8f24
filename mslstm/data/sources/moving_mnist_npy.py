"""Source ``moving-mnist-npy``: the standard Moving MNIST file ``mnist_test_seq.npy`` ((T, N, H, W) uint8, 20 x
10,000 x 64 x 64) at ``data.path``, cut into train/val/test blocks like the ``array`` source."""
from __future__ import annotations

from typing import Any

import numpy as np

from mslstm.data.sources import BuildContext, DataSource, register_source
from mslstm.data.sources.array import copy_video


def build(ctx: BuildContext) -> dict[str, Any]:
    return copy_video(ctx, "TNHW", require_dtype=np.dtype(np.uint8),
                      hint="; the standard mnist_test_seq.npy is uint8; use source: array")


register_source(DataSource(
    "moving-mnist-npy", "the standard Moving MNIST mnist_test_seq.npy ((T, N, H, W) uint8) at data.path",
    "file", build, needs_path=True, value_range=(0.0, 255.0),
    validate_defaults={"max_blank_fraction": 0.01, "empty_level": 0.0},
))
