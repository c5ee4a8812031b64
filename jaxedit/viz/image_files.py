"""Many rendered images to disk, chunk by chunk: a .npy array, one PNG per image, or a PNG grid.

The writers take the images as an iterable of chunks [b, H, W, C] (`jaxedit.stylegan2.render.render_chunks`)
and write each chunk as it comes, so memory does not grow with the number of images: a .npy is
written header first, then row block by row block; one PNG per image is written and forgotten; a
PNG grid is encoded band by band, one row of tiles at a time (`jaxedit.viz.png`). A grid holds at
most `MAX_GRID_PIXELS` pixels of images, so that image viewers (and Pillow, whose decompression-bomb
guard starts at 89M pixels) open it. Everything that can be checked (path, grid size, free disk
space) is checked before the first chunk is asked for, and every file appears atomically
(`jaxedit.io.atomic_file`).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxedit.errors import InputError
from jaxedit.io import atomic_file, check_output_path
from jaxedit.viz.grid import grid_bands, grid_layout, to_uint8
from jaxedit.viz.png import write_png

MAX_GRID_PIXELS = 1 << 24
"""Most image pixels in one PNG grid (16,777,216: 16 images of 1024 x 1024, 256 of 256 x 256, 4,096 of
64 x 64): a grid is for looking at; more images go to a .npy array or one PNG per image."""


def check_output(path: str | os.PathLike, count: int, image_shape: Sequence[int]) -> None:
    """Fail before any rendering when `count` images of `image_shape` [H, W, C] cannot be written
    to `path`: its extension or location (`check_output_path`), a PNG grid over `MAX_GRID_PIXELS`,
    a .npy larger than the free space of its disk."""
    check_output_path(path)
    path = Path(path)
    height, width, channels = image_shape
    if path.suffix.lower() == ".png" and count * height * width > MAX_GRID_PIXELS:
        raise InputError(
            f"{path}: a grid of {count:,} images of {height}x{width} would hold {count * height * width:,} pixels, "
            f"more than the {MAX_GRID_PIXELS:,} a grid may; write a .npy array or one PNG per image instead"
        )
    if path.suffix.lower() == ".npy":
        needed = count * height * width * channels * 4
        existing = next(p for p in (path.absolute().parent, *path.absolute().parents) if p.exists())
        free = shutil.disk_usage(existing).free
        if needed > free:
            raise InputError(
                f"{path}: {count:,} images of {height}x{width} need {needed:,} bytes, the disk has {free:,}"
            )


def write_images(
    path: str | os.PathLike,
    chunks: Iterable[np.ndarray],
    count: int,
    image_shape: Sequence[int],
    columns: int | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write `count` float images [H, W, C] (`image_shape`), arriving as `chunks` [b, H, W, C] in
    order (`render_chunks`), to `path`: `.npy`: raw float32 [count, H, W, C], written chunk by chunk;
    `.png`: a uint8 grid of the [-1, 1] images (`jaxedit.viz.grid.grid`; `labels`: one caption per
    image). Checked with `check_output` before the first chunk is asked for; atomic."""
    check_output(path, count, image_shape)
    path = Path(path)
    image_shape = tuple(int(d) for d in image_shape)
    if path.suffix.lower() == ".npy":
        return _write_npy(path, chunks, count, image_shape)
    layout = grid_layout(count, image_shape, columns=columns, labels=labels)
    with atomic_file(path, ".png") as staging:
        with open(staging, "xb") as handle:
            write_png(handle, layout.shape, grid_bands(layout, (to_uint8(chunk) for chunk in chunks), count))
    return path


def _check_count(given: int, count: int) -> None:
    if given != count:
        raise ValueError(f"{given} images given, {count} announced")


def _write_npy(path: Path, chunks: Iterable[np.ndarray], count: int, image_shape: tuple) -> Path:
    """A .npy float32 [count, *image_shape] written block by block (header first, then each chunk's
    rows in order), so only one chunk is ever in memory."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False}
    header["shape"] = (count, *image_shape)
    written = 0
    with atomic_file(path, ".npy") as staging:
        with open(staging, "xb") as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            for chunk in chunks:
                block = np.ascontiguousarray(chunk, dtype="<f4")
                if block.shape[1:] != image_shape or written + len(block) > count:
                    raise ValueError(f"chunk {list(block.shape)} does not continue [{count}, {list(image_shape)}]")
                handle.write(memoryview(block).cast("B"))
                written += len(block)
            _check_count(written, count)
    return path


def write_image_files(directory: str | os.PathLike, chunks: Iterable[np.ndarray], names: Callable[[int], str]) -> Path:
    """One PNG per [-1, 1] float image, `directory / names(i)` for image i, each written atomically
    as its chunk arrives (`chunks` as in `write_images`); an existing file of that name is replaced,
    nothing else in `directory` is touched. The directory (and its parents) is made when the
    first chunk is written."""
    from PIL import Image

    from jaxedit.atomic import remove_stale_staging

    directory = Path(directory)
    check_output_directory(directory)
    index = 0
    for chunk in chunks:
        if index == 0:
            directory.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(directory)  # once here, not once per file
        for image in to_uint8(chunk):
            with atomic_file(directory / names(index), ".png", remove_stale=False) as staging:
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(staging, format="PNG")
            index += 1
    return directory


def seed_file_name(seeds: Sequence[int]) -> Callable[[int], str]:
    """Image i -> "seed<NNNN>.png" of seeds[i] (as the NVlabs generate.py names them)."""
    return lambda index: f"seed{seeds[index]:04d}.png"


def row_file_name(count: int) -> Callable[[int], str]:
    """Image i of `count` -> "image<i>.png", i zero-padded to at least 4 digits (all the same width)."""
    digits = max(4, math.ceil(math.log10(count + 1)))
    return lambda index: f"image{index:0{digits}d}.png"


def check_output_directory(directory: str | os.PathLike) -> None:
    """Fail before any work when `directory` cannot be a directory of images."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: exists and is not a directory")
    for parent in directory.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{directory}: {parent} is not a directory")
            break
