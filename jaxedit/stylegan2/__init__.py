"""The StyleGAN2 generator in Flax linen (NHWC, fast modulated convolutions) and its loader.

- `ops`: FIR/upsampling, modulated conv, epilogue, toRGB, precision modes.
- `config`: `GeneratorConfig` (the architecture) and its validation.
- `networks`: `MappingNetwork`, `SynthesisNetwork`, `Generator`, `truncate`,
  `mix_styles`, `broadcast_w`.
- `loading`: `load_generator(dir) -> LoadedGenerator` with jitted `mapping` / `synthesis`.
"""

from jaxedit.stylegan2.config import GeneratorConfig, nvlabs_channels
from jaxedit.stylegan2.loading import LoadedGenerator, init_params, load_generator, random_generator
from jaxedit.stylegan2.networks import Generator, MappingNetwork, SynthesisNetwork, broadcast_w, mix_styles, truncate
from jaxedit.stylegan2.ops import PRECISION_MODES

__all__ = [
    "Generator",
    "GeneratorConfig",
    "MappingNetwork",
    "SynthesisNetwork",
    "LoadedGenerator",
    "load_generator",
    "random_generator",
    "init_params",
    "truncate",
    "mix_styles",
    "broadcast_w",
    "nvlabs_channels",
    "PRECISION_MODES",
]
