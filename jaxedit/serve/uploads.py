"""Photos and latent files sent by the page: decoded under caps, held in memory under random ids.

Nothing here touches the file system: uploads arrive as bytes, live in an `UploadStore` (a
bounded, least-recently-used map from a random id to the decoded item) and leave only as the
responses the page asks for.

- `decode_photo(data)`: Pillow, with the image's declared size checked against `MAX_PHOTO_PIXELS`
  before any pixel is decoded (and Pillow's own decompression-bomb guard on top); EXIF
  orientation applied, transparency flattened onto white, any mode to 8-bit RGB; photos larger
  than `MAX_PHOTO_SIDE` are shrunk (the editor shows and pastes into that copy).
- `align_photo(image, size, detector)`: as `jaxedit edit --image`: the FFHQ alignment from dlib's
  68 landmarks when a detector is given; without one the photo is taken as an already aligned
  crop (`--aligned`), and the page says so.
- `decode_latent(data, num_ws, w_dim)`: one W [w_dim] / W+ [num_ws, w_dim] latent from `.npy`
  bytes (`allow_pickle=False`), batch axis of 1 allowed.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import secrets
import threading
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from jaxedit.serve.state import RequestError, TooLargeError, UnsupportedMediaError

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a photo; refused from its Content-Length before reading
MAX_LATENT_BYTES = 1024 * 1024  # a .npy of one W+ latent is a few kB to 80 kB
MAX_PHOTO_PIXELS = 40_000_000  # declared width x height; checked before decoding
MAX_PHOTO_SIDE = 2048  # larger photos are shrunk (LANCZOS) before alignment and paste-back
MAX_UPLOADS = 16  # items held per kind; the least recently used one is forgotten first
DETECTED_NOTE = "face detected and FFHQ-aligned"
ALIGNED_NOTE = "no face detector installed (pip install 'jaxedit[faces]'): the photo is taken as an aligned face crop"


def decode_photo(data: bytes, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """Image file bytes -> upright uint8 RGB [H, W, 3] (see the module docstring)."""
    if not data:
        raise RequestError("photo: the upload is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLargeError("photo: too many pixels (decompression bomb guard)") from None
        except (OSError, ValueError, SyntaxError):
            raise UnsupportedMediaError("photo: not an image Pillow can read") from None
        width, height = picture.size
        if width < 1 or height < 1:
            raise UnsupportedMediaError(f"photo: empty image {width}x{height}")
        if width * height > max_pixels:
            raise TooLargeError(f"photo: {width}x{height} pixels is more than the {max_pixels:,}-pixel limit")
        try:
            picture.load()
            picture = ImageOps.exif_transpose(picture)
            picture = _to_rgb(picture)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLargeError("photo: too many pixels (decompression bomb guard)") from None
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            raise UnsupportedMediaError(f"photo: the image data is damaged ({type(error).__name__})") from None
    if max(picture.size) > MAX_PHOTO_SIDE:
        scale = MAX_PHOTO_SIDE / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.LANCZOS
        )
    return np.asarray(picture, np.uint8)


def _to_rgb(picture: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'RGB'; transparency flattened onto white, 16-bit scaled to 8 bits."""
    if picture.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        picture = Image.fromarray((np.asarray(picture).astype(np.float64) * (255.0 / 65535.0)).round().astype(np.uint8))
    elif picture.mode in ("I", "F"):
        values = np.asarray(picture).astype(np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        picture = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))
    if picture.mode == "P" and "transparency" in picture.info:
        picture = picture.convert("RGBA")
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")


def align_photo(image: np.ndarray, output_size: int, detector: Any = None) -> tuple[np.ndarray, Any, str]:
    """(crop uint8 [S, S, 3], AlignTransform, how): what `jaxedit edit --image` does with a photo.

    With a landmark detector: the face it finds (refused under the minimum face width), FFHQ-aligned
    at S = `output_size`. Without one: the photo is taken as an already aligned crop, as
    `jaxedit edit --image --aligned` takes it (resized whole to S x S; the paste-back covers it all).
    """
    from jaxedit.editing.photo import check_face_size, whole_image_transform

    if detector is not None:
        from jaxedit.encoders.align import align_face

        landmarks = detector.detect_landmarks(image)
        check_face_size(landmarks, "photo")
        aligned, transform = align_face(image, landmarks, output_size)
        return aligned, transform, DETECTED_NOTE
    crop = np.asarray(Image.fromarray(image).resize((output_size, output_size), Image.LANCZOS), np.uint8)
    return crop, whole_image_transform(image.shape[:2], output_size), ALIGNED_NOTE


def decode_latent(data: bytes, num_ws: int, w_dim: int) -> np.ndarray:
    """`.npy` bytes of one latent -> untruncated W+ float32 [1, num_ws, w_dim]."""
    if len(data) > MAX_LATENT_BYTES:
        raise TooLargeError(f"latent: {len(data):,} bytes is more than {MAX_LATENT_BYTES:,}")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise UnsupportedMediaError("latent: not a .npy array (numpy.save output, no pickles)") from None
    if not isinstance(array, np.ndarray):
        raise UnsupportedMediaError("latent: expected a .npy array, got an .npz archive")
    shape = list(array.shape)
    if shape[:1] == [1] and len(shape) in (2, 3):
        array, shape = array[0], shape[1:]
    if shape == [w_dim]:
        array = np.broadcast_to(array[None], (num_ws, w_dim))
    elif shape != [num_ws, w_dim]:
        raise RequestError(
            f"latent: expected W [{w_dim}] or W+ [{num_ws}, {w_dim}] (a leading axis of 1 allowed), got {shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise RequestError(f"latent: expected floating-point values, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise RequestError("latent: contains non-finite values")
    return np.ascontiguousarray(array, np.float32)[None]


@dataclasses.dataclass(frozen=True)
class LatentUpload:
    ws: np.ndarray  # untruncated W+ [1, num_ws, w_dim]


@dataclasses.dataclass(frozen=True)
class PhotoUpload:
    ws: np.ndarray  # the encoder's W+ [1, num_ws, w_dim]
    photo: np.ndarray  # uint8 [H, W, 3], at most MAX_PHOTO_SIDE on its long side
    aligned: np.ndarray  # uint8 [S, S, 3], the encoder's input crop (shown on the page)
    transform: Any  # AlignTransform from `aligned` back into `photo`
    how: str  # how the crop was made


class UploadStore:
    """Uploads by kind ('latent', 'photo') and random id; at most `capacity` of each kind (LRU)."""

    def __init__(self, capacity: int = MAX_UPLOADS):
        self.capacity = int(capacity)
        self._items: dict[str, collections.OrderedDict[str, Any]] = {
            "latent": collections.OrderedDict(),
            "photo": collections.OrderedDict(),
        }
        self._lock = threading.Lock()

    def add(self, kind: str, item: Any) -> str:
        upload_id = secrets.token_urlsafe(12)
        with self._lock:
            items = self._items[kind]
            items[upload_id] = item
            while len(items) > self.capacity:
                items.popitem(last=False)
        return upload_id

    def get(self, kind: str, upload_id: str) -> Any:
        with self._lock:
            items = self._items.get(kind)
            if items is None or upload_id not in items:
                return None
            items.move_to_end(upload_id)
            return items[upload_id]
