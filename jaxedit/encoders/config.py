"""`EncoderConfig`: the architecture of a pSp / e4e image encoder (IR-SE backbone + style heads).

Everything the layers need derives from a handful of numbers a checkpoint implies:

- `input_size`: the side of the square input image (256 for the released FFHQ encoders). The
  backbone halves it in each of its 4 stages, so the feature maps are c1 = input/4, c2 = input/8,
  c3 = input/16 on a side; a style head reading a map of side S has log2(S) stride-2 convs.
- `in_channels`, `stem_channels`: the input layer's conv (3 -> 64 at full size).
- `stage_depths`, `stage_units`, `se_channels`: per backbone stage, the output width, the number
  of residual units (IR-SE-50: 3, 4, 14, 3) and the squeeze-excitation hidden width (depth / 16).
- `n_styles`, `w_dim`: the output is [B, n_styles, w_dim] (18 x 512 for a 1024 generator).

The style heads read c3 (styles 0-2), p2 (3-6) and p1 (7 onwards): `COARSE_STYLES` and
`MIDDLE_STYLES` below, the split both reference encoders use.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxedit.config import check_types
from jaxedit.config import from_dict as config_from_dict
from jaxedit.config import to_dict as config_to_dict
from jaxedit.errors import ConfigError

KINDS = ("psp", "e4e")
NUM_STAGES = 4
COARSE_STYLES = 3  # styles [0, 3) read c3
MIDDLE_STYLES = 7  # styles [3, 7) read p2, [7, n_styles) read p1
BATCH_NORM_EPS = 1e-5
LEAKY_RELU_SLOPE = 0.01  # torch nn.LeakyReLU() default, used inside the style heads


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """A pSp (`kind="psp"`, GradualStyleEncoder) or e4e (`kind="e4e"`, Encoder4Editing) encoder.

    The defaults are the released FFHQ encoders (IR-SE-50 at 256x256, 18 styles of 512).
    """

    kind: str = "psp"
    input_size: int = 256
    in_channels: int = 3
    stem_channels: int = 64
    stage_depths: tuple[int, ...] = (64, 128, 256, 512)
    stage_units: tuple[int, ...] = (3, 4, 14, 3)
    se_channels: tuple[int, ...] = (4, 8, 16, 32)
    n_styles: int = 18
    w_dim: int = 512

    def __post_init__(self):
        check_types(self)  # lists -> tuples (as read from JSON), wrong types in one line
        if self.kind not in KINDS:
            raise ConfigError(f"encoder kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        for name in ("stage_depths", "stage_units", "se_channels"):
            value = getattr(self, name)
            if len(value) != NUM_STAGES or not all(v >= 1 for v in value):
                raise ConfigError(f"{name} {list(value)}: expected {NUM_STAGES} positive integers")
        for name in ("in_channels", "stem_channels", "n_styles", "w_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: expected a positive integer")
        size = self.input_size
        if size < 32 or size & (size - 1):
            raise ConfigError(f"input_size {size}: expected a power of two >= 32")

    # ---- derived sizes ------------------------------------------------------------------
    @property
    def feature_channels(self) -> int:
        """Width of c3, of the FPN maps p2 / p1 (the lateral 1x1 convs) and of the style heads' input."""
        return self.stage_depths[-1]

    @property
    def num_units(self) -> int:
        return sum(self.stage_units)

    def unit_specs(self) -> list[tuple[int, int, int, int]]:
        """(in_channels, depth, stride, se_channels) of every residual unit, in order."""
        specs, channels = [], self.stem_channels
        for depth, units, se in zip(self.stage_depths, self.stage_units, self.se_channels):
            for j in range(units):
                specs.append((channels, depth, 2 if j == 0 else 1, se))
                channels = depth
        return specs

    def tap_units(self) -> tuple[int, int, int]:
        """Indices of the units after which c1, c2, c3 are read (the last unit of stages 2, 3, 4;
        6, 20, 23 for IR-SE-50)."""
        ends, total = [], 0
        for units in self.stage_units:
            total += units
            ends.append(total - 1)
        return ends[1], ends[2], ends[3]

    def style_source(self, index: int) -> str:
        """Which feature map style head `index` reads: 'c3', 'p2' or 'p1'."""
        if index < COARSE_STYLES:
            return "c3"
        return "p2" if index < MIDDLE_STYLES else "p1"

    def style_convs(self, index: int) -> int:
        """Number of stride-2 convs in style head `index`: log2 of the side of the map it reads."""
        side = {"c3": self.input_size // 16, "p2": self.input_size // 8, "p1": self.input_size // 4}
        return side[self.style_source(index)].bit_length() - 1

    # ---- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EncoderConfig:
        return config_from_dict(cls, data)
