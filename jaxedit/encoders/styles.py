"""The style heads and the feature-pyramid upsampling of the pSp / e4e encoders (NHWC).

`GradualStyleBlock` turns a feature map of side S into one style vector: log2(S) convs 3x3 with
stride 2, torch padding 1 and a bias, each followed by LeakyReLU(0.01), bring the map to 1x1;
an equalized-learning-rate linear layer then gives `x @ (W / sqrt(in)).T + b`.

Parameter layout: `conv_{j}/{kernel [3, 3, I, O], bias [O]}` and `linear/{kernel [in, out] (as
stored, the 1/sqrt(in) gain is applied at run time), bias [out]}`.

`upsample_bilinear_align_corners(x, size)` is torch's `F.interpolate(mode='bilinear',
align_corners=True)`, written as two small interpolation matrices (one per axis).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.encoders.backbone import PRECISIONS, Conv
from jaxedit.encoders.config import LEAKY_RELU_SLOPE


def _interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
    """[out_size, in_size] bilinear weights with align_corners=True (corner pixels map onto corners)."""
    matrix = np.zeros((out_size, in_size), np.float64)
    if in_size == 1 or out_size == 1:
        matrix[:, 0] = 1.0
        return matrix.astype(np.float32)
    position = np.arange(out_size) * (in_size - 1) / (out_size - 1)
    low = np.minimum(np.floor(position).astype(int), in_size - 2)
    frac = position - low
    matrix[np.arange(out_size), low] = 1.0 - frac
    matrix[np.arange(out_size), low + 1] += frac
    return matrix.astype(np.float32)


def upsample_bilinear_align_corners(x: jax.Array, size: tuple[int, int], precision: str = "highest") -> jax.Array:
    """x [B, H, W, C] -> [B, size[0], size[1], C], bilinear with align_corners=True."""
    rows = jnp.asarray(_interpolation_matrix(size[0], x.shape[1]))
    cols = jnp.asarray(_interpolation_matrix(size[1], x.shape[2]))
    lax_precision = PRECISIONS[precision]
    x = jnp.einsum("oh,bhwc->bowc", rows, x, precision=lax_precision)
    return jnp.einsum("pw,bowc->bopc", cols, x, precision=lax_precision)


class EqualLinear(nn.Module):
    """x [B, in] -> x @ (kernel / sqrt(in)) + bias, [B, out] (kernel stored [in, out], N(0, 1) scale)."""

    features: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.normal(1.0), (fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return jnp.matmul(x, kernel * (1.0 / math.sqrt(fan_in)), precision=PRECISIONS[self.precision]) + bias


class GradualStyleBlock(nn.Module):
    """A feature map [B, S, S, I] -> one style vector [B, features]; needs S = 2 ** num_convs (the
    convs must bring the map to 1x1)."""

    features: int
    num_convs: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_convs):
            x = Conv(self.features, 3, 2, 1, self.precision, use_bias=True, name=f"conv_{j}")(x)
            x = jnp.where(x >= 0, x, x * LEAKY_RELU_SLOPE)
        return EqualLinear(self.features, self.precision, name="linear")(x.reshape(x.shape[0], -1))
