"""Loading a converted encoder directory into a ready-to-use object with jitted entry points.

`load_encoder(dir)` reads a directory written by `jaxedit.convert.encoder.convert_encoder` (kind
"encoder", see `jaxedit.modeldir`) and returns a `LoadedEncoder` with

    encode(images [B, S, S, 3] float32 in [-1, 1]) -> ws [B, num_ws, w_dim]   (codes + latent_avg)
    codes(images)                                  -> [B, num_ws, w_dim]      (without latent_avg)
    encode_uint8(images uint8 [B, H, W, 3])        -> ws                      (the reference transform first)
    taps(images)                                   -> {name: array} intermediate feature maps

where S is `input_size`. The jitted functions are shared by every encoder of the same
architecture, so a second directory does not compile again. `LoadedEncoder.from_params` wraps
params you already hold; `random_encoder` draws random ones (benchmarks, tests).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.encoders.backbone import PRECISIONS
from jaxedit.encoders.config import EncoderConfig
from jaxedit.encoders.networks import build_encoder
from jaxedit.encoders.preprocess import preprocess
from jaxedit.errors import ConfigError, InputError

BUFFER_NAMES = ("mean", "var")  # BatchNorm running statistics: stored, but not trainable parameters


@dataclasses.dataclass(eq=False)
class LoadedEncoder:
    """An encoder ready to run. Build with `load_encoder(dir)` or `LoadedEncoder.from_params`.

    `params` is {"encoder": module params, "latent_avg": [num_ws, w_dim]} of jax arrays.
    """

    config: EncoderConfig
    params: dict
    precision: str = "highest"
    manifest: dict | None = None
    path: Path | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.module = build_encoder(self.config, self.precision)
        self._forward_jit, self._taps_jit = _jitted_entry_points(self.config, self.precision)

    @classmethod
    def from_params(
        cls, config: EncoderConfig, params: dict, precision: str = "highest", **kwargs: Any
    ) -> LoadedEncoder:
        for part in ("encoder", "latent_avg"):
            if part not in params:
                raise ConfigError(f"encoder params lack {part!r}")
        check_param_shapes(config, params)
        tree = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), dict(params))
        return cls(config=config, params=tree, precision=precision, **kwargs)

    # ---- sizes --------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """'psp' or 'e4e'."""
        return self.config.kind

    @property
    def num_ws(self) -> int:
        return self.config.n_styles

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def latent_avg(self) -> jax.Array:
        """[num_ws, w_dim], added to the codes row by row."""
        return self.params["latent_avg"]

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.params["encoder"])

    # ---- running ------------------------------------------------------------------------
    def encode(self, images: Any) -> jax.Array:
        """images [B, S, S, C] float32 in [-1, 1] (S = input_size) -> ws [B, num_ws, w_dim]."""
        return self._forward_jit(self.params, self._check_images(images))[1]

    def codes(self, images: Any) -> jax.Array:
        """Like `encode` without the average latent: the raw encoder output [B, num_ws, w_dim]."""
        return self._forward_jit(self.params, self._check_images(images))[0]

    def encode_uint8(self, images: Any) -> jax.Array:
        """uint8 photos [B, H, W, 3] (already aligned) -> ws [B, num_ws, w_dim]: resized to the
        input size (Pillow bilinear), scaled to [-1, 1], encoded."""
        return self.encode(preprocess(images, self.input_size))

    def taps(self, images: Any) -> dict[str, jax.Array]:
        """The intermediate arrays for images [B, S, S, C]: input_layer_out, c1, c2, c3, p2, p1
        (NHWC) and style_outputs [B, num_ws, w_dim]."""
        return self._taps_jit(self.params["encoder"], self._check_images(images))

    def _check_images(self, images: Any) -> jax.Array:
        size, channels = self.input_size, self.config.in_channels
        shape = tuple(np.shape(images))
        if len(shape) != 4 or shape[1:] != (size, size, channels) or shape[0] < 1:
            raise InputError(
                f"images: expected [B, {size}, {size}, {channels}] float values in [-1, 1], got shape {list(shape)}"
            )
        dtype = np.dtype(getattr(images, "dtype", np.float32))
        if not np.issubdtype(dtype, np.floating):
            raise InputError(
                f"images: expected float values in [-1, 1], got dtype {dtype} (uint8 photos: use encode_uint8)"
            )
        return jnp.asarray(images, jnp.float32)


@functools.lru_cache(maxsize=8)
def _jitted_entry_points(config: EncoderConfig, precision: str):
    """(forward, taps) jitted functions of (params, images), shared by every encoder of the same
    architecture and precision. forward -> (codes, codes + latent_avg): one compiled program serves
    both `codes` and `encode`."""
    module = build_encoder(config, precision)

    def forward(params, images):
        codes = module.apply({"params": params["encoder"]}, images)
        return codes, codes + params["latent_avg"][None]

    def taps(encoder_params, images):
        return module.apply({"params": encoder_params}, images, with_taps=True)[1]

    return jax.jit(forward), jax.jit(taps)


def count_parameters(tree: Any) -> int:
    """Trainable parameters of an encoder params tree (BatchNorm running statistics excluded)."""
    if isinstance(tree, dict):
        return sum(count_parameters(v) for k, v in tree.items() if k not in BUFFER_NAMES)
    return int(np.size(tree))


@functools.lru_cache(maxsize=8)
def param_shapes(config: EncoderConfig) -> dict:
    """The encoder module's params pytree as `jax.ShapeDtypeStruct` leaves (nothing computed)."""
    module = build_encoder(config)
    images = jax.ShapeDtypeStruct((1, config.input_size, config.input_size, config.in_channels), jnp.float32)
    return jax.eval_shape(lambda k, x: module.init(k, x)["params"], jax.random.key(0), images)


def check_param_shapes(config: EncoderConfig, params: dict, where: str = "encoder params") -> None:
    """Raise ConfigError naming the first leaf of `params` that does not match `config`."""
    expected = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree.leaves_with_path(param_shapes(config))}
    got = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree.leaves_with_path(params["encoder"])}
    for key, shape in expected.items():
        if key not in got:
            raise ConfigError(f"{where}: missing encoder{key}")
        if got[key] != shape:
            raise ConfigError(f"{where}: encoder{key}: expected shape {list(shape)}, got {list(got[key])}")
    extra = sorted(set(got) - set(expected))
    if extra:
        raise ConfigError(f"{where}: unexpected encoder{extra[0]}")
    want = (config.n_styles, config.w_dim)
    if tuple(np.shape(params["latent_avg"])) != want:
        raise ConfigError(
            f"{where}: latent_avg: expected shape {list(want)}, got {list(np.shape(params['latent_avg']))}"
        )


def load_encoder(directory: str | Path, precision: str = "highest") -> LoadedEncoder:
    """Load an encoder directory written by `convert_encoder` (kind 'encoder')."""
    from jaxedit.modeldir import read_model_dir

    manifest, tree = read_model_dir(directory, expected_kind="encoder")
    config = EncoderConfig.from_dict(manifest.get("config"))
    if not isinstance(tree, dict):
        raise ConfigError(f"{directory}: saved params are not a mapping")
    return LoadedEncoder.from_params(config, tree, precision, manifest=manifest, path=Path(directory))


def random_encoder(config: EncoderConfig, seed: int = 0, precision: str = "highest") -> LoadedEncoder:
    """An encoder with random params (benchmarks, tests): conv kernels N(0, 1/fan_in), EqualLinear
    kernels N(0, 1), BatchNorm identity statistics, PReLU slopes 0.25, zero biases and latent_avg."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        shape = leaf.shape
        if name in ("scale", "var"):
            return np.ones(shape, np.float32)
        if name in ("bias", "mean"):
            return np.zeros(shape, np.float32)
        if name == "slope":
            return np.full(shape, 0.25, np.float32)
        fan_in = int(np.prod(shape[:-1])) if getattr(path[-2], "key", "") != "linear" else 1
        return (rng.standard_normal(shape, np.float32) / np.sqrt(fan_in)).astype(np.float32)

    encoder = jax.tree.map_with_path(draw, param_shapes(config))
    params = {"encoder": encoder, "latent_avg": np.zeros((config.n_styles, config.w_dim), np.float32)}
    return LoadedEncoder.from_params(config, params, precision)
