"""The baselines of the paper's Table 1, in JAX, on the same labelled latents as our method.

InterFaceGAN (Shen et al.): per attribute, keep the top and bottom `keep_fraction` (2%) of the
samples by the labeller's score (its probability: with labels only there is no other score),
split them 70/30, fit a linear SVM (squared hinge loss + L2, optax Adam, full batch, all
attributes at once with `vmap`), and edit along the unit normal: `w + t * n`, t in [-3, 3],
n pointing towards "attribute present". `conditional_normals` projects each normal orthogonal to
the normals of the attributes it should not change (InterFaceGAN's conditional manipulation).
Latents of any shape are flattened ([N, w_dim] in W, [N, num_ws * w_dim] in W+).

GANSpace (Härkönen et al.): principal components of sampled W (`jnp.linalg.svd` of the centred
latents), a component added to a range of W+ layers with a scale: `w_l + s * v_k` for l in the
range (all of w in W). For an attribute, `choose_components` picks the component whose
projection correlates most with the labeller's score among the first `num_components`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxedit.errors import ConfigError, InputError


@dataclasses.dataclass(frozen=True)
class InterFaceGANBoundaries:
    """Linear boundaries for A attributes on flattened latents of `latent_shape`.

    normals: [A, D] unit vectors towards "present"; offsets: [A], so that the decision value is
    `n . (x - mean) / scale + offset` (> 0: present); mean: [D]; scale: scalar used to normalise
    inputs during fitting; val_accuracy: [A] on the held-out 30% of the kept samples.
    """

    normals: jax.Array
    offsets: jax.Array
    mean: jax.Array
    scale: float
    val_accuracy: jax.Array
    latent_shape: tuple[int, ...]

    def decision(self, latents: jax.Array) -> jax.Array:
        """Signed decision values [N, A] of latents [N, *latent_shape]."""
        x = jnp.reshape(jnp.asarray(latents, jnp.float32), (latents.shape[0], -1))
        return ((x - self.mean) / self.scale) @ self.normals.T + self.offsets


def _fit_one_svm(x_train, y_train, steps: int, lr: float, l2: float):
    """Squared-hinge linear SVM on [n, D], y in {-1, +1}: returns (weight [D], bias)."""
    dim = x_train.shape[1]
    optimizer = optax.adam(lr)

    def loss(params):
        weight, bias = params
        margins = y_train * (x_train @ weight + bias)
        return jnp.mean(jnp.square(jnp.maximum(0.0, 1.0 - margins))) + l2 * jnp.sum(jnp.square(weight))

    def body(carry, _):
        params, state = carry
        grads = jax.grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    params = (jnp.zeros(dim, jnp.float32), jnp.zeros((), jnp.float32))
    (params, _), _ = jax.lax.scan(body, (params, optimizer.init(params)), None, length=steps)
    return params


def fit_interfacegan(
    latents,
    scores,
    key: jax.Array,
    keep_fraction: float = 0.02,
    train_fraction: float = 0.7,
    steps: int = 500,
    lr: float = 0.05,
    l2: float = 1e-2,
) -> InterFaceGANBoundaries:
    """Fit one linear SVM per column of `scores` [N, A] on `latents` [N, *latent_shape].

    Keeps the `keep_fraction` highest (positives) and lowest (negatives) scored samples per
    attribute (at least 2 of each), shuffles them with `key`, trains on the first
    `train_fraction`, reports accuracy on the rest.
    """
    latents = jnp.asarray(latents, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    if latents.ndim < 2 or scores.ndim != 2 or scores.shape[0] != latents.shape[0]:
        raise InputError(
            f"InterFaceGAN: latents [N, ...] {tuple(latents.shape)} and scores [N, A] {tuple(scores.shape)} do not match"
        )
    if not 0 < keep_fraction <= 0.5 or not 0 < train_fraction < 1:
        raise ConfigError(
            f"InterFaceGAN: keep_fraction {keep_fraction} must be in (0, 0.5], train_fraction {train_fraction} in (0, 1)"
        )
    n = latents.shape[0]
    keep = max(2, int(math.floor(keep_fraction * n)))
    if 2 * keep > n:
        raise InputError(f"InterFaceGAN: {n} samples are too few to keep {keep} positives and {keep} negatives")
    x = latents.reshape(n, -1)
    mean = x.mean(axis=0)
    scale = float(jnp.sqrt(jnp.mean(jnp.square(x - mean))) + 1e-12)
    x = (x - mean) / scale
    n_train = max(2, int(round(train_fraction * 2 * keep)))
    n_train = min(n_train, 2 * keep - 1)
    labels = jnp.concatenate([jnp.ones(keep), -jnp.ones(keep)])

    def one(column, attribute_key):
        order = jnp.argsort(column)
        chosen = jnp.concatenate([order[-keep:], order[:keep]])
        permutation = jax.random.permutation(attribute_key, 2 * keep)
        chosen, y = chosen[permutation], labels[permutation]
        xs = x[chosen]
        weight, bias = _fit_one_svm(xs[:n_train], y[:n_train], steps, lr, l2)
        predictions = jnp.sign(xs[n_train:] @ weight + bias)
        accuracy = jnp.mean((predictions == y[n_train:]).astype(jnp.float32))
        norm = jnp.linalg.norm(weight) + 1e-12
        return weight / norm, bias / norm, accuracy

    keys = jax.random.split(key, scores.shape[1])
    normals, offsets, accuracy = jax.jit(jax.vmap(one, in_axes=(1, 0)))(scores, keys)
    return InterFaceGANBoundaries(normals, offsets, mean, scale, accuracy, tuple(latents.shape[1:]))


def conditional_normals(normals, conditions: Sequence[Sequence[int]]) -> jax.Array:
    """For each attribute a, its normal projected orthogonal to the normals in `conditions[a]`, re-normalised.

    normals: [A, D]; conditions: A lists of attribute indices (may be empty). Returns [A, D].
    """
    normals = jnp.asarray(normals, jnp.float32)
    if len(conditions) != normals.shape[0]:
        raise InputError(f"conditional_normals: {len(conditions)} condition lists for {normals.shape[0]} normals")
    result = []
    for a, condition in enumerate(conditions):
        n = normals[a]
        condition = [int(c) for c in condition if int(c) != a]
        if condition:
            basis = normals[jnp.asarray(condition)]  # [c, D]
            gram = basis @ basis.T
            coefficients = jnp.linalg.solve(gram + 1e-6 * jnp.eye(len(condition)), basis @ n)
            n = n - coefficients @ basis
        result.append(n / (jnp.linalg.norm(n) + 1e-12))
    return jnp.stack(result)


def most_correlated(correlation, count: int) -> list[list[int]]:
    """For each attribute, the `count` other attributes with the largest |correlation| ([A, A] matrix)."""
    corr = np.abs(np.nan_to_num(np.asarray(correlation, np.float64)))
    np.fill_diagonal(corr, -1.0)
    return [list(np.argsort(-row)[:count]) for row in corr]


def interfacegan_edit(latents, normal, distance) -> jax.Array:
    """w + t * n: latents [B, *shape], normal [D] (flattened shape), distance scalar or [B]."""
    latents = jnp.asarray(latents, jnp.float32)
    distance = (
        jnp.asarray(distance, jnp.float32).reshape(-1, *([1] * (latents.ndim - 1))) if jnp.ndim(distance) else distance
    )
    return latents + distance * jnp.reshape(normal, latents.shape[1:])


@dataclasses.dataclass(frozen=True)
class GANSpaceComponents:
    """PCA of sampled W: mean [w_dim], components [k, w_dim] (orthonormal rows), stddevs [k]."""

    mean: jax.Array
    components: jax.Array
    stddevs: jax.Array


def fit_ganspace(w, num_components: int = 20) -> GANSpaceComponents:
    """Principal components of W latents [N, w_dim] (or the layer mean of W+ [N, num_ws, w_dim])."""
    w = jnp.asarray(w, jnp.float32)
    if w.ndim == 3:
        w = w.mean(axis=1)
    if w.ndim != 2 or w.shape[0] < 2:
        raise InputError(f"GANSpace: expected W latents [N >= 2, w_dim], got {tuple(w.shape)}")
    k = min(num_components, w.shape[0], w.shape[1])
    mean = w.mean(axis=0)
    _, singular, vt = jnp.linalg.svd(w - mean, full_matrices=False)
    return GANSpaceComponents(mean, vt[:k], singular[:k] / jnp.sqrt(w.shape[0] - 1))


def choose_components(components: GANSpaceComponents, latents, scores) -> tuple[np.ndarray, np.ndarray]:
    """Per attribute: the component index whose projection correlates most with the score, and the
    sign (+1/-1) that moves towards "present". latents [N, w_dim] or W+; scores [N, A]."""
    w = jnp.asarray(latents, jnp.float32)
    if w.ndim == 3:
        w = w.mean(axis=1)
    projections = np.asarray((w - components.mean) @ components.components.T, np.float64)  # [N, k]
    scores = np.asarray(scores, np.float64)
    p = (projections - projections.mean(0)) / (projections.std(0) + 1e-12)
    s = (scores - scores.mean(0)) / (scores.std(0) + 1e-12)
    corr = p.T @ s / len(p)  # [k, A]
    index = np.argmax(np.abs(corr), axis=0)
    sign = np.sign(corr[index, np.arange(corr.shape[1])])
    return index.astype(np.int32), np.where(sign == 0, 1.0, sign)


def ganspace_edit(latents, direction, amount, layers: tuple[int, int] | None = None) -> jax.Array:
    """Add `amount * direction` ([w_dim]) to W latents [B, w_dim], or to W+ layers [first, stop) of [B, num_ws, w_dim].

    amount: scalar or [B]. layers None: every layer.
    """
    latents = jnp.asarray(latents, jnp.float32)
    amount = jnp.asarray(amount, jnp.float32)
    amount = amount.reshape(-1, *([1] * (latents.ndim - 1))) if amount.ndim else amount
    if latents.ndim == 2:
        return latents + amount * direction
    if latents.ndim != 3:
        raise InputError(
            f"GANSpace edit: expected W [B, w_dim] or W+ [B, num_ws, w_dim] latents, got {tuple(latents.shape)}"
        )
    first, stop = (0, latents.shape[1]) if layers is None else layers
    if not 0 <= first < stop <= latents.shape[1]:
        raise ConfigError(f"GANSpace layer range {layers} is not inside 0..{latents.shape[1]}")
    mask = jnp.zeros(latents.shape[1]).at[first:stop].set(1.0)[None, :, None]
    return latents + amount * mask * direction


# ------------------------------------------------------------------------------------------------
# Baselines as editing methods next to trained editors (`jaxedit edit --method`)

EDIT_BASELINES = ("interfacegan", "ganspace")


def fit_linear_directions(
    generator,
    editors,
    attributes: Sequence[str],
    methods: Sequence[str] = EDIT_BASELINES,
    samples: int = 10_000,
    seed: int = 0,
    scale: float | None = None,
    batch_size: int = 1000,
) -> list:
    """`jaxedit.editing.directions.LinearDirections` of `methods` for `attributes` (CelebA names).

    The editors' directory keeps no labelled latents, so the baselines are fitted the way the
    protocol fits them, on a fresh sample: `samples` W latents of the generator's mapping (z drawn
    from `jax.random.key(seed)`, no truncation) labelled by the editors' own classifier C
    (probabilities, sigmoid of its logits). InterFaceGAN: the SVM normal of each attribute
    (`fit_interfacegan`); GANSpace: the principal component of W most correlated with it
    (`fit_ganspace`, `choose_components`), signed towards "present".
    """
    from jaxedit.attributes import ATTRIBUTES
    from jaxedit.editing.directions import DISTANCE_PER_ALPHA, LinearDirections
    from jaxedit.editing.edits import to_editor_space

    unknown = [m for m in methods if m not in EDIT_BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(EDIT_BASELINES)}")
    if samples < 100:
        raise ConfigError(f"baseline samples: at least 100 latents are needed to fit the baselines, got {samples}")
    names = tuple(attributes)
    columns = [ATTRIBUTES.index(name) for name in names]
    z = jax.random.normal(jax.random.key(seed), (samples, generator.z_dim), jnp.float32)
    w_parts, probability_parts = [], []
    for start in range(0, samples, batch_size):
        w = np.asarray(generator.mapping(z[start : start + batch_size]))[:, 0]  # [b, w_dim]
        logits = np.asarray(editors.classify(to_editor_space(w, editors.latent_shape)))
        if logits.shape[1] != len(ATTRIBUTES):
            raise ConfigError(f"the editors' classifier gives {logits.shape[1]} outputs, not the 40 CelebA attributes")
        w_parts.append(w)
        probability_parts.append(1.0 / (1.0 + np.exp(-logits[:, columns])))
    w, probabilities = np.concatenate(w_parts), np.concatenate(probability_parts)
    sample = f"{samples} latents of the generator's mapping (seed {seed}) labelled by the editors' classifier"
    scale = DISTANCE_PER_ALPHA if scale is None else float(scale)
    fitted = []
    for method in methods:
        if method == "interfacegan":
            boundaries = fit_interfacegan(w, probabilities, jax.random.key(seed + 1))
            directions = np.asarray(boundaries.normals)
            accuracy = ", ".join(f"{n} {100 * float(a):.0f}%" for n, a in zip(names, boundaries.val_accuracy))
            description = f"InterFaceGAN: linear SVM normals on {sample} (held-out accuracy {accuracy})"
        else:
            components = fit_ganspace(w, num_components=20)
            index, sign = choose_components(components, w, probabilities)
            directions = np.asarray(components.components)[index] * sign[:, None]
            chosen = ", ".join(f"{n} PC{int(i)}" for n, i in zip(names, index))
            description = f"GANSpace: the principal component of W most correlated with C, on {sample} ({chosen})"
        fitted.append(LinearDirections(method, names, directions, scale, description))
    return fitted
