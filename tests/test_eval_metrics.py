"""Table 1 metrics and the identity threshold on hand-made cases with exact expected values."""

import jax
import numpy as np
import pytest

from jaxedit.errors import InputError
from jaxedit.eval import identity, metrics


def test_metrics_on_a_hand_made_case():
    # 4 edits of target attribute 0 with 3 attributes; rows 0, 1, 2 flip the target, row 3 does not.
    before = np.array([[0, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    after = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1], [1, 1, 1]])
    assert metrics.classification_accuracy(before, after, 0) == 0.75
    # successful rows keep 2/2, 1/2 and 0/2 of the other attributes: mean 0.5 (row 3 is ignored)
    assert metrics.attribute_preservation(before, after, 0) == 0.5
    e0 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    e1 = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])  # cosines 1, 0.6, 0, 1
    success = metrics.flipped(before, after, 0)
    assert metrics.identity_preservation(e0, e1, 0.5, success) == pytest.approx(2 / 3)
    assert metrics.identity_preservation(e0, e1, 0.7, success) == pytest.approx(1 / 3)
    result = metrics.edit_metrics(before, after, e0, e1, 0, 0.5)
    # identity cosines of the successful rows: 1, 0.6, 0 -> mean 1.6 / 3, population std
    cosines = np.array([1.0, 0.6, 0.0])
    assert result == {
        "accuracy": 0.75,
        "attribute_preservation": 0.5,
        "identity_preservation": pytest.approx(2 / 3),
        "identity_cosine_mean": pytest.approx(1.6 / 3),
        "identity_cosine_std": pytest.approx(np.sqrt(np.mean((cosines - 1.6 / 3) ** 2))),
        "successes": 3,
    }


def test_probabilities_are_thresholded_and_no_success_gives_zero():
    before = np.array([[0.2, 0.9], [0.7, 0.1]])
    after = np.array([[0.4, 0.9], [0.6, 0.1]])  # nothing crosses 0.5
    assert metrics.classification_accuracy(before, after, 0) == 0.0
    assert metrics.attribute_preservation(before, after, 0) == 0.0
    assert metrics.identity_preservation(np.eye(2), np.eye(2), 0.5, np.zeros(2, bool)) == 0.0
    assert metrics.identity_cosine_stats(np.eye(2), np.eye(2), np.zeros(2, bool)) == (None, None)


def test_shape_errors_are_one_line():
    with pytest.raises(InputError, match="differ in shape"):
        metrics.classification_accuracy(np.zeros((2, 3)), np.zeros((3, 3)), 0)
    with pytest.raises(InputError, match="outside"):
        metrics.classification_accuracy(np.zeros((2, 3)), np.zeros((2, 3)), 5)
    with pytest.raises(InputError, match=r"\[N, D\]"):
        metrics.cosine_similarity(np.zeros((2, 3)), np.zeros((2, 4)))


def test_threshold_at_far_is_the_exact_order_statistic():
    scores = np.random.default_rng(0).permutation(np.arange(1000) / 1000.0)
    t = identity.threshold_at_far(scores, far=0.01)
    assert t == 0.989  # exactly 10 of 1000 scores (0.990 ... 0.999) lie above it
    assert np.mean(scores > t) == 0.01
    assert identity.threshold_at_far(scores, far=0.0) == 0.999
    assert identity.threshold_at_far(np.arange(10.0), far=1e-3) == 9.0  # fewer than 1000 pairs: the max


def test_far_threshold_of_random_unit_vectors_matches_theory():
    # cosines of independent random unit vectors in D dims are ~ N(0, 1/D): the 0.1% point is 3.09/sqrt(D)
    dim = 64
    embeddings = np.asarray(jax.random.normal(jax.random.key(0), (3000, dim)))
    threshold = identity.far_threshold(lambda x: x, embeddings, jax.random.key(1), num_pairs=200_000, far=1e-3)
    assert threshold == pytest.approx(3.09 / np.sqrt(dim), rel=0.12)
    cosines = identity.impostor_cosines(embeddings, jax.random.key(2), 100_000)
    assert abs(np.mean(cosines > threshold) - 1e-3) < 6e-4  # holds on fresh pairs too


def test_impostor_pairs_never_pair_a_latent_with_itself():
    embeddings = np.eye(5)  # any self-pair would give cosine 1, distinct rows give 0
    cosines = identity.impostor_cosines(embeddings, jax.random.key(0), 5000)
    assert np.all(cosines == 0.0)
