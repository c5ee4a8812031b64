"""Optimizers and jitted update steps: K attribute transformers at once, and the classifier.

Transformer training keeps the params and optimizer state of K transformers (K = 1..40) stacked
along a leading "slot" axis; slot k trains attribute `attributes[k]` (an int32 array [K]). Every
slot sees the same batch of latents; C(w) is computed once per batch and shared by the slots. One
call of `TransformerTrainer.step` advances every slot by one Adam step (a `jax.vmap` over the
slot axis); `scan_steps` / `scan_indexed` run S steps in one compiled `lax.scan`.

States are NamedTuples (pytrees), so they can be checkpointed with orbax and sharded as they are:

    TransformerState(params={... leaves [K, ...]}, opt_state=(... leaves [K, ...]))
    ClassifierState(params={...}, opt_state=(...))

All functions are pure: no state is kept in the trainer objects besides static configuration.
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
    """Static configuration of transformer training plus its jitted pure functions.

    Build with `TransformerTrainer.create(preset)`. Functions (all pure; A = num_attributes):

      init(key, num_slots) -> TransformerState                 params from split(key, K), Adam zeros
      step(state, classifier_params, correlation [A, A], attributes int32 [K], batch [B, *latent])
          -> (state, metrics {name: [K]})                       one Adam step per slot
      scan_steps(state, classifier_params, correlation, attributes, batches [S, B, *latent])
          -> (state, metrics {name: [S, K]})                    S steps in one lax.scan
      scan_indexed(state, classifier_params, correlation, attributes, latents [N, *latent],
                   indices int32 [S, B]) -> (state, metrics {name: [S, K]})
          the same, gathering batch s as latents[indices[s]] on device inside the scan.
      loss_terms(transformer_params, classifier_params, correlation, attribute, w) -> {name: scalar}
          (one slot, not jitted; for evaluation and tests)
    """

    preset: MethodPreset
    classifier: LatentClassifier
    transformer: LatentTransformer
    optimizer: optax.GradientTransformation
    init: Callable
    step: Callable
    scan_steps: Callable
    scan_indexed: Callable

    @classmethod
    def create(
        cls, preset: MethodPreset, donate_state: bool = False, matmul_precision: str | None = None
    ) -> TransformerTrainer:
        """Build the trainer; `donate_state=True` lets XLA reuse the input state's buffers
        (the caller must not use a state after passing it in). `matmul_precision` ("highest",
        "tensorfloat32", "bfloat16", ...; None: JAX's default, which is full float32 on CPU and
        may be TF32 on recent GPUs) is applied to every matmul of the step."""
        classifier = classifier_from_preset(preset)
        transformer = transformer_from_preset(preset)
        optimizer = transformer_optimizer(preset)

        def init(key: jax.Array, num_slots: int) -> TransformerState:
            keys = jax.random.split(key, num_slots)
            params = jax.vmap(lambda k: init_transformer_params(transformer, k))(keys)
            return TransformerState(params, jax.vmap(optimizer.init)(params))

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

        def step_fn(state, classifier_params, correlation, attributes, batch):
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

        def scan_steps_fn(state, classifier_params, correlation, attributes, batches):
            def body(carry, batch):
                return step_fn(carry, classifier_params, correlation, attributes, batch)

            return jax.lax.scan(body, state, batches)

        def scan_indexed_fn(state, classifier_params, correlation, attributes, latents, indices):
            def body(carry, index):
                return step_fn(carry, classifier_params, correlation, attributes, jnp.take(latents, index, axis=0))

            return jax.lax.scan(body, state, indices)

        donate = (0,) if donate_state else ()
        return cls(
            preset=preset,
            classifier=classifier,
            transformer=transformer,
            optimizer=optimizer,
            init=jax.jit(init, static_argnums=1),
            step=jax.jit(step_fn, donate_argnums=donate),
            scan_steps=jax.jit(scan_steps_fn, donate_argnums=donate),
            scan_indexed=jax.jit(scan_indexed_fn, donate_argnums=donate),
        )

    def loss_terms(self, transformer_params, classifier_params, correlation, attribute, w) -> dict[str, jax.Array]:
        return transformer_loss_terms(
            self.preset,
            self.classifier,
            self.transformer,
            transformer_params,
            classifier_params,
            correlation,
            attribute,
            w,
        )


def _precision(name: str | None):
    """A context setting the default matmul precision while tracing (a no-op for None)."""
    return jax.default_matmul_precision(name) if name is not None else contextlib.nullcontext()


def stack_slots(trees: list[Any]) -> Any:
    """Stack K per-attribute pytrees along a new leading axis (the layout of stacked params)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def slot(tree: Any, index: int) -> Any:
    """The pytree of slot `index` of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def state_from_params(trainer: TransformerTrainer, stacked_params: Any) -> TransformerState:
    """A fresh TransformerState (Adam moments zero) starting from given stacked params [K, ...]."""
    return TransformerState(stacked_params, jax.vmap(trainer.optimizer.init)(stacked_params))


@dataclasses.dataclass(frozen=True)
class ClassifierTrainer:
    """Static configuration of classifier training plus its jitted pure functions.

    Build with `ClassifierTrainer.create(preset, steps_per_epoch)`. Functions:

      init(key) -> ClassifierState
      step(state, latents [B, *latent], labels [B, A] in {0, 1}) -> (state, {"loss", "accuracy"} scalars)
      scan_steps(state, latents [S, B, *latent], labels [S, B, A]) -> (state, metrics {name: [S]})
      scan_indexed(state, latents [N, *latent], labels [N, A], indices int32 [S, B]) -> (state, metrics [S])
      evaluate(params, latents [B, *latent], labels [B, A]) -> {"loss": scalar, "accuracy": [A]}
    """

    preset: MethodPreset
    classifier: LatentClassifier
    optimizer: optax.GradientTransformation
    steps_per_epoch: int
    init: Callable
    step: Callable
    scan_steps: Callable
    scan_indexed: Callable
    evaluate: Callable

    @classmethod
    def create(
        cls, preset: MethodPreset, steps_per_epoch: int, donate_state: bool = False, matmul_precision: str | None = None
    ) -> ClassifierTrainer:
        """Build the trainer (`donate_state`, `matmul_precision`: as `TransformerTrainer.create`)."""
        classifier = classifier_from_preset(preset)
        optimizer = classifier_optimizer(preset, steps_per_epoch)

        def init(key):
            params = init_classifier_params(classifier, key)
            return ClassifierState(params, optimizer.init(params))

        def step_fn(state, latents, labels):
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

        def scan_steps_fn(state, latents, labels):
            return jax.lax.scan(lambda carry, xs: step_fn(carry, *xs), state, (latents, labels))

        def scan_indexed_fn(state, latents, labels, indices):
            def body(carry, index):
                return step_fn(carry, jnp.take(latents, index, axis=0), jnp.take(labels, index, axis=0))

            return jax.lax.scan(body, state, indices)

        def evaluate(params, latents, labels):
            labels = jnp.asarray(labels, jnp.float32)
            logits = classifier.apply({"params": params}, latents)
            accuracy = jnp.mean(((logits > 0).astype(jnp.float32) == labels).astype(jnp.float32), axis=0)
            return {"loss": L.classifier_loss(logits, labels), "accuracy": accuracy}

        donate = (0,) if donate_state else ()
        return cls(
            preset=preset,
            classifier=classifier,
            optimizer=optimizer,
            steps_per_epoch=int(steps_per_epoch),
            init=jax.jit(init),
            step=jax.jit(step_fn, donate_argnums=donate),
            scan_steps=jax.jit(scan_steps_fn, donate_argnums=donate),
            scan_indexed=jax.jit(scan_indexed_fn, donate_argnums=donate),
            evaluate=jax.jit(evaluate),
        )
