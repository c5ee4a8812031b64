"""Images: generator output to uint8, grids, and PNG files (Pillow only).

Generator images are float32 NHWC on the reference scale (about [-1, 1]); `to_uint8` maps
[-1, 1] -> [0, 255] with rounding and clipping, as the reference scripts do when saving.

Grids (`grid`, `labelled_grid`) keep every tile's exact pixels and separate the tiles by a thin
gutter of the background colour (`gutter_width`: 1/64 of the tile, at least 2 px). A panel
(r, c) of an R x C grid of H x W tiles starts at

    y = top + r * (caption + H + gutter) + caption,   x = left + c * (W + gutter)

where `top` is the height of the column-label band, `left` the width of the row-label band and
`caption` the height of the per-tile label band (each 0 without labels). Cells without a tile
(`grid` of a count that fills no rectangle) stay background: no filler tile is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxedit.errors import InputError
from jaxedit.io import atomic_file

BACKGROUND = 255
"""Gutters, label bands and empty cells: white."""


def to_uint8(images, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[..., H, W, C] floats in `value_range` -> uint8 [..., H, W, C] (clipped, rounded)."""
    images = np.asarray(images, dtype=np.float32)
    low, high = value_range
    scaled = (images - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def gutter_width(tile_width: int) -> int:
    """The gap between tiles `tile_width` px wide: 1/64 of the tile, at least 2 px (16 px at 1024)."""
    return max(2, round(int(tile_width) / 64))


def grid_columns(count: int) -> int:
    """Columns of a grid of `count` tiles: one row up to 5 tiles; else the fewest columns (at least
    as many as rows, at most 2.5 times as many) that leave no cell empty; else ceil(sqrt(count))."""
    if count <= 5:
        return max(count, 1)
    for columns in range(math.ceil(math.sqrt(count)), count + 1):
        if count % columns == 0:
            if columns <= 2.5 * (count // columns):
                return columns
            break
    return math.ceil(math.sqrt(count))


def grid(
    images: np.ndarray,
    columns: int | None = None,
    gutter: int | None = None,
    background: int = BACKGROUND,
    labels: Sequence[str] | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """uint8 [B, H, W, C] -> one uint8 image of the tiles in row-major order.

    columns: default `grid_columns(B)`. gutter: px between tiles (default `gutter_width(W)`).
    The cells after the last tile stay `background`. labels: one caption per tile, drawn in a
    band above it (e.g. its seed).
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(f"grid: expected images [B, H, W, C], got {list(images.shape)}")
    layout = grid_layout(images.shape[0], images.shape[1:], columns, gutter, background, labels, font_size)
    return np.concatenate(list(grid_bands(layout, [images], images.shape[0])), axis=0)


def grid_layout(
    count: int,
    tile_shape: Sequence[int],
    columns: int | None = None,
    gutter: int | None = None,
    background: int = BACKGROUND,
    labels: Sequence[str] | None = None,
    font_size: int | None = None,
) -> GridLayout:
    """The `GridLayout` of `grid` for `count` tiles of `tile_shape` [H, W, C]."""
    if count == 0:
        raise InputError("grid: no images")
    if labels is not None and len(labels) != count:
        raise InputError(f"grid: {len(labels)} labels for {count} images")
    columns = min(columns or grid_columns(count), count)
    rows = math.ceil(count / columns)
    captions = None
    if labels is not None:
        captions = [[""] * columns for _ in range(rows)]
        for index, label in enumerate(labels):
            captions[index // columns][index % columns] = str(label)
    return GridLayout(
        rows, columns, tile_shape, cell_labels=captions, font_size=font_size, background=background, gutter=gutter
    )


def grid_bands(layout: GridLayout, chunks: Iterable[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """The horizontal bands of the grid of `count` uint8 tiles arriving as `chunks` [b, H, W, C] in
    order: `layout.header()`, then one band per row as soon as its tiles have arrived, so at most
    one row of tiles (and one chunk) is held. Their concatenation is `grid` of all the tiles."""
    yield layout.header()
    columns, tile_shape = layout.columns, (layout.tile_height, layout.tile_width, layout.channels)
    row = np.full((columns, *tile_shape), layout.background, np.uint8)
    filled = row_index = 0
    for chunk in chunks:
        chunk = np.asarray(chunk)
        if chunk.shape[1:] != tile_shape or filled + row_index * columns + len(chunk) > count:
            raise ValueError(f"chunk {list(chunk.shape)} does not continue [{count}, {list(tile_shape)}]")
        while len(chunk):
            taken = min(columns - filled, len(chunk))
            row[filled : filled + taken] = chunk[:taken]
            chunk, filled = chunk[taken:], filled + taken
            if filled == columns:
                yield layout.row_band(row_index, row)
                row_index, filled = row_index + 1, 0
    if row_index * columns + filled != count:
        raise ValueError(f"{row_index * columns + filled} images given, {count} announced")
    if filled:
        row[filled:] = layout.background
        yield layout.row_band(row_index, row, np.arange(columns) < filled)


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
    background: int = BACKGROUND,
    text_color: int = 0,
    gutter: int | None = None,
    cell_labels=None,
    present: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 [R, C, H, W, 3] -> one uint8 image: the R x C panels separated by gutters, labels in bands.

    `column_labels` (C strings) go in a band above the panels, `row_labels` (R strings) in a band
    to their left, `cell_labels` (R lists of C strings) in a band above each row, one per panel;
    labels wrap to fit. The panels keep their exact pixels, at the offsets of the module docstring;
    `gutter` px between them (default `gutter_width(W)`). `present` (bool [R, C]): cells to draw
    (others stay `background`). Font: Pillow's built-in one, size `font_size` (default about W/7,
    at least 9 px).
    """
    images = np.asarray(images)
    if images.ndim != 5 or images.dtype != np.uint8:
        raise InputError(
            f"labelled_grid: expected uint8 panels [R, C, H, W, C_img], got {images.dtype} {list(images.shape)}"
        )
    rows, columns = images.shape[:2]
    present = np.ones((rows, columns), bool) if present is None else np.asarray(present, bool)
    if present.shape != (rows, columns):
        raise InputError(f"labelled_grid: present must be [{rows}, {columns}], got {list(present.shape)}")
    layout = GridLayout(
        rows,
        columns,
        images.shape[2:],
        column_labels=column_labels,
        row_labels=row_labels,
        cell_labels=cell_labels,
        font_size=font_size,
        background=background,
        text_color=text_color,
        gutter=gutter,
    )
    bands = [layout.header()] + [layout.row_band(r, images[r], present[r]) for r in range(rows)]
    return np.concatenate(bands, axis=0)


class GridLayout:
    """The geometry and labels of a `labelled_grid`, drawn one horizontal band at a time.

    The image is `header()` (the column-label band, [top, width, C]) followed by `row_band(r, ...)`
    for r = 0 .. R-1 (caption band, panels, then a gutter below every row but the last), so a grid
    of any number of rows can be written while holding one row of panels (`grid_bands`).
    """

    def __init__(
        self,
        rows: int,
        columns: int,
        tile_shape,
        column_labels=None,
        row_labels=None,
        cell_labels=None,
        font_size: int | None = None,
        background: int = BACKGROUND,
        text_color: int = 0,
        gutter: int | None = None,
    ):
        height, width, channels = (int(d) for d in tile_shape)
        if column_labels is not None and len(column_labels) != columns:
            raise InputError(f"labelled_grid: {len(column_labels)} column labels for {columns} columns")
        if row_labels is not None and len(row_labels) != rows:
            raise InputError(f"labelled_grid: {len(row_labels)} row labels for {rows} rows")
        if cell_labels is not None and (len(cell_labels) != rows or any(len(row) != columns for row in cell_labels)):
            raise InputError(f"labelled_grid: cell labels must be {rows} rows of {columns}")
        self.gutter = gutter_width(width) if gutter is None else int(gutter)
        if self.gutter < 0:
            raise InputError(f"labelled_grid: gutter must be >= 0, got {self.gutter}")
        self.rows, self.columns = rows, columns
        self.tile_height, self.tile_width, self.channels = height, width, channels
        self.background, self.text_color = background, text_color
        size = font_size or max(9, round(width / 7))
        self.font = _label_font(size)
        self.pad = max(2, size // 4)
        self.line_height = size + max(1, size // 5)
        self.column_lines = self._lines_of(column_labels) if column_labels is not None else []
        self.top = self._band_height(self.column_lines)
        self.caption_lines = [self._lines_of(row) for row in cell_labels] if cell_labels is not None else []
        self.caption = max((self._band_height(row) for row in self.caption_lines), default=0)
        left = min(2 * width, max(width // 2, 1) * 3) if row_labels is not None else 0
        pad = self.pad
        self.row_lines = (
            [_wrap_label(str(t), self.font, left - 2 * pad) for t in row_labels] if row_labels is not None else []
        )
        if self.row_lines:
            widest = max(int(self.font.getlength(line)) for lines in self.row_lines for line in lines)
            left = min(left, widest + 2 * pad)
        self.left = left
        self.step_y, self.step_x = self.caption + height + self.gutter, width + self.gutter
        self.shape = (self.top + rows * self.step_y - self.gutter, left + columns * self.step_x - self.gutter, channels)
        """[height, width, C] of the whole grid."""

    def _lines_of(self, labels) -> list[list[str]]:
        return [_wrap_label(str(t), self.font, self.tile_width - 2 * self.pad) if str(t) else [] for t in labels]

    def _band_height(self, lines: list[list[str]]) -> int:
        most = max((len(cell) for cell in lines), default=0)
        return most * self.line_height + 2 * self.pad if most else 0

    def header(self) -> np.ndarray:
        """uint8 [top, width, C]: the column-label band (no rows when there are no column labels)."""
        band = np.full((self.top, self.shape[1], self.channels), self.background, np.uint8)
        return self._draw(band, lambda draw: self._centred_rows(draw, self.column_lines, self.pad))

    def row_band(self, r: int, panels: np.ndarray, present=None) -> np.ndarray:
        """uint8 [caption + H (+ gutter unless r is the last row), width, C]: row `r` of panels
        `panels` [C, H, W, C_img]; `present` (bool [C]) the cells drawn (default all)."""
        height, width = self.tile_height, self.tile_width
        last = r == self.rows - 1
        band = np.full(
            (self.caption + height + (0 if last else self.gutter), self.shape[1], self.channels),
            self.background,
            np.uint8,
        )
        for c in range(self.columns):
            if present is None or present[c]:
                x = self.left + c * self.step_x
                band[self.caption : self.caption + height, x : x + width] = panels[c]

        def labels(draw) -> None:
            if self.caption_lines:
                self._centred_rows(draw, self.caption_lines[r], self.pad)
            if self.row_lines:
                lines = self.row_lines[r]
                y0 = self.caption + (height - len(lines) * self.line_height) / 2
                for i, line in enumerate(lines):
                    draw.text((self.pad, y0 + i * self.line_height), line, font=self.font, fill=self._fill())

        return self._draw(band, labels)

    def _fill(self):
        return self.text_color if self.channels == 1 else (self.text_color,) * self.channels

    def _centred_rows(self, draw, cells: list[list[str]], y0: float) -> None:
        for c, lines in enumerate(cells):
            x0 = self.left + c * self.step_x
            for i, line in enumerate(lines):
                x = x0 + (self.tile_width - self.font.getlength(line)) / 2
                draw.text((x, y0 + i * self.line_height), line, font=self.font, fill=self._fill())

    def _draw(self, band: np.ndarray, draw_labels) -> np.ndarray:
        """`band` with the text `draw_labels(ImageDraw)` draws (no text: `band` as it is)."""
        from PIL import Image, ImageDraw

        if band.shape[0] == 0:
            return band
        picture = Image.fromarray(band[..., 0] if self.channels == 1 else band)
        draw_labels(ImageDraw.Draw(picture))
        result = np.asarray(picture)
        return result[..., None] if self.channels == 1 else result


def labelled_strip(images: np.ndarray, labels, font_size: int | None = None) -> np.ndarray:
    """uint8 [P, H, W, 3] panels side by side with one label above each -> one uint8 image."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(f"labelled_strip: expected panels [P, H, W, C], got {list(images.shape)}")
    return labelled_grid(images[None], column_labels=list(labels), font_size=font_size)
