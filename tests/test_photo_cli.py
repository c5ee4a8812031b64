"""Editing a real photograph end to end through the CLI (in-process `jaxedit.cli.main`).

The small pSp fixture (`fixtures/encoders/psp_encoder_small.pt`) is converted twice from the same
file, its encoder and its decoder, so the encoder's latents are the decoder's. The photo is
`fixtures/encoders/astronaut_face.jpg` (384x320, public domain) with the 68 landmarks dlib found
on it. The editors are untrained official-kind W+ transformers for that generator (random
weights move the latents, which is all these plumbing tests need); the trained behaviour of edits
is tested in test_edit_cli.py. What is checked against references: `jaxedit encode --aligned`
against the reference encoder's latents, `jaxedit generate --ws` of them against the reference
decoder's images, alignment against `align_face` (tested on golden data in test_align.py), and
paste-back pixel by pixel against the original photo outside the face quad.

Compiling dominates the time, so every command here runs the encoder at batch 1 and the generator
at batch 1 (paste-back, previews, `generate --batch-size 1`) or 4 (every strip and sweep renders 4
panels), and the compiled programs are shared across tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

import jaxedit
from jaxedit.cli.main import main as cli_main
from jaxedit.encoders.align import align_face
from jaxedit.encoders.photo import load_photo
from jaxedit.latent import PRESETS, classifier_from_preset, save_editors, transformer_from_preset
from jaxedit.latent.modules import init_classifier_params, init_transformer_params
from jaxedit.viz.grid import gutter_width, to_uint8
from tests.helpers.panels import panel_origin
from tests.helpers.paths import FIXTURES, STYLEGAN2_FIXTURES

ENCODERS = FIXTURES / "encoders"
PSP = ENCODERS / "psp_encoder_small.pt"
PHOTO = ENCODERS / "astronaut_face.jpg"
LANDMARKS = ENCODERS / "astronaut_face_landmarks.json"
RES = 64  # the fixture decoder's resolution (10 W+ layers of 32)
TOLERANCE = 1e-4  # relative to the reference array's largest magnitude
FACES_EXTRA = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models")


def run(argv: list[str]) -> int:
    return cli_main([str(a) for a in argv])


def assert_close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    error = float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
    assert error < TOLERANCE, f"{what}: max |diff| / max |ref| = {error:.2e}"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxedit: error: ") and "\n" not in err, err
    return err


def random_editors(destination: Path, space: str) -> Path:
    """Untrained editors for Smiling and Young: official-kind W+ [10, 32] or paper-kind W [32]."""
    if space == "w+":
        preset = PRESETS["official"].replace(num_ws=10, w_dim=32, classifier_hidden=(32,))
    else:
        preset = PRESETS["paper"].replace(w_dim=32, classifier_hidden=(32,), transformer_hidden=32)
    transformer = transformer_from_preset(preset)
    classifier = init_classifier_params(classifier_from_preset(preset), jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 2)
    transformers = jax.vmap(lambda key: init_transformer_params(transformer, key))(keys)
    return save_editors(destination, preset, classifier, transformers, ["Smiling", "Young"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Directories converted and written once: encoder + decoder of the pSp fixture, W+ and W
    editors, and a 32 px generator (8 W+ layers) that the encoder does not fit."""
    root = tmp_path_factory.mktemp("photo_cli")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert run(["convert", "encoder", PSP, root / "enc", "--with-decoder", root / "gen"]) == 0
    small = jaxedit.stylegan2.GeneratorConfig(
        resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channels={4: 8, 8: 8, 16: 8, 32: 8}
    )
    shapes = jaxedit.stylegan2.loading.param_shapes(small)
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), shapes)
    from jaxedit.modeldir import write_model_dir

    write_model_dir(
        root / "gen32", kind="generator", config=small.to_dict(), params={**zeros, "w_avg": np.zeros(32, np.float32)}
    )
    return {
        "root": root,
        "convert_output": output.getvalue(),
        "enc": root / "enc",
        "gen": root / "gen",
        "gen32": root / "gen32",
        "editors": random_editors(root / "editors", "w+"),
        "w_editors": random_editors(root / "w_editors", "w"),
    }


@pytest.fixture(scope="module")
def photo():
    image, _ = load_photo(PHOTO)
    landmarks = np.array(json.loads(LANDMARKS.read_text())["landmarks"], np.float64)
    return image, landmarks


def panel(image: np.ndarray, column: int, row: int = 0, rows: int = 1) -> np.ndarray:
    """Panel (row, column) of a labelled grid of `rows` rows without row labels (label band on top)."""
    columns = (image.shape[1] + gutter_width(RES)) // (RES + gutter_width(RES))
    y, x = panel_origin(image.shape, rows, columns, (RES, RES), row, column)
    return image[y : y + RES, x : x + RES]


def test_convert_encoder_writes_the_encoder_and_its_decoder(models, tmp_path, capsys):
    out = models["convert_output"]
    assert "detected format: psp" in out and "W+ latents: [10, 32]" in out and "input size: 64x64" in out
    assert f"wrote {models['gen']}: the decoder, a 64x64 generator with W+ [10, 32]" in out
    assert run(["info", models["enc"]]) == 0
    info = capsys.readouterr().out
    for line in ("encoder kind   psp", "latents        W+ [10, 32]", "input size     64x64", "parameters     559,948"):
        assert line in info, info
    assert "source sha256" in info
    # Without --with-decoder: one line says how to convert the decoder the file also holds.
    assert run(["convert", "encoder", ENCODERS / "e4e_encoder_small.pt", tmp_path / "e4e"]) == 0
    hints = [line for line in capsys.readouterr().out.splitlines() if "decoder" in line]
    assert len(hints) == 1 and "jaxedit convert stylegan2" in hints[0] and "--with-decoder DIR" in hints[0]
    assert not (tmp_path / "e4e_gen").exists()


def test_encode_aligned_photos_matches_the_reference_and_feeds_generate_and_edit(models, tmp_path, capsys):
    reference = np.load(ENCODERS / "psp_encoder_small_io.npz")
    photos = []
    for index, image in enumerate(reference["image_uint8"]):  # 72x80 crops: the reference stretches them
        photos.append(tmp_path / f"aligned_{index}.png")
        Image.fromarray(image).save(photos[-1])
    latents_file, preview = tmp_path / "latents.npy", tmp_path / "preview.png"
    argv = ["encode", models["enc"], *photos, "--aligned", "--batch-size", "1", "--out", latents_file]
    assert run([*argv, "--generator", models["gen"], "--preview", preview]) == 0
    assert "latents [2, 10, 32]" in capsys.readouterr().out
    latents = np.load(latents_file)
    assert latents.dtype == np.float32
    assert_close(latents, reference["latents"], "encoded latents")
    assert Image.open(preview).size[0] > 2 * RES  # row labels, then photo | reconstruction

    images_file = tmp_path / "images.npy"
    assert run(["generate", models["gen"], "--ws", latents_file, "--batch-size", "1", "--out", images_file]) == 0
    assert_close(np.load(images_file), reference["images"].transpose(0, 2, 3, 1), "decoded images")
    strip = tmp_path / "strip.png"
    assert (
        run(["edit", models["gen"], models["editors"], "--latent", latents_file, "--attr", "Smiling=1", "--out", strip])
        == 0
    )
    assert "strip of 2 panels at 64x64 (input, +Smiling 1)" in capsys.readouterr().out  # one row per photo


def test_edit_photo_panels(models, photo, tmp_path, capsys):
    image, landmarks = photo
    out, saved = tmp_path / "strip.png", tmp_path / "strip.npy"
    face = ["--image", PHOTO, "--encoder", models["enc"], "--landmarks", LANDMARKS]
    steps = ["--attr", "Smiling=1.5", "--attr", "Young=-1", "--attr", "Smiling=-0.5"]  # 4 rendered panels
    assert run(["edit", models["gen"], models["editors"], *face, *steps, "--out", out, "--save-latents", saved]) == 0
    captured = capsys.readouterr()
    assert "strip of 5 panels at 64x64 (photo, reconstruction, +Smiling 1.5, +Young -1, +Smiling -0.5)" in captured.out
    assert "384x320, landmarks from astronaut_face_landmarks.json, encoded by psp" in captured.err
    strip = np.asarray(Image.open(out).convert("RGB"))
    assert strip.shape[1] == 5 * RES + 4 * gutter_width(RES)  # 5 panels, gutters between them
    np.testing.assert_array_equal(panel(strip, 0), align_face(image, landmarks, RES)[0])  # the aligned photo
    latents = np.load(saved)
    assert latents.shape == (4, 1, 10, 32)  # reconstruction, then each step
    generator = jaxedit.load_generator(models["gen"])
    for column in (1, 2, 3, 4):
        rendered = to_uint8(np.asarray(generator.synthesis(latents[column - 1])))[0]
        np.testing.assert_array_equal(panel(strip, column), rendered)
    assert np.abs(np.diff(latents, axis=0)).max() > 0.1  # each step moved the latent

    # The same photo through `jaxedit encode` gives the strip's starting latent.
    encoded = tmp_path / "encoded.npy"
    assert run(["encode", models["enc"], PHOTO, "--landmarks", LANDMARKS, "--out", encoded]) == 0
    np.testing.assert_allclose(np.load(encoded), latents[0], rtol=0, atol=1e-6)

    grid = tmp_path / "sweep.png"
    assert run(["edit", models["gen"], models["editors"], *face, "--sweep", "Smiling=-1:1:4", "--out", grid]) == 0
    assert "sweep of 6 frames" in capsys.readouterr().out  # the photo and its reconstruction lead the row
    picture = np.asarray(Image.open(grid).convert("RGB"))
    np.testing.assert_array_equal(panel(picture, 0), align_face(image, landmarks, RES)[0])


def quad_mask(quad: np.ndarray, size: tuple[int, int], margin: float = 2.0) -> np.ndarray:
    """True inside the quad grown by `margin` px (drawn by Pillow, independent of paste-back)."""
    centre = quad.mean(axis=0)
    grown = centre + (quad - centre) * (1 + margin / np.linalg.norm(quad[0] - centre))
    mask = Image.new("L", (size[1], size[0]), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in grown], fill=1)
    return np.asarray(mask).astype(bool)


def test_paste_back_changes_only_the_face(models, photo, tmp_path, capsys):
    image, landmarks = photo
    out = tmp_path / "pasted.png"
    face = ["--image", PHOTO, "--encoder", models["enc"], "--landmarks", LANDMARKS]
    assert (
        run(["edit", models["gen"], models["editors"], *face, "--attr", "Smiling=1.5", "--paste-back", "--out", out])
        == 0
    )
    assert "PNG 384x320, +Smiling 1.5 pasted back" in capsys.readouterr().out
    pasted = np.asarray(Image.open(out))
    assert pasted.shape == image.shape
    inside = quad_mask(align_face(image, landmarks, RES)[1].quad, image.shape[:2])
    np.testing.assert_array_equal(pasted[~inside], image[~inside])  # bit-identical outside the face
    changed = np.abs(pasted.astype(int) - image).max(axis=-1) > 8
    assert changed[inside].mean() > 0.3  # the face itself was replaced

    # No extension: the photo's own format (JPEG), at its size.
    plain = tmp_path / "pasted"
    assert (
        run(["edit", models["gen"], models["editors"], *face, "--attr", "Smiling=1.5", "--paste-back", "--out", plain])
        == 0
    )
    with Image.open(plain) as written:
        assert (written.format, written.size) == ("JPEG", (384, 320))


def test_already_aligned_photo(models, photo, tmp_path, capsys):
    image, landmarks = photo
    crop = tmp_path / "crop.png"
    Image.fromarray(align_face(image, landmarks, RES)[0]).save(crop)
    strip, pasted = tmp_path / "strip.png", tmp_path / "pasted.png"
    face = ["--image", crop, "--encoder", models["enc"], "--aligned", "--attr", "Young=1", "--attr", "Smiling=1"]
    face += ["--attr", "Young=-1"]  # 4 rendered panels: the batch size the other strips compiled
    assert run(["edit", models["gen"], models["editors"], *face, "--out", strip]) == 0
    assert "64x64, already aligned" in capsys.readouterr().err
    np.testing.assert_array_equal(panel(np.asarray(Image.open(strip).convert("RGB")), 0), np.asarray(Image.open(crop)))
    assert run(["edit", models["gen"], models["editors"], *face, "--paste-back", "--out", pasted]) == 0
    assert Image.open(pasted).size == (RES, RES)


def test_latent_spaces_must_match(models, photo, tmp_path, capsys):
    face = ["--image", PHOTO, "--landmarks", LANDMARKS]
    out = tmp_path / "out.png"
    assert (
        run(
            [
                "encode",
                models["enc"],
                PHOTO,
                "--landmarks",
                LANDMARKS,
                "--generator",
                models["gen32"],
                "--out",
                tmp_path / "x.npy",
            ]
        )
        == 2
    )
    message = one_error_line(capsys)
    assert "the encoder gives W+ [10, 32] latents but the generator (32x32) takes W+ [8, 32]" in message
    assert (
        run(
            [
                "edit",
                models["gen"],
                models["w_editors"],
                *face,
                "--encoder",
                models["enc"],
                "--attr",
                "Smiling=1",
                "--out",
                out,
            ]
        )
        == 2
    )
    message = one_error_line(capsys)
    assert "the editors work on W [32] latents" in message and "use W+ editors" in message
    assert run(["edit", models["gen"], models["editors"], *face, "--attr", "Smiling=1", "--out", out]) == 2
    assert "--image needs an encoder: --encoder ENCODER_DIR" in one_error_line(capsys)
    sweep = ["--encoder", models["enc"], "--sweep", "Smiling=-1:1:3", "--paste-back"]
    assert run(["edit", models["gen"], models["editors"], *face, *sweep, "--out", out]) == 2
    assert "--paste-back writes one edited photo" in one_error_line(capsys)
    small = tmp_path / "small.json"
    image, landmarks = photo
    small.write_text(json.dumps((landmarks * 0.4).tolist()))
    assert (
        run(
            [
                "edit",
                models["gen"],
                models["editors"],
                "--image",
                PHOTO,
                "--encoder",
                models["enc"],
                "--landmarks",
                small,
                "--attr",
                "Smiling=1",
                "--out",
                out,
            ]
        )
        == 2
    )
    assert "under the 64 px minimum" in one_error_line(capsys)
    assert not out.exists() and not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize(
    "name", ["malicious.pkl", "malicious.pt", "malicious_nested.pkl", "malicious_storage.pkl", "rosinality_small.pt"]
)
def test_convert_encoder_refuses_hostile_and_wrong_files(name, tmp_path, capsys):
    out = tmp_path / "encoder"
    assert run(["convert", "encoder", STYLEGAN2_FIXTURES / name, out, "--with-decoder", tmp_path / "decoder"]) == 2
    message = one_error_line(capsys)
    assert name in message
    if name == "rosinality_small.pt":
        assert "not a pSp/e4e encoder" in message and "convert it as a generator" in message
    assert not out.exists() and not (tmp_path / "decoder").exists()
    assert not Path("/tmp/jaxedit_pwned").exists()


@pytest.mark.skipif(not FACES_EXTRA, reason="the faces extra (dlib-bin, face_recognition_models) is not installed")
def test_detected_faces(models, photo, tmp_path, capsys):
    image, _ = photo
    edit = ["edit", models["gen"], models["editors"], "--encoder", models["enc"], "--attr", "Smiling=1", "--paste-back"]
    out = tmp_path / "pasted.png"
    assert run([*edit, "--image", PHOTO, "--out", out]) == 0
    assert "384x320, detected face, encoded by psp" in capsys.readouterr().err
    assert Image.open(out).size == (384, 320)

    pair = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([image, image], axis=1)).save(pair)
    assert run([*edit, "--image", pair, "--out", out]) == 2
    assert "found 2 faces" in (message := one_error_line(capsys)) and "choose one with --face N" in message
    second = tmp_path / "second.png"
    assert run([*edit, "--image", pair, "--face", "1", "--out", second]) == 0
    assert "768x320, detected face 1" in capsys.readouterr().err
    result = np.asarray(Image.open(second))
    assert result.shape == (320, 768, 3)
    np.testing.assert_array_equal(result[:, :384], image)  # the other face is left alone

    blank = tmp_path / "blank.png"
    Image.new("RGB", (128, 96), (128, 128, 128)).save(blank)
    assert run([*edit, "--image", blank, "--out", out]) == 2
    assert "no face found in the 128x96 photo" in one_error_line(capsys)
