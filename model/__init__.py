"""The MS-LSTM model family in plain PyTorch (no I/O, no DDP).

    from model import ModelConfig, build_model, MODEL_NAMES
    net = build_model(ModelConfig(name="mslstm"))
    out = net(frames, mask=None)          # (B, T, C, H, W) -> (B, T-1, C, H, W)
    future = net.predict(inputs, 10)      # (B, T_in, C, H, W) -> (B, 10, C, H, W)
"""
from model.cells import ConvLSTMCell, MKLSTMCell
from model.config import MODEL_NAMES, ModelConfig, validate_scales
from model.flops import count_flops, model_flops
from model.networks import Forecaster, RecurrentCore, build_model, count_parameters
from model.patch import patchify, unpatchify

__all__ = [
    "MODEL_NAMES",
    "ModelConfig",
    "build_model",
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
