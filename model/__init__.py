"""The MS-LSTM model family in plain PyTorch (no I/O, no DDP); every network is registered in ``model.registry``.

    from model import ModelConfig, build_model, model_names
    model_names()                         # ("convlstm", "smslstm", "tmslstm", "mslstm", ...)
    net = build_model(ModelConfig(name="mslstm"))
    out = net(frames, mask=None)          # (B, T, C, H, W) -> (B, T-1, C, H, W)
    future = net.predict(inputs, 10)      # (B, T_in, C, H, W) -> (B, 10, C, H, W)
"""
from model.config import ModelConfig, validate_scales
from model.flops import count_flops, model_flops
from model.networks import Forecaster, RecurrentCore, build_model, count_parameters
from model.patch import patchify, unpatchify
from model.registry import (
    ModelSpec,
    get_spec,
    label_of,
    list_specs,
    model_names,
    register_family,
    register_model,
)
from model.zoo.convlstm import ConvLSTMCell
from model.zoo.mklstm import MKLSTMCell

__all__ = [
    "ModelConfig",
    "ModelSpec",
    "build_model",
    "get_spec",
    "label_of",
    "list_specs",
    "model_names",
    "register_family",
    "register_model",
    "Forecaster",
    "RecurrentCore",
    "ConvLSTMCell",
    "MKLSTMCell",
    "count_parameters",
    "count_flops",
    "model_flops",
    "patchify",
    "unpatchify",
    "validate_scales",
]


def __getattr__(name: str):
    if name == "MODEL_NAMES":  # back-compat: the registered names (read from the registry on each access)
        return model_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
