"""`jaxedit edit` end to end: the rosinality fixture converted, editors trained on its latents,
a labelled strip / sweep grid written, checked pixel by pixel against the generator."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

import jaxedit
from jaxedit.cli.main import main as cli_main
from jaxedit.latent import PRESETS, save_editors
from jaxedit.latent.losses import correlation_matrix
from jaxedit.latent.provenance import make_provenance
from jaxedit.training.steps import ClassifierTrainer, TransformerTrainer
from jaxedit.viz.grid import gutter_width, to_uint8
from tests.helpers.panels import panel_origin
from tests.helpers.paths import STYLEGAN2_FIXTURES

RES = 64  # the fixture generator's resolution
STEPS = ["--attr", "Smiling=1.25", "--attr", "eyeglasses=-1", "--attr", "YOUNG=1"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(generator dir, editors dir): the converted fixture and paper-kind W editors for Smiling,
    Eyeglasses and Young trained (briefly: 400 steps, recon weight 10, lr 3e-3) on the generator's
    own latents, labelled by a fixed random linear labeller."""
    root = tmp_path_factory.mktemp("edit_cli")
    gen_dir = root / "gen"
    assert cli_main(["convert", "stylegan2", str(STYLEGAN2_FIXTURES / "rosinality_small.pt"), str(gen_dir)]) == 0
    generator = jaxedit.load_generator(gen_dir)
    z = np.random.default_rng(0).normal(size=(2048, generator.z_dim)).astype(np.float32)
    w = np.asarray(generator.mapping(z))[:, 0]
    w_norm = (w - w.mean(0)) / w.std(0)
    labels = (w_norm @ np.random.default_rng(1).normal(size=(32, 40)) > 0).astype(np.float32)
    preset = PRESETS["paper"].replace(
        w_dim=32, classifier_hidden=(64,), transformer_hidden=32, lr=3e-3, recon_weight=10.0
    )
    classifier = ClassifierTrainer.create(preset.replace(classifier_lr=3e-3), steps_per_epoch=8)
    state = jax.jit(classifier.init)(jax_key(0))
    idx = np.random.default_rng(2).integers(0, len(w), size=(300, 256))
    state, _ = jax.jit(classifier.scan)(state, w, labels, idx)
    attributes = [jaxedit.attribute_index(a) for a in ("Smiling", "Eyeglasses", "Young")]
    trainer = TransformerTrainer.create(preset)
    t_state = jax.jit(trainer.init, static_argnums=1)(jax_key(1), len(attributes))
    t_idx = np.random.default_rng(3).integers(0, len(w), size=(400, 32))
    t_state, _ = jax.jit(trainer.scan)(
        t_state, state.params, correlation_matrix(labels), np.asarray(attributes, np.int32), w, t_idx
    )
    editors_dir = save_editors(
        root / "editors",
        preset,
        state.params,
        t_state.params,
        attributes,
        training={"origin": "test"},
        provenance=make_provenance(preset, origin="trained", generator=generator),
    )
    return gen_dir, editors_dir, generator


def jax_key(seed):
    import jax

    return jax.random.key(seed)


GUTTER = gutter_width(RES)


def _panel(image: np.ndarray, row: int, column: int, rows: int, columns: int) -> np.ndarray:
    """Panel (row, column) of an edit picture of rows x columns panels (label bands above and left)."""
    y, x = panel_origin(image.shape, rows, columns, (RES, RES), row, column)
    return image[y : y + RES, x : x + RES]


def _render_seed(generator, seed: int) -> np.ndarray:
    z = np.random.RandomState(seed).randn(1, generator.z_dim).astype(np.float32)
    return to_uint8(np.asarray(generator(z)))[0]


def test_strip_has_one_panel_per_step_at_the_generator_resolution(dirs, tmp_path, capsys):
    gen_dir, editors_dir, generator = dirs
    out, saved = tmp_path / "strip.png", tmp_path / "strip.npy"
    assert (
        cli_main(
            [
                "edit",
                str(gen_dir),
                str(editors_dir),
                "--seed",
                "3",
                *STEPS,
                "--out",
                str(out),
                "--save-latents",
                str(saved),
            ]
        )
        == 0
    )
    assert (
        "strip of 4 panels at 64x64 (input, +Smiling 1.25, +Eyeglasses -1, +Young 1); 1 row (seed 3)"
        in capsys.readouterr().out
    )
    image = np.asarray(Image.open(out).convert("RGB"))
    top, left = panel_origin(image.shape, 1, 4, (RES, RES), 0, 0)
    assert 0 < top < RES and 0 < left < 2 * RES  # a label band above, the seed's label to the left
    assert image.shape[:2] == (top + RES, left + 4 * RES + 3 * GUTTER)  # 4 panels, thin white gutters between
    for column in range(4):  # each panel has its label (dark text on white) above it
        x = left + column * (RES + GUTTER)
        assert (image[:top, x : x + RES] < 128).any()
        if column:
            assert (image[top:, x - GUTTER : x] == 255).all()
    assert (image[top:, :left] < 128).any()  # "seed 3"
    np.testing.assert_array_equal(_panel(image, 0, 0, 1, 4), _render_seed(generator, 3))  # the input is seed 3
    panels = [_panel(image, 0, c, 1, 4).astype(int) for c in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            changed = np.abs(panels[a] - panels[b]).max(axis=-1) > 0
            assert changed.mean() > 0.1, f"panels {a} and {b} are (nearly) the same picture"
    z = np.random.RandomState(3).randn(1, generator.z_dim).astype(np.float32)
    latents = np.load(saved)
    assert latents.shape == (4, 1, generator.num_ws, generator.w_dim)
    np.testing.assert_allclose(latents[0], np.asarray(generator.mapping(z)), rtol=1e-6, atol=1e-6)
    editors = jaxedit.load_editors(editors_dir)
    expected = jaxedit.editing.edits.apply_sequence(
        editors, latents[0][:, 0], [("Smiling", 1.25), ("Eyeglasses", -1), ("Young", 1)]
    )
    for step, result in enumerate(expected, start=1):
        np.testing.assert_allclose(latents[step][:, 0], np.asarray(result), rtol=1e-5, atol=1e-5)
        assert np.all(latents[step] == latents[step][:, :1])  # W edits reach every W+ layer


def test_edits_move_the_trained_classifier_the_right_way(dirs, tmp_path):
    gen_dir, editors_dir, generator = dirs
    editors = jaxedit.load_editors(editors_dir)
    z = np.random.default_rng(5).normal(size=(64, generator.z_dim)).astype(np.float32)
    w = np.asarray(generator.mapping(z))[:, 0]
    k = editors.attributes.index("Smiling")
    before = np.asarray(editors.classify(w))[:, jaxedit.attribute_index("Smiling")]
    up = np.asarray(editors.classify(jaxedit.editing.edits.get_editor(editors, "Smiling")(w, 1.0)))[
        :, jaxedit.attribute_index("Smiling")
    ]
    down = np.asarray(editors.classify(jaxedit.editing.edits.get_editor(editors, "Smiling")(w, -1.0)))[
        :, jaxedit.attribute_index("Smiling")
    ]
    assert k == 0 and np.mean(up > before) > 0.9 and np.mean(down < before) > 0.9


def test_sweeps_are_rows_of_frames_one_row_per_seed(dirs, tmp_path, capsys):
    gen_dir, editors_dir, generator = dirs
    out, saved = tmp_path / "sweep.png", tmp_path / "sweep.npy"
    sweep = ["--sweep", "smiling=-1.5:0:2", "--out", str(out), "--save-latents", str(saved)]  # 4 panels, as the strip
    assert cli_main(["edit", str(gen_dir), str(editors_dir), "--seeds", "3-4", *sweep]) == 0
    assert "sweep of 2 frames at 64x64 (Smiling -1.5, Smiling 0); 2 rows (seed 3, seed 4)" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    top, left = panel_origin(image.shape, 2, 2, (RES, RES), 0, 0)
    assert 0 < top < RES and 0 < left < 2 * RES and image.shape[1] == left + 2 * RES + GUTTER
    assert (image[top + RES : top + RES + GUTTER, left:] == 255).all()  # the gutter between the two rows
    for row, seed in enumerate((3, 4)):
        np.testing.assert_array_equal(_panel(image, row, 1, 2, 2), _render_seed(generator, seed))  # alpha 0
        frames = [_panel(image, row, c, 2, 2).astype(int) for c in range(2)]
        assert (np.abs(frames[0] - frames[1]).max(axis=-1) > 0).mean() > 0.1
    assert np.load(saved).shape == (2, 2, generator.num_ws, generator.w_dim)  # [frames, rows, num_ws, w_dim]


def test_seeds_give_one_strip_row_each_and_labels_are_optional(dirs, tmp_path, capsys):
    gen_dir, editors_dir, generator = dirs
    out = tmp_path / "seeds.png"
    args = ["edit", str(gen_dir), str(editors_dir), "--seeds", "9,5", "--attr", "Smiling=1", "--no-labels"]
    assert cli_main([*args, "--out", str(out)]) == 0
    assert "2 panels at 64x64 (input, +Smiling 1); 2 rows (seed 9, seed 5)" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[:2] == (2 * RES + GUTTER, 2 * RES + GUTTER)  # no label bands
    for row, seed in enumerate((9, 5)):
        np.testing.assert_array_equal(_panel(image, row, 0, 2, 2), _render_seed(generator, seed))


def test_methods_side_by_side_as_rows(dirs, tmp_path, capsys):
    """--method ours,interfacegan,ganspace: three rows on the same face; each baseline moves the
    input by 1.25 x 2.4 = 3 along a unit direction on every layer (W editors), and InterFaceGAN's
    direction, fitted on latents labelled by the editors' classifier, raises its Smiling score."""
    gen_dir, editors_dir, generator = dirs
    out, saved = tmp_path / "methods.png", tmp_path / "methods.npy"
    methods = ["--method", "ours,interfacegan", "--method", "ganspace", "--baseline-samples", "2000"]
    args = ["--seed", "3", "--attr", "Smiling=1.25", *methods, "--out", str(out), "--save-latents", str(saved)]
    assert cli_main(["edit", str(gen_dir), str(editors_dir), *args]) == 0
    captured = capsys.readouterr()
    assert "3 rows (seed 3 ours, seed 3 interfacegan, seed 3 ganspace)" in captured.out
    assert "InterFaceGAN: linear SVM normals on 2000 latents" in captured.err and "GANSpace: " in captured.err
    image = np.asarray(Image.open(out).convert("RGB"))
    inputs = [_panel(image, row, 0, 3, 2) for row in range(3)]
    edited = [_panel(image, row, 1, 3, 2).astype(int) for row in range(3)]
    for row in range(3):
        np.testing.assert_array_equal(inputs[row], _render_seed(generator, 3))  # the same face on every row
    for row in (1, 2):
        assert (np.abs(edited[row] - edited[0]).max(axis=-1) > 0).mean() > 0.1  # not ours' picture
    latents = np.load(saved)  # [input + 1 step, 3 rows, num_ws, w_dim]
    assert latents.shape == (2, 3, generator.num_ws, generator.w_dim)
    np.testing.assert_array_equal(latents[0][1:], latents[0][:1].repeat(2, axis=0))
    moves = latents[1][1:] - latents[0][1:]  # the baselines' moves, [2, num_ws, w_dim]
    np.testing.assert_allclose(np.linalg.norm(moves, axis=-1), 3.0, rtol=1e-4)
    assert np.abs(moves - moves[:, :1]).max() < 1e-6  # the same move on every layer
    editors = jaxedit.load_editors(editors_dir)
    smiling = jaxedit.attribute_index("Smiling")
    before, after = (np.asarray(editors.classify(latents[i][1:2, 0]))[0, smiling] for i in (0, 1))
    assert after > before


def test_latent_file_rows_layers_and_warnings(dirs, tmp_path, capsys):
    gen_dir, editors_dir, generator = dirs
    z = np.random.default_rng(7).normal(size=(2, generator.z_dim)).astype(np.float32)
    w = np.asarray(generator.mapping(z))[:, 0]
    np.save(tmp_path / "w.npy", w)
    out, saved = tmp_path / "two.png", tmp_path / "two.npy"
    code = cli_main(
        [
            "edit",
            str(gen_dir),
            str(editors_dir),
            "--latent",
            str(tmp_path / "w.npy"),
            "--attr",
            "Smiling=4",
            "--layers",
            "0-3",
            "--out",
            str(out),
            "--save-latents",
            str(saved),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxedit: warning: alpha 4 is outside [-3, 3]")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 2 * RES and image.shape[1] > 2 * RES  # two strip rows, with row labels
    latents = np.load(saved)
    assert latents.shape == (2, 2, generator.num_ws, generator.w_dim)
    np.testing.assert_array_equal(latents[1][:, 4:], latents[0][:, 4:])  # layers 4.. keep the input
    assert np.abs(latents[1][:, :4] - latents[0][:, :4]).min() > 0
    # what --save-latents wrote is a latent file again, whole (its 2 x 2 panels' latents, panel by panel)
    # or one panel; W editors edit its distinct W+ layers one by one
    np.save(tmp_path / "last.npy", latents[-1])
    editor = jaxedit.get_editor(jaxedit.load_editors(editors_dir), "Young")
    for latent_file, rows in (
        (saved, latents.reshape((-1,) + latents.shape[2:])),
        (tmp_path / "last.npy", latents[-1]),
    ):
        again = tmp_path / "again.npy"
        argv = ["edit", str(gen_dir), str(editors_dir), "--latent", str(latent_file), "--attr", "Young=1"]
        assert cli_main([*argv, "--out", str(out), "--save-latents", str(again)]) == 0, capsys.readouterr().err
        assert capsys.readouterr().err == ""
        edited = np.load(again)
        assert edited.shape == (2, len(rows), generator.num_ws, generator.w_dim)
        np.testing.assert_array_equal(edited[0], rows)
        np.testing.assert_allclose(edited[1], np.asarray(editor(rows, 1.0)), atol=1e-5)


def test_latent_of_the_wrong_shape(dirs, tmp_path, capsys):
    gen_dir, editors_dir, _ = dirs
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), np.float32))
    code = cli_main(
        [
            "edit",
            str(gen_dir),
            str(editors_dir),
            "--latent",
            str(tmp_path / "bad.npy"),
            "--attr",
            "Young=1",
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert (
        "expected W [32] / [B, 32] or W+ [10, 32] / [B, 10, 32] / [P, B, 10, 32] for this generator, got [3, 7]" in err
    )
    assert not (tmp_path / "x.png").exists()
