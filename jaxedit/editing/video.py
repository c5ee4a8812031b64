"""A progressive edit as a video: the sweep's frames rendered in batches and streamed to the encoder.

`sweep_video(path, generator, editors, latents, attribute, alphas, ...)` computes the swept latents
(small: `[A, B, num_ws, w_dim]`), then renders `batch_size` frames at a time and hands each frame to
`jaxedit.viz.video.write_video` before rendering the next batch, so memory is flat in the number of
frames. With several faces (`B > 1`) each frame shows them side by side. Pingpong replays the
frames backwards by rendering them again (the last rendered batch is kept), not by holding them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.editing import edits as edit
from jaxedit.editing.render import method_sweep, render_panels
from jaxedit.errors import ConfigError
from jaxedit.viz.grid import grid
from jaxedit.viz.video import write_video

MAX_FRAMES = 10_000


def sweep_latents(
    generator: Any,
    editors: Any,
    latents: np.ndarray,
    attribute: str,
    alphas: Sequence[float],
    steps: Sequence[tuple[str, float]] = (),
    layers: Any = None,
) -> np.ndarray:
    """W+ `[A, B, num_ws, w_dim]`: `latents` edited by `steps`, then by `attribute` at each alpha."""
    edit.check_compatible(editors, generator)
    name = tuple(editors.attributes)[edit.resolve_attribute(editors, attribute)]
    return method_sweep(editors, generator, latents, name, np.asarray(alphas, np.float32), steps, layers)[0]


class _BatchedFrames:
    """`frames(i)` for `write_video`: renders the batch holding frame i, keeps only that batch."""

    def __init__(self, generator: Any, ws: np.ndarray, noise_mode: str, batch_size: int):
        self.generator, self.ws, self.noise_mode, self.batch_size = generator, ws, noise_mode, batch_size
        self.start, self.frames = -1, None

    def __call__(self, index: int) -> np.ndarray:
        start = index - index % self.batch_size
        if start != self.start:
            chunk = self.ws[start : start + self.batch_size]  # [b, B, num_ws, w_dim]
            flat = chunk.reshape((-1,) + chunk.shape[2:])
            images = render_panels(self.generator, flat, self.noise_mode, batch_size=len(flat))
            faces = images.reshape(chunk.shape[:2] + images.shape[1:])  # [b, B, H, W, 3]
            self.frames = [
                face_row[0] if len(face_row) == 1 else grid(face_row, columns=len(face_row)) for face_row in faces
            ]
            self.start = start
        return self.frames[index - start]


def sweep_video(
    path: str | os.PathLike,
    generator: Any,
    editors: Any,
    latents: np.ndarray,
    attribute: str,
    alphas: Sequence[float],
    steps: Sequence[tuple[str, float]] = (),
    layers: Any = None,
    noise_mode: str = "const",
    fps: float = 10.0,
    pingpong: bool = False,
    batch_size: int = 4,
) -> tuple[Path, np.ndarray]:
    """Write the sweep of `attribute` over `alphas` as a video (.gif, .webp, .mp4); returns (path, latents).

    latents: `[B, ...]` in any space the editors accept; the returned latents are `[A, B, num_ws, w_dim]`.
    """
    ws = sweep_latents(generator, editors, latents, attribute, alphas, steps, layers)
    if len(ws) > MAX_FRAMES:
        raise ConfigError(f"a video sweep has at most {MAX_FRAMES} frames, got {len(ws)}")
    frames = _BatchedFrames(generator, ws, noise_mode, max(1, int(batch_size)))
    written = write_video(path, frames, fps=fps, pingpong=pingpong, count=len(ws))
    return written, ws
