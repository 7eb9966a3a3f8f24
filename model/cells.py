"""What every recurrent cell shares: the ``State`` type and zero-state helper.

A cell is one time step, pure: ``cell(x, state) -> (h, new_state)`` plus ``cell.init_state(batch, height, width,
device, dtype, channels_last)``. Each model's cell lives in its own file under ``model/zoo/`` (ConvLSTM in
``zoo/convlstm.py``, MK-LSTM in ``zoo/mklstm.py``); ``model.cells.ConvLSTMCell`` / ``MKLSTMCell`` still resolve
(models pickled by older versions name them here).

Every gate block is ONE convolution over the concatenation ``[x; h]``: the same function as the authors'
``Conv(x) + Conv(h)`` (their code keeps a bias on each of the two convs, so their count has ``4*hidden`` more
parameters per fused pair), with half the kernel launches.
"""
from __future__ import annotations

import torch

State = tuple[torch.Tensor, ...]


def zeros_state(n: int, batch: int, channels: int, height: int, width: int, device=None, dtype=None,
                channels_last: bool = False) -> State:
    """``n`` zero tensors (B, channels, H, W), channels-last when asked."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(
        torch.zeros(batch, channels, height, width, device=device, dtype=dtype).contiguous(memory_format=fmt)
        for _ in range(n)
    )


_MOVED = {"ConvLSTMCell": "model.zoo.convlstm", "MKLSTMCell": "model.zoo.mklstm"}


def __getattr__(name: str):  # PEP 562: the cells moved into their model files
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
