"""The README's "Use as a library" snippet runs as written, with editors of both presets.

The python block under that heading is taken from README.md; only its two directory strings are
replaced: the generator by the converted small rosinality fixture (64 px, W+ 10 x 32), the editors
by editors made for it, once of the paper preset (W [32]: `G.mapping` gives them W+, edited layer
by layer) and once of the official preset (W+ [10, 32]).
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxedit
from jaxedit.convert.stylegan2 import convert_stylegan2
from jaxedit.latent import PRESETS, classifier_from_preset, save_editors, transformer_from_preset
from jaxedit.latent.modules import init_classifier_params, init_transformer_params
from jaxedit.latent.provenance import make_provenance
from tests.helpers.paths import STYLEGAN2_FIXTURES

README = Path(__file__).resolve().parents[1] / "README.md"
GENERATOR_PATH = "ported_weights/stylegan2-ffhq-config-f"
EDITORS_PATH = "ported_weights/editors-official"
ATTRIBUTES = ("Smiling", "Eyeglasses", "Young")


def library_snippet() -> str:
    text = README.read_text()
    heading = text.index("### Use as a library")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, heading)
    assert match, "no python block under 'Use as a library'"
    return match.group(1)


def _editors(path: Path, preset, generator) -> Path:
    """Editors of `preset` for `generator`'s latents (fresh weights), bound to it."""
    keys = jax.random.split(jax.random.key(7), len(ATTRIBUTES) + 1)
    transformer = transformer_from_preset(preset)
    stacked = jax.vmap(lambda key: init_transformer_params(transformer, key))(keys[1:])
    if preset.transformer_kind == "official":  # non-zero biases: the edit moves the latents
        stacked["bias"] = 0.1 * jax.random.normal(keys[0], stacked["bias"].shape)
    classifier = init_classifier_params(classifier_from_preset(preset), keys[0])
    provenance = make_provenance(preset, origin="trained", generator=generator)
    return save_editors(path, preset, classifier, stacked, list(ATTRIBUTES), provenance=provenance)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    convert_stylegan2(STYLEGAN2_FIXTURES / "rosinality_small.pt", root / "gen")
    generator = jaxedit.load_generator(root / "gen")
    presets = {
        "paper": PRESETS["paper"].replace(w_dim=32, classifier_hidden=(16,), transformer_hidden=32),
        "official": PRESETS["official"].replace(num_ws=10, w_dim=32, edit_layers=(0, 7), classifier_hidden=(16,)),
    }
    return root / "gen", {name: _editors(root / name, preset, generator) for name, preset in presets.items()}


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_the_library_snippet_runs_as_written(setup, preset):
    gen_dir, editors = setup
    code = library_snippet()
    assert code.count(GENERATOR_PATH) == 1 and code.count(EDITORS_PATH) == 1
    code = code.replace(GENERATOR_PATH, str(gen_dir)).replace(EDITORS_PATH, str(editors[preset]))
    namespace: dict = {}
    exec(compile(code, "README.md (Use as a library)", "exec"), namespace)
    ws, edited, steps, frames = (namespace[k] for k in ("ws", "edited", "steps", "frames"))
    assert ws.shape == (4, 10, 32) and namespace["images"].shape == (4, 64, 64, 3)
    assert edited.shape == (4, 64, 64, 3) and np.all(np.isfinite(np.asarray(edited)))
    assert [tuple(s.shape) for s in steps] == [(4, 10, 32)] * 3 and frames.shape == (7, 4, 10, 32)
    assert not np.allclose(np.asarray(steps[0]), np.asarray(ws))  # the edit moved the latents
    if preset == "official":  # layers 7.. keep the input
        np.testing.assert_array_equal(np.asarray(steps[0])[:, 7:], np.asarray(ws)[:, 7:])
