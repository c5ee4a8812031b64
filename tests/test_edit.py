"""`jaxedit.editing.edits`: single, sequential, progressive and layer-range edits, checked against the
official fixture (converted editors) and against the transformers' formulas written in numpy."""

from __future__ import annotations

import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxedit
from jaxedit.convert.latent_transformer import convert_latent_transformer
from jaxedit.editing import edits as edit
from jaxedit.errors import AttributeNameError, ConfigError, InputError
from jaxedit.latent import PRESETS, classifier_from_preset, editors_from_params, transformer_from_preset
from jaxedit.latent.modules import init_classifier_params, init_transformer_params
from jaxedit.training.steps import stack_slots
from tests.helpers.paths import LATENT_FIXTURES, STYLEGAN2_FIXTURES

ATTRS = ("Smiling", "Eyeglasses", "Young")


def _editors(preset, attributes=ATTRS, seed=0):
    keys = jax.random.split(jax.random.key(seed), len(attributes) + 1)
    classifier = init_classifier_params(classifier_from_preset(preset), keys[0])
    transformers = stack_slots([init_transformer_params(transformer_from_preset(preset), k) for k in keys[1:]])
    if preset.transformer_kind == "official":  # non-zero biases, so a dropped bias would show
        transformers["bias"] = 0.1 * jax.random.normal(keys[0], transformers["bias"].shape)
    return editors_from_params(preset, classifier, transformers, attributes)


@pytest.fixture(scope="module")
def wplus_editors():
    """Official-kind editors on W+ [B, 14, 8]: the preset's edit layers 0..10, 11..13 kept."""
    return _editors(PRESETS["official"].replace(num_ws=14, w_dim=8, classifier_hidden=(8,)))


@pytest.fixture(scope="module")
def w_editors():
    """Paper-kind editors on W [B, 8]."""
    return _editors(PRESETS["paper"].replace(w_dim=8, classifier_hidden=(8,), transformer_hidden=6), seed=1)


def _official_numpy(params, k, w, alpha):
    """T(w, a)_l = w_l + a * (w_l @ (kernel_l / sqrt(d)) + bias_l), in float64."""
    kernel = np.asarray(params["kernel"][k], np.float64)
    bias = np.asarray(params["bias"][k], np.float64)
    w = np.asarray(w, np.float64)
    direction = np.einsum("bli,lio->blo", w, kernel / np.sqrt(w.shape[-1])) + bias
    return w + np.asarray(alpha, np.float64).reshape(-1, 1, 1) * direction


def _paper_numpy(params, k, w, alpha, slope=0.2):
    """T(w, a) = w + a * (LeakyReLU(w @ K0 + b0) @ K1 + b1), in float64."""
    p = jax.tree.map(lambda x: np.asarray(x[k], np.float64), params)
    w = np.asarray(w, np.float64)
    h = w @ p["fc_0"]["kernel"] + p["fc_0"]["bias"]
    h = np.where(h > 0, h, slope * h)
    return w + np.asarray(alpha, np.float64).reshape(-1, 1) * (h @ p["fc_1"]["kernel"] + p["fc_1"]["bias"])


def _wplus(batch=4, seed=3):
    return np.random.default_rng(seed).normal(size=(batch, 14, 8)).astype(np.float32)


# ---- the official fixture -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_editors(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit_official")
    tnets = root / "tnets"
    tnets.mkdir()
    shutil.copy(LATENT_FIXTURES / "tnet_small.pth.tar", tnets / "tnet_31.pth.tar")
    out = convert_latent_transformer(LATENT_FIXTURES / "latent_classifier_small.pth", root / "editors", tnets=tnets)
    return jaxedit.load_editors(out)


def test_converted_official_editor_reproduces_the_official_code(fixture_editors):
    with np.load(LATENT_FIXTURES / "official_small_io.npz") as io:
        wplus, alpha, expected = io["wplus"], io["alpha"], io["tnet_out"]
    editor = edit.get_editor(fixture_editors, "smiling")
    assert editor.attribute == "Smiling" and editor.latent_shape == (2, 512)
    np.testing.assert_allclose(np.asarray(editor(wplus, alpha)), expected, rtol=0, atol=1e-5)
    params = edit.transformer_params_of(fixture_editors, 31)
    out = edit.apply_edit(fixture_editors, params, wplus, alpha, layers="all")
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def rosinality_generator(tmp_path_factory):
    from jaxedit.convert.stylegan2 import convert_stylegan2

    out = tmp_path_factory.mktemp("edit_gen") / "gen"
    convert_stylegan2(STYLEGAN2_FIXTURES / "rosinality_small.pt", out)
    return jaxedit.load_generator(out)


def test_official_editors_do_not_fit_the_32_dim_fixture_generator(fixture_editors, rosinality_generator):
    with pytest.raises(ConfigError) as error:
        edit.check_compatible(fixture_editors, rosinality_generator)
    message = str(error.value)
    assert "\n" not in message and "W+ [B, 2, 512]" in message and "w_dim is 32" in message


def test_wplus_editors_with_another_layer_count_do_not_fit(rosinality_generator):
    from types import SimpleNamespace

    with pytest.raises(ConfigError, match="W\\+ \\[B, 18, 32\\] latents but the generator has 10 W\\+ layers"):
        edit.check_compatible(SimpleNamespace(latent_shape=(18, 32)), rosinality_generator)
    edit.check_compatible(SimpleNamespace(latent_shape=(10, 32)), rosinality_generator)
    edit.check_compatible(SimpleNamespace(latent_shape=(32,)), rosinality_generator)


# ---- single edits, W+ layer ranges ----------------------------------------------------------


def test_official_kind_edits_layers_0_to_10_by_default(wplus_editors):
    w = _wplus()
    k = wplus_editors.attributes.index("Eyeglasses")
    expected = _official_numpy(wplus_editors.transformer_params, k, w, np.full(4, 1.25))
    out = np.asarray(edit.get_editor(wplus_editors, "Eyeglasses")(w, 1.25))
    np.testing.assert_allclose(out[:, :11], expected[:, :11], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, 11:], w[:, 11:])  # layers 11..13 keep the input exactly
    assert np.abs(out[:, :11] - w[:, :11]).min() > 0  # every edited value moved
    full = np.asarray(edit.get_editor(wplus_editors, "Eyeglasses")(w, 1.25, layers="all"))
    np.testing.assert_allclose(full, expected, rtol=1e-5, atol=1e-5)


def test_explicit_layer_range_and_restrict_to_layers(wplus_editors):
    w = _wplus()
    params = edit.transformer_params_of(wplus_editors, "Young")
    out = np.asarray(edit.apply_edit(wplus_editors, params, w, -0.7, layers="2-4,9"))
    expected = _official_numpy(wplus_editors.transformer_params, 2, w, np.full(4, -0.7))
    inside = [2, 3, 4, 9]
    outside = [i for i in range(14) if i not in inside]
    np.testing.assert_allclose(out[:, inside], expected[:, inside], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, outside], w[:, outside])
    mixed = np.asarray(edit.restrict_to_layers(jnp.zeros((2, 5, 3)), jnp.ones((2, 5, 3)), (1, 3)))
    np.testing.assert_array_equal(mixed[:, :, 0], np.tile([0, 1, 0, 1, 0], (2, 1)))


def test_paper_kind_on_w_and_alpha_per_row(w_editors):
    w = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    alphas = np.array([-1.5, -0.5, 0.0, 0.5, 1.25], np.float32)
    out = np.asarray(edit.get_editor(w_editors, "SMILING")(w, alphas))
    expected = _paper_numpy(w_editors.transformer_params, 0, w, alphas)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[2], w[2])  # alpha 0 is the identity
    assert edit.get_editor(w_editors, "Smiling").layers is None


# ---- sequences and sweeps ---------------------------------------------------------------------


def test_sequence_feeds_each_step_into_the_next(w_editors):
    w = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    steps = [("Smiling", 1.25), ("eyeglasses", -1.0), (39, 0.5)]
    results = edit.apply_sequence(w_editors, w, steps)
    assert len(results) == 3 and all(r.shape == (3, 8) for r in results)
    expected = w.astype(np.float64)
    for (name, alpha), got in zip(steps, results):
        k = edit.resolve_attribute(w_editors, name)
        expected = _paper_numpy(w_editors.transformer_params, k, expected, np.full(3, alpha))
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_sequence_on_wplus_keeps_layers_outside_the_range(wplus_editors):
    w = _wplus()
    results = edit.apply_sequence(wplus_editors, w, [("Smiling", 1.0), ("Young", 1.0)], layers="0-5")
    np.testing.assert_array_equal(np.asarray(results[-1])[:, 6:], w[:, 6:])
    assert not np.allclose(np.asarray(results[0]), np.asarray(results[1]))


def test_sweep_rows_are_single_edits(wplus_editors):
    w = _wplus(batch=2)
    alphas = np.linspace(-1.5, 1.5, 7)
    swept = np.asarray(edit.sweep(wplus_editors, w, "Smiling", alphas))
    assert swept.shape == (7, 2, 14, 8)
    np.testing.assert_array_equal(swept[3], w)  # alpha 0
    for a, row in zip(alphas, swept):
        expected = _official_numpy(wplus_editors.transformer_params, 0, w, np.full(2, a))
        np.testing.assert_allclose(row[:, :11], expected[:, :11], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(row[:, 11:], w[:, 11:])
    np.testing.assert_allclose(edit.sweep_values(-1.5, 1.5, 7), alphas, rtol=1e-6)


# ---- inside the user's jit and vmap -----------------------------------------------------------


def test_editor_is_a_pytree_usable_in_jit_and_vmap(wplus_editors):
    editor = edit.get_editor(wplus_editors, "Eyeglasses")
    leaves, treedef = jax.tree.flatten(editor)
    assert len(leaves) == 2  # kernel and bias: the module and the layer range are static
    w = _wplus()
    eager = np.asarray(editor(w, 0.8))

    @jax.jit
    def edit_and_mix(editor, latents, alpha):
        return editor(latents, alpha) * 1.0

    np.testing.assert_allclose(np.asarray(edit_and_mix(editor, w, 0.8)), eager, rtol=1e-6, atol=1e-6)
    per_sample = jax.vmap(lambda latent, a: editor(latent[None], a)[0])(jnp.asarray(w), jnp.full((4,), 0.8))
    np.testing.assert_allclose(np.asarray(per_sample), eager, rtol=1e-6, atol=1e-6)
    # vmap over a leading attribute axis of stacked editors: all attributes at once
    stacked = edit.Editor(wplus_editors.transformer_params, editor.module, editor.latent_shape, "all", editor.layers)
    every = jax.vmap(lambda e: e(w, 0.8))(stacked)
    for k, name in enumerate(wplus_editors.attributes):
        np.testing.assert_allclose(
            np.asarray(every[k]), np.asarray(edit.get_editor(wplus_editors, name)(w, 0.8)), rtol=1e-6, atol=1e-6
        )


def test_sequence_and_sweep_inside_jit(w_editors):
    w = np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32)
    steps = [("Smiling", 1.0), ("Young", -0.5)]
    jitted = jax.jit(lambda latents: edit.apply_sequence(w_editors, latents, steps)[-1])
    np.testing.assert_allclose(
        np.asarray(jitted(w)), np.asarray(edit.apply_sequence(w_editors, w, steps)[-1]), rtol=1e-6, atol=1e-6
    )
    jitted_sweep = jax.jit(lambda latents, alphas: edit.sweep(w_editors, latents, "Young", alphas))
    alphas = jnp.linspace(-1, 1, 3)
    np.testing.assert_allclose(
        np.asarray(jitted_sweep(w, alphas)), np.asarray(edit.sweep(w_editors, w, "Young", alphas)), rtol=1e-6, atol=1e-6
    )


# ---- errors and warnings ------------------------------------------------------------------------


def test_w_editors_edit_wplus_latents_layer_by_layer(w_editors):
    """W editors on W+ (what G.mapping returns): T applied to each layer on its own, the paper
    formula per layer in numpy; equal layers give the W edit of the shared w on every layer; under
    jit too; `layers` keeps the other layers; alpha per latent; other sizes still refused."""
    editor = edit.get_editor(w_editors, "Smiling")
    ws = _wplus(batch=3)
    alpha = np.array([1.25, -0.5, 2.0], np.float32)
    got = np.asarray(editor(ws, alpha))
    want = np.stack([_paper_numpy(w_editors.transformer_params, 0, ws[:, layer], alpha) for layer in range(14)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    w = ws[:, 0]
    shared = np.repeat(w[:, None], 14, axis=1)
    edited_w = np.asarray(editor(w, 1.25))
    np.testing.assert_allclose(np.asarray(editor(shared, 1.25)), np.repeat(edited_w[:, None], 14, axis=1), atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda e, x: e(x, 1.25))(editor, shared), editor(shared, 1.25), atol=1e-6)
    kept = np.asarray(editor(ws, 1.0, layers="0-3"))
    np.testing.assert_array_equal(kept[:, 4:], ws[:, 4:])
    np.testing.assert_allclose(kept[:, :4], np.asarray(editor(ws, 1.0))[:, :4])
    steps = edit.apply_sequence(w_editors, shared, [("Smiling", 1.0), ("Young", -1.0)])
    assert [s.shape for s in steps] == [(3, 14, 8)] * 2
    assert edit.sweep(w_editors, ws, "Young", [0.0, 1.0]).shape == (2, 3, 14, 8)
    with pytest.raises(InputError) as error:
        editor(np.zeros((4, 14, 9), np.float32), 1.0)
    assert (
        str(error.value) == "editors work on W [B, 8] or W+ [B, num_ws, 8] (edited layer by layer), got W+ [4, 14, 9]"
    )
    with pytest.raises(InputError, match=r"unbatched latent \[8\]"):
        editor(np.zeros((8,), np.float32), 1.0)
    with pytest.raises(InputError, match="layer ranges apply to W\\+"):
        editor(np.zeros((2, 8), np.float32), 1.0, layers="0-3")


def test_wplus_editors_refuse_latents_of_other_shapes(wplus_editors):
    editor = edit.get_editor(wplus_editors, "Smiling")
    with pytest.raises(InputError, match=r"editors work on W\+ \[B, 14, 8\], got W\+ \[2, 18, 8\]"):
        editor(np.zeros((2, 18, 8), np.float32), 1.0)
    with pytest.raises(InputError, match="floating point"):
        editor(np.zeros((2, 14, 8), np.int32), 1.0)
    with pytest.raises(InputError, match="one value per latent"):
        editor(np.zeros((2, 14, 8), np.float32), np.ones(3))
    with pytest.raises(ConfigError, match="outside this latent's W\\+ layers 0..13"):
        editor(np.zeros((2, 14, 8), np.float32), 1.0, layers="0-20")


def test_unknown_and_missing_attributes(w_editors):
    with pytest.raises(AttributeNameError, match="did you mean Smiling"):
        edit.get_editor(w_editors, "Smilling")
    with pytest.raises(AttributeNameError, match="no transformer for 'Male'.*Smiling, Eyeglasses, Young"):
        edit.apply_sequence(w_editors, np.zeros((1, 8), np.float32), [("Smiling", 1.0), ("male", 1.0)])
    with pytest.raises(AttributeNameError, match="out of range"):
        edit.get_editor(w_editors, 40)


def test_alpha_outside_minus3_3_warns(w_editors):
    editor = edit.get_editor(w_editors, "Smiling")
    w = np.zeros((2, 8), np.float32)
    with pytest.warns(edit.AlphaRangeWarning, match="alpha -3.5 is outside"):
        editor(w, -3.5)
    with pytest.warns(edit.AlphaRangeWarning, match="alpha 4 is outside"):
        edit.sweep(w_editors, w, "Smiling", [0.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        editor(w, np.array([3.0, -3.0]))  # the limit itself is fine
    with pytest.raises(InputError, match="finite"):
        editor(w, float("nan"))


def test_layer_range_parsing():
    assert edit.parse_layers("0-10") == tuple(range(11))
    assert edit.parse_layers("0,2,4-6", num_ws=18) == (0, 2, 4, 5, 6)
    assert edit.parse_layers("all", num_ws=3) == (0, 1, 2)
    assert edit.parse_layers(None) is None
    for bad in ("3-1", "x", "1-", "", "-2"):
        with pytest.raises(ConfigError):
            edit.parse_layers(bad)


def test_latent_space_conversions():
    w = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    ws = np.asarray(edit.to_generator_ws(w, 5))
    assert ws.shape == (2, 5, 8) and np.all(ws == w[:, None])
    np.testing.assert_array_equal(np.asarray(edit.to_editor_space(ws, (8,))), w)  # equal layers -> W
    np.testing.assert_array_equal(np.asarray(edit.to_editor_space(w, (5, 8))), ws)  # W -> repeated W+
    distinct = ws.copy()
    distinct[:, 3] += 1
    np.testing.assert_array_equal(np.asarray(edit.to_editor_space(distinct, (8,))), distinct)  # edited per layer
    with pytest.raises(InputError, match=r"editors work on W \[B, 8\] or W\+ \[B, num_ws, 8\]"):
        edit.to_editor_space(np.zeros((2, 5, 7), np.float32), (8,))
