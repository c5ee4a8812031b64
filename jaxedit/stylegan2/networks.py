"""The StyleGAN2 generator as Flax linen modules, plus truncation and style mixing.

- `GeneratorConfig` (`jaxedit.stylegan2.config`): the architecture; `num_ws` derives from it.
- `MappingNetwork`: z [B, z_dim] -> w [B, w_dim] (pure: no truncation inside).
- `SynthesisNetwork`: ws [B, num_ws, w_dim] -> images [B, H, W, C_img] float32, NHWC, about [-1, 1].
- `Generator`: both, with `params = {"mapping": ..., "synthesis": ...}`.
- `truncate`, `mix_styles`, `broadcast_w`: pure functions on latents.

Parameter layout (what the converters produce; names follow the NVlabs blocks):

    mapping/fc{i}/{kernel [in, out], bias [out]}       stored divided by lr_multiplier
    synthesis/b4/const [4, 4, C4]
    synthesis/b{R}/conv{0,1}/{kernel [3, 3, I, O] (effective, HWIO), bias [O], noise_strength [],
                              noise_const [R, R], affine/{kernel [w_dim, I], bias [I] (includes +1)}}
    synthesis/b{R}/torgb/{kernel [I, C_img] (gain 1/sqrt(I) applied at run time), bias [C_img],
                          affine/{kernel, bias}}
    (b4 has conv1 and torgb only; conv0 of every other block is the 2x up-conv.)

W+ bookkeeping: b4.conv1 reads ws[0], b4.torgb ws[1]; block k >= 1 (resolution 4 * 2^k) reads
ws[2k-1] (conv0), ws[2k] (conv1), ws[2k+1] (torgb). Noise layer j: 0 for b4.conv1, 2k-1 and 2k for
block k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxedit.errors import InputError
from jaxedit.stylegan2 import ops
from jaxedit.stylegan2.config import NOISE_MODES, GeneratorConfig


def broadcast_w(w: jax.Array, num_ws: int) -> jax.Array:
    """w [B, w_dim] -> ws [B, num_ws, w_dim] (the same w for every layer)."""
    return jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws, w.shape[-1]))


def truncate(
    w_or_ws: jax.Array, w_avg: jax.Array, psi: float | jax.Array = 1.0, cutoff: int | None = None
) -> jax.Array:
    """The truncation trick `w_avg + psi * (w - w_avg)`.

    w_or_ws: [B, w_dim] or [B, num_ws, w_dim]; w_avg: [w_dim]. With `cutoff=c` (W+ input only) only
    the layers < c are truncated, as NVlabs' `truncation_cutoff`. psi may be traced; cutoff is static.
    """
    truncated = w_avg + psi * (w_or_ws - w_avg)
    if cutoff is None:
        return truncated
    if w_or_ws.ndim != 3:
        raise InputError(f"truncation cutoff needs W+ latents [B, num_ws, w_dim], got shape {list(w_or_ws.shape)}")
    layer = jnp.arange(w_or_ws.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, truncated, w_or_ws)


def mix_styles(ws1: jax.Array, ws2: jax.Array, index: int | jax.Array) -> jax.Array:
    """Style mixing: ws1 for the W+ layers < index, ws2 from index on. [B, num_ws, w_dim] each."""
    layer = jnp.arange(ws1.shape[1])[None, :, None]
    return jnp.where(layer < index, ws1, ws2)


def _lax_precision(precision: str) -> lax.Precision:
    return lax.Precision.HIGHEST if ops.Precision.from_name(precision).name == "highest" else lax.Precision.DEFAULT


# ------------------------------------------------------------------------------------------------
# Mapping network
# ------------------------------------------------------------------------------------------------


class EqualizedDense(nn.Module):
    """y = x @ (kernel * lr / sqrt(in)) + bias * lr; params stored as in the PyTorch codes.

    kernel [in, out] initialised N(0, 1/lr^2) (so the effective weight is N(0, 1/in)); bias
    initialised to `bias_init_value / lr`.
    """

    features: int
    lr_multiplier: float = 1.0
    bias_init_value: float = 0.0
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        lr = self.lr_multiplier
        kernel = self.param("kernel", lambda key, shape: jax.random.normal(key, shape) / lr, (fan_in, self.features))
        bias = self.param("bias", lambda key, shape: jnp.full(shape, self.bias_init_value / lr), (self.features,))
        y = jnp.matmul(
            x.astype(jnp.float32), kernel * (lr / math.sqrt(fan_in)), precision=_lax_precision(self.precision)
        )
        return y + bias * lr


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: 2nd-moment normalisation, then `mapping_layers` equalized dense
    layers with leaky ReLU(0.2) * sqrt(2). Params `fc0 .. fc{L-1}` ({kernel, bias}); no truncation."""

    config: GeneratorConfig
    precision: str = "highest"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.config
        x = z.astype(jnp.float32)
        x = x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-8)
        for i in range(cfg.mapping_layers):
            x = EqualizedDense(cfg.w_dim, cfg.lr_multiplier, precision=self.precision, name=f"fc{i}")(x)
            x = jnp.where(x >= 0, x, x * ops.LRELU_SLOPE) * ops.LRELU_GAIN
        return x


# ------------------------------------------------------------------------------------------------
# Synthesis network
# ------------------------------------------------------------------------------------------------


def _normal(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype)


def _noise_map(noise: jax.Array, resolution: int, layer: int) -> jax.Array:
    """An explicit noise map as [1|B, R, R, 1] from [R, R], [1|B, R, R] or [1|B, R, R, 1]."""
    noise = jnp.asarray(noise)
    if noise.ndim == 2:
        noise = noise[None, :, :, None]
    elif noise.ndim == 3:
        noise = noise[..., None]
    if noise.ndim != 4 or noise.shape[1:] != (resolution, resolution, 1):
        raise InputError(
            f"noise[{layer}]: expected [{resolution}, {resolution}], [B, {resolution}, {resolution}] or "
            f"[B, {resolution}, {resolution}, 1], got {list(noise.shape)}"
        )
    return noise


class ModulatedConvLayer(nn.Module):
    """A modulated 3x3 conv (optionally the 2x up-conv) with noise, bias, lrelu and clamp.

    x [B, H, W, I], w [B, w_dim] -> [B, R, R, O] in the precision's compute dtype (R = H or 2H).
    """

    out_channels: int
    resolution: int
    up: bool = False
    conv_clamp: float | None = None
    precision: str = "highest"

    @nn.compact
    def __call__(self, x, w, noise_mode: str = "const", rng=None, noise=None):
        in_channels = x.shape[-1]
        styles = EqualizedDense(in_channels, bias_init_value=1.0, precision=self.precision, name="affine")(w)
        kernel = self.param("kernel", _normal, (3, 3, in_channels, self.out_channels))
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))
        noise_strength = self.param("noise_strength", nn.initializers.zeros, ())
        noise_const = self.param("noise_const", _normal, (self.resolution, self.resolution))

        y = ops.modulated_conv2d(x, kernel, styles, up=self.up, precision=self.precision)
        demod = ops.demodulation(kernel, styles)
        batch = x.shape[0]
        if noise is not None:
            noise_map = noise
        elif noise_mode == "const":
            noise_map = noise_const[None, :, :, None]
        elif noise_mode == "random":
            noise_map = jax.random.normal(rng, (batch, self.resolution, self.resolution, 1), jnp.float32)
        else:
            noise_map = None
        out_dtype = ops.Precision.from_name(self.precision).compute_dtype
        return ops.conv_epilogue(y, demod, noise_map, noise_strength, bias, self.conv_clamp, out_dtype)


class ToRGBLayer(nn.Module):
    """x [B, H, W, I], w [B, w_dim] -> [B, H, W, C_img] float32 (modulated 1x1, no demodulation)."""

    img_channels: int = 3
    conv_clamp: float | None = None
    precision: str = "highest"

    @nn.compact
    def __call__(self, x, w):
        in_channels = x.shape[-1]
        styles = EqualizedDense(in_channels, bias_init_value=1.0, precision=self.precision, name="affine")(w)
        kernel = self.param("kernel", _normal, (in_channels, self.img_channels))
        bias = self.param("bias", nn.initializers.zeros, (self.img_channels,))
        return ops.to_rgb(x, kernel, styles, bias, self.conv_clamp, self.precision)


class SynthesisBlock(nn.Module):
    """One resolution: (const | 2x up-conv) -> conv -> toRGB, plus the upsampled skip image.

    The first block (resolution 4) holds `const` and `conv1`; the others `conv0` (up) and `conv1`.
    """

    resolution: int
    out_channels: int
    img_channels: int = 3
    conv_clamp: float | None = None
    precision: str = "highest"

    @nn.compact
    def __call__(self, x, img, ws_block, noise_mode, rngs, noises):
        """ws_block [B, 2 or 3, w_dim]; rngs / noises: one entry (or None) per conv of this block."""
        mode = ops.Precision.from_name(self.precision)
        layer_kwargs = dict(resolution=self.resolution, conv_clamp=self.conv_clamp, precision=self.precision)
        if x is None:  # the 4x4 input block
            const = self.param("const", _normal, (self.resolution, self.resolution, self.out_channels))
            batch = ws_block.shape[0]
            x = jnp.broadcast_to(const[None].astype(mode.compute_dtype), (batch,) + const.shape)
            x = ModulatedConvLayer(self.out_channels, name="conv1", **layer_kwargs)(
                x, ws_block[:, 0], noise_mode, rngs[0], noises[0]
            )
            y = ToRGBLayer(self.img_channels, self.conv_clamp, self.precision, name="torgb")(x, ws_block[:, 1])
            return x, y
        x = ModulatedConvLayer(self.out_channels, up=True, name="conv0", **layer_kwargs)(
            x, ws_block[:, 0], noise_mode, rngs[0], noises[0]
        )
        x = ModulatedConvLayer(self.out_channels, name="conv1", **layer_kwargs)(
            x, ws_block[:, 1], noise_mode, rngs[1], noises[1]
        )
        y = ToRGBLayer(self.img_channels, self.conv_clamp, self.precision, name="torgb")(x, ws_block[:, 2])
        return x, ops.upsample2d(img) + y


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> images [B, resolution, resolution, img_channels] float32 (NHWC).

    noise_mode: 'const' (the stored maps), 'random' (fresh N(0, 1) from `rng`, a PRNG key) or
    'none'. `noise`: optional explicit maps, a sequence of `num_noise_layers` arrays, layer j of
    shape [R_j, R_j], [1|B, R_j, R_j] or [1|B, R_j, R_j, 1]; it overrides `noise_mode`.
    """

    config: GeneratorConfig
    precision: str = "highest"

    @nn.compact
    def __call__(
        self,
        ws: jax.Array,
        noise_mode: str = "const",
        rng: jax.Array | None = None,
        noise: Sequence[jax.Array] | None = None,
    ) -> jax.Array:
        cfg = self.config
        if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise InputError(f"ws: expected [B, {cfg.num_ws}, {cfg.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
        if noise is not None:
            if len(noise) != cfg.num_noise_layers:
                raise InputError(f"noise: expected {cfg.num_noise_layers} maps (one per conv layer), got {len(noise)}")
            noise = [_noise_map(n, r, j) for j, (n, r) in enumerate(zip(noise, cfg.noise_resolutions()))]
        elif noise_mode == "random" and rng is None:
            raise InputError("noise_mode 'random' needs an explicit rng key")
        layer_noise = list(noise) if noise is not None else [None] * cfg.num_noise_layers
        if noise is None and noise_mode == "random":
            layer_rngs = list(jax.random.split(rng, cfg.num_noise_layers))
        else:
            layer_rngs = [None] * cfg.num_noise_layers

        ws = ws.astype(jnp.float32)
        common = dict(img_channels=cfg.img_channels, conv_clamp=cfg.conv_clamp, precision=self.precision)
        x, img = SynthesisBlock(4, cfg.channel(4), name="b4", **common)(
            None, None, ws[:, 0:2], noise_mode, layer_rngs[0:1], layer_noise[0:1]
        )
        for k, res in enumerate(cfg.resolutions[1:], start=1):
            first_w = 2 * k - 1
            first_noise = 2 * k - 1
            x, img = SynthesisBlock(res, cfg.channel(res), name=f"b{res}", **common)(
                x,
                img,
                ws[:, first_w : first_w + 3],
                noise_mode,
                layer_rngs[first_noise : first_noise + 2],
                layer_noise[first_noise : first_noise + 2],
            )
        return img


class Generator(nn.Module):
    """Mapping + synthesis; params `{"mapping": ..., "synthesis": ...}`.

    `__call__(z, w_avg, ...)` renders from z with optional truncation; `map` and `synthesize` give
    the two halves (use `Generator(cfg).apply(variables, z, method="map")`).
    """

    config: GeneratorConfig
    precision: str = "highest"

    def setup(self):
        self.mapping = MappingNetwork(self.config, self.precision)
        self.synthesis = SynthesisNetwork(self.config, self.precision)

    def map(self, z, w_avg=None, truncation_psi=1.0, truncation_cutoff=None):
        """z [B, z_dim] -> ws [B, num_ws, w_dim], truncated towards `w_avg` when psi != 1."""
        ws = broadcast_w(self.mapping(z), self.config.num_ws)
        if w_avg is not None:
            ws = truncate(ws, w_avg, truncation_psi, truncation_cutoff)
        return ws

    def synthesize(self, ws, noise_mode="const", rng=None, noise=None):
        return self.synthesis(ws, noise_mode, rng, noise)

    def __call__(
        self, z, w_avg=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const", rng=None, noise=None
    ):
        return self.synthesize(self.map(z, w_avg, truncation_psi, truncation_cutoff), noise_mode, rng, noise)
