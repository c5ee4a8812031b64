"""Labelling latents with real weights: sample z, map, render, annotate, save.

This is what the synthetic world (`jaxedit.data.synthetic`) stands in for. With a converted
generator and any attribute classifier written in JAX (a callable images [B, H, W, 3] on the
generator's scale, about [-1, 1] -> probabilities [B, 40] in CelebA order), `label_generator_samples`
builds the latent/label dataset the method trains on, and `save_latent_dataset` writes it in our
`.npz` format (`latents`, `labels`, `names`; `jaxedit.data.latents`).

Batches are rendered and classified on every local device at once: with more than one device the
batch is laid out along the "data" axis of a `jaxedit.training.sharding` mesh over `jax.local_devices()`
(split on the batch axis; params replicated by jit), with one device it is a plain jitted call. Seeds make the z
sample reproducible: batch i uses `fold_in(key(seed), i)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES
from jaxedit.data.latents import LatentDataset, make_dataset, save_latent_dataset
from jaxedit.errors import ConfigError, InputError

__all__ = ["LabelledSamples", "label_generator_samples", "save_labelled", "batch_placer"]


@dataclasses.dataclass(frozen=True)
class LabelledSamples:
    """z [N, z_dim]; latents [N, w_dim] (space "w") or [N, num_ws, w_dim] ("w+"); probabilities
    [N, A] from the classifier; labels = probabilities > 0.5 as float32."""

    z: np.ndarray
    latents: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray

    def dataset(self, source: str = "") -> LatentDataset:
        names = ATTRIBUTES if self.labels.shape[1] == len(ATTRIBUTES) else None
        return make_dataset(self.latents, self.labels, names, source)


def batch_placer(devices=None) -> Callable[[jax.Array], jax.Array]:
    """A function putting a batch [B, ...] on the local devices, split along B when there are several."""
    devices = list(devices or jax.local_devices())
    if len(devices) == 1:
        return lambda batch: jax.device_put(batch, devices[0])
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharding = NamedSharding(Mesh(np.asarray(devices), ("data",)), PartitionSpec("data"))
    return lambda batch: jax.device_put(batch, sharding)


def label_generator_samples(
    generator,
    image_classifier: Callable[[jax.Array], jax.Array],
    count: int,
    seed: int = 0,
    batch_size: int = 16,
    space: str = "w",
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    progress: bool = True,
    devices=None,
) -> LabelledSamples:
    """Sample `count` z, map, render with `generator`, label with `image_classifier`.

    generator: a `LoadedGenerator` (or anything with `z_dim`, `num_ws`, `mapping(z, psi) -> ws`,
    `synthesis(ws, noise_mode) -> images`). image_classifier: images [B, H, W, 3] -> probabilities
    [B, A] in [0, 1]. batch_size must be a multiple of the number of local devices used.
    space: "w" keeps w = ws[:, 0] (the mapping broadcasts it), "w+" keeps ws.
    """
    if space not in ("w", "w+"):
        raise ConfigError(f"latent space {space!r}: expected 'w' or 'w+'")
    if count < 1 or batch_size < 1:
        raise ConfigError(f"count {count} and batch_size {batch_size} must be >= 1")
    devices = list(devices or jax.local_devices())
    if batch_size % len(devices):
        raise ConfigError(f"batch_size {batch_size} must be a multiple of the {len(devices)} local devices")
    place = batch_placer(devices)
    zs, latents, probabilities = [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=count, desc="render + label", unit="img", dynamic_ncols=True, disable=None)
    done, index = 0, 0
    try:
        while done < count:
            z = jax.random.normal(
                jax.random.fold_in(jax.random.key(seed), index), (batch_size, int(generator.z_dim)), jnp.float32
            )
            ws = generator.mapping(place(z), truncation_psi)
            images = generator.synthesis(ws, noise_mode=noise_mode)
            probs = np.asarray(image_classifier(images), np.float32)
            if probs.ndim != 2 or probs.shape[0] != batch_size:
                raise InputError(f"the image classifier returned shape {probs.shape}, expected [{batch_size}, A]")
            if not np.all((probs >= 0) & (probs <= 1)):
                raise InputError("the image classifier must return probabilities in [0, 1] (apply a sigmoid to logits)")
            take = min(batch_size, count - done)
            zs.append(np.asarray(z)[:take])
            kept = np.asarray(ws)[:take]
            latents.append(kept[:, 0] if space == "w" else kept)
            probabilities.append(probs[:take])
            done += take
            index += 1
            if bar is not None:
                bar.update(take)
    finally:
        if bar is not None:
            bar.close()
    probs = np.concatenate(probabilities)
    return LabelledSamples(np.concatenate(zs), np.concatenate(latents), probs, (probs > 0.5).astype(np.float32))


def save_labelled(path, samples: LabelledSamples, source: str = "") -> str:
    """Write the samples' latents and hard labels in our `.npz` dataset format; returns the path."""
    return str(save_latent_dataset(path, samples.dataset(source or str(path))))
