"""Linear editing directions in W: the baselines (InterFaceGAN, GANSpace) as editing methods.

A `LinearDirections` holds one unit direction in W per attribute, pointing towards "attribute
present", and edits generator latents W+ `[B, num_ws, w_dim]` by

    w_l + alpha * scale * d     on the W+ layers l in `layers` (all of them by default),

so the same `NAME=ALPHA` steps drive our transformers and a baseline: `scale` is the distance in
W per unit of alpha (2.4 by default: alpha 1.25, the strength of the paper's Table 1, is distance
3, the baselines' strength there). Fitting the directions is `jaxedit.eval.baselines`' job
(`fit_linear_directions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxedit.attributes import ATTRIBUTES, attribute_index
from jaxedit.errors import AttributeNameError, InputError

DISTANCE_PER_ALPHA = 3.0 / 1.25
"""Baseline distance per unit of alpha: the paper's Table 1 pairs alpha 1.25 with distance 3."""


@dataclasses.dataclass(frozen=True)
class LinearDirections:
    """name: the method ("interfacegan", "ganspace"); attributes: CelebA names; directions:
    float32 [A, w_dim] unit vectors towards "present"; scale: W distance per unit of alpha;
    description: how the directions were obtained (one line)."""

    name: str
    attributes: tuple[str, ...]
    directions: np.ndarray
    scale: float = DISTANCE_PER_ALPHA
    description: str = ""

    def __post_init__(self) -> None:
        directions = np.asarray(self.directions, np.float32)
        if directions.ndim != 2 or directions.shape[0] != len(self.attributes):
            raise InputError(
                f"{self.name}: expected directions [{len(self.attributes)}, w_dim], got {list(directions.shape)}"
            )
        object.__setattr__(self, "directions", directions)

    def direction(self, attribute: str | int) -> np.ndarray:
        """The unit direction [w_dim] of an attribute (CelebA name, any case, or index)."""
        name = ATTRIBUTES[attribute_index(attribute)]
        if name not in self.attributes:
            raise AttributeNameError(f"{self.name}: no direction fitted for {name!r}")
        return self.directions[self.attributes.index(name)]

    def apply(
        self, ws: np.ndarray, attribute: str | int, alpha: float, layers: Sequence[int] | None = None
    ) -> np.ndarray:
        """W+ `[B, num_ws, w_dim]` moved by `alpha * scale` along the attribute's direction on
        `layers` (None: every layer)."""
        ws = np.asarray(ws, np.float32)
        if ws.ndim != 3 or ws.shape[-1] != self.directions.shape[1]:
            raise InputError(
                f"{self.name}: expected W+ latents [B, num_ws, {self.directions.shape[1]}], got {list(ws.shape)}"
            )
        mask = np.ones(ws.shape[1], bool) if layers is None else np.isin(np.arange(ws.shape[1]), list(layers))
        step = np.float32(alpha * self.scale) * self.direction(attribute)
        return ws + mask[None, :, None] * step[None, None, :]
