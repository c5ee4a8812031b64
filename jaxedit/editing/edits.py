"""Editing latents with trained or converted editors: single, sequential, progressive, layer-range.

Everything here is a pure function of arrays and params, usable inside the caller's `jax.jit` and
`jax.vmap`. Latents are batched:

- W latents are `[B, w_dim]` (the `paper` preset's editors work on these),
- W+ latents are `[B, num_ws, w_dim]` (the `official` preset's editors work on these).

W editors also take W+ latents (what `G.mapping` returns): they edit every W+ layer on its own,
`T(ws[:, l], alpha)` for each layer l (then `layers` may restrict the edit to some layers). When
the layers are all equal, as `mapping` returns them, this is exactly the W edit of the shared w
broadcast to every layer; it needs no look at the values, so it works inside `jit`.

The pieces:

- `Editor`: one attribute's transformer as a small frozen pytree (params are leaves; the linen
  module, the latent shape, the attribute name and the default W+ layer range are static), so it
  can be passed straight into a jitted or vmapped function: `editor(latents, alpha)`.
- `get_editor(editors, "Smiling")`: the `Editor` of one attribute of a loaded `Editors`.
- `apply_edit(editors_or_module, params_k, latents, alpha, layers)`: one transformer at strength
  `alpha` (a scalar or one value per row `[B]`).
- `apply_sequence(editors, latents, [("Smiling", 1.25), ("Eyeglasses", -1.0)])`: edits in order,
  each step's output feeding the next; returns every intermediate result.
- `sweep(editors, latents, "Smiling", alphas)`: a progressive edit, `[A, B, ...]`.
- `restrict_to_layers(original, edited, layers)`: keep the edit on some W+ layers only (the
  official editors change layers 0..10 and keep 11..17 from the input).
- `check_compatible(editors, generator)`, `to_editor_space(latents, shape)`,
  `to_generator_ws(latents, num_ws)`: editors and a `load_generator` generator together
  (with the layer and shape helpers, in `jaxedit.editing.latents`; re-exported here).

Seeds, latent files and pictures (what `jaxedit edit` does) live in `jaxedit.editing.render`.

Example (W+ editors; `G = jaxedit.load_generator(...)`, `E = jaxedit.load_editors(...)`)::

    ws = G.mapping(z, truncation_psi=0.7)                        # [B, 18, 512]
    smile = get_editor(E, "smiling")                             # an Editor pytree
    images = jax.jit(lambda e, ws: G.synthesis(e(ws, 1.25)))(smile, ws)
    steps = apply_sequence(E, ws, [("Smiling", 1.25), ("Eyeglasses", -1.0)])   # 2 x [B, 18, 512]
    frames = sweep(E, ws, "Young", jnp.linspace(-1.5, 1.5, 7))                  # [7, B, 18, 512]

Errors on bad input (a latent of the wrong size, an unknown attribute, editors and a generator
of different latent sizes) are `InputError` / `ConfigError` / `AttributeNameError` with one-line
messages; a concrete alpha outside [-3, 3] (far beyond what the editors were trained for) gives a
`warnings.warn` (under `jit` the values are not known, so no warning is possible there).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, attribute_index
from jaxedit.editing.latents import (
    ALPHA_WARN_LIMIT,
    AlphaRangeWarning,
    alpha_per_row,
    check_compatible,
    check_editor_input,
    check_latents,
    describe_batch,
    describe_latent_shape,
    is_layerwise,
    layer_mask,
    parse_layers,
    restrict_to_layers,
    to_editor_space,
    to_generator_ws,
    warn_if_extreme,
)
from jaxedit.errors import AttributeNameError, ConfigError, InputError


def _transformer_module(editors_or_module: Any) -> Any:
    return getattr(editors_or_module, "transformer_module", editors_or_module)


def _latent_shape_of(editors_or_module: Any) -> tuple[int, ...] | None:
    shape = getattr(editors_or_module, "latent_shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def default_layers(editors: Any) -> tuple[int, ...] | None:
    """The W+ layers an editor set changes by default (None: all of them).

    From the preset's `edit_layers` (a half-open `(first, stop)`; the official preset's (0, 11)
    is layers 0..10), clipped to the editors' W+ layer count. W editors: None.
    """
    shape = _latent_shape_of(editors)
    if shape is None or len(shape) != 2:
        return None
    edit_layers = getattr(getattr(editors, "preset", None), "edit_layers", None)
    if edit_layers is None:
        return None
    first, stop = (int(i) for i in edit_layers)
    return tuple(range(first, min(stop, shape[0])))


def _run_transformer(module: Any, params: Any, latents: jax.Array, alpha: jax.Array) -> jax.Array:
    """T(latents, alpha) with `alpha` `[B]`; the module's own convention for alpha's shape."""
    edited = module.apply({"params": params}, latents, alpha)
    return edited


def apply_edit(
    editors_or_module: Any,
    transformer_params_k: Any,
    latents: jax.Array,
    alpha: Any,
    layers: Sequence[int] | str | None = None,
    latent_shape: Sequence[int] | None = None,
) -> jax.Array:
    """One attribute's transformer at strength `alpha`: `[B, *latent_shape]` -> same shape.

    `editors_or_module`: a loaded `Editors` (its transformer module, latent shape and preset are
    used) or a bare transformer module (then pass `latent_shape` to get shape checks).
    `transformer_params_k`: that attribute's params (one slice of the stacked params; see
    `Editors.transformer_params` and `get_editor`). `alpha`: a scalar or `[B]`.
    `layers`: W+ layers that take the edit (others keep the input's); None is the preset's
    default (official: 0..10; W editors on W+ latents: every layer), "all" every layer.
    W editors take W+ latents too, edited layer by layer (module docstring).
    """
    module = _transformer_module(editors_or_module)
    shape = tuple(latent_shape) if latent_shape is not None else _latent_shape_of(editors_or_module)
    if shape is not None:
        check_editor_input(latents, shape)
    latents = jnp.asarray(latents)
    warn_if_extreme(alpha)
    alpha_b = alpha_per_row(alpha, latents.shape[0])
    if shape is not None and is_layerwise(latents, shape):  # W editors on W+: every layer on its own
        batch, num_ws, w_dim = latents.shape
        flat = _run_transformer(
            module, transformer_params_k, latents.reshape(batch * num_ws, w_dim), jnp.repeat(alpha_b, num_ws)
        )
        edited = flat.reshape(batch, num_ws, w_dim)
    else:
        edited = _run_transformer(module, transformer_params_k, latents, alpha_b)
    if layers is None:
        layers = default_layers(editors_or_module)
    if layers is not None:
        if latents.ndim != 3:
            raise InputError(
                f"layer ranges apply to W+ latents [B, num_ws, w_dim], got {describe_batch(latents.shape)}"
            )
        layers = parse_layers(layers, latents.shape[1])
        edited = restrict_to_layers(latents, edited, layers)
    return edited.astype(latents.dtype)


def resolve_attribute(editors: Any, attribute: str | int) -> int:
    """Position of an attribute (CelebA name, case-insensitive, or CelebA index) in `editors.attributes`."""
    names = tuple(getattr(editors, "attributes", ATTRIBUTES))
    if isinstance(attribute, (int, np.integer)) or (isinstance(attribute, str) and attribute.strip().isdigit()):
        name = ATTRIBUTES[attribute_index(int(attribute))]
    else:
        lowered = [n.lower() for n in names]
        key = str(attribute).strip().lower()
        if key in lowered:
            return lowered.index(key)
        name = ATTRIBUTES[attribute_index(attribute)]  # raises with close matches for unknown names
    if name not in names:
        raise AttributeNameError(f"these editors have no transformer for {name!r}; they cover {_short_list(names)}")
    return names.index(name)


def _short_list(names: Sequence[str], limit: int = 8) -> str:
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} attributes)"


def transformer_params_of(editors: Any, attribute: str | int) -> Any:
    """One attribute's slice of the stacked `editors.transformer_params`."""
    k = resolve_attribute(editors, attribute)
    return jax.tree.map(lambda leaf: leaf[k], editors.transformer_params)


@dataclasses.dataclass(frozen=True)
class Editor:
    """One attribute's transformer: call it as `editor(latents [B, *latent_shape], alpha)`.

    A pytree: `params` are leaves (traced under jit, mapped under vmap); `module`, `latent_shape`,
    `attribute` and `layers` are static. Build one with `get_editor(editors, name)`.
    """

    params: Any
    module: Any = dataclasses.field(metadata={"static": True})
    latent_shape: tuple[int, ...] = dataclasses.field(metadata={"static": True})
    attribute: str = dataclasses.field(default="", metadata={"static": True})
    layers: tuple[int, ...] | None = dataclasses.field(default=None, metadata={"static": True})

    def __call__(self, latents: jax.Array, alpha: Any, layers: Sequence[int] | str | None = None) -> jax.Array:
        """Edited latents, same shape as `latents`; `layers` overrides the default W+ layer range."""
        chosen = self.layers if layers is None else layers
        if chosen is None:
            chosen = "all" if len(self.latent_shape) == 2 else None
        return apply_edit(self.module, self.params, latents, alpha, layers=chosen, latent_shape=self.latent_shape)


jax.tree_util.register_dataclass(
    Editor, data_fields=["params"], meta_fields=["module", "latent_shape", "attribute", "layers"]
)


def get_editor(editors: Any, attribute: str | int) -> Editor:
    """The `Editor` of one attribute of a loaded `Editors` (name case-insensitive, or CelebA index)."""
    k = resolve_attribute(editors, attribute)
    params = jax.tree.map(lambda leaf: leaf[k], editors.transformer_params)
    return Editor(
        params=params,
        module=editors.transformer_module,
        latent_shape=tuple(int(s) for s in editors.latent_shape),
        attribute=tuple(editors.attributes)[k],
        layers=default_layers(editors),
    )


def apply_sequence(
    editors: Any,
    latents: jax.Array,
    steps: Sequence[tuple[str | int, Any]],
    layers: Sequence[int] | str | None = None,
) -> list[jax.Array]:
    """Edits applied in order, each to the previous one's output; returns one result per step.

    `steps`: `[(attribute, alpha), ...]` (alpha a scalar or `[B]`). The result list has
    `len(steps)` entries, each `[B, *latent_shape]`; the last one is the fully edited latent.
    """
    if not steps:
        raise ConfigError("an edit sequence needs at least one (attribute, alpha) step")
    resolved = [(get_editor(editors, attribute), alpha) for attribute, alpha in steps]
    results = []
    current = latents
    for editor, alpha in resolved:
        current = editor(current, alpha, layers=layers)
        results.append(current)
    return results


def sweep(
    editors: Any,
    latents: jax.Array,
    attribute: str | int,
    alphas: Any,
    layers: Sequence[int] | str | None = None,
) -> jax.Array:
    """A progressive edit: `[A, B, *latent_shape]`, row a being the edit at `alphas[a]`."""
    editor = get_editor(editors, attribute)
    alphas = jnp.asarray(alphas, dtype=jnp.float32)
    if alphas.ndim != 1 or alphas.shape[0] == 0:
        raise InputError(f"sweep alphas must be a non-empty 1-D array, got shape {list(alphas.shape)}")
    warn_if_extreme(alphas)
    check_editor_input(latents, editor.latent_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlphaRangeWarning)
        return jax.vmap(lambda a: editor(latents, a, layers=layers))(alphas)


def sweep_values(start: float, stop: float, count: int) -> np.ndarray:
    """`count` evenly spaced alphas from `start` to `stop` inclusive (as the CLI's `a:b:n`)."""
    if count < 1:
        raise ConfigError(f"a sweep needs at least 1 value, got {count}")
    if count == 1:
        return np.asarray([start], dtype=np.float32)
    return np.linspace(start, stop, count, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Editors and generators together


__all__ = [
    "ALPHA_WARN_LIMIT",
    "AlphaRangeWarning",
    "check_compatible",
    "check_editor_input",
    "check_latents",
    "describe_latent_shape",
    "is_layerwise",
    "layer_mask",
    "parse_layers",
    "restrict_to_layers",
    "to_editor_space",
    "to_generator_ws",
    "warn_if_extreme",
    "Editor",
    "apply_edit",
    "apply_sequence",
    "default_layers",
    "get_editor",
    "resolve_attribute",
    "sweep",
    "sweep_values",
    "transformer_params_of",
]
