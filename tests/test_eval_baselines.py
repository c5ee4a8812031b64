"""InterFaceGAN recovers a known linear boundary; conditional normals; GANSpace is a true PCA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.eval import baselines


@pytest.fixture(scope="module")
def linear_world():
    rng = np.random.default_rng(0)
    dim = 24
    scales = np.linspace(3.0, 0.3, dim)  # anisotropic latents
    x = rng.standard_normal((20000, dim)) * scales
    normals = np.linalg.qr(rng.standard_normal((dim, 3)))[0].T  # 3 orthonormal true boundaries
    scores = 1 / (1 + np.exp(-(x @ normals.T) * 2.0))
    return x.astype(np.float32), scores.astype(np.float32), normals


def test_svm_recovers_known_boundaries(linear_world):
    x, scores, normals = linear_world
    fit = baselines.fit_interfacegan(x, scores, jax.random.key(0))
    cosines = np.sum(np.asarray(fit.normals) * normals, axis=1)
    assert np.all(cosines > 0.93), (
        cosines
    )  # (a random direction in 24-d: |cos| ~ 0.2)  # right direction and sign (towards "present")
    np.testing.assert_allclose(np.linalg.norm(np.asarray(fit.normals), axis=1), 1.0, atol=1e-5)
    assert np.all(np.asarray(fit.val_accuracy) > 0.97)
    edited = baselines.interfacegan_edit(x[:10], fit.normals[0], jnp.full(10, 3.0))
    np.testing.assert_allclose(
        np.asarray(edited - x[:10]), np.tile(3.0 * np.asarray(fit.normals[0]), (10, 1)), atol=1e-5
    )
    assert np.all(np.asarray(fit.decision(edited))[:, 0] > np.asarray(fit.decision(x[:10]))[:, 0])


def test_conditional_normals_are_orthogonal_to_their_conditions():
    rng = np.random.default_rng(1)
    normals = rng.standard_normal((4, 10))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    out = np.asarray(baselines.conditional_normals(normals, [[1, 2], [0], [], [3]]))
    np.testing.assert_allclose(out[0] @ normals[1:3].T, 0.0, atol=1e-5)
    np.testing.assert_allclose(out[1] @ normals[0], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[2], normals[2], atol=1e-6)  # no condition: unchanged
    np.testing.assert_allclose(out[3], normals[3], atol=1e-6)  # itself as condition is ignored
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    corr = np.array([[1, 0.1, -0.8, 0.3], [0.1, 1, 0.2, 0.0], [-0.8, 0.2, 1, 0.5], [0.3, 0.0, 0.5, 1]])
    assert baselines.most_correlated(corr, 2) == [[2, 3], [2, 0], [0, 3], [2, 0]]


def test_ganspace_components_are_the_orthonormal_principal_axes(linear_world):
    x, scores, normals = linear_world
    pcs = baselines.fit_ganspace(x, num_components=5)
    v = np.asarray(pcs.components)
    np.testing.assert_allclose(v @ v.T, np.eye(5), atol=1e-4)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x.T))
    top = eigenvectors[:, ::-1][:, :5].T
    np.testing.assert_allclose(np.abs(np.sum(v * top, axis=1)), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(pcs.stddevs) ** 2, eigenvalues[::-1][:5], rtol=1e-3)
    index, sign = baselines.choose_components(pcs, x, scores)
    assert index.shape == (3,) and set(np.unique(sign)) <= {-1.0, 1.0}


def test_ganspace_edit_touches_only_the_layer_range():
    ws = jnp.zeros((2, 6, 4))
    direction = jnp.array([1.0, 0.0, 0.0, 0.0])
    out = np.asarray(baselines.ganspace_edit(ws, direction, jnp.array([2.0, -1.0]), layers=(1, 3)))
    assert np.all(out[:, [0, 3, 4, 5]] == 0)
    np.testing.assert_allclose(out[0, 1:3, 0], 2.0)
    np.testing.assert_allclose(out[1, 1:3, 0], -1.0)
    w = np.asarray(baselines.ganspace_edit(jnp.zeros((1, 4)), direction, 1.5))
    np.testing.assert_allclose(w, [[1.5, 0, 0, 0]])
