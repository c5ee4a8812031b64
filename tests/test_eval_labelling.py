"""Real-weights path: render with a converted generator, label with a user image classifier, save in
our .npz format; and the same protocol code run with image-based labeller and embedder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.attributes import ATTRIBUTES
from jaxedit.errors import InputError
from tests.helpers.paths import STYLEGAN2_FIXTURES


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    from jaxedit.convert.stylegan2 import convert_stylegan2
    from jaxedit.stylegan2 import load_generator

    out = tmp_path_factory.mktemp("gen") / "rosinality_small"
    convert_stylegan2(STYLEGAN2_FIXTURES / "rosinality_small.pt", out)
    return load_generator(out)


PROJECTION = np.asarray(jax.random.normal(jax.random.key(0), (3, 40)))


def image_classifier(images):
    """A toy CelebA-shaped classifier: mean colour -> 40 probabilities."""
    return jax.nn.sigmoid(20.0 * jnp.mean(images, axis=(1, 2)) @ PROJECTION)


def face_recogniser(images):
    """A toy recogniser: the downsampled image, flattened."""
    small = images.reshape(images.shape[0], 8, images.shape[1] // 8, 8, images.shape[2] // 8, 3).mean(axis=(2, 4))
    return small.reshape(images.shape[0], -1)


def test_label_generator_samples_and_save(generator, tmp_path):
    from jaxedit.data.labelling import label_generator_samples, save_labelled
    from jaxedit.data.latents import load_latent_dataset

    samples = label_generator_samples(generator, image_classifier, count=12, seed=3, batch_size=8, progress=False)
    assert samples.latents.shape == (12, generator.w_dim) and samples.probabilities.shape == (12, 40)
    np.testing.assert_array_equal(samples.labels, (samples.probabilities > 0.5).astype(np.float32))
    # the labels are those of the rendered images of these latents
    images = generator.synthesis(generator.as_ws(samples.latents[:8]))
    np.testing.assert_allclose(np.asarray(image_classifier(images)), samples.probabilities[:8], atol=1e-5)
    again = label_generator_samples(generator, image_classifier, count=12, seed=3, batch_size=8, progress=False)
    np.testing.assert_array_equal(again.z, samples.z)
    plus = label_generator_samples(
        generator, image_classifier, count=5, seed=3, batch_size=8, space="w+", progress=False
    )
    assert plus.latents.shape == (5, generator.num_ws, generator.w_dim)
    path = save_labelled(tmp_path / "labelled.npz", samples)
    dataset = load_latent_dataset(path)
    np.testing.assert_array_equal(dataset.latents, samples.latents)
    assert dataset.names == ATTRIBUTES
    with pytest.raises(InputError, match="probabilities in"):
        label_generator_samples(
            generator, lambda images: 5.0 + image_classifier(images), count=4, batch_size=4, progress=False
        )


def test_protocol_runs_on_rendered_images(generator):
    from jaxedit.eval import baselines, identity, protocol

    labeller = protocol.image_labeller(generator, image_classifier, batch_size=32)
    embedder = protocol.image_embedder(generator, face_recogniser, batch_size=32)
    w = generator.mapping(jax.random.normal(jax.random.key(1), (200, generator.z_dim)))[:, 0]
    probs = np.asarray(labeller(w[:160]))
    fit = baselines.fit_interfacegan(w[:160], probs, jax.random.key(2), keep_fraction=0.1)
    threshold = identity.far_threshold(embedder, w[:100], jax.random.key(3), num_pairs=2000)
    method = protocol.interfacegan_method(fit, ATTRIBUTES, distance=3.0)
    result = protocol.evaluate([method], labeller, embedder, w[160:], ["Male"], threshold, sweep=(0.0, 1.0))
    values = result.table["Male"]["interfacegan"]
    assert 0.0 <= values["accuracy"] <= 1.0 and values["successes"] == round(values["accuracy"] * 40)
    # unedited (fraction 0): the labeller's own probabilities, so the target probability is the
    # mean probability of the reversed state under the images' labels
    curve = result.sweeps["Male"]["interfacegan"]
    assert curve["attribute_preservation"][0] == 1.0 and curve["identity_preservation"][0] == 1.0
