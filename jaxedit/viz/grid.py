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
from jaxedit.io import atomic_file


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
    canvas = np.full(
        (rows * height + (rows - 1) * padding, columns * width + (columns - 1) * padding, channels), fill, images.dtype
    )
    for index in range(count):
        r, c = divmod(index, columns)
        y, x = r * (height + padding), c * (width + padding)
        canvas[y : y + height, x : x + width] = images[index]
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
    with atomic_file(path) as partial:
        Image.fromarray(image).save(partial, format="PNG")
    return path


def save_grid(
    path: str | os.PathLike,
    images,
    columns: int | None = None,
    padding: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Path:
    """Float images [B, H, W, C] on `value_range` -> one PNG grid at `path`."""
    return save_png(path, grid(to_uint8(images, value_range), columns=columns, padding=padding))


# ---- labelled strips and grids -----------------


def _label_font(size: int):
    """Pillow's built-in font at `size` px (the bitmap default where FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _wrap_label(text: str, font, width: int) -> list[str]:
    """Split `text` into lines no wider than `width` px: at spaces, then after underscores, then anywhere."""
    pieces: list[str] = []
    for word in text.split(" "):
        parts = [p + "_" for p in word.split("_")[:-1]] + [word.split("_")[-1]]
        pieces.extend(p for p in parts if p)
        pieces.append(" ")
    pieces = pieces[:-1]
    lines, current = [], ""
    for piece in pieces:
        candidate = current + piece
        if current and font.getlength(candidate.strip()) > width:
            lines.append(current.strip())
            current = piece.lstrip()
        else:
            current = candidate
        while font.getlength(current.strip()) > width and len(current.strip()) > 1:  # one piece too wide
            cut = len(current)
            while cut > 1 and font.getlength(current[:cut]) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current.strip():
        lines.append(current.strip())
    return lines or [""]


def labelled_grid(
    images: np.ndarray,
    column_labels=None,
    row_labels=None,
    font_size: int | None = None,
    background: int = 255,
    text_color: int = 0,
) -> np.ndarray:
    """uint8 [R, C, H, W, 3] -> one uint8 image: the R x C panels edge to edge, labels in bands.

    `column_labels` (C strings) go in a band above the panels, `row_labels` (R strings) in a band
    to their left; labels wrap to fit. The panels keep their exact pixels, so the panel area is
    `R*H x C*W` starting at (band height, band width). Font: Pillow's built-in one, size
    `font_size` (default about W/7, at least 9 px).
    """
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    if images.ndim != 5 or images.dtype != np.uint8:
        raise InputError(
            f"labelled_grid: expected uint8 panels [R, C, H, W, C_img], got {images.dtype} {list(images.shape)}"
        )
    rows, columns, height, width, channels = images.shape
    if column_labels is not None and len(column_labels) != columns:
        raise InputError(f"labelled_grid: {len(column_labels)} column labels for {columns} columns")
    if row_labels is not None and len(row_labels) != rows:
        raise InputError(f"labelled_grid: {len(row_labels)} row labels for {rows} rows")
    size = font_size or max(9, round(width / 7))
    font = _label_font(size)
    pad = max(2, size // 4)
    line_height = size + max(1, size // 5)
    column_lines = (
        [_wrap_label(str(t), font, width - 2 * pad) for t in column_labels] if column_labels is not None else []
    )
    top = (max(len(lines) for lines in column_lines) * line_height + 2 * pad) if column_lines else 0
    row_width = min(2 * width, max(width // 2, 1) * 3) if row_labels is not None else 0
    row_lines = [_wrap_label(str(t), font, row_width - 2 * pad) for t in row_labels] if row_labels is not None else []
    if row_lines:
        row_width = min(row_width, max(int(font.getlength(line)) for lines in row_lines for line in lines) + 2 * pad)
    panels = images.transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, channels)
    canvas = np.full((top + rows * height, row_width + columns * width, channels), background, np.uint8)
    canvas[top:, row_width:] = panels
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    draw = ImageDraw.Draw(picture)
    fill = text_color if channels == 1 else (text_color,) * channels
    for c, lines in enumerate(column_lines):
        for i, line in enumerate(lines):
            x = row_width + c * width + (width - font.getlength(line)) / 2
            draw.text((x, pad + i * line_height), line, font=font, fill=fill)
    for r, lines in enumerate(row_lines):
        y0 = top + r * height + (height - len(lines) * line_height) / 2
        for i, line in enumerate(lines):
            draw.text((pad, y0 + i * line_height), line, font=font, fill=fill)
    result = np.asarray(picture)
    return result[..., None] if channels == 1 else result


def labelled_strip(images: np.ndarray, labels, font_size: int | None = None) -> np.ndarray:
    """uint8 [P, H, W, 3] panels side by side with one label above each -> one uint8 image."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(f"labelled_strip: expected panels [P, H, W, C], got {list(images.shape)}")
    return labelled_grid(images[None], column_labels=list(labels), font_size=font_size)
