"""The CLI's help texts, grid geometry and the generate features peers' users expect:
one PNG per seed (--outdir), style mixing (--style-mix), seed labels."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
from PIL import Image

from jaxedit.cli import train, train_stages
from jaxedit.cli.main import build_parser
from jaxedit.cli.main import main as cli_main
from jaxedit.viz.grid import grid, gutter_width, labelled_grid, to_uint8
from tests.helpers.paths import STYLEGAN2_FIXTURES


def _all_parsers() -> dict[str, argparse.ArgumentParser]:
    top = build_parser()
    parsers = {"jaxedit": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update({f"jaxedit {name}": parser for name, parser in action.choices.items()})
    parsers["jaxedit train"] = train.pipeline_parser("jaxedit train")[0]
    for stage in train.STAGES:
        parsers[f"jaxedit train {stage}"] = train_stages.stage_parser(stage, f"jaxedit train {stage}")[0]
    return parsers


def test_every_option_has_help_and_no_help_shows_a_doubled_percent():
    missing, doubled = [], []
    for name, parser in _all_parsers().items():
        if "%%" in parser.format_help():
            doubled.append(name)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == "==SUPPRESS==":
                continue
            text = (action.help or "").strip()
            if not text or re.fullmatch(r"\(?default [^)]*\)?", text):  # nothing but the default is no help
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not doubled, f"'%%' in the help of {doubled}"
    assert not missing, f"options without help: {missing}"


def test_eval_help_says_one_percent_sign(capsys):
    assert cli_main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "0.1% false-acceptance" in text and "%%" not in text


# ------------------------------------------------------------------------------------------------
# Grid geometry, on the pixels


def _tiles(count: int, size: int = 16) -> np.ndarray:
    """Tiles of distinct flat grey levels 10, 40, 70, ... (none of them the white background)."""
    return (10 + 30 * np.arange(count, dtype=np.uint8))[:, None, None, None] * np.ones((count, size, size, 3), np.uint8)


def test_grid_has_thin_white_gutters_and_no_filler_cell():
    size = 16
    gutter = gutter_width(size)
    assert gutter == 2 and gutter_width(1024) == 16
    picture = grid(_tiles(7, size), columns=3)  # 3 + 3 + 1: two cells without a tile
    assert picture.shape == (3 * size + 2 * gutter, 3 * size + 2 * gutter, 3)
    for index in range(7):
        y, x = divmod(index, 3)
        y, x = y * (size + gutter), x * (size + gutter)
        assert (picture[y : y + size, x : x + size] == 10 + 30 * index).all()
    assert (picture[size : size + gutter] == 255).all() and (picture[:, size : size + gutter] == 255).all()
    last_row = 2 * (size + gutter)
    assert (picture[last_row:, size:] == 255).all()  # the empty cells are background, not a black filler
    # a count that fills a rectangle gets one: 8 tiles -> 4 x 2, 6 -> 3 x 2; up to 5 in one row
    assert grid(_tiles(8, size)).shape[:2] == (2 * size + gutter, 4 * size + 3 * gutter)
    assert grid(_tiles(6, size)).shape[:2] == (2 * size + gutter, 3 * size + 2 * gutter)
    assert grid(_tiles(5, size)).shape[:2] == (size, 5 * size + 4 * gutter)


def test_grid_labels_sit_in_a_band_above_each_tile():
    size = 64
    plain, labelled = grid(_tiles(2, size)), grid(_tiles(2, size), labels=["seed 0", "seed 12"])
    band = labelled.shape[0] - size
    assert labelled.shape[1] == plain.shape[1] and 0 < band < size
    for index in range(2):
        x = index * (size + gutter_width(size))
        assert (labelled[:band, x : x + size] < 128).any()  # dark text on white
        assert (labelled[band:, x : x + size] == 10 + 30 * index).all()


def test_labelled_grid_panels_keep_their_pixels_between_label_bands():
    size = 32
    tiles = _tiles(6, size).reshape(2, 3, size, size, 3)
    picture = labelled_grid(tiles, column_labels=["a", "b", "c"], row_labels=["seed 1", "seed 2"])
    gutter = gutter_width(size)
    top = picture.shape[0] - 2 * size - gutter
    left = picture.shape[1] - 3 * size - 2 * gutter
    assert 0 < top < size and 0 < left
    for r in range(2):
        for c in range(3):
            y, x = top + r * (size + gutter), left + c * (size + gutter)
            assert (picture[y : y + size, x : x + size] == 10 + 30 * (3 * r + c)).all()


# ------------------------------------------------------------------------------------------------
# generate: style mixing, seed labels


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "gen"
    assert cli_main(["convert", "stylegan2", str(STYLEGAN2_FIXTURES / "rosinality_small.pt"), str(out)]) == 0
    return out


def _ws_of_seeds(generator, seeds) -> np.ndarray:
    z = np.stack([np.random.RandomState(seed).randn(generator.z_dim) for seed in seeds]).astype(np.float32)
    return np.asarray(generator.mapping(z))


def test_style_mix_figure_cells_are_mix_styles_renders(generator_dir, tmp_path, capsys):
    """--style-mix 1,2:3-5:4: a 3 x 4 figure (corner empty), first row the column seeds, first
    column the row seeds, cell (r, c) = synthesis(mix_styles(ws(column c), ws(row r), 4))."""
    import jaxedit
    from jaxedit.stylegan2.networks import mix_styles

    out = tmp_path / "mix.png"
    assert cli_main(["generate", str(generator_dir), "--style-mix", "1,2:3-5:4", "--out", str(out)]) == 0
    assert "2 x 3 style mixes: layers 0-3 from the column seeds, 4-9 from the row seeds" in capsys.readouterr().out
    picture = np.asarray(Image.open(out).convert("RGB"))
    size, gutter = 64, gutter_width(64)
    assert picture.shape == (3 * size + 2 * gutter, 4 * size + 3 * gutter, 3)  # no labels by default

    def cell(r, c):
        y, x = r * (size + gutter), c * (size + gutter)
        return picture[y : y + size, x : x + size]

    assert (cell(0, 0) == 255).all()  # the empty corner: background, no filler tile
    generator = jaxedit.load_generator(generator_dir)
    ws = _ws_of_seeds(generator, (1, 2, 3, 4, 5))
    rows, columns = ws[:2], ws[2:]
    mixed = np.asarray(mix_styles(columns[2:3], rows[1:2], 4))  # column seed 5 below layer 4, row seed 2 from it
    expected = to_uint8(np.asarray(generator.synthesis(np.concatenate([columns[1:2], rows[1:2], mixed]))))
    np.testing.assert_array_equal(cell(0, 2), expected[0])
    np.testing.assert_array_equal(cell(2, 0), expected[1])
    np.testing.assert_array_equal(cell(2, 3), expected[2])
    assert (cell(2, 3) != cell(0, 3)).any() and (cell(2, 3) != cell(2, 0)).any()


def test_style_mix_refuses_a_layer_outside_the_generator(generator_dir, tmp_path, capsys):
    code = cli_main(["generate", str(generator_dir), "--style-mix", "1:2:10", "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "layer 10: expected 1..9" in err
    assert not (tmp_path / "m.png").exists()


def test_generate_labels_put_each_seed_above_its_tile(generator_dir, tmp_path):
    import jaxedit

    plain, labelled = tmp_path / "plain.png", tmp_path / "labelled.png"
    for out, extra in ((plain, []), (labelled, ["--labels"])):
        assert cli_main(["generate", str(generator_dir), "--seeds", "4,2", *extra, "--out", str(out)]) == 0
    plain, labelled = (np.asarray(Image.open(p).convert("RGB")) for p in (plain, labelled))
    size, gutter = 64, gutter_width(64)
    band = labelled.shape[0] - size
    assert plain.shape == (size, 2 * size + gutter, 3) and labelled.shape[1] == plain.shape[1] and 0 < band < size
    generator = jaxedit.load_generator(generator_dir)
    expected = to_uint8(np.asarray(generator.synthesis(_ws_of_seeds(generator, (4, 2)))))
    for index in range(2):
        x = index * (size + gutter)
        assert (labelled[:band, x : x + size] < 128).any()  # "seed 4", "seed 2"
        np.testing.assert_array_equal(labelled[band:, x : x + size], expected[index])
        np.testing.assert_array_equal(plain[:, x : x + size], expected[index])


def test_an_image_given_as_latents_is_refused_without_pickle_advice(generator_dir, tmp_path, capsys):
    """`jaxedit.io.load_array` names a PNG for what it is; numpy's "allow_pickle" advice (which
    would contradict the Security section) never reaches the user (edit --latent reads the same way)."""
    picture = tmp_path / "face.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(picture)
    code = cli_main(["generate", str(generator_dir), "--ws", str(picture), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--ws" in err and "a PNG image, not a .npy array" in err
    assert "pickle" not in err.lower()
