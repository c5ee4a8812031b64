"""The losses of both presets (docs/method.md), one pure jnp function each.

Shapes: B batch, A attributes (40), `latent_shape` = (512,) in W or (num_ws, 512) in W+.
`logits0` = C(w), `logits1` = C(T(w, alpha)), both [B, A]; `w0` = w, `w1` = T(w, alpha).

Training-time alpha and target (both presets, the official `get_coeff`):
  p = sigmoid(C(w))[:, j];  alpha = 1 - p if p < 0.5, -p if p > 0.5, 0 at p = 0.5;
  target = round(clamp(p + alpha, 0, 1)), i.e. the flipped prediction (0 at p = 0.5).

official: class = BCE-with-logits(logits1[:, j], target) weighted per sample B/#pos or B/#neg of
          its target; attribute ("reg") = mean((logits1 * m - logits0 * m)^2) over B x A;
          recon = mean((w1 - w0)^2) (`recon_form="mse"`); total = 1 * class + 1 * reg + 10 * recon.
paper:    class = mean_b BCE(sigmoid(logits1[:, j]), target) (computed from the logits, same value);
          attribute = sum_i m_i * mean_b |sigmoid(logits1)_i - sigmoid(logits0)_i| (on probabilities,
          m_j = 0 so the sum runs over i != j); recon = mean((w1 - w0)^2) over every element
          (`recon_form="mse"`, as the authors' public code) or, with `recon_form="norm"`, the literal
          mean_b ||w1 - w0||_2 (Euclidean norm of the whole latent); total = class + 1 * attribute
          + 100 * recon.
with m = `attribute_mask(correlation, j)` = 1 - |corr_j| (1 where uncorrelated, 0 for j itself).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxedit.latent.presets import MethodPreset

LOSS_NAMES = ("total", "class", "attribute", "recon")
"""Metric names of `transformer_losses`; the official code calls "attribute" `loss_reg`."""


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Elementwise binary cross-entropy of sigmoid(logits) towards targets in [0, 1], stable form
    max(x, 0) - x * y + log(1 + exp(-|x|)) (as torch's binary_cross_entropy_with_logits)."""
    return jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def correlation_matrix(labels: jax.Array) -> jax.Array:
    """np.corrcoef(labels.T) with NaN -> 0, in float32 jnp.

    labels [N, A] (any affine coding: 0/1 or -1/1 give the same matrix) -> [A, A], clipped to
    [-1, 1]; a constant column (zero variance) gets a zero row and column, diagonal included.
    """
    x = jnp.asarray(labels, jnp.float32)
    centred = x - jnp.mean(x, axis=0, keepdims=True)
    cov = centred.T @ centred / (x.shape[0] - 1)
    std = jnp.sqrt(jnp.diagonal(cov))
    corr = cov / std[:, None] / std[None, :]
    corr = jnp.clip(corr, -1.0, 1.0)
    return jnp.where(jnp.isnan(corr), 0.0, corr)


def attribute_mask(correlation: jax.Array, attribute: jax.Array | int, threshold: float = 1.0) -> jax.Array:
    """m = 1 - |corr[attribute]| [A]; |corr| >= threshold counts as 1 (official `get_correlation`),
    and m[attribute] = 0 exactly (the target attribute itself is never preserved)."""
    row = jnp.abs(correlation[attribute])
    row = jnp.where(row >= threshold, 1.0, row)
    mask = 1.0 - row
    return jnp.where(jnp.arange(correlation.shape[-1]) == attribute, 0.0, mask)


def training_alpha(p: jax.Array) -> jax.Array:
    """Edit strength at training time from p = sigmoid(C(w))[j]: 1 - p below 0.5, -p above, 0 at 0.5."""
    return jnp.where(p < 0.5, 1.0 - p, jnp.where(p > 0.5, -p, 0.0))


def flipped_target(p: jax.Array, alpha: jax.Array) -> jax.Array:
    """round(clamp(p + alpha, 0, 1)) (half to even, as torch.round): 1 - round(p), 0 at p = 0.5."""
    return jnp.round(jnp.clip(p + alpha, 0.0, 1.0))


def official_class_loss(logits_j: jax.Array, target: jax.Array) -> jax.Array:
    """Weighted BCE-with-logits [B], [B] -> scalar: each sample weighted B/#positives if its target
    is 1, B/#negatives if 0 (counts of the batch's targets, + 1e-8), then the mean over B."""
    batch = target.shape[0]
    positives = jnp.sum(target)
    # Counted separately and selected with `where`: XLA folds `batch - positives + 1e-8` into
    # `batch - positives` (16 + 1e-8 == 16 in float32), and an all-positive batch then gave
    # inf * 0 = NaN under jit. Same values as the official weights otherwise.
    negatives = jnp.sum(1.0 - target)
    weight_pos = batch / (positives + 1e-8)
    weight_neg = batch / (negatives + 1e-8)
    weights = jnp.where(target > 0.5, weight_pos, weight_neg)
    return jnp.mean(weights * bce_with_logits(logits_j, target))


def official_attribute_loss(logits1: jax.Array, logits0: jax.Array, mask: jax.Array) -> jax.Array:
    """mean((logits1 * m - logits0 * m)^2) over B x A; logits [B, A], mask [A]."""
    return jnp.mean((logits1 * mask - logits0 * mask) ** 2)


def official_recon_loss(w1: jax.Array, w0: jax.Array) -> jax.Array:
    """mean((T(w) - w)^2) over every element."""
    return jnp.mean((w1 - w0) ** 2)


def paper_class_loss(logits_j: jax.Array, target: jax.Array) -> jax.Array:
    """mean_b BCE(sigmoid(logits_j), target) [B], [B] -> scalar (unweighted)."""
    return jnp.mean(bce_with_logits(logits_j, target))


def paper_attribute_loss(logits1: jax.Array, logits0: jax.Array, mask: jax.Array) -> jax.Array:
    """sum_i m_i * mean_b |sigmoid(logits1)_i - sigmoid(logits0)_i|; logits [B, A], mask [A]."""
    change = jnp.mean(jnp.abs(jax.nn.sigmoid(logits1) - jax.nn.sigmoid(logits0)), axis=0)
    return jnp.sum(mask * change)


def _safe_norm(x: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis with a zero (not NaN) gradient at 0."""
    squared = jnp.sum(x * x, axis=-1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def norm_recon_loss(w1: jax.Array, w0: jax.Array) -> jax.Array:
    """mean_b ||T(w) - w||_2, the norm over the whole flattened latent of each sample."""
    diff = (w1 - w0).reshape(w1.shape[0], -1)
    return jnp.mean(_safe_norm(diff))


def recon_loss(preset: MethodPreset, w1: jax.Array, w0: jax.Array) -> jax.Array:
    """The preset's reconstruction term: `official_recon_loss` (mse) or `norm_recon_loss` (norm)."""
    return norm_recon_loss(w1, w0) if preset.recon_form == "norm" else official_recon_loss(w1, w0)


def transformer_losses(
    preset: MethodPreset,
    logits0: jax.Array,
    logits1: jax.Array,
    w0: jax.Array,
    w1: jax.Array,
    target: jax.Array,
    attribute: jax.Array | int,
    mask: jax.Array,
) -> dict[str, jax.Array]:
    """{"total", "class", "attribute", "recon"} scalars of the preset's loss for attribute j.

    logits0 = C(w) [B, A], logits1 = C(T(w)) [B, A], w0 = w, w1 = T(w) [B, *latent_shape],
    target [B] (`flipped_target`), mask [A] (`attribute_mask`).
    """
    logits_j = jnp.take(logits1, attribute, axis=1)
    if preset.loss_kind == "official":
        class_loss = official_class_loss(logits_j, target)
        attribute_loss = official_attribute_loss(logits1, logits0, mask)
    else:
        class_loss = paper_class_loss(logits_j, target)
        attribute_loss = paper_attribute_loss(logits1, logits0, mask)
    recon = recon_loss(preset, w1, w0)
    total = preset.class_weight * class_loss + preset.attribute_weight * attribute_loss + preset.recon_weight * recon
    return {"total": total, "class": class_loss, "attribute": attribute_loss, "recon": recon}


def classifier_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean BCE-with-logits over B x A of C(w) [B, A] towards 0/1 labels [B, A]."""
    return jnp.mean(bce_with_logits(logits, labels))
