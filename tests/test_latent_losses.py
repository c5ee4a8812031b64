"""Presets, modules and losses of both presets against independent float64 numpy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.errors import ConfigError
from jaxedit.latent import PRESETS, MethodPreset, get_preset
from jaxedit.latent import losses as L
from jaxedit.latent.modules import (
    LatentClassifier,
    LatentTransformer,
    classifier_from_preset,
    init_classifier_params,
    init_transformer_params,
    transformer_from_preset,
)
from jaxedit.training.steps import transformer_loss_terms


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


# ---------------------------------------------------------------------------------------------
# presets


def test_presets_hold_the_numbers_of_the_reference():
    official, paper = PRESETS["official"], PRESETS["paper"]
    assert official.latent_shape == (18, 512) and official.classifier_widths == (9216, 2048, 512, 40)
    assert (official.classifier_activation, official.classifier_negative_slope) == ("leaky_relu", 0.2)
    assert (official.class_weight, official.attribute_weight, official.recon_weight) == (1.0, 1.0, 10.0)
    assert (
        official.lr,
        official.beta1,
        official.beta2,
        official.weight_decay,
        official.batch_size,
        official.epochs,
    ) == (1e-3, 0.9, 0.999, 5e-4, 32, 10)
    assert (
        official.classifier_lr,
        official.classifier_weight_decay,
        official.classifier_batch_size,
        official.classifier_epochs,
    ) == (1e-4, 5e-4, 256, 20)
    assert (official.classifier_decay_epochs, official.classifier_lr_decay, official.train_fraction) == (10, 0.1, 0.9)
    assert official.edit_alpha_range == (-1.5, 1.5) and official.edit_layers == (0, 11)
    assert official.edit_layer_mask() == (True,) * 11 + (False,) * 7
    assert paper.latent_shape == (512,) and paper.classifier_activation == "relu" and len(paper.classifier_widths) == 4
    assert (paper.class_weight, paper.attribute_weight, paper.recon_weight) == (1.0, 1.0, 100.0)
    assert (paper.lr, paper.beta1, paper.beta2, paper.weight_decay, paper.batch_size, paper.epochs) == (
        1e-4,
        0.9,
        0.999,
        0.0,
        16,
        10,
    )
    assert paper.edit_layers is None and paper.table_alpha == 1.25


def test_preset_round_trip_and_errors():
    small = PRESETS["official"].replace(num_ws=2, classifier_hidden=(64, 32))
    assert MethodPreset.from_dict(small.to_dict()) == small
    assert small.classifier_widths == (1024, 64, 32, 40)
    with pytest.raises(ConfigError, match="no field"):
        small.replace(learning_rate=1.0)
    with pytest.raises(ConfigError, match="space 'w\\+'"):
        PRESETS["official"].replace(space="w")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        PRESETS["paper"].replace(batch_size=0)
    with pytest.raises(ConfigError, match="unknown method preset 'offical'"):
        get_preset("offical")


# ---------------------------------------------------------------------------------------------
# modules


def test_classifier_is_the_documented_mlp():
    for activation, slope in (("relu", 0.0), ("leaky_relu", 0.2)):
        module = LatentClassifier(widths=(6, 5, 4, 3), activation=activation, negative_slope=slope)
        params = init_classifier_params(module, jax.random.key(0))
        w = np.asarray(jax.random.normal(jax.random.key(1), (7, 2, 3)), np.float64)
        x = w.reshape(7, 6)
        for index in range(3):
            layer = params[f"fc_{index}"]
            x = x @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
            if index < 2:
                x = np.where(x > 0, x, slope * x)
        np.testing.assert_allclose(
            np.asarray(module.apply({"params": params}, jnp.asarray(w, jnp.float32))), x, atol=1e-5
        )


def test_paper_transformer_is_w_plus_alpha_h_of_w():
    preset = PRESETS["paper"].replace(w_dim=16, transformer_hidden=8)
    module = transformer_from_preset(preset)
    params = init_transformer_params(module, jax.random.key(0))
    assert params["fc_0"]["kernel"].shape == (16, 8) and params["fc_1"]["kernel"].shape == (8, 16)
    w = np.asarray(jax.random.normal(jax.random.key(1), (5, 16)), np.float64)
    alpha = np.linspace(-1.5, 1.5, 5)
    h = w @ np.asarray(params["fc_0"]["kernel"], np.float64) + np.asarray(params["fc_0"]["bias"], np.float64)
    h = np.where(h > 0, h, 0.2 * h)
    h = h @ np.asarray(params["fc_1"]["kernel"], np.float64) + np.asarray(params["fc_1"]["bias"], np.float64)
    expected = w + alpha[:, None] * h
    got = module.apply({"params": params}, jnp.asarray(w, jnp.float32), jnp.asarray(alpha, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_official_transformer_scales_the_weight_not_the_bias():
    module = LatentTransformer(kind="official", num_ws=3, w_dim=4)
    params = init_transformer_params(module, jax.random.key(0))
    params = {"kernel": params["kernel"], "bias": jnp.ones((3, 4))}
    w = np.asarray(jax.random.normal(jax.random.key(1), (2, 3, 4)), np.float64)
    kernel = np.asarray(params["kernel"], np.float64)
    expected = w + 0.5 * (np.einsum("bli,lio->blo", w, kernel) / 2.0 + 1.0)
    np.testing.assert_allclose(
        np.asarray(module.apply({"params": params}, jnp.asarray(w, jnp.float32), 0.5)), expected, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"expects latents \[B, 3, 4\]"):
        module.apply({"params": params}, jnp.zeros((2, 12)), 0.5)


# ---------------------------------------------------------------------------------------------
# losses


def test_correlation_matrix_has_np_corrcoef_semantics():
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 6)) > 0.4).astype(np.float32)
    labels[:, 3] = 1.0  # a constant column: NaN in np.corrcoef -> 0
    labels[:, 4] = 1.0 - labels[:, 0]  # perfectly anti-correlated with column 0
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.corrcoef(labels.T.astype(np.float64))
    expected[np.isnan(expected)] = 0
    got = np.asarray(L.correlation_matrix(labels))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(L.correlation_matrix(2 * labels - 1)), expected, atol=1e-6)  # -1/1 coding
    mask = np.asarray(L.attribute_mask(jnp.asarray(got), 0))
    assert mask[0] == 0.0 and mask[4] == pytest.approx(0.0, abs=1e-6) and mask[3] == 1.0
    np.testing.assert_allclose(mask[[1, 2, 5]], 1 - np.abs(expected[0, [1, 2, 5]]), atol=1e-6)
    lowered = np.asarray(L.attribute_mask(jnp.asarray(got), 1, threshold=0.05))
    assert np.all(lowered[np.abs(expected[1]) >= 0.05] == 0.0)


def test_training_alpha_and_target():
    p = jnp.array([0.0, 0.2, 0.49, 0.5, 0.51, 0.9, 1.0])
    np.testing.assert_allclose(np.asarray(L.training_alpha(p)), [1.0, 0.8, 0.51, 0.0, -0.51, -0.9, -1.0], atol=1e-7)
    np.testing.assert_array_equal(np.asarray(L.flipped_target(p, L.training_alpha(p))), [1, 1, 1, 0, 0, 0, 0])


def _case(seed=0, batch=8, attributes=5):
    rng = np.random.default_rng(seed)
    logits0 = rng.normal(size=(batch, attributes)) * 2
    logits1 = logits0 + rng.normal(size=(batch, attributes))
    w0 = rng.normal(size=(batch, 3, 4))
    w1 = w0 + 0.1 * rng.normal(size=(batch, 3, 4))
    target = np.resize([1.0, 0.0, 1.0], batch)  # both classes present, unbalanced
    mask = rng.random(attributes)
    mask[2] = 0.0
    return logits0, logits1, w0, w1, target, mask


def test_official_losses_match_the_formulas():
    logits0, logits1, w0, w1, target, mask = _case()
    j, batch = 2, target.shape[0]
    weights = np.where(target == 1, batch / target.sum(), batch / (batch - target.sum()))
    class_loss = np.mean(weights * _bce(_sigmoid(logits1[:, j]), target))
    reg = np.mean((logits1 * mask - logits0 * mask) ** 2)
    recon = np.mean((w1 - w0) ** 2)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    got = L.transformer_losses(
        PRESETS["official"], f32(logits0), f32(logits1), f32(w0), f32(w1), f32(target), j, f32(mask)
    )
    np.testing.assert_allclose(
        [float(got[k]) for k in ("class", "attribute", "recon", "total")],
        [class_loss, reg, recon, class_loss + reg + 10 * recon],
        rtol=1e-5,
    )


def test_paper_losses_match_the_formulas():
    logits0, logits1, w0, w1, target, mask = _case(1)
    w0, w1 = w0.reshape(8, 12), w1.reshape(8, 12)
    j = 2
    class_loss = np.mean(_bce(_sigmoid(logits1[:, j]), target))
    attribute = sum(
        mask[i] * np.mean(np.abs(_sigmoid(logits1[:, i]) - _sigmoid(logits0[:, i]))) for i in range(5) if i != j
    )
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    # The paper preset reads the recon term as the mean of squares over the latent's elements;
    # recon_form="norm" is the literal mean over the batch of the unsquared Euclidean norm.
    for preset, recon in (
        (PRESETS["paper"], np.mean((w1 - w0) ** 2)),
        (PRESETS["paper"].replace(recon_form="norm"), np.mean(np.sqrt(np.sum((w1 - w0) ** 2, axis=1)))),
    ):
        got = L.transformer_losses(preset, f32(logits0), f32(logits1), f32(w0), f32(w1), f32(target), j, f32(mask))
        np.testing.assert_allclose(
            [float(got[k]) for k in ("class", "attribute", "recon", "total")],
            [class_loss, attribute, recon, class_loss + attribute + 100 * recon],
            rtol=1e-5,
        )


def test_recon_form_is_validated_and_old_manifests_keep_their_form():
    assert PRESETS["paper"].recon_form == "mse" and PRESETS["official"].recon_form == "mse"
    with pytest.raises(ConfigError, match="recon_form 'l2' is not one of"):
        PRESETS["paper"].replace(recon_form="l2")
    old = PRESETS["paper"].to_dict()
    del old["recon_form"]
    assert MethodPreset.from_dict(old).recon_form == "norm"


def test_norm_recon_gradient_is_finite_at_zero_edit():
    w = jnp.ones((4, 6))
    grad = jax.grad(lambda x: L.norm_recon_loss(x, w))(w)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_loss_terms_use_the_classifier_decision_for_alpha_and_target():
    """A sample the classifier calls positive gets alpha = -p and target 0: with an identity
    transformer (zero params) the class loss is the weighted BCE of C(w) towards the flipped label."""
    preset = PRESETS["official"].replace(num_ws=1, w_dim=8, classifier_hidden=(6,))
    classifier, transformer = classifier_from_preset(preset), transformer_from_preset(preset)
    classifier_params = init_classifier_params(classifier, jax.random.key(0))
    zero = jax.tree.map(jnp.zeros_like, init_transformer_params(transformer, jax.random.key(1)))
    w = jax.random.normal(jax.random.key(2), (16, 1, 8))
    correlation = jnp.eye(40)
    terms = jax.jit(lambda t, c: transformer_loss_terms(preset, classifier, transformer, t, c, correlation, 7, w))(
        zero, classifier_params
    )
    logits = np.asarray(classifier.apply({"params": classifier_params}, w), np.float64)
    target = (logits[:, 7] < 0).astype(np.float64)  # p < 0.5 -> target 1
    batch = 16
    weights = np.where(target == 1, batch / max(target.sum(), 1e-8), batch / max(batch - target.sum(), 1e-8))
    np.testing.assert_allclose(
        float(terms["class"]), np.mean(weights * _bce(_sigmoid(logits[:, 7]), target)), rtol=1e-5
    )
    assert float(terms["recon"]) == 0.0 and float(terms["attribute"]) == 0.0
    assert float(terms["flip_rate"]) == 0.0  # an identity edit flips nothing


def test_official_class_loss_is_finite_for_one_sided_batches_under_jit():
    logits = jnp.linspace(-2.0, 2.0, 16)
    for target in (jnp.ones(16), jnp.zeros(16)):
        loss = jax.jit(L.official_class_loss)(logits, target)
        expected = np.mean(_bce(_sigmoid(np.linspace(-2.0, 2.0, 16)), np.asarray(target, np.float64)))  # weight B/B = 1
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
