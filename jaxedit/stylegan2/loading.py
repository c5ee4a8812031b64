"""Loading a converted generator directory into a ready-to-use object with jitted entry points.

`load_generator(dir)` reads a directory written by `jaxedit convert stylegan2` (see
`jaxedit.modeldir`) and returns a `LoadedGenerator`: the config, the params pytree
`{"mapping": ..., "synthesis": ...}`, the average latent, the linen modules, and jitted

    mapping(z [B, z_dim], truncation_psi=1.0, truncation_cutoff=None) -> ws [B, num_ws, w_dim]
    synthesis(ws [B, num_ws, w_dim] | w [B, w_dim], noise_mode='const', rng=None, noise=None)
        -> images [B, H, W, C_img] float32, NHWC, about [-1, 1]

`LoadedGenerator.from_params` wraps params you already hold (e.g. randomly initialised ones from
`random_generator`, used by the benchmark and tests).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.errors import ConfigError, InputError
from jaxedit.stylegan2 import ops
from jaxedit.stylegan2.config import NOISE_MODES, GeneratorConfig
from jaxedit.stylegan2.networks import (
    MappingNetwork,
    SynthesisNetwork,
    broadcast_w,
    mix_styles,
    truncate,
)


@dataclasses.dataclass(eq=False)
class LoadedGenerator:
    """A generator ready to run. Build with `load_generator(dir)` or `LoadedGenerator.from_params`."""

    config: GeneratorConfig
    params: dict  # {"mapping": ..., "synthesis": ...} of jax arrays
    w_avg: jax.Array  # [w_dim]
    precision: str = "highest"
    manifest: dict | None = None
    path: Path | None = None

    def __post_init__(self):
        self.precision = ops.Precision.from_name(self.precision).name
        self.mapping_module = MappingNetwork(self.config, self.precision)
        self.synthesis_module = SynthesisNetwork(self.config, self.precision)
        self._map_jit, self._synth_jit = _jitted_entry_points(self.config, self.precision)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_params(
        cls, config: GeneratorConfig, params: dict, w_avg: Any, precision: str = "highest", **kwargs
    ) -> LoadedGenerator:
        params = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float32), {"mapping": params["mapping"], "synthesis": params["synthesis"]}
        )
        w_avg = jnp.asarray(w_avg, jnp.float32)
        if w_avg.shape != (config.w_dim,):
            raise ConfigError(f"w_avg: expected shape [{config.w_dim}], got {list(w_avg.shape)}")
        return cls(config=config, params=params, w_avg=w_avg, precision=precision, **kwargs)

    def with_precision(self, precision: str) -> LoadedGenerator:
        """The same weights run in another numerical mode ('highest', 'default', 'bfloat16')."""
        return LoadedGenerator(self.config, self.params, self.w_avg, precision, self.manifest, self.path)

    # ---- sizes --------------------------------------------------------------------------
    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def noise_const(self) -> list[jax.Array]:
        """The stored noise maps in layer order, each [R, R] (4, 8, 8, 16, 16, ...)."""
        maps = [self.params["synthesis"]["b4"]["conv1"]["noise_const"]]
        for res in self.config.resolutions[1:]:
            block = self.params["synthesis"][f"b{res}"]
            maps += [block["conv0"]["noise_const"], block["conv1"]["noise_const"]]
        return maps

    # ---- running ------------------------------------------------------------------------
    def mapping(self, z: Any, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
        """z [B, z_dim] -> ws [B, num_ws, w_dim], truncated towards `w_avg` (cutoff: layers < N only)."""
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"z: expected [B, {self.z_dim}], got {list(z.shape)}")
        cutoff = check_truncation_cutoff(truncation_cutoff, self.num_ws)
        return self._map_jit(self.params["mapping"], self.w_avg, z, jnp.float32(truncation_psi), cutoff=cutoff)

    def truncate(self, w_or_ws: Any, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
        """Truncate W [B, w_dim] or W+ [B, num_ws, w_dim] latents towards this generator's w_avg."""
        ws = self.as_ws(w_or_ws)
        return truncate(ws, self.w_avg, truncation_psi, check_truncation_cutoff(truncation_cutoff, self.num_ws))

    def as_ws(self, w_or_ws: Any) -> jax.Array:
        """W [B, w_dim] (broadcast to every layer) or W+ [B, num_ws, w_dim] -> [B, num_ws, w_dim]."""
        ws = jnp.asarray(w_or_ws, jnp.float32)
        if ws.ndim == 2 and ws.shape[1] == self.w_dim:
            return broadcast_w(ws, self.num_ws)
        if ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim):
            return ws
        raise InputError(
            f"ws: expected [B, {self.num_ws}, {self.w_dim}] (or w [B, {self.w_dim}]), got {list(ws.shape)}"
        )

    def mix(self, ws1: Any, ws2: Any, index: int) -> jax.Array:
        """Style mixing: ws1 for layers < index, ws2 from index on."""
        if not 0 <= int(index) <= self.num_ws:
            raise InputError(f"style-mixing index {index}: expected 0..{self.num_ws}")
        return mix_styles(self.as_ws(ws1), self.as_ws(ws2), int(index))

    def synthesis(
        self, ws: Any, noise_mode: str = "const", rng: jax.Array | None = None, noise: Sequence[Any] | None = None
    ) -> jax.Array:
        """ws [B, num_ws, w_dim] (or w [B, w_dim]) -> images [B, H, W, C_img] float32 NHWC.

        noise_mode 'const' (stored maps), 'random' (needs `rng`, a PRNG key) or 'none'; `noise`
        (one map per conv layer, each [R, R] / [1|B, R, R] / [1|B, R, R, 1]) overrides noise_mode.
        """
        ws = self.as_ws(ws)
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")
        if noise is None and noise_mode == "random" and rng is None:
            raise InputError("noise mode 'random' needs an explicit rng key")
        if noise is not None:
            noise = [jnp.asarray(n, jnp.float32) for n in noise]
            if len(noise) != self.config.num_noise_layers:
                raise InputError(
                    f"noise: expected {self.config.num_noise_layers} maps (one per conv layer), got {len(noise)}"
                )
            rng = None
        if noise_mode != "random":
            rng = None
        return self._synth_jit(self.params["synthesis"], ws, rng, noise, noise_mode=noise_mode)

    def __call__(
        self,
        z: Any,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """z [B, z_dim] -> images [B, H, W, C_img]."""
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode, rng)


@functools.lru_cache(maxsize=16)
def _jitted_entry_points(config: GeneratorConfig, precision: str):
    """(mapping, synthesis) jitted functions of (params, ...), shared by every generator of the same
    architecture and precision, so loading a second directory does not compile again."""
    mapping_module = MappingNetwork(config, precision)
    synthesis_module = SynthesisNetwork(config, precision)

    def map_fn(mapping_params, w_avg, z, psi, cutoff):
        ws = broadcast_w(mapping_module.apply({"params": mapping_params}, z), config.num_ws)
        return truncate(ws, w_avg, psi, cutoff)

    def synth_fn(synthesis_params, ws, rng, noise, noise_mode):
        return synthesis_module.apply({"params": synthesis_params}, ws, noise_mode, rng, noise)

    return jax.jit(map_fn, static_argnames=("cutoff",)), jax.jit(synth_fn, static_argnames=("noise_mode",))


def check_truncation_cutoff(cutoff: int | None, num_ws: int) -> int | None:
    if cutoff is None:
        return None
    if int(cutoff) != cutoff or not 0 <= int(cutoff) <= num_ws:
        raise InputError(f"truncation cutoff {cutoff}: expected an integer 0..{num_ws}")
    return int(cutoff)


def load_generator(directory: str | Path, precision: str = "highest") -> LoadedGenerator:
    """Load a generator directory written by `jaxedit convert stylegan2` (kind 'generator')."""
    from jaxedit.modeldir import read_model_dir

    manifest, tree = read_model_dir(directory, expected_kind="generator")
    try:  # every architecture number is validated (`validate_generator_config`) before anything is built
        config = GeneratorConfig.from_dict(manifest.get("config"))
    except ConfigError as error:
        raise ConfigError(f"{directory}: generator config: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{directory}: saved params are not a dict of arrays")
    for part in ("mapping", "synthesis", "w_avg"):
        if part not in tree:
            raise ConfigError(f"{directory}: saved params lack {part!r}")
    _check_tree_shapes(config, tree, directory)
    return LoadedGenerator.from_params(config, tree, tree["w_avg"], precision, manifest=manifest, path=Path(directory))


def init_params(config: GeneratorConfig, key: jax.Array) -> dict:
    """Random params in our layout, {"mapping": ..., "synthesis": ...}, drawn like the modules'
    initialisers: weights N(0, 1) (mapping kernels N(0, 1) / lr_multiplier, as stored), affine
    biases 1, other biases and noise strengths 0, stored noise maps and const N(0, 1).

    The structure comes from `jax.eval_shape` of the modules' `init`; the values from ONE normal
    draw, because compiling a separate threefry draw per parameter takes minutes on a CPU.
    """
    return _jitted_init(config)(key)


def param_shapes(config: GeneratorConfig) -> dict:
    """The params pytree structure as `jax.ShapeDtypeStruct` leaves (nothing computed)."""
    z = jax.ShapeDtypeStruct((1, config.z_dim), jnp.float32)
    ws = jax.ShapeDtypeStruct((1, config.num_ws, config.w_dim), jnp.float32)
    key = jax.random.key(0)
    return {
        "mapping": jax.eval_shape(lambda k, z: MappingNetwork(config).init(k, z)["params"], key, z),
        "synthesis": jax.eval_shape(lambda k, ws: SynthesisNetwork(config).init(k, ws, "none")["params"], key, ws),
    }


@functools.lru_cache(maxsize=8)
def _jitted_init(config: GeneratorConfig):
    shapes = param_shapes(config)
    leaves, treedef = jax.tree.flatten_with_path(shapes)
    sizes = [int(np.prod(leaf.shape)) for _, leaf in leaves]

    def init(key):
        flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
        values, offset = [], 0
        for (path, leaf), size in zip(leaves, sizes):
            names = [getattr(p, "key", str(p)) for p in path]
            normal = flat[offset : offset + size].reshape(leaf.shape)
            offset += size
            if names[-1] == "bias":
                value = jnp.ones(leaf.shape) if names[-2] == "affine" else jnp.zeros(leaf.shape)
            elif names[-1] == "noise_strength":
                value = jnp.zeros(leaf.shape)
            elif names[0] == "mapping":
                value = normal / config.lr_multiplier
            else:
                value = normal
            values.append(value.astype(jnp.float32))
        return jax.tree.unflatten(treedef, values)

    return jax.jit(init)


def random_generator(config: GeneratorConfig, key: jax.Array, precision: str = "highest") -> LoadedGenerator:
    """A generator with random params (for benchmarks and tests); w_avg = mean of 1000 mapped z."""
    params = init_params(config, key)
    mapping = MappingNetwork(config)
    z = jax.random.normal(jax.random.fold_in(key, 1), (1000, config.z_dim))
    w_avg = jax.jit(lambda p, z: jnp.mean(mapping.apply({"params": p}, z), axis=0))(params["mapping"], z)
    return LoadedGenerator.from_params(config, params, w_avg, precision)


def _check_tree_shapes(config: GeneratorConfig, tree: dict, directory) -> None:
    expected = param_shapes(config)
    expected = {"mapping": expected["mapping"], "synthesis": expected["synthesis"]}
    got = {"mapping": tree["mapping"], "synthesis": tree["synthesis"]}
    flat_expected = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree.leaves_with_path(expected)}
    flat_got = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree.leaves_with_path(got)}
    for key, shape in flat_expected.items():
        if key not in flat_got:
            raise ConfigError(f"{directory}: saved params lack {key}")
        if flat_got[key] != shape:
            raise ConfigError(f"{directory}: params{key}: expected shape {list(shape)}, got {list(flat_got[key])}")
    extra = sorted(set(flat_got) - set(flat_expected))
    if extra:
        raise ConfigError(f"{directory}: unexpected saved params {extra[0]}")
    if np.shape(tree["w_avg"]) != (config.w_dim,):
        raise ConfigError(f"{directory}: w_avg: expected shape [{config.w_dim}], got {list(np.shape(tree['w_avg']))}")
