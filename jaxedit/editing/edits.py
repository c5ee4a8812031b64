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
  `to_generator_ws(latents, num_ws)`: editors and a `load_generator` generator together.

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
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, attribute_index
from jaxedit.errors import AttributeNameError, ConfigError, InputError

ALPHA_WARN_LIMIT = 3.0
"""Edit strengths beyond +-this are extrapolation: training draws |alpha| <= 1 and the presets' edit
range (`edit_alpha_range`) is [-1.5, 1.5]."""


class AlphaRangeWarning(UserWarning):
    """An edit strength outside [-ALPHA_WARN_LIMIT, ALPHA_WARN_LIMIT]."""


# ----------------------------------------------------------------------------------------------
# Shapes and layer ranges


def describe_latent_shape(shape: Sequence[int]) -> str:
    """'W [B, 512]' or 'W+ [B, 18, 512]' for a per-sample latent shape `(512,)` / `(18, 512)`."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return f"W [B, {shape[0]}]"
    if len(shape) == 2:
        return f"W+ [B, {shape[0]}, {shape[1]}]"
    return f"[B, {', '.join(map(str, shape))}]"


def _describe_batch(shape: Sequence[int]) -> str:
    shape = tuple(int(s) for s in shape)
    dims = ", ".join(map(str, shape))
    if len(shape) == 2:
        return f"W [{dims}]"
    if len(shape) == 3:
        return f"W+ [{dims}]"
    return f"[{dims}]"


def check_latents(latents: Any, latent_shape: Sequence[int]) -> None:
    """Raise `InputError` unless `latents` is a batch `[B, *latent_shape]` of real numbers."""
    latent_shape = tuple(int(s) for s in latent_shape)
    shape = tuple(np.shape(latents))
    if shape[1:] == latent_shape and len(shape) == len(latent_shape) + 1:
        dtype = latents.dtype if hasattr(latents, "dtype") else np.asarray(latents).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise InputError(f"latents must be floating point, got dtype {dtype}")
        return
    expected = describe_latent_shape(latent_shape)
    if shape == latent_shape:
        raise InputError(
            f"editors work on batches, {expected}; got one unbatched latent {list(shape)} (add a leading axis)"
        )
    raise InputError(f"editors work on {expected}, got {_describe_batch(shape)}")


def is_layerwise(latents: Any, latent_shape: Sequence[int]) -> bool:
    """True when `latents` are W+ `[B, num_ws, w_dim]` given to W editors of `latent_shape` `(w_dim,)`
    (edited layer by layer; module docstring)."""
    shape = tuple(int(s) for s in latent_shape)
    return len(shape) == 1 and np.ndim(latents) == 3 and tuple(np.shape(latents))[2] == shape[0]


def check_editor_input(latents: Any, latent_shape: Sequence[int]) -> None:
    """`check_latents`, where W editors also take W+ `[B, num_ws, w_dim]` (edited layer by layer)."""
    shape = tuple(int(s) for s in latent_shape)
    if is_layerwise(latents, shape):
        dtype = latents.dtype if hasattr(latents, "dtype") else np.asarray(latents).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise InputError(f"latents must be floating point, got dtype {dtype}")
        return
    try:
        check_latents(latents, shape)
    except InputError:
        if len(shape) != 1 or tuple(np.shape(latents)) == shape:
            raise
        raise InputError(
            f"editors work on W [B, {shape[0]}] or W+ [B, num_ws, {shape[0]}] (edited layer by layer), "
            f"got {_describe_batch(np.shape(latents))}"
        ) from None


def parse_layers(spec: str | Iterable[int] | None, num_ws: int | None = None) -> tuple[int, ...] | None:
    """W+ layer indices from "0-10", "0,2,4-6", "all", an iterable of ints, or None (None: the default).

    With `num_ws`, indices must lie in 0..num_ws-1 (`ConfigError` otherwise).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            if num_ws is None:
                raise ConfigError("layer range 'all' needs the number of W+ layers")
            return tuple(range(num_ws))
        layers: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            start, sep, stop = part.partition("-")
            try:
                first = int(start)
                last = int(stop) if sep else first
            except ValueError:
                raise ConfigError(f"layer range {spec!r}: expected integers like '0-10' or '0,2,4-6'") from None
            if first < 0 or last < first:
                raise ConfigError(f"layer range {spec!r}: '{part}' is empty or negative (write low-high, e.g. 0-10)")
            layers.extend(range(first, last + 1))
    else:
        layers = [int(i) for i in spec]
    if not layers:
        raise ConfigError(f"layer range {spec!r} names no layers")
    layers = sorted(set(layers))
    if num_ws is not None and (layers[0] < 0 or layers[-1] >= num_ws):
        raise ConfigError(f"layer range {spec!r} is outside this latent's W+ layers 0..{num_ws - 1}")
    return tuple(layers)


def layer_mask(layers: Sequence[int] | None, num_ws: int) -> np.ndarray:
    """Boolean `[num_ws]`: True on the layers that take the edit (all of them for None)."""
    mask = np.zeros((num_ws,), dtype=bool)
    if layers is None:
        mask[:] = True
        return mask
    layers = tuple(int(i) for i in layers)
    if layers and (min(layers) < 0 or max(layers) >= num_ws):
        raise ConfigError(f"W+ layers {_format_layers(layers)} are outside 0..{num_ws - 1}")
    mask[list(layers)] = True
    return mask


def restrict_to_layers(original: jax.Array, edited: jax.Array, layers: Sequence[int] | None) -> jax.Array:
    """`edited` on the W+ `layers`, `original` elsewhere: both `[..., num_ws, w_dim]`.

    `layers=None` keeps every layer of `edited`. Static layer indices, so jit-friendly.
    """
    if np.shape(original) != np.shape(edited):
        raise InputError(
            f"original {list(np.shape(original))} and edited {list(np.shape(edited))} latents differ in shape"
        )
    if np.ndim(edited) < 2:
        raise InputError(f"layer ranges apply to W+ latents [B, num_ws, w_dim], got {list(np.shape(edited))}")
    if layers is None:
        return edited
    mask = layer_mask(layers, np.shape(edited)[-2])
    return jnp.where(jnp.asarray(mask)[:, None], edited, original)


def _format_layers(layers: Sequence[int]) -> str:
    layers = sorted(layers)
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


# ----------------------------------------------------------------------------------------------
# Edit strengths


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def warn_if_extreme(alpha: Any, limit: float = ALPHA_WARN_LIMIT, what: str = "alpha") -> bool:
    """`warnings.warn` (and return True) when a concrete alpha lies outside [-limit, limit].

    Non-finite values raise `InputError`. Traced values (inside jit/vmap) are not checked.
    """
    if not _is_concrete(alpha):
        return False
    values = np.asarray(alpha, dtype=np.float64).ravel()
    if values.size == 0:
        return False
    if not np.all(np.isfinite(values)):
        raise InputError(f"{what} must be finite, got {values.tolist()[:8]}")
    worst = float(values[np.argmax(np.abs(values))])
    if abs(worst) <= limit:
        return False
    warnings.warn(
        f"{what} {worst:g} is outside [-{limit:g}, {limit:g}], far beyond the strengths the editors were trained with "
        "(|alpha| <= 1) and are meant for (edit_alpha_range, see jaxedit info): expect artefacts",
        AlphaRangeWarning,
        stacklevel=3,
    )
    return True


def _alpha_per_row(alpha: Any, batch: int) -> jax.Array:
    """alpha as `[B]` float32 from a scalar or a `[B]` array."""
    alpha = jnp.asarray(alpha, dtype=jnp.float32)
    if alpha.ndim == 0:
        return jnp.broadcast_to(alpha, (batch,))
    if alpha.shape == (batch,):
        return alpha
    raise InputError(f"alpha must be a scalar or one value per latent [{batch}], got shape {list(alpha.shape)}")


# ----------------------------------------------------------------------------------------------
# Transformers


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
    alpha_b = _alpha_per_row(alpha, latents.shape[0])
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
                f"layer ranges apply to W+ latents [B, num_ws, w_dim], got {_describe_batch(latents.shape)}"
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


def check_compatible(editors: Any, generator: Any) -> None:
    """`ConfigError` unless the editors' latents fit the generator (same w_dim; W+ layer count)."""
    shape = tuple(int(s) for s in editors.latent_shape)
    w_dim, num_ws = int(generator.w_dim), int(generator.num_ws)
    if shape[-1] != w_dim:
        raise ConfigError(
            f"editors work on {describe_latent_shape(shape)} latents but the generator's w_dim is {w_dim} "
            f"(W+ [B, {num_ws}, {w_dim}]): they were trained for a different generator"
        )
    if len(shape) == 2 and shape[0] != num_ws:
        raise ConfigError(
            f"editors work on {describe_latent_shape(shape)} latents but the generator has {num_ws} W+ layers"
        )


def to_editor_space(latents: jax.Array, latent_shape: Sequence[int], atol: float = 1e-6) -> jax.Array:
    """Bring a generator's latents to the editors' space.

    W `[B, w_dim]` -> W+ `[B, num_ws, w_dim]` by repetition when the editors work on W+; W+ whose
    layers are all equal (as `mapping` returns them) -> W for W editors. A W+ latent with distinct
    layers stays W+ for W editors (they edit it layer by layer; module docstring).
    """
    shape = tuple(int(s) for s in latent_shape)
    latents = jnp.asarray(latents)
    if latents.ndim == len(shape) + 1 and latents.shape[1:] == shape:
        return latents
    if len(shape) == 2 and latents.ndim == 2 and latents.shape[1] == shape[1]:
        return jnp.repeat(latents[:, None, :], shape[0], axis=1)
    if len(shape) == 1 and latents.ndim == 3 and latents.shape[2] == shape[0]:
        if _is_concrete(latents) and np.allclose(np.asarray(latents), np.asarray(latents[:, :1]), atol=atol, rtol=0):
            return latents[:, 0]
        return latents
    check_editor_input(latents, shape)  # raises with the shapes named
    return latents


def to_generator_ws(latents: jax.Array, num_ws: int) -> jax.Array:
    """`[B, num_ws, w_dim]` for `generator.synthesis` from W `[B, w_dim]` or W+ latents."""
    latents = jnp.asarray(latents)
    if latents.ndim == 2:
        return jnp.repeat(latents[:, None, :], num_ws, axis=1)
    if latents.ndim == 3 and latents.shape[1] == num_ws:
        return latents
    raise InputError(
        f"the generator takes W [B, w_dim] or W+ [B, {num_ws}, w_dim] latents, got {_describe_batch(latents.shape)}"
    )
