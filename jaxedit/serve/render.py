"""`Renderer`: the face model (a generator or the schematic stand-in) and the editors, compiled once.

A page request becomes pixels in three jitted steps, each traced for batch 1 only:

1. the face's W+ latent before truncation, `[1, num_ws, w_dim]`: the mapping of a seed's z, a
   latent file, or the encoder's code of a photo (cached per seed, stored with uploads);
2. `edit(transformer params, base, psi, slots, alphas, count, mask)`: truncation, then the
   touched attributes' transformers one after another (a `fori_loop` over the first `count`
   entries of fixed-length `slots` / `alphas`), each step kept on the W+ layers of `mask`, as
   `jaxedit.editing.edits.apply_sequence` does. Every value a slider changes is an array
   argument of fixed shape, so moving a slider, adding an attribute, changing the order,
   truncation or layer range never traces again;
3. synthesis at full resolution, or the preview: for a StyleGAN2 generator the skip image after
   the block at the preview resolution (the blocks above it are not run; they add the fine
   detail, and in config-f each block from 64 to 1024 px costs about the same), for the
   schematic the drawing at the preview size.

`warm_up()` compiles all of it at start-up and, with `preview="auto"`, keeps the preview only
when it is measurably faster than the full image (`PREVIEW_GAIN`).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from PIL import Image

from jaxedit.editing import edits as edit_lib
from jaxedit.editing.photo import check_latent_spaces
from jaxedit.errors import ConfigError
from jaxedit.serve.state import ALPHA_LIMIT, EditRequest, Limits, NotFoundError, SupersededError, sweep_edits

PREVIEW_MODES = ("auto", "on", "off")
PREVIEW_GAIN = 0.7  # "auto" keeps the preview when it takes under this fraction of the full render
PNG_COMPRESS_LEVEL = 1  # local traffic: fast encoding beats small files
SEED_CACHE = 32
IMAGE_CACHE = 4  # full images of the latest requests: paste-back and downloads after a render reuse them
DEFAULT_ALPHA_RANGE = (-1.5, 1.5)  # the sliders' range when the editors' preset names none


def default_preview_resolution(resolution: int, schematic: bool = False) -> int:
    """The preview's size: for a StyleGAN2 generator an eighth of the resolution, at least 64 px
    (config-f spends about equal work on each block from 64 to 1024 px, so stopping after the
    128 px block costs about 40% of the full image); for the schematic half the size (a quarter
    of the pixels to draw). Never more than the resolution itself (then there is no preview)."""
    if schematic:
        return max(resolution // 2, min(resolution, 16))
    return max(resolution // 8, min(resolution, 64))


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def to_uint8(images: Any) -> np.ndarray:
    """[..., H, W, 3] floats about [-1, 1] -> uint8, as `jaxedit generate` and `jaxedit edit` save them."""
    from jaxedit.viz.grid import to_uint8 as convert

    return convert(np.asarray(images))


class PreviewSynthesis(nn.Module):
    """The StyleGAN2 synthesis network stopped after the block at `stop_resolution`.

    ws [B, num_ws, w_dim] -> the skip image at that resolution, [B, R, R, C] (stored noise maps).
    Takes the full generator's `synthesis` params (blocks above R are simply not read).
    """

    config: Any
    stop_resolution: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, ws: jax.Array) -> jax.Array:
        from jaxedit.stylegan2.networks import SynthesisBlock

        cfg = self.config
        common = dict(img_channels=cfg.img_channels, conv_clamp=cfg.conv_clamp, precision=self.precision)
        x, img = SynthesisBlock(4, cfg.channel(4), name="b4", **common)(None, None, ws[:, 0:2], "const", [None], [None])
        for k, res in enumerate(cfg.resolutions[1:], start=1):
            if res > self.stop_resolution:
                break
            x, img = SynthesisBlock(res, cfg.channel(res), name=f"b{res}", **common)(
                x, img, ws[:, 2 * k - 1 : 2 * k + 2], "const", [None, None], [None, None]
            )
        return img


def _is_generator(face: Any) -> bool:
    return hasattr(face, "params") and hasattr(face, "config") and hasattr(face.config, "resolutions")


def _is_schematic(face: Any) -> bool:
    return hasattr(face, "world") and hasattr(face, "resolution") and not _is_generator(face)


def _edit_function(editors: Any, num_ws: int):
    """The jitted edit chain (module docstring, step 2) for these editors' module and latent space.

    W editors edit each W+ layer on its own, as `jaxedit.apply_edit` does (for a seed's equal layers
    that is the W edit of the shared w; an uploaded latent file's layers may differ).
    """
    module = editors.transformer_module
    w_space = len(tuple(editors.latent_shape)) == 1

    def run(transformer_params, w_avg, base, psi, slots, alphas, count, mask):
        truncated = w_avg + psi * (base - w_avg)  # [1, num_ws, w_dim], as generator.truncate
        start = truncated[0] if w_space else truncated  # W editors: the layers as a batch [num_ws, w_dim]
        keep = mask[:, None]

        def step(i, current):
            params = jax.tree.map(lambda leaf: leaf[slots[i]], transformer_params)
            alpha = jnp.broadcast_to(alphas[i], current.shape[:1])
            edited = module.apply({"params": params}, current, alpha)
            return jnp.where(keep, edited, current)

        edited = jax.lax.fori_loop(0, count, step, start)
        return edited[None] if w_space else edited

    return jax.jit(run)


@dataclasses.dataclass
class Timings:
    """Seconds per call after compilation, measured by `Renderer.warm_up`."""

    compile: float = 0.0
    full: float = 0.0
    preview: float | None = None


class Renderer:
    """Owns the face model, the editors and (optionally) an encoder; renders `EditRequest`s.

    face: a `LoadedGenerator` or a `jaxedit.data.schematic_renderer.SchematicRenderer` (anything with
    `mapping`, `synthesis`, `num_ws`, `w_dim`, `z_dim`, `w_avg`, `resolution`).
    editors: loaded `Editors` whose latents fit the face (`check_compatible`).
    encoder: a `LoadedEncoder` for photos (W+ editors only, as `jaxedit edit --image`), or None.
    preview: "auto" (use the preview when faster, decided by `warm_up`), "on" or "off".
    preview_resolution: default `default_preview_resolution(resolution, schematic)`.

    Methods are thread-safe: JAX work runs under one lock, one request at a time.
    """

    def __init__(
        self,
        face: Any,
        editors: Any,
        encoder: Any = None,
        preview: str = "auto",
        preview_resolution: int | None = None,
    ):
        if preview not in PREVIEW_MODES:
            raise ConfigError(f"preview {preview!r}: expected one of {', '.join(PREVIEW_MODES)}")
        edit_lib.check_compatible(editors, face)
        if editors.transformer_params is None or not editors.attributes:
            raise ConfigError("these editors hold a classifier only: no attribute transformer to put on a slider")
        if encoder is not None:  # the checks of `jaxedit edit --image`: photos need W+ editors
            check_latent_spaces(encoder, face, editors)
        self.face, self.editors, self.encoder = face, editors, encoder
        self.schematic = _is_schematic(face)
        self.resolution = int(face.resolution)
        self.num_ws, self.w_dim, self.z_dim = int(face.num_ws), int(face.w_dim), int(face.z_dim)
        self.attributes = tuple(editors.attributes)
        low, high = getattr(editors.preset, "edit_alpha_range", None) or DEFAULT_ALPHA_RANGE
        self.alpha_range = (max(float(low), -ALPHA_LIMIT), min(float(high), ALPHA_LIMIT))
        layers = edit_lib.default_layers(editors) or tuple(range(self.num_ws))
        self.limits = Limits(self.attributes, self.num_ws, (layers[0], layers[-1]))
        self.lock = threading.Lock()
        self._seed_cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._image_cache: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
        self._transformer_params = editors.transformer_params
        self._w_avg = jnp.asarray(face.w_avg, jnp.float32)
        self._edit = _edit_function(editors, self.num_ws)
        self._mapping = (
            (lambda z: face.mapping(z, 1.0)) if _is_generator(face) else jax.jit(lambda z: face.mapping(z, 1.0))
        )
        self._full, self._preview, self.preview_resolution = self._synthesis_functions(preview_resolution)
        self.preview_mode = preview if self._preview is not None else "off"
        self.use_preview = self.preview_mode == "on"
        self.timings = Timings()

    # ---- construction helpers --------------------------------------------------------------
    def _synthesis_functions(self, preview_resolution: int | None):
        face = self.face
        if preview_resolution is None:
            size = default_preview_resolution(self.resolution, self.schematic)
        else:
            size = int(preview_resolution)
        if _is_generator(face):
            full = lambda ws: face.synthesis(ws, "const")  # the generator's own jitted entry point
            if size not in face.config.resolutions or size >= self.resolution:
                return full, None, None
            module = PreviewSynthesis(face.config, size, face.precision)
            preview_jit = jax.jit(lambda params, ws: module.apply({"params": params}, ws))
            return full, lambda ws: preview_jit(face.params["synthesis"], ws), size
        full = jax.jit(lambda ws: face.synthesis(ws))
        if self.schematic and size < self.resolution:
            small = dataclasses.replace(face, resolution=size)
            return full, jax.jit(lambda ws: small.synthesis(ws)), size
        return full, None, None

    # ---- latents -----------------------------------------------------------------------------
    def seed_latent(self, seed: int) -> np.ndarray:
        """Untruncated W+ [1, num_ws, w_dim] of a seed (z = RandomState(seed).randn(z_dim), as `jaxedit generate`)."""
        cached = self._seed_cache.get(seed)
        if cached is not None:
            self._seed_cache.move_to_end(seed)
            return cached
        z = np.random.RandomState(seed).randn(1, self.z_dim).astype(np.float32)
        ws = np.asarray(self._mapping(z), np.float32)
        self._seed_cache[seed] = ws
        if len(self._seed_cache) > SEED_CACHE:
            self._seed_cache.popitem(last=False)
        return ws

    def base_latent(self, request: EditRequest, uploads: Any = None) -> np.ndarray:
        source = request.source
        if source.kind == "seed":
            return self.seed_latent(int(source.value))
        item = uploads.get(source.kind, str(source.value)) if uploads is not None else None
        if item is None:
            raise NotFoundError(f"source.{source.kind}: no upload {source.value!r} (expired or never sent)")
        return item.ws

    def edit_arrays(self, edits, layers) -> tuple[np.ndarray, np.ndarray, np.int32, np.ndarray]:
        """(slots [K], alphas [K], count, mask [num_ws]) for the jitted edit: K = number of attributes."""
        count = len(self.attributes)
        slots = np.zeros((count,), np.int32)
        alphas = np.zeros((count,), np.float32)
        for i, (name, alpha) in enumerate(edits):
            slots[i] = self.attributes.index(name)
            alphas[i] = alpha
        mask = np.zeros((self.num_ws,), bool)
        mask[layers[0] : layers[1] + 1] = True
        return slots, alphas, np.int32(len(edits)), mask

    def _edited(self, base: np.ndarray, edits, truncation: float, layers) -> jax.Array:
        slots, alphas, count, mask = self.edit_arrays(edits, layers)
        return self._edit(
            self._transformer_params, self._w_avg, base, np.float32(truncation), slots, alphas, count, mask
        )

    def latents(self, request: EditRequest, uploads: Any = None) -> np.ndarray:
        """The edited W+ latent, float32 [1, num_ws, w_dim] (what `jaxedit generate --ws` renders)."""
        with self.lock:
            base = self.base_latent(request, uploads)
            return np.asarray(self._edited(base, request.edits, request.truncation, request.layers), np.float32)

    # ---- images ------------------------------------------------------------------------------
    def image(
        self, request: EditRequest, uploads: Any = None, still_wanted: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """uint8 [R, R, 3]: the preview when asked for and in use, else the full image.

        `still_wanted` is asked once the render lock is held; False: `SupersededError`, nothing rendered.
        """
        with self.lock:
            if still_wanted is not None and not still_wanted():
                raise SupersededError("superseded by a newer request of the same client")
            base = self.base_latent(request, uploads)
            preview = request.preview and self.use_preview
            key = (request.source.key(), request.edits, request.truncation, request.layers)
            if not preview and key in self._image_cache:
                self._image_cache.move_to_end(key)
                return self._image_cache[key]
            ws = self._edited(base, request.edits, request.truncation, request.layers)
            image = to_uint8((self._preview if preview else self._full)(ws))[0]
            if not preview:
                self._image_cache[key] = image
                if len(self._image_cache) > IMAGE_CACHE:
                    self._image_cache.popitem(last=False)
            return image

    def png(self, request: EditRequest, uploads: Any = None) -> bytes:
        return encode_png(self.image(request, uploads))

    def sweep_frames(self, request: EditRequest, uploads: Any = None, count: int = 9) -> list[np.ndarray]:
        """Full-resolution frames of `request.attribute` swept over the sliders' range, the other edits kept."""
        frames = []
        for alpha in np.linspace(*self.alpha_range, count):
            step = dataclasses.replace(
                request, edits=sweep_edits(request.edits, request.attribute, float(alpha)), preview=False
            )
            frames.append(self.image(step, uploads))
        return frames

    # ---- photos ------------------------------------------------------------------------------
    def encode_photo(self, aligned: np.ndarray) -> np.ndarray:
        """uint8 aligned face [H, W, 3] -> W+ [1, num_ws, w_dim]: the encoder's input transform (a resize
        to its input size), then the encoder, as `jaxedit.editing.photo.encode_photos` does."""
        if self.encoder is None:
            raise ConfigError("no encoder loaded")
        with self.lock:
            return np.asarray(self.encoder.encode_uint8(np.asarray(aligned, np.uint8)[None]), np.float32)

    # ---- start-up ----------------------------------------------------------------------------
    def warm_up(self, repeats: int = 3) -> Timings:
        """Compile every function the page uses (batch 1) and time them; decide "auto" preview."""
        from jaxedit.serve.state import FaceSource

        started = time.perf_counter()
        request = EditRequest(FaceSource("seed", 0), ((self.attributes[0], 0.5),), 1.0, self.limits.default_layers)
        self.image(request)
        self.latents(request)
        if self._preview is not None:
            self.use_preview = True
            self.image(dataclasses.replace(request, preview=True))
        if self.encoder is not None:
            size = self.encoder.input_size
            self.encode_photo(np.zeros((size, size, 3), np.uint8))
        self.timings.compile = time.perf_counter() - started

        def median_time(preview: bool) -> float:
            times = []
            for k in range(repeats):
                step = dataclasses.replace(request, edits=((self.attributes[0], 0.1 * (k + 1)),), preview=preview)
                tick = time.perf_counter()
                self.png(step)
                times.append(time.perf_counter() - tick)
            return statistics.median(times)

        self.use_preview = False
        self.timings.full = median_time(False)
        if self._preview is not None:
            self.use_preview = True
            self.timings.preview = median_time(True)
            self.use_preview = self.preview_mode == "on" or (
                self.preview_mode == "auto" and self.timings.preview < PREVIEW_GAIN * self.timings.full
            )
        return self.timings

    def describe(self) -> str:
        kind = (
            self.face.describe() if hasattr(self.face, "describe") else f"generator {self.resolution}x{self.resolution}"
        )
        return f"{kind}; editors {self.editors.preset.name} with {len(self.attributes)} attribute(s)"
