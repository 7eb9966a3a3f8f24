"""The pure pieces a training method is made of: loss, scheduled sampling, mixed precision, optimizer, LR schedule.

No I/O, no DDP: the trainer (``mslstm.training.train``), the profile step and the ablation all build them here, so
they train (and time) the same method.

    from mslstm.training.recipe import build_recipe
    recipe = build_recipe(cfg.train, device)              # + hints=RecipeHints(...) from a model spec
    mask = recipe.mask(b, step, n_mask, device)           # scheduled sampling (this rank's rows)
    with recipe.autocast(device):
        out = model(frames, mask=mask)
    loss, parts = recipe.loss(out, frames[:, 1:])         # train.loss + the model's auxiliary losses
    optimizer_step(loss, opt, scaler, model.parameters(), recipe.grad_clip, sched)

Extension points (so that a model with its own needs adds no branch to the loop):

- **Loss by name**: ``LOSSES[name](pred, target) -> scalar``; ``train.loss`` picks one.
- **Auxiliary losses**: a network's ``forward`` may return ``(pred, aux)`` instead of ``pred``, where ``aux`` maps
  a name to a scalar tensor (e.g. PredRNN-V2's decoupling loss). :func:`split_output` separates them (validation
  and evaluation use ``pred`` only); the training loss is ``LOSSES[train.loss](pred, target) + sum(w[name] *
  aux[name])`` with ``w = RecipeHints.aux_loss_weights`` (1.0 for a name not listed).
- **Sampling schedule by name**: ``SAMPLING_SCHEDULES[name]`` is a :class:`SamplingSchedule`: ``prob(train_cfg,
  step)`` (probability of feeding ground truth) and ``mask(global_batch, n, prob, step, seed)``. ``linear`` is the
  ``train.ss_*`` decay; :func:`register_sampling_schedule` adds another (e.g. PredRNN's reverse scheduled sampling).
- **RecipeHints**: what a model may declare in its spec (schedule name, auxiliary-loss weights);
  ``build_recipe(tcfg, device, hints)`` applies them.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterable, Mapping

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
def sampling_mask(global_batch: int, n: int, prob: float, step: int, seed: int) -> torch.Tensor:
    """Scheduled-sampling mask (global_batch, n) of 0/1 floats: 1 = feed ground truth, with probability ``prob``.

    Vectorised (one ``torch.bernoulli`` call) and drawn from a generator seeded by ``(seed, step)``, so that any
    number of processes (each taking its rows) and a resumed run draw the same masks.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    return torch.bernoulli(torch.full((global_batch, max(n, 0)), float(prob)), generator=gen)


def linear_teacher_forcing(tcfg: Any, step: int) -> float:
    """``train.ss_start`` decaying linearly to ``train.ss_end`` over ``train.ss_decay_steps`` steps (0 when
    ``train.scheduled_sampling`` is off)."""
    if not tcfg.scheduled_sampling:
        return 0.0
    if tcfg.ss_decay_steps == 0:
        return tcfg.ss_end
    frac = min(1.0, step / tcfg.ss_decay_steps)
    return tcfg.ss_start + (tcfg.ss_end - tcfg.ss_start) * frac


@dataclasses.dataclass(frozen=True)
class SamplingSchedule:
    """A named scheduled-sampling method: the ground-truth probability per step and the mask drawn from it."""

    prob: Callable[[Any, int], float]
    mask: Callable[[int, int, float, int, int], torch.Tensor] = sampling_mask


SAMPLING_SCHEDULES: dict[str, SamplingSchedule] = {"linear": SamplingSchedule(linear_teacher_forcing)}


def register_sampling_schedule(name: str, schedule: SamplingSchedule) -> SamplingSchedule:
    """Add a schedule under ``name`` (a model's :class:`RecipeHints` then names it)."""
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
    bf16 and run it slower than fp32.
    """
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
    """What a model may declare about its training method (carried by its spec; all optional).

    Attributes:
        sampling: name in :data:`SAMPLING_SCHEDULES` (default ``linear``, the ``train.ss_*`` decay).
        aux_loss_weights: weight of each auxiliary loss the model's forward returns (1.0 when not listed).
    """

    sampling: str = "linear"
    aux_loss_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training method, built by :func:`build_recipe` from the train section, the device and a model's hints."""

    tcfg: Any
    loss_name: str
    schedule: SamplingSchedule
    amp_dtype: torch.dtype | None
    use_scaler: bool
    aux_loss_weights: Mapping[str, float]

    @property
    def grad_clip(self) -> float:
        return float(self.tcfg.grad_clip)

    def teacher_forcing_prob(self, step: int) -> float:
        return float(self.schedule.prob(self.tcfg, step))

    def mask(self, batch: int, step: int, n_mask: int, device: torch.device, rank: int = 0,
             world_size: int = 1) -> torch.Tensor | None:
        """This rank's rows ``(batch, n_mask)`` of the global batch's scheduled-sampling mask at ``step``."""
        if not self.tcfg.scheduled_sampling or n_mask <= 0:
            return None
        prob = self.teacher_forcing_prob(step)
        full = self.schedule.mask(batch * world_size, n_mask, prob, step, self.tcfg.seed)
        return full[rank::world_size][:batch].to(device)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=self.use_scaler)

    def loss(self, out: Any, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``(total loss, {aux name: value})`` of a network output against ``target`` (frames[:, 1:])."""
        pred, aux = split_output(out)
        total = LOSSES[self.loss_name](pred, target)
        for name, value in aux.items():
            total = total + float(self.aux_loss_weights.get(name, 1.0)) * value
        return total, {name: float(v.detach()) for name, v in aux.items()}


def build_recipe(tcfg: Any, device: torch.device, hints: RecipeHints | None = None) -> Recipe:
    """The training method of ``tcfg`` (the ``train`` section) on ``device``, with a model's ``hints`` applied."""
    hints = hints or RecipeHints()
    loss_fn(tcfg.loss)
    if hints.sampling not in SAMPLING_SCHEDULES:
        raise ConfigError(f"sampling schedule {hints.sampling!r} is not registered; one of "
                          f"{', '.join(sorted(SAMPLING_SCHEDULES))}")
    amp_dtype, use_scaler = amp_settings(tcfg.amp, device)
    return Recipe(tcfg, tcfg.loss, SAMPLING_SCHEDULES[hints.sampling], amp_dtype, use_scaler,
                  dict(hints.aux_loss_weights))
