"""Images: generator output to uint8, grids, and PNG files (Pillow only).

Generator images are float32 NHWC on the reference scale (about [-1, 1]); `to_uint8` maps
[-1, 1] -> [0, 255] with rounding and clipping, as the reference scripts do when saving.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from jaxedit.errors import InputError


def to_uint8(images, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[..., H, W, C] floats in `value_range` -> uint8 [..., H, W, C] (clipped, rounded)."""
    images = np.asarray(images, dtype=np.float32)
    low, high = value_range
    scaled = (images - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int | None = None, padding: int = 0, fill: int = 0) -> np.ndarray:
    """uint8 [B, H, W, C] -> one uint8 [rows*H + gaps, columns*W + gaps, C] image, row-major.

    columns defaults to ceil(sqrt(B)); empty cells and gaps are `fill`.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(f"grid: expected images [B, H, W, C], got {list(images.shape)}")
    count, height, width, channels = images.shape
    if count == 0:
        raise InputError("grid: no images")
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.full((rows * height + (rows - 1) * padding, columns * width + (columns - 1) * padding, channels), fill, images.dtype)
    for index in range(count):
        r, c = divmod(index, columns)
        y, x = r * (height + padding), c * (width + padding)
        canvas[y:y + height, x:x + width] = images[index]
    return canvas


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Save one uint8 [H, W, C] (C = 1, 3 or 4) or [H, W] image as PNG; parent folders are created.

    Written to a temporary name and renamed, so an interrupted save leaves no partial file.
    """
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"save_png: expected uint8 pixels, got {image.dtype} (use to_uint8 first)")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise InputError(f"save_png: expected [H, W], [H, W, 1|3|4], got {list(image.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    Image.fromarray(image).save(partial, format="PNG")
    os.replace(partial, path)
    return path


def save_grid(path: str | os.PathLike, images, columns: int | None = None, padding: int = 0,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Float images [B, H, W, C] on `value_range` -> one PNG grid at `path`."""
    return save_png(path, grid(to_uint8(images, value_range), columns=columns, padding=padding))
