"""The IR-SE backbone of the pSp / e4e encoders as Flax linen modules (NHWC, eval mode).

An input layer (3x3 conv, BatchNorm, per-channel PReLU) followed by residual units in 4 stages;
every stage starts with a unit of stride 2. One unit (`IRSEUnit`, an "improved residual" unit
with squeeze-excitation) computes

    residual = SE(BN(conv3x3_stride_s(PReLU(conv3x3(BN(x))))))
    out      = residual + shortcut(x)

where the shortcut subsamples (`x[:, ::s, ::s]`) when the width does not change and is a strided
1x1 conv + BN when it does. No activation follows the addition. All convs use torch's explicit
zero padding (1 on every side for 3x3, also with stride 2), not 'SAME'.

Parameter layout (what `jaxedit.convert.encoder` produces):

    input_layer/{conv/kernel [3, 3, in, stem], bn/{scale, bias, mean, var} [stem], prelu/slope [stem]}
    unit_{i}/bn_in/{scale, bias, mean, var} [in]
    unit_{i}/conv1/kernel [3, 3, in, depth]      unit_{i}/prelu/slope [depth]
    unit_{i}/conv2/kernel [3, 3, depth, depth]   unit_{i}/bn_out/{...} [depth]
    unit_{i}/se/{fc1 [depth, hidden], fc2 [hidden, depth]}
    unit_{i}/shortcut_conv/kernel [1, 1, in, depth], unit_{i}/shortcut_bn/{...}  (width changes only)

BatchNorm uses its running statistics: (x - mean) / sqrt(var + 1e-5) * scale + bias.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxedit.encoders.config import BATCH_NORM_EPS, EncoderConfig

_NHWC = ("NHWC", "HWIO", "NHWC")
PRECISIONS = {"highest": lax.Precision.HIGHEST, "default": lax.Precision.DEFAULT}


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: int = 0, precision: str = "highest") -> jax.Array:
    """x [B, H, W, I], kernel [k, k, I, O] -> [B, H', W', O], zero padding `padding` on every side."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=_NHWC,
        precision=PRECISIONS[precision],
    )


def _conv_init(key, shape, dtype=jnp.float32):
    fan_in = shape[0] * shape[1] * shape[2]
    return jax.random.normal(key, shape, dtype) / jnp.sqrt(fan_in).astype(dtype)


class Conv(nn.Module):
    """A k x k conv with torch-style zero padding, kernel HWIO; a bias only with `use_bias`."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    precision: str = "highest"
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", _conv_init, (k, k, x.shape[-1], self.features))
        y = conv2d(x, kernel, self.stride, self.padding, self.precision)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


class BatchNorm(nn.Module):
    """BatchNorm2d in eval mode on [..., C]: running statistics, eps 1e-5."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.param("mean", nn.initializers.zeros, (c,))
        var = self.param("var", nn.initializers.ones, (c,))
        factor = scale * lax.rsqrt(var + BATCH_NORM_EPS)
        return x * factor + (bias - mean * factor)


class PReLU(nn.Module):
    """Per-channel PReLU: x if x >= 0 else slope[c] * x."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param("slope", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, x * slope)


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean_hw(x))))), both fcs without bias: [B, H, W, C] -> same."""

    hidden: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        fc1 = self.param("fc1", nn.initializers.lecun_normal(), (c, self.hidden))
        fc2 = self.param("fc2", nn.initializers.lecun_normal(), (self.hidden, c))
        pooled = jnp.mean(x, axis=(1, 2))  # [B, C]
        hidden = jax.nn.relu(jnp.matmul(pooled, fc1, precision=PRECISIONS[self.precision]))
        gate = jax.nn.sigmoid(jnp.matmul(hidden, fc2, precision=PRECISIONS[self.precision]))
        return x * gate[:, None, None, :]


class IRSEUnit(nn.Module):
    """One residual unit with squeeze-excitation: [B, H, W, in] -> [B, H/stride, W/stride, depth]."""

    depth: int
    stride: int
    se_channels: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] == self.depth:
            shortcut = x[:, :: self.stride, :: self.stride]
        else:
            shortcut = Conv(self.depth, 1, self.stride, 0, self.precision, name="shortcut_conv")(x)
            shortcut = BatchNorm(name="shortcut_bn")(shortcut)
        y = BatchNorm(name="bn_in")(x)
        y = Conv(self.depth, 3, 1, 1, self.precision, name="conv1")(y)
        y = PReLU(name="prelu")(y)
        y = Conv(self.depth, 3, self.stride, 1, self.precision, name="conv2")(y)
        y = BatchNorm(name="bn_out")(y)
        y = SqueezeExcite(self.se_channels, self.precision, name="se")(y)
        return y + shortcut


class InputLayer(nn.Module):
    """3x3 conv (stride 1, pad 1, no bias), BatchNorm, PReLU: [B, H, W, in] -> [B, H, W, stem]."""

    features: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = Conv(self.features, 3, 1, 1, self.precision, name="conv")(x)
        return PReLU(name="prelu")(BatchNorm(name="bn")(x))


class Backbone(nn.Module):
    """Input layer + residual units. Returns the taps {'input_layer_out', 'c1', 'c2', 'c3'}:
    [B, S, S, stem], [B, S/4, S/4, d2], [B, S/8, S/8, d3], [B, S/16, S/16, d4] for an input [B, S, S, in]."""

    config: EncoderConfig
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        taps = {"input_layer_out": InputLayer(self.config.stem_channels, self.precision, name="input_layer")(x)}
        tap_names = dict(zip(self.config.tap_units(), ("c1", "c2", "c3")))
        x = taps["input_layer_out"]
        for i, (_, depth, stride, se) in enumerate(self.config.unit_specs()):
            x = IRSEUnit(depth, stride, se, self.precision, name=f"unit_{i}")(x)
            if i in tap_names:
                taps[tap_names[i]] = x
        return taps
