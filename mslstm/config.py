"""The one validated config: ``params.yaml`` <-> typed dataclasses, one section per step.

Each step owns its section dataclass (``model.ModelConfig``, ``mslstm.data.config.DataConfig``, ...); this module
only assembles them, converts YAML to typed values, applies ``section.key=value`` overrides and turns every bad
value into a :class:`~mslstm.errors.ConfigError` that names the file and the key.

A section dataclass may define ``validate(self) -> None`` that raises ``ValueError("key: reason")``; the loader
re-raises it as ``ConfigError("params.yaml: <section>.key: reason")``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from mslstm.errors import ConfigError

T = TypeVar("T")

DEFAULT_PARAMS = "params.yaml"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, choices))} (got {value!r})")
        return value
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple or tp is tuple else out
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys, wrong types and failed ``validate()`` raise."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]}: unknown key (known keys: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(value, hints[name], f"{section}.{name}") for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"{section}.{exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{section}.{exc}") from exc
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML/JSON-able structures (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}} -> {"train.lr": 1}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _sections() -> dict[str, type]:
    # Imported here so that `import mslstm.config` stays cheap and each step owns its own section.
    from model.config import ModelConfig
    from mslstm.data.config import DataConfig, ValidateConfig
    from mslstm.evaluation.config import AblationConfig, EvaluateConfig, ProfileConfig, RegisterConfig
    from mslstm.training.config import TrackingConfig, TrainConfig
    from pipelines.config import PipelineConfig

    return {
        "data": DataConfig,
        "validate": ValidateConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "tracking": TrackingConfig,
        "evaluate": EvaluateConfig,
        "profile": ProfileConfig,
        "register": RegisterConfig,
        "ablation": AblationConfig,
        "pipeline": PipelineConfig,
    }


@dataclasses.dataclass
class Config:
    """The whole validated ``params.yaml``. Attribute per section: ``cfg.train.lr``, ``cfg.model.name``..."""

    data: Any
    validate: Any
    model: Any
    train: Any
    tracking: Any
    evaluate: Any
    profile: Any
    register: Any
    ablation: Any
    pipeline: Any
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        return {name: to_dict(getattr(self, name)) for name in _sections()}

    def flat(self) -> dict[str, Any]:
        return flatten(self.to_dict())

    def replace(self, overrides: Sequence[str] | Mapping[str, Any]) -> "Config":
        """A new Config with ``section.key=value`` overrides applied (validated again)."""
        return config_from_dict(_apply_overrides(self.to_dict(), overrides), self.source)


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
                if node is tree and part not in _sections():
                    raise ConfigError(f"{key}: unknown section {part!r} (known: {', '.join(_sections())})")
                node = node.setdefault(part, {})
            else:
                node = node[part]
        node[parts[-1]] = value
    return tree


def config_from_dict(tree: Mapping[str, Any] | None, source: str = "<dict>") -> Config:
    """Validate a nested mapping (e.g. parsed ``params.yaml``) into a :class:`Config`."""
    tree = dict(tree or {})
    sections = _sections()
    unknown = sorted(set(tree) - set(sections))
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown section (known: {', '.join(sections)})")
    built = {}
    for name, cls in sections.items():
        try:
            built[name] = from_dict(cls, tree.get(name), name)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    cfg = Config(**built, source=source)
    _cross_check(cfg)
    return cfg


def _cross_check(cfg: Config) -> None:
    """Checks that span sections (frame counts/sizes of data vs model)."""
    d, m = cfg.data, cfg.model
    for key in ("input_frames", "output_frames"):
        if hasattr(d, key) and hasattr(m, key) and getattr(d, key) != getattr(m, key):
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
