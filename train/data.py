"""The latent/label data a training run reads, as one `TrainingData` (host numpy arrays).

`load_training_data(config)` builds it from the config: `data="files"` reads `config.latents` and
`config.labels` (.npy, or .npz holding `latents` and `labels`), `data="synthetic"` samples the
embedded synthetic world (`jaxedit.data.synthetic`). The first `round(train_fraction * N)` rows
train, the rest are held out (the official 90/10 split, in file order).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from jaxedit.errors import ConfigError, InputError
from train.configs import TrainConfig


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """latents [N, *latent_shape] float32; labels [N, A] float32 in {0, 1}; rows [0, num_train) train."""

    latents: np.ndarray
    labels: np.ndarray
    num_train: int
    source: str = ""

    def __post_init__(self) -> None:
        if self.latents.shape[0] != self.labels.shape[0]:
            raise InputError(f"{self.source or 'data'}: {self.latents.shape[0]} latents but {self.labels.shape[0]} label rows")
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
                f"[N, {', '.join(map(str, latent_shape))}] (wrong --config or --preset?)"
            )
        if self.labels.ndim != 2 or self.labels.shape[1] != num_attributes:
            raise InputError(f"{self.source or 'labels'}: labels of shape {list(self.labels.shape)}, expected [N, {num_attributes}]")
        if not np.all(np.isfinite(self.latents)):
            raise InputError(f"{self.source or 'latents'}: latents hold NaN or infinite values")


def from_arrays(latents, labels, train_fraction: float, source: str = "") -> TrainingData:
    """TrainingData from arrays; labels in {0, 1} or {-1, 1} (CelebA's file coding) become {0, 1}."""
    latents = np.asarray(latents, np.float32)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"{source or 'labels'}: expected labels [N, A], got shape {list(labels.shape)}")
    values = np.unique(labels)
    if np.all(np.isin(values, (-1, 1))) and (values == -1).any():
        labels = (labels > 0)
    elif not np.all(np.isin(values, (0, 1))):
        raise InputError(f"{source or 'labels'}: labels must be 0/1 or -1/1, found values like {values[:5].tolist()}")
    num_train = int(round(train_fraction * latents.shape[0]))
    return TrainingData(latents, labels.astype(np.float32), max(1, min(num_train, latents.shape[0])), source)


def _read_array(path: Path, key: str) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npy or .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy/.npz file ({error})".splitlines()[0]) from error
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if key not in loaded.files:
                raise InputError(f"{path}: no array {key!r} (holds {', '.join(loaded.files) or 'nothing'})")
            return np.asarray(loaded[key])
    return np.asarray(loaded)


def _npz_has(path: Path, key: str) -> bool:
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return key in getattr(loaded, "files", ())
    except (OSError, ValueError, EOFError):
        return False


def load_training_data(config: TrainConfig, synthetic: Callable[[TrainConfig], TrainingData] | None = None) -> TrainingData:
    """The config's data (see the module docstring); `synthetic` replaces the synthetic-world builder."""
    method = config.method
    if config.data == "synthetic":
        data = (synthetic or synthetic_data)(config)
    else:
        if not config.latents:
            raise ConfigError(f"config {config.name!r} reads files: pass --latents FILE.npy (and --labels FILE.npy)")
        latents_path = Path(config.latents)
        latents = _read_array(latents_path, "latents")
        if latents_path.suffix == ".npz" and (not config.labels or not Path(config.labels).exists()) and _npz_has(latents_path, "labels"):
            labels = _read_array(latents_path, "labels")  # an .npz holding both wins over a default labels path
        elif config.labels:
            labels = _read_array(Path(config.labels), "labels")
        else:
            raise ConfigError("pass --labels FILE.npy (or an .npz --latents holding 'latents' and 'labels')")
        data = from_arrays(latents, labels, method.train_fraction, source=str(latents_path))
    data.check(method.latent_shape, method.num_attributes)
    return data


def synthetic_data(config: TrainConfig) -> TrainingData:
    """`config.synthetic_samples` latents of the embedded synthetic world (seed `synthetic_seed`) and
    their hard labels, in the method's latent space."""
    from jaxedit.data import synthetic as world_lib
    import jax

    method = config.method
    world_config = world_lib.WorldConfig(
        seed=config.synthetic_seed,
        z_dim=method.w_dim,
        w_dim=method.w_dim,
        num_ws=method.num_ws if method.space == "w+" else 1,
    )
    world = world_lib.build_world(world_config)
    key = jax.random.fold_in(jax.random.PRNGKey(config.synthetic_seed), 7)
    latents = world_lib.sample_latents(world, key, config.synthetic_samples, space=method.space)
    labels = world_lib.attribute_labels(world, latents)
    return from_arrays(np.asarray(latents), np.asarray(labels), method.train_fraction, source=f"synthetic world seed {config.synthetic_seed}")
