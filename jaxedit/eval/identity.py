"""The identity-preservation threshold: cosine at a given false-acceptance rate (FAR).

The paper counts an edit as identity-preserving when the cosine similarity of the face-recogniser
embeddings of input and output is above the threshold that accepts 0.1% of pairs of DIFFERENT
identities. `far_threshold` estimates that threshold from many random pairs of distinct latents
(`impostor_cosines`), whatever the embedder is: the synthetic world's stand-in or a real face
recogniser applied to rendered images.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from jaxedit.errors import InputError


def impostor_cosines(embeddings, key: jax.Array, num_pairs: int) -> np.ndarray:
    """Cosines of `num_pairs` random pairs (i, j), i != j, of the rows of `embeddings` [N, D] -> [num_pairs]."""
    emb = np.asarray(embeddings, np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise InputError(f"impostor pairs need embeddings [N >= 2, D], got shape {emb.shape}")
    n = emb.shape[0]
    key_i, key_j = jax.random.split(key)
    first = np.asarray(jax.random.randint(key_i, (num_pairs,), 0, n))
    offset = np.asarray(jax.random.randint(key_j, (num_pairs,), 1, n))  # j = i + offset (mod n) != i
    second = (first + offset) % n
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return np.sum(emb[first] * emb[second], axis=1)


def threshold_at_far(cosines, far: float = 1e-3) -> float:
    """The smallest observed cosine t with share(cosines > t) <= far.

    With sorted scores s_0 <= ... <= s_{n-1}, t = s_{n - floor(far * n) - 1}: exactly
    floor(far * n) scores lie above it (fewer with ties).
    """
    scores = np.sort(np.asarray(cosines, np.float64).reshape(-1))
    if scores.size == 0:
        raise InputError("threshold_at_far: no scores")
    if not 0.0 <= far < 1.0:
        raise InputError(f"false-acceptance rate {far} must be in [0, 1)")
    allowed = int(np.floor(far * scores.size))
    return float(scores[scores.size - allowed - 1])


def far_threshold(
    embedder: Callable, latents, key: jax.Array, num_pairs: int = 100_000, far: float = 1e-3, batch_size: int = 1024
) -> float:
    """Cosine threshold at `far` false acceptance for `embedder` on `latents` (distinct identities).

    embedder: latents [B, ...] -> embeddings [B, D] (e.g. the synthetic world's identity stand-in,
    or a face recogniser composed with a generator's synthesis).
    """
    latents = np.asarray(latents)
    embeddings = np.concatenate(
        [np.asarray(embedder(latents[i : i + batch_size])) for i in range(0, len(latents), batch_size)]
    )
    return threshold_at_far(impostor_cosines(embeddings, key, num_pairs), far)
