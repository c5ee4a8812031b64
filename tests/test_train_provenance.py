"""Editors trained by the transformer stage record where their latents came from: the generator
given with `--generator` (then `jaxedit edit` can tell it from another one), the synthetic world,
or a note saying how to record the generator."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from jaxedit.cli.main import main as cli_main
from jaxedit.errors import ConfigError
from jaxedit.latent.editors import load_editors
from jaxedit.latent.modules import classifier_from_preset, init_classifier_params
from jaxedit.latent.provenance import MATCH, MISMATCH, compare_generator, describe_provenance, provenance_of
from jaxedit.stylegan2 import load_generator, random_generator
from jaxedit.training.data import from_arrays, synthetic_data
from jaxedit.training.transformers import editors_provenance, train_transformers
from tests.helpers.paths import STYLEGAN2_FIXTURES
from tests.helpers.train_tiny import TINY_CLI, tiny_config, tiny_data, write_tiny_npz

QUIET = lambda message: None


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("provenance") / "generator"
    assert cli_main(["convert", "stylegan2", str(STYLEGAN2_FIXTURES / "rosinality_small.pt"), str(out)]) == 0
    return out


def _classifier(config):
    return init_classifier_params(classifier_from_preset(config.method), jax.random.key(0))


def test_editors_record_the_generator_they_were_trained_for(generator_dir, tmp_path):
    generator = load_generator(generator_dir)
    config = tiny_config(
        num_ws=generator.num_ws,
        w_dim=generator.w_dim,
        edit_layers=(0, generator.num_ws),
        max_steps=4,
        generator=str(generator_dir),
    )
    z = np.random.default_rng(0).normal(size=(200, generator.z_dim)).astype(np.float32)
    latents = np.asarray(generator.mapping(z))
    labels = (latents.mean(axis=1) @ np.random.default_rng(1).normal(size=(generator.w_dim, 40)) > 0).astype(np.float32)
    data = from_arrays(latents, labels, 0.9, source="mapped.npy")
    train_transformers(config, data, _classifier(config), ["Smiling"], tmp_path, log=QUIET)

    editors = load_editors(tmp_path / "editors")
    assert compare_generator(provenance_of(editors), generator)[0] == MATCH
    assert "trained on the mapping of" in describe_provenance(provenance_of(editors))
    other = random_generator(dataclasses.replace(generator.config, w_dim=16), jax.random.key(1))
    verdict, reason = compare_generator(provenance_of(editors), other)
    assert verdict == MISMATCH and "another architecture" in reason


def test_without_a_generator_the_record_says_where_the_latents_came_from():
    """(The editors directory writes this record as it is: the test above reads one back.)"""
    line = describe_provenance(editors_provenance(tiny_config(), tiny_data()))
    assert "trained on tiny" in line and "--generator GEN_DIR" in line, line

    synthetic = tiny_config(data="synthetic", synthetic_samples=300, synthetic_seed=3)
    record = editors_provenance(synthetic, synthetic_data(synthetic))
    assert record["world"]["seed"] == 3 and record["generator"] is None
    assert "synthetic world" in describe_provenance(record)


def test_a_generator_of_another_size_is_refused_before_anything_is_written(generator_dir, tmp_path, capsys):
    config = tiny_config(generator=str(generator_dir))  # 2 x 16 latents; the generator makes 10 x 32
    with pytest.raises(ConfigError, match=r"its latents are W\+ 10x32, the official preset here trains on W\+ 2x16"):
        train_transformers(config, tiny_data(), _classifier(config), ["Young"], tmp_path / "lib", log=QUIET)
    assert not (tmp_path / "lib").exists()

    from jaxedit.cli.train_stages import transformers_main
    from jaxedit.latent.editors import save_editors

    classifier_dir = save_editors(tmp_path / "classifier", config.method, _classifier(config), None, [])
    data = write_tiny_npz(tmp_path / "data.npz")
    argv = ["--workdir", str(tmp_path / "cli"), *TINY_CLI, "--latents", str(data), "--classifier", str(classifier_dir)]
    assert transformers_main([*argv, "--generator", str(generator_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its latents are W+ 10x32" in err, err
    assert transformers_main([*argv, "--generator", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err, err
    assert not (tmp_path / "cli" / "editors").exists()
