"""ModelConfig: the one dataclass every network of the family takes.

Defaults are the paper's reference configuration (the authors' Moving MNIST setup: 64x64 frames, 10 -> 10 frames,
1x1 embedding to 64 channels, 6 recurrent layers of 64 channels, pyramid scales 1, 2, 4, 4, 2, 1). ``params.yaml``
sets a small CPU variant. ``validate()`` raises ``ValueError("key: reason")``; ``mslstm.config`` turns it into a
``ConfigError`` naming the file. This module must not import ``mslstm``.
"""
from __future__ import annotations

from dataclasses import dataclass


def _is_pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass
class ModelConfig:
    """Hyper-parameters of one network of the family (defaults: paper reference configuration).

    Attributes:
        name: a registered model (``model.registry.model_names()``; ``mslstm models`` lists them): ``convlstm``,
            ``smslstm`` (ConvLSTM pyramid), ``tmslstm`` (MK-LSTM stack), ``mslstm`` (MK pyramid), ...
        in_channels: channels C of a frame.
        frame_size: (H, W) of a frame.
        input_frames: frames given (teacher-forced steps).
        output_frames: frames to predict.
        hidden: channels of the embedding and of every recurrent layer.
        layers: number of recurrent layers.
        kernel_size: kernel of the ConvLSTM cell (convlstm, smslstm).
        mk_kernels: kernels of the MK-LSTM branches (tmslstm, mslstm).
        scales: downsampling factor of each layer of the pyramid (smslstm, mslstm); palindrome of powers of two,
            starting at 1, rising then falling by x2 at most between neighbours; ``len == layers``.
        patch_size: space-to-depth patch p: frames (C, H, W) are processed as (C*p*p, H/p, W/p).
        channels_last: keep weights and activations in the channels-last memory format.
    """

    name: str = "mslstm"
    in_channels: int = 1
    frame_size: tuple[int, int] = (64, 64)
    input_frames: int = 10
    output_frames: int = 10
    hidden: int = 64
    layers: int = 6
    kernel_size: int = 3
    mk_kernels: tuple[int, ...] = (3, 5)
    scales: tuple[int, ...] = (1, 2, 4, 4, 2, 1)
    patch_size: int = 1
    channels_last: bool = False

    def __post_init__(self) -> None:
        # Checkpoints and JSON give lists; keep tuples so that configs compare and hash alike.
        self.frame_size = tuple(self.frame_size)  # type: ignore[assignment]
        self.mk_kernels = tuple(self.mk_kernels)
        self.scales = tuple(self.scales)

    @property
    def pyramid(self) -> bool:
        """The registered model runs its layers in the mirrored pyramid of ``scales``."""
        from model.registry import get_spec

        return get_spec(self.name).arrangement == "pyramid"

    @property
    def layer_scales(self) -> tuple[int, ...]:
        """Scale of each layer as built: ``scales`` for the pyramids, all 1 for the full-resolution stacks."""
        from model.registry import get_spec

        return get_spec(self.name).layer_scales(self)

    @property
    def size_factor(self) -> int:
        """H and W must be multiples of this: patch_size x the largest downsampling factor of the network."""
        return self.patch_size * max(self.layer_scales)

    @property
    def total_frames(self) -> int:
        return self.input_frames + self.output_frames

    def validate(self) -> None:
        """Raise ``ValueError("key: reason and fix")`` on the first bad value."""
        from model.registry import get_spec

        get_spec(self.name)  # ValueError("name: 'x' is not a model; use one of ...")
        for key in ("in_channels", "input_frames", "output_frames", "hidden", "layers", "patch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: must be a positive integer (got {value!r})")
        if len(self.frame_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                            for v in self.frame_size):
            raise ValueError(f"frame_size: must be two positive integers [H, W] (got {list(self.frame_size)})")
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: must be a positive odd integer (got {self.kernel_size!r})")
        if not self.mk_kernels:
            raise ValueError("mk_kernels: needs at least one kernel size, e.g. [3, 5]")
        for k in self.mk_kernels:
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"mk_kernels: every kernel must be a positive odd integer (got {list(self.mk_kernels)})")
        if len(set(self.mk_kernels)) != len(self.mk_kernels):
            raise ValueError(f"mk_kernels: kernels must differ (got {list(self.mk_kernels)})")
        validate_scales(self.scales, self.layers)
        f = self.size_factor
        h, w = self.frame_size
        if h % f or w % f:
            parts = f"patch_size {self.patch_size} x pyramid factor {max(self.layer_scales)}"
            raise ValueError(
                f"frame_size: {tuple(self.frame_size)} is not divisible by {f} = {parts}; use a multiple of {f}"
            )


def validate_scales(scales: tuple[int, ...], layers: int) -> None:
    """Check a pyramid: len == layers, powers of two, starts at 1, palindrome, rises then falls by x2 at most."""
    s = list(scales)
    if len(s) != layers:
        raise ValueError(f"scales: has {len(s)} entries but layers is {layers}; give one scale per layer")
    if any(isinstance(v, bool) or not isinstance(v, int) or not _is_pow2(v) for v in s):
        raise ValueError(f"scales: every scale must be a power of two (1, 2, 4, ...) (got {s})")
    if s[0] != 1:
        raise ValueError(f"scales: the first layer must run at full resolution (scale 1) (got {s})")
    if s != s[::-1]:
        raise ValueError(f"scales: must be a palindrome so that each decoder layer has an encoder twin (got {s})")
    for a, b in zip(s, s[1:]):
        if b not in (a, 2 * a) and a not in (b, 2 * b):
            raise ValueError(f"scales: neighbours may change by a factor 2 at most (got {a} -> {b} in {s})")
    peak = s.index(max(s))
    if any(b < a for a, b in zip(s[: peak + 1], s[1 : peak + 1])) or any(
        b > a for a, b in zip(s[peak:], s[peak + 1 :])
    ):
        raise ValueError(f"scales: must rise then fall (one pyramid), e.g. [1, 2, 4, 4, 2, 1] (got {s})")
