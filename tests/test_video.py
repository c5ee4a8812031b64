"""Videos: GIF/WebP/MP4 round trips read back by independent decoders (Pillow, PyAV), pingpong
order, one-line errors, atomic output, and frames consumed one at a time (memory flat in N)."""

import importlib.util
import sys
import weakref

import numpy as np
import pytest
from PIL import Image, ImageSequence

from jaxedit.errors import ConfigError, InputError
from jaxedit.viz.video import MP4_NEEDS_EXTRA, write_video

HEIGHT, WIDTH = 40, 56
STEP = 24  # frame i is coded by red = STEP * i (far apart, so lossy codecs keep it readable)


def _frame(i, height=HEIGHT, width=WIDTH):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = STEP * i
    frame[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]  # some texture to encode
    frame[: height // 4, :, 2] = 255
    return frame


def _read(path):
    """Frames [N, H, W, 3] decoded by Pillow (GIF, WebP) or PyAV (MP4)."""
    if path.suffix == ".mp4":
        av = pytest.importorskip("av")
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])
    with Image.open(path) as image:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)])


def _indices(frames):
    return [int(round(frame[HEIGHT // 2 :, :, 0].mean() / STEP)) for frame in frames]


needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV (jaxedit[video]) not installed")
FORMATS = [".gif", ".webp", pytest.param(".mp4", marks=needs_av)]


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_frame_count_size_and_order(tmp_path, suffix):
    path = tmp_path / f"sweep{suffix}"
    assert write_video(path, (_frame(i) for i in range(7)), fps=10) == path
    frames = _read(path)
    assert frames.shape == (7, HEIGHT, WIDTH, 3)
    assert _indices(frames) == list(range(7))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging file left


@pytest.mark.parametrize("suffix", FORMATS)
def test_pingpong_plays_back_without_repeating_the_ends(tmp_path, suffix):
    path = tmp_path / f"pingpong{suffix}"
    write_video(path, (_frame(i) for i in range(5)), fps=10, pingpong=True)
    assert _indices(_read(path)) == [0, 1, 2, 3, 4, 3, 2, 1]


def test_pingpong_with_a_callable_renders_the_way_back_again(tmp_path):
    calls = []

    def render(i):
        calls.append(i)
        return _frame(i)

    path = tmp_path / "pingpong.gif"
    write_video(path, render, count=4, fps=10, pingpong=True)
    assert calls == [0, 1, 2, 3, 2, 1]
    assert _indices(_read(path)) == [0, 1, 2, 3, 2, 1]


def test_gif_and_webp_timing_and_loop(tmp_path):
    write_video(tmp_path / "a.gif", (_frame(i) for i in range(3)), fps=4)
    with Image.open(tmp_path / "a.gif") as image:
        assert image.info["duration"] == 250 and image.info["loop"] == 0
    write_video(tmp_path / "a.webp", (_frame(i) for i in range(3)), fps=4, loop=2)
    with Image.open(tmp_path / "a.webp") as image:
        image.load()
        assert image.info["duration"] == 250 and image.info["loop"] == 2 and image.n_frames == 3


@needs_av
def test_odd_sizes_in_mp4_are_padded_by_one_edge_pixel(tmp_path):
    write_video(tmp_path / "odd.mp4", (_frame(i, 33, 45) for i in range(3)), fps=5)
    assert _read(tmp_path / "odd.mp4").shape == (3, 34, 46, 3)


@pytest.mark.parametrize("suffix", FORMATS)
def test_frames_are_consumed_one_at_a_time(tmp_path, suffix):
    """The writer holds no earlier frame when it asks for the next one, and (GIF/WebP) the file has
    already grown: memory does not grow with the number of frames."""
    alive, held, sizes = [], [], []

    def frames(n):
        for i in range(n):
            held.append(sum(ref() is not None for ref in alive))
            sizes.append(sum(p.stat().st_size for p in tmp_path.iterdir()))
            frame = _frame(i % 10)
            alive.append(weakref.ref(frame))
            yield frame

    write_video(tmp_path / f"long{suffix}", frames(24), fps=24)
    assert max(held) <= 1, held
    if suffix != ".mp4":  # the H.264 encoder buffers a few frames before it writes any
        assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes


def test_unknown_extension_and_bad_frames_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown format '\.avi'"):
        write_video(tmp_path / "x.avi", [_frame(0)])
    with pytest.raises(ConfigError, match="no extension"):
        write_video(tmp_path / "x", [_frame(0)])
    with pytest.raises(ConfigError, match="fps"):
        write_video(tmp_path / "x.gif", [_frame(0)], fps=0)
    with pytest.raises(ConfigError, match="count"):
        write_video(tmp_path / "x.gif", _frame)
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "x.gif", [])
    with pytest.raises(InputError, match=r"frame 0 must be uint8 \[H, W, 3\]"):
        write_video(tmp_path / "x.gif", [_frame(0).astype(np.float32)])
    with pytest.raises(InputError, match="frame 2 is"):
        write_video(tmp_path / "x.webp", [_frame(0), _frame(1), _frame(2, 20, 20)])
    assert list(tmp_path.iterdir()) == []  # atomic: nothing half-written


def test_a_failing_frame_source_leaves_the_old_file(tmp_path):
    path = tmp_path / "keep.gif"
    write_video(path, [_frame(0), _frame(1)])
    before = path.read_bytes()

    def broken():
        yield _frame(3)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(path, broken())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.gif"]


def test_mp4_without_pyav_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(ConfigError) as error:
        write_video(tmp_path / "x.mp4", [_frame(0)])
    assert str(error.value) == MP4_NEEDS_EXTRA == "MP4 needs the video extra: pip install 'jaxedit[video]'"
    assert list(tmp_path.iterdir()) == []
