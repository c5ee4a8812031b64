"""Every command given bad input exits non-zero with ONE line on stderr and no traceback.

Missing files, directories of the wrong kind, unreadable files, malformed numbers or ranges and
unknown attributes, for `jaxedit convert / generate / edit / eval / info` (in-process through `main`, plus
a real subprocess) and `python -m train`, `python -m train.classifier`, `python -m
train.transformers` (subprocesses). `--debug` shows the traceback instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxedit.cli.main import main as cli_main
from jaxedit.errors import JaxeditError
from jaxedit.latent import PRESETS, classifier_from_preset, save_editors, transformer_from_preset
from jaxedit.latent.modules import init_classifier_params, init_transformer_params
from jaxedit.latent.provenance import make_provenance
from jaxedit.stylegan2 import load_generator
from jaxedit.training.steps import stack_slots
from tests.helpers.paths import LATENT_FIXTURES, STYLEGAN2_FIXTURES

ROOT = Path(__file__).resolve().parents[1]
ROSINALITY = STYLEGAN2_FIXTURES / "rosinality_small.pt"


def _unreadable(tmp: Path, name: str) -> Path:
    """A path the command cannot read as a file: chmod 000, or (as root, where chmod does not stop
    reading) a directory standing where the file is expected."""
    path = tmp / name
    path.write_bytes(b"\x00" * 64)
    path.chmod(0)
    if os.access(path, os.R_OK):
        path.chmod(0o600)
        path.unlink()
        path.mkdir()
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A converted generator (w_dim 32, 10 W+ layers), untrained W editors bound to it (Smiling, Young),
    official fixture editors (W+ 2 x 512), bad latent files, an unreadable path."""
    root = tmp_path_factory.mktemp("cli_errors")
    assert cli_main(["convert", "stylegan2", str(ROSINALITY), str(root / "gen")]) == 0
    preset = PRESETS["paper"].replace(w_dim=32, classifier_hidden=(8,), transformer_hidden=8)
    keys = jax.random.split(jax.random.key(0), 3)
    save_editors(
        root / "editors",
        preset,
        init_classifier_params(classifier_from_preset(preset), keys[0]),
        stack_slots([init_transformer_params(transformer_from_preset(preset), k) for k in keys[1:]]),
        ["Smiling", "Young"],
        provenance=make_provenance(preset, origin="trained", generator=load_generator(root / "gen")),
    )
    tnets = root / "tnets"
    tnets.mkdir()
    shutil.copy(LATENT_FIXTURES / "tnet_small.pth.tar", tnets / "tnet_31.pth.tar")
    assert (
        cli_main(
            [
                "convert",
                "latent-transformer",
                "--classifier",
                str(LATENT_FIXTURES / "latent_classifier_small.pth"),
                "--tnets",
                str(tnets),
                str(root / "official"),
            ]
        )
        == 0
    )
    np.save(root / "w_bad.npy", np.zeros((2, 7), np.float32))
    np.save(root / "w_nan.npy", np.full((1, 32), np.nan, np.float32))
    (root / "garbage.npy").write_bytes(b"not an npy file at all")
    (root / "notes.txt").write_text("hello")
    noise_res = [4, 8, 8, 16, 16, 32, 32, 64, 64]  # the 64x64 fixture's conv layers
    np.savez(
        root / "noise_nan.npz",
        **{f"noise_{j}": np.full((r, r), np.nan if j == 3 else 0.0, np.float32) for j, r in enumerate(noise_res)},
    )
    np.savez(
        root / "noise_extra.npz", **{f"noise_{j}": np.zeros((r, r), np.float32) for j, r in enumerate(noise_res + [64])}
    )
    return {
        "root": root,
        "gen": root / "gen",
        "editors": root / "editors",
        "official": root / "official",
        "unreadable": _unreadable(root, "unreadable.pt"),
    }


def _cases(w):
    r, gen, eds = w["root"], str(w["gen"]), str(w["editors"])
    out = str(r / "out.png")
    edit = ["edit", gen, eds, "--seed", "1"]
    return [
        # convert
        (["convert", "stylegan2", str(r / "missing.pt"), str(r / "c1")], "no such file"),
        (["convert", "stylegan2", str(STYLEGAN2_FIXTURES), str(r / "c2")], str(STYLEGAN2_FIXTURES)),
        (["convert", "stylegan2", str(w["unreadable"]), str(r / "c3")], "unreadable.pt"),
        (
            ["convert", "stylegan2", str(LATENT_FIXTURES / "tnet_small.pth.tar"), str(r / "c4")],
            "not a StyleGAN2 checkpoint",
        ),
        (["convert", "stylegan2", str(r / "notes.txt"), str(r / "c5")], "notes.txt"),
        (["convert", "stylegan2", str(ROSINALITY), gen], "already exists"),
        (["convert", "latent-transformer", "--classifier", str(r / "missing.pth"), str(r / "c6")], "missing.pth"),
        (["convert", "latent-transformer", "--classifier", str(ROSINALITY), str(r / "c7")], "rosinality_small.pt"),
        (
            [
                "convert",
                "latent-transformer",
                "--classifier",
                str(LATENT_FIXTURES / "latent_classifier_small.pth"),
                "--tnets",
                str(r / "notes.txt"),
                str(r / "c8"),
            ],
            "notes.txt",
        ),
        # generate
        (["generate", gen, "--seeds", "3-1", "--out", out], "runs backwards"),
        (["generate", gen, "--seeds", "x", "--out", out], "argument --seeds: seeds 'x'"),
        (["generate", gen, "--seeds", "0-4294967295", "--out", out], "more than 1,000,000 seeds"),
        (
            ["generate", gen, "--seeds", "1", "--truncation", "nan", "--out", out],
            "argument --truncation: expected a finite number, got 'nan'",
        ),
        (
            ["generate", gen, "--seeds", "1", "--truncation", "abc", "--out", out],
            "argument --truncation: expected a number, got 'abc'",
        ),
        (["generate", str(r / "nowhere"), "--seeds", "1", "--out", out], "no such directory"),
        (["generate", eds, "--seeds", "1", "--out", out], "holds 'editors', expected 'generator'"),
        (["generate", str(r / "notes.txt"), "--seeds", "1", "--out", out], "not a directory"),
        (["generate", gen, "--ws", str(r / "w_bad.npy"), "--out", out], "[2, 7]"),
        (["generate", gen, "--w", str(w["unreadable"]), "--out", out], "unreadable.pt"),
        (
            ["generate", gen, "--seeds", "1", "--columns", "0", "--out", out],
            "argument --columns: expected a positive integer, got '0'",
        ),
        (["generate", gen, "--seeds", "\u0661", "--out", out], "--seeds"),  # a non-ASCII digit is not a seed
        (["generate", gen, "--seeds", "1", "--out", str(r / "notes.txt" / "x.png")], "notes.txt is not a directory"),
        (
            ["generate", gen, "--seeds", "1", "--noise-maps", str(r / "noise_nan.npz"), "--out", out],
            "noise_3: contains non-finite values",
        ),
        (
            ["generate", gen, "--seeds", "1", "--noise-maps", str(r / "noise_extra.npz"), "--out", out],
            "unexpected noise_9",
        ),
        # edit
        ([*edit, "--attr", "Smiling=abc", "--out", out], "'abc' is not a number"),
        ([*edit, "--attr", "Smiling", "--out", out], "expected NAME=ALPHA"),
        ([*edit, "--sweep", "Smiling=1:0:0", "--out", out], "COUNT must be at least 1"),
        ([*edit, "--sweep", "Smiling=-1:1:1000000", "--out", out], "COUNT 1000000 is too many panels (at most 256)"),
        ([*edit, "--sweep", "Smiling=a:1:3", "--out", out], "'a' is not a number"),
        ([*edit, "--sweep", "Smiling=-1:1", "--out", out], "expected NAME=START:STOP:COUNT"),
        ([*edit, "--attr", "Smilng=1", "--out", out], "did you mean Smiling"),
        ([*edit, "--attr", "Eyeglasses=1", "--out", out], "no transformer for 'Eyeglasses'"),
        ([*edit, "--attr", "Smiling=1", "--layers", "5-2", "--out", out], "layer range '5-2'"),
        ([*edit, "--attr", "Smiling=1", "--layers", "0-12", "--out", out], "outside this latent's W+ layers 0..9"),
        ([*edit, "--attr", "Smiling=1", "--out", str(r / "out.jpg")], "expected a .png path"),
        (
            ["edit", gen, eds, "--seed", "x", "--attr", "Smiling=1", "--out", out],
            "argument --seed: expected an integer, got 'x'",
        ),
        (
            ["edit", gen, eds, "--seed", "1", "--truncation", "1,5", "--attr", "Smiling=1", "--out", out],
            "argument --truncation: expected a number, got '1,5'",
        ),
        (
            ["edit", gen, gen, "--seed", "1", "--attr", "Smiling=1", "--out", out],
            "holds 'generator', expected 'editors'",
        ),
        (
            ["edit", eds, eds, "--seed", "1", "--attr", "Smiling=1", "--out", out],
            "holds 'editors', expected 'generator'",
        ),
        (["edit", gen, str(w["official"]), "--seed", "1", "--attr", "Smiling=1", "--out", out], "w_dim is 32"),
        (["edit", gen, str(r / "nowhere"), "--seed", "1", "--attr", "Smiling=1", "--out", out], "no such directory"),
        (["edit", gen, eds, "--latent", str(r / "missing.npy"), "--attr", "Smiling=1", "--out", out], "no such file"),
        (["edit", gen, eds, "--latent", str(w["unreadable"]), "--attr", "Smiling=1", "--out", out], "unreadable.pt"),
        (
            ["edit", gen, eds, "--latent", str(r / "garbage.npy"), "--attr", "Smiling=1", "--out", out],
            "not a readable .npy",
        ),
        (["edit", gen, eds, "--latent", str(r / "w_bad.npy"), "--attr", "Smiling=1", "--out", out], "got [2, 7]"),
        (["edit", gen, eds, "--latent", str(r / "w_nan.npy"), "--attr", "Smiling=1", "--out", out], "non-finite"),
        (["edit", gen, eds, "--seed", "1", "--attr", "Smiling=1"], "required: --out"),
        ([*edit, "--attr", "Smiling=1", "--out", str(r / "notes.txt" / "x.png")], "notes.txt is not a directory"),
        (
            [*edit, "--attr", "Smiling=1", "--out", out, "--save-latents", str(r / "notes.txt" / "l.npy")],
            "--save-latents",
        ),
        # eval
        (["eval", str(r / "nowhere"), "--out", str(r / "e")], "no such directory"),
        (["eval", gen, "--out", str(r / "e")], "holds 'generator', expected 'editors'"),
        (["eval", eds, "--attributes", "Smilng", "--out", str(r / "e")], "did you mean Smiling"),
        (["eval", eds, "--count", "abc", "--out", str(r / "e")], "argument --count: expected an integer, got 'abc'"),
        (["eval", eds, "--image-classifier", "a:b", "--out", str(r / "e")], "need --generator"),
        (["eval", eds, "--generator", str(r / "nowhere"), "--out", str(r / "e")], "no such directory"),
        (
            ["eval", eds, "--count", "1", "--out", str(r / "e")],
            "--count 1: evaluation settings: count must be at least 2",
        ),
        (
            ["eval", eds, "--baselines", "interfacegan,svm", "--out", str(r / "e")],
            "--baselines interfacegan,svm: evaluation settings: unknown",
        ),
        (["eval", eds], "required: --out"),
        (["eval", str(w["official"]), "--out", str(r / "e")], "they were not trained in a synthetic world"),
        # train
        (["train", "--samples", "0"], "--samples 0: pipeline settings: samples must be >= 1"),
        (["train", "--set", "lr=x"], "argument --set: lr: expected a number, got 'x'"),
        (["train", "classifier", "--workdir", str(r / "t"), "--lr", "nan"], "argument --lr: expected a finite number"),
        (["train", "transformers", "--workdir", str(r / "t"), "--attributes", "Smilng"], "did you mean Smiling"),
        (["train", "transformers", "--workdir", str(r / "t"), "--lrr", "1"], "--lrr 1; did you mean --lr?"),
        # info
        (["info", str(r / "nowhere")], "no such directory"),
        (["info", str(r / "notes.txt")], "not a directory"),
        (["info", str(r)], "not a jaxedit model directory"),
    ]


def test_every_bad_input_is_one_line_without_traceback(world, capsys):
    failures = []
    for argv, expected in _cases(world):
        capsys.readouterr()
        try:
            code = cli_main(argv)
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code
        except Exception as error:
            failures.append(f"{argv}: raised {type(error).__name__}: {error}")
            continue
        captured = capsys.readouterr()
        err = captured.err
        if code in (0, None) or err.count("\n") != 1 or "Traceback" in err or expected not in err:
            failures.append(f"{argv}: exit {code}, stderr {err!r} (wanted one line containing {expected!r})")
    assert not failures, "\n".join(failures)
    assert not (world["root"] / "out.png").exists()  # nothing half-written


def test_unreadable_path_really_is_unreadable(world):
    path = world["unreadable"]
    with pytest.raises(OSError):
        path.open("rb").read()


def test_debug_shows_the_traceback(world):
    with pytest.raises(JaxeditError, match="did you mean Smiling"):
        cli_main(
            [
                "--debug",
                "edit",
                str(world["gen"]),
                str(world["editors"]),
                "--seed",
                "1",
                "--attr",
                "Smilng=1",
                "--out",
                str(world["root"] / "x.png"),
            ]
        )


def _run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_real_processes_exit_with_one_line(world, tmp_path):
    """The installed entry point and the training modules, as users run them."""
    cases = [
        (
            [
                "-m",
                "jaxedit",
                "edit",
                str(world["gen"]),
                str(world["editors"]),
                "--seed",
                "1",
                "--sweep",
                "Smiling=1:0:0",
                "--out",
                str(tmp_path / "x.png"),
            ],
            "COUNT must be at least 1",
        ),
        (["-m", "train", "--quick", "--attributes", "Smilng"], "did you mean Smiling"),
        (["-m", "train", "--quick", "--generator", str(world["editors"])], "expected 'generator'"),
        (
            [
                "-m",
                "train.transformers",
                "--config",
                "official",
                "--attributes",
                "Smilng",
                "--workdir",
                str(tmp_path / "t"),
            ],
            "did you mean Smiling",
        ),
        (
            ["-m", "train.classifier", "--config", "official", "--batch_size", "abc", "--workdir", str(tmp_path / "c")],
            "argument --batch_size: expected an integer, got 'abc'",
        ),
        (
            ["-m", "jaxedit", "train", "classifier", "--batch_size", "0", "--workdir", str(tmp_path / "c")],
            "--batch_size 0: preset 'official': batch_size must be a positive integer",
        ),
    ]
    failures = []
    cwd = tmp_path / "cwd"  # where a default output (runs/<timestamp>) would land
    cwd.mkdir()
    for args, expected in cases:
        result = _run(args, cwd=cwd)
        err = result.stderr.strip("\n")
        if result.returncode == 0 or "\n" in err or "Traceback" in err or expected not in err:
            failures.append(
                f"{args}: exit {result.returncode}, stderr {result.stderr[-600:]!r} (wanted one line with {expected!r})"
            )
    assert not failures, "\n".join(failures)
    assert list(cwd.iterdir()) == []  # refused runs create no directory
