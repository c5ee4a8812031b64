"""The three metrics of the paper's Table 1 (docs/method.md), on labels and embeddings.

All functions take plain arrays (numpy or JAX) and return Python floats in [0, 1]:

- `classification_accuracy`: share of edits whose target attribute flipped;
- `attribute_preservation`: over successful edits, the average share of the OTHER attributes
  left unchanged;
- `identity_preservation`: over successful edits, the share whose identity cosine is above the
  threshold (see `jaxedit.eval.identity.far_threshold`);
- `identity_cosine_stats`: over successful edits, the mean and standard deviation of the identity
  cosine itself (a thresholded rate of 100% for every method hides how close each one stays).

Convention: when no edit succeeded, both preservation metrics are 0.0 (nothing was preserved by a
successful edit) and the cosine statistics are None; `edit_metrics` also returns `successes` so a
reader can tell.
"""

from __future__ import annotations

import numpy as np

from jaxedit.errors import InputError


def _labels(array, name: str) -> np.ndarray:
    values = np.asarray(array)
    if values.ndim != 2:
        raise InputError(f"{name}: expected labels [N, A], got shape {values.shape}")
    return values > 0.5 if values.dtype != bool else values


def flipped(labels_before, labels_after, target: int) -> np.ndarray:
    """Which edits flipped the target attribute: bool [N]."""
    before, after = _labels(labels_before, "labels_before"), _labels(labels_after, "labels_after")
    if before.shape != after.shape:
        raise InputError(f"labels before {before.shape} and after {after.shape} differ in shape")
    if not 0 <= target < before.shape[1]:
        raise InputError(f"target attribute {target} is outside 0..{before.shape[1] - 1}")
    return before[:, target] != after[:, target]


def classification_accuracy(labels_before, labels_after, target: int) -> float:
    """Share of rows whose target label changed (labels [N, A], 0/1 or probabilities)."""
    return float(np.mean(flipped(labels_before, labels_after, target)))


def attribute_preservation(labels_before, labels_after, target: int, success=None) -> float:
    """Mean over successful rows of the share of non-target attributes whose label is unchanged.

    success: bool [N] (default: the rows whose target flipped). 0.0 when no row succeeded.
    """
    before, after = _labels(labels_before, "labels_before"), _labels(labels_after, "labels_after")
    success = flipped(before, after, target) if success is None else np.asarray(success, bool)
    if not success.any():
        return 0.0
    others = np.ones(before.shape[1], bool)
    others[target] = False
    if not others.any():
        return 1.0
    unchanged = before[success][:, others] == after[success][:, others]
    return float(np.mean(np.mean(unchanged, axis=1)))


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine similarity of [N, D] and [N, D] -> [N]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"embeddings must both be [N, D]; got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def identity_preservation(embeddings_before, embeddings_after, threshold: float, success) -> float:
    """Share of successful rows whose identity cosine is above `threshold`; 0.0 when none succeeded."""
    success = np.asarray(success, bool)
    if not success.any():
        return 0.0
    cosines = cosine_similarity(embeddings_before, embeddings_after)
    return float(np.mean(cosines[success] > threshold))


def identity_cosine_stats(embeddings_before, embeddings_after, success) -> tuple[float | None, float | None]:
    """(mean, standard deviation) of the identity cosine over successful rows; (None, None) when none."""
    success = np.asarray(success, bool)
    if not success.any():
        return None, None
    cosines = cosine_similarity(embeddings_before, embeddings_after)[success]
    return float(np.mean(cosines)), float(np.std(cosines))


def edit_metrics(
    labels_before, labels_after, embeddings_before, embeddings_after, target: int, threshold: float
) -> dict:
    """All three metrics of one method on one target attribute, plus the count of successes.

    Returns {"accuracy", "attribute_preservation", "identity_preservation"} (floats in [0, 1]),
    "identity_cosine_mean", "identity_cosine_std" (over successful edits; None when none) and
    "successes" (int).
    """
    success = flipped(labels_before, labels_after, target)
    cosine_mean, cosine_std = identity_cosine_stats(embeddings_before, embeddings_after, success)
    return {
        "accuracy": float(np.mean(success)),
        "attribute_preservation": attribute_preservation(labels_before, labels_after, target, success),
        "identity_preservation": identity_preservation(embeddings_before, embeddings_after, threshold, success),
        "identity_cosine_mean": cosine_mean,
        "identity_cosine_std": cosine_std,
        "successes": int(success.sum()),
    }
