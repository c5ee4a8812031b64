"""Small line plots drawn with Pillow (no matplotlib): loss curves, alpha sweeps.

`line_plot` draws one panel with several named series and a legend and writes a PNG;
`small_multiples` lays out one such panel per key (e.g. per attribute) in a grid. Both take
`series: {name: (xs, ys)}` with `xs`, `ys` 1-D sequences of equal length; non-finite points are
skipped (a curve breaks there) so a diverged run still plots.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxedit.errors import InputError
from jaxedit.io import atomic_file

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]

PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
_BACKGROUND = (255, 255, 255)
_INK = (40, 40, 40)
_GRID = (225, 225, 225)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick positions covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * abs(step):
        ticks.append(round(value, 12))
        value += step
    return ticks


def _format_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def _checked_series(series: Series) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    checked = {}
    for name, pair in series.items():
        if len(pair) != 2:
            raise InputError(f"plot series {name!r}: expected (xs, ys), got {len(pair)} items")
        xs = np.asarray(pair[0], dtype=np.float64).reshape(-1)
        ys = np.asarray(pair[1], dtype=np.float64).reshape(-1)
        if xs.shape != ys.shape:
            raise InputError(f"plot series {name!r}: xs has {xs.size} points, ys has {ys.size}")
        checked[str(name)] = (xs, ys)
    return checked


def draw_panel(
    image: Image.Image,
    box: tuple[int, int, int, int],
    series: Series,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    legend: bool = True,
    font_size: int = 12,
) -> None:
    """Draw one line-plot panel into `box` = (left, top, right, bottom) of `image`."""
    data = _checked_series(series)
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    small = _font(max(font_size - 2, 8))
    left, top, right, bottom = box
    plot_left = left + 8 * font_size // 2 + 24
    plot_right = right - 10
    plot_top = top + (font_size + 10 if title else 8)
    plot_bottom = bottom - (2 * font_size + 14 if xlabel else font_size + 12)
    if title:
        draw.text(((left + right) // 2, top + 2), title, fill=_INK, font=font, anchor="ma")
    if xlabel:
        draw.text(((plot_left + plot_right) // 2, bottom - 4), xlabel, fill=_INK, font=small, anchor="md")
    if ylabel:
        label = Image.new("RGBA", (max(plot_bottom - plot_top, 1), font_size + 4), (0, 0, 0, 0))
        ImageDraw.Draw(label).text((label.width // 2, 0), ylabel, fill=_INK, font=small, anchor="ma")
        rotated = label.rotate(90, expand=True)
        image.paste(rotated, (left + 2, plot_top), rotated)

    finite = [
        (xs[np.isfinite(xs) & np.isfinite(ys)], ys[np.isfinite(xs) & np.isfinite(ys)]) for xs, ys in data.values()
    ]
    all_x = np.concatenate([f[0] for f in finite]) if finite else np.zeros(0)
    all_y = np.concatenate([f[1] for f in finite]) if finite else np.zeros(0)
    if all_x.size == 0:
        x_low, x_high, y_low, y_high = 0.0, 1.0, 0.0, 1.0
    else:
        x_low, x_high = float(all_x.min()), float(all_x.max())
        y_low, y_high = float(all_y.min()), float(all_y.max())
    if x_high <= x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    if y_high <= y_low:
        pad = abs(y_low) * 0.05 or 0.5
        y_low, y_high = y_low - pad, y_high + pad
    y_pad = 0.04 * (y_high - y_low)
    y_low, y_high = y_low - y_pad, y_high + y_pad

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = plot_left + (x - x_low) / (x_high - x_low) * (plot_right - plot_left)
        py = plot_bottom - (y - y_low) / (y_high - y_low) * (plot_bottom - plot_top)
        return px, py

    for tick in _nice_ticks(y_low, y_high):
        _, py = to_pixel(x_low, tick)
        draw.line([(plot_left, py), (plot_right, py)], fill=_GRID)
        draw.text((plot_left - 4, py), _format_tick(tick), fill=_INK, font=small, anchor="rm")
    for tick in _nice_ticks(x_low, x_high):
        px, _ = to_pixel(tick, y_low)
        draw.line([(px, plot_top), (px, plot_bottom)], fill=_GRID)
        draw.text((px, plot_bottom + 3), _format_tick(tick), fill=_INK, font=small, anchor="ma")
    draw.rectangle([plot_left, plot_top, plot_right, plot_bottom], outline=_INK)

    for index, (xs, ys) in enumerate(data.values()):
        color = PALETTE[index % len(PALETTE)]
        good = np.isfinite(xs) & np.isfinite(ys)
        run: list[tuple[float, float]] = []
        for x, y, ok in zip(xs, ys, good):
            if ok:
                run.append(to_pixel(float(x), float(y)))
            else:
                _draw_run(draw, run, color)
                run = []
        _draw_run(draw, run, color)

    if legend and data:
        y = plot_top + 4
        widest = max(draw.textlength(name, font=small) for name in data)
        draw.rectangle(
            [plot_right - 114, plot_top + 2, plot_right - 84 + widest + 4, plot_top + 6 + len(data) * (font_size + 2)],
            fill=_BACKGROUND,
            outline=_GRID,
        )
        for index, name in enumerate(data):
            color = PALETTE[index % len(PALETTE)]
            draw.line(
                [(plot_right - 110, y + font_size // 2), (plot_right - 92, y + font_size // 2)], fill=color, width=2
            )
            draw.text((plot_right - 88, y), name, fill=_INK, font=small)
            y += font_size + 2


def _draw_run(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], color: tuple[int, int, int]) -> None:
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
    elif len(points) > 1:
        draw.line(points, fill=color, width=2)


def _write_png(image: Image.Image, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_file(path) as staging:
        image.save(staging, format="PNG")
    return path


def line_plot(
    series: Series,
    title: str,
    xlabel: str,
    ylabel: str,
    path: str | os.PathLike,
    size: tuple[int, int] = (640, 420),
) -> Path:
    """One panel with a line per named series (and a legend) written to `path` as PNG."""
    image = Image.new("RGB", size, _BACKGROUND)
    draw_panel(image, (0, 0, size[0], size[1]), series, title, xlabel, ylabel)
    return _write_png(image, path)


def small_multiples(
    panels: Mapping[str, Series],
    path: str | os.PathLike,
    xlabel: str = "",
    ylabel: str = "",
    columns: int | None = None,
    panel_size: tuple[int, int] = (320, 220),
    title: str = "",
) -> Path:
    """A grid with one panel per key of `panels` (its title), each `{series name: (xs, ys)}`."""
    if not panels:
        raise InputError("small_multiples: no panels to draw")
    count = len(panels)
    columns = columns or min(count, max(1, math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    header = 28 if title else 0
    width, height = panel_size
    image = Image.new("RGB", (columns * width, rows * height + header), _BACKGROUND)
    if title:
        ImageDraw.Draw(image).text((image.width // 2, 6), title, fill=_INK, font=_font(16), anchor="ma")
    for index, (name, series) in enumerate(panels.items()):
        row, column = divmod(index, columns)
        box = (column * width, header + row * height, (column + 1) * width, header + (row + 1) * height)
        draw_panel(image, box, series, title=str(name), xlabel=xlabel, ylabel=ylabel, font_size=11)
    return _write_png(image, path)
