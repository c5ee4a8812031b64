"""Image encoders (pSp, e4e): photos -> W+ latents of a StyleGAN2 generator, in Flax linen.

- `config`: `EncoderConfig` (the architecture a checkpoint implies).
- `backbone`: the IR-SE backbone (input layer, residual units with squeeze-excitation).
- `styles`: the style heads (`GradualStyleBlock`) and the FPN's bilinear upsampling.
- `networks`: `GradualStyleEncoder` (pSp), `Encoder4Editing` (e4e), `build_encoder`.
- `preprocess`: the references' input transform (Pillow bilinear resize, scale to [-1, 1]).
- `loading`: `load_encoder(dir) -> LoadedEncoder` with jitted `encode` / `codes` / `encode_uint8`.
"""

from jaxedit.encoders.config import EncoderConfig
from jaxedit.encoders.loading import LoadedEncoder, count_parameters, load_encoder, random_encoder
from jaxedit.encoders.networks import Encoder4Editing, GradualStyleEncoder, build_encoder
from jaxedit.encoders.preprocess import preprocess

__all__ = [
    "EncoderConfig",
    "Encoder4Editing",
    "GradualStyleEncoder",
    "LoadedEncoder",
    "build_encoder",
    "count_parameters",
    "load_encoder",
    "preprocess",
    "random_encoder",
]
