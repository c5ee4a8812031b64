"""Reading a user's photo robustly and saving the edited one back in the same format.

`load_photo` returns upright 8-bit RGB whatever Pillow opens: the EXIF orientation is applied;
transparency (RGBA, LA, PA, P with a transparent colour) is flattened onto white, so the saved
photo has no alpha channel; greyscale, palette, CMYK and YCbCr are converted to RGB; 16-bit and
32-bit integer images are scaled to 8 bits (see `_to_8bit`); of a multi-frame file (GIF, TIFF)
only the first frame is read. Images above `MAX_PHOTO_PIXELS` are refused before decoding, so a
decompression bomb (a tiny file declaring huge dimensions) costs nothing.

`save_photo` writes through `jaxedit.io.atomic_file`, in the format named by the file's
extension, else the original's format when Pillow can write it, else PNG. JPEG is written at
quality 95 with full-resolution colour; the original ICC colour profile is kept, EXIF is not
(the pixels are already upright, and camera metadata such as GPS positions is not copied).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from jaxedit.errors import InputError
from jaxedit.io import atomic_file

MAX_PHOTO_PIXELS = 89_478_485  # Pillow's own default bomb limit (about 0.25 GB of RGB)
JPEG_QUALITY = 95
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_ICC_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}


@dataclasses.dataclass(frozen=True)
class PhotoInfo:
    """What `save_photo` needs to write an edited photo like its original."""

    path: str
    format: str | None  # Pillow's format name ("JPEG", "PNG", ...)
    mode: str  # the mode as stored ("RGB", "I;16", "P", ...)
    size: tuple[int, int]  # (height, width) after the EXIF orientation
    exif_orientation: int  # 1 when upright or absent
    icc_profile: bytes | None = None


def _to_8bit(picture: Image.Image) -> Image.Image:
    """Integer and float single-channel modes -> 'L'.

    'I;16*': scaled by 255 / 65535. 'I' (32-bit): as is when every value lies in [0, 255],
    scaled by 255 / 65535 when within [0, 65535], else stretched from its minimum to maximum.
    'F': scaled by 255 when within [0, 1], as is when within [0, 255], else stretched likewise.
    """
    values = np.asarray(picture).astype(np.float64)
    if picture.mode.startswith("I;16"):
        scaled = values * (255.0 / 65535.0)
    else:
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if picture.mode == "F" and low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        elif picture.mode == "I" and low >= 0.0 and high <= 65535.0:
            scaled = values * (255.0 / 65535.0)
        else:
            scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _to_rgb(picture: Image.Image) -> Image.Image:
    if picture.mode == "P":
        picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
    elif picture.mode.startswith("I") or picture.mode == "F":
        picture = _to_8bit(picture)
    elif picture.mode == "L" and "transparency" in picture.info:
        picture = picture.convert("LA")
    elif picture.mode == "RGB" and "transparency" in picture.info:
        picture = picture.convert("RGBA")
    if picture.mode in _ALPHA_MODES:
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")


def load_photo(path: str | os.PathLike, max_pixels: int = MAX_PHOTO_PIXELS) -> tuple[np.ndarray, PhotoInfo]:
    """Read an image file -> (uint8 [H, W, 3] upright RGB, PhotoInfo). InputError naming the file
    when it is missing, not an image, truncated or corrupt, or larger than `max_pixels`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            # The pixel limit is checked below from the header, before any decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > max_pixels:
                    raise InputError(
                        f"{path}: {width}x{height} pixels is over the limit of {max_pixels:,} (a decompression bomb?)"
                    )
                picture.load()
                orientation = int(picture.getexif().get(0x0112, 1) or 1)
                info = {"format": picture.format, "mode": picture.mode, "icc": picture.info.get("icc_profile")}
                upright = ImageOps.exif_transpose(picture)
                rgb = _to_rgb(upright)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image dimensions over Pillow's limit (a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: unreadable or truncated image ({detail})") from None
    image = np.asarray(rgb, dtype=np.uint8).copy()
    photo_info = PhotoInfo(
        path=str(path),
        format=info["format"],
        mode=info["mode"],
        size=(image.shape[0], image.shape[1]),
        exif_orientation=orientation if 1 <= orientation <= 8 else 1,
        icc_profile=info["icc"] if isinstance(info["icc"], bytes) else None,
    )
    return image, photo_info


def _writable_format(name: str | None) -> str | None:
    Image.init()
    return name if name is not None and name in Image.SAVE else None


def save_format(path: str | os.PathLike, like: PhotoInfo | None = None) -> str:
    """The Pillow format `save_photo` uses: the extension's, else the original's, else PNG."""
    from_extension = Image.registered_extensions().get(Path(path).suffix.lower())
    return _writable_format(from_extension) or _writable_format(like.format if like else None) or "PNG"


def save_photo(path: str | os.PathLike, image: np.ndarray, like: PhotoInfo | None = None) -> Path:
    """Write uint8 [H, W, 3] RGB atomically; `like` (from `load_photo`) picks the format when the
    extension does not, and supplies the ICC profile. Returns the path."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"save_photo: expected uint8 [H, W, 3] RGB pixels, got {array.dtype} {list(array.shape)}")
    path = Path(path)
    fmt = save_format(path, like)
    options: dict = {}
    if like is not None and like.icc_profile and fmt in _ICC_FORMATS:
        options["icc_profile"] = like.icc_profile
    if fmt == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=JPEG_QUALITY)
    picture = Image.fromarray(array, "RGB")
    try:
        with atomic_file(path) as staging:
            picture.save(staging, format=fmt, **options)
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"{path}: cannot write a {fmt} image ({error})") from None
    return path
