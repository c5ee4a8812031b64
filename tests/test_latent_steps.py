"""Update steps: K attributes in one vmapped call == K separate runs; a scan == repeated steps;
the optimizers are torch's Adam (weight decay added to the gradient); classifier training.
The trainers' functions are pure and unjitted: each is jitted here, where it is used."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.data.latents import epoch_indices
from jaxedit.latent import PRESETS
from jaxedit.latent.losses import correlation_matrix
from jaxedit.training.steps import (
    TRANSFORMER_METRICS,
    ClassifierTrainer,
    TransformerTrainer,
    classifier_lr_schedule,
    classifier_optimizer,
    slot,
    transformer_optimizer,
)

SMALL = {
    "official": PRESETS["official"].replace(num_ws=2, w_dim=32, classifier_hidden=(48, 24)),
    "paper": PRESETS["paper"].replace(w_dim=32, transformer_hidden=16, classifier_hidden=(24, 16)),
}
ATTRIBUTES = jnp.array([31, 0, 5, 20, 39], jnp.int32)


@pytest.fixture(scope="module", params=sorted(SMALL))
def setup(request):
    preset = SMALL[request.param]
    trainer = TransformerTrainer.create(preset)
    classifier_params = ClassifierTrainer.create(preset, steps_per_epoch=4).init(jax.random.key(0)).params
    labels = (jax.random.uniform(jax.random.key(1), (64, 40)) > 0.6).astype(jnp.float32)
    correlation = correlation_matrix(labels)
    latents = 1.5 * jax.random.normal(jax.random.key(2), (48, *preset.latent_shape))
    indices = jnp.arange(48, dtype=jnp.int32)[::-1].reshape(3, 16)  # 3 steps of 16 rows
    state = trainer.init(jax.random.key(3), int(ATTRIBUTES.shape[0]))
    return preset, jax.jit(trainer.scan), classifier_params, correlation, (latents, indices), state, trainer


def _max_relative_difference(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def test_vmapped_attributes_equal_separate_runs(setup):
    preset, scan, classifier_params, correlation, (latents, indices), state, _ = setup
    together, metrics = scan(state, classifier_params, correlation, ATTRIBUTES, latents, indices)
    assert set(metrics) == set(TRANSFORMER_METRICS) and metrics["total"].shape == (3, 5)
    for k in range(ATTRIBUTES.shape[0]):
        alone = jax.tree.map(lambda leaf, k=k: leaf[k : k + 1], state)
        alone, alone_metrics = scan(alone, classifier_params, correlation, ATTRIBUTES[k : k + 1], latents, indices)
        # relative to each tensor's largest value; measured 1e-7..2.5e-6 (Adam divides gradients
        # near its eps by their own size, which magnifies float32 rounding of batched matmuls)
        assert _max_relative_difference(slot(together.params, k), slot(alone.params, 0)) < 1e-5, (preset.name, k)
        np.testing.assert_allclose(
            np.asarray(metrics["total"][:, k]), np.asarray(alone_metrics["total"][:, 0]), rtol=1e-5
        )
    # the slots really are different attributes: same batch, same init would still give different losses
    assert len(set(np.round(np.asarray(metrics["class"][0]), 6).tolist())) == 5


def test_a_scan_equals_repeated_steps_on_the_gathered_batches(setup):
    preset, scan, classifier_params, correlation, (latents, indices), state, trainer = setup
    step = jax.jit(trainer.step)
    stepped = state
    for rows in indices:
        stepped, _ = step(stepped, classifier_params, correlation, ATTRIBUTES, latents[rows])
    scanned, _ = scan(state, classifier_params, correlation, ATTRIBUTES, latents, indices)
    assert _max_relative_difference(scanned.params, stepped.params) < 1e-6
    # Adam moved every slot
    assert all(
        float(jnp.max(jnp.abs(a - b))) > 0
        for a, b in zip(jax.tree.leaves(scanned.params), jax.tree.leaves(state.params))
    )


def test_forty_attributes_in_one_call():
    preset = SMALL["official"]
    trainer = TransformerTrainer.create(preset)
    classifier_params = ClassifierTrainer.create(preset, 1).init(jax.random.key(0)).params
    state = trainer.init(jax.random.key(1), 40)
    assert state.params["kernel"].shape == (40, 2, 32, 32)
    state, metrics = jax.jit(trainer.step)(
        state, classifier_params, jnp.eye(40), jnp.arange(40, dtype=jnp.int32), jnp.ones((4, 2, 32))
    )
    assert metrics["total"].shape == (40,) and bool(jnp.all(jnp.isfinite(metrics["total"])))


def _torch_adam(params, grads, lr, b1, b2, eps, weight_decay):
    """torch.optim.Adam (weight_decay added to the gradient), float64, over a list of gradients."""
    p = np.array(params, np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64) + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def test_optimizers_are_torch_adam_with_weight_decay_in_the_gradient():
    preset = PRESETS["official"]
    params = jnp.array([0.3, -1.2, 2.0, 0.0], jnp.float32)
    grads = [jnp.array([0.1, 0.02, -0.3, 1e-3]), jnp.array([-0.05, 0.02, 0.1, 0.0]), jnp.array([0.2, -0.1, 0.0, 5e-3])]
    optimizer = transformer_optimizer(preset)
    state, p = optimizer.init(params), params
    for g in grads:
        updates, state = optimizer.update(g, state, p)
        p = p + updates
    expected = _torch_adam(params, grads, preset.lr, preset.beta1, preset.beta2, preset.eps, preset.weight_decay)
    np.testing.assert_allclose(np.asarray(p), expected, rtol=1e-6, atol=1e-7)

    # classifier: the same Adam with lr x0.1 from epoch `classifier_decay_epochs` on
    schedule = classifier_lr_schedule(preset, steps_per_epoch=3)
    assert float(schedule(29)) == pytest.approx(1e-4) and float(schedule(30)) == pytest.approx(1e-5)
    optimizer = classifier_optimizer(preset, steps_per_epoch=1)
    state, p = optimizer.init(params), params
    for g in grads:
        updates, state = optimizer.update(g, state, p)
        p = p + updates
    expected = _torch_adam(
        params, grads, preset.classifier_lr, preset.beta1, preset.beta2, preset.eps, preset.classifier_weight_decay
    )
    np.testing.assert_allclose(np.asarray(p), expected, rtol=1e-6, atol=1e-8)


def test_classifier_training_learns_a_linear_rule():
    preset = PRESETS["paper"].replace(
        w_dim=8, classifier_hidden=(16, 16), classifier_lr=1e-2, classifier_decay_epochs=15
    )
    latents = jax.random.normal(jax.random.key(0), (512, 8))
    directions = jax.random.normal(jax.random.key(1), (8, 40))
    labels = (latents @ directions > 0).astype(jnp.float32)
    steps = 512 // 64
    trainer = ClassifierTrainer.create(preset, steps_per_epoch=steps)
    state = trainer.init(jax.random.key(2))
    scan, evaluate = jax.jit(trainer.scan), jax.jit(trainer.evaluate)
    before = evaluate(state.params, latents, labels)
    for epoch in range(20):
        state, metrics = scan(state, latents, labels, epoch_indices(0, epoch, 512, 64))
    after = evaluate(state.params, latents, labels)
    assert metrics["loss"].shape == (steps,)
    assert float(after["loss"]) < 0.5 * float(before["loss"])
    assert float(jnp.mean(after["accuracy"])) > 0.9 and after["accuracy"].shape == (40,)
