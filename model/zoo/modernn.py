"""MoDeRNN (Chai et al., "MoDeRNN: Towards Fine-grained Motion Details for Spatiotemporal Predictive Learning",
ICASSP 2022) and MS-MoDeRNN.

A ConvLSTM cell whose input and hidden state first modulate each other in the detail context block (DCB): each of
``iters`` rounds (5 in the authors' config) gates one by the other through the mean of 3x3, 5x5 and 7x7
convolutions. MS-MoDeRNN puts the same cells in the mirrored pyramid of ``model.networks.RecurrentCore``; nothing
but h crosses layers, so no state needs resizing.

Same function as the authors' ``models/modernn.py`` / ``models/ms_modernn.py`` (mazhf/MS-RNN). Their count at the
reference configuration is 5,854,657; ours is 5,853,121: 1,536 fewer, the duplicate biases that the fused x/h
convolution of the ConvLSTM gates removes (4 x 64 per layer, 6 layers).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from model.cells import State, zeros_state
from model.registry import register_family

#: Authors' parameter count (mazhf/MS-RNN ``MoDeRNN`` and ``MS_MoDeRNN``) at the reference configuration.
AUTHORS_PARAMS = 5_854_657


class MultiKernelMean(nn.Module):
    """``mean_k Conv_k(x)`` over kernels k (3, 5, 7 in MoDeRNN), each conv with its own bias."""

    def __init__(self, channels: int, kernels: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, k, padding=k // 2) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out / len(self.convs)                            # (B, C, H, W)


class MoDeRNNCell(nn.Module):
    """MoDeRNN cell: detail context block (DCB) -> ConvLSTM.

    DCB (j = 1 .. iters), K(·) = mean of Conv3x3, Conv5x5, Conv7x7 (separate weights for the two directions):
        odd j:  x = 2σ(K_h(h)) ⊙ x          even j:  h = 2σ(K_x(x)) ⊙ h
    ConvLSTM on the modulated (x, h):
        [i, f, g, o] = Conv_k([x; h]);  c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);  h_t = σ(o) ⊙ tanh(c_t)

    State: (h, c), each (B, hidden, H, W).
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, iters: int = 5,
                 dcb_kernels: Sequence[int] = (3, 5, 7)):
        super().__init__()
        if in_channels != hidden:
            raise ValueError(f"hidden: the MoDeRNN DCB needs in_channels == hidden (got {in_channels} and {hidden})")
        self.in_channels = in_channels
        self.hidden = hidden
        self.iters = iters
        self.dcb_x = MultiKernelMean(in_channels, dcb_kernels)   # x -> gate on h
        self.dcb_h = MultiKernelMean(hidden, dcb_kernels)        # h -> gate on x
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> State:
        return zeros_state(2, batch, self.hidden, height, width, device, dtype, channels_last)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state                                            # (B, hid, H, W) each
        for j in range(1, self.iters + 1):                      # DCB
            if j % 2:
                x = 2 * torch.sigmoid(self.dcb_h(h)) * x
            else:
                h = 2 * torch.sigmoid(self.dcb_x(x)) * h
        i, f, g, o = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)                    # (B, hid, H, W)
        return h, (h, c)


def make_cell(cfg, layer: int) -> MoDeRNNCell:
    """DCB iterations 5 and kernels (3, 5, 7), as in the authors' configuration."""
    return MoDeRNNCell(cfg.hidden, cfg.hidden, cfg.kernel_size)


register_family(
    "modernn", "MoDeRNN", "ConvLSTM whose input and hidden state modulate each other (detail context block)",
    "Chai et al., ICASSP 2022", make_cell,
)
