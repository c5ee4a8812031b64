"""Latents of the synthetic world drawn as schematic faces, behind the generator's interface.

`SchematicRenderer(world)` has what `jaxedit edit`, `jaxedit serve` and the editing library use of a
`LoadedGenerator` (`mapping`, `truncate`, `synthesis`, `num_ws`, `w_dim`, `z_dim`, `w_avg`), so the
embedded default can be edited and looked at without a StyleGAN2 checkpoint. The pictures are
schematics (`jaxedit.data.schematic`), not faces.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxedit.data import synthetic
from jaxedit.data.schematic import MAX_SIZE, MIN_SIZE, render_scores
from jaxedit.errors import ConfigError, InputError


@dataclasses.dataclass(frozen=True)
class SchematicRenderer:
    """Draws latents of a synthetic world, with the generator's interface (LoadedGenerator).

    resolution: output size; label: add the caption strip; temperature: see `render_scores`.
    `synthesis(ws)` reads the world's logits and identity embedding of ws [B, num_ws, w_dim] (W+,
    each attribute its layer group) or w [B, w_dim] and draws them: [B, R, R, 3] float32 in [-1, 1].
    """

    world: synthetic.SyntheticWorld
    resolution: int = 256
    label: bool = True
    temperature: float = 1.0

    def __post_init__(self):
        if int(self.resolution) != self.resolution or not MIN_SIZE <= self.resolution <= MAX_SIZE:
            raise ConfigError(
                f"schematic: resolution {self.resolution!r} must be an integer in [{MIN_SIZE}, {MAX_SIZE}]"
            )

    @property
    def num_ws(self) -> int:
        return int(self.world.config.num_ws)

    @property
    def w_dim(self) -> int:
        return self.world.w_dim

    @property
    def z_dim(self) -> int:
        return self.world.z_dim

    @property
    def w_avg(self) -> jax.Array:
        """The mean of the world's calibration latents, [w_dim] (the truncation centre)."""
        return self.world.params["mean"]

    def describe(self) -> str:
        return f"schematic renderer ({self.resolution} px) of the {self.world.describe()}"

    def as_ws(self, w_or_ws) -> jax.Array:
        """W [B, w_dim] (broadcast to every layer) or W+ [B, num_ws, w_dim] -> [B, num_ws, w_dim]."""
        from jaxedit.stylegan2.networks import broadcast_w

        ws = jnp.asarray(w_or_ws, jnp.float32)
        if ws.ndim == 2 and ws.shape[1] == self.w_dim:
            return broadcast_w(ws, self.num_ws)
        if ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim):
            return ws
        raise InputError(
            f"ws: expected [B, {self.num_ws}, {self.w_dim}] (or w [B, {self.w_dim}]), got {list(ws.shape)}"
        )

    def truncate(self, w_or_ws, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
        """Truncate towards `w_avg` (cutoff: layers < N only), as the generator does."""
        from jaxedit.stylegan2.loading import check_truncation_cutoff
        from jaxedit.stylegan2.networks import truncate

        cutoff = check_truncation_cutoff(truncation_cutoff, self.num_ws)
        return truncate(self.as_ws(w_or_ws), self.w_avg, truncation_psi, cutoff)

    def mapping(self, z, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
        """z [B, z_dim] -> ws [B, num_ws, w_dim] through the world's mapping network, truncated."""
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"z: expected [B, {self.z_dim}], got {list(z.shape)}")
        return self.truncate(self.world.mapping(z), truncation_psi, truncation_cutoff)

    def synthesis(self, ws, noise_mode: str = "const", rng=None, noise=None) -> jax.Array:
        """ws [B, num_ws, w_dim] (or w [B, w_dim]) -> images [B, R, R, 3] float32 in [-1, 1].

        noise_mode, rng and noise are accepted for the generator's interface and ignored (no noise).
        """
        ws = self.as_ws(ws)
        scores = synthetic.attribute_logits(self.world, ws)
        identity = synthetic.identity_embedding(self.world, ws)
        return render_scores(scores, identity, self.resolution, self.label, self.temperature)

    def __call__(self, z, truncation_psi: float = 1.0, truncation_cutoff: int | None = None, **_) -> jax.Array:
        """z [B, z_dim] -> images [B, R, R, 3]."""
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff))
