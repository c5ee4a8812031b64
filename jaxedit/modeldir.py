"""The on-disk format of model directories (generators, editors, encoders).

A model directory is self-describing::

    DIR/
      jaxedit.json    {"format": "jaxedit", "format_version": 1, "kind": "generator" | "editors" | ...,
                       "config": {...}, "source": {...} | null, "created": ISO-8601 UTC,
                       "params_sha256": hex digest of the params (`params_digest`)}
      params/         an orbax PyTree checkpoint of the params (a nested dict of arrays)

`write_model_dir` builds the whole directory beside its destination and renames it into place
(`jaxedit.atomic.atomic_directory`); with `overwrite` it replaces only a model directory of the same
kind that holds nothing else and none of the files the new model is made from.

`read_model_dir` trusts nothing it reads back: the manifest is size-capped (`MAX_MANIFEST_BYTES`),
nesting-capped (`MAX_MANIFEST_DEPTH`) and type-checked before use; the arrays' declared sizes are
bounded before they are restored; the params must match the manifest's `params_sha256`
(directories written before checksums existed have none and load unverified) and every
floating-point param must be finite. Each problem is one `ConfigError` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.atomic import WhyNotReplaceable, atomic_directory, check_destination
from jaxedit.errors import ConfigError, describe_value, sanitize
from jaxedit.io import utc_now_iso
from jaxedit.orbax_logs import one_line, quiet_orbax

FORMAT_NAME = "jaxedit"
FORMAT_VERSION = 1
MANIFEST_FILE = "jaxedit.json"
PARAMS_DIR = "params"
MAX_MANIFEST_BYTES = 1 << 20
MAX_MANIFEST_DEPTH = 64
MAX_PARAMS_BYTES = 16 << 30
"""Largest total size the saved arrays may declare (16 GiB) ..."""
MAX_PARAMS_EXPANSION = 64
"""... and at most this many times the bytes on disk (or 64 MiB), so metadata cannot claim terabytes."""
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MANIFEST_TYPES = {
    "format": (str,),
    "format_version": (int,),
    "kind": (str,),
    "config": (dict,),
    "source": (dict, type(None)),
    "created": (str,),
    "params_sha256": (str,),
}


def params_digest(tree: Any) -> str:
    """sha256 of a params tree in a canonical order: for every leaf (dict keys sorted, joined by
    "/"), its key path, dtype name, shape and raw bytes (C order); non-array leaves by type and repr."""
    digest = hashlib.sha256()

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key in sorted(node, key=str):
                visit(node[key], f"{path}/{key}")
        elif isinstance(node, (list, tuple)):
            for index, item in enumerate(node):
                visit(item, f"{path}/{index}")
        elif isinstance(node, (np.ndarray, np.generic)) or (hasattr(node, "shape") and hasattr(node, "dtype")):
            array = np.ascontiguousarray(np.asarray(node))
            digest.update(f"{path}\0{array.dtype.name}\0{list(array.shape)}\0".encode())
            digest.update(array.reshape(-1).view(np.uint8).data if array.size else b"")
        else:
            digest.update(f"{path}\0{type(node).__name__}\0{node!r}\0".encode())

    visit(tree, "")
    return digest.hexdigest()


def save_pytree(directory: str | os.PathLike, tree: Any) -> None:
    """Save a pytree of arrays with orbax at `directory` (which must not exist yet); a failed write
    (a full disk) is an OSError of one line."""
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    tree = _to_numpy_tree(tree)
    try:
        with quiet_orbax(), ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save(directory, tree)
    except (OSError, ValueError) as error:  # tensorstore reports a failed write (a full disk) as ValueError
        _wait_until_unchanged(directory)
        raise OSError(f"{directory}: cannot write the arrays ({one_line(error)})") from error


def _wait_until_unchanged(directory: Path, quiet_s: float = 0.25, limit_s: float = 10.0) -> None:
    """Wait until nothing orbax writes for `directory` (itself and its temporary siblings,
    `<name>.orbax-checkpoint-tmp...`) has changed for `quiet_s`, at most `limit_s`.

    Orbax returns from a failed save while tensorstore still finishes the save's other writes,
    creating directories and files as it goes; removing them before those end would leave them
    half removed, or have them created again."""
    deadline = time.monotonic() + limit_s
    seen, unchanged_since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = _files_under(directory.parent, prefix=directory.name)
        if now != seen:
            seen, unchanged_since = now, time.monotonic()
        elif time.monotonic() - unchanged_since >= quiet_s:
            return
        time.sleep(0.02)


def _files_under(parent: Path, prefix: str) -> list[tuple[str, int]]:
    """(path, size) of every file and directory under the entries of `parent` named `prefix...`;
    entries that vanish while listed are skipped."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        tops = [entry.path for entry in os.scandir(parent) if entry.name.startswith(prefix)]
        for top in tops:
            for root, names, files in os.walk(top):
                for name in names + files:
                    with contextlib.suppress(FileNotFoundError):
                        found.append((os.path.join(root, name), os.stat(os.path.join(root, name)).st_size))
    return sorted(found)


def load_pytree(directory: str | os.PathLike) -> Any:
    """Restore a pytree saved by `save_pytree`, as numpy arrays.

    The sizes the checkpoint's metadata declares are bounded first (`MAX_PARAMS_BYTES`, and
    `MAX_PARAMS_EXPANSION` times the bytes on disk), so damaged metadata cannot make the restore
    allocate terabytes.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no saved arrays here (expected an orbax checkpoint directory)")
    with quiet_orbax(), ocp.PyTreeCheckpointer() as checkpointer:
        try:
            _check_declared_sizes(checkpointer, directory)
            tree = checkpointer.restore(directory)
        except ConfigError:
            raise
        except Exception as error:  # orbax raises many types for damaged directories
            raise ConfigError(f"{directory}: cannot restore arrays ({type(error).__name__}: {error})") from None
    return _to_numpy_tree(tree)


def _check_declared_sizes(checkpointer: Any, directory: Path) -> None:
    import jax

    metadata = checkpointer.metadata(directory).item_metadata
    tree = getattr(metadata, "tree", metadata)
    declared = 0
    for leaf in jax.tree.leaves(tree):
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        if shape is not None and dtype is not None:
            declared += int(np.prod([int(d) for d in shape], dtype=object)) * np.dtype(dtype).itemsize
    on_disk = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    limit = min(MAX_PARAMS_BYTES, max(MAX_PARAMS_EXPANSION * on_disk, 64 << 20))
    if declared > limit:
        raise ConfigError(
            f"{directory}: the saved arrays declare {declared:,} bytes for {on_disk:,} bytes on disk "
            f"(limit {limit:,}): damaged metadata"
        )


def write_model_dir(
    destination: str | os.PathLike,
    kind: str,
    config: dict,
    params: Any,
    source: dict | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write a self-describing model directory atomically; returns its path.

    The manifest records `params_sha256` (`params_digest` of the params as saved), which
    `read_model_dir` verifies. `destination` must not exist, unless `overwrite` and it is a model
    directory of the same `kind` holding nothing else (`why_not_replace_model_dir`) and none of the
    files the model is made from (`inputs` and the "path" entries of `source`); the rules of
    `jaxedit.atomic.atomic_directory` apply (a destination that appears meanwhile is never replaced).
    """
    params = _to_numpy_tree(params)  # once: device arrays are copied to the host here
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "source": source,
        "created": utc_now_iso(),
        "params_sha256": params_digest(params),
    }
    with atomic_directory(
        destination, overwrite, why_not_replace_model_dir(kind), [*inputs, *source_paths(source)]
    ) as staging:
        try:
            save_pytree(staging / PARAMS_DIR, params)  # already numpy: not copied again
        except OSError as error:  # named by the destination: the staging directory is removed
            raise OSError(
                f"{Path(destination)}: cannot write the arrays ({one_line(error.__cause__ or error)})"
            ) from None
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return Path(destination)


def source_paths(source: Any) -> list[str]:
    """The "path" entries of a manifest's `source` record (the files a model was converted from)."""
    found: list[str] = []

    def visit(node: Any, depth: int) -> None:
        if depth > 4:
            return
        if isinstance(node, dict):
            if isinstance(node.get("path"), str):
                found.append(node["path"])
            for value in node.values():
                visit(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                visit(value, depth + 1)

    visit(source, 0)
    return found


def why_not_replace_model_dir(kind: str) -> WhyNotReplaceable:
    """The check `write_model_dir(..., overwrite=True)` makes of an existing directory: None when it
    holds nothing but what `write_model_dir` writes and its manifest (`read_manifest`) is of `kind`,
    else why it may not be replaced."""

    def why_not(directory: Path) -> str | None:
        if not (directory / MANIFEST_FILE).is_file():
            return f"it is not a jaxedit model directory (no {MANIFEST_FILE})"
        try:
            found = read_manifest(directory).get("kind")
        except ConfigError:
            return f"its {MANIFEST_FILE} is not a readable jaxedit manifest"
        if found != kind:
            return f"it is a jaxedit {sanitize(str(found), 40)!r} directory, not {kind!r}"
        others = sorted(entry.name for entry in os.scandir(directory) if entry.name not in (MANIFEST_FILE, PARAMS_DIR))
        if others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            return f"it holds {sanitize(others[0], 60)!r}{more}, which jaxedit does not write there"
        return None

    return why_not


def check_model_destination(
    destination: str | os.PathLike, kind: str, overwrite: bool = False, inputs: Sequence[str | os.PathLike] = ()
) -> None:
    """Raise now the ConfigError `write_model_dir(destination, kind, ..., overwrite, inputs)` would
    raise about its destination (it exists; it may not be replaced), before any long work."""
    check_destination(destination, overwrite, why_not_replace_model_dir(kind), inputs)


def read_manifest(directory: str | os.PathLike, expected_kind: str | None = None) -> dict:
    """The manifest of a model directory, checked for format and (optionally) kind."""
    directory = Path(directory)
    if not directory.exists():
        raise ConfigError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory (expected a directory written by jaxedit convert or training)")
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ConfigError(f"{directory}: not a jaxedit model directory (no {MANIFEST_FILE})")
    manifest = parse_json_bounded(path, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ConfigError(f"{path}: not a jaxedit manifest")
    if manifest.get("format_version") != FORMAT_VERSION or type(manifest.get("format_version")) is not int:
        raise ConfigError(
            f"{path}: format_version {describe_value(manifest.get('format_version'))}, this jaxedit reads {FORMAT_VERSION}"
        )
    for key, types in _MANIFEST_TYPES.items():
        if key in manifest and not isinstance(manifest[key], types):
            expected = " or ".join(
                "null" if t is type(None) else {"dict": "an object"}.get(t.__name__, f"a {t.__name__}") for t in types
            )
            raise ConfigError(f"{path}: {key} is {describe_value(manifest[key])}, expected {expected}")
    for key in ("kind", "config"):
        if key not in manifest:
            raise ConfigError(f"{path}: manifest has no {key!r}")
    if "params_sha256" in manifest and not _DIGEST.match(manifest["params_sha256"]):
        raise ConfigError(f"{path}: params_sha256 is not a sha256 hex digest")
    if expected_kind is not None and manifest.get("kind") != expected_kind:
        raise ConfigError(f"{directory}: holds {describe_value(manifest.get('kind'))}, expected {expected_kind!r}")
    return manifest


def parse_json_bounded(
    path: Path, what: str, max_bytes: int = MAX_MANIFEST_BYTES, max_depth: int = MAX_MANIFEST_DEPTH
) -> Any:
    """The JSON value in `path`, refusing (ConfigError, one line) a file over `max_bytes` (without
    reading it all), nesting deeper than `max_depth`, invalid UTF-8 or JSON, NaN/Infinity literals."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:
                raise ConfigError(f"{path}: {what} larger than {max_bytes:,} bytes (damaged?)")
            raw = handle.read(max_bytes + 1)
    except OSError as error:
        raise ConfigError(f"{path}: unreadable {what} ({error.strerror or type(error).__name__})") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{path}: {what} larger than {max_bytes:,} bytes (damaged?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None
    depth = _json_depth(text)
    if depth > max_depth:
        raise ConfigError(f"{path}: {what} nests {depth} levels deep (limit {max_depth})")

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: unreadable {what} ({type(error).__name__}: {error})") from None


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings ignored); linear time."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    brackets = np.frombuffer(re.sub(r"[^\[\]{}]", "", unquoted).encode("ascii"), np.uint8)
    if brackets.size == 0:
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def read_model_dir(directory: str | os.PathLike, expected_kind: str | None = None) -> tuple[dict, Any]:
    """(manifest, params) of a model directory written by `write_model_dir`.

    Checks, besides `read_manifest`: the params match the manifest's `params_sha256` (a directory
    written before checksums existed has none; its params load unverified) and every
    floating-point param is finite. One-line ConfigError otherwise.
    """
    manifest = read_manifest(directory, expected_kind)
    params = load_pytree(Path(directory) / PARAMS_DIR)
    expected = manifest.get("params_sha256")
    if expected is not None and params_digest(params) != expected:
        raise ConfigError(f"{directory}: params do not match their checksum (file damaged?)")
    check_finite_params(params, str(directory))
    return manifest, params


def check_finite_params(tree: Any, where: str, path: str = "") -> None:
    """ConfigError naming the first floating-point param holding NaN or infinity."""
    if isinstance(tree, dict):
        for key in sorted(tree, key=str):
            check_finite_params(tree[key], where, f"{path}/{key}")
    elif isinstance(tree, (list, tuple)):
        for index, item in enumerate(tree):
            check_finite_params(item, where, f"{path}/{index}")
    elif isinstance(tree, float) or (
        isinstance(tree, np.ndarray) and (tree.dtype.kind == "f" or tree.dtype.name == "bfloat16")
    ):
        if not np.all(np.isfinite(np.asarray(tree, np.float32))):
            raise ConfigError(f"{where}: params {path or '/'} hold NaN or infinite values")


def _to_numpy_tree(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _to_numpy_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy_tree(v) for v in tree)
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return np.asarray(tree)
    return tree
