"""The encoders' input transform: what pSp / e4e apply to a photo before encoding it.

The references resize the (aligned) RGB photo to the encoder's input size with Pillow's bilinear
filter (torchvision's `Resize` on a PIL image calls it; when shrinking, Pillow widens the filter
support, so this is not a plain 2x2 bilinear interpolation), scale to [0, 1] (/255) and normalise
with mean 0.5 and std 0.5: (t - 0.5) / 0.5, giving values in [-1, 1]. Pillow is called here so the
result matches the references exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from jaxedit.errors import InputError


def preprocess(images: np.ndarray, size: int) -> np.ndarray:
    """images uint8 [B, H, W, 3] -> float32 [B, size, size, 3] in [-1, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise InputError(f"images: expected uint8 values 0..255, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise InputError(f"images: expected uint8 [B, H, W, 3] (RGB), got shape {list(images.shape)}")
    out = np.empty((images.shape[0], size, size, 3), np.float32)
    for b, image in enumerate(images):
        resized = np.asarray(Image.fromarray(image, "RGB").resize((size, size), Image.BILINEAR))
        scaled = resized.astype(np.float32) / np.float32(255.0)
        out[b] = (scaled - np.float32(0.5)) / np.float32(0.5)
    return out
