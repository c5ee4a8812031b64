"""Training configurations: a frozen `TrainConfig` per named run.

A `TrainConfig` holds the method (`MethodPreset`: sizes, losses, optimizer, schedule, defined once
in `jaxedit.latent.presets`) and the run around it (data, seed, scan chunk, checkpoint cadence,
attributes). Named configs:

- `paper`: the paper's method (W space); data from the `latents`/`labels` files.
- `official`: the authors' code (W+ 18x512); data from `celebahq_dlatents_psp.npy` +
  `celebahq_anno.npy` (or any other `latents`/`labels`).
- `synthetic`: a small W+ world generated in memory (`jaxedit.data.synthetic`), minutes on a CPU.

Fields change through `jaxedit.config.override(config, {"seed": 3, "method.lr": 1e-3})`, the one
mechanism of every config; on the command line every field is a flag (`jaxedit.cli.train`).
"""

from __future__ import annotations

import dataclasses

from jaxedit.config import check_types, to_dict
from jaxedit.errors import ConfigError
from jaxedit.latent.presets import MethodPreset, get_preset

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
    generator: directory of the converted generator whose mapping made `latents` (transformer
      training): the editors record it (`jaxedit.latent.provenance`), so `jaxedit edit` and
      `check_editors_generator` can tell it from another generator; empty: recorded as unknown.
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
    generator: str = ""
    progress: bool = True
    mesh_attributes: int = 0
    mesh_data: int = 1
    distributed: bool = False
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1

    def __post_init__(self) -> None:
        check_types(self)
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
        for field in ("seed", "synthetic_seed"):
            if not 0 <= getattr(self, field) < 2**63:
                raise ConfigError(f"config {self.name!r}: {field} must be in 0..2**63-1, got {getattr(self, field)}")

    def to_dict(self) -> dict:
        """JSON-ready dict (the method preset nested under "method"); `jaxedit.config.from_dict` inverts it."""
        return to_dict(self)


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
