"""A PNG encoder that takes its rows band by band, so an image far larger than memory can be written.

Pillow encodes a whole image at once; a grid of thousands of tiles is produced as horizontal
bands (`jaxedit.viz.grid.grid_bands`) and written here as they come. The file is a standard
8-bit PNG (greyscale, RGB or RGBA; no interlacing): IHDR, IDAT chunks of one zlib stream of
scanlines, IEND. Every scanline uses the Paeth filter, which suits photographs as well as the
flat gutters of a grid.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 3: 2, 4: 6}
"""Channels -> PNG colour type: greyscale, truecolour, truecolour with alpha."""
PAETH = 4
IDAT_BYTES = 1 << 20
FILTER_ROWS = 64
"""Rows filtered at once (bounds the filter's int16 temporaries)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def paeth_filtered(band: np.ndarray, above: np.ndarray | None) -> bytes:
    """uint8 [h, W, C] rows -> their PNG scanlines with the Paeth filter (filter byte, then bytes),
    `above` [W, C] the row before the band (None for the image's first row)."""
    h, width, channels = band.shape
    raw = band.reshape(h, width * channels).astype(np.int16)
    previous = np.zeros((1, width * channels), np.int16) if above is None else above.reshape(1, -1).astype(np.int16)
    up = np.concatenate([previous, raw[:-1]], axis=0)
    left = np.zeros_like(raw)
    left[:, channels:] = raw[:, :-channels]
    up_left = np.zeros_like(raw)
    up_left[:, channels:] = up[:, :-channels]
    estimate = left + up - up_left
    to_left, to_up, to_up_left = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    predictor = np.where((to_left <= to_up) & (to_left <= to_up_left), left, np.where(to_up <= to_up_left, up, up_left))
    filtered = ((raw - predictor) & 0xFF).astype(np.uint8)
    lines = np.concatenate([np.full((h, 1), PAETH, np.uint8), filtered], axis=1)
    return lines.tobytes()


def write_png(handle: BinaryIO, shape, bands: Iterable[np.ndarray], compression: int = 6) -> None:
    """Write a PNG of `shape` [H, W, C] (C = 1, 3 or 4) to `handle` from `bands`, uint8 [h, W, C]
    arrays whose heights add up to H, consumed one at a time."""
    height, width, channels = (int(d) for d in shape)
    if channels not in COLOUR_TYPES or height < 1 or width < 1:
        raise ValueError(f"write_png: cannot write an image of shape {[height, width, channels]}")
    handle.write(SIGNATURE)
    handle.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)))
    compressor = zlib.compressobj(compression)
    pending, rows, above = b"", 0, None
    for band in bands:
        band = np.asarray(band)
        if band.dtype != np.uint8 or band.shape[1:] != (width, channels) or rows + len(band) > height:
            raise ValueError(f"write_png: band {band.dtype} {list(band.shape)} does not continue {list(shape)}")
        if not len(band):
            continue
        for start in range(0, len(band), FILTER_ROWS):
            pending += compressor.compress(paeth_filtered(band[start : start + FILTER_ROWS], above))
            above = band[min(start + FILTER_ROWS, len(band)) - 1]
        rows += len(band)
        while len(pending) >= IDAT_BYTES:
            handle.write(_chunk(b"IDAT", pending[:IDAT_BYTES]))
            pending = pending[IDAT_BYTES:]
    if rows != height:
        raise ValueError(f"write_png: {rows} rows given, {height} announced")
    handle.write(_chunk(b"IDAT", pending + compressor.flush()))
    handle.write(_chunk(b"IEND", b""))
