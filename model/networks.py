"""Networks of the family: a recurrent core (stack or mirrored pyramid of cells) inside one shared rollout.

* ``RecurrentCore``: ``layers`` cells, layer i at downsampling factor ``scales[i]``. A full-resolution stack
  (ConvLSTM, TMS-LSTM) is the special case ``scales = (1,) * layers``. When the scale grows from layer i-1 to i the
  input is ``maxpool2x2(out_{i-1})``; when it shrinks it is ``bilinear_up2(out_{i-1}) + out_{L-1-i}`` (skip from the
  mirrored encoder layer). Every layer keeps its own state at its own scale.
  A model may bring its own core class instead (``ModelSpec.core`` in :mod:`model.registry`).
* ``Forecaster``: 1x1 embedding (C*p*p -> hidden), the core, 1x1 head (hidden -> C*p*p, linear output), and the
  PredRNN-style rollout shared by every model (teacher forcing over the input frames, then autoregression mixed
  with ground truth by a scheduled-sampling mask).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from model.cells import State
from model.config import ModelConfig
from model.patch import patchify, unpatchify
from model.registry import get_spec


def rescale(t: torch.Tensor, s_from: int, s_to: int) -> torch.Tensor:
    """(B, C, H/s_from, W/s_from) -> (B, C, H/s_to, W/s_to): maxpool when the scale grows, bilinear when it shrinks
    (how the MS- models move their memories between pyramid scales)."""
    if s_to == s_from:
        return t
    if s_to > s_from:
        return F.max_pool2d(t, s_to // s_from)
    return F.interpolate(t, scale_factor=s_from // s_to, mode="bilinear", align_corners=False)


def layer_input(i: int, x: torch.Tensor, outs: Sequence[torch.Tensor], scales: Sequence[int]) -> torch.Tensor:
    """Input of layer i of a stack / mirrored pyramid: x for layer 0; else ``maxpool2x2(out_{i-1})`` going down,
    ``up2(out_{i-1}) + out_{L-1-i}`` going up (skip from the mirrored encoder layer), ``out_{i-1}`` at equal scales."""
    if i == 0:
        return x
    prev = outs[i - 1]                                          # (B, hid, H/s_{i-1}, W/s_{i-1})
    if scales[i] > scales[i - 1]:
        return F.max_pool2d(prev, 2)
    if scales[i] < scales[i - 1]:
        up = F.interpolate(prev, scale_factor=2, mode="bilinear", align_corners=False)
        return up + outs[len(scales) - 1 - i]
    return prev


class RecurrentCore(nn.Module):
    """Stack / mirrored pyramid of cells: ``core(x, states) -> (h_last, states)`` for one time step."""

    def __init__(self, cells: Sequence[nn.Module], scales: Sequence[int]):
        super().__init__()
        if len(cells) != len(scales):
            raise ValueError(f"scales: {len(scales)} scales for {len(cells)} layers")
        self.cells = nn.ModuleList(cells)
        self.scales = tuple(int(s) for s in scales)

    def init_state(self, batch: int, height: int, width: int, device=None, dtype=None,
                   channels_last: bool = False) -> list[State]:
        return [
            cell.init_state(batch, height // s, width // s, device, dtype, channels_last)
            for cell, s in zip(self.cells, self.scales)
        ]

    def forward(self, x: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        outs: list[torch.Tensor] = []
        new_states: list[State] = []
        for i, cell in enumerate(self.cells):
            inp = layer_input(i, x, outs, self.scales)          # (B, hid, H/s_i, W/s_i)
            h, st = cell(inp, states[i])
            outs.append(h)
            new_states.append(st)
        return outs[-1], new_states


class Forecaster(nn.Module):
    """Embedding -> recurrent core -> head, unrolled over time (the one rollout of every model).

    ``forward(frames, mask=None)``: frames (B, T, C, H, W) -> (B, T-1, C, H, W), the prediction of frames[:, 1:].
    Step t < input_frames reads frames[:, t]; a later step reads ``m * frames[:, t] + (1 - m) * x_gen`` with
    ``m = mask[:, t - input_frames]`` (mask (B, T - input_frames - 1), 1 = ground truth; None = all zeros, pure
    autoregression) and x_gen the prediction of the previous step. A mask of shape (B, T - 2) also covers the
    input steps (reverse scheduled sampling, PredRNN-V2): step t >= 1 then reads ``mask[:, t - 1]`` likewise.
    ``predict(inputs, n_future)``: inputs (B, T_in, C, H, W) -> (B, n_future, C, H, W).
    ``forward(frames, mask, return_aux=True)`` -> ``(prediction, {name: auxiliary loss})``: the one way a model
    hands extra loss terms to the trainer (weights in its spec's ``recipe``; see ``mslstm.training.recipe``).
    """

    def __init__(self, config: ModelConfig, core: nn.Module):
        super().__init__()
        self.config = config
        cp = config.in_channels * config.patch_size ** 2
        self.embed = nn.Conv2d(cp, config.hidden, 1)
        self.core = core
        self.head = nn.Conv2d(config.hidden, cp, 1)

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """Auxiliary loss terms of the last ``forward`` that the core declares (``core.aux_losses()`` ->
        ``{name: scalar tensor}``, e.g. PredRNN-V2's ``{"decouple": ...}``); ``{}`` when it has none. Training
        reads them through ``forward(..., return_aux=True)``; the weights are the spec's ``recipe``."""
        fn = getattr(self.core, "aux_losses", None)
        return dict(fn()) if fn is not None else {}

    # -- checks ---------------------------------------------------------------------------------------------
    def _check_frames(self, frames: torch.Tensor, what: str) -> None:
        cfg = self.config
        if not isinstance(frames, torch.Tensor) or frames.dim() != 5:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(f"{what}: expected a 5-D tensor (B, T, C, H, W), got shape {shape}")
        b, t, c, h, w = frames.shape
        if c != cfg.in_channels:
            raise ValueError(
                f"{what}: has {c} channels but model.in_channels is {cfg.in_channels} (shape {tuple(frames.shape)})"
            )
        f = cfg.size_factor
        if h % f or w % f:
            raise ValueError(
                f"{what}: frame size ({h}, {w}) is not divisible by {f} = patch_size {cfg.patch_size} x "
                f"pyramid factor {max(cfg.layer_scales)}; use a multiple of {f}"
            )

    # -- one step -------------------------------------------------------------------------------------------
    def _step(self, x: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        e = self.embed(x)                                       # (B, hid, Hp, Wp)
        h, states = self.core(e, states)                        # (B, hid, Hp, Wp)
        return self.head(h), states                             # (B, C*p*p, Hp, Wp)

    def _rollout(self, seq: torch.Tensor, n_known: int, n_steps: int, mask: Optional[torch.Tensor],
                 mask_from: Optional[int] = None) -> torch.Tensor:
        """seq (B, T', Cp, Hp, Wp) in patch space; steps t < n_known read seq[:, t]; later steps read the previous
        prediction; from step ``mask_from`` (default n_known) on, a given mask mixes the two: mask[:, t - mask_from].
        -> (B, n_steps, Cp, Hp, Wp)."""
        mask_from = n_known if mask_from is None else mask_from
        b, _, _, hp, wp = seq.shape
        states = self.core.init_state(b, hp, wp, seq.device, seq.dtype, self.config.channels_last)
        preds: list[torch.Tensor] = []
        x_gen: Optional[torch.Tensor] = None
        for t in range(n_steps):
            if mask is not None and t >= mask_from:
                m = mask[:, t - mask_from].view(b, 1, 1, 1)
                x = m * seq[:, t] + (1 - m) * x_gen
            elif t < n_known:
                x = seq[:, t]                                   # (B, Cp, Hp, Wp)
            else:
                x = x_gen
            x_gen, states = self._step(x, states)
            preds.append(x_gen)
        return torch.stack(preds, dim=1)                        # (B, n_steps, Cp, Hp, Wp)

    # -- API ------------------------------------------------------------------------------------------------
    def forward(self, frames: torch.Tensor, mask: Optional[torch.Tensor] = None, return_aux: bool = False
                ) -> Union[torch.Tensor, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """frames (B, T, C, H, W) -> prediction (B, T-1, C, H, W); with ``return_aux`` -> ``(prediction,
        {name: auxiliary loss})`` (the core's terms of this rollout, :meth:`aux_losses`; the trainer's form)."""
        cfg = self.config
        self._check_frames(frames, "frames")
        b, t = frames.shape[:2]                                 # frames: (B, T, C, H, W)
        if t < cfg.input_frames + 1:
            raise ValueError(
                f"frames: T = {t} frames, need at least input_frames + 1 = {cfg.input_frames + 1} "
                f"(usually input_frames + output_frames = {cfg.total_frames})"
            )
        n_mask = t - cfg.input_frames - 1
        mask_from = cfg.input_frames
        if mask is not None:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            if shape == (b, t - 2):
                mask_from = 1                                   # reverse scheduled sampling: input steps too
            elif shape != (b, n_mask):
                raise ValueError(
                    f"mask: expected shape (B, T - input_frames - 1) = ({b}, {n_mask}) or, for reverse scheduled "
                    f"sampling, (B, T - 2) = ({b}, {t - 2}), got {shape}"
                )
            mask = mask.to(device=frames.device, dtype=frames.dtype)
        p = cfg.patch_size
        seq = patchify(frames, p)                               # (B, T, C*p*p, H/p, W/p)
        out = self._rollout(seq, cfg.input_frames, t - 1, mask, mask_from)  # (B, T-1, C*p*p, H/p, W/p)
        pred = unpatchify(out, p)                               # (B, T-1, C, H, W)
        return (pred, self.aux_losses()) if return_aux else pred

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, n_future: Optional[int] = None) -> torch.Tensor:
        """inputs (B, T_in, C, H, W) -> (B, n_future, C, H, W): every input teacher-forced, then autoregression.

        Equals ``forward(cat([inputs, any future]), mask=None)[:, T_in-1:]`` when T_in == input_frames.
        ``n_future`` defaults to ``output_frames``. Runs without gradients; the caller sets eval mode.
        """
        cfg = self.config
        n_future = cfg.output_frames if n_future is None else int(n_future)
        self._check_frames(inputs, "inputs")
        if inputs.shape[1] < 1:
            raise ValueError("inputs: need at least one input frame")
        if n_future < 1:
            raise ValueError(f"n_future: must be >= 1 (got {n_future})")
        p = cfg.patch_size
        seq = patchify(inputs, p)                               # (B, T_in, C*p*p, H/p, W/p)
        t_in = seq.shape[1]
        out = self._rollout(seq, t_in, t_in + n_future - 1, None)
        return unpatchify(out[:, t_in - 1 :], p)                # (B, n_future, C, H, W)


def build_model(config: Union[ModelConfig, Mapping]) -> Forecaster:
    """Build the network registered as ``config.name`` (validated first; ``ValueError("key: reason")`` if bad):
    ``Forecaster(config, core(cells, scales))`` with the spec's cells, scales and core (default ``RecurrentCore``),
    see :mod:`model.registry`."""
    if isinstance(config, Mapping):
        config = ModelConfig(**config)
    config.validate()
    spec = get_spec(config.name)
    core_cls = spec.core or RecurrentCore
    net = Forecaster(config, core_cls(spec.build_cells(config), spec.layer_scales(config)))
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
