"""The paper's evaluation protocol (docs/method.md) for any editing methods and labellers.

`evaluate(methods, labeller, embedder, latents, attributes, threshold)`: for every target
attribute, the same N latents are edited to REVERSE it (strength signed per latent: towards
"present" when the labeller says absent, towards "absent" when present), input and output are
labelled by `labeller` and embedded by `embedder`, and `jaxedit.eval.metrics.edit_metrics` gives
classification accuracy, attribute preservation and identity preservation for each method.

The labeller and the identity embedder are ARGUMENTS, so one code path serves both worlds:

- the synthetic world: `synthetic.labeller(world)` and `synthetic.identity_embedder(world)`
  (closed-form stand-ins for rendering + annotating; see `jaxedit.data.synthetic`);
- real weights: `image_labeller(generator, classifier)` and `image_embedder(generator,
  recogniser)` render the latents with the generator and apply any JAX image classifier
  (images -> probabilities [B, 40]) and face recogniser (images -> embeddings [B, D]).

A method is an `EditMethod`: a name, `edit(latents, attribute_name, strength [B]) -> latents`
with strength > 0 meaning "towards present", and the table strength (ours: alpha 1.25,
InterFaceGAN: distance 3). Builders: `transformer_method(editors)`, `interfacegan_method(...)`,
`ganspace_method(...)`. Sweeps over strength (fractions of the table strength: ours 0..1.5, the
baselines 0..4, `BASELINE_SWEEP`) feed the plots and the comparison at matched accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, attribute_index
from jaxedit.errors import AttributeNameError, InputError
from jaxedit.eval import baselines, metrics

Labeller = Callable[[jax.Array], jax.Array]
"""latents [B, *latent_shape] -> attribute probabilities [B, A] (columns: `labeller_attributes`)."""
Embedder = Callable[[jax.Array], jax.Array]
"""latents [B, *latent_shape] -> identity embeddings [B, D]."""

CURVE_KEYS = (
    "fraction",
    "strength",
    "target_probability",
    "attribute_preservation",
    "identity_preservation",
    "accuracy",
    "attribute_preservation_successful",
    "identity_preservation_successful",
    "identity_cosine",
    "identity_cosine_successful",
)
"""Per sweep point: the strength (and its fraction of the table strength), the mean probability of
the reversed state, preservation over ALL edits, the table metrics (over successful edits), and
the mean identity cosine over all edits and over successful edits (NaN where none succeeded)."""

DEFAULT_SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
"""Strengths of the plotted sweeps, as fractions of each method's table strength."""

BASELINE_SWEEP = (*DEFAULT_SWEEP, 2.0, 2.5, 3.0, 4.0)
"""The baselines' sweep: further than ours, so that a baseline whose table strength edits less
than ours (InterFaceGAN's distance 3 spread over the 18 x 512 numbers of a W+ latent) can still
be compared with ours at matched accuracy."""


@dataclasses.dataclass(frozen=True)
class EditMethod:
    """One editing method: `edit(latents [B, ...], attribute name, strength [B]) -> latents [B, ...]`.

    strength > 0 moves towards "attribute present"; `strength` is the magnitude used for the table
    (signed per latent to reverse the attribute); `strength_name` labels it ("alpha", "distance").
    `attributes`: the attribute names the method can edit (None: any). `sweep`: this method's
    sweep fractions (None: the evaluation's).
    """

    name: str
    edit: Callable[[jax.Array, str, jax.Array], jax.Array]
    strength: float
    strength_name: str = "strength"
    attributes: tuple[str, ...] | None = None
    sweep: tuple[float, ...] | None = None


def transformer_method(editors, alpha: float = 1.25, name: str = "ours", layers=None) -> EditMethod:
    """Our method: the attribute's transformer T(w, alpha), signed alpha (+ adds the attribute).

    editors: anything with `.attributes` (names), `.transformer_module`, `.transformer_params`
    (stacked [K, ...]) and `.latent_shape` (a loaded `Editors`, or the training pipeline's result).
    layers: W+ layer range override (None: the preset's default, e.g. official 0..10).
    """
    from jaxedit.editing.edits import apply_edit

    names = tuple(editors.attributes)

    @jax.jit
    def run(params_k, latents, alpha_b):
        return apply_edit(editors, params_k, latents, alpha_b, layers=layers)

    def edit(latents, attribute: str, strength):
        if attribute not in names:
            raise AttributeNameError(f"the editors have no transformer for {attribute!r}")
        k = names.index(attribute)
        params_k = jax.tree.map(lambda leaf: leaf[k], editors.transformer_params)
        return run(params_k, jnp.asarray(latents, jnp.float32), jnp.asarray(strength, jnp.float32))

    return EditMethod(name, edit, float(alpha), "alpha", names)


def interfacegan_method(
    boundaries: baselines.InterFaceGANBoundaries,
    attribute_names: Sequence[str] = ATTRIBUTES,
    distance: float = 3.0,
    name: str = "interfacegan",
    normals=None,
) -> EditMethod:
    """InterFaceGAN: w + t * n (n the unit normal towards present; `normals` overrides, e.g. conditional)."""
    names = tuple(attribute_names)
    normals = boundaries.normals if normals is None else jnp.asarray(normals)
    edit_jit = jax.jit(baselines.interfacegan_edit)

    def edit(latents, attribute: str, strength):
        return edit_jit(latents, normals[names.index(attribute)], jnp.asarray(strength, jnp.float32))

    return EditMethod(name, edit, float(distance), "distance", names, BASELINE_SWEEP)


def ganspace_method(
    components: baselines.GANSpaceComponents,
    choice: tuple[np.ndarray, np.ndarray],
    attribute_names: Sequence[str] = ATTRIBUTES,
    distance: float = 3.0,
    layers: tuple[int, int] | None = None,
    name: str = "ganspace",
) -> EditMethod:
    """GANSpace: the attribute's chosen principal component (signed towards present) added with
    `distance` (W units) to W+ layers `layers` (all by default)."""
    names = tuple(attribute_names)
    index, sign = choice
    directions = components.components[jnp.asarray(index)] * jnp.asarray(sign, jnp.float32)[:, None]
    edit_jit = jax.jit(lambda latents, direction, amount: baselines.ganspace_edit(latents, direction, amount, layers))

    def edit(latents, attribute: str, strength):
        return edit_jit(latents, directions[names.index(attribute)], jnp.asarray(strength, jnp.float32))

    return EditMethod(name, edit, float(distance), "distance", names, BASELINE_SWEEP)


# ------------------------------------------------------------------------------------------------
# Labellers for real weights
# ------------------------------------------------------------------------------------------------


def image_labeller(generator, image_classifier: Callable, noise_mode: str = "const", batch_size: int = 16) -> Labeller:
    """latents -> probabilities [B, A] by rendering with `generator.synthesis` and applying
    `image_classifier(images [B, H, W, 3]) -> probabilities [B, A]` (any JAX callable)."""
    from jaxedit.editing.edits import to_generator_ws

    def label(latents):
        latents = jnp.asarray(latents, jnp.float32)
        outputs = []
        for i in range(0, latents.shape[0], batch_size):
            ws = to_generator_ws(latents[i : i + batch_size], int(generator.num_ws))
            outputs.append(np.asarray(image_classifier(generator.synthesis(ws, noise_mode=noise_mode))))
        return jnp.asarray(np.concatenate(outputs))

    return label


def image_embedder(generator, face_recogniser: Callable, noise_mode: str = "const", batch_size: int = 16) -> Embedder:
    """latents -> identity embeddings [B, D] via rendering and `face_recogniser(images) -> [B, D]`."""
    return image_labeller(generator, face_recogniser, noise_mode, batch_size)


# ------------------------------------------------------------------------------------------------
# The protocol
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Results: `table[attribute][method] = {"accuracy", "attribute_preservation",
    "identity_preservation", "identity_cosine_mean", "identity_cosine_std", "successes"}`
    (`metrics.edit_metrics`); `sweeps[attribute][method] = {key: [one value per sweep point]}`
    for the keys of `CURVE_KEYS`;
    `threshold`: the identity cosine threshold; `count`: latents per attribute."""

    table: dict
    sweeps: dict
    threshold: float
    count: int
    methods: tuple[str, ...]


def apply_batched(fn: Callable, latents, batch_size: int) -> np.ndarray:
    """np.concatenate of fn over consecutive slices of `batch_size` rows of latents [N, ...]."""
    return np.concatenate([np.asarray(fn(latents[i : i + batch_size])) for i in range(0, latents.shape[0], batch_size)])


def evaluate(
    methods: Sequence[EditMethod],
    labeller: Labeller,
    embedder: Embedder,
    latents,
    attributes: Sequence[str | int],
    threshold: float,
    labeller_attributes: Sequence[str] = ATTRIBUTES,
    sweep: Sequence[float] = DEFAULT_SWEEP,
    sweep_attributes: Sequence[str | int] | None = None,
    batch_size: int = 1000,
    progress: Callable | None = None,
) -> Evaluation:
    """Run the protocol: every method edits the same `latents` [N, *latent_shape] to reverse each
    of `attributes` (names or indices into `labeller_attributes`).

    labeller: latents -> probabilities [B, len(labeller_attributes)]; a label is p > 0.5.
    embedder: latents -> identity embeddings [B, D]; `threshold` from `identity.far_threshold`.
    sweep: fractions of each method's table strength (a method's own `sweep` wins), evaluated for
    `sweep_attributes` (default: all evaluated attributes) to draw curves; the table uses fraction 1.
    """
    latents = jnp.asarray(latents, jnp.float32)
    if latents.ndim < 2:
        raise InputError(f"evaluation latents must be [N, ...], got shape {tuple(latents.shape)}")
    label_names = tuple(labeller_attributes)
    targets = [label_names[attribute_index(a, label_names)] for a in attributes]
    sweep_targets = (
        targets
        if sweep_attributes is None
        else [label_names[attribute_index(a, label_names)] for a in sweep_attributes]
    )
    for method in methods:
        missing = [t for t in targets if method.attributes is not None and t not in method.attributes]
        if missing:
            raise AttributeNameError(f"method {method.name!r} cannot edit {', '.join(missing)}")
    probs0 = apply_batched(labeller, latents, batch_size)
    if probs0.ndim != 2 or probs0.shape != (latents.shape[0], len(label_names)):
        raise InputError(
            f"the labeller returned shape {probs0.shape}, expected [{latents.shape[0]}, {len(label_names)}]"
        )
    labels0 = probs0 > 0.5
    emb0 = apply_batched(embedder, latents, batch_size)
    table, sweeps = {}, {}

    def fractions_of(method: EditMethod) -> list[float]:
        return sorted(set(float(f) for f in (method.sweep if method.sweep is not None else sweep)) | {1.0})

    for name in targets:
        j = label_names.index(name)
        towards = np.where(labels0[:, j], -1.0, 1.0).astype(np.float32)  # reverse the attribute
        table[name], sweeps[name] = {}, {}
        for method in methods:
            curve = {key: [] for key in CURVE_KEYS}
            for fraction in fractions_of(method) if name in sweep_targets else [1.0]:
                strength = jnp.asarray(towards * method.strength * fraction)
                edited = np.concatenate(
                    [
                        np.asarray(method.edit(latents[i : i + batch_size], name, strength[i : i + batch_size]))
                        for i in range(0, latents.shape[0], batch_size)
                    ]
                )
                probs1 = apply_batched(labeller, edited, batch_size)
                emb1 = apply_batched(embedder, edited, batch_size)
                labels1 = probs1 > 0.5
                if fraction == 1.0:
                    table[name][method.name] = metrics.edit_metrics(labels0, labels1, emb0, emb1, j, threshold)
                if name in sweep_targets:
                    reversed_probability = np.where(labels0[:, j], 1.0 - probs1[:, j], probs1[:, j])
                    everyone = np.ones(len(labels0), bool)
                    curve["fraction"].append(fraction)
                    curve["strength"].append(fraction * method.strength)
                    curve["target_probability"].append(float(np.mean(reversed_probability)))
                    curve["attribute_preservation"].append(
                        metrics.attribute_preservation(labels0, labels1, j, everyone)
                    )
                    curve["identity_preservation"].append(
                        metrics.identity_preservation(emb0, emb1, threshold, everyone)
                    )
                    at = metrics.edit_metrics(labels0, labels1, emb0, emb1, j, threshold)
                    curve["accuracy"].append(at["accuracy"])
                    curve["attribute_preservation_successful"].append(at["attribute_preservation"])
                    curve["identity_preservation_successful"].append(at["identity_preservation"])
                    curve["identity_cosine"].append(float(np.mean(metrics.cosine_similarity(emb0, emb1))))
                    cosine = at["identity_cosine_mean"]
                    curve["identity_cosine_successful"].append(float("nan") if cosine is None else cosine)
            if name in sweep_targets:
                sweeps[name][method.name] = curve
        if progress is not None:
            progress(name)
    return Evaluation(table, sweeps, float(threshold), int(latents.shape[0]), tuple(m.name for m in methods))
