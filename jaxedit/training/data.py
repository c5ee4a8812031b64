"""The latent/label data a training run reads, as one `TrainingData` (host numpy arrays).

`load_training_data(config)` builds it from the config: `data="files"` reads `config.latents` and
`config.labels` with `jaxedit.data.latents.load_latent_dataset` (.npy pairs, or our .npz holding
`latents` and `labels`), `data="synthetic"` samples the embedded synthetic world
(`jaxedit.data.synthetic`). The first `round(train_fraction * N)` rows
train, the rest are held out (the official 90/10 split, in file order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxedit.data.latents import LatentDataset, load_latent_dataset, make_dataset, split_dataset
from jaxedit.errors import ConfigError, InputError
from jaxedit.io import npz_names
from jaxedit.training.configs import TrainConfig


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """latents [N, *latent_shape] float32; labels [N, A] float32 in {0, 1}; rows [0, num_train) train.

    world: the synthetic world's `WorldConfig` dict when the latents come from it (else None).
    """

    latents: np.ndarray
    labels: np.ndarray
    num_train: int
    source: str = ""
    world: dict | None = None

    def __post_init__(self) -> None:
        if self.latents.shape[0] != self.labels.shape[0]:
            raise InputError(
                f"{self.source or 'data'}: {self.latents.shape[0]} latents but {self.labels.shape[0]} label rows"
            )
        if not 0 < self.num_train <= self.latents.shape[0]:
            raise InputError(f"{self.source or 'data'}: num_train {self.num_train} not in 1..{self.latents.shape[0]}")

    @property
    def train_latents(self) -> np.ndarray:
        return self.latents[: self.num_train]

    @property
    def train_labels(self) -> np.ndarray:
        return self.labels[: self.num_train]

    @property
    def heldout_latents(self) -> np.ndarray:
        return self.latents[self.num_train :]

    @property
    def heldout_labels(self) -> np.ndarray:
        return self.labels[self.num_train :]

    def check(self, latent_shape: tuple[int, ...], num_attributes: int) -> None:
        """InputError unless the arrays fit a method preset's latent shape and attribute count."""
        if tuple(self.latents.shape[1:]) != tuple(latent_shape):
            raise InputError(
                f"{self.source or 'latents'}: latents of shape {list(self.latents.shape)}, the method expects "
                f"[N, {', '.join(map(str, latent_shape))}] (data for another method preset?)"
            )
        if self.labels.ndim != 2 or self.labels.shape[1] != num_attributes:
            raise InputError(
                f"{self.source or 'labels'}: labels of shape {list(self.labels.shape)}, expected [N, {num_attributes}]"
            )
        if not np.all(np.isfinite(self.latents)):
            raise InputError(f"{self.source or 'latents'}: latents hold NaN or infinite values")


def from_arrays(latents, labels, train_fraction: float, source: str = "", names=None) -> TrainingData:
    """TrainingData from arrays, validated by `jaxedit.data.latents.make_dataset` (labels 0/1 or
    CelebA's -1/1; named columns put in CelebA order); the first round(train_fraction * N) rows train."""
    return from_dataset(make_dataset(latents, labels, names, source), train_fraction)


def from_dataset(dataset: LatentDataset, train_fraction: float) -> TrainingData:
    """TrainingData of a `LatentDataset`, split as `jaxedit.data.latents.split_dataset` does."""
    train, _ = split_dataset(dataset, train_fraction)
    return TrainingData(dataset.latents, dataset.labels, len(train), dataset.source)


def _npz_has(path: Path, key: str) -> bool:
    try:
        return key in npz_names(path)  # reads the archive's directory only
    except InputError:
        return False


def load_training_data(
    config: TrainConfig, synthetic: Callable[[TrainConfig], TrainingData] | None = None
) -> TrainingData:
    """The config's data (see the module docstring); `synthetic` replaces the synthetic-world builder."""
    method = config.method
    if config.data == "synthetic":
        data = (synthetic or synthetic_data)(config)
    else:
        if not config.latents:
            raise ConfigError(f"config {config.name!r} reads files but names no latents file (field latents)")
        latents_path = Path(config.latents)
        labels_path: Path | None = Path(config.labels) if config.labels else None
        if (
            latents_path.suffix == ".npz"
            and (labels_path is None or not labels_path.exists())
            and _npz_has(latents_path, "labels")
        ):
            labels_path = None  # an .npz holding both wins over a default labels path that is not there
        elif labels_path is None and latents_path.suffix != ".npz":
            raise ConfigError(
                f"config {config.name!r} names no labels file (field labels), and its latents file "
                f"{latents_path} is not an .npz holding 'latents' and 'labels'"
            )
        dataset = load_latent_dataset(latents_path, labels_path)
        data = from_dataset(dataset, method.train_fraction)
    data.check(method.latent_shape, method.num_attributes)
    return data


def synthetic_data(config: TrainConfig) -> TrainingData:
    """`config.synthetic_samples` latents of the embedded synthetic world (seed `synthetic_seed`) and
    their hard labels, in the method's latent space."""
    import jax

    from jaxedit.data import synthetic as world_lib

    method = config.method
    world_config = world_lib.WorldConfig(
        seed=config.synthetic_seed,
        z_dim=method.w_dim,
        w_dim=method.w_dim,
        num_ws=method.num_ws if method.space == "w+" else 1,
    )
    world = world_lib.build_world(world_config)
    key = jax.random.fold_in(jax.random.key(config.synthetic_seed), 7)
    latents = world_lib.sample_latents(world, key, config.synthetic_samples, space=method.space)
    labels = world_lib.attribute_labels(world, latents)
    data = from_arrays(
        np.asarray(latents),
        np.asarray(labels),
        method.train_fraction,
        source=f"synthetic world seed {config.synthetic_seed}",
    )
    return dataclasses.replace(data, world=world_config.to_dict())
