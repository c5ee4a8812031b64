"""The streaming PNG encoder, read back by Pillow's decoder, and the banded grid it writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxedit.viz.grid import grid, grid_bands, grid_layout
from jaxedit.viz.png import write_png


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _encode(shape, bands) -> bytes:
    handle = io.BytesIO()
    write_png(handle, shape, bands)
    return handle.getvalue()


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 70),
    channels=st.sampled_from([1, 3, 4]),
    cuts=st.lists(st.integers(0, 150), max_size=5),
    smooth=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_pillow_reads_back_every_pixel(height, width, channels, cuts, smooth, seed):
    rng = np.random.default_rng(seed)
    if smooth:  # gradients exercise every Paeth predictor branch differently from noise
        ys, xs = np.mgrid[:height, :width]
        pixels = np.stack([(ys * (c + 1) + xs * (3 - c)) % 256 for c in range(channels)], -1).astype(np.uint8)
    else:
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    edges = [0, *sorted(min(c, height) for c in cuts), height]
    bands = [pixels[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    np.testing.assert_array_equal(_decode(_encode(pixels.shape, bands)), pixels)


def test_a_picture_larger_than_one_idat_chunk_and_filter_block():
    ys, xs = np.mgrid[:700, :900]
    pixels = np.stack([ys % 256, xs % 256, (ys * xs) % 256], -1).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, pixels.shape, dtype=np.uint8)
    pixels = np.where(ys[..., None] > 350, noise, pixels)
    np.testing.assert_array_equal(_decode(_encode(pixels.shape, [pixels[:333], pixels[333:]])), pixels)


@pytest.mark.parametrize(
    "bands, message",
    [
        ([np.zeros((3, 5, 3), np.uint8)], "3 rows given, 4 announced"),
        ([np.zeros((5, 5, 3), np.uint8)], "does not continue"),
        ([np.zeros((4, 6, 3), np.uint8)], "does not continue"),
        ([np.zeros((4, 5, 3), np.float32)], "does not continue"),
    ],
)
def test_bands_that_do_not_make_the_announced_image_are_refused(bands, message):
    with pytest.raises(ValueError, match=message):
        _encode((4, 5, 3), bands)


@pytest.mark.parametrize("count, columns, chunk", [(1, None, 1), (7, 3, 2), (12, None, 5), (13, 4, 13)])
@pytest.mark.parametrize("labelled", [False, True])
def test_banded_grid_written_as_png_is_the_grid(count, columns, chunk, labelled):
    tiles = np.random.default_rng(count).integers(0, 256, (count, 24, 20, 3), dtype=np.uint8)
    labels = [f"seed {1000 * i + 7}" for i in range(count)] if labelled else None
    layout = grid_layout(count, tiles.shape[1:], columns=columns, labels=labels)
    chunks = (tiles[i : i + chunk] for i in range(0, count, chunk))
    written = _decode(_encode(layout.shape, grid_bands(layout, chunks, count)))
    np.testing.assert_array_equal(written, grid(tiles, columns=columns, labels=labels))


def test_grid_bands_refuse_more_or_fewer_tiles_than_announced():
    layout = grid_layout(4, (8, 8, 3))
    tiles = np.zeros((5, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="does not continue"):
        list(grid_bands(layout, [tiles], 4))
    with pytest.raises(ValueError, match="3 images given, 4 announced"):
        list(grid_bands(layout, [tiles[:3]], 4))
