"""From edits to pictures: what `jaxedit edit` renders, as library functions.

- `edit_strip(...)`: input + one panel per sequential step, as a labelled strip (one row per face).
- `edit_sweep(...)`: a progressive edit as rows of frames (one row per face, alphas left to right).
- `method_sweep(...)`: the latents of a sweep, for one method (the frames of a sweep video).

Both pictures take `methods`: OURS (the editors' transformers) and/or baselines
(`jaxedit.editing.directions.LinearDirections`, fitted by `jaxedit.eval.baselines.fit_linear_directions`),
one picture row per face and method, so the methods are compared on the same faces and steps.
The faces are W or W+ latents (`jaxedit.editing.requests`): W latents given to W+ editors are
repeated over the layers; W+ latents whose layers are all equal (what `mapping` returns) are
given to W editors as W. `EditResult.latents` are the generator's W+ latents of every panel,
`[panels, rows, num_ws, w_dim]` (panel 0 is the input in a strip; rows face by face, one per
method), what `jaxedit edit --save-latents` writes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxedit.editing import edits as edit
from jaxedit.errors import ConfigError, InputError


@dataclasses.dataclass(frozen=True)
class EditResult:
    """A rendered edit: the picture, its panels' latents and labels, and any strength warnings."""

    image: np.ndarray  # uint8 [H', W', 3], labels included
    latents: np.ndarray  # float32 [panels, B, num_ws, w_dim]
    column_labels: tuple[str, ...]
    row_labels: tuple[str, ...] | None
    warnings: tuple[str, ...]


def _alpha_label(attribute: str, alpha: float) -> str:
    return f"+{attribute} {alpha:g}"


def render_panels(generator: Any, ws: np.ndarray, noise_mode: str, batch_size: int = 8) -> np.ndarray:
    """uint8 `[N, H, W, 3]` from W+ `[N, num_ws, w_dim]`."""
    from jaxedit.viz.grid import to_uint8

    images = [
        np.asarray(generator.synthesis(jnp.asarray(ws[i : i + batch_size]), noise_mode))
        for i in range(0, len(ws), batch_size)
    ]
    return to_uint8(np.concatenate(images, axis=0))


OURS = "ours"
"""The method name of the trained (or converted) editors in `methods` lists."""


def _method_name(method: Any) -> str:
    return OURS if method == OURS else method.name


def _layer_range(editors: Any, generator: Any, layers: Any) -> tuple[int, ...] | None:
    """The W+ layers an edit takes: `layers`, else the editors' preset default (None: all)."""
    return edit.parse_layers(layers, generator.num_ws) if layers is not None else edit.default_layers(editors)


def _run_sequence(
    editors: Any,
    generator: Any,
    latents: np.ndarray,
    steps: Sequence[tuple[str, float]],
    layers: Any,
    method: Any = OURS,
) -> tuple[list[np.ndarray], list[str]]:
    """Generator W+ latents of the input and of each step, and the step labels (canonical names).

    `method`: OURS (the editors' transformers) or a `LinearDirections` baseline, which moves the
    same W+ layers as ours would (`layers`, else the editors' default)."""
    num_ws = generator.num_ws
    editor_latents = edit.to_editor_space(latents, editors.latent_shape)
    names = [tuple(editors.attributes)[edit.resolve_attribute(editors, name)] for name, _ in steps]
    labels = [_alpha_label(name, alpha) for name, (_, alpha) in zip(names, steps)]
    start = edit.to_generator_ws(editor_latents, num_ws)
    if method != OURS:
        panels, current, layer_range = [start], np.asarray(start), _layer_range(editors, generator, layers)
        for name, (_, alpha) in zip(names, steps):
            edit.warn_if_extreme(alpha)
            current = method.apply(current, name, alpha, layer_range)
            panels.append(current)
        return [np.asarray(p) for p in panels], labels
    space_is_w = len(tuple(editors.latent_shape)) == 1
    layer_range = edit.parse_layers(layers, num_ws) if layers is not None else None
    outputs = (
        edit.apply_sequence(editors, editor_latents, steps, layers=None if space_is_w else layer_range) if steps else []
    )
    panels = [start] + [edit.to_generator_ws(out, num_ws) for out in outputs]
    if space_is_w and layer_range is not None:
        panels = [start] + [edit.restrict_to_layers(start, panel, layer_range) for panel in panels[1:]]
    return [np.asarray(p) for p in panels], labels


def _lead_images(panels: np.ndarray, pictures: np.ndarray, batch: int) -> np.ndarray:
    """`pictures` as uint8 [B, H, W, 3] matching the rendered panels [B, H, W, 3]."""
    pictures = np.asarray(pictures)
    expected = (batch,) + tuple(panels.shape[-3:])
    if pictures.dtype != np.uint8 or pictures.shape != expected:
        raise InputError(f"lead panels: expected uint8 {list(expected)}, got {pictures.dtype} {list(pictures.shape)}")
    return pictures


def _row_labels(batch: int, face_labels: Sequence[str] | None, methods: Sequence[Any]) -> list[str] | None:
    """One label per picture row (face by face, one row per method): the face's label (its seed;
    'latent i' for several unnamed latents) and the method's name when there are several."""
    if face_labels is not None and len(face_labels) != batch:
        raise InputError(f"{len(face_labels)} face labels for {batch} latents")
    faces = (
        list(face_labels) if face_labels is not None else [f"latent {i}" for i in range(batch)] if batch > 1 else [""]
    )
    names = [_method_name(m) for m in methods] if len(methods) > 1 else [""]
    labels = [f"{face} {name}".strip() for face in faces for name in names]
    return labels if any(labels) else None


def _check_methods(methods: Sequence[Any]) -> list[Any]:
    methods = list(methods)
    if not methods:
        raise ConfigError("no editing method: give 'ours' and/or baselines")
    names = [_method_name(m) for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"editing methods named twice: {', '.join(names)}")
    return methods


def _by_rows(per_method: list[np.ndarray]) -> np.ndarray:
    """[M] x [P, B, ...] -> [P, B * M, ...], rows face by face (face b, method m at b * M + m)."""
    stacked = np.stack(per_method, axis=2)  # [P, B, M, ...]
    return stacked.reshape(stacked.shape[:1] + (-1,) + stacked.shape[3:])


def sequence_latents(
    generator: Any,
    editors: Any,
    latents: np.ndarray,
    steps: Sequence[tuple[str, float]],
    layers: Any = None,
    methods: Sequence[Any] = (OURS,),
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """What `edit_strip` renders, without rendering: (W+ latents `[P, B * M, num_ws, w_dim]` of the
    input and of each step, rows face by face with one per method; the step labels; the
    alpha-range warnings)."""
    if not steps:
        raise ConfigError("nothing to edit: no edit steps")
    edit.check_compatible(editors, generator)
    methods = _check_methods(methods)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", edit.AlphaRangeWarning)
        runs = [_run_sequence(editors, generator, latents, steps, layers, method) for method in methods]
    messages = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, edit.AlphaRangeWarning))
    return _by_rows([np.stack(panels) for panels, _ in runs]), tuple(runs[0][1]), tuple(messages)


def edit_strip(
    generator: Any,
    editors: Any,
    latents: np.ndarray,
    steps: Sequence[tuple[str, float]],
    layers: Any = None,
    noise_mode: str = "const",
    face_labels: Sequence[str] | None = None,
    input_label: str = "input",
    lead_panels: Sequence[tuple[str, np.ndarray]] = (),
    methods: Sequence[Any] = (OURS,),
    labels: bool = True,
) -> EditResult:
    """Input, then one panel per step (each step edits the previous result): a labelled strip.

    `latents`: W `[B, w_dim]` or W+ `[B, num_ws, w_dim]` of `generator`; one strip row per latent
    and method (face by face). `layers`: W+ layers that take each edit ("0-10"; None: the
    editors' preset default). For W editors the chain runs in W and each panel keeps the input's
    values outside `layers`. `methods`: OURS and/or `LinearDirections` baselines, one row each.
    `face_labels`: one row label per latent (e.g. "seed 3"). `input_label`: the first rendered
    panel's label; `lead_panels`: (label, uint8 [B, H, W, 3]) pictures shown before it (an encoded
    photo's crop), without latents of their own. `labels=False`: the panels without label bands.
    """
    methods = _check_methods(methods)
    stacked, step_labels, alpha_warnings = sequence_latents(generator, editors, latents, steps, layers, methods)
    count, rows = stacked.shape[:2]
    batch, per_face = rows // len(methods), len(methods)
    unique = np.concatenate([stacked[0, ::per_face], stacked[1:].reshape((-1,) + stacked.shape[2:])])
    rendered = render_panels(generator, unique, noise_mode)  # one call; the input once per face
    inputs, edited = rendered[:batch], rendered[batch:].reshape((count - 1, rows) + rendered.shape[1:])
    images = np.concatenate([np.repeat(inputs, per_face, axis=0)[None], edited])
    images = images.transpose(1, 0, 2, 3, 4)  # [rows, P, H, W, 3]
    from jaxedit.viz.grid import labelled_grid

    column_labels = [input_label, *step_labels]
    if lead_panels:
        lead = np.stack(
            [np.repeat(_lead_images(inputs, pictures, batch), per_face, axis=0) for _, pictures in lead_panels], axis=1
        )
        images = np.concatenate([lead, images], axis=1)
        column_labels = [label for label, _ in lead_panels] + column_labels
    row_labels = _row_labels(batch, face_labels, methods)
    picture = labelled_grid(
        images, column_labels=column_labels if labels else None, row_labels=row_labels if labels else None
    )
    return EditResult(
        picture,
        stacked,
        tuple(column_labels),
        None if row_labels is None else tuple(row_labels),
        alpha_warnings,
    )


def _sweep_latents(
    editors: Any, generator: Any, base_ws: np.ndarray, attribute: str, alphas: np.ndarray, layers: Any, method: Any
) -> np.ndarray:
    """W+ `[A, B, num_ws, w_dim]`: `base_ws` [B, num_ws, w_dim] edited by `method` at each alpha."""
    num_ws = generator.num_ws
    if method != OURS:
        edit.warn_if_extreme(alphas)
        layer_range = _layer_range(editors, generator, layers)
        return np.stack([method.apply(base_ws, attribute, float(a), layer_range) for a in alphas])
    base = edit.to_editor_space(base_ws, editors.latent_shape)
    space_is_w = len(tuple(editors.latent_shape)) == 1
    layer_range = edit.parse_layers(layers, num_ws) if layers is not None else None
    swept = edit.sweep(editors, base, attribute, alphas, layers=None if space_is_w else layer_range)  # [A, B, ...]
    ws = np.stack([np.asarray(edit.to_generator_ws(row, num_ws)) for row in swept])
    if space_is_w and layer_range is not None:
        start = np.asarray(edit.to_generator_ws(base, num_ws))
        ws = np.stack([np.asarray(edit.restrict_to_layers(start, row, layer_range)) for row in ws])
    return ws


def method_sweep(
    editors: Any,
    generator: Any,
    latents: np.ndarray,
    attribute: str,
    alphas: np.ndarray,
    steps: Sequence[tuple[str, float]] = (),
    layers: Any = None,
    method: Any = OURS,
) -> tuple[np.ndarray, list[str]]:
    """(W+ `[A, B, num_ws, w_dim]`, step labels): `latents` edited by `steps`, then by `attribute`
    at each alpha, all with `method`."""
    step_labels: list[str] = []
    if steps:
        panels, step_labels = _run_sequence(editors, generator, latents, steps, layers, method)
        base = panels[-1]
    else:
        base = np.asarray(edit.to_generator_ws(edit.to_editor_space(latents, editors.latent_shape), generator.num_ws))
    return _sweep_latents(editors, generator, base, attribute, alphas, layers, method), step_labels


def edit_sweep(
    generator: Any,
    editors: Any,
    latents: np.ndarray,
    attribute: str,
    alphas: Sequence[float],
    steps: Sequence[tuple[str, float]] = (),
    layers: Any = None,
    noise_mode: str = "const",
    face_labels: Sequence[str] | None = None,
    lead_panels: Sequence[tuple[str, np.ndarray]] = (),
    methods: Sequence[Any] = (OURS,),
    labels: bool = True,
) -> EditResult:
    """A progressive edit of `attribute` over `alphas`, applied after the `steps` (if any).

    A labelled grid of rows of frames: one row per latent and method (face by face), one column
    per alpha ("Smiling -1.5", ...), left to right. `lead_panels`: (label, uint8 [B, H, W, 3])
    columns shown before the frames (an encoded photo and its reconstruction). Saved latents:
    `[A, B * M, num_ws, w_dim]`, rows in the picture's order.
    """
    edit.check_compatible(editors, generator)
    methods = _check_methods(methods)
    alphas = np.asarray(alphas, np.float32)
    name = tuple(editors.attributes)[edit.resolve_attribute(editors, attribute)]
    per_method, step_labels = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", edit.AlphaRangeWarning)
        for method in methods:
            swept, step_labels = method_sweep(editors, generator, latents, name, alphas, steps, layers, method)
            per_method.append(swept)
    ws = _by_rows(per_method)  # [A, B * M, num_ws, w_dim]
    count, rows = ws.shape[:2]
    batch, per_face = rows // len(methods), len(methods)
    images = render_panels(generator, ws.reshape((-1,) + ws.shape[2:]), noise_mode)
    images = images.reshape((count, rows) + images.shape[1:]).transpose(1, 0, 2, 3, 4)  # [rows, A, H, W, 3]
    from jaxedit.viz.grid import labelled_grid

    column_labels = [f"{name} {a:g}" for a in alphas]
    if lead_panels:
        lead = np.stack(
            [
                np.repeat(_lead_images(images[::per_face, 0], pictures, batch), per_face, axis=0)
                for _, pictures in lead_panels
            ],
            axis=1,
        )
        images = np.concatenate([lead, images], axis=1)
        column_labels = [label for label, _ in lead_panels] + column_labels
    row_labels = _row_labels(batch, face_labels, methods)
    if steps:
        row_labels = [f"{row} " + " ".join(step_labels) for row in row_labels or [""] * rows]
    picture = labelled_grid(
        images, column_labels=column_labels if labels else None, row_labels=row_labels if labels else None
    )
    messages = dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, edit.AlphaRangeWarning))
    return EditResult(
        picture,
        ws.astype(np.float32),
        tuple(column_labels),
        None if row_labels is None else tuple(r.strip() for r in row_labels),
        tuple(messages),
    )
