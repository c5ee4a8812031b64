"""What a user asks `jaxedit edit` for, before anything is rendered: the edits, the faces, where latents go.

- `parse_edit_spec("Smiling=1.25")`, `parse_sweep_spec("Smiling=-1.5:1.5:7")`: the flag values.
- `seed_latents(generator, seed, psi)`, `seeds_latents(...)`, `load_latent_file(path, generator)`: the faces.
- `save_latents(path, latents)`: latents to a `.npy` file, atomically.

Latent files (`.npy`, float) hold W or W+ latents of the generator:

    [w_dim]                  one W latent
    [num_ws, w_dim]          one W+ latent
    [B, w_dim]               B W latents
    [B, num_ws, w_dim]       B W+ latents

A 2-D array whose first axis is `num_ws` is read as one W+ latent. Latents saved by
`jaxedit edit --save-latents` are `[panels, rows, num_ws, w_dim]`; `np.load(F)[-1]` is again a
valid latent file (and `jaxedit generate --ws` input).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.editing import edits as edit
from jaxedit.errors import ConfigError, InputError
from jaxedit.io import atomic_file


def _parse_number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what}: {text.strip()!r} is not a finite number")
    return value


MAX_SWEEP_COUNT = 256  # panels in one sweep grid: every panel is rendered and held in memory


def parse_edit_spec(text: str) -> tuple[str, float]:
    """'Smiling=1.25' -> ('Smiling', 1.25) (the name is checked later against the editors)."""
    what = f"edit {text!r}"
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ConfigError(f"{what}: expected NAME=ALPHA, e.g. Smiling=1.25")
    return name.strip(), _parse_number(value, what)


def parse_sweep_spec(text: str) -> tuple[str, np.ndarray]:
    """'Smiling=-1.5:1.5:7' -> ('Smiling', 7 evenly spaced alphas from -1.5 to 1.5)."""
    flag = f"sweep {text!r}"
    name, sep, spec = str(text).partition("=")
    parts = spec.split(":")
    if not sep or not name.strip() or len(parts) != 3:
        raise ConfigError(f"{flag}: expected NAME=START:STOP:COUNT, e.g. Smiling=-1.5:1.5:7")
    start, stop = _parse_number(parts[0], flag), _parse_number(parts[1], flag)
    try:
        count = int(parts[2])
    except ValueError:
        raise ConfigError(f"{flag}: COUNT {parts[2].strip()!r} is not an integer") from None
    if count < 1:
        raise ConfigError(f"{flag}: COUNT must be at least 1, got {count}")
    if count > MAX_SWEEP_COUNT:
        raise ConfigError(f"{flag}: COUNT {count} is too many panels (at most {MAX_SWEEP_COUNT})")
    if count > 1 and start == stop:
        raise ConfigError(f"{flag}: START and STOP are equal, so the {count} values would all be the same")
    return name.strip(), edit.sweep_values(start, stop, count)


def seed_latents(generator: Any, seed: int, truncation_psi: float = 1.0) -> np.ndarray:
    """W+ `[1, num_ws, w_dim]` of seed `seed` (z = RandomState(seed).randn(z_dim), as `jaxedit generate`)."""
    if not 0 <= int(seed) < 2**32:
        raise InputError(f"seed {seed}: expected an integer 0..2**32-1")
    z = np.random.RandomState(int(seed)).randn(1, generator.z_dim).astype(np.float32)
    return np.asarray(generator.mapping(z, truncation_psi))


def load_latent_file(path: str | os.PathLike, generator: Any, truncation_psi: float = 1.0) -> np.ndarray:
    """Latents `[B, w_dim]` (W) or `[B, num_ws, w_dim]` (W+) from a `.npy` file (see module docstring)."""
    from jaxedit.stylegan2.render import load_latents

    array = load_latents(path, "w|ws", generator)
    if truncation_psi != 1.0:
        truncated = np.asarray(generator.truncate(array, truncation_psi))
        array = truncated if array.ndim == 3 else truncated[:, 0]
    return array


def seeds_latents(generator: Any, seeds: Sequence[int], truncation_psi: float = 1.0) -> np.ndarray:
    """W+ `[len(seeds), num_ws, w_dim]`, one row per seed (as `seed_latents`)."""
    return np.concatenate([seed_latents(generator, seed, truncation_psi) for seed in seeds])


def save_latents(path: str | os.PathLike, latents: np.ndarray) -> Path:
    """Write float32 latents to a `.npy` file atomically (temporary name, then rename)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ConfigError(f"{path}: expected a .npy path")
    with atomic_file(path, ".npy") as partial:
        np.save(partial, np.asarray(latents, np.float32))
    return path
