"""Generic dataclass <-> YAML/JSON helpers: convert and type-check values, refuse unknown keys, flatten.

Nothing here knows the sections of ``params.yaml`` (that is :mod:`mslstm.config`); these helpers work on any
dataclass and raise :class:`~mslstm.errors.ConfigError` naming the dotted key.

    from mslstm.configtools import from_dict, to_dict, flatten
    cfg = from_dict(TrainConfig, {"lr": 1e-3}, "train")     # ConfigError("train.lr: ...") on a bad value
    to_dict(cfg)                                           # plain dicts and lists
    flatten({"train": {"lr": 1}})                          # {"train.lr": 1}

Supported annotations: int, float, bool, str, Literal, Optional / unions, list / tuple (fixed or variadic),
dict, nested dataclasses. A dataclass may define ``validate(self)`` raising ``ValueError("key: reason")``,
which becomes ``ConfigError("<section>.key: reason")``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

from mslstm.errors import ConfigError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool):  # YAML 1.1 reads a bare off/on/no/yes as a boolean: take the word back
            word = next((w for w in (("on", "yes", "true") if value else ("off", "no", "false")) if w in choices),
                        None)
            value = word if word is not None else value
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
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
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


def from_dict(cls: type[T], data: Mapping[str, Any] | None, section: str,
              defaults: Mapping[str, Any] | None = None) -> T:
    """Build dataclass ``cls`` from a mapping: unknown keys, wrong types and failed ``validate()`` raise.

    Args:
        cls: the dataclass.
        data: the values given (None = none).
        section: the dotted name errors start with (``"train"`` -> ``"train.lr: ..."``).
        defaults: values used for the keys ``data`` leaves out, instead of ``cls``'s own defaults.
    """
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
    merged = {**{k: v for k, v in (defaults or {}).items() if k in fields}, **data}
    kwargs = {name: coerce(value, hints[name], f"{section}.{name}") for name, value in merged.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:  # ConfigError is a ValueError too
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
