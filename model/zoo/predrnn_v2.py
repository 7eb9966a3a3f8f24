"""PredRNN-V2 (Wang et al., "PredRNN: A Recurrent Neural Network for Spatiotemporal Predictive Learning",
TPAMI 2022) and MS-PredRNN-V2 (the same cells in the mirrored pyramid of SMS-LSTM).

PredRNN (ST-LSTM cells, zigzag memory M; ``model/zoo/predrnn.py``) plus two training devices, both declared in
the spec's ``recipe`` and nowhere else:

* memory decoupling: a shared 1x1 adapter maps each layer's increments Δc and Δm; the loss is their absolute
  cosine similarity over space, per channel, summed over layers and channels, averaged over batch and time
  steps (the core's ``aux_losses()["decouple"]``, returned by ``net(frames, mask, return_aux=True)``), weighted
  by ``aux_loss_weights["decouple"]`` = 0.01 (the authors' ``decouple_loss_weight``);
* reverse scheduled sampling (``sampling = "reverse"``): during the input steps the network reads its own
  prediction with a probability that falls from 0.5 to 0 over the middle third of training, while the usual
  scheduled sampling of the output steps falls from 0.5 to 0 ground truth. The schedule is a training method:
  ``mslstm.training.recipe`` implements it (``reverse_schedule``, ``reverse_sampling_mask``, registered as
  ``"reverse"``); the rollout reads its (B, T - 2) mask.

Parameters at the reference configuration: 3,596,289 = PredRNN's 3,592,129 + the adapter (64 x 64 + 64); the
authors' 3,598,977 differs by the same 6 x 448 = 2,688 duplicate biases as PredRNN.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.registry import register_family
from model.zoo.predrnn import PredRNNCore, make_cell

DECOUPLE_WEIGHT = 0.01   # the authors' cfg.decouple_loss_weight


def decoupling_loss(adapter: nn.Module, delta_c: torch.Tensor, delta_m: torch.Tensor) -> torch.Tensor:
    """|cos(adapter(Δc), adapter(Δm))| over space, per channel: (B, C, H, W) x 2 -> (B, C)."""
    a = F.normalize(adapter(delta_c).flatten(2), dim=2)               # (B, C, H*W)
    b = F.normalize(adapter(delta_m).flatten(2), dim=2)               # (B, C, H*W)
    return (a * b).sum(dim=2).abs()                                   # (B, C)


class PredRNNV2Core(PredRNNCore):
    """``PredRNNCore`` + the 1x1 adapter (hidden -> hidden, shared by all layers) and the decoupling loss.

    ``aux_losses()["decouple"]``: Σ_layers Σ_channels |cos(adapter(Δc), adapter(Δm))|, averaged over batch and
    the time steps of the last rollout (the authors' reduction); a zero scalar before any step and when the
    rollout ran without gradients (validation, prediction: the term is only needed for training).
    """

    def __init__(self, cells: Sequence[nn.Module], scales: Sequence[int]):
        super().__init__(cells, scales)
        hidden = cells[0].hidden
        self.adapter = nn.Conv2d(hidden, hidden, 1)
        self._sum: Optional[torch.Tensor] = None
        self._steps = 0

    def start_sequence(self) -> None:
        self._sum = None
        self._steps = 0

    def observe(self, layer: int, info) -> None:
        if not torch.is_grad_enabled():
            return
        delta_c, delta_m = info
        term = decoupling_loss(self.adapter, delta_c, delta_m).sum(dim=1).mean()  # Σ_c, mean over B
        self._sum = term if self._sum is None else self._sum + term
        if layer == 0:
            self._steps += 1

    def aux_losses(self) -> dict[str, torch.Tensor]:
        if self._sum is None:
            return {"decouple": self.adapter.weight.new_zeros(())}
        return {"decouple": self._sum / self._steps}


register_family(
    "predrnnv2", "PredRNN-V2", "ST-LSTM cells, memory decoupling loss, reverse scheduled sampling",
    "Wang et al., TPAMI 2022", make_cell, ms_name="mspredrnnv2", core=PredRNNV2Core,
    recipe={"aux_loss_weights": {"decouple": DECOUPLE_WEIGHT}, "sampling": "reverse"},
)
