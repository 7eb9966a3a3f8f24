"""PredRNN-V2 (Wang et al., "PredRNN: A Recurrent Neural Network for Spatiotemporal Predictive Learning",
TPAMI 2022) and MS-PredRNN-V2 (the same cells in the mirrored pyramid of SMS-LSTM).

PredRNN (ST-LSTM cells, zigzag memory M; ``model/zoo/predrnn.py``) plus two training devices, both declared in
the spec's ``recipe`` and nowhere else:

* memory decoupling: a shared 1x1 adapter maps each layer's increments Δc and Δm; the loss is their absolute
  cosine similarity over space, per channel, summed over layers and channels, averaged over batch and time
  steps (``net.aux_loss()``), weighted by ``aux_loss_weight`` = 0.01 (the authors' ``decouple_loss_weight``);
* reverse scheduled sampling (``scheduled_sampling = "reverse"``): during the input steps the network reads its
  own prediction with a probability that falls from 0.5 to 0 over the middle third of training, while the usual
  scheduled sampling of the output steps falls from 0.5 to 0 ground truth. ``reverse_schedule`` and
  ``reverse_sampling_mask`` below are the pure functions.

Parameters at the reference configuration: 3,596,289 = PredRNN's 3,592,129 + the adapter (64 x 64 + 64); the
authors' 3,598,977 differs by the same 6 x 448 = 2,688 duplicate biases as PredRNN.
"""
from __future__ import annotations

import math
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

    ``aux_loss()``: Σ_layers Σ_channels |cos(adapter(Δc), adapter(Δm))|, averaged over batch and the time steps
    of the last rollout (the authors' reduction); a zero scalar before any step.
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
        delta_c, delta_m = info
        term = decoupling_loss(self.adapter, delta_c, delta_m).sum(dim=1).mean()  # Σ_c, mean over B
        self._sum = term if self._sum is None else self._sum + term
        if layer == 0:
            self._steps += 1

    def aux_loss(self) -> torch.Tensor:
        if self._sum is None:
            return self.adapter.weight.new_zeros(())
        return self._sum / self._steps


def reverse_schedule(progress: float) -> tuple[float, float]:
    """(eta_r, eta) at ``progress`` = epoch / epochs in [0, 1] (the authors' ``reverse_scheduled_sampling``).

    eta_r: probability of reading the ground truth at an input step: 0.5 for the first third, then
    1 - 0.5 exp(-(p - 1/3) / (1/15)) over the middle third, then 1.
    eta: probability of reading the ground truth at an output step: 0.5, then linear to 0 over the middle
    third, then 0.
    """
    p = float(progress)
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"progress: must be a finite number >= 0 (got {progress!r})")
    start, end = 1.0 / 3.0, 2.0 / 3.0
    if p < start:
        return 0.5, 0.5
    if p < end:
        return 1.0 - 0.5 * math.exp(-(p - start) / (start / 5.0)), 0.5 - 0.5 * (p - start) / (end - start)
    return 1.0, 0.0


def reverse_sampling_mask(progress: float, batch: int, input_frames: int, total_frames: int,
                          generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Reverse scheduled-sampling mask (B, total_frames - 2), 1 = read the ground truth.

    Column t - 1 decides the input of step t = 1 .. T-2: columns 0 .. input_frames-2 are input steps (ground truth
    with probability eta_r), the rest output steps (probability eta); see ``reverse_schedule``. Step 0 always
    reads frame 0. The rollout reads step t as ``mask[:, t-1] * frames[:, t] + (1 - mask[:, t-1]) * x_gen``.
    """
    if input_frames < 1 or total_frames < input_frames + 1:
        raise ValueError(f"total_frames: need input_frames >= 1 and total_frames > input_frames "
                         f"(got {input_frames} and {total_frames})")
    eta_r, eta = reverse_schedule(progress)
    n = total_frames - 2
    u = torch.rand(batch, max(n, 0), generator=generator)
    thresh = torch.full((max(n, 0),), eta)
    thresh[: input_frames - 1] = eta_r
    return (u < thresh).float()


register_family(
    "predrnnv2", "PredRNN-V2", "ST-LSTM cells, memory decoupling loss, reverse scheduled sampling",
    "Wang et al., TPAMI 2022", make_cell, ms_name="mspredrnnv2", core=PredRNNV2Core,
    recipe={"aux_loss_weight": DECOUPLE_WEIGHT, "scheduled_sampling": "reverse"},
)
