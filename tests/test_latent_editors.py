"""The editors directory format: trained editors saved and loaded back, checks on bad directories."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxedit
from jaxedit.errors import AttributeNameError, ConfigError
from jaxedit.latent import PRESETS, editors_from_params, save_editors
from jaxedit.latent.editors import expected_classifier_shapes, expected_transformer_shapes
from jaxedit.latent.modules import classifier_from_preset, transformer_from_preset
from jaxedit.training.steps import slot

OFFICIAL = PRESETS["official"].replace(num_ws=3, w_dim=16, classifier_hidden=(20, 10))
PAPER = PRESETS["paper"].replace(w_dim=16, transformer_hidden=8, classifier_hidden=(12, 10))


def _random_like(shapes, rng, leading=()):
    return jax.tree.map(lambda leaf: rng.normal(size=leading + tuple(leaf.shape)).astype(np.float32), shapes)


def _trained(preset, attributes):
    """Random params with the module's layout (values don't matter to the format)."""
    rng = np.random.default_rng(0)
    classifier_params = _random_like(expected_classifier_shapes(classifier_from_preset(preset)), rng)
    stacked = _random_like(expected_transformer_shapes(transformer_from_preset(preset)), rng, (len(attributes),))
    return classifier_params, stacked


@pytest.mark.parametrize("preset", [OFFICIAL, PAPER], ids=lambda p: p.name)
def test_saved_editors_load_back_identically(tmp_path, preset):
    classifier_params, transformer_params = _trained(preset, ["Smiling", "Eyeglasses", "Young"])
    out = save_editors(
        tmp_path / "editors",
        preset,
        classifier_params,
        transformer_params,
        ["smiling", 15, "Young"],
        training={"steps": 3, "seed": 0},
    )
    editors = jaxedit.load_editors(out)
    assert editors.attributes == ("Smiling", "Eyeglasses", "Young")
    assert editors.preset == preset and editors.latent_shape == preset.latent_shape
    assert editors.training == {"steps": 3, "seed": 0} and editors.source is None
    for got, want in zip(jax.tree.leaves(editors.classifier_params), jax.tree.leaves(classifier_params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # by name (any case) or CelebA index, in the order of the stacked axis
    for key in ("eyeglasses", 15, "15"):
        for got, want in zip(
            jax.tree.leaves(editors.transformer_params_for(key)), jax.tree.leaves(slot(transformer_params, 1))
        ):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    w = jax.random.normal(jax.random.key(2), (4, *preset.latent_shape))
    expected = editors.transformer_module.apply({"params": slot(transformer_params, 2)}, w, jnp.full((4,), 0.7))
    np.testing.assert_allclose(np.asarray(editors.transform(w, "young", 0.7)), np.asarray(expected), rtol=0, atol=0)
    assert editors.classify(w).shape == (4, 40)
    in_memory = editors_from_params(preset, classifier_params, transformer_params, ["Smiling", "Eyeglasses", "Young"])
    assert in_memory.attributes == editors.attributes and in_memory.transformer_module == editors.transformer_module
    with pytest.raises(AttributeNameError, match="no transformer for 'Bald'; they cover: Smiling, Eyeglasses, Young"):
        editors.transformer_params_for("bald")
    with pytest.raises(AttributeNameError, match="did you mean Smiling"):
        editors.transformer_params_for("smilling")


def test_bad_editors_are_refused_in_one_line(tmp_path):
    classifier_params, transformer_params = _trained(OFFICIAL, ["Smiling", "Young"])
    with pytest.raises(ConfigError, match=r"transformers: params bias has shape \[2, 3, 16\], expected \[3, 3, 16\]"):
        save_editors(tmp_path / "a", OFFICIAL, classifier_params, transformer_params, ["Smiling", "Young", "Bald"])
    with pytest.raises(AttributeNameError, match="twice"):
        save_editors(tmp_path / "a", OFFICIAL, classifier_params, transformer_params, ["Smiling", "smiling"])
    with pytest.raises(ConfigError, match=r"classifier: params fc_0/kernel has shape \[48, 20\], expected \[32, 20\]"):
        save_editors(tmp_path / "a", OFFICIAL.replace(num_ws=2), classifier_params, None, [])
    assert not (tmp_path / "a").exists()

    out = save_editors(tmp_path / "b", OFFICIAL, classifier_params, transformer_params, ["Smiling", "Young"])
    manifest_path = out / "jaxedit.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["method"]["num_ws"] = 4
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="module configs disagree with the method preset 'official'"):
        jaxedit.load_editors(out)
    manifest["config"]["classifier"]["widths"][0] = 64  # consistent configs, but the arrays no longer fit
    manifest["config"]["transformer"]["num_ws"] = 4
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"params fc_0/kernel has shape \[48, 20\], expected \[64, 20\]"):
        jaxedit.load_editors(out)
    manifest["config"]["method"]["num_ws"] = manifest["config"]["transformer"]["num_ws"] = 3
    manifest["config"]["classifier"]["widths"][0] = 48
    manifest["config"]["attributes"] = ["Smiling", "Not_An_Attribute"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(AttributeNameError, match="unknown attribute 'Not_An_Attribute'"):
        jaxedit.load_editors(out)
    manifest["kind"] = "generator"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="holds 'generator', expected 'editors'"):
        jaxedit.load_editors(out)
    with pytest.raises(ConfigError, match="no such directory"):
        jaxedit.load_editors(tmp_path / "missing")
