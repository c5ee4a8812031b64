"""`jaxedit edit --sweep ... --out x.gif|.webp|.mp4`: every frame is the generator's image of the
swept latent, frames stream (pingpong renders the way back), refusals are one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageSequence

from jaxedit.cli.main import main as cli_main
from jaxedit.viz.grid import to_uint8
from tests.helpers.serve import shared_editor_dirs


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    gen_dir, editors_dir, _ = shared_editor_dirs(tmp_path_factory)
    return gen_dir, editors_dir


def _gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


def test_gif_sweep_frames_are_the_generators_images_of_the_saved_latents(dirs, tmp_path, capsys):
    import jaxedit

    gen_dir, editors_dir = dirs
    out, saved = tmp_path / "sweep.gif", tmp_path / "sweep.npy"
    argv = ["edit", str(gen_dir), str(editors_dir), "--seed", "3", "--sweep", "Smiling=-1.5:1.5:5"]
    assert cli_main([*argv, "--out", str(out), "--save-latents", str(saved), "--fps", "12"]) == 0
    assert "5 frames of Smiling" in capsys.readouterr().out
    frames = _gif_frames(out)
    latents = np.load(saved)  # [5, 1, num_ws, w_dim]
    assert len(frames) == 5 and latents.shape[:2] == (5, 1)
    generator = jaxedit.load_generator(gen_dir)
    expected = to_uint8(np.asarray(generator.synthesis(latents[:, 0], "const")))
    # GIF quantises each frame to its own 256-colour palette: frame i must be nearest to image i
    distances = np.array([[np.abs(f.astype(int) - w.astype(int)).mean() for w in expected] for f in frames])
    assert np.array_equal(distances.argmin(axis=1), np.arange(5)), distances
    assert distances.diagonal().max() < 8.0
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0  # the sweep moves the face


def test_pingpong_plays_forward_then_back_without_repeating_the_ends(dirs, tmp_path):
    gen_dir, editors_dir = dirs
    out = tmp_path / "pp.gif"
    argv = ["edit", str(gen_dir), str(editors_dir), "--seed", "3", "--sweep", "Smiling=-1.5:1.5:5", "--pingpong"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    frames = _gif_frames(out)
    assert len(frames) == 8  # 0 1 2 3 4 3 2 1
    for forward, backward in ((1, 7), (2, 6), (3, 5)):
        assert np.array_equal(frames[forward], frames[backward])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attr", "Smiling=1"], "a video shows a --sweep"),
        (["--sweep", "Smiling=-1:1:3", "--method", "ours,interfacegan"], "a video shows ours only"),
        (["--sweep", "Smiling=-1:1:3", "--fps", "0"], "--fps"),
    ],
)
def test_video_refusals_are_one_line(dirs, tmp_path, capsys, extra, message):
    gen_dir, editors_dir = dirs
    out = tmp_path / "x.webp"
    assert cli_main(["edit", str(gen_dir), str(editors_dir), "--seed", "1", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
