"""The one validated config: ``params.yaml`` <-> typed dataclasses, one section per step.

Each step owns its section dataclass (``model.ModelConfig``, ``mslstm.data.config.DataConfig``, ...); this module
only assembles them into :class:`Config`, applies ``section.key=value`` overrides and turns every bad value into a
:class:`~mslstm.errors.ConfigError` that names the file and the key. The generic conversion (types, unknown keys,
``validate()``) is :mod:`mslstm.configtools`.

Defaults: ``Config()`` IS the embedded default (the small CPU configuration), and ``params.yaml`` writes out exactly
these values (a test fails when they drift). Every section's defaults are its dataclass's defaults, except the
model: ``ModelConfig()`` is the paper's reference network, the embedded default a small CPU variant of it
(:func:`embedded_model`).

A section dataclass may define ``validate(self) -> None`` that raises ``ValueError("key: reason")``; the loader
re-raises it as ``ConfigError("params.yaml: <section>.key: reason")``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, get_type_hints

import yaml

from model.config import ModelConfig
from mslstm.configtools import flatten, from_dict, to_dict
from mslstm.data.config import DataConfig, ValidateConfig
from mslstm.errors import ConfigError
from mslstm.evaluation.config import AblationConfig, EvaluateConfig, ProfileConfig, RegisterConfig
from mslstm.pipeline_config import PipelineConfig
from mslstm.training.config import TrackingConfig, TrainConfig

__all__ = [
    "Config", "DEFAULT_PARAMS", "SECTIONS", "config_from_dict", "embedded_model", "flatten", "from_dict",
    "load_config", "parse_override", "to_dict",
]

DEFAULT_PARAMS = "params.yaml"


def embedded_model() -> ModelConfig:
    """The embedded default's network: the paper's MS-LSTM, small enough for 2 CPU cores (32 channels, 4 layers,
    pyramid 1-2-2-1, 64x64x1 frames run as 8x8x64 patches; bench/quality_log.md says why)."""
    return ModelConfig(hidden=32, layers=4, scales=(1, 2, 2, 1), patch_size=8)


@dataclass
class Config:
    """The whole validated ``params.yaml``. Attribute per section: ``cfg.train.lr``, ``cfg.model.name``...

    ``Config()`` is the embedded default.
    """

    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    model: ModelConfig = field(default_factory=embedded_model)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        return {name: to_dict(getattr(self, name)) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        return flatten(self.to_dict())

    def replace(self, overrides: Sequence[str] | Mapping[str, Any]) -> "Config":
        """A new Config with ``section.key=value`` overrides applied (validated again)."""
        return config_from_dict(_apply_overrides(self.to_dict(), overrides), self.source)


#: Section name -> its dataclass, in the order of ``params.yaml`` (one per step).
SECTIONS: dict[str, type] = {
    name: tp for name, tp in get_type_hints(Config).items() if dataclasses.is_dataclass(tp)
}


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=1e-3" -> ("train.lr", 0.001)`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if "." not in key:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads "1e-3" as a string; accept scientific notation as a number.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key, value


def _apply_overrides(tree: dict[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                if node is tree and part not in SECTIONS:
                    raise ConfigError(f"{key}: unknown section {part!r} (known: {', '.join(SECTIONS)})")
                node = node.setdefault(part, {})
            else:
                node = node[part]
        node[parts[-1]] = value
    return tree


def config_from_dict(tree: Mapping[str, Any] | None, source: str = "<dict>") -> Config:
    """Validate a nested mapping (e.g. parsed ``params.yaml``) into a :class:`Config`."""
    tree = dict(tree or {})
    unknown = sorted(set(tree) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown section (known: {', '.join(SECTIONS)})")
    defaults = Config().to_dict()
    built = {}
    for name, cls in SECTIONS.items():
        try:
            built[name] = from_dict(cls, tree.get(name), name, defaults=defaults[name])
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    cfg = Config(**built, source=source)
    _cross_check(cfg)
    return cfg


def _cross_check(cfg: Config) -> None:
    """Checks that span sections (frame counts/sizes of data vs model)."""
    d, m = cfg.data, cfg.model
    for key in ("input_frames", "output_frames"):
        if getattr(d, key) != getattr(m, key):
            raise ConfigError(
                f"{cfg.source}: model.{key} ({getattr(m, key)}) differs from data.{key} ({getattr(d, key)}); set both alike"
            )


def load_config(path: str | Path | None = DEFAULT_PARAMS, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Config:
    """Read ``params.yaml`` (or defaults when ``path`` is None), apply overrides, validate everything."""
    tree: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    tree = _apply_overrides(tree, overrides)
    return config_from_dict(tree, source)
