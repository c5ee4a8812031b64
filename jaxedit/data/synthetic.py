"""The embedded synthetic attribute world: a stand-in for "render, then annotate".

On real weights the paper labels latents by rendering them with StyleGAN2 and annotating the images
with a CelebA attribute classifier and a face recogniser (VGG-Face). Without weights, this module
stands in for that whole chain with closed-form functions of the latent, so the method, the
baselines and the evaluation run end to end on a laptop CPU. Everything here is SYNTHETIC: the
numbers it produces measure the methods on this world, not on faces.

What the world is (see docs/synthetic_world.md for the full table and the reasons):

- Latents come from a StyleGAN2 mapping network (a seeded random one by default, config
  z_dim = w_dim = 512, 8 layers, or a converted generator's), so W has its real anisotropy.
  W+ latents are w broadcast to `num_ws` layers plus optional per-layer Gaussian jitter
  (`w_plus_jitter` times the per-coordinate std of W).
- PCA of a calibration sample of W splits it into an attribute-relevant subspace (the top
  `subspace_dim` principal components, whitened: `u [B, P]`) and its orthogonal complement.
- 7 shared latent factors (gender, age, smile, beard, glam, hair_tone, weight) are fixed
  orthonormal directions in u; they create CelebA-like correlations. Each attribute's score is a
  weighted sum of factors plus its own non-linear term (a random 2-layer tanh MLP and a quadratic
  form of a 4-d projection of u), standardised; some attributes are gated by Male with a soft
  minimum (Goatee = male AND bearded, Heavy_Makeup = female AND glam, No_Beard = NOT(male AND
  bearded), ...). A bias per attribute sets its frequency to CelebA's (`CELEBA_MARGINALS`).
  logits = sharpness * score; probabilities = sigmoid(logits); hard labels = logits > 0.
- The identity embedding ignores the attribute subspace: random Fourier features (an RBF kernel)
  of the complement, normalised to unit length. Different latents get near-orthogonal embeddings;
  the kernel length scale is set so that the 50/50 blend of two random latents sits at the 0.1%
  false-acceptance cosine (morphs fool face recognisers about half the time).
- In W+, each attribute reads the mean of its layer group (coarse / middle / fine: layers
  [0, 4), [4, 8), [8, 11) of 18, scaled for other depths); identity reads the mean of all layers.

The world is a frozen dataclass (`SyntheticWorld`: config, params pytree, mapping callable);
`attribute_logits(world, latents)`, `attribute_probabilities`, `attribute_labels` and
`identity_embedding` are pure functions of (params, latents), jit-able.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from jaxedit.data.world_config import (
    ATTRIBUTE_SPECS,
    CELEBA_MARGINALS,
    FACTORS,
    OWN_DIM,
    OWN_HIDDEN,
    SOFTMIN_TEMPERATURE,
    WorldConfig,
)
from jaxedit.errors import ConfigError, InputError


@dataclasses.dataclass(frozen=True)
class SyntheticWorld:
    """A built world: its config, its params pytree (arrays only) and the mapping z -> w.

    mapping: callable z [B, z_dim] -> w [B, w_dim] (a jitted StyleGAN2 mapping network).
    params: {"mean" [w_dim], "attr_proj" [w_dim, P], "factor_dirs" [F, P], "loadings" [40, F],
      "own_weight" [40], "own_proj" [40, 4, P], "own_w1" [40, 4, 16], "own_b1" [40, 16],
      "own_w2" [40, 16], "own_quad" [40], "main_mean" [40], "main_std" [40], "own_mean" [40],
      "own_std" [40], "bias" [40], "gate" [40], "negate" [40], "group" [40],
      "id_proj" [w_dim, m], "id_omega" [m, D], "id_phase" [D], "w_std" [w_dim]}.
    source: "random mapping (seed N)" or the generator directory.
    """

    config: WorldConfig
    params: dict
    mapping: Callable[[jax.Array], jax.Array]
    source: str = "random mapping"

    @property
    def z_dim(self) -> int:
        return int(self.config.z_dim)

    @property
    def w_dim(self) -> int:
        return int(self.params["mean"].shape[0])

    @property
    def attributes(self) -> tuple[str, ...]:
        return ATTRIBUTES

    def describe(self) -> str:
        return (
            f"SYNTHETIC attribute world (stand-in for rendering + annotating; not faces): {self.source}, "
            f"w_dim {self.w_dim}, attribute subspace {self.config.subspace_dim} PCs, seed {self.config.seed}"
        )


# ------------------------------------------------------------------------------------------------
# Pure functions of (params, latents)
# ------------------------------------------------------------------------------------------------


def layer_groups(num_ws: int) -> tuple[tuple[int, int], ...]:
    """W+ layer ranges (first, stop) of the coarse, middle and fine groups: (0,4), (4,8), (8,11) of 18.

    Other depths scale the bounds by num_ws / 18; a group that would be empty reads the last layer
    of the previous one (so every group reads at least one layer).
    """
    groups, first = [], 0
    for bound in (4, 8, 11):
        stop = min(num_ws, max(first + 1, round(num_ws * bound / 18)))
        start = min(first, stop - 1)
        groups.append((start, stop))
        first = stop
    return tuple(groups)


def _softmin(a: jax.Array, b: jax.Array) -> jax.Array:
    t = SOFTMIN_TEMPERATURE
    return -t * jnp.logaddexp(-a / t, -b / t)


def _raw_terms(params: dict, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Unstandardised (factor part, own part) of every attribute: two arrays [B, 40]."""
    u = (w - params["mean"]) @ params["attr_proj"]  # [B, P] whitened
    factors = u @ params["factor_dirs"].T  # [B, F]
    factor_part = factors @ params["loadings"].T  # [B, 40]
    x = jnp.einsum("bp,kdp->bkd", u, params["own_proj"])  # [B, 40, 4]
    hidden = jnp.tanh(jnp.einsum("bkd,kdh->bkh", x, params["own_w1"]) + params["own_b1"])
    mlp = jnp.einsum("bkh,kh->bk", hidden, params["own_w2"])
    own = 0.6 * x[..., 0] + mlp + params["own_quad"] * x[..., 1] * x[..., 2]
    return factor_part, own


def _scores(params: dict, w: jax.Array) -> jax.Array:
    """Standardised, biased score of every attribute for W latents [B, w_dim] -> [B, 40]; > 0 is present."""
    factor_part, own = _raw_terms(params, w)
    own = (own - params["own_mean"]) / params["own_std"]
    main = factor_part + params["own_weight"] * own
    main = (main - params["main_mean"]) / params["main_std"] + params["bias"]
    male = main[:, ATTRIBUTES.index("Male")][:, None]
    gate = params["gate"]
    gated = jnp.where(gate > 0, _softmin(male, main), jnp.where(gate < 0, _softmin(-male, main), main))
    return jnp.where(params["negate"] > 0, -gated, gated)


def _w_scores(params: dict, sharpness: float, latents: jax.Array) -> jax.Array:
    if latents.ndim == 2:
        return sharpness * _scores(params, latents)
    num_ws = latents.shape[1]
    per_group = []
    for first, stop in layer_groups(num_ws):
        per_group.append(_scores(params, latents[:, first:stop].mean(axis=1)))
    stacked = jnp.stack(per_group, axis=0)  # [3, B, 40]
    chosen = jnp.take_along_axis(
        stacked, params["group"].astype(jnp.int32)[None, None, :].repeat(latents.shape[0], 1), axis=0
    )[0]
    return sharpness * chosen


def _check_latents(world: SyntheticWorld, latents: jax.Array) -> jax.Array:
    latents = jnp.asarray(latents, jnp.float32)
    if latents.ndim not in (2, 3) or latents.shape[-1] != world.w_dim:
        raise InputError(
            f"synthetic world: latents must be [B, {world.w_dim}] (W) or [B, num_ws, {world.w_dim}] (W+), got {tuple(latents.shape)}"
        )
    return latents


def attribute_logits(world: SyntheticWorld, latents: jax.Array) -> jax.Array:
    """The stand-in annotator's logits: latents [B, w_dim] or [B, num_ws, w_dim] -> [B, 40]."""
    latents = _check_latents(world, latents)
    return _w_scores(world.params, world.config.sharpness, latents)


def attribute_probabilities(world: SyntheticWorld, latents: jax.Array) -> jax.Array:
    """sigmoid(attribute_logits): [B, 40] in (0, 1)."""
    return jax.nn.sigmoid(attribute_logits(world, latents))


def attribute_labels(world: SyntheticWorld, latents: jax.Array) -> jax.Array:
    """Hard labels (probability > 0.5) as float32 0/1: [B, 40]."""
    return (attribute_logits(world, latents) > 0).astype(jnp.float32)


def identity_embedding(world: SyntheticWorld, latents: jax.Array) -> jax.Array:
    """The stand-in face recogniser: unit-length embeddings [B, identity_dim].

    Reads only the component of w orthogonal to the attribute subspace (the W+ layer mean in W+):
    random Fourier features of an RBF kernel, so cos(e(w1), e(w2)) ~ exp(-|c1 - c2|^2 / 2 l^2).
    """
    latents = _check_latents(world, latents)
    w = latents if latents.ndim == 2 else latents.mean(axis=1)
    p = world.params
    c = (w - p["mean"]) @ p["id_proj"]
    features = jnp.cos(c @ p["id_omega"] + p["id_phase"])
    return features / jnp.linalg.norm(features, axis=-1, keepdims=True)


def labeller(world: SyntheticWorld) -> Callable[[jax.Array], jax.Array]:
    """latents -> probabilities [B, 40] (jitted), the form the evaluation takes."""
    params, sharpness = world.params, world.config.sharpness

    @jax.jit
    def label(latents):
        return jax.nn.sigmoid(_w_scores(params, sharpness, jnp.asarray(latents, jnp.float32)))

    return label


def identity_embedder(world: SyntheticWorld) -> Callable[[jax.Array], jax.Array]:
    """latents -> unit identity embeddings [B, D] (jitted), the form the evaluation takes."""
    return jax.jit(lambda latents: identity_embedding(world, latents))


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------


def map_in_batches(mapping: Callable, z: jax.Array, batch_size: int = 8192) -> jax.Array:
    """mapping(z) in chunks: z [N, z_dim] -> w [N, w_dim]."""
    outputs = [np.asarray(mapping(z[i : i + batch_size])) for i in range(0, z.shape[0], batch_size)]
    return jnp.asarray(np.concatenate(outputs, axis=0))


def sample_latents(world: SyntheticWorld, key: jax.Array, count: int, space: str = "w") -> jax.Array:
    """`count` latents: z ~ N(0, I) through the mapping; W [N, w_dim] or W+ [N, num_ws, w_dim].

    W+ broadcasts w to num_ws layers and adds N(0, (w_plus_jitter * std_W)^2) per layer and coordinate.
    """
    if space not in ("w", "w+"):
        raise ConfigError(f"latent space {space!r}: expected 'w' or 'w+'")
    if count < 1:
        raise ConfigError(f"sample count must be >= 1, got {count}")
    key_z, key_jitter = jax.random.split(key)
    z = jax.random.normal(key_z, (count, world.z_dim), jnp.float32)
    w = map_in_batches(world.mapping, z)
    if space == "w":
        return w
    ws = jnp.broadcast_to(w[:, None, :], (count, world.config.num_ws, world.w_dim))
    if world.config.w_plus_jitter > 0:
        noise = jax.random.normal(key_jitter, ws.shape, jnp.float32)
        ws = ws + world.config.w_plus_jitter * world.params["w_std"] * noise
    return ws


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------


def random_mapping(config: WorldConfig) -> Callable[[jax.Array], jax.Array]:
    """A seeded, randomly initialised StyleGAN2 mapping network z [B, z_dim] -> w [B, w_dim]."""
    from jaxedit.stylegan2.config import GeneratorConfig
    from jaxedit.stylegan2.networks import MappingNetwork

    gconfig = GeneratorConfig(
        resolution=4, z_dim=config.z_dim, w_dim=config.w_dim, mapping_layers=config.mapping_layers
    )
    module = MappingNetwork(gconfig)
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    variables = module.init(key, jnp.zeros((1, config.z_dim), jnp.float32))
    return jax.jit(lambda z: module.apply(variables, z))


def _orthonormal_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((dim, rows)))
    return q.T.astype(np.float32)


def _bisect_bias(values: np.ndarray, target: float, fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """b such that mean(fn(values + b) > 0) = target (fn monotone in its argument)."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if np.mean(fn(values + mid) > 0) > target:
            high = mid
        else:
            low = mid
    return 0.5 * (low + high)


def build_world(
    config: WorldConfig = WorldConfig(),
    mapping: Callable[[jax.Array], jax.Array] | None = None,
    source: str | None = None,
) -> SyntheticWorld:
    """Build the world of `config`: sample calibration latents, PCA, projections, frequency biases.

    mapping: z [B, z_dim] -> w [B, w_dim]; None builds the seeded random StyleGAN2 mapping network.
    With a converted generator pass `lambda z: gen.mapping(z)[:, 0]` and its z_dim / w_dim / num_ws
    in `config`.
    """
    if mapping is None:
        mapping = random_mapping(config)
        source = source or f"random StyleGAN2 mapping network (seed {config.seed}, {config.mapping_layers} layers)"
    rng = np.random.default_rng(config.seed)
    z = jax.random.normal(
        jax.random.fold_in(jax.random.key(config.seed), 2), (config.calibration_samples, config.z_dim)
    )
    w = np.asarray(map_in_batches(mapping, z), np.float64)
    if w.ndim != 2 or w.shape[1] != config.w_dim:
        raise ConfigError(f"synthetic world: the mapping gave latents of shape {w.shape}, expected [N, {config.w_dim}]")
    if not np.all(np.isfinite(w)):
        raise InputError("synthetic world: the mapping network produced non-finite latents")
    mean = w.mean(axis=0)
    centred = w - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / (len(w) - 1))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 1e-12), eigenvectors[:, order]
    P = config.subspace_dim
    attr_proj = eigenvectors[:, :P] / np.sqrt(eigenvalues[:P])
    rest = eigenvectors[:, P:]
    rest_scale = math.sqrt(float(eigenvalues[P:].mean()))
    m = rest.shape[1]
    id_proj = rest / rest_scale
    # Length scale: cos(blend of two random latents, either one) = the 0.1% FAR cosine 3.09 / sqrt(D).
    D = config.identity_dim
    typical_distance = math.sqrt(2 * m)
    threshold = min(3.09 / math.sqrt(D), 0.9)
    length_scale = (typical_distance / 2) / math.sqrt(2 * math.log(1 / threshold))
    id_omega = rng.standard_normal((m, D)) / length_scale
    id_phase = rng.uniform(0, 2 * np.pi, D)

    factor_dirs = _orthonormal_rows(rng, len(FACTORS), P)
    loadings = np.zeros((NUM_ATTRIBUTES, len(FACTORS)), np.float32)
    own_weight = np.zeros(NUM_ATTRIBUTES, np.float32)
    gate = np.zeros(NUM_ATTRIBUTES, np.float32)
    negate = np.zeros(NUM_ATTRIBUTES, np.float32)
    group = np.zeros(NUM_ATTRIBUTES, np.int32)
    for j, name in enumerate(ATTRIBUTES):
        spec = ATTRIBUTE_SPECS[name]
        for factor, weight in spec.loadings:
            loadings[j, FACTORS.index(factor)] = weight
        own_weight[j], gate[j], negate[j], group[j] = spec.own, spec.gate, float(spec.negate), spec.group
    params = {
        "mean": mean.astype(np.float32),
        "attr_proj": attr_proj.astype(np.float32),
        "factor_dirs": factor_dirs,
        "loadings": loadings,
        "own_weight": own_weight,
        "own_proj": np.stack([_orthonormal_rows(rng, OWN_DIM, P) for _ in ATTRIBUTES]),
        "own_w1": (rng.standard_normal((NUM_ATTRIBUTES, OWN_DIM, OWN_HIDDEN)) * 1.2).astype(np.float32),
        "own_b1": (rng.standard_normal((NUM_ATTRIBUTES, OWN_HIDDEN)) * 0.5).astype(np.float32),
        "own_w2": (rng.standard_normal((NUM_ATTRIBUTES, OWN_HIDDEN)) / math.sqrt(OWN_HIDDEN)).astype(np.float32),
        "own_quad": rng.choice([-0.5, 0.5], NUM_ATTRIBUTES).astype(np.float32),
        "main_mean": np.zeros(NUM_ATTRIBUTES, np.float32),
        "main_std": np.ones(NUM_ATTRIBUTES, np.float32),
        "own_mean": np.zeros(NUM_ATTRIBUTES, np.float32),
        "own_std": np.ones(NUM_ATTRIBUTES, np.float32),
        "bias": np.zeros(NUM_ATTRIBUTES, np.float32),
        "gate": gate,
        "negate": negate,
        "group": group,
        "id_proj": id_proj.astype(np.float32),
        "id_omega": id_omega.astype(np.float32),
        "id_phase": id_phase.astype(np.float32),
        "w_std": np.sqrt(centred.var(axis=0)).astype(np.float32),
    }
    w32 = jnp.asarray(w, jnp.float32)
    # Standardise the own terms, then the main scores, on the calibration sample.
    _, own = (np.asarray(a, np.float64) for a in _raw_terms(params, w32))
    params["own_mean"], params["own_std"] = own.mean(0).astype(np.float32), own.std(0).astype(np.float32)
    factor_part, own = (np.asarray(a, np.float64) for a in _raw_terms(params, w32))
    main = factor_part + own_weight * (own - params["own_mean"]) / params["own_std"]
    params["main_mean"], params["main_std"] = main.mean(0).astype(np.float32), main.std(0).astype(np.float32)
    main = (main - params["main_mean"]) / params["main_std"]
    # Frequency biases: ungated attributes first (Male is needed by the gates), then the gated ones.
    bias = np.zeros(NUM_ATTRIBUTES)
    male_index = ATTRIBUTES.index("Male")
    for j, name in enumerate(ATTRIBUTES):
        if gate[j] == 0:
            bias[j] = _bisect_bias(main[:, j], CELEBA_MARGINALS[name], lambda v: v)
    male = main[:, male_index] + bias[male_index]
    softmin = lambda a, b: -SOFTMIN_TEMPERATURE * np.logaddexp(-a / SOFTMIN_TEMPERATURE, -b / SOFTMIN_TEMPERATURE)
    for j, name in enumerate(ATTRIBUTES):
        if gate[j] != 0:
            g = male * gate[j]
            target = CELEBA_MARGINALS[name]
            if negate[j]:
                bias[j] = _bisect_bias(main[:, j], 1 - target, lambda v, g=g: softmin(g, v))
            else:
                bias[j] = _bisect_bias(main[:, j], target, lambda v, g=g: softmin(g, v))
    params["bias"] = bias.astype(np.float32)
    params = jax.tree.map(jnp.asarray, params)
    return SyntheticWorld(config=config, params=params, mapping=mapping, source=source or "given mapping")


def world_from_generator(generator, config: WorldConfig | None = None) -> SyntheticWorld:
    """A world whose latents come from a converted generator's mapping (truncation psi = 1).

    The labellers and the identity are still the synthetic stand-ins (no rendering happens); use
    `jaxedit.data.labelling` to label rendered images with a real classifier instead.
    """
    base = config or WorldConfig()
    config = dataclasses.replace(
        base, z_dim=int(generator.z_dim), w_dim=int(generator.w_dim), num_ws=int(generator.num_ws), subspace_dim=0
    )
    mapping = lambda z: generator.mapping(z)[:, 0]
    return build_world(
        config,
        mapping=mapping,
        source=f"mapping network of the converted generator ({getattr(generator, 'source', 'given')})",
    )
