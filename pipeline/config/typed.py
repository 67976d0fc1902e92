"""Build typed config dataclasses from plain YAML data, refusing anything unexpected.

Every error names the key path (``sources[3].path``) so that the spec loader can prefix the
file name and a user can find the offending line. Stage owners declare their section as a frozen
dataclass with defaults; nothing else is needed for it to be validated and documented.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A spec value is missing, unknown or of the wrong type; ``path`` says where."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def build(cls: type, data: Any, path: str = "") -> Any:
    """Return an instance of dataclass ``cls`` built from ``data`` (a mapping), validating types."""
    return _convert(cls, data, path)


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, path)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(path, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(path, f"must be {_type_name(tp)}, got null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"must be a list, got {type(value).__name__}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(item_tp, v, _join(path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
        key_tp, val_tp = get_args(tp) or (str, Any)
        return {_convert(key_tp, k, path): _convert(val_tp, v, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _build_dataclass(cls: type, value: Any, path: str) -> Any:
    if value is None:
        value = {}
    if dataclasses.is_dataclass(value) and isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a mapping, got {type(value).__name__} {value!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(
            _join(path, str(unknown[0])),
            f"unknown key (expected one of: {', '.join(sorted(fields))})",
        )
    kwargs = {}
    for name, field in fields.items():
        field_path = _join(path, name)
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], field_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(field_path, "is required")
    try:
        instance = cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(path, exc.path) if exc.path else path, exc.message) from None
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None
    return instance


def to_plain(instance: Any) -> Any:
    """The inverse of ``build``: plain dicts/lists, for hashing and reports."""
    if dataclasses.is_dataclass(instance):
        # A removed setting (``metadata={"removed": True}``) still loads from an old spec, with a warning, but is
        # neither shown (`curamix defaults`) nor hashed.
        return {f.name: to_plain(getattr(instance, f.name)) for f in dataclasses.fields(instance)
                if not f.metadata.get("removed")}
    if isinstance(instance, (list, tuple)):
        return [to_plain(v) for v in instance]
    if isinstance(instance, dict):
        return {k: to_plain(v) for k, v in instance.items()}
    return instance


__all__ = ["ConfigError", "build", "to_plain"]
