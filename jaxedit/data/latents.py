"""Latent/label datasets from .npy/.npz files, the train/held-out split, and on-device batching.

Accepted files:

- the official pair `celebahq_dlatents_psp.npy` [N, 18, 512] (W+, average latent already added)
  and `celebahq_anno.npy` [N, 40] (labels coded 0/1 or -1/1; -1/1 is mapped to 0/1 and a note says so);
- our own `.npz`: `latents` [N, *latent_shape], `labels` [N, A], optionally `names` [A] (the
  attribute name of each label column; CelebA names, in any order: columns are put in CelebA order).

Batching: `epoch_indices(seed, epoch, n, batch_size)` is a deterministic permutation from
`fold_in(key(seed), epoch)`, cut into `n // batch_size` full batches (the last partial batch is
dropped, as the official DataLoader does), int32 [S, B]. Batches are gathered on device
(`jnp.take(latents, indices[s], axis=0)`), so a whole epoch is one `lax.scan` over `indices`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, attribute_name
from jaxedit.errors import InputError
from jaxedit.io import atomic_file, is_npz, load_array, load_npz, npz_names


@dataclasses.dataclass(frozen=True)
class LatentDataset:
    """latents [N, *latent_shape] float32; labels [N, A] float32 in {0, 1} (CelebA column order when
    `names` is None or the 40 CelebA names); source: where it came from; notes: what was changed."""

    latents: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...] | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.latents.shape[1:])

    def subset(self, start: int, stop: int) -> LatentDataset:
        return dataclasses.replace(self, latents=self.latents[start:stop], labels=self.labels[start:stop])


def _read(path: Path, required: str, optional: Sequence[str] = ()) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a .npy file, or the `required` and present `optional` arrays of an .npz (only
    those are read; `jaxedit.io` checks every header against the file before allocating)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npy or .npz file")
    if is_npz(path):
        members = npz_names(path)
        if required not in members:
            raise InputError(f"{path}: no array {required!r} (holds {', '.join(sorted(members)) or 'nothing'})")
        wanted = [required, *(name for name in optional if name in members)]
        return load_npz(path, wanted, kinds="biufU")
    try:
        with open(path, "rb") as handle:
            is_npy = handle.read(6) == b"\x93NUMPY"
    except OSError as error:
        raise InputError(f"{path}: cannot open ({error.strerror or type(error).__name__})") from None
    if not is_npy:
        raise InputError(f"{path}: not a readable .npy/.npz file (neither a NumPy array nor an archive)")
    return load_array(path)


def normalise_labels(labels: np.ndarray, where: str = "labels") -> tuple[np.ndarray, str | None]:
    """(labels as float32 0/1, a note or None). Accepts 0/1 or -1/1 codings (bool too); one-line
    InputError for anything else."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"{where}: expected labels [N, A], got shape {list(labels.shape)}")
    if labels.dtype == bool:
        return labels.astype(np.float32), None
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise InputError(f"{where}: labels have dtype {labels.dtype}, expected numbers")
    values = np.unique(labels)
    if np.all(np.isin(values, (0, 1))):
        return labels.astype(np.float32), None
    if np.all(np.isin(values, (-1, 1))):
        return (labels > 0).astype(np.float32), f"{where}: labels coded -1/1, mapped to 0/1"
    shown = ", ".join(f"{v:g}" for v in values[:6])
    raise InputError(f"{where}: labels must be 0/1 or -1/1, found values {shown}")


def make_dataset(
    latents: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str] | None = None,
    source: str = "",
    latent_shape: Sequence[int] | None = None,
    num_attributes: int | None = None,
) -> LatentDataset:
    """Validate and normalise arrays into a LatentDataset (one-line InputError on any problem).

    latent_shape / num_attributes: what the method expects (e.g. (18, 512) and 40), checked if given.
    """
    where = source or "dataset"
    latents = np.asarray(latents)
    if not np.issubdtype(latents.dtype, np.floating):
        raise InputError(f"{where}: latents have dtype {latents.dtype}, expected floating point")
    if latents.ndim not in (2, 3):
        raise InputError(f"{where}: latents of shape {list(latents.shape)}, expected [N, w_dim] or [N, num_ws, w_dim]")
    if latent_shape is not None and tuple(latents.shape[1:]) != tuple(latent_shape):
        raise InputError(
            f"{where}: latents of shape {list(latents.shape)}, expected [N, {', '.join(map(str, latent_shape))}]"
        )
    if latents.shape[0] == 0:
        raise InputError(f"{where}: no latents (N = 0)")
    latents = latents.astype(np.float32)
    if not np.all(np.isfinite(latents)):
        raise InputError(f"{where}: latents hold NaN or infinite values")
    labels, note = normalise_labels(labels, f"{where} labels")
    notes = [note] if note else []
    if labels.shape[0] != latents.shape[0]:
        raise InputError(f"{where}: {latents.shape[0]} latents but {labels.shape[0]} label rows")
    if names is not None:
        names = tuple(str(n) for n in names)
        if len(names) != labels.shape[1]:
            raise InputError(f"{where}: {len(names)} names for {labels.shape[1]} label columns")
        canonical = tuple(attribute_name(n) for n in names)
        if sorted(canonical) == sorted(ATTRIBUTES) and canonical != ATTRIBUTES:
            order = [canonical.index(n) for n in ATTRIBUTES]
            labels = labels[:, order]
            notes.append(f"{where}: label columns reordered to CelebA order")
            canonical = ATTRIBUTES
        names = canonical
    if num_attributes is not None and labels.shape[1] != num_attributes:
        raise InputError(f"{where}: labels of shape {list(labels.shape)}, expected [N, {num_attributes}]")
    return LatentDataset(latents, labels, names, source, tuple(notes))


def load_latent_dataset(
    latents_path: str | os.PathLike,
    labels_path: str | os.PathLike | None = None,
    latent_shape: Sequence[int] | None = None,
    num_attributes: int | None = None,
) -> LatentDataset:
    """A dataset from `.npy` latents + `.npy` labels (the official pair) or one `.npz` of ours.

    An `.npz` holding `labels` needs no `labels_path`; an explicit `labels_path` wins.
    """
    latents_path = Path(latents_path)
    loaded = _read(latents_path, "latents", ("labels", "names"))
    names = None
    if isinstance(loaded, dict):
        if "latents" not in loaded:
            raise InputError(f"{latents_path}: no array 'latents' (holds {', '.join(sorted(loaded)) or 'nothing'})")
        latents = loaded["latents"]
        labels = loaded.get("labels")
        if "names" in loaded:
            names = [str(n) for n in np.asarray(loaded["names"]).reshape(-1)]
    else:
        latents, labels = loaded, None
    if labels_path is not None:
        labels_loaded = _read(Path(labels_path), "labels")
        if isinstance(labels_loaded, dict):
            if "labels" not in labels_loaded:
                raise InputError(
                    f"{labels_path}: no array 'labels' (holds {', '.join(sorted(labels_loaded)) or 'nothing'})"
                )
            labels_loaded = labels_loaded["labels"]
        labels = labels_loaded
    if labels is None:
        raise InputError(f"{latents_path}: no labels (pass the labels .npy, e.g. celebahq_anno.npy)")
    return make_dataset(latents, labels, names, str(latents_path), latent_shape, num_attributes)


def save_latent_dataset(path: str | os.PathLike, dataset: LatentDataset) -> Path:
    """Write our `.npz` format (latents, labels, names) atomically (temporary file, then rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"{path}: our dataset files end in .npz")
    names = dataset.names if dataset.names is not None else ATTRIBUTES[: dataset.labels.shape[1]]
    with atomic_file(path, ".npz") as partial:
        np.savez(
            partial,
            latents=dataset.latents.astype(np.float32),
            labels=dataset.labels.astype(np.float32),
            names=np.asarray(names),
        )
    return path


def split_dataset(dataset: LatentDataset, train_fraction: float = 0.9) -> tuple[LatentDataset, LatentDataset]:
    """(train, held-out): the first round(train_fraction * N) samples, then the rest (file order)."""
    n = len(dataset)
    num_train = min(n, max(1, int(round(train_fraction * n))))
    return dataset.subset(0, num_train), dataset.subset(num_train, n)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped): 27000 // 32 = 843."""
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    steps = int(num_samples) // int(batch_size)
    if steps == 0:
        raise InputError(f"{num_samples} samples make no full batch of {batch_size}")
    return steps


def epoch_indices(seed: int | jax.Array, epoch: int | jax.Array, num_samples: int, batch_size: int) -> jax.Array:
    """int32 [S, B] sample indices of one epoch: a permutation from fold_in(key(seed), epoch),
    S = num_samples // batch_size full batches. `seed` may be an int or a PRNG key."""
    steps = steps_per_epoch(num_samples, batch_size)
    key = jax.random.key(int(seed)) if isinstance(seed, (int, np.integer)) else seed
    order = jax.random.permutation(jax.random.fold_in(key, epoch), num_samples)
    return order[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)
