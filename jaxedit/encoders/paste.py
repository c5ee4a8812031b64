"""Paste an edited aligned face back into the original photo.

The alignment sampled the photo at `P(s, t) = NW (1-s)(1-t) + NE s(1-t) + SW (1-s) t + SE s t`
for aligned-square coordinates (s, t) in [0, 1]^2 (see `AlignTransform`). Paste-back runs that map
backwards: for each photo pixel near the face, solve P(s, t) = pixel exactly for (s, t), sample
the edited face there (bilinear), and blend it in through a feathered mask defined on the square.
The mask is exactly 0 outside the square, so every photo pixel outside the quad is returned
bit-identical.

The warp is our own numpy code rather than Pillow's PERSPECTIVE transform: the alignment map is
bilinear, not projective (a perspective warp matches it only for parallelogram quads), and
Pillow would resample the edited face and the mask in 8 bits with truncation, while here the
edited pixels, the mask and the blend stay in float until one final rounding.
"""

from __future__ import annotations

import numpy as np

from jaxedit.encoders.align import AlignTransform, check_image
from jaxedit.errors import InputError

DEFAULT_FEATHER = 0.1  # width of the mask's soft edge, as a fraction of the square's side


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def square_coordinates(quad: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Invert the bilinear quad map: points [..., 2] (x, y) -> (s, t) [..., 2].

    With E = NW - P, B = NE - NW, C = SW - NW, D = SE - SW - NE + NW the map reads
    E + B s + C t + D s t = 0; eliminating t gives k2 s^2 + k1 s + k0 = 0 with k2 = B x D,
    k1 = E x D + B x C, k0 = E x C (x: 2-D cross product). For the parallelograms that face
    alignment produces D = 0 and the equation is linear. Points that no (s, t) reaches get NaN.
    """
    quad = np.asarray(quad, np.float64)
    points = np.asarray(points, np.float64)
    north_west, south_west, south_east, north_east = quad
    along_s = north_east - north_west
    along_t = south_west - north_west
    twist = south_east - south_west - north_east + north_west
    offset = north_west - points

    k2 = float(_cross(along_s, twist))
    k1 = _cross(offset, twist) + float(_cross(along_s, along_t))
    k0 = _cross(offset, along_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        if abs(k2) <= 1e-9 * abs(float(_cross(along_s, along_t))):
            s = -k0 / k1
        else:
            root = np.sqrt(k1 * k1 - 4.0 * k2 * k0)  # NaN where no real solution
            q = -0.5 * (k1 + np.where(k1 >= 0, root, -root))
            first, second = q / k2, k0 / q
            # Of the two roots, the one nearer to [0, 1] is the point inside the quad.
            distance_first = np.abs(first - np.clip(first, 0.0, 1.0))
            distance_second = np.abs(second - np.clip(second, 0.0, 1.0))
            s = np.where(np.nan_to_num(distance_second, nan=np.inf) < distance_first, second, first)
        residual = offset + along_s * s[..., None]
        direction = along_t + twist * s[..., None]
        t = -np.sum(residual * direction, axis=-1) / np.sum(direction * direction, axis=-1)
    return np.stack([s, t], axis=-1)


def feather_mask(coordinates: np.ndarray, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """(s, t) [..., 2] -> weights [...] in [0, 1]: 1 inside the square inset by `feather`, a
    smoothstep falloff to exactly 0 on the square's edge, 0 outside (and for NaN)."""
    coordinates = np.nan_to_num(np.asarray(coordinates, np.float64), nan=-1.0)
    distance = np.minimum(coordinates, 1.0 - coordinates)  # to the nearest edge, per axis
    if feather <= 0:
        return np.all(distance > 0, axis=-1).astype(np.float64)
    ramp = np.clip(distance / feather, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    return ramp[..., 0] * ramp[..., 1]


def _edited_to_float(edited, value_range: tuple[float, float]) -> np.ndarray:
    array = np.asarray(edited)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] != array.shape[1] or array.shape[0] < 2:
        raise InputError(f"edited face: expected a square [S, S, 3] image, got {list(array.shape)}")
    if array.dtype == np.uint8:
        return array.astype(np.float64)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"edited face: expected uint8 or float pixels, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError("edited face: contains NaN or infinite pixels")
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise InputError(f"edited face: value_range must be (low, high) with low < high, got {value_range}")
    return np.clip((array.astype(np.float64) - low) * (255.0 / (high - low)), 0.0, 255.0)


def _sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float [S, S, C] sampled at index coordinates x, y [N] (edges clamped) -> [N, C]."""
    height, width = image.shape[:2]
    x = np.clip(x, 0.0, width - 1.0)
    y = np.clip(y, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def paste_back(
    photo: np.ndarray,
    edited,
    transform: AlignTransform,
    feather: float = DEFAULT_FEATHER,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> np.ndarray:
    """Blend an edited aligned face into the photo it was aligned from.

    photo: uint8 [H, W, 3], the image given to `align_face`. edited: [S, S, 3], uint8 or float
    (floats on the generator's `value_range`, default [-1, 1]); S need not equal the alignment's
    output size. feather: the mask's soft edge as a fraction of the square's side (0: hard edge).
    Returns a new uint8 [H, W, 3]; pixels outside the alignment quad are unchanged.
    """
    photo = check_image(photo, "photo")
    if photo.shape[:2] != tuple(transform.image_size):
        raise InputError(f"photo: the alignment was made on a {transform.image_size} image, got {photo.shape[:2]}")
    if not 0.0 <= feather <= 0.5:
        raise InputError(f"paste-back feather must be in [0, 0.5] (fraction of the face square), got {feather}")
    face = _edited_to_float(edited, value_range)
    quad = np.asarray(transform.quad, np.float64)
    if abs(float(_cross(quad[3] - quad[0], quad[1] - quad[0]))) < 1.0:
        raise InputError("alignment transform: the quad has no area")

    height, width = photo.shape[:2]
    left = max(int(np.floor(quad[:, 0].min())), 0)
    top = max(int(np.floor(quad[:, 1].min())), 0)
    right = min(int(np.ceil(quad[:, 0].max())) + 1, width)
    bottom = min(int(np.ceil(quad[:, 1].max())) + 1, height)
    result = photo.copy()
    if left >= right or top >= bottom:
        return result

    ys, xs = np.mgrid[top:bottom, left:right]
    points = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    coordinates = square_coordinates(quad, points)
    weights = feather_mask(coordinates, feather)
    inside = weights > 0
    if not np.any(inside):
        return result
    size = face.shape[0]
    sampled = _sample_bilinear(face, coordinates[inside, 0] * size - 0.5, coordinates[inside, 1] * size - 0.5)
    rows, columns = ys.reshape(-1)[inside], xs.reshape(-1)[inside]
    original = photo[rows, columns].astype(np.float64)
    weight = weights[inside][:, None]
    blended = original + (sampled - original) * weight
    result[rows, columns] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return result
