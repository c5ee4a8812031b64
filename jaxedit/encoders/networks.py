"""pSp's GradualStyleEncoder and e4e's Encoder4Editing as Flax linen modules (NHWC).

Both run the same layers (and hold the same parameters):

    c1, c2, c3 = backbone(x)                               # sides S/4, S/8, S/16
    p2 = upsample(c3 -> side of c2) + latlayer1(c2)          # bilinear, align_corners=True
    p1 = upsample(p2 -> side of c1) + latlayer2(c1)          # latlayers: 1x1 convs with bias
    style_outputs[:, i] = style_i(c3 | p2 | p1)              # heads 0-2 | 3-6 | 7.. (see config)

and differ only in how the head outputs become codes [B, n_styles, w_dim]:

- pSp (`GradualStyleEncoder`): codes = style_outputs, one independent code per W+ layer;
- e4e (`Encoder4Editing`, at its inference stage, where every head is active): head 0 gives a
  base code w0 and the others offsets from it, codes[:, 0] = w0, codes[:, i] = w0 + style_outputs[:, i].

Neither adds the average latent: `jaxedit.encoders.loading` does (`latents = codes + latent_avg`,
row by row, as both references do with start_from_latent_avg).

Parameter layout: `backbone/...` (see `jaxedit.encoders.backbone`), `latlayer1/{kernel [1, 1, d3, F],
bias [F]}`, `latlayer2/{kernel [1, 1, d2, F], bias}`, `style_{i}/...` (see `jaxedit.encoders.styles`),
with F = the width of c3.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxedit.encoders.backbone import Backbone, Conv
from jaxedit.encoders.config import EncoderConfig
from jaxedit.encoders.styles import GradualStyleBlock, upsample_bilinear_align_corners

TAP_NAMES = ("input_layer_out", "c1", "c2", "c3", "p2", "p1", "style_outputs")


class _PyramidStyleEncoder(nn.Module):
    """images [B, S, S, in] (S = config.input_size, values in [-1, 1]) -> codes [B, n_styles, w_dim];
    with `with_taps=True` -> (codes, taps) where taps holds the arrays named in `TAP_NAMES`."""

    config: EncoderConfig
    precision: str = "highest"

    @staticmethod
    def combine(style_outputs: jax.Array) -> jax.Array:
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array, with_taps: bool = False):
        config, precision = self.config, self.precision
        taps = Backbone(config, precision, name="backbone")(x)
        c1, c2, c3 = taps["c1"], taps["c2"], taps["c3"]
        width = config.feature_channels
        lateral2 = Conv(width, 1, 1, 0, precision, use_bias=True, name="latlayer1")(c2)
        taps["p2"] = upsample_bilinear_align_corners(c3, lateral2.shape[1:3], precision) + lateral2
        lateral1 = Conv(width, 1, 1, 0, precision, use_bias=True, name="latlayer2")(c1)
        taps["p1"] = upsample_bilinear_align_corners(taps["p2"], lateral1.shape[1:3], precision) + lateral1
        outputs = [
            GradualStyleBlock(config.w_dim, config.style_convs(i), precision, name=f"style_{i}")(
                taps[config.style_source(i)]
            )
            for i in range(config.n_styles)
        ]
        taps["style_outputs"] = jnp.stack(outputs, axis=1)
        codes = self.combine(taps["style_outputs"])
        return (codes, taps) if with_taps else codes


class GradualStyleEncoder(_PyramidStyleEncoder):
    """pSp: every style head gives the code of its W+ layer."""

    @staticmethod
    def combine(style_outputs: jax.Array) -> jax.Array:
        return style_outputs


class Encoder4Editing(_PyramidStyleEncoder):
    """e4e: head 0 gives the base code w0, heads 1.. give offsets added to it."""

    @staticmethod
    def combine(style_outputs: jax.Array) -> jax.Array:
        base = style_outputs[:, :1]
        offsets = style_outputs.at[:, 0].set(0.0)
        return base + offsets


def build_encoder(config: EncoderConfig, precision: str = "highest") -> _PyramidStyleEncoder:
    """The module for `config.kind` ('psp' or 'e4e')."""
    module = GradualStyleEncoder if config.kind == "psp" else Encoder4Editing
    return module(config, precision)
