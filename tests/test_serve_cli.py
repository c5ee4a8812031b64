"""`jaxedit serve` from the command line: what it loads (a run directory's schematic face, or a
generator and editors), its one-line refusals, and a real process that prints its URL, answers,
and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxedit.cli.main import main as cli_main
from jaxedit.errors import ConfigError
from tests.helpers.serve import random_official_editors, shared_editor_dirs

REPO = Path(__file__).resolve().parents[1]


def _run_dir(root: Path, generator: str = "") -> Path:
    """A run directory as `python -m train` leaves it (editors/ only matters here): paper-kind W
    editors on 32-d latents for three attributes, trained in a small recorded synthetic world."""
    from jaxedit.latent import PRESETS, save_editors
    from jaxedit.latent.modules import (
        classifier_from_preset,
        init_classifier_params,
        init_transformer_params,
        transformer_from_preset,
    )

    preset = PRESETS["paper"].replace(w_dim=32, classifier_hidden=(16,), transformer_hidden=16)
    rng = np.random.default_rng(0)

    def draw(leaf, lead=()):
        if len(leaf.shape) == 2:
            return (rng.standard_normal(lead + leaf.shape) / np.sqrt(leaf.shape[0])).astype(np.float32)
        return np.zeros(lead + leaf.shape, np.float32)

    classifier = jax.eval_shape(lambda: init_classifier_params(classifier_from_preset(preset), jax.random.key(0)))
    transformer = jax.eval_shape(lambda: init_transformer_params(transformer_from_preset(preset), jax.random.key(0)))
    world = {"seed": 3, "w_dim": 32, "z_dim": 32, "calibration_samples": 1000}
    save_editors(
        root / "editors",
        preset,
        jax.tree.map(draw, classifier),
        jax.tree.map(lambda leaf: draw(leaf, (3,)), transformer),
        ["Smiling", "Eyeglasses", "Young"],
        training={"world_config": world, "generator": generator},
    )
    return root


def test_a_run_directory_is_served_with_the_schematic_of_its_world(tmp_path):
    from jaxedit.data.schematic_renderer import SchematicRenderer
    from jaxedit.serve.models import load_models
    from jaxedit.serve.render import Renderer

    face, editors, encoder = load_models([str(_run_dir(tmp_path))])
    assert isinstance(face, SchematicRenderer) and encoder is None
    assert (face.world.config.seed, face.w_dim, face.resolution) == (3, 32, 256)  # the recorded world
    renderer = Renderer(face, editors)  # not warmed up: nothing compiled
    assert renderer.schematic and renderer.attributes == ("Smiling", "Eyeglasses", "Young")
    assert renderer.preview_resolution == 128 and renderer.limits.default_layers == (0, face.num_ws - 1)


def test_a_run_whose_generator_is_gone_is_refused(tmp_path):
    from jaxedit.serve.models import load_models

    with pytest.raises(ConfigError, match="not there any more"):
        load_models([str(_run_dir(tmp_path, generator=str(tmp_path / "vanished")))])
    with pytest.raises(ConfigError, match="not a run directory"):
        load_models([str(tmp_path / "editors")])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["a", "b", "c"], "expected RUN_DIR or GEN_DIR EDITORS_DIR, got 3 paths"),
        (["nowhere"], "nowhere: no such directory"),
        (["{gen}", "{editors}", "--port", "70000"], "--port 70000: expected 0..65535"),
        (["{gen}", "{editors}", "--port", "http"], "expected an integer"),
        (["{gen}", "{editors}", "--encoder", "{gen}"], "--encoder"),
    ],
)
def test_bad_command_lines_fail_in_one_line(tmp_path_factory, capsys, extra, message):
    gen_dir, editors_dir, _ = shared_editor_dirs(tmp_path_factory)
    argv = ["serve"] + [a.format(gen=gen_dir, editors=editors_dir) for a in extra]
    try:
        status = cli_main(argv)
    except SystemExit as stop:  # argparse's own refusals
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_editors_made_for_another_generator_are_refused(tmp_path_factory, tmp_path, capsys):
    """As `jaxedit edit`: the editors' recorded generator is checked; other weights need --force."""
    from jaxedit.latent.provenance import generator_identity
    from jaxedit.stylegan2 import load_generator

    gen_dir, _, _ = shared_editor_dirs(tmp_path_factory)
    generator = load_generator(gen_dir)
    other = {**generator_identity(generator), "params_sha256": "0" * 64, "source_sha256": "0" * 64}
    editors_dir = random_official_editors(tmp_path, generator.num_ws, generator.w_dim, generator=other)
    assert cli_main(["serve", str(gen_dir), str(editors_dir), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass --force to use them anyway" in err and len(err.splitlines()) == 1, err


def test_the_command_prints_its_url_serves_and_stops_on_ctrl_c(tmp_path_factory):
    gen_dir, editors_dir, _ = shared_editor_dirs(tmp_path_factory)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxedit", "serve", str(gen_dir), str(editors_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()  # printed once everything is compiled
        assert line.startswith("jaxedit serve: open http://127.0.0.1:"), line + process.stderr.read()
        url = line.split("open ", 1)[1].strip()
        info = json.loads(urllib.request.urlopen(f"{url}api/info", timeout=30).read())
        assert info["resolution"] == 64 and len(info["attributes"]) == 40 and info["preview"] is False
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
