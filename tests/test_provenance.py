"""What editors directories record about where they belong, how commands enforce it, and latent
files passing between commands.

- Converted official editors record "generator unknown" unless converted with --generator, which
  binds them (and refuses a generator of other latents); jaxedit info shows it either way.
- The library check: the recorded generator passes silently, another is refused unless forced,
  editors without a record (older directories) warn that nothing can be checked.
- jaxedit edit: editors trained in the synthetic world are refused with a real generator unless
  --force; older directories work with one warning line. jaxedit eval refuses to evaluate
  editors bound to no world in a random synthetic one unless --force.
- A malformed provenance is refused in one line by load_editors and jaxedit info.
- Latent files: every shape a command writes is read by every command that reads latents.
"""

from __future__ import annotations

import json
import shutil
import warnings

import jax
import numpy as np
import pytest

import jaxedit
from jaxedit.cli.main import main
from jaxedit.convert.stylegan2 import convert_stylegan2
from jaxedit.errors import ConfigError
from jaxedit.latent import PRESETS, classifier_from_preset, save_editors, transformer_from_preset
from jaxedit.latent.modules import init_classifier_params, init_transformer_params
from jaxedit.latent.provenance import (
    MATCH,
    MISMATCH,
    UNCHECKED,
    ProvenanceWarning,
    check_editors_generator,
    compare_generator,
    make_provenance,
)
from jaxedit.modeldir import write_model_dir
from jaxedit.stylegan2 import GeneratorConfig
from jaxedit.stylegan2.loading import param_shapes
from tests.helpers.paths import LATENT_FIXTURES, STYLEGAN2_FIXTURES

PAPER_32 = PRESETS["paper"].replace(w_dim=32, classifier_hidden=(8,), transformer_hidden=8)
WORLD = {"seed": 5, "w_dim": 32, "z_dim": 32, "mapping_layers": 2, "num_ws": 10}


def _w_editors(path, provenance=None):
    keys = jax.random.split(jax.random.key(0), 3)
    transformer = transformer_from_preset(PAPER_32)
    stacked = jax.vmap(lambda key: init_transformer_params(transformer, key))(keys[1:])
    classifier = init_classifier_params(classifier_from_preset(PAPER_32), keys[0])
    return save_editors(path, PAPER_32, classifier, stacked, ["Smiling", "Young"], provenance=provenance)


def _zero_generator(path, resolution: int, w_dim: int):
    config = GeneratorConfig(resolution=resolution, z_dim=w_dim, w_dim=w_dim, mapping_layers=1, channels={4: 8})
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), param_shapes(config))
    return write_model_dir(
        path, kind="generator", config=config.to_dict(), params={**zeros, "w_avg": np.zeros(w_dim, np.float32)}
    )


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    convert_stylegan2(STYLEGAN2_FIXTURES / "rosinality_small.pt", root / "gen")
    generator = jaxedit.load_generator(root / "gen")
    tnets = root / "tnets"
    tnets.mkdir()
    shutil.copy(LATENT_FIXTURES / "tnet_small.pth.tar", tnets / "tnet_31.pth.tar")
    return {
        "root": root,
        "gen": root / "gen",
        "generator": generator,
        "tnets": tnets,
        "bound": _w_editors(root / "bound", make_provenance(PAPER_32, origin="trained", generator=generator)),
        "world": _w_editors(root / "world", make_provenance(PAPER_32, origin="trained", world=WORLD)),
        "old": _w_editors(root / "old"),
    }


def _convert(dirs, out, *extra):
    classifier = str(LATENT_FIXTURES / "latent_classifier_small.pth")
    argv = [
        "convert",
        "latent-transformer",
        "--classifier",
        classifier,
        "--tnets",
        str(dirs["tnets"]),
        *extra,
        str(out),
    ]
    return main(argv)


def test_converted_editors_record_no_generator_unless_bound(dirs, tmp_path, capsys):
    assert _convert(dirs, tmp_path / "official") == 0
    printed = capsys.readouterr().out
    note = "official W+ 2x512 editors, generator unknown (convert with --generator GEN_DIR to bind them)"
    assert f"made for: official preset on W+ 2x512, {note}" in printed
    provenance = jaxedit.load_editors(tmp_path / "official").provenance
    assert provenance["generator"] is None and provenance["world"] is None and provenance["note"] == note
    assert provenance["origin"] == "converted" and provenance["latent_shape"] == [2, 512]
    assert main(["info", str(tmp_path / "official")]) == 0
    assert note in capsys.readouterr().out
    # bound at conversion: a generator of the editors' latents (W+ 2 x 512: 4 px), recorded by identity
    _zero_generator(tmp_path / "gen4", resolution=4, w_dim=512)
    assert _convert(dirs, tmp_path / "bound", "--generator", str(tmp_path / "gen4")) == 0
    assert f"converted, bound to generator {(tmp_path / 'gen4').absolute()} (4 px, params " in capsys.readouterr().out
    editors = jaxedit.load_editors(tmp_path / "bound")
    gen4 = jaxedit.load_generator(tmp_path / "gen4")
    assert compare_generator(editors.provenance, gen4)[0] == MATCH
    # a generator of other latents cannot be bound: one line, nothing written
    assert _convert(dirs, tmp_path / "nope", "--generator", str(dirs["gen"])) == 2
    err = capsys.readouterr().err
    assert "the editors work on W+ [2, 512] latents, the generator on W+ [10, 32]" in err and err.count("\n") == 1
    assert not (tmp_path / "nope").exists()
    # evaluated without a generator, unbound editors would land in a random world: refused unless --force
    assert main(["eval", str(tmp_path / "official"), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "they were not trained in a synthetic world: pass --generator DIR" in err and "or --force" in err
    assert err.count("\n") == 1 and not (tmp_path / "eval").exists()


def test_library_check(dirs):
    generator = dirs["generator"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_editors_generator(jaxedit.load_editors(dirs["bound"]), generator) == MATCH
    world = jaxedit.load_editors(dirs["world"])
    with pytest.raises(ConfigError, match=r"trained in the synthetic world's random mapping network \(seed 5"):
        check_editors_generator(world, generator)
    with pytest.warns(ProvenanceWarning, match="used anyway: force"):
        assert check_editors_generator(world, generator, force=True) == MISMATCH
    with pytest.warns(ProvenanceWarning, match="record no provenance"):
        assert check_editors_generator(jaxedit.load_editors(dirs["old"]), generator) == UNCHECKED
    # the same weights converted from another file still match (params digest); other weights do not
    other = jaxedit.load_editors(dirs["bound"]).provenance
    assert (
        compare_generator({**other, "generator": {**other["generator"], "source_sha256": "0" * 64}}, generator)[0]
        == MATCH
    )
    changed = {**other["generator"], "source_sha256": "0" * 64, "params_sha256": "1" * 64}
    verdict, reason = compare_generator({**other, "generator": changed}, generator)
    assert verdict == MISMATCH and reason.endswith("(other weights)")


def test_edit_enforces_the_record(dirs, tmp_path, capsys):
    gen = str(dirs["gen"])
    edit = ["--seed", "1", "--attr", "Smiling=1", "--out", str(tmp_path / "e.png")]
    assert main(["edit", gen, str(dirs["world"]), *edit]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained in the synthetic world's random mapping network (seed 5" in err
    assert "; pass --force to use them anyway" in err and not (tmp_path / "e.png").exists()
    assert main(["edit", gen, str(dirs["old"]), *edit]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxedit: warning: editors ")
    assert "record no provenance: their fit to generator" in err


def test_a_malformed_provenance_is_one_line(dirs, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(dirs["bound"], bad)
    manifest = json.loads((bad / "jaxedit.json").read_text())
    manifest["config"]["provenance"]["generator"] = "rosinality"
    (bad / "jaxedit.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="manifest provenance 'generator' must be an object or null"):
        jaxedit.load_editors(bad)
    assert main(["info", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    manifest["config"]["provenance"].update(generator=None, latent_shape=5)
    (bad / "jaxedit.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"'latent_shape' must be \[w_dim\] or \[num_ws, w_dim\]"):
        jaxedit.load_editors(bad)


def test_latent_files_pass_between_commands(dirs, tmp_path, capsys):
    """generate --w takes one W vector as edit --latent does; what edit --save-latents writes
    ([panels, B, num_ws, w_dim]) renders with generate --ws as its panels' images, in order."""
    generator = dirs["generator"]
    gen = str(dirs["gen"])
    w = np.asarray(generator.mapping(np.random.RandomState(1).randn(1, 32).astype(np.float32)))[0, 0]
    np.save(tmp_path / "w.npy", w)
    assert main(["generate", gen, "--w", str(tmp_path / "w.npy"), "--out", str(tmp_path / "w_images.npy")]) == 0
    ws = np.repeat(w[None, None], generator.num_ws, axis=1)
    want = np.asarray(generator.synthesis(ws, "const"))
    np.testing.assert_allclose(np.load(tmp_path / "w_images.npy"), want, atol=1e-5)
    saved = tmp_path / "panels.npy"
    edit = ["edit", gen, str(dirs["bound"]), "--latent", str(tmp_path / "w.npy"), "--attr", "Smiling=1"]
    assert main([*edit, "--attr", "Young=-1", "--out", str(tmp_path / "e.png"), "--save-latents", str(saved)]) == 0
    panels = np.load(saved)
    assert panels.shape == (3, 1, generator.num_ws, generator.w_dim)
    assert main(["generate", gen, "--ws", str(saved), "--out", str(tmp_path / "panel_images.npy")]) == 0
    images = np.load(tmp_path / "panel_images.npy")
    np.testing.assert_allclose(images, np.asarray(generator.synthesis(panels[:, 0], "const")), atol=1e-5)
    np.testing.assert_allclose(images[0], want[0], atol=1e-5)  # panel 0 is the input
    capsys.readouterr()
    assert main(["generate", gen, "--w", str(saved), "--out", str(tmp_path / "x.npy")]) == 2
    assert "(these are W+ latents)" in capsys.readouterr().err
