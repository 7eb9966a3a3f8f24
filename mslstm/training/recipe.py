"""The pure pieces a training method is made of: loss, scheduled sampling, mixed precision, optimizer, LR schedule.

No I/O, no DDP: the trainer (``mslstm.training.train``), the profile step and the ablation all build them here, so
they train (and time) the same method.

    from mslstm.training.recipe import build_recipe
    recipe = build_recipe(cfg.train, device, get_spec(cfg.model.name).recipe, total_steps)
    mask = recipe.mask(b, step, input_frames, T, device)  # scheduled sampling (this rank's rows)
    with recipe.autocast(device):
        out = model(frames, mask=mask, return_aux=True)   # (pred, {name: auxiliary loss})
    loss, parts = recipe.loss(out, frames[:, 1:])         # train.loss + the weighted auxiliary losses
    optimizer_step(loss, opt, scaler, model.parameters(), recipe.grad_clip, sched)

Extension points (so that a model with its own needs adds no branch to the loop):

- **Loss by name**: ``LOSSES[name](pred, target) -> scalar``; ``train.loss`` picks one.
- **Auxiliary losses**: ``Forecaster.forward(frames, mask, return_aux=True)`` returns ``(pred, aux)``, ``aux``
  mapping a name to a scalar tensor that the model's core computed during that forward (``core.aux_losses()``,
  e.g. PredRNN-V2's ``{"decouple": ...}``). :func:`split_output` separates them; the training loss is
  ``LOSSES[train.loss](pred, target) + sum(w[name] * aux[name])`` with ``w = RecipeHints.aux_loss_weights``
  (1.0 for a name not listed). Validation, evaluation and prediction call ``forward`` without ``return_aux``.
- **Sampling schedule by name**: ``SAMPLING_SCHEDULES[name]`` is a :class:`SamplingSchedule`: ``prob(train_cfg,
  step, total_steps)`` (probability of feeding ground truth at an output step) and ``mask(...)`` (the global
  batch's mask). ``linear`` is the ``train.ss_*`` decay over the output steps (over ``train.ss_decay_steps``, or
  ``train.ss_decay_fraction`` of the run's total steps, resolved once in :func:`build_recipe`); ``reverse`` is
  PredRNN-V2's reverse scheduled sampling (input steps too, over the run's ``total_steps``);
  :func:`register_sampling_schedule` adds another.
- **RecipeHints**: what a model declares in its spec (``ModelSpec.recipe``, a mapping with the same keys:
  ``sampling``, ``aux_loss_weights``); ``build_recipe(tcfg, device, spec.recipe, total_steps)`` applies them.
  This is the one seam: the training loop has no branch per model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any, Callable, Iterable, Mapping, Optional

import torch

from mslstm.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------- loss
def l1l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The authors' loss: per frame, sum over (C, H, W) of squared + absolute error; mean over batch and frames."""
    diff = pred.float() - target.float()
    return (diff.pow(2) + diff.abs()).sum(dim=(2, 3, 4)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element."""
    return (pred.float() - target.float()).pow(2).mean()


LOSSES: dict[str, LossFn] = {"l1l2": l1l2_loss, "mse": mse_loss}


def loss_fn(name: str) -> LossFn:
    """The loss called ``name`` (``train.loss``)."""
    if name not in LOSSES:
        raise ConfigError(f"train.loss: unknown loss {name!r}; one of {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def sequence_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``LOSSES[kind](pred, target)``; pred/target (B, T', C, H, W)."""
    if kind not in LOSSES:
        raise ValueError(f"loss: unknown loss {kind!r}")
    return LOSSES[kind](pred, target)


def split_output(out: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(pred, aux losses)`` of a network's output: a tensor, or ``(pred, {name: scalar tensor})``."""
    if isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], Mapping):
        return out[0], dict(out[1])
    raise TypeError("model output: expected a tensor or (prediction, {name: auxiliary loss}); got "
                    f"{type(out).__name__}")


# ------------------------------------------------------------------------------------------- scheduled sampling
def _generator(seed: int, step: int) -> torch.Generator:
    """The mask generator of ``step``: seeded by ``(seed, step)`` so that every rank and a resumed run agree."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def sampling_mask(global_batch: int, n: int, prob: float, step: int, seed: int) -> torch.Tensor:
    """Scheduled-sampling mask (global_batch, n) of 0/1 floats: 1 = feed ground truth, with probability ``prob``.

    Vectorised (one ``torch.bernoulli`` call) and drawn from a generator seeded by ``(seed, step)``, so that any
    number of processes (each taking its rows) and a resumed run draw the same masks.
    """
    return torch.bernoulli(torch.full((global_batch, max(n, 0)), float(prob)), generator=_generator(seed, step))


def ss_decay_steps(tcfg: Any, total_steps: int) -> int:
    """Steps of the scheduled-sampling decay: ``train.ss_decay_steps``, or with ``train.ss_decay_fraction`` f > 0
    that share of the run, ``round(f * (total_steps - 1))``, so that for f = 1 the probability is ``ss_end`` at the
    last step (step index ``total_steps - 1``) whatever the epochs, data size or world size (with a fixed global
    batch the total steps do not depend on the world size)."""
    if tcfg.ss_decay_fraction <= 0:
        return int(tcfg.ss_decay_steps)
    return max(0, round(tcfg.ss_decay_fraction * (max(int(total_steps), 1) - 1)))


def linear_teacher_forcing(tcfg: Any, step: int) -> float:
    """``train.ss_start`` decaying linearly to ``train.ss_end`` over ``train.ss_decay_steps`` steps (0 when
    ``train.scheduled_sampling`` is off)."""
    if not tcfg.scheduled_sampling:
        return 0.0
    if tcfg.ss_decay_steps == 0:
        return tcfg.ss_end
    frac = min(1.0, step / tcfg.ss_decay_steps)
    return tcfg.ss_start + (tcfg.ss_end - tcfg.ss_start) * frac


def reverse_schedule(progress: float) -> tuple[float, float]:
    """(eta_r, eta) at ``progress`` = step / total steps in [0, 1] (the authors' ``reverse_scheduled_sampling``,
    PredRNN-V2, with their iteration thresholds 25k / 50k of 80k expressed as thirds of training).

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
    with probability eta_r), the rest output steps (probability eta); see :func:`reverse_schedule`. Step 0 always
    reads frame 0. The rollout (``model.networks.Forecaster``) reads step t as
    ``mask[:, t-1] * frames[:, t] + (1 - mask[:, t-1]) * x_gen``.
    """
    if input_frames < 1 or total_frames < input_frames + 1:
        raise ValueError(f"total_frames: need input_frames >= 1 and total_frames > input_frames "
                         f"(got {input_frames} and {total_frames})")
    eta_r, eta = reverse_schedule(progress)
    n = max(total_frames - 2, 0)
    u = torch.rand(batch, n, generator=generator)
    thresh = torch.full((n,), eta)
    thresh[: input_frames - 1] = eta_r
    return (u < thresh).float()


@dataclasses.dataclass(frozen=True)
class SamplingSchedule:
    """A named scheduled-sampling method.

    Attributes:
        prob: ``prob(tcfg, step, total_steps) -> float``, the probability of feeding ground truth at an output
            step (logged as ``train/tf_prob``).
        mask: ``mask(tcfg, step, total_steps, global_batch, input_frames, total_frames, generator) -> Tensor`` of
            shape (global_batch, total_frames - input_frames - 1) (output steps only) or (global_batch,
            total_frames - 2) (input steps too); 1 = ground truth. ``generator`` is seeded by ``(train.seed,
            step)``: draw from it alone, so that every rank and a resumed run get the same mask.
    """

    prob: Callable[[Any, int, int], float]
    mask: Callable[..., torch.Tensor]


def _linear_mask(tcfg: Any, step: int, total_steps: int, global_batch: int, input_frames: int, total_frames: int,
                 generator: torch.Generator) -> torch.Tensor:
    n = max(total_frames - input_frames - 1, 0)
    prob = linear_teacher_forcing(tcfg, step)
    return torch.bernoulli(torch.full((global_batch, n), float(prob)), generator=generator)


def _progress(step: int, total_steps: int) -> float:
    return min(1.0, step / total_steps) if total_steps > 0 else 0.0


def _reverse_mask(tcfg: Any, step: int, total_steps: int, global_batch: int, input_frames: int, total_frames: int,
                  generator: torch.Generator) -> torch.Tensor:
    return reverse_sampling_mask(_progress(step, total_steps), global_batch, input_frames, total_frames, generator)


SAMPLING_SCHEDULES: dict[str, SamplingSchedule] = {
    # train.ss_start -> train.ss_end over train.ss_decay_steps, output steps only (PredRNN, the authors' default)
    "linear": SamplingSchedule(lambda tcfg, step, total: linear_teacher_forcing(tcfg, step), _linear_mask),
    # PredRNN-V2's reverse scheduled sampling over the run's total steps: input steps too
    "reverse": SamplingSchedule(lambda tcfg, step, total: reverse_schedule(_progress(step, total))[1], _reverse_mask),
}


def register_sampling_schedule(name: str, schedule: SamplingSchedule) -> SamplingSchedule:
    """Add a schedule under ``name`` (a model spec's ``recipe={"sampling": name}`` then picks it)."""
    if name in SAMPLING_SCHEDULES:
        raise ValueError(f"sampling schedule {name!r} is already registered")
    SAMPLING_SCHEDULES[name] = schedule
    return schedule


# ------------------------------------------------------------------------------------------------ mixed precision
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (x86 AVX512-BF16 or AMX-BF16), where bf16 autocast pays.

    Asks PyTorch's own CPU probes (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``) and
    falls back to the ``flags`` line of ``/proc/cpuinfo``. Other CPUs (AVX2-only x86, ARM: not measured) emulate
    bf16 and run it slower than fp32. ATen kernels limited below AVX-512 (``ATEN_CPU_CAPABILITY=avx2``, as on an
    AVX2-only CPU) or oneDNN limited likewise (``ONEDNN_MAX_CPU_ISA``) count as no native bf16: the process then
    runs as on such a CPU (how bench/bench_first_run.py measures an AVX2 machine on an AVX-512 one).
    """
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if capability in ("DEFAULT", "NO AVX", "AVX", "AVX2", "ZVECTOR", "VSX"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if isa and "BF16" not in isa and "AMX" not in isa and isa != "ALL":
        return False
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in _CPU_BF16_FLAGS)
    except OSError:
        pass
    return False


def cuda_supports_bf16(device: torch.device) -> bool:
    """True when the GPU has native bf16 (compute capability 8.0+: Ampere and later); emulation does not count."""
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def amp_settings(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use GradScaler)`` for ``train.amp`` on ``device`` (the one AMP policy).

    - ``auto``: CUDA: bf16 where the GPU has it natively (:func:`cuda_supports_bf16`), else fp16 + GradScaler;
      CPU: bf16 where the CPU has it natively (:func:`cpu_supports_bf16`: AVX512-BF16 / AMX), else fp32.
    - ``bf16``: bf16 autocast (on a CPU without native bf16 it is emulated and slower than fp32).
    - ``fp16``: CUDA: fp16 + GradScaler; CPU: refused (:class:`ConfigError`).
    - ``off``: fp32.

    Only the forward runs under autocast; weights, gradients, optimizer state and the loss stay fp32, and the
    evaluation metrics are computed in fp32 whatever the policy (``mslstm.evaluation.metrics``).
    """
    if amp == "off":
        return None, False
    if device.type == "cuda":
        if amp == "bf16" or (amp == "auto" and cuda_supports_bf16(device)):
            return torch.bfloat16, False
        return torch.float16, True
    if amp == "bf16" or (amp == "auto" and cpu_supports_bf16()):
        return torch.bfloat16, False
    if amp == "fp16":
        raise ConfigError("train.amp: fp16 needs a CUDA device; use auto, off or bf16 on CPU")
    return None, False


# ------------------------------------------------------------------------------------------- optimizer, schedule
def build_optimizer(params: Any, tcfg: Any, lr: float) -> torch.optim.Optimizer:
    if tcfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=tcfg.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=tcfg.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, tcfg: Any, lr: float, total_steps: int) -> Any:
    total = max(1, total_steps)
    if tcfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr * tcfg.min_lr_ratio)
    if tcfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total + 1,
                                                   pct_start=tcfg.warmup_fraction)
    return None


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   params: Iterable[torch.nn.Parameter], grad_clip: float, sched: Any = None) -> None:
    """One update: zero grads, (scaled) backward, optional global-norm clip, step, scaler update, LR schedule."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    scaler.update()
    if sched is not None:
        sched.step()


def current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


# -------------------------------------------------------------------------------------------------------- recipe
@dataclasses.dataclass(frozen=True)
class RecipeHints:
    """What a model declares about its training method: its spec's ``recipe`` mapping, same keys (all optional).

    Attributes:
        sampling: name in :data:`SAMPLING_SCHEDULES` (default ``linear``, the ``train.ss_*`` decay; PredRNN-V2:
            ``reverse``).
        aux_loss_weights: weight of each auxiliary loss the network returns with ``forward(..., return_aux=True)``
            (1.0 for a name not listed; a weight of 0 still back-propagates zeros, so that every parameter gets a
            gradient under DDP).
    """

    sampling: str = "linear"
    aux_loss_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_spec(cls, recipe: Mapping[str, Any] | "RecipeHints" | None, model: str = "model") -> "RecipeHints":
        """Hints from a spec's ``recipe`` mapping (``None`` = defaults); unknown keys or bad values ->
        ``ConfigError`` naming the model and the key."""
        if recipe is None:
            return cls()
        if isinstance(recipe, RecipeHints):
            return recipe
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(recipe) - known)
        if bad:
            raise ConfigError(f"{model}: recipe key(s) {', '.join(map(repr, bad))} unknown; "
                              f"a model's recipe may set {', '.join(sorted(known))}")
        sampling = recipe.get("sampling", "linear")
        if not isinstance(sampling, str):
            raise ConfigError(f"{model}: recipe.sampling must be a schedule name, got {sampling!r}")
        weights = recipe.get("aux_loss_weights", {})
        if not isinstance(weights, Mapping) or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in weights.values()):
            raise ConfigError(f"{model}: recipe.aux_loss_weights must map loss names to finite numbers, "
                              f"got {weights!r}")
        return cls(sampling, {str(k): float(v) for k, v in weights.items()})


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training method, built by :func:`build_recipe` from the train section, the device and a model's hints."""

    tcfg: Any
    loss_name: str
    schedule: SamplingSchedule
    amp_dtype: torch.dtype | None
    use_scaler: bool
    aux_loss_weights: Mapping[str, float]
    total_steps: int = 0
    sampling: str = "linear"

    @property
    def grad_clip(self) -> float:
        return float(self.tcfg.grad_clip)

    def teacher_forcing_prob(self, step: int) -> float:
        """Probability of feeding ground truth at an output step at ``step`` (0 when scheduled sampling is off)."""
        if not self.tcfg.scheduled_sampling:
            return 0.0
        return float(self.schedule.prob(self.tcfg, step, self.total_steps))

    def mask(self, batch: int, step: int, input_frames: int, total_frames: int, device: torch.device,
             rank: int = 0, world_size: int = 1) -> torch.Tensor | None:
        """This rank's rows of the global batch's scheduled-sampling mask at ``step`` for a rollout of
        ``total_frames`` frames of which ``input_frames`` are given: ``(batch, T - input_frames - 1)`` or, for a
        schedule that covers the input steps, ``(batch, T - 2)``. None when ``train.scheduled_sampling`` is off."""
        if not self.tcfg.scheduled_sampling or total_frames - 2 <= 0:
            return None
        full = self.schedule.mask(self.tcfg, step, self.total_steps, batch * world_size, input_frames, total_frames,
                                  _generator(self.tcfg.seed, step))
        if full.shape[1] == 0:
            return None
        return full[rank::world_size][:batch].to(device)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=self.use_scaler)

    def loss(self, out: Any, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``(total loss, {aux name: value})`` of a network output against ``target`` (frames[:, 1:]); ``out`` is
        the prediction or ``(prediction, {name: auxiliary loss})`` (``forward(..., return_aux=True)``). Every
        auxiliary loss is added, weight 0 included (its parameters then get zero gradients, as DDP requires)."""
        pred, aux = split_output(out)
        total = LOSSES[self.loss_name](pred, target)
        for name, value in aux.items():
            total = total + float(self.aux_loss_weights.get(name, 1.0)) * value
        return total, {name: float(v.detach()) for name, v in aux.items()}


def build_recipe(tcfg: Any, device: torch.device, hints: Mapping[str, Any] | RecipeHints | None = None,
                 total_steps: int | None = None) -> Recipe:
    """The training method of ``tcfg`` (the ``train`` section) on ``device``, with a model's hints applied.

    Args:
        tcfg: the train section.
        device: where the model runs (AMP policy).
        hints: the model's declared needs: its spec's ``recipe`` mapping (``get_spec(name).recipe``), or
            :class:`RecipeHints`; None = defaults.
        total_steps: optimizer steps of the whole run: resolves ``train.ss_decay_fraction`` into the recipe's
            ``ss_decay_steps`` (:func:`ss_decay_steps`) and paces schedules that follow training progress
            (``reverse``). None (profiling, no run) keeps ``ss_decay_steps``.
    """
    hints = RecipeHints.from_spec(hints)
    if total_steps is not None and tcfg.ss_decay_fraction > 0:
        tcfg = dataclasses.replace(tcfg, ss_decay_steps=ss_decay_steps(tcfg, total_steps))
    loss_fn(tcfg.loss)
    if hints.sampling not in SAMPLING_SCHEDULES:
        raise ConfigError(f"sampling schedule {hints.sampling!r} is not registered; one of "
                          f"{', '.join(sorted(SAMPLING_SCHEDULES))}")
    amp_dtype, use_scaler = amp_settings(tcfg.amp, device)
    return Recipe(tcfg, tcfg.loss, SAMPLING_SCHEDULES[hints.sampling], amp_dtype, use_scaler,
                  dict(hints.aux_loss_weights), int(total_steps or 0), hints.sampling)
