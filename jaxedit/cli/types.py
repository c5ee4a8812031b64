"""argparse `type=` functions, and flags generated from config dataclasses.

Each function turns one command-line string into a value or raises `argparse.ArgumentTypeError`,
which argparse reports as `PROG: error: argument --FLAG: MESSAGE` in one line (exit status 2).
`library(parse)` wraps a library parser that raises `JaxeditError` the same way, so a value is
checked once, by the library, and named by its flag here.

`add_config_flags(parser, cls, ...)` adds one flag per field of a config dataclass
(`jaxedit.config`), typed by its annotation; `config_changes(args)` collects the flags given as a
{dotted path: value} mapping for `jaxedit.config.override`, and `apply_flags` applies them,
putting the flag of the first value the config refuses in front of its message.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jaxedit import config as cfg
from jaxedit.errors import ConfigError, JaxeditError

SEED_LIMIT = 2**63
"""Seeds are integers 0..2**63-1 (they must fit in a signed 64-bit integer)."""

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def integer(text: str) -> int:
    """Any integer ("1_000" allowed)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def boolean(text: str) -> bool:
    """true/false, yes/no, on/off, 1/0."""
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def seed(text: str) -> int:
    """A seed of JAX keys: an integer 0..2**63-1."""
    value = integer(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an integer 0..2**63-1, got {text!r}")
    return value


def numpy_seed(text: str) -> int:
    """A `numpy.random.RandomState` seed (how seeds pick z): an integer 0..2**32-1."""
    value = integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer 0..2**32-1, got {text!r}")
    return value


def tuple_of(item: Callable[[str], Any], length: int | None = None) -> Callable[[str], tuple]:
    """Comma-separated items, e.g. `32,16` -> (32, 16); `length` items exactly when given."""

    def parse(text: str) -> tuple:
        parts = [part.strip() for part in text.strip().strip("()[]").split(",") if part.strip()]
        if length is not None and len(parts) != length:
            raise argparse.ArgumentTypeError(f"expected {length} comma-separated values, got {text!r}")
        return tuple(item(part) for part in parts)

    parse.__name__ = f"tuple of {getattr(item, '__name__', 'values')}"
    return parse


def optional(item: Callable[[str], Any]) -> Callable[[str], Any]:
    """`none` (or an empty string) -> None, anything else parsed by `item`."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("none", "null", "") else item(text)

    parse.__name__ = getattr(item, "__name__", "value")
    return parse


def library(parse: Callable[[str], Any], name: str = "value") -> Callable[[str], Any]:
    """A library parser as an argparse type: its `JaxeditError` becomes the flag's message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except JaxeditError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = name
    return convert


def method_preset(text: str):
    """A method preset name ("paper", "official") -> its `MethodPreset`."""
    from jaxedit.latent.presets import get_preset

    return library(get_preset, "preset")(text)


def add_preset_flag(parser, help: str) -> None:
    """`--preset {paper,official}`: swaps the whole method preset (stored as `method`)."""
    parser.add_argument(
        "--preset", dest="method", type=method_preset, default=argparse.SUPPRESS, metavar="{paper,official}", help=help
    )


def attribute_list(text: str) -> str:
    """Attribute names or indices, comma-separated, or 'all' (checked here, kept as text)."""
    from jaxedit.attributes import parse_attributes

    library(parse_attributes)(text)
    return text


def layer_range(text: str) -> str:
    """W+ layers like '0-10', '0,2,4-6' or 'all' (syntax checked here, the range against the
    latent later; kept as text)."""
    from jaxedit.editing.edits import parse_layers

    if text.strip().lower() != "all":
        library(parse_layers)(text)
    return text


def for_annotation(annotation: Any) -> tuple[Callable[[str], Any], str]:
    """(type function, metavar) for a config field's annotation."""
    inner = cfg.optional_inner(annotation)
    if inner is not None:
        parse, metavar = for_annotation(inner)
        return optional(parse), f"{metavar}|none"
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            item, metavar = for_annotation(args[0])
            return tuple_of(item), f"{metavar},..."
        item, metavar = for_annotation(args[0])
        return tuple_of(item, len(args)), ",".join([metavar] * len(args))
    simple = {int: (integer, "INT"), float: (finite_float, "FLOAT"), bool: (boolean, "BOOL"), str: (str, "TEXT")}
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"no command-line type for {annotation!r}")


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    defaults: Any = None,
    prefix: str = "",
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    hyphens: bool = False,
    help: Mapping[str, str] | None = None,
    types: Mapping[str, Callable[[str], Any]] | None = None,
    show_defaults: bool = True,
) -> dict[str, str]:
    """One flag per field of `cls` (paths relative to it; `only`/`skip` choose them), dest = `prefix`
    + path, absent from the namespace unless given (argparse.SUPPRESS). `--field` spells the path
    (nested: `--method.lr`), or `--field-name` with `hyphens`; `rename` maps a path to another flag
    name. Help shows the class defaults, or those of the instance `defaults`. Returns {dest: flag}."""
    chosen = set(only) if only is not None else None
    flags = {}
    for path, annotation, default in cfg.fields_of(cls):
        if any(path == s or path.startswith(s + ".") for s in skip) or (chosen is not None and path not in chosen):
            continue
        name = (rename or {}).get(path, path.replace("_", "-") if hyphens else path)
        parse, metavar = for_annotation(annotation)
        parse = (types or {}).get(path, parse)
        text = (help or {}).get(path, "")
        if defaults is not None:
            default = defaults
            for part in path.split("."):
                default = getattr(default, part)
        if show_defaults and default is not dataclasses.MISSING:
            shown = (
                "none" if default is None else ",".join(map(str, default)) if isinstance(default, tuple) else default
            )
            text = f"{text} (default {shown})" if text else f"default {shown}"
        flag = f"--{name}"
        parser.add_argument(flag, dest=prefix + path, type=parse, metavar=metavar, default=argparse.SUPPRESS, help=text)
        flags[prefix + path] = flag
    return flags


def config_changes(args: argparse.Namespace, dests: Iterable[str]) -> dict[str, Any]:
    """{dest: value} of the flags among `dests` that were given."""
    return {dest: getattr(args, dest) for dest in dests if hasattr(args, dest)}


def apply_flags(config: Any, changes: Mapping[str, Any], flags: Mapping[str, str]) -> Any:
    """`jaxedit.config.override(config, changes)`; when the config refuses a value given by a flag
    (the changes pass without it, or it fails alone), the ConfigError names the flag first:
    `--lr 0.0: MethodPreset 'official': lr must be > 0`."""
    try:
        return cfg.override(config, changes)
    except ConfigError as refused:
        culprit, message = None, str(refused)
        for dest in changes:
            try:
                cfg.override(config, {key: value for key, value in changes.items() if key != dest})
                culprit = dest
                break
            except ConfigError:
                try:
                    cfg.override(config, {dest: changes[dest]})
                except ConfigError as alone:
                    culprit, message = dest, str(alone)
                    break
        if culprit is None:
            raise
        value = changes[culprit]
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else getattr(value, "name", value)
        flag = flags.get(culprit, culprit)
        raise ConfigError(f"{flag}{'' if flag.endswith('=') else ' '}{shown}: {message}") from None
