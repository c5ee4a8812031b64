"""Configurations as frozen dataclasses: one way to check, change, save and load them.

Every configuration object (`MethodPreset`, `TrainConfig`, `PipelineSettings`, `SuiteSettings`) is a
frozen dataclass whose field annotations are the types: `int`, `float` (finite), `bool`, `str`,
`tuple[T, ...]`, `tuple[A, B]`, `X | None`, or another such dataclass. Each calls `check_types(self)`
first in its `__post_init__` and then checks its own ranges, so an instance that exists is valid.

- `override(config, {"lr": 1e-3, "method.epochs": 2})`: a copy with fields changed, by name or by
  dotted path into nested configs. Whole fields are replaced before nested paths inside them, so
  `{"method": other_preset, "method.lr": 0.5}` swaps the preset, then sets its lr. An unknown name
  is a one-line `ConfigError` suggesting the closest ones.
- `to_dict(config)` / `from_dict(cls, data)`: JSON-ready dicts (tuples as lists, nested configs as
  dicts) and back, checked like any other instance.
- `fields_of(cls)`: the (dotted path, type, default) of every settable field, which is what the
  command line turns into flags (`jaxedit.cli.types.add_config_flags`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from jaxedit.errors import ConfigError

T = typing.TypeVar("T")


def label(config: Any) -> str:
    """How messages name a config: its class, and its `name` when it has one."""
    name = getattr(config, "name", None)
    return f"{type(config).__name__} {name!r}" if isinstance(name, str) and name else type(config).__name__


def field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved annotation} of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def optional_inner(annotation: Any) -> Any | None:
    """X for `X | None`, else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0]
    return None


def describe_type(annotation: Any) -> str:
    """'an integer', 'a tuple of 2 numbers', ... for messages."""
    inner = optional_inner(annotation)
    if inner is not None:
        return f"{describe_type(inner)} or None"
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a tuple of {len(args)} {_plural(args[0])}"
        return f"a tuple ({', '.join(describe_type(a) for a in args)})"
    if dataclasses.is_dataclass(annotation):
        return f"a {annotation.__name__}"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(
        annotation, str(annotation)
    )


def _plural(annotation: Any) -> str:
    return {int: "integers", float: "finite numbers", bool: "booleans", str: "strings"}.get(annotation, str(annotation))


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """`value` as a value of `annotation` (ints for floats, lists for tuples, numpy scalars for
    Python ones), or a one-line ConfigError `where: must be ..., got ...`."""
    inner = optional_inner(annotation)
    if inner is not None and value is not None:
        try:
            return coerce(value, inner, where)
        except ConfigError:
            raise ConfigError(f"{where} must be {describe_type(annotation)}, got {value!r}") from None
    if inner is not None:
        return None
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, (tuple, list)):
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(item, args[0], where) for item in value)
        if len(value) == len(args):
            return tuple(coerce(item, arg, where) for item, arg in zip(value, args))
    elif annotation is bool:
        if isinstance(value, bool) or _is_numpy(value, "b"):
            return bool(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool) or _is_numpy(value, "iu"):
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) or _is_numpy(value, "iuf"):
            if math.isfinite(float(value)):
                return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
    elif isinstance(value, annotation):
        return value
    raise ConfigError(f"{where} must be {describe_type(annotation)}, got {value!r}")


def _is_numpy(value: Any, kinds: str) -> bool:
    dtype = getattr(value, "dtype", None)
    return getattr(value, "shape", None) == () and dtype is not None and dtype.kind in kinds


def check_types(config: Any) -> None:
    """Coerce every field of a frozen config to its annotation in place (lists -> tuples, ints ->
    floats), or raise a one-line ConfigError naming the field. Call first in `__post_init__`."""
    where = label(config)
    for name, annotation in field_types(type(config)).items():
        value = coerce(getattr(config, name), annotation, f"{where}: {name}")
        object.__setattr__(config, name, value)


def fields_of(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, annotation, default or dataclasses.MISSING) of every field, nested configs
    expanded (their own path is not listed)."""
    for field in dataclasses.fields(cls):
        annotation = field_types(cls)[field.name]
        path = prefix + field.name
        if dataclasses.is_dataclass(annotation):
            yield from fields_of(annotation, path + ".")
        else:
            default = field.default
            if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            yield path, annotation, default


def _paths(config: Any) -> list[str]:
    """Every settable path of an instance: plain fields, nested configs and their fields."""
    paths = []
    for field in dataclasses.fields(config):
        paths.append(field.name)
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            paths.extend(f"{field.name}.{inner}" for inner in _paths(value))
    return paths


def override(config: T, changes: Mapping[str, Any]) -> T:
    """A copy of `config` with `changes` applied ({field or dotted path: value}), validated again."""
    whole: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    names = {f.name for f in dataclasses.fields(config)}
    for path, value in changes.items():
        head, dot, rest = path.partition(".")
        value_here = getattr(config, head, None) if head in names else None
        if head not in names or (dot and not dataclasses.is_dataclass(whole.get(head, value_here))):
            close = difflib.get_close_matches(path, _paths(config), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{label(config)} has no field {path!r}{hint}")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            whole[head] = value
    for head, inner in nested.items():
        whole[head] = override(whole.get(head, getattr(config, head)), inner)
    return dataclasses.replace(config, **whole)


def to_dict(config: Any) -> dict:
    """JSON-ready dict: nested configs as dicts, tuples as lists."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def from_dict(cls: type[T], data: Any) -> T:
    """Inverse of `to_dict`: unknown or missing fields and wrong types are one-line ConfigErrors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if unknown or missing:
        raise ConfigError(
            f"{cls.__name__}: "
            + "; ".join(
                part
                for part in (
                    f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                    f"missing field(s) {', '.join(missing)}" if missing else "",
                )
                if part
            )
        )
    types_ = field_types(cls)
    values = {}
    for name, value in data.items():
        annotation = types_[name]
        if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
            value = from_dict(annotation, value)
        values[name] = value
    return cls(**values)
