"""The official latent-transformer checkpoints through our converter, against the golden fixtures.

Everything here starts from `latent_classifier_small.pth` / `tnet_small.pth.tar` converted by
`jaxedit convert latent-transformer` (the CLI), then loaded with `jaxedit.load_editors`.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxedit
from jaxedit.cli.main import main as cli_main
from jaxedit.convert.latent_transformer import classifier_layout, convert_latent_transformer, tnet_layout
from jaxedit.errors import CheckpointError, ConfigError
from jaxedit.latent import PRESETS
from jaxedit.latent.losses import correlation_matrix
from jaxedit.training.steps import TransformerTrainer, slot, stack_slots
from tests.helpers.paths import LATENT_FIXTURES

CLASSIFIER = LATENT_FIXTURES / "latent_classifier_small.pth"
TNET = LATENT_FIXTURES / "tnet_small.pth.tar"
SMILING = 31


@pytest.fixture(scope="module")
def io():
    with np.load(LATENT_FIXTURES / "official_small_io.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def fixture_config():
    return json.loads((LATENT_FIXTURES / "official_small_config.json").read_text())


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Editors converted through the CLI: the small tnet as attribute 31 (Smiling) and, a second
    copy, as attribute 5 (Bangs), so the stacked axis and the attribute order are exercised."""
    root = tmp_path_factory.mktemp("convert")
    tnets = root / "tnets"
    tnets.mkdir()
    shutil.copy(TNET, tnets / f"tnet_{SMILING}.pth.tar")
    shutil.copy(TNET, tnets / "tnet_5.pth.tar")
    out = root / "editors"
    assert (
        cli_main(["convert", "latent-transformer", "--classifier", str(CLASSIFIER), "--tnets", str(tnets), str(out)])
        == 0
    )
    return jaxedit.load_editors(out)


def test_converted_editors_describe_the_small_official_network(converted, fixture_config):
    assert converted.attributes == ("Bangs", "Smiling")
    assert converted.preset.name == "official"
    assert converted.latent_shape == (fixture_config["wplus_layers"], 512)
    assert list(converted.classifier_module.widths) == fixture_config["classifier_dims"]
    assert converted.classifier_module.activation == "leaky_relu" and converted.classifier_module.negative_slope == 0.2
    assert converted.transformer_params["kernel"].shape == (2, 2, 512, 512)
    assert converted.source["sha256"] and converted.source["tnets"][1]["attribute"] == "Smiling"


def test_classifier_logits_match_the_official_code(converted, io):
    logits = converted.classify(io["wplus"])
    np.testing.assert_allclose(np.asarray(logits), io["logits"], rtol=0, atol=1e-5)


def test_transformer_outputs_match_the_official_code(converted, io):
    out = converted.transform(io["wplus"], "Smiling", io["alpha"])
    np.testing.assert_allclose(np.asarray(out), io["tnet_out"], rtol=0, atol=1e-5)
    # alpha = 0 is the identity, a scalar alpha broadcasts over the batch
    np.testing.assert_array_equal(np.asarray(converted.transform(io["wplus"], 31, 0.0)), io["wplus"])


def _official_small_preset(fixture_config):
    config = fixture_config["config"]
    preset = PRESETS["official"].replace(
        num_ws=fixture_config["wplus_layers"], classifier_hidden=tuple(fixture_config["classifier_dims"][1:-1])
    )
    assert (preset.lr, preset.beta1, preset.beta2, preset.weight_decay) == (
        config["lr"],
        config["beta_1"],
        config["beta_2"],
        config["weight_decay"],
    )
    assert (preset.class_weight, preset.recon_weight, preset.attribute_weight) == (
        config["w"]["pb"],
        config["w"]["recon"],
        config["w"]["reg"],
    )
    assert preset.batch_size == config["batch_size"] and preset.epochs == config["epochs"]
    return preset


def test_three_official_training_steps_match_the_recorded_run(converted, io, fixture_config):
    """Losses before each of three Adam steps on train_batch_{0,1,2} for attribute 31, and the
    params after them, from the converted classifier and tnet."""
    preset = _official_small_preset(fixture_config)
    assert int(io["train_attr_index"]) == fixture_config["train_attr_index"] == SMILING
    trainer = TransformerTrainer.create(preset)
    correlation = correlation_matrix(io["labels"])
    state = trainer.init_from_params(stack_slots([converted.transformer_params_for("Smiling")]))
    attributes = jnp.array([SMILING], jnp.int32)
    recorded = []
    for index in range(3):
        state, metrics = jax.jit(trainer.step)(
            state, converted.classifier_params, correlation, attributes, io[f"train_batch_{index}"]
        )
        recorded.append([float(metrics[name][0]) for name in ("total", "class", "recon", "attribute")])
    np.testing.assert_allclose(np.array(recorded), io["train_losses"], rtol=1e-5, atol=0)

    params = slot(state.params, 0)
    initial = converted.transformer_params_for("Smiling")
    for layer in range(2):
        for ours, initial_ours, key in (
            (params["kernel"][layer].T, initial["kernel"][layer].T, "weight"),
            (params["bias"][layer], initial["bias"][layer], "bias"),
        ):
            reference = io[f"tnet_after_3_steps.dense.{layer}.{key}"]
            ours = np.asarray(ours)
            # relative to the tensor's size: 1e-5 (measured ~8e-7)
            assert np.max(np.abs(ours - reference)) <= 1e-5 * np.max(np.abs(reference)), (layer, key)
            # and the three updates themselves (moves of ~1e-3) agree in norm to 1e-3 (measured ~2e-5)
            moved_ours, moved_ref = ours - np.asarray(initial_ours), reference - np.asarray(initial_ours)
            assert np.linalg.norm(moved_ours - moved_ref) <= 1e-3 * np.linalg.norm(moved_ref), (layer, key)


def test_layout_checks_against_the_full_official_manifest():
    manifest = json.loads((LATENT_FIXTURES / "official_manifest.json").read_text())
    classifier = {key: tuple(shape) for key, shape in manifest["latent_classifier"].items()}
    tnet = {key: tuple(shape) for key, shape in manifest["tnet"].items()}
    assert classifier_layout(classifier) == (9216, 2048, 512, 40)
    assert tnet_layout(tnet) == (18, 512)

    broken = dict(classifier, **{"fcs.1.weight": (512, 1024)})
    with pytest.raises(CheckpointError, match=r"fcs\.1\.weight has shape \[512, 1024\], expected \[\*, 2048\]"):
        classifier_layout(broken)
    with pytest.raises(CheckpointError, match=r"fcs\.2\.bias has shape \[39\], expected \[40\]"):
        classifier_layout(dict(classifier, **{"fcs.2.bias": (39,)}))
    with pytest.raises(CheckpointError, match="missing key fcs.1.bias"):
        classifier_layout({k: v for k, v in classifier.items() if k != "fcs.1.bias"})
    with pytest.raises(CheckpointError, match="unexpected key 'dense.0.weight'"):
        classifier_layout(tnet)
    with pytest.raises(CheckpointError, match=r"dense\.7\.weight has shape \[512, 256\], expected \[512, 512\]"):
        tnet_layout(dict(tnet, **{"dense.7.weight": (512, 256)}))
    with pytest.raises(CheckpointError, match="missing key dense.17.bias"):
        tnet_layout({k: v for k, v in tnet.items() if k != "dense.17.bias"})


def test_bad_inputs_fail_in_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    tnets = tmp_path / "tnets"
    tnets.mkdir()
    shutil.copy(TNET, tnets / "tnet_40.pth.tar")
    with pytest.raises(ConfigError, match="attribute index 40 is out of range"):
        convert_latent_transformer(CLASSIFIER, out, tnets=tnets)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no tnet_<k>.pth.tar files"):
        convert_latent_transformer(CLASSIFIER, out, tnets=empty)
    # the tnet given as the classifier: a layout error, through the CLI as one line, exit 2
    assert cli_main(["convert", "latent-transformer", "--classifier", str(TNET), str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert (
        message.startswith("jaxedit: error:") and "unexpected key 'dense.0.weight'" in message and "\n" not in message
    )
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_non_finite_tnet_values_are_refused(tmp_path):
    """A tnet (here 3 layers of 8, not the fixture's shape) holding a NaN: refused naming file and key."""
    from tests.helpers.torch_writers import Tensor, write_torch_zip

    tnets = tmp_path / "tnets"
    tnets.mkdir()
    state = {
        f"dense.{layer}.{part}": np.zeros((8, 8) if part == "weight" else (8,), np.float32)
        for layer in range(3)
        for part in ("weight", "bias")
    }
    state["dense.1.bias"][4] = np.nan
    write_torch_zip(tnets / "tnet_9.pth.tar", {key: Tensor(value) for key, value in state.items()})
    with pytest.raises(CheckpointError, match=r"tnet_9.pth.tar: tensor 'dense.1.bias' contains non-finite values"):
        convert_latent_transformer(CLASSIFIER, tmp_path / "out", tnets=tnets)
    assert not (tmp_path / "out").exists()


def test_classifier_only_conversion(tmp_path):
    out = convert_latent_transformer(CLASSIFIER, tmp_path / "c")
    editors = jaxedit.load_editors(out)
    assert editors.attributes == () and editors.transformer_params is None
    assert editors.latent_shape == (2, 512)
    with pytest.raises(ConfigError, match="already exists"):
        convert_latent_transformer(CLASSIFIER, out)


def test_full_size_official_tnets_written_without_torch(tmp_path):
    """18-layer tnets in the official layout (keys and shapes from official_manifest.json), one of
    them wrapped as {'state_dict': {'module.<key>': ...}}; a classifier 9216-16-8-40."""
    from tests.helpers.torch_writers import Tensor, write_torch_zip

    manifest = json.loads((LATENT_FIXTURES / "official_manifest.json").read_text())
    rng = np.random.default_rng(0)
    tnets = tmp_path / "tnets"
    tnets.mkdir()
    states = {}
    for index in (20, 15):
        states[index] = {key: rng.normal(size=shape).astype(np.float32) for key, shape in manifest["tnet"].items()}
    write_torch_zip(tnets / "tnet_20.pth.tar", {key: Tensor(value) for key, value in states[20].items()})
    write_torch_zip(
        tnets / "tnet_15.pth.tar", {"state_dict": {f"module.{key}": Tensor(value) for key, value in states[15].items()}}
    )
    widths = (9216, 16, 8, 40)
    classifier = {}
    for i in range(3):
        classifier[f"fcs.{i}.weight"] = (rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i])).astype(
            np.float32
        )
        classifier[f"fcs.{i}.bias"] = rng.normal(size=widths[i + 1]).astype(np.float32)
    write_torch_zip(
        tmp_path / "latent_classifier_epoch_20.pth", {key: Tensor(value) for key, value in classifier.items()}
    )

    out = convert_latent_transformer(tmp_path / "latent_classifier_epoch_20.pth", tmp_path / "editors", tnets=tnets)
    editors = jaxedit.load_editors(out)
    assert editors.attributes == ("Eyeglasses", "Male")
    assert editors.latent_shape == (18, 512) and editors.preset == PRESETS["official"].replace(
        classifier_hidden=(16, 8)
    )

    w = rng.normal(size=(3, 18, 512)).astype(np.float32)
    alpha = np.array([-1.0, 0.5, 1.5], np.float32)
    for name, index in (("Male", 20), ("Eyeglasses", 15)):
        state = states[index]
        direction = np.stack(
            [
                w[:, layer] @ state[f"dense.{layer}.weight"].T.astype(np.float64) / np.sqrt(512)
                + state[f"dense.{layer}.bias"]
                for layer in range(18)
            ],
            axis=1,
        )
        np.testing.assert_allclose(
            np.asarray(editors.transform(w, name, alpha)), w + alpha[:, None, None] * direction, atol=1e-4
        )
    x = w.reshape(3, -1).astype(np.float64)
    for i in range(3):
        x = x @ classifier[f"fcs.{i}.weight"].T + classifier[f"fcs.{i}.bias"]
        x = np.where(x > 0, x, 0.2 * x) if i < 2 else x
    np.testing.assert_allclose(np.asarray(editors.classify(w)), x, atol=1e-4)

    # a tnet with 17 layers next to 18-layer ones is refused, naming the file
    write_torch_zip(
        tnets / "tnet_3.pth.tar",
        {key: Tensor(value) for key, value in states[20].items() if not key.startswith("dense.17.")},
    )
    with pytest.raises(CheckpointError, match=r"tnet_(3|15)\.pth\.tar: .*layers of 512, but tnet_.*has"):
        convert_latent_transformer(tmp_path / "latent_classifier_epoch_20.pth", tmp_path / "editors2", tnets=tnets)
    assert not (tmp_path / "editors2").exists()
