"""What an editors directory was made for, and whether a generator or a world fits it.

Every editors manifest written by training or conversion carries `config["provenance"]`::

    {
      "preset": "paper" | "official" | ...,       the method preset's name
      "latent_space": "w" | "w+",
      "latent_shape": [512] | [18, 512],
      "origin": "trained" | "converted",
      "world": {...} | null,        the synthetic world's `WorldConfig` (trained in the synthetic world)
      "generator": {                the generator whose mapping made the training latents, or null
        "path": "/abs/gen_dir",     where it was (a hint: the digests decide)
        "source_sha256": "...",     sha256 of the checkpoint it was converted from
        "params_sha256": "...",     digest of its converted params (`jaxedit.modeldir.params_digest`)
        "architecture": {...}       its `GeneratorConfig.to_dict()`
      } | null,
      "note": "..."                 free text, e.g. why no generator is recorded
    }

A run of `python -m train` records its world (and with `--generator DIR`, that generator); a
converted official checkpoint records no world and, unless a generator was given at conversion,
no generator ("official W+ 18x512, generator unknown"). Directories written before provenance
existed have none: they still load, and every check says it cannot be made.

`compare_generator(provenance, generator)` says whether a loaded generator is the one recorded:
the architectures must be equal and the converted params' digests (else the source checkpoints'
sha256) must agree. `check_editors_generator(editors, generator, force=...)` enforces it for the
library; the CLI (`jaxedit edit`, `jaxedit eval`) words the same verdicts with its flags.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from jaxedit.errors import ConfigError, sanitize

MATCH = "match"
MISMATCH = "mismatch"
UNCHECKED = "unchecked"

OFFICIAL_UNBOUND_NOTE = "official W+ {shape} editors, generator unknown (convert with --generator GEN_DIR to bind them)"


class ProvenanceWarning(UserWarning):
    """Editors whose fit to a generator cannot be checked, or were used against their record (forced)."""


def latent_space(latent_shape: Any) -> str:
    return "w" if len(tuple(latent_shape)) == 1 else "w+"


def describe_shape(latent_shape: Any) -> str:
    shape = [int(s) for s in latent_shape]
    return f"W {shape[0]}" if len(shape) == 1 else f"W+ {'x'.join(map(str, shape))}"


def generator_identity(generator: Any) -> dict:
    """{"path", "source_sha256", "params_sha256", "architecture"} of a loaded generator (from its
    manifest; an in-memory generator has only its architecture)."""
    manifest = getattr(generator, "manifest", None) or {}
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    path = getattr(generator, "path", None)
    return {
        "path": str(Path(path).absolute()) if path is not None else None,
        "source_sha256": source.get("sha256") if isinstance(source.get("sha256"), str) else None,
        "params_sha256": manifest.get("params_sha256") if isinstance(manifest.get("params_sha256"), str) else None,
        "architecture": generator.config.to_dict(),
    }


def make_provenance(
    preset: Any,
    *,
    origin: str,
    world: dict | None = None,
    generator: Any = None,
    note: str | None = None,
) -> dict:
    """The provenance record of editors of `preset` (module docstring). `world`: a `WorldConfig`
    dict; `generator`: a loaded generator or an identity dict (`generator_identity`)."""
    identity = generator if isinstance(generator, dict) or generator is None else generator_identity(generator)
    shape = [int(s) for s in preset.latent_shape]
    record = {
        "preset": preset.name,
        "latent_space": latent_space(shape),
        "latent_shape": shape,
        "origin": origin,
        "world": dict(world) if world is not None else None,
        "generator": dict(identity) if identity is not None else None,
    }
    if note:
        record["note"] = note
    return record


def official_note(latent_shape: Any) -> str:
    """The note of converted editors bound to no generator."""
    return OFFICIAL_UNBOUND_NOTE.format(shape="x".join(str(int(s)) for s in latent_shape))


def read_provenance(config: Any, where: str) -> dict | None:
    """The manifest config's provenance (None when absent: an older directory), its parts checked
    for type; one-line ConfigError naming `where` otherwise."""
    if not isinstance(config, dict) or config.get("provenance") is None:
        return None
    record = config["provenance"]
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: manifest provenance is a {type(record).__name__}, expected an object")
    for key in ("world", "generator"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise ConfigError(f"{where}: manifest provenance {key!r} must be an object or null")
    for key in ("preset", "latent_space", "origin"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ConfigError(f"{where}: manifest provenance {key!r} must be a string")
    shape = record.get("latent_shape")
    if shape is not None and not (
        isinstance(shape, list) and 1 <= len(shape) <= 2 and all(type(s) is int and s > 0 for s in shape)
    ):
        raise ConfigError(f"{where}: manifest provenance 'latent_shape' must be [w_dim] or [num_ws, w_dim]")
    generator = record.get("generator") or {}
    for key in ("path", "source_sha256", "params_sha256", "note"):
        value = generator.get(key) if key != "note" else record.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: manifest provenance {key!r} must be a string")
    if generator and not isinstance(generator.get("architecture"), dict):
        raise ConfigError(f"{where}: manifest provenance generator has no 'architecture' object")
    return record


def provenance_of(editors: Any) -> dict | None:
    """The provenance of loaded or in-memory `Editors` (None when they record none)."""
    config = getattr(editors, "config", None) or {}
    return read_provenance(config, "editors")


def _short(digest: Any) -> str:
    return str(digest)[:12] if digest else "?"


def _describe_generator(identity: dict) -> str:
    architecture = identity.get("architecture") or {}
    size = architecture.get("resolution")
    digest = identity.get("params_sha256") or identity.get("source_sha256")
    path = sanitize(str(identity.get("path") or "in memory"), 200)
    return f"generator {path} ({size} px, params {_short(digest)})"


def _describe_world(world: dict) -> str:
    return (
        f"the synthetic world's random mapping network (seed {world.get('seed')}, w_dim {world.get('w_dim')}, "
        f"{world.get('mapping_layers')} layers)"
    )


def describe_provenance(record: dict | None) -> str:
    """One line: what the editors were made for."""
    if record is None:
        return "no provenance recorded (written before jaxedit recorded it): the generator cannot be checked"
    made = f"{sanitize(record.get('preset'), 40)} preset on {describe_shape(record.get('latent_shape') or [])}"
    if record.get("generator"):
        trained = f"trained on the mapping of {_describe_generator(record['generator'])}"
        if record.get("origin") == "converted":
            trained = f"converted, bound to {_describe_generator(record['generator'])}"
        return f"{made}, {trained}"
    if record.get("world"):
        return f"{made}, trained in {_describe_world(record['world'])}"
    return f"{made}, {sanitize(record.get('note') or 'generator unknown', 300)}"


def _same_architecture(recorded: dict, actual: dict) -> bool:
    canonical = lambda value: json.dumps(value, sort_keys=True, default=str)
    return canonical(recorded) == canonical(actual)


def compare_generator(record: dict | None, generator: Any) -> tuple[str, str]:
    """(verdict, one-line reason): MATCH when `generator` is the one the editors record, MISMATCH
    when it is not (another generator, or editors made in the synthetic world), UNCHECKED when the
    record or the generator's manifest lacks what decides it."""
    actual = generator_identity(generator)
    actual_text = _describe_generator(actual)
    if record is None:
        return UNCHECKED, f"the editors record no provenance: their fit to {actual_text} cannot be checked"
    recorded = record.get("generator")
    if not recorded:
        if record.get("world"):
            return MISMATCH, f"the editors were trained in {_describe_world(record['world'])}, not on {actual_text}"
        note = sanitize(record.get("note") or "generator unknown", 300)
        return UNCHECKED, f"the editors are bound to no generator ({note})"
    recorded_text = _describe_generator(recorded)
    if not _same_architecture(recorded.get("architecture") or {}, actual["architecture"]):
        return MISMATCH, f"the editors were made for {recorded_text}, not {actual_text} (another architecture)"
    compared = [key for key in ("params_sha256", "source_sha256") if recorded.get(key) and actual.get(key)]
    if not compared:
        return UNCHECKED, f"{actual_text} records no digest to compare with the editors' {recorded_text}"
    if any(recorded[key] == actual[key] for key in compared):  # the same weights, or converted from the same file
        return MATCH, f"the editors were made for this generator ({recorded_text})"
    return MISMATCH, f"the editors were made for {recorded_text}, not {actual_text} (other weights)"


def check_editors_generator(editors: Any, generator: Any, force: bool = False) -> str:
    """Enforce the editors' provenance against `generator`; returns the verdict.

    MISMATCH raises a one-line ConfigError (with `force`, a `ProvenanceWarning` instead);
    UNCHECKED warns (`ProvenanceWarning`); MATCH is silent.
    """
    verdict, reason = compare_generator(provenance_of(editors), generator)
    if verdict == MISMATCH:
        if not force:
            raise ConfigError(f"{reason}; force=True uses them anyway")
        warnings.warn(f"{reason} (used anyway: force)", ProvenanceWarning, stacklevel=2)
    elif verdict == UNCHECKED:
        warnings.warn(reason, ProvenanceWarning, stacklevel=2)
    return verdict


__all__ = [
    "MATCH",
    "MISMATCH",
    "UNCHECKED",
    "ProvenanceWarning",
    "generator_identity",
    "make_provenance",
    "official_note",
    "read_provenance",
    "provenance_of",
    "describe_provenance",
    "compare_generator",
    "check_editors_generator",
]
