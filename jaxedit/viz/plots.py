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


def _figure(size: tuple[int, int], layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _draw(axes, data: dict, colours: dict, markers: bool, font_size: float) -> None:
    for name, (xs, ys) in data.items():
        axes.plot(xs, ys, color=colours[name], linewidth=1.6, marker="o" if markers else None, markersize=3, label=name)
    axes.grid(True, color="0.88", linewidth=0.6)
    axes.tick_params(labelsize=font_size - 2)


def _legend_handles(colours: dict) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=colour, linewidth=1.6) for colour in colours.values()]


def _legend(figure, colours: dict, font_size: float, below: bool = False) -> None:
    """One legend outside the panels: to the right, or in a row below them (`below`)."""
    if not colours:
        return
    handles = _legend_handles(colours)
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
    The margins are measured from the texts drawn (`_GridMargins`) rather than by matplotlib's
    constrained layout, which takes seconds for 40 panels.
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
    size = (columns * panel_size[0], rows * panel_size[1])
    figure = _figure(size, layout=None)
    font_size = 9 if min(panel_size) < 300 else 11
    margins = _GridMargins(figure, font_size)
    spec = figure.add_gridspec(rows, columns)
    grid = spec.subplots(squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index >= count:
            axes.set_axis_off()
            continue
        name, data = list(checked.items())[index]
        _draw(axes, data, colours, markers, font_size)
        axes.locator_params(nbins=5)  # small panels: fewer ticks read better, and draw faster
        title_pad = 6 + margins.measure_ticks(axes, first_column=index % columns == 0)
        axes.set_title(name, fontsize=font_size, y=1.0, pad=title_pad)  # placed here: not measured again
        if index // columns == rows - 1 or index + columns >= count:
            axes.set_xlabel(xlabel, fontsize=font_size - 1)
        if index % columns == 0:
            axes.set_ylabel(ylabel, fontsize=font_size - 1)
    if title:
        margins.top += margins.suptitle(title, size[0])
    margins.legend(colours, below=bool(title))
    margins.apply(spec, size, xlabel=bool(xlabel), ylabel=bool(ylabel))
    return _write_png(figure, path)


class _GridMargins:
    """The pixel margins of a `small_multiples` grid, from the sizes of its texts as they will be
    drawn: tick labels (measured per panel), labels, panel titles, the figure title and the legend."""

    def __init__(self, figure, font_size: float):
        self.figure = figure
        self.font_size = font_size
        self.renderer = figure.canvas.get_renderer()
        self.first_ytick_width = 0.0
        self.ytick_width = 0.0
        self.top = 6.0
        self.bottom = 6.0
        self.right = 8.0
        self.offset_room = 0.0
        self.xtick_overhang = 0.0  # half the widest x tick label: the last one sticks out to the right

    def _points(self, points: float) -> float:
        return points * _DPI / 72

    def text_size(self, text: str, points: float) -> tuple[float, float]:
        """(width, height) in pixels of one line of `text` at `points`."""
        from matplotlib.font_manager import FontProperties

        width, height, _ = self.renderer.get_text_width_height_descent(text, FontProperties(size=points), ismath=False)
        return width, height

    def measure_ticks(self, axes, first_column: bool) -> float:
        """Measures the panel's y tick labels; returns the points its title must rise to clear the
        y axis's offset or scale ("1e-5") above the panel, 0 when it has none."""
        axes.get_ylim()  # autoscale now, so the locator sees the final limits
        axis = axes.yaxis
        widest = self._widest_tick_label(axis)
        if first_column:
            self.first_ytick_width = max(self.first_ytick_width, widest)
        else:
            self.ytick_width = max(self.ytick_width, widest)
        xaxis = axes.xaxis
        self.xtick_overhang = max(self.xtick_overhang, self._widest_tick_label(xaxis) / 2)
        for offset in (axis.get_offset_text(), xaxis.get_offset_text()):
            offset.set_fontsize(self.font_size - 2)
        if not axis.get_major_formatter().get_offset():
            return 0.0
        rise = 1.4 * (self.font_size - 2)
        self.offset_room = self._points(rise)
        return rise

    def _widest_tick_label(self, axis) -> float:
        """Width in pixels of the axis's widest major tick label (sets the formatter's offset)."""
        labels = axis.get_major_formatter().format_ticks(axis.get_major_locator()())
        return max((self.text_size(label, self.font_size - 2)[0] for label in labels), default=0.0)

    def suptitle(self, title: str, figure_width: float) -> float:
        """Draws the figure title (wrapped to the figure's width); returns the height it takes."""
        points = self.font_size + 2
        width, height = self.text_size(title, points)
        lines = max(1, math.ceil(width / (0.9 * figure_width)))
        self.figure.suptitle(title, fontsize=points, wrap=True, y=1 - 4 / self.figure.bbox.height, va="top")
        return lines * height * 1.3 + 4

    def legend(self, colours: dict, below: bool) -> None:
        """Draws the one legend, below the grid or to its right, and reserves its room."""
        if not colours:
            return
        points = self.font_size - 1
        handles = _legend_handles(colours)
        names = list(colours)
        if below:
            per_row = min(len(names), 6)
            rows = math.ceil(len(names) / per_row)
            self.figure.legend(
                handles, names, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=per_row, fontsize=points
            )
            self.bottom += rows * self.text_size("Hg", points)[1] * 1.6 + self._points(points) * 1.2
        else:
            self.figure.legend(
                handles, names, loc="upper right", bbox_to_anchor=(1.0, 1.0), fontsize=points, frameon=False
            )
            widest = max(self.text_size(name, points)[0] for name in names)
            self.right += widest + self._points(points) * 3.5  # the handle, the padding around it

    def apply(self, spec, size: tuple[int, int], xlabel: bool, ylabel: bool) -> None:
        """Sets the margins and spacing of the grid's `GridSpec` from what was measured. A panel's x
        label sits below the bottom row, or above an empty cell, so rows need no room for it."""
        width, height = size
        rows, columns = spec.get_geometry()
        tick_room = self._points(3.5 + 3.5)  # tick length and pad (matplotlib's defaults)
        tick_height = self.text_size("0123456789", self.font_size - 2)[1]
        label_height = self.text_size("Hg", self.font_size - 1)[1] + self._points(4)  # its pad
        title_height = self.text_size("Hg", self.font_size)[1] + self._points(6)  # its pad
        left = 4 + (label_height if ylabel else 0) + self.first_ytick_width + tick_room
        bottom = self.bottom + tick_height + tick_room + (label_height if xlabel else 0)
        top = self.top + title_height + self.offset_room
        column_gap = self.ytick_width + tick_room + self.xtick_overhang + 8
        right = self.right + self.xtick_overhang
        row_gap = tick_height + tick_room + title_height + self.offset_room + 10
        panel_width = max((width - left - right - (columns - 1) * column_gap) / columns, 10)
        panel_height = max((height - bottom - top - (rows - 1) * row_gap) / rows, 10)
        spec.update(
            left=left / width,
            right=1 - right / width,
            bottom=bottom / height,
            top=1 - top / height,
            wspace=column_gap / panel_width,
            hspace=row_gap / panel_height,
        )
        for axes in self.figure.axes:  # `update` moves only the axes of pyplot's figures
            axes.set_position(axes.get_subplotspec().get_position(self.figure))
