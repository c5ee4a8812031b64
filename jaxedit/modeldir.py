"""The on-disk format of model directories (generators, editors, encoders).

A model directory is self-describing::

    DIR/
      jaxedit.json    {"format": "jaxedit", "format_version": 1, "kind": "generator" | "editors" | ...,
                       "config": {...}, "source": {...} | null, "created": ISO-8601 UTC}
      params/         an orbax PyTree checkpoint of the params (a nested dict of arrays)

`write_model_dir` builds the whole directory beside its destination and renames it into place
(`jaxedit.io.atomic_directory`). `read_model_dir` checks the manifest before touching the arrays
and reports what is wrong in one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.errors import ConfigError
from jaxedit.io import atomic_directory, utc_now_iso

FORMAT_NAME = "jaxedit"
FORMAT_VERSION = 1
MANIFEST_FILE = "jaxedit.json"
PARAMS_DIR = "params"


def save_pytree(directory: str | os.PathLike, tree: Any) -> None:
    """Save a pytree of arrays with orbax at `directory` (which must not exist yet)."""
    import orbax.checkpoint as ocp

    tree = _to_numpy_tree(tree)
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(Path(directory).absolute(), tree)


def load_pytree(directory: str | os.PathLike) -> Any:
    """Restore a pytree saved by `save_pytree`, as numpy arrays."""
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no saved arrays here (expected an orbax checkpoint directory)")
    with ocp.PyTreeCheckpointer() as checkpointer:
        try:
            tree = checkpointer.restore(directory)
        except Exception as error:  # orbax raises many types for damaged directories
            raise ConfigError(
                f"{directory}: cannot restore arrays ({type(error).__name__}: {error})".splitlines()[0]
            ) from error
    return _to_numpy_tree(tree)


def write_model_dir(
    destination: str | os.PathLike,
    kind: str,
    config: dict,
    params: Any,
    source: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a self-describing model directory atomically; returns its path."""
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "source": source,
        "created": utc_now_iso(),
    }
    with atomic_directory(destination, overwrite=overwrite) as staging:
        save_pytree(staging / PARAMS_DIR, params)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return Path(destination)


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
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: unreadable manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ConfigError(f"{path}: not a jaxedit manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: format_version {manifest.get('format_version')!r}, this jaxedit reads {FORMAT_VERSION}"
        )
    if expected_kind is not None and manifest.get("kind") != expected_kind:
        raise ConfigError(f"{directory}: holds {manifest.get('kind')!r}, expected {expected_kind!r}")
    return manifest


def read_model_dir(directory: str | os.PathLike, expected_kind: str | None = None) -> tuple[dict, Any]:
    """(manifest, params) of a model directory written by `write_model_dir`."""
    manifest = read_manifest(directory, expected_kind)
    return manifest, load_pytree(Path(directory) / PARAMS_DIR)


def _to_numpy_tree(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _to_numpy_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy_tree(v) for v in tree)
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return np.asarray(tree)
    return tree
