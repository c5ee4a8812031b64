"""The schematic renderer of the synthetic world: an attribute's edit changes only its own region,
identities look different, outputs have the generator's shapes and range, and an edit through the
world's own labeller moves the mouth.

Regions are boxes in image fractions (x0, x1, y0, y1) taken from the drawing's documented layout
(eyes at y = -0.06, mouth at y = 0.26 in [-1, 1] coordinates), not from rendered pixels.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.attributes import ATTRIBUTES
from jaxedit.data import schematic, synthetic
from jaxedit.data.schematic_renderer import SchematicRenderer
from jaxedit.errors import ConfigError, InputError

SIZE = 128
MOUTH = (0.35, 0.65, 0.54, 0.74)
EYES = (0.22, 0.78, 0.37, 0.54)
INNER_FACE = (0.36, 0.64, 0.41, 0.64)  # between the eyebrows and the chin: no hair is drawn there
CROWN = (0.3, 0.7, 0.18, 0.3)  # the top of the head, above the forehead
TOLERANCE = 2 / 255 * 2  # two uint8 steps, in [-1, 1] units


def _box_mask(box, size=SIZE):
    x0, x1, y0, y1 = box
    mask = np.zeros((size, size), bool)
    mask[int(y0 * size) : int(np.ceil(y1 * size)), int(x0 * size) : int(np.ceil(x1 * size))] = True
    return mask


def _changed(a, b):
    return np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max(axis=-1) > TOLERANCE


def _identity(seed, dim=128):
    e = np.random.default_rng(seed).standard_normal((1, dim)).astype(np.float32)
    return e / np.linalg.norm(e)


def _typical_scores():
    """A clean-shaven young face: every attribute clearly absent except No_Beard and Young."""
    scores = np.full((1, 40), -5.0, np.float32)
    scores[0, ATTRIBUTES.index("No_Beard")] = 5.0
    scores[0, ATTRIBUTES.index("Young")] = 5.0
    return scores


def _pair(attribute, low=-4.0, high=4.0, identity_seed=0):
    """Images [2, S, S, 3] of the typical face with only `attribute`'s logit at low, then high."""
    scores = np.repeat(_typical_scores(), 2, axis=0)
    scores[:, ATTRIBUTES.index(attribute)] = (low, high)
    return np.asarray(schematic.render_scores(scores, np.repeat(_identity(identity_seed), 2, 0), SIZE))


@pytest.mark.parametrize(
    "attribute, box",
    [("Smiling", MOUTH), ("Mouth_Slightly_Open", MOUTH), ("Wearing_Lipstick", MOUTH), ("Eyeglasses", EYES)],
)
def test_an_attribute_changes_only_its_region(attribute, box):
    images = _pair(attribute)
    changed = _changed(images[0], images[1])
    region = _box_mask(box)
    assert changed.sum() >= 40, f"{attribute} changed only {changed.sum()} pixels"
    assert not (changed & ~region).any(), f"{attribute} changed {int((changed & ~region).sum())} pixels outside"


@pytest.mark.parametrize("attribute, brighter", [("Black_Hair", False), ("Blond_Hair", True), ("Gray_Hair", True)])
def test_hair_colour_changes_only_hair(attribute, brighter):
    images = _pair(attribute)
    changed = _changed(images[0], images[1])
    assert changed.sum() >= 0.05 * SIZE * SIZE
    assert not (changed & _box_mask(INNER_FACE)).any()
    assert (changed & _box_mask(CROWN)).sum() >= 0.5 * _box_mask(CROWN).sum()  # the hair on top of the head
    luminance = images[..., :3].mean(axis=-1)[:, changed].mean(axis=1)
    assert (luminance[1] > luminance[0] + 0.1) == brighter and abs(luminance[1] - luminance[0]) > 0.1


def test_a_slider_moves_the_mouth_smoothly():
    steps = np.linspace(-4.0, 4.0, 9)
    frames = np.concatenate(
        [_pair("Smiling", a, b) for a, b in zip(steps[0::2], steps[1::2])] + [_pair("Smiling", 4, 4)[:1]]
    )
    moved = _changed(frames[0], frames[-1])
    total = np.abs(frames[-1] - frames[0])[moved].mean()
    step_changes = [np.abs(frames[k + 1] - frames[k])[moved].mean() for k in range(len(steps) - 1)]
    assert moved.sum() >= 40 and total > 0.1
    assert all(0 < change < 0.5 * total for change in step_changes), (step_changes, total)


def test_identities_differ_and_rendering_is_deterministic():
    scores = np.repeat(_typical_scores(), 2, axis=0)
    identities = np.concatenate([_identity(1), _identity(2)])
    first = np.asarray(schematic.render_scores(scores, identities, SIZE))
    again = np.asarray(schematic.render_scores(scores, identities, SIZE))
    np.testing.assert_array_equal(first, again)
    assert _changed(first[0], first[1]).mean() > 0.2  # skin, proportions, clothes, hair hue all differ
    twins = np.asarray(schematic.render_scores(scores, np.concatenate([_identity(1), _identity(1)]), SIZE))
    np.testing.assert_array_equal(twins[0], twins[1])
    np.testing.assert_array_equal(twins[0], first[0])


def test_traits_spread_over_many_identities():
    embeddings = np.random.default_rng(3).standard_normal((500, 128)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    traits = np.asarray(schematic.identity_traits(jnp.asarray(embeddings)))
    assert traits.shape == (500, 12)
    assert (traits.min(axis=0) < 0.15).all() and (traits.max(axis=0) > 0.85).all()


@pytest.mark.parametrize("size", [64, SIZE])  # each new size compiles the drawing (~6 s of CPU)
def test_shapes_dtypes_and_range(size):
    scores = np.random.default_rng(size).normal(0, 4, (2, 40)).astype(np.float32)
    identities = np.concatenate([_identity(4), _identity(5)])
    images = np.asarray(schematic.render_scores(scores, identities, size))
    assert images.shape == (2, size, size, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.1
    as_bytes = schematic.render_scores(scores, identities, size, as_uint8=True)
    assert as_bytes.dtype == np.uint8 and as_bytes.shape == (2, size, size, 3)


def test_the_caption_is_a_strip_at_the_bottom():
    scores, identities = np.repeat(_typical_scores(), 2, axis=0), np.concatenate([_identity(4), _identity(5)])
    labelled = np.asarray(schematic.render_scores(scores, identities, SIZE))
    bare = np.asarray(schematic.render_scores(scores, identities, SIZE, label=False))
    rows = np.nonzero(_changed(labelled, bare).any(axis=(0, 2)))[0]
    assert rows.min() >= SIZE - 16 and rows.max() == SIZE - 1  # only a strip at the bottom differs
    strip = labelled[:, rows.min() :].mean(axis=-1)
    assert strip.max() > 0.9 and strip.min() < -0.7  # white text on a dark bar


def test_bad_input_is_refused_in_one_line():
    with pytest.raises(InputError, match=r"\[B, 40\]"):
        schematic.render_scores(np.zeros((2, 39)), np.ones((2, 8)))
    with pytest.raises(InputError, match="identity"):
        schematic.render_scores(np.zeros((2, 40)), np.ones((3, 8)))
    with pytest.raises(ConfigError, match="size"):
        schematic.render_scores(np.zeros((1, 40)), np.ones((1, 8)), size=8)


@pytest.fixture(scope="module")
def world():
    config = synthetic.WorldConfig(seed=0, z_dim=128, w_dim=128, subspace_dim=48, calibration_samples=2000)
    return synthetic.build_world(config)


def _smiling_walk(world, w, step=0.25, target=3.0, max_steps=100):
    """Walk w along the Smiling logit's gradient made orthogonal to the other 39 logits' gradients
    (re-linearised every step) until Smiling's logit passes `target`: the world's own idea of
    "more smile, nothing else"."""
    smiling = ATTRIBUTES.index("Smiling")
    logits_and_jacobian = jax.jit(
        lambda v: (
            synthetic.attribute_logits(world, v[None])[0],
            jax.jacobian(lambda u: synthetic.attribute_logits(world, u[None])[0])(v),
        )
    )
    for _ in range(max_steps):
        logits, grads = (np.asarray(a, np.float64) for a in logits_and_jacobian(w))
        if logits[smiling] > target:
            break
        u, singular, _ = np.linalg.svd(np.delete(grads, smiling, axis=0).T, full_matrices=False)
        basis = u[:, singular > 1e-4 * singular.max()]  # saturated labellers have no gradient
        direction = grads[smiling] - basis @ (basis.T @ grads[smiling])
        w = w + step * jnp.asarray(direction / np.linalg.norm(direction), jnp.float32)
    return w


def test_an_edit_through_the_world_moves_the_mouth(world):
    renderer = SchematicRenderer(world, resolution=SIZE)
    ws = synthetic.sample_latents(world, jax.random.key(7), 64)
    logits = np.asarray(synthetic.attribute_logits(world, ws))
    w = ws[int(np.argmin(logits[:, ATTRIBUTES.index("Smiling")]))]  # the least smiling of 64
    pair = jnp.stack([w, _smiling_walk(world, w)])
    before, after = np.asarray(synthetic.attribute_logits(world, pair))
    assert before[ATTRIBUTES.index("Smiling")] < -4 and after[ATTRIBUTES.index("Smiling")] > 3
    identity = np.asarray(synthetic.identity_embedding(world, pair))
    assert identity[0] @ identity[1] > 0.9999  # the walk stays in the attribute subspace
    images = np.asarray(renderer.synthesis(pair))
    change = np.abs(images[0] - images[1]).max(axis=-1)
    mouth = _box_mask(MOUTH)
    assert (change[mouth] > TOLERANCE).sum() >= 40 and change[mouth].max() > 0.5
    assert change[~mouth].max() < 0.1, "the edit visibly changed the picture outside the mouth"


def test_renderer_mirrors_the_generator_interface(world):
    renderer = SchematicRenderer(world, resolution=SIZE)
    assert (renderer.resolution, renderer.num_ws, renderer.w_dim, renderer.z_dim) == (SIZE, 18, 128, 128)
    z = jax.random.normal(jax.random.key(0), (2, 128))
    ws = renderer.mapping(z)
    assert ws.shape == (2, 18, 128)
    np.testing.assert_allclose(np.asarray(ws[:, 0]), np.asarray(world.mapping(z)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(renderer.mapping(z, truncation_psi=0.0)[0, 3]), np.asarray(world.params["mean"]), atol=1e-5
    )
    from_w = np.asarray(renderer.synthesis(ws[:, 0], "const"))
    from_ws = np.asarray(renderer(z))
    assert from_w.shape == (2, SIZE, SIZE, 3) and from_w.dtype == np.float32
    np.testing.assert_allclose(from_w, from_ws, atol=1e-5)
    with pytest.raises(InputError, match="ws"):
        renderer.synthesis(np.zeros((2, 5, 128), np.float32))
    with pytest.raises(ConfigError, match="resolution"):
        SchematicRenderer(world, resolution=8)
