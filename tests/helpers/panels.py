"""Where the panels of a labelled grid are, for tests that check a panel's pixels."""

from __future__ import annotations

from collections.abc import Sequence

from jaxedit.viz.grid import gutter_width


def panel_origin(
    shape: Sequence[int], rows: int, columns: int, tile: Sequence[int], row: int, column: int, gutter: int | None = None
) -> tuple[int, int]:
    """(y, x) of panel (row, column) in a `labelled_grid` image of `shape` without cell labels:
    the label bands sit above and to the left, so they follow from the image size."""
    height, width = int(tile[0]), int(tile[1])
    gutter = gutter_width(width) if gutter is None else int(gutter)
    top = int(shape[0]) - rows * height - (rows - 1) * gutter
    left = int(shape[1]) - columns * width - (columns - 1) * gutter
    return top + row * (height + gutter), left + column * (width + gutter)
