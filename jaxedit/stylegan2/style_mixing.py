"""The style-mixing figure (`jaxedit generate --style-mix ROWS:COLUMNS[:LAYER]`).

Cell (r, c) of the figure renders `mix_styles(w_c, w_r, LAYER)`: the column seed's styles on the
W+ layers below LAYER (coarse: pose, face shape, hair style) and the row seed's from LAYER on
(finer: colours, lighting, texture). LAYER defaults to 7, so layers 0-6 come from the column
seed, as in NVlabs' `style_mixing.py` (`--styles=0-6`). The figure's first row shows the column
seeds, its first column the row seeds; the corner stays empty. Seeds pick z as `jaxedit generate`
does (`numpy.random.RandomState(seed).randn(z_dim)`), and truncation applies to every w.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxedit.errors import InputError
from jaxedit.stylegan2.networks import mix_styles
from jaxedit.stylegan2.render import parse_seeds, render, z_from_seeds

DEFAULT_LAYER = 7
"""Column seeds give layers 0-6 (NVlabs' `style_mixing.py` default `--styles=0-6`)."""
MAX_CELLS = 1024
"""Mixed images in one figure (all are rendered and held in memory)."""


@dataclasses.dataclass(frozen=True)
class StyleMix:
    """row_seeds, column_seeds: the seeds; layer: the first W+ layer taken from the row seed
    (None: `default_layer`)."""

    row_seeds: tuple[int, ...]
    column_seeds: tuple[int, ...]
    layer: int | None = None


def parse_style_mix(text: str) -> StyleMix:
    """'0-3:10,11[:7]' -> StyleMix((0, 1, 2, 3), (10, 11), 7)."""
    parts = str(text).split(":")
    if len(parts) not in (2, 3):
        raise InputError(f"style mix {text!r}: expected ROW_SEEDS:COLUMN_SEEDS[:LAYER], e.g. 0-3:10-13:7")
    rows, columns = parse_seeds(parts[0]), parse_seeds(parts[1])
    if len(rows) * len(columns) > MAX_CELLS:
        raise InputError(f"style mix {text!r}: {len(rows)} x {len(columns)} mixes, at most {MAX_CELLS} in one figure")
    layer = None
    if len(parts) == 3:
        try:
            layer = int(parts[2])
        except ValueError:
            raise InputError(f"style mix {text!r}: LAYER {parts[2]!r} is not an integer") from None
    return StyleMix(tuple(rows), tuple(columns), layer)


def default_layer(num_ws: int) -> int:
    """`DEFAULT_LAYER`, or half the W+ layers for a generator with fewer than 8."""
    return DEFAULT_LAYER if num_ws > DEFAULT_LAYER else max(1, num_ws // 2)


def check_layer(layer: int, num_ws: int) -> int:
    if not 1 <= layer < num_ws:
        raise InputError(
            f"style mix layer {layer}: expected 1..{num_ws - 1} (both seeds must give at least one of the "
            f"{num_ws} W+ layers)"
        )
    return layer


def style_mix_latents(
    generator: Any, mix: StyleMix, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows [R, num_ws, w_dim], columns [C, num_ws, w_dim], mixed [R, C, num_ws, w_dim]) W+
    latents; mixed[r, c] = mix_styles(columns[c], rows[r], layer)."""
    layer = check_layer(default_layer(generator.num_ws) if mix.layer is None else mix.layer, generator.num_ws)
    seeds = [*mix.row_seeds, *mix.column_seeds]  # one mapping call for both
    ws = np.asarray(generator.mapping(z_from_seeds(seeds, generator.z_dim), truncation_psi, truncation_cutoff))
    rows, columns = ws[: len(mix.row_seeds)], ws[len(mix.row_seeds) :]
    count_r, count_c = len(rows), len(columns)
    first = jnp.repeat(jnp.asarray(columns)[None], count_r, axis=0).reshape((-1,) + columns.shape[1:])
    second = jnp.repeat(jnp.asarray(rows)[:, None], count_c, axis=1).reshape((-1,) + rows.shape[1:])
    mixed = np.asarray(mix_styles(first, second, layer)).reshape((count_r, count_c) + rows.shape[1:])
    return rows, columns, mixed


def style_mix_figure(
    generator: Any,
    mix: StyleMix,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 8,
    labels: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """The figure as one uint8 image [H', W', 3] (module docstring): (R + 1) x (C + 1) cells with
    thin gutters, the corner empty; `labels`: seed numbers above the columns and left of the rows."""
    from jaxedit.viz.grid import labelled_grid, to_uint8

    rows, columns, mixed = style_mix_latents(generator, mix, truncation_psi, truncation_cutoff)
    count_r, count_c = len(rows), len(columns)
    ws = np.concatenate([columns, rows, mixed.reshape((-1,) + rows.shape[1:])])
    images = to_uint8(render(generator, ws, "ws", noise_mode=noise_mode, batch_size=batch_size, progress=progress))
    cells = np.full((count_r + 1, count_c + 1) + images.shape[1:], 255, np.uint8)
    cells[0, 1:] = images[:count_c]
    cells[1:, 0] = images[count_c : count_c + count_r]
    cells[1:, 1:] = images[count_c + count_r :].reshape((count_r, count_c) + images.shape[1:])
    present = np.ones(cells.shape[:2], bool)
    present[0, 0] = False
    column_labels = row_labels = None
    if labels:
        column_labels = ["", *(f"seed {s}" for s in mix.column_seeds)]
        row_labels = ["", *(f"seed {s}" for s in mix.row_seeds)]
    return labelled_grid(cells, column_labels=column_labels, row_labels=row_labels, present=present)


def describe(mix: StyleMix, num_ws: int) -> str:
    layer = default_layer(num_ws) if mix.layer is None else mix.layer
    return (
        f"{len(mix.row_seeds)} x {len(mix.column_seeds)} style mixes: layers 0-{layer - 1} from the column seeds, "
        f"{layer}-{num_ws - 1} from the row seeds"
    )
