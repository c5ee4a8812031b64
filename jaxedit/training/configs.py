"""Training configurations: a frozen `TrainConfig` per named run, and `--field value` overrides.

A `TrainConfig` holds the method (`MethodPreset`: sizes, losses, optimizer, schedule) and the run
around it (data, seed, scan chunk, checkpoint cadence, attributes). Named configs:

- `paper`: the paper's method (W space); data from `--latents`/`--labels` files.
- `official`: the authors' code (W+ 18x512); data from `celebahq_dlatents_psp.npy` +
  `celebahq_anno.npy` (or any `--latents`/`--labels`).
- `synthetic`: a small W+ world generated in memory (`jaxedit.data.synthetic`), minutes on a CPU.

`apply_overrides(config, {"lr": "1e-3", "preset": "paper", ...})` changes any field of the run or
of its method preset (`--lr` or `--method.lr`), checking types; an unknown field or a malformed
value raises `ConfigError` with one line. `--preset NAME` swaps the whole method preset first.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from jaxedit.errors import ConfigError
from jaxedit.latent.presets import PRESETS, MethodPreset, get_preset

DATA_SOURCES = ("files", "synthetic")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (classifier and/or transformers).

    method: the `MethodPreset` (module sizes, losses, optimizers, batch sizes, epochs).
    data: "files" (read `latents` [N, *latent_shape] and `labels` [N, 40] from .npy/.npz; an .npz
      `latents` may hold both) or "synthetic" (`synthetic_samples` latents of the embedded world,
      generated from `synthetic_seed`).
    seed: initial params and the data order (epoch e's order is a function of (seed, e) alone,
      which is what makes `--resume` exact).
    steps_per_call: update steps per compiled call (a `lax.scan` chunk); signals, checkpoints and
      metrics take effect at chunk boundaries.
    checkpoint_every: save the train state every this many steps (rounded up to a chunk boundary);
      0: no step-based saves.
    checkpoint_seconds: also save at the first chunk boundary this many seconds after the last
      save (0: no time-based saves). A save always happens at the end and on SIGTERM/SIGINT. The
      default (every 10 minutes, no step-based saves) keeps a fast run from spending its time
      writing the 2.3 GB state of 40 official transformers.
    keep_checkpoints: how many recent checkpoints to keep.
    max_steps: stop after this many steps (0: the full schedule of `epochs`).
    attributes: transformers to train: comma-separated names or indices, or "all".
    classifier: directory of a trained classifier (transformer training; empty: `WORKDIR/classifier`).
    progress: show tqdm bars.
    mesh_attributes, mesh_data: the device mesh (`jaxedit.training.sharding.make_mesh`): transformers split
      over `mesh_attributes` devices (0: all devices left over), batches over `mesh_data`. With one
      device in all, training runs the plain one-device program.
    distributed: join a multi-process run first (`jax.distributed.initialize`): with
      `coordinator_address` ("host:port" of process 0), `num_processes` and `process_id`, or with
      those left empty (0 / -1) on clusters JAX detects (TPU pod slices, SLURM, Open MPI).
    """

    name: str
    method: MethodPreset
    data: str = "files"
    latents: str = ""
    labels: str = ""
    synthetic_samples: int = 0
    synthetic_seed: int = 0
    seed: int = 0
    steps_per_call: int = 50
    checkpoint_every: int = 0
    checkpoint_seconds: float = 600.0
    keep_checkpoints: int = 2
    max_steps: int = 0
    attributes: str = "all"
    classifier: str = ""
    progress: bool = True
    mesh_attributes: int = 0
    mesh_data: int = 1
    distributed: bool = False
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1

    def __post_init__(self) -> None:
        if self.data not in DATA_SOURCES:
            raise ConfigError(f"config {self.name!r}: data must be one of {', '.join(DATA_SOURCES)}, got {self.data!r}")
        for field in ("steps_per_call", "keep_checkpoints"):
            if getattr(self, field) < 1:
                raise ConfigError(f"config {self.name!r}: {field} must be >= 1, got {getattr(self, field)}")
        if self.checkpoint_seconds < 0:
            raise ConfigError(f"config {self.name!r}: checkpoint_seconds must be >= 0, got {self.checkpoint_seconds}")
        for field in (
            "checkpoint_every",
            "max_steps",
            "synthetic_samples",
            "mesh_attributes",
            "mesh_data",
            "num_processes",
        ):
            if getattr(self, field) < 0:
                raise ConfigError(f"config {self.name!r}: {field} must be >= 0, got {getattr(self, field)}")
        if self.data == "synthetic" and self.synthetic_samples < 1:
            raise ConfigError(f"config {self.name!r}: data 'synthetic' needs synthetic_samples >= 1")
        if not -(2**63) <= self.seed < 2**63:
            raise ConfigError(f"config {self.name!r}: seed must fit in 64 bits, got {self.seed}")
        if not 0 <= self.synthetic_seed < 2**63:
            raise ConfigError(f"config {self.name!r}: synthetic_seed must be in 0..2**63-1, got {self.synthetic_seed}")

    def to_dict(self) -> dict:
        """JSON-ready dict (the method preset nested under "method")."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["method"] = self.method.to_dict()
        return values

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; one-line ConfigError on unknown fields."""
        values = dict(data)
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"train config: unknown field(s) {', '.join(unknown)}")
        if "method" not in values or not isinstance(values["method"], Mapping):
            raise ConfigError("train config: no 'method' preset")
        values["method"] = MethodPreset.from_dict(dict(values["method"]))
        return cls(**values)


SYNTHETIC_METHOD = get_preset("official").replace(
    name="synthetic",
    num_ws=6,
    w_dim=128,
    classifier_hidden=(256, 64),
    batch_size=32,
    epochs=4,
    classifier_batch_size=128,
    classifier_epochs=6,
    classifier_decay_epochs=4,
    classifier_lr=1e-3,
    edit_layers=(0, 3),
)
"""The synthetic world's method: the official losses and optimizer on a small W+ (6 x 128)."""

CONFIGS: dict[str, TrainConfig] = {
    "paper": TrainConfig(name="paper", method=get_preset("paper"), data="files"),
    "official": TrainConfig(
        name="official",
        method=get_preset("official"),
        data="files",
        latents="celebahq_dlatents_psp.npy",
        labels="celebahq_anno.npy",
    ),
    "synthetic": TrainConfig(
        name="synthetic",
        method=SYNTHETIC_METHOD,
        data="synthetic",
        synthetic_samples=8000,
        steps_per_call=25,
    ),
}


def get_config(name: str) -> TrainConfig:
    """The named config; one-line ConfigError listing the names otherwise."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown config {name!r}; known: {', '.join(CONFIGS)}") from None


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse_value(text: str, annotation: Any, field: str) -> Any:
    """Parse a command-line string as a value of type `annotation` (int, float, bool, str,
    tuples of these, `X | None`); one-line ConfigError naming the field otherwise."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null", ""):
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:
            return parse_value(text, others[0], field)
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{field}: expected true or false, got {text!r}")
    if annotation is int:
        try:
            return int(text.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"--{field}: expected an integer, got {text!r}") from None
    if annotation is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--{field}: expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"--{field}: expected a finite number, got {text!r}")
        return value
    if annotation is str:
        return text
    if origin is tuple:
        items = [item for item in text.replace("(", "").replace(")", "").split(",") if item.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(item, args[0], field) for item in items)
        if len(items) != len(args):
            raise ConfigError(f"--{field}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_value(item, arg, field) for item, arg in zip(items, args))
    raise ConfigError(f"--{field}: cannot be set from the command line")


def _check_type(value: Any, annotation: Any, field: str) -> Any:
    """Accept a Python value for a field (ints for floats), or raise ConfigError."""
    if isinstance(value, str) and annotation is not str:
        return parse_value(value, annotation, field)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        return _check_type(value, others[0], field)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, bool, str):
        if type(value) is annotation:
            return value
        raise ConfigError(f"--{field}: expected {annotation.__name__}, got {value!r}")
    if origin is tuple and isinstance(value, (tuple, list)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], field) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"--{field}: expected {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, field) for v, a in zip(value, args))
    raise ConfigError(f"--{field}: expected {annotation}, got {value!r}")


def field_names() -> list[str]:
    """Every overridable name: run fields, then method fields (also as `method.<name>`)."""
    run = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("name", "method")]
    method = [f.name for f in dataclasses.fields(MethodPreset) if f.name != "name"]
    return ["preset", *run, *method]


def apply_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A copy of `config` with fields changed; values may be strings (parsed) or Python values.

    Keys: any `TrainConfig` field, any `MethodPreset` field (plain or `method.<field>`), or
    `preset` (a preset name: replaces the method, then the method overrides apply).
    """
    run_types = _field_types(TrainConfig)
    method_types = _field_types(MethodPreset)
    run_changes: dict[str, Any] = {}
    method_changes: dict[str, Any] = {}
    method = config.method
    for raw_key, value in overrides.items():
        key = raw_key.replace("-", "_")
        if key == "preset":
            if not isinstance(value, str) or value not in PRESETS:
                raise ConfigError(f"--preset: expected one of {', '.join(PRESETS)}, got {value!r}")
            method = get_preset(value)
        elif key.startswith("method.") and key[len("method.") :] in method_types and key != "method.name":
            method_changes[key[len("method.") :]] = _check_type(value, method_types[key[len("method.") :]], raw_key)
        elif key in run_types and key not in ("name", "method"):
            run_changes[key] = _check_type(value, run_types[key], raw_key)
        elif key in method_types and key != "name":
            method_changes[key] = _check_type(value, method_types[key], raw_key)
        else:
            close = difflib.get_close_matches(key, field_names(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else "; see --help for the fields"
            raise ConfigError(f"unknown config field --{raw_key}{hint}")
    if method_changes:
        method = method.replace(**method_changes)
    return dataclasses.replace(config, method=method, **run_changes)


def parse_override_args(argv: Sequence[str]) -> dict[str, str]:
    """`["--lr", "1e-3", "--epochs=2"]` -> `{"lr": "1e-3", "epochs": "2"}`; one-line errors."""
    overrides: dict[str, str] = {}
    index = 0
    argv = list(argv)
    while index < len(argv):
        item = argv[index]
        if not item.startswith("--") or len(item) <= 2:
            raise ConfigError(f"unexpected argument {item!r} (config overrides look like --field value)")
        key = item[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif index + 1 < len(argv):
            index += 1
            value = argv[index]
        else:
            raise ConfigError(f"--{key}: missing value")
        overrides[key] = value
        index += 1
    return overrides
