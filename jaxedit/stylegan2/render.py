"""Rendering many images: seeds/latent files -> latents -> images in chunks -> .png grid, .npy or PNG files.

This is the library side of `jaxedit generate`; the CLI only parses flags and prints.

Images are rendered `batch_size` at a time (`render_chunks`; seeds' latents drawn per chunk by
`SeedLatents`), so `jaxedit.viz.image_files` writes each chunk as it comes and memory does not
grow with the number of images.

Seeds follow the NVlabs and rosinality scripts: seed s gives
`z = np.random.RandomState(s).randn(z_dim)` (float64 drawn, then float32), so seed 0-7 here are
the same z as `generate.py --seeds=0-7` there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from jaxedit.errors import InputError
from jaxedit.io import load_array, load_npz, npz_names
from jaxedit.stylegan2.loading import LoadedGenerator, check_truncation_cutoff

LATENT_KINDS = ("z", "w", "ws")
MAX_SEEDS = 1_000_000  # images in one `generate` run (streamed to disk: memory does not grow with it)


def parse_seeds(text: str) -> list[int]:
    """'0-7', '1,5,9' or '0-3,10' -> list of non-negative ints (ranges inclusive)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if not match:
            raise InputError(f"seeds {text!r}: expected e.g. '0-7' or '1,5,9' (non-negative integers)")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise InputError(f"seeds {text!r}: range {part} runs backwards")
        if stop > 2**32 - 1:
            raise InputError(f"seeds {text!r}: seeds must be below 2**32")
        if len(seeds) + stop - start + 1 > MAX_SEEDS:
            raise InputError(f"seeds {text!r}: more than {MAX_SEEDS:,} seeds in one run")
        seeds.extend(range(start, stop + 1))
    if not seeds:
        raise InputError(f"seeds {text!r}: no seeds")
    return seeds


def z_from_seeds(seeds: list[int], z_dim: int) -> np.ndarray:
    """[len(seeds), z_dim] float32, z_i = RandomState(seed_i).randn(z_dim) (NVlabs / rosinality)."""
    return np.stack([np.random.RandomState(seed).randn(z_dim) for seed in seeds]).astype(np.float32)


class SeedLatents:
    """The z latents of `seeds`, drawn on demand: `SeedLatents(seeds, z_dim)[a:b]` is
    `z_from_seeds(seeds[a:b], z_dim)`, so the z of a million seeds are never all in memory."""

    def __init__(self, seeds: Sequence[int], z_dim: int):
        self.seeds, self.z_dim = seeds, z_dim

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("SeedLatents: index with a slice")
        return z_from_seeds(list(self.seeds[rows]), self.z_dim)


def _read_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of a .npy file (never a pickle; its header checked against the file before
    anything is allocated, `jaxedit.io.load_array`); one-line InputError naming the file otherwise."""
    return load_array(path)


def _as_float32(array: np.ndarray, what: str) -> np.ndarray:
    """float32 copy of finite `array`, refusing values that only overflow in float32 (1e300)."""
    with np.errstate(over="ignore"):
        out = array.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(f"{what}: holds values beyond the float32 range")
    return out


def load_latents(path: str | os.PathLike, kind: str, generator: LoadedGenerator) -> np.ndarray:
    """Float32 latents of `generator` from a .npy file, by `kind`:

    'z' [B, z_dim]; 'w' [B, w_dim]; 'ws' [B, num_ws, w_dim]; 'w|ws': W or W+. Every latent file a
    jaxedit command writes is accepted by every kind it fits: one latent may come without the batch
    axis ([z_dim], [w_dim], [num_ws, w_dim]; a 2-D array whose first axis is num_ws is one W+
    latent), and W+ latents may come as panels [P, B, num_ws, w_dim] (`jaxedit edit --save-latents`),
    read as their P * B latents, panel by panel. The values must be finite floats; one-line
    InputError naming the file otherwise.
    """
    array = _read_npy(path)
    z_dim, w_dim, num_ws = generator.z_dim, generator.w_dim, generator.num_ws
    shape = list(array.shape)
    is_w = (array.ndim == 2 and shape[1] == w_dim) or shape == [w_dim]
    is_ws = array.ndim in (2, 3, 4) and shape[-2:] == [num_ws, w_dim]
    if kind not in (*LATENT_KINDS, "w|ws"):
        raise InputError(f"latent kind {kind!r}: expected one of {', '.join(LATENT_KINDS)} or 'w|ws'")
    if kind == "z":
        if shape == [z_dim]:
            array = array[None]
        elif not (array.ndim == 2 and shape[1] == z_dim):
            raise InputError(f"{path}: expected z [B, {z_dim}] or [{z_dim}], got {shape}")
    elif kind == "w|ws" and shape == [num_ws, w_dim]:  # one W+ latent (even when num_ws == w_dim)
        array = array[None]
    elif kind in ("w", "w|ws") and is_w:
        array = array.reshape(-1, w_dim)
    elif kind in ("ws", "w|ws") and is_ws:
        array = array.reshape(-1, num_ws, w_dim)
    else:
        w_shapes = f"W [{w_dim}] / [B, {w_dim}]"
        ws_shapes = f"W+ [{num_ws}, {w_dim}] / [B, {num_ws}, {w_dim}] / [P, B, {num_ws}, {w_dim}]"
        wanted = {"w": w_shapes, "ws": ws_shapes, "w|ws": f"{w_shapes} or {ws_shapes}"}[kind]
        hint = ""
        if kind == "w" and is_ws:
            hint = " (these are W+ latents)"
        elif kind == "ws" and is_w:
            hint = " (these are W latents)"
        raise InputError(f"{path}: expected {wanted} for this generator, got {shape}{hint}")
    if array.shape[0] == 0:
        raise InputError(f"{path}: holds no latents (shape {shape})")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: expected floating-point values, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{path}: contains non-finite values")
    return _as_float32(array, str(path))


def load_noise_maps(path: str | os.PathLike, generator: LoadedGenerator) -> list[np.ndarray]:
    """An .npz with `noise_0 .. noise_{L-1}` (L = conv layers), each [R, R] up to size-1 axes
    (so [1, 1, R, R] as saved from PyTorch works) -> list of [R, R] float32 maps."""
    flag = str(path)
    resolutions = generator.config.noise_resolutions()
    names = npz_names(path)  # only the noise_<j> members are ever read (`jaxedit.io.load_npz`)
    for j, res in enumerate(resolutions):
        if f"noise_{j}" not in names:
            raise InputError(f"{flag}: missing noise_{j} (expected [{res}, {res}])")
    expected = [f"noise_{j}" for j in range(len(resolutions))]  # other arrays may share the archive
    extra = sorted(set(name for name in names if re.fullmatch(r"noise_[0-9]+", name)) - set(expected))
    if extra:
        raise InputError(
            f"{flag}: unexpected {', '.join(extra[:3])} (this generator has noise_0 .. noise_{len(expected) - 1})"
        )
    arrays = load_npz(path, expected, max_bytes=8 * sum(res * res for res in resolutions))
    maps = []
    for key, res in zip(expected, resolutions):
        value = arrays[key]
        squeezed = value.reshape([d for d in value.shape if d != 1] or [1])
        if squeezed.shape != (res, res):
            raise InputError(f"{flag}: {key}: expected [{res}, {res}], got {list(value.shape)}")
        if not np.all(np.isfinite(squeezed)):
            raise InputError(f"{flag}: {key}: contains non-finite values")
        maps.append(_as_float32(squeezed, f"{flag}: {key}"))
    return maps


def render(
    generator: LoadedGenerator,
    latents: np.ndarray | SeedLatents,
    kind: str,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
    noise: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Latents of `kind` -> images [B, H, W, C] float32 (numpy), computed `batch_size` at a time
    (`render_chunks`, concatenated).

    z runs the mapping; w is broadcast to every W+ layer; truncation (psi, cutoff) is applied in
    every case. With noise_mode 'random', image i (its row in `latents`) draws its noise from its
    own key (`per_sample_noise`), so an image does not depend on `batch_size`. `noise` (one [R, R]
    map per conv layer, shared by all images) overrides noise_mode.
    """
    chunks = render_chunks(
        generator, latents, kind, truncation_psi, truncation_cutoff, noise_mode, noise_seed, batch_size, progress, noise
    )
    return np.concatenate(list(chunks), axis=0)


def render_chunks(
    generator: LoadedGenerator,
    latents: np.ndarray | SeedLatents,
    kind: str,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
    noise: list[np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """`render`, one chunk at a time: yields images [b, H, W, C] float32 for consecutive rows of
    `latents` (b = batch_size, less for the last), each rendered when asked for. The arguments
    are checked when this is called, before any image is rendered.
    """
    if kind not in LATENT_KINDS:
        raise InputError(f"latent kind {kind!r}: expected one of {', '.join(LATENT_KINDS)}")
    if batch_size < 1:
        raise InputError(f"batch_size {batch_size}: expected a positive integer")
    if not np.isfinite(truncation_psi):
        raise InputError(f"truncation_psi {truncation_psi}: expected a finite number")
    if not -(2**63) <= int(noise_seed) < 2**63:
        raise InputError(f"noise_seed {noise_seed}: expected an integer that fits in 64 bits")
    check_truncation_cutoff(truncation_cutoff, generator.num_ws)  # fail before any work
    return _render_chunks(
        generator, latents, kind, truncation_psi, truncation_cutoff, noise_mode, noise_seed, batch_size, progress, noise
    )


def _render_chunks(
    generator, latents, kind, truncation_psi, truncation_cutoff, noise_mode, noise_seed, batch_size, progress, noise
) -> Iterator[np.ndarray]:
    chunk_size = min(batch_size, len(latents))
    noise_key = jax.random.key(noise_seed) if noise_mode == "random" and noise is None else None
    for index, chunk in _chunks(latents, chunk_size, progress):
        count = len(chunk)
        if count < chunk_size:  # pad the last chunk so every call has one shape (one compilation)
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], chunk_size - count, axis=0)])
        if kind == "z":
            ws = generator.mapping(chunk, truncation_psi, truncation_cutoff)
        else:
            ws = generator.truncate(chunk, truncation_psi, truncation_cutoff)
        if noise_key is not None:
            maps = per_sample_noise(generator.config.noise_resolutions(), noise_key, index * chunk_size, chunk_size)
            yield np.asarray(generator.synthesis(ws, "const", None, maps))[:count]
        else:
            yield np.asarray(generator.synthesis(ws, noise_mode, None, noise))[:count]


def per_sample_noise(resolutions: list[int], key: jax.Array, first: int, count: int) -> list[jax.Array]:
    """Random noise maps for images first .. first + count - 1: one [count, R, R] array per conv layer.

    Image i's maps come from key_i = fold_in(key, i), split into one key per layer, each drawing
    N(0, 1) [R, R]; so image i gets the same noise whatever batch it is rendered in.
    """

    def one(index):
        layer_keys = jax.random.split(jax.random.fold_in(key, index), len(resolutions))
        return [jax.random.normal(layer_keys[j], (r, r), jax.numpy.float32) for j, r in enumerate(resolutions)]

    indices = jax.numpy.arange(first, first + count, dtype=jax.numpy.uint32)
    return jax.vmap(one)(indices)


def _chunks(latents: np.ndarray | SeedLatents, batch_size: int, progress: bool) -> Iterator[tuple[int, np.ndarray]]:
    starts = range(0, len(latents), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="generating", unit="batch", total=len(starts), disable=None)
    for index, start in enumerate(starts):
        yield index, latents[start : start + batch_size]


def describe(array: Any) -> str:
    return "[" + ", ".join(str(d) for d in np.shape(array)) + "]"
