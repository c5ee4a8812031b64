"""Latent shapes, W+ layer ranges and edit strengths: the checks and conversions edits share.

W latents are `[B, w_dim]`, W+ latents `[B, num_ws, w_dim]`; `parse_layers` / `layer_mask` /
`restrict_to_layers` handle layer ranges; `warn_if_extreme` warns on a concrete alpha beyond
`ALPHA_WARN_LIMIT`; `check_compatible`, `to_editor_space` and `to_generator_ws` put editors and a
generator together.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.errors import ConfigError, InputError

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


def describe_batch(shape: Sequence[int]) -> str:
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
    raise InputError(f"editors work on {expected}, got {describe_batch(shape)}")


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
            f"got {describe_batch(np.shape(latents))}"
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


def alpha_per_row(alpha: Any, batch: int) -> jax.Array:
    """alpha as `[B]` float32 from a scalar or a `[B]` array."""
    alpha = jnp.asarray(alpha, dtype=jnp.float32)
    if alpha.ndim == 0:
        return jnp.broadcast_to(alpha, (batch,))
    if alpha.shape == (batch,):
        return alpha
    raise InputError(f"alpha must be a scalar or one value per latent [{batch}], got shape {list(alpha.shape)}")


# ----------------------------------------------------------------------------------------------
# Transformers


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
        f"the generator takes W [B, w_dim] or W+ [B, {num_ws}, w_dim] latents, got {describe_batch(latents.shape)}"
    )
