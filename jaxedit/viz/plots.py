"""Line plots drawn with matplotlib (Agg, no pyplot state): loss curves, strength sweeps, trade-off curves.

`line_plot` draws one panel with several named series and writes a PNG; `small_multiples` lays
out one panel per key (e.g. per attribute) in a grid with one shared legend. Both take
`series: {name: (xs, ys)}` with `xs`, `ys` 1-D sequences of equal length; non-finite points are
skipped (a curve breaks there) so a diverged run still plots. Legends sit outside the data, to
the right of the panels; a series keeps its colour (`PALETTE`, in order of first appearance) in
every panel of a figure. Figures are exactly the requested pixel size (100 dpi).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

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
"""Series colours as RGB 0..255 (matplotlib's tab10)."""

_DPI = 100


def _checked_series(series: Series) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    checked = {}
    for name, pair in series.items():
        if len(pair) != 2:
            raise InputError(f"plot series {name!r}: expected (xs, ys), got {len(pair)} items")
        xs = np.asarray(pair[0], dtype=np.float64).reshape(-1)
        ys = np.asarray(pair[1], dtype=np.float64).reshape(-1)
        if xs.shape != ys.shape:
            raise InputError(f"plot series {name!r}: xs has {xs.size} points, ys has {ys.size}")
        bad = ~(np.isfinite(xs) & np.isfinite(ys))
        checked[str(name)] = (np.where(bad, np.nan, xs), np.where(bad, np.nan, ys))
    return checked


def _colour(index: int) -> tuple[float, float, float]:
    return tuple(c / 255 for c in PALETTE[index % len(PALETTE)])


def _figure(size: tuple[int, int]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw(axes, data: dict, colours: dict, markers: bool, font_size: float) -> None:
    for name, (xs, ys) in data.items():
        axes.plot(xs, ys, color=colours[name], linewidth=1.6, marker="o" if markers else None, markersize=3, label=name)
    axes.grid(True, color="0.88", linewidth=0.6)
    axes.tick_params(labelsize=font_size - 2)


def _legend(figure, colours: dict, font_size: float, below: bool = False) -> None:
    """One legend outside the panels: to the right, or in a row below them (`below`)."""
    from matplotlib.lines import Line2D

    if not colours:
        return
    handles = [Line2D([], [], color=colour, linewidth=1.6) for colour in colours.values()]
    if below:
        figure.legend(
            handles, list(colours), loc="outside lower center", ncols=min(len(colours), 6), fontsize=font_size - 1
        )
    else:
        figure.legend(handles, list(colours), loc="outside right upper", fontsize=font_size - 1, frameon=False)


def _write_png(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_file(path) as staging:
        figure.savefig(staging, format="png", dpi=_DPI)
    return path


def line_plot(
    series: Series,
    title: str,
    xlabel: str,
    ylabel: str,
    path: str | os.PathLike,
    size: tuple[int, int] = (640, 420),
    markers: bool = False,
) -> Path:
    """One panel with a line per named series (legend outside, on the right) written to `path` as PNG."""
    data = _checked_series(series)
    colours = {name: _colour(i) for i, name in enumerate(data)}
    figure = _figure(size)
    axes = figure.add_subplot()
    _draw(axes, data, colours, markers, 11)
    axes.set_title(title, fontsize=11)
    axes.set_xlabel(xlabel, fontsize=10)
    axes.set_ylabel(ylabel, fontsize=10)
    _legend(figure, colours, 11)
    return _write_png(figure, path)


def small_multiples(
    panels: Mapping[str, Series],
    path: str | os.PathLike,
    xlabel: str = "",
    ylabel: str = "",
    columns: int | None = None,
    panel_size: tuple[int, int] = (320, 220),
    title: str = "",
    markers: bool = False,
) -> Path:
    """A grid with one panel per key of `panels` (its title), each `{series name: (xs, ys)}`.

    The image is `columns * panel_size[0]` x `rows * panel_size[1]` pixels; one legend for all
    panels sits below the grid when there is a `title` (so the two never meet), else to its right.
    """
    if not panels:
        raise InputError("small_multiples: no panels to draw")
    checked = {str(name): _checked_series(series) for name, series in panels.items()}
    count = len(checked)
    columns = columns or min(count, max(1, math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    colours: dict[str, tuple[float, float, float]] = {}
    for data in checked.values():
        for name in data:
            colours.setdefault(name, _colour(len(colours)))
    figure = _figure((columns * panel_size[0], rows * panel_size[1]))
    grid = figure.subplots(rows, columns, squeeze=False)
    font_size = 9 if min(panel_size) < 300 else 11
    for index, axes in enumerate(grid.flat):
        if index >= count:
            axes.set_axis_off()
            continue
        name, data = list(checked.items())[index]
        _draw(axes, data, colours, markers, font_size)
        axes.set_title(name, fontsize=font_size)
        if index // columns == rows - 1 or index + columns >= count:
            axes.set_xlabel(xlabel, fontsize=font_size - 1)
        if index % columns == 0:
            axes.set_ylabel(ylabel, fontsize=font_size - 1)
    if title:
        figure.suptitle(title, fontsize=font_size + 2, wrap=True)
    _legend(figure, colours, font_size, below=bool(title))
    return _write_png(figure, path)
