"""Linen modules of the method: the latent classifier C and the latent transformer T.

Both work on latents only (never on images): W latents `[B, w_dim]` or W+ latents
`[B, num_ws, w_dim]`. Param trees (what converters and trainers produce):

`LatentClassifier(widths=(9216, 2048, 512, 40), activation="leaky_relu")`::

    {"fc_0": {"kernel": [9216, 2048], "bias": [2048]}, "fc_1": {...}, "fc_2": {"kernel": [512, 40], ...}}

`LatentTransformer(kind="official", num_ws=18, w_dim=512)`::

    {"kernel": [num_ws, w_dim_in, w_dim_out], "bias": [num_ws, w_dim]}   (kernel stored unscaled)

`LatentTransformer(kind="paper", w_dim=512, hidden=512)`::

    {"fc_0": {"kernel": [512, hidden], "bias": [hidden]}, "fc_1": {"kernel": [hidden, 512], "bias": [512]}}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxedit.latent.presets import MethodPreset


def _activation(name: str, negative_slope: float):
    if name == "relu":
        return nn.relu
    if name == "leaky_relu":
        return lambda x: nn.leaky_relu(x, negative_slope)
    raise ValueError(f"unknown activation {name!r}")


class LatentClassifier(nn.Module):
    """C: an MLP from a flattened latent to attribute logits.

    widths: (input, *hidden, num_attributes); input must equal the flattened latent size.
    activation: "relu" or "leaky_relu" (slope `negative_slope`), between layers, none at the end.
    The official LCNet is widths (9216, 2048, 512, 40), LeakyReLU(0.2).

    __call__(w [B, *latent_shape]) -> logits [B, num_attributes] (apply sigmoid for probabilities).
    """

    widths: Sequence[int]
    activation: str = "leaky_relu"
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, w: jax.Array) -> jax.Array:
        x = w.reshape(w.shape[0], -1)
        if x.shape[1] != self.widths[0]:
            raise ValueError(f"LatentClassifier expects latents of {self.widths[0]} values, got shape {tuple(w.shape)}")
        act = _activation(self.activation, self.negative_slope)
        last = len(self.widths) - 2
        for index, width in enumerate(self.widths[1:]):
            x = nn.Dense(width, name=f"fc_{index}")(x)
            if index < last:
                x = act(x)
        return x


def _equalized_normal(key, shape, dtype=jnp.float32):
    """Official F_mapping init: weights N(0, 1) stored, scaled by 1/sqrt(fan_in) at run time."""
    return jax.random.normal(key, shape, dtype)


class LatentTransformer(nn.Module):
    """T(w, a): moves a latent along one attribute by strength a.

    kind "official" (W+, the authors' F_mapping): one equalized-lr Linear(w_dim, w_dim) per W+
      layer, no activation; the stored kernel is multiplied by 1/sqrt(w_dim) at run time, the bias
      is not scaled:  T(w, a)_l = w_l + a * (w_l @ (kernel_l / sqrt(w_dim)) + bias_l).
      __call__(w [B, num_ws, w_dim], alpha [B] or scalar) -> [B, num_ws, w_dim].
    kind "paper" (W, the paper): T(w, a) = w + a * H(w), H = Dense(hidden) -> LeakyReLU(slope) ->
      Dense(w_dim) (linear output, so the direction can have either sign).
      __call__(w [B, w_dim], alpha [B] or scalar) -> [B, w_dim].
    """

    kind: str = "official"
    num_ws: int = 18
    w_dim: int = 512
    hidden: int = 512
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, w: jax.Array, alpha: jax.Array) -> jax.Array:
        alpha = jnp.asarray(alpha, w.dtype)
        if self.kind == "official":
            expected = (self.num_ws, self.w_dim)
            if tuple(w.shape[1:]) != expected:
                raise ValueError(
                    f"LatentTransformer(official) expects latents [B, {self.num_ws}, {self.w_dim}], got {tuple(w.shape)}"
                )
            kernel = self.param("kernel", _equalized_normal, (self.num_ws, self.w_dim, self.w_dim))
            bias = self.param("bias", nn.initializers.zeros, (self.num_ws, self.w_dim))
            scale = 1.0 / math.sqrt(self.w_dim)
            direction = jnp.einsum("bli,lio->blo", w, kernel * scale) + bias
            return w + alpha.reshape(alpha.shape + (1,) * (w.ndim - alpha.ndim)) * direction
        if self.kind == "paper":
            if tuple(w.shape[1:]) != (self.w_dim,):
                raise ValueError(f"LatentTransformer(paper) expects latents [B, {self.w_dim}], got {tuple(w.shape)}")
            h = nn.Dense(self.hidden, name="fc_0")(w)
            h = nn.leaky_relu(h, self.negative_slope)
            direction = nn.Dense(self.w_dim, name="fc_1")(h)
            return w + alpha.reshape(alpha.shape + (1,) * (w.ndim - alpha.ndim)) * direction
        raise ValueError(f"unknown LatentTransformer kind {self.kind!r}")


def classifier_from_preset(preset: MethodPreset) -> LatentClassifier:
    """The classifier module a preset describes."""
    return LatentClassifier(
        widths=tuple(preset.classifier_widths),
        activation=preset.classifier_activation,
        negative_slope=preset.classifier_negative_slope,
    )


def transformer_from_preset(preset: MethodPreset) -> LatentTransformer:
    """The transformer module a preset describes."""
    return LatentTransformer(
        kind=preset.transformer_kind,
        num_ws=preset.num_ws,
        w_dim=preset.w_dim,
        hidden=preset.transformer_hidden,
        negative_slope=preset.transformer_negative_slope,
    )


def module_config(module: nn.Module) -> dict:
    """JSON-ready description of a classifier or transformer module (inverse: `module_from_config`)."""
    if isinstance(module, LatentClassifier):
        return {
            "type": "LatentClassifier",
            "widths": list(module.widths),
            "activation": module.activation,
            "negative_slope": module.negative_slope,
        }
    if isinstance(module, LatentTransformer):
        return {
            "type": "LatentTransformer",
            "kind": module.kind,
            "num_ws": module.num_ws,
            "w_dim": module.w_dim,
            "hidden": module.hidden,
            "negative_slope": module.negative_slope,
        }
    raise TypeError(f"not a latent module: {type(module).__name__}")


def module_from_config(config: dict) -> nn.Module:
    """Rebuild a module described by `module_config`."""
    values = dict(config)
    kind = values.pop("type", None)
    if kind == "LatentClassifier":
        values["widths"] = tuple(values["widths"])
        return LatentClassifier(**values)
    if kind == "LatentTransformer":
        return LatentTransformer(**values)
    raise ValueError(f"unknown latent module type {kind!r}")


def init_classifier_params(module: LatentClassifier, key: jax.Array) -> dict:
    """Fresh classifier params (flax default init: LeCun normal kernels, zero biases)."""
    return module.init(key, jnp.zeros((1, module.widths[0]), jnp.float32))["params"]


def init_transformer_params(module: LatentTransformer, key: jax.Array) -> dict:
    """Fresh transformer params (official: N(0,1) equalized kernels and zero biases)."""
    shape = (1, module.num_ws, module.w_dim) if module.kind == "official" else (1, module.w_dim)
    return module.init(key, jnp.zeros(shape, jnp.float32), jnp.zeros((1,), jnp.float32))["params"]
