"""`--noise random`: every image's noise comes from its own key, so batching does not change it."""

import jax
import numpy as np

from jaxedit.stylegan2 import render
from jaxedit.stylegan2.config import GeneratorConfig
from jaxedit.stylegan2.loading import LoadedGenerator, random_generator


def test_random_noise_does_not_depend_on_the_batch_size():
    config = GeneratorConfig(resolution=8, z_dim=16, w_dim=16, mapping_layers=2, channels={4: 4, 8: 4})
    base = random_generator(config, jax.random.key(0))
    # random init leaves noise_strength at 0 (noise would not show): give every layer strength 1
    params = jax.tree.map_with_path(
        lambda path, a: np.ones_like(a) if "noise_strength" in jax.tree_util.keystr(path) else a, base.params
    )
    generator = LoadedGenerator.from_params(config, params, base.w_avg)
    z = render.z_from_seeds(list(range(7)), config.z_dim)
    one = render.render(generator, z, "z", noise_mode="random", noise_seed=5, batch_size=1)
    seven = render.render(generator, z, "z", noise_mode="random", noise_seed=5, batch_size=7)
    np.testing.assert_allclose(one, seven, atol=1e-5)
    # the noise is really random: another seed, or constant noise, gives other images
    other = render.render(generator, z, "z", noise_mode="random", noise_seed=6, batch_size=7)
    const = render.render(generator, z, "z", noise_mode="const", batch_size=7)
    assert np.abs(other - seven).max() > 1e-3 and np.abs(const - seven).max() > 1e-3
    # image i's maps are N(0, 1) draws from fold_in(key, i): the same for image 3 alone or in a batch
    resolutions = config.noise_resolutions()
    alone = render.per_sample_noise(resolutions, jax.random.key(5), 3, 1)
    batch = render.per_sample_noise(resolutions, jax.random.key(5), 0, 7)
    for a, b, r in zip(alone, batch, resolutions):
        assert a.shape == (1, r, r) and b.shape == (7, r, r)
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[3]))
