"""ConvLSTM (Shi et al. 2015) and its mirrored pyramid (SMS-LSTM, the spatial half of MS-LSTM; "MS-ConvLSTM").

Registers ``convlstm`` (``layers`` ConvLSTM cells at full resolution) and ``smslstm`` (the same cells through the
mirrored pyramid of ``ModelConfig.scales``). Reads ``ModelConfig.kernel_size``.
"""
from __future__ import annotations

import torch
from torch import nn

from model.cells import State, zeros_state
from model.registry import register_family


class ConvLSTMCell(nn.Module):
    """ConvLSTM (Shi et al. 2015), without peepholes.

    [i, f, g, o] = Conv_k([x_t; h_{t-1}])           (one fused conv, one bias per gate block)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

    State: (h, c), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(2, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state                                            # (B, hid, H, W) each
        z = self.gates(torch.cat([x, h], dim=1))                # (B, 4*hid, H, W)
        i, f, g, o = torch.chunk(z, 4, dim=1)                   # (B, hid, H, W) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)                    # (B, hid, H, W)
        return h, (h, c)


def make_cell(cfg, layer: int) -> ConvLSTMCell:
    return ConvLSTMCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "convlstm", "ConvLSTM", "ConvLSTM cells, full resolution", "Shi et al., NeurIPS 2015", make_cell,
    ms_name="smslstm", ms_label="SMS-LSTM",
    ms_description="ConvLSTM cells, mirrored pyramid (MS-ConvLSTM)",
    tags=("paper",),
)
