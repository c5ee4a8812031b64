"""The StyleGAN2 architecture record: `GeneratorConfig` and its validation.

Every architecture number read from a checkpoint or a manifest passes `validate_generator_config`
(type, finiteness, range) before anything is built; `num_ws` and the layer bookkeeping derive from
the config. The parameter layout is documented in `jaxedit.stylegan2.networks`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from jaxedit.errors import ConfigError, describe_value

NOISE_MODES = ("const", "random", "none")


def nvlabs_channels(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """NVlabs' channel table `min(channel_base // res, channel_max)` for res = 4 .. resolution."""
    return {r: min(channel_base // r, channel_max) for r in _resolutions(resolution)}


def _resolutions(resolution: int) -> list[int]:
    return [2**k for k in range(2, int(math.log2(resolution)) + 1)]


MAX_RESOLUTION = 4096
MAX_DIM = 8192  # z_dim, w_dim and every channel count
MAX_MAPPING_LAYERS = 32
MAX_IMG_CHANNELS = 16
LR_MULTIPLIER_RANGE = (1e-6, 1e3)


def _bounded_int(name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int in [low, high]; ConfigError for bools, floats, strings, NaN, huge ints."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} {_brief(value)}: expected an integer {low}..{high}")
    value = int(value)
    if not low <= value <= high:
        raise ConfigError(f"{name} {_brief(value)}: expected an integer {low}..{high}")
    return value


def _bounded_float(name: str, value: Any, low: float, high: float, expected: str = "") -> float:
    expected = expected or f"expected a positive finite number in [{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} {_brief(value)}: {expected}")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} {_brief(value)}: {expected}")
    return value


def _brief(value: Any) -> str:
    """`describe_value`, non-numbers in parentheses: "lr_multiplier (a list)", "z_dim nan"."""
    text = describe_value(value)
    return text if isinstance(value, (int, float, type(None))) and not text.startswith("an ") else f"({text})"


def validate_generator_config(config: GeneratorConfig) -> None:
    """Check every architecture number of `config` (and normalise `channels`, `lr_multiplier`,
    `conv_clamp`) before anything is built from it; one-line ConfigError otherwise.

    Bounds: resolution a power of two 4..MAX_RESOLUTION; z_dim, w_dim and every channel count
    1..MAX_DIM; mapping_layers 1..MAX_MAPPING_LAYERS; img_channels 1..MAX_IMG_CHANNELS;
    lr_multiplier finite in LR_MULTIPLIER_RANGE; conv_clamp None or finite > 0. Integers must be
    integers (not bools, floats or strings). This is the one validator for configs read from a
    checkpoint, a manifest or the command line.
    """
    res = _bounded_int("resolution", config.resolution, 4, MAX_RESOLUTION)
    if res & (res - 1):
        raise ConfigError(f"resolution {res}: expected a power of two 4..{MAX_RESOLUTION}")
    object.__setattr__(config, "resolution", res)
    for name, high in (
        ("z_dim", MAX_DIM),
        ("w_dim", MAX_DIM),
        ("mapping_layers", MAX_MAPPING_LAYERS),
        ("img_channels", MAX_IMG_CHANNELS),
    ):
        object.__setattr__(config, name, _bounded_int(name, getattr(config, name), 1, high))
    table = nvlabs_channels(res) if config.channels is None else config.channels
    if isinstance(table, Mapping):
        table = list(table.items())
    wanted = _resolutions(res)
    if (
        not isinstance(table, (list, tuple))
        or len(table) > len(wanted)
        or any(not isinstance(pair, (list, tuple)) or len(pair) != 2 for pair in table)
    ):
        raise ConfigError(f"channels: expected {{resolution: channels}} for resolutions {wanted}")
    pairs = []
    for r, c in table:
        if isinstance(r, str) and r.isdecimal() and len(r) <= 5:
            r = int(r)
        r = _bounded_int("channels key", r, 4, MAX_RESOLUTION)
        pairs.append((r, _bounded_int(f"channels[{r}]", c, 1, MAX_DIM)))
    pairs.sort()
    have = [r for r, _ in pairs]
    if have != wanted:
        raise ConfigError(f"channels: expected entries for resolutions {wanted}, got {have}")
    object.__setattr__(config, "channels", tuple(pairs))
    if config.conv_clamp is not None:
        object.__setattr__(
            config,
            "conv_clamp",
            _bounded_float(
                "conv_clamp", config.conv_clamp, 1e-6, 1e9, "expected a positive number (up to 1e9) or None"
            ),
        )
    object.__setattr__(
        config, "lr_multiplier", _bounded_float("lr_multiplier", config.lr_multiplier, *LR_MULTIPLIER_RANGE)
    )


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """A StyleGAN2 generator architecture. Config-f FFHQ is `GeneratorConfig()` (1024, 512, 8 layers).

    `channels` maps every resolution 4, 8, ..., `resolution` to its feature count; pass a dict
    (keys may be strings, as in JSON), it is stored as a sorted tuple of pairs so the config stays
    hashable. None means the config-f table (NVlabs `min(32768 // res, 512)`). Every number is
    checked on construction (`validate_generator_config`).
    """

    resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    channels: Any = None
    lr_multiplier: float = 0.01
    conv_clamp: float | None = None
    img_channels: int = 3

    def __post_init__(self):
        validate_generator_config(self)

    # ---- derived quantities -------------------------------------------------------------
    @property
    def log2_resolution(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        """Number of W+ entries: 2 * log2(resolution) - 2 (18 at 1024)."""
        return 2 * self.log2_resolution - 2

    @property
    def num_noise_layers(self) -> int:
        """Number of 3x3 conv layers (each with a noise input): 2 * log2(resolution) - 3."""
        return 2 * self.log2_resolution - 3

    @property
    def resolutions(self) -> list[int]:
        return _resolutions(self.resolution)

    def channel(self, resolution: int) -> int:
        return dict(self.channels)[resolution]

    def noise_resolutions(self) -> list[int]:
        """Spatial size of each noise layer's map, in layer order (4, 8, 8, 16, 16, ...)."""
        return [4] + [r for r in self.resolutions[1:] for _ in range(2)]

    # ---- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "resolution": self.resolution,
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "mapping_layers": self.mapping_layers,
            "channels": {str(r): c for r, c in self.channels},
            "lr_multiplier": self.lr_multiplier,
            "conv_clamp": self.conv_clamp,
            "img_channels": self.img_channels,
            "num_ws": self.num_ws,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> GeneratorConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"generator config: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        derived = {"num_ws"}
        unknown = set(data) - known - derived
        if unknown:
            raise ConfigError(f"generator config: unknown keys {sorted(map(str, unknown))[:5]}")
        config = cls(**{k: v for k, v in data.items() if k in known})
        if "num_ws" in data and data["num_ws"] != config.num_ws:
            raise ConfigError(
                f"generator config: num_ws {data['num_ws']} does not match resolution {config.resolution}"
            )
        return config


# ------------------------------------------------------------------------------------------------
# Latent-space helpers
# ------------------------------------------------------------------------------------------------
