"""Optimizers and update steps as pure, unjitted functions: K attribute transformers at once, and
the classifier.

Transformer training keeps the params and optimizer state of K transformers (K = 1..40) stacked
along a leading "slot" axis; slot k trains attribute `attributes[k]` (an int32 array [K]). Every
slot sees the same batch of latents; C(w) is computed once per batch and shared by the slots. One
call of `TransformerTrainer.step` advances every slot by one Adam step (a `jax.vmap` over the
slot axis); `scan` runs S steps in one `lax.scan`, gathering each step's batch from latents that
stay on the device.

A trainer is a frozen dataclass of pure functions, in the manner of an optax transformation
(`init`, then `step`/`scan` threading the state); nothing here is jitted. The caller jits each
function once where it is used, with the shardings of its mesh
(`jaxedit.training.sharding.jit_step`), so one device and a mesh of many run the same program.
The functions are built once per trainer, so jitting them again (another run with the same
trainer) finds JAX's compilation cache.

States are NamedTuples (pytrees), so they can be checkpointed with orbax and sharded as they are:

    TransformerState(params={... leaves [K, ...]}, opt_state=(... leaves [K, ...]))
    ClassifierState(params={...}, opt_state=(...))
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxedit.latent import losses as L
from jaxedit.latent.modules import (
    LatentClassifier,
    LatentTransformer,
    classifier_from_preset,
    init_classifier_params,
    init_transformer_params,
    transformer_from_preset,
)
from jaxedit.latent.presets import MethodPreset

TRANSFORMER_METRICS = (*L.LOSS_NAMES, "flip_rate")
"""Keys of the metrics dict of a transformer step: the four losses and the share of the batch whose
target attribute C(T(w)) predicts as the flipped target (threshold 0 on the logit)."""

CLASSIFIER_METRICS = ("loss", "accuracy")


class TransformerState(NamedTuple):
    """params: transformer params, every leaf [K, ...]; opt_state: optax state, every leaf [K, ...]."""

    params: Any
    opt_state: Any


class ClassifierState(NamedTuple):
    """params: classifier params; opt_state: its optax state (includes the step count)."""

    params: Any
    opt_state: Any


def transformer_optimizer(preset: MethodPreset) -> optax.GradientTransformation:
    """Adam with the weight decay added to the gradient first (torch.optim.Adam(weight_decay)),
    constant lr: chain(add_decayed_weights(wd), scale_by_adam(b1, b2, eps), scale(-lr))."""
    return optax.chain(
        optax.add_decayed_weights(preset.weight_decay),
        optax.scale_by_adam(b1=preset.beta1, b2=preset.beta2, eps=preset.eps),
        optax.scale(-preset.lr),
    )


def classifier_lr_schedule(preset: MethodPreset, steps_per_epoch: int) -> optax.Schedule:
    """classifier_lr, times classifier_lr_decay from step classifier_decay_epochs * steps_per_epoch
    on (torch StepLR stepped once per epoch)."""
    boundary = int(preset.classifier_decay_epochs) * int(steps_per_epoch)
    return optax.piecewise_constant_schedule(preset.classifier_lr, {boundary: preset.classifier_lr_decay})


def classifier_optimizer(preset: MethodPreset, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam(classifier_lr) with classifier_weight_decay added to the gradient, step-decayed lr."""
    return optax.chain(
        optax.add_decayed_weights(preset.classifier_weight_decay),
        optax.scale_by_adam(b1=preset.beta1, b2=preset.beta2, eps=preset.eps),
        optax.scale_by_learning_rate(classifier_lr_schedule(preset, steps_per_epoch)),
    )


def transformer_loss_terms(
    preset: MethodPreset,
    classifier: LatentClassifier,
    transformer: LatentTransformer,
    transformer_params: Any,
    classifier_params: Any,
    correlation: jax.Array,
    attribute: jax.Array | int,
    w: jax.Array,
    logits0: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The loss terms (`TRANSFORMER_METRICS`) of one transformer on one batch, for attribute j.

    w [B, *latent_shape]; correlation [A, A]; logits0 = C(w) [B, A] (computed if None).
    alpha and target come from p = sigmoid(C(w))[:, j] (`training_alpha`, `flipped_target`).
    """
    if logits0 is None:
        logits0 = classifier.apply({"params": classifier_params}, w)
    p = jax.nn.sigmoid(jnp.take(logits0, attribute, axis=1))
    alpha = L.training_alpha(p)
    target = L.flipped_target(p, alpha)
    w1 = transformer.apply({"params": transformer_params}, w, alpha)
    logits1 = classifier.apply({"params": classifier_params}, w1)
    mask = L.attribute_mask(correlation, attribute, preset.corr_threshold)
    terms = L.transformer_losses(preset, logits0, logits1, w, w1, target, attribute, mask)
    predicted = (jnp.take(logits1, attribute, axis=1) > 0).astype(jnp.float32)
    terms["flip_rate"] = jnp.mean((predicted == target).astype(jnp.float32))
    return terms


@dataclasses.dataclass(frozen=True)
class TransformerTrainer:
    """Static configuration of transformer training plus its pure functions (unjitted).

    Build with `TransformerTrainer.create(preset)`. Functions (A = num_attributes, K slots):

      init(key, num_slots) -> TransformerState                 params from split(key, K), Adam zeros
      init_from_params(stacked_params [K, ...]) -> TransformerState        Adam moments zero
      step(state, classifier_params, correlation [A, A], attributes int32 [K], batch [B, *latent])
          -> (state, metrics {name: [K]})                       one Adam step per slot
      scan(state, classifier_params, correlation, attributes, latents [N, *latent], indices int32 [S, B])
          -> (state, metrics {name: [S, K]})                    S steps in one lax.scan, batch s
                                                                gathered as latents[indices[s]]

    `transformer_loss_terms` gives one slot's loss terms on a batch (for evaluation).
    """

    preset: MethodPreset
    classifier: LatentClassifier
    transformer: LatentTransformer
    optimizer: optax.GradientTransformation
    init: Callable
    init_from_params: Callable
    step: Callable
    scan: Callable

    @classmethod
    def create(cls, preset: MethodPreset, matmul_precision: str | None = None) -> TransformerTrainer:
        """Build the trainer. `matmul_precision` ("highest", "tensorfloat32", "bfloat16", ...; None:
        JAX's default, which is full float32 on CPU and may be TF32 on recent GPUs) is applied to
        every matmul of the step."""
        classifier = classifier_from_preset(preset)
        transformer = transformer_from_preset(preset)
        optimizer = transformer_optimizer(preset)

        def init_from_params(params):
            return TransformerState(params, jax.vmap(optimizer.init)(params))

        def init(key: jax.Array, num_slots: int) -> TransformerState:
            keys = jax.random.split(key, num_slots)
            return init_from_params(jax.vmap(lambda k: init_transformer_params(transformer, k))(keys))

        def update_one(params, opt_state, attribute, classifier_params, correlation, w, logits0):
            def objective(p):
                terms = transformer_loss_terms(
                    preset, classifier, transformer, p, classifier_params, correlation, attribute, w, logits0
                )
                return terms["total"], terms

            grads, terms = jax.grad(objective, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, terms

        update_slots = jax.vmap(update_one, in_axes=(0, 0, 0, None, None, None, None))

        def step(state, classifier_params, correlation, attributes, batch):
            batch = jnp.asarray(batch, jnp.float32)
            with _precision(matmul_precision):
                logits0 = classifier.apply({"params": classifier_params}, batch)
                params, opt_state, terms = update_slots(
                    state.params,
                    state.opt_state,
                    jnp.asarray(attributes, jnp.int32),
                    classifier_params,
                    correlation,
                    batch,
                    logits0,
                )
            return TransformerState(params, opt_state), terms

        def scan(state, classifier_params, correlation, attributes, latents, indices):
            def body(carry, index):
                return step(carry, classifier_params, correlation, attributes, jnp.take(latents, index, axis=0))

            return jax.lax.scan(body, state, indices)

        return cls(preset, classifier, transformer, optimizer, init, init_from_params, step, scan)


def _precision(name: str | None):
    """A context setting the default matmul precision while tracing (a no-op for None)."""
    return jax.default_matmul_precision(name) if name is not None else contextlib.nullcontext()


def stack_slots(trees: list[Any]) -> Any:
    """Stack K per-attribute pytrees along a new leading axis (the layout of stacked params)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def slot(tree: Any, index: int) -> Any:
    """The pytree of slot `index` of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


@dataclasses.dataclass(frozen=True)
class ClassifierTrainer:
    """Static configuration of classifier training plus its pure functions (unjitted).

    Build with `ClassifierTrainer.create(preset, steps_per_epoch)`. Functions:

      init(key) -> ClassifierState
      step(state, latents [B, *latent], labels [B, A] in {0, 1}) -> (state, {"loss", "accuracy"} scalars)
      scan(state, latents [N, *latent], labels [N, A], indices int32 [S, B]) -> (state, metrics {name: [S]})
      evaluate(params, latents [B, *latent], labels [B, A]) -> {"loss": scalar, "accuracy": [A]}
    """

    preset: MethodPreset
    classifier: LatentClassifier
    optimizer: optax.GradientTransformation
    steps_per_epoch: int
    init: Callable
    step: Callable
    scan: Callable
    evaluate: Callable

    @classmethod
    def create(
        cls, preset: MethodPreset, steps_per_epoch: int, matmul_precision: str | None = None
    ) -> ClassifierTrainer:
        """Build the trainer (`matmul_precision`: as `TransformerTrainer.create`)."""
        classifier = classifier_from_preset(preset)
        optimizer = classifier_optimizer(preset, steps_per_epoch)

        def init(key):
            params = init_classifier_params(classifier, key)
            return ClassifierState(params, optimizer.init(params))

        def step(state, latents, labels):
            labels = jnp.asarray(labels, jnp.float32)

            def objective(params):
                logits = classifier.apply({"params": params}, latents)
                return L.classifier_loss(logits, labels), logits

            with _precision(matmul_precision):
                (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            accuracy = jnp.mean(((logits > 0).astype(jnp.float32) == labels).astype(jnp.float32))
            return ClassifierState(optax.apply_updates(state.params, updates), opt_state), {
                "loss": loss,
                "accuracy": accuracy,
            }

        def scan(state, latents, labels, indices):
            def body(carry, index):
                return step(carry, jnp.take(latents, index, axis=0), jnp.take(labels, index, axis=0))

            return jax.lax.scan(body, state, indices)

        def evaluate(params, latents, labels):
            labels = jnp.asarray(labels, jnp.float32)
            logits = classifier.apply({"params": params}, latents)
            accuracy = jnp.mean(((logits > 0).astype(jnp.float32) == labels).astype(jnp.float32), axis=0)
            return {"loss": L.classifier_loss(logits, labels), "accuracy": accuracy}

        return cls(preset, classifier, optimizer, int(steps_per_epoch), init, step, scan, evaluate)
