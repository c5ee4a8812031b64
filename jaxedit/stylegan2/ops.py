"""StyleGAN2's numerical building blocks as pure functions on NHWC arrays.

- FIR filtering and 2x upsampling (`fir_filter2d`, `upsample2d`, `upfirdn2d`): separable FIRs written
  as weighted sums of shifted slices, so XLA fuses them with the surrounding element-wise work
  instead of launching a depthwise convolution.
- The modulated convolution in its fast form (`modulated_conv2d`): `conv(x * s, W) * d` with the
  demodulation `d` computed from `s**2 @ sum_k(W**2)`, so no per-sample weights exist anywhere; the
  up-sampling variant is ONE `lhs_dilation=2` convolution with the spatially flipped kernel followed
  by the 4x4 FIR blur.
- The conv epilogue (`conv_epilogue`: noise, bias, leaky ReLU with gain sqrt(2), clamp) and toRGB.
- `naive_modulated_conv2d`: the textbook per-sample-weight formulation (vmap of a conv), used only
  as the benchmark baseline and as an independent check in tests.
- `Precision`: the three numerical modes (float32 'highest', float32 'default' = TF32 on GPUs,
  'bfloat16').

Shapes: activations `[B, H, W, C]`, conv kernels `[kh, kw, C_in, C_out]` (HWIO), styles `[B, C_in]`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxedit.errors import ConfigError

STANDARD_FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8
PRECISION_MODES = ("highest", "default", "bfloat16")
_NHWC = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Precision:
    """A numerical mode: `compute_dtype` for the big convolutions, `lax_precision` for matmuls/convs.

    'highest': float32 everywhere, `lax.Precision.HIGHEST` (true fp32 on GPUs).
    'default': float32 storage, `lax.Precision.DEFAULT` (TF32 tensor cores on Ampere+ GPUs).
    'bfloat16': activations and 3x3 convs in bfloat16 (fp32 accumulation on GPUs); the styles,
        demodulation, epilogue arithmetic, toRGB and the skip image stay float32.
    """

    name: str
    compute_dtype: jnp.dtype
    lax_precision: lax.Precision

    @staticmethod
    def from_name(name: str | Precision) -> Precision:
        if isinstance(name, Precision):
            return name
        if name in ("highest", "float32"):
            return Precision("highest", jnp.float32, lax.Precision.HIGHEST)
        if name in ("default", "tf32"):
            return Precision("default", jnp.float32, lax.Precision.DEFAULT)
        if name in ("bfloat16", "bf16"):
            return Precision("bfloat16", jnp.bfloat16, lax.Precision.DEFAULT)
        raise ConfigError(f"precision {name!r}: expected one of {', '.join(PRECISION_MODES)}")


# --------------------------------------------------------------------------------------------
# FIR filters
# --------------------------------------------------------------------------------------------


def normalized_taps(taps: Sequence[float], gain: float = 1.0) -> tuple[float, ...]:
    """1-D taps scaled to sum to `gain` (the separable factor of a 2-D FIR)."""
    total = float(sum(taps))
    return tuple(float(t) * gain / total for t in taps)


def _fir_along(x: jax.Array, taps: Sequence[float], axis: int, pad: tuple[int, int]) -> jax.Array:
    """Zero-pad `x` along `axis` by `pad` and correlate with `taps` (valid). Taps are symmetric in
    StyleGAN2, so correlation equals convolution."""
    widths = [(0, 0)] * x.ndim
    widths[axis] = pad
    padded = jnp.pad(x, widths)
    out_len = padded.shape[axis] - len(taps) + 1
    total = None
    for t, tap in enumerate(taps):
        term = lax.slice_in_dim(padded, t, t + out_len, axis=axis) * jnp.asarray(tap, x.dtype)
        total = term if total is None else total + term
    return total


def fir_filter2d(x: jax.Array, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0) -> jax.Array:
    """Separable 2-D FIR `outer(taps, taps)` normalised to sum `gain`, zero padding `pad` on H and W.

    x: [B, H, W, C] -> [B, H + p0 + p1 - len(taps) + 1, W + ..., C]
    """
    per_dim = normalized_taps(taps, math.sqrt(gain))
    x = _fir_along(x, per_dim, axis=1, pad=pad)
    return _fir_along(x, per_dim, axis=2, pad=pad)


def _zero_insert(x: jax.Array, axis: int) -> jax.Array:
    """x0, 0, x1, 0, ... along `axis` (length doubles)."""
    stacked = jnp.stack([x, jnp.zeros_like(x)], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] *= 2
    return stacked.reshape(shape)


def upfirdn2d(
    x: jax.Array, taps: Sequence[float], up: int = 1, pad: tuple[int, int] = (0, 0), gain: float = 1.0
) -> jax.Array:
    """Upsample by `up` (1 or 2, zero insertion), pad, FIR with `outer(taps)` summing to `gain`.

    x: [B, H, W, C] -> [B, up*H + p0 + p1 - len(taps) + 1, ..., C]. No downsampling is needed by
    the generator, so none is offered.
    """
    if up not in (1, 2):
        raise ConfigError(f"upfirdn2d: up={up} not supported (1 or 2)")
    if up == 2:
        x = _zero_insert(_zero_insert(x, axis=1), axis=2)
    return fir_filter2d(x, taps, pad, gain)


def upsample2d(x: jax.Array, taps: Sequence[float] = STANDARD_FIR_TAPS) -> jax.Array:
    """StyleGAN2's 2x upsampling of the skip image: [B, H, W, C] -> [B, 2H, 2W, C].

    Zero insertion, pad (p0, p1) = ((k+1)//2, (k-2)//2) i.e. (2, 1) for 4 taps, FIR with gain 4.
    """
    k = len(taps)
    pad = ((k + 1) // 2, (k - 2) // 2)
    return upfirdn2d(x, taps, up=2, pad=pad, gain=4.0)


def blur_after_upconv(x: jax.Array, taps: Sequence[float] = STANDARD_FIR_TAPS) -> jax.Array:
    """The FIR after the stride-2 transposed 3x3 conv: [B, 2H+1, 2W+1, C] -> [B, 2H, 2W, C].

    Padding for a k-tap FIR after a 3x3 kernel, factor 2: p = (k - 2) - (3 - 1), (p+1)//2 + 1 before
    and p//2 + 1 after: (1, 1) for the standard 4 taps.
    """
    p = (len(taps) - 2) - (3 - 1)
    pad0 = (p + 1) // 2 + 1
    pad1 = p // 2 + 1
    return fir_filter2d(x, taps, (pad0, pad1), gain=4.0)


# --------------------------------------------------------------------------------------------
# Modulated convolution
# --------------------------------------------------------------------------------------------


def demodulation(weight: jax.Array, styles: jax.Array) -> jax.Array:
    """d[b, o] = rsqrt(sum_{i,kh,kw} (W[kh,kw,i,o] * s[b,i])^2 + 1e-8), computed in float32.

    weight: [kh, kw, I, O]; styles: [B, I] -> [B, O]. Never forms a per-sample weight.
    """
    w32 = weight.astype(jnp.float32)
    s32 = styles.astype(jnp.float32)
    energy = jnp.sum(jnp.square(w32), axis=(0, 1))  # [I, O]
    return lax.rsqrt(jnp.matmul(jnp.square(s32), energy, precision=lax.Precision.HIGHEST) + DEMOD_EPS)


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    *,
    up: bool = False,
    precision: str | Precision = "highest",
) -> jax.Array:
    """The modulated convolution WITHOUT demodulation applied: `conv(x * s, W)` (and for `up`, the
    stride-2 transposed conv as one lhs-dilated conv with the flipped kernel, then the FIR blur).

    x: [B, H, W, I]; weight: [k, k, I, O] (the effective kernel); styles: [B, I]
    -> [B, H, W, O] in the precision's compute dtype (with up=True: [B, 2H, 2W, O] float32, the
    FIR summed in float32).
    Multiply by `demodulation(weight, styles)[:, None, None, :]` to demodulate (done in the
    epilogue, where XLA fuses it; the FIR is per channel so it commutes with that scaling).
    """
    mode = Precision.from_name(precision)
    dtype = mode.compute_dtype
    xs = (x.astype(jnp.float32) * styles.astype(jnp.float32)[:, None, None, :]).astype(dtype)
    kernel = weight.astype(dtype)
    k = weight.shape[0]
    if up:
        y = lax.conv_general_dilated(
            xs,
            kernel[::-1, ::-1],
            window_strides=(1, 1),
            padding=((k - 1, k - 1), (k - 1, k - 1)),
            lhs_dilation=(2, 2),
            dimension_numbers=_NHWC,
            precision=mode.lax_precision,
        )
        return blur_after_upconv(y.astype(jnp.float32))  # FIR sums in float32 (fused with the epilogue)
    return lax.conv_general_dilated(
        xs,
        kernel,
        window_strides=(1, 1),
        padding=((k // 2, k // 2), (k // 2, k // 2)),
        dimension_numbers=_NHWC,
        precision=mode.lax_precision,
    )


def conv_epilogue(
    y: jax.Array,
    demod: jax.Array | None,
    noise: jax.Array | None,
    noise_strength: jax.Array,
    bias: jax.Array,
    conv_clamp: float | None,
    out_dtype,
) -> jax.Array:
    """`y * d + noise_strength * noise + bias`, leaky ReLU(0.2) * sqrt(2), clip to +-conv_clamp.

    y: [B, H, W, O]; demod: [B, O] or None; noise: broadcastable to [B, H, W, 1] or None;
    bias: [O]. Arithmetic in float32, result cast to `out_dtype`.
    """
    y = y.astype(jnp.float32)
    if demod is not None:
        y = y * demod[:, None, None, :]
    if noise is not None:
        y = y + noise_strength.astype(jnp.float32) * noise.astype(jnp.float32)
    y = y + bias.astype(jnp.float32)
    y = jnp.where(y >= 0, y, y * LRELU_SLOPE) * LRELU_GAIN
    if conv_clamp is not None:
        y = jnp.clip(y, -conv_clamp, conv_clamp)
    return y.astype(out_dtype)


def to_rgb(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    bias: jax.Array,
    conv_clamp: float | None,
    precision: str | Precision = "highest",
) -> jax.Array:
    """toRGB: 1x1 modulated conv without demodulation, style gain 1/sqrt(C_in), plus bias, clamp.

    x: [B, H, W, I]; weight: [I, C_img]; styles: [B, I]; bias: [C_img] -> [B, H, W, C_img] float32.
    Always float32 (it is a tiny, memory-bound op and the image is what users see).
    """
    mode = Precision.from_name(precision)
    lax_precision = lax.Precision.HIGHEST if mode.name == "highest" else lax.Precision.DEFAULT
    gain = 1.0 / math.sqrt(weight.shape[0])
    # Fold the per-sample style into a per-sample [I, C_img] matrix: it is tiny (C_img = 3).
    per_sample = styles.astype(jnp.float32)[:, :, None] * (weight.astype(jnp.float32) * gain)[None]
    y = jnp.einsum("bhwi,bic->bhwc", x.astype(jnp.float32), per_sample, precision=lax_precision)
    y = y + bias.astype(jnp.float32)
    if conv_clamp is not None:
        y = jnp.clip(y, -conv_clamp, conv_clamp)
    return y


def naive_modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    *,
    demodulate: bool = True,
    up: bool = False,
    precision: str | Precision = "highest",
) -> jax.Array:
    """The textbook formulation (benchmark baseline): per-sample weights `W' = W * s`, demodulated,
    convolved sample by sample (a vmap of a conv, i.e. a grouped conv after batching).

    Same signature and result as `modulated_conv2d(...) * demodulation(...)`, including the blur.
    """
    mode = Precision.from_name(precision)
    dtype = mode.compute_dtype
    k = weight.shape[0]

    def one(xb, sb):
        wb = weight.astype(jnp.float32) * sb.astype(jnp.float32)[None, None, :, None]  # [k,k,I,O]
        if demodulate:
            wb = wb * lax.rsqrt(jnp.sum(jnp.square(wb), axis=(0, 1, 2), keepdims=True) + DEMOD_EPS)
        xb = xb[None].astype(dtype)
        wb = wb.astype(dtype)
        if up:
            y = lax.conv_general_dilated(
                xb,
                wb[::-1, ::-1],
                (1, 1),
                ((k - 1, k - 1), (k - 1, k - 1)),
                lhs_dilation=(2, 2),
                dimension_numbers=_NHWC,
                precision=mode.lax_precision,
            )
            y = blur_after_upconv(y)
        else:
            y = lax.conv_general_dilated(
                xb,
                wb,
                (1, 1),
                ((k // 2, k // 2), (k // 2, k // 2)),
                dimension_numbers=_NHWC,
                precision=mode.lax_precision,
            )
        return y[0]

    return jax.vmap(one)(x, styles)
