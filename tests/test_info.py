"""`jaxedit info DIR`: what converted generator and editors directories hold."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from jaxedit.cli.info import describe, format_info
from jaxedit.cli.main import main as cli_main
from jaxedit.io import sha256_file
from jaxedit.modeldir import read_model_dir
from tests.helpers.paths import LATENT_FIXTURES, STYLEGAN2_FIXTURES

ROSINALITY = STYLEGAN2_FIXTURES / "rosinality_small.pt"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("info")
    assert cli_main(["convert", "stylegan2", str(ROSINALITY), str(root / "gen")]) == 0
    tnets = root / "tnets"
    tnets.mkdir()
    shutil.copy(LATENT_FIXTURES / "tnet_small.pth.tar", tnets / "tnet_15.pth.tar")
    assert (
        cli_main(
            [
                "convert",
                "latent-transformer",
                "--classifier",
                str(LATENT_FIXTURES / "latent_classifier_small.pth"),
                "--tnets",
                str(tnets),
                str(root / "editors"),
            ]
        )
        == 0
    )
    return root / "gen", root / "editors"


def _sizes(tree) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(tree))


def test_generator_info_matches_the_fixture_architecture(converted, capsys):
    gen, _ = converted
    capsys.readouterr()
    assert cli_main(["info", str(gen)]) == 0
    text = capsys.readouterr().out
    config = json.loads((STYLEGAN2_FIXTURES / "rosinality_small_config.json").read_text())
    assert "jaxedit generator directory" in text
    for label, value in (
        ("resolution", config["size"]),
        ("num ws", config["n_latent"]),
        ("w dim", config["style_dim"]),
        ("z dim", config["style_dim"]),
        ("mapping layers", config["n_mlp"]),
        ("conv clamp", "none"),
    ):
        assert any(line.split() == [*label.split(), str(value)] for line in text.splitlines()), (label, text)
    channels = ", ".join(f"{r}: {c}" for r, c in sorted(config["channels"].items(), key=lambda kv: int(kv[0])))
    assert f"channels        {channels}" in text
    assert sha256_file(ROSINALITY) in text and "source format   rosinality" in text
    _, params = read_model_dir(gen)
    described = describe(gen)
    assert described["parameters"] == _sizes(params)  # every stored value, from the metadata alone
    noise_and_avg = sum(
        int(np.size(leaf))
        for path, leaf in jax.tree.leaves_with_path(params)
        if "noise_const" in jax.tree_util.keystr(path) or "w_avg" in jax.tree_util.keystr(path)
    )
    assert described["generator"]["parameters"] == _sizes(params) - noise_and_avg
    assert described["created"] and described["created"][:4].isdigit()


def test_editors_info_lists_preset_attributes_and_sources(converted, capsys):
    _, editors = converted
    capsys.readouterr()
    assert cli_main(["info", str(editors), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "editors"
    summary = described["editors"]
    assert (
        summary["preset"] == "official"
        and summary["attributes"] == ["Eyeglasses"]
        and summary["latent_shape"] == [2, 512]
    )
    assert summary["edit_layers"].startswith("0-1 of 0-1")  # the preset's 0..10, clipped to 2 layers
    assert summary["classifier_parameters"] == 1024 * 64 + 64 + 64 * 32 + 32 + 32 * 40 + 40
    assert summary["transformer_parameters"] == 2 * 512 * 512 + 2 * 512
    assert described["source"]["sha256"] == sha256_file(LATENT_FIXTURES / "latent_classifier_small.pth")
    assert described["source"]["tnets"][0]["sha256"] == sha256_file(LATENT_FIXTURES / "tnet_small.pth.tar")
    text = format_info(describe(editors))
    assert "attributes              1: Eyeglasses" in text and "source tnets" in text and "created" in text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing", "no such directory"),
        (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "not a directory"),
        (lambda tmp: tmp, "not a jaxedit model directory"),
    ],
)
def test_info_on_wrong_paths_is_one_line(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert cli_main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_info_on_a_damaged_params_folder(converted, tmp_path, capsys):
    gen, _ = converted
    broken = tmp_path / "gen"
    shutil.copytree(gen, broken)
    shutil.rmtree(broken / "params")
    (broken / "params").write_text("not a checkpoint")
    assert cli_main(["info", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no saved arrays" in err


def _with_config(source, destination, change):
    shutil.copytree(source, destination)
    manifest = json.loads((destination / "jaxedit.json").read_text())
    change(manifest["config"])
    (destination / "jaxedit.json").write_text(json.dumps(manifest))
    return destination


@pytest.mark.parametrize(
    "which, change, message",
    [
        (1, lambda c: c["method"].update(space="banana"), "space 'banana' is not one of"),
        (1, lambda c: c.update(attributes=["Eyeglasses", "Glasses"]), "Glasses"),
        (1, lambda c: c.update(attributes=["Eyeglasses", "Smiling"]), "transformers: params"),
        (1, lambda c: c["method"].update(classifier_hidden=[64, 33]), "disagree with the method preset"),
        (0, lambda c: c.update(resolution=48), "generator config"),
    ],
)
def test_info_refuses_a_manifest_whose_content_is_nonsense(converted, tmp_path, capsys, which, change, message):
    """What the loaders would refuse (an unknown space, attribute names, shapes that do not match
    the stored arrays, a resolution that is no power of two) is refused by info too, in one line."""
    broken = _with_config(converted[which], tmp_path / "broken", change)
    capsys.readouterr()
    assert cli_main(["info", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
