"""FFHQ face alignment: 68 landmarks -> an upright, centred square face crop, and the map back.

This is the procedure the FFHQ data set, pSp and e4e use (numpy and Pillow only):

1. From the landmarks (dlib's 68-point order), the eye centres and the mouth corners give an
   oriented square `quad` around the face: its side is `qsize`, its "up" is perpendicular to the
   eye-to-eye line tilted by the eye-to-mouth direction. See `face_quad`.
2. Very large faces are first shrunk by an integer factor (LANCZOS), so the final warp never
   minifies by more than 2x.
3. The image is cropped to the quad's bounding box plus a border.
4. Where the quad reaches outside the image, the image is reflect-padded, the padding is
   blurred with a Gaussian and faded to the median colour, so the crop never shows a hard edge.
5. Pillow's QUAD transform (bilinear sampling) warps the quad onto a `transform_size` square,
   which is LANCZOS-resized to `output_size` if smaller.

Coordinates: (x, y) pixel indices, pixel centre at integers, as dlib's landmarks. The quad's
corners are in the order top-left, bottom-left, bottom-right, top-right of the face (Pillow's
QUAD order NW, SW, SE, NE). `AlignTransform.quad` is the quad in the original photo's pixels
that the aligned square actually covers (shrink, crop and pad undone), which is what paste-back
needs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from jaxedit.errors import ConfigError, InputError

NUM_LANDMARKS = 68
MIN_QUAD_SIZE = 8.0  # pixels; a smaller face cannot be aligned meaningfully
DEFAULT_TRANSFORM_SIZE = 256


@dataclasses.dataclass(frozen=True)
class AlignPlan:
    """The geometry of one alignment, before any pixel is touched.

    `shrink` is the integer downscale (applied only when > 1), `resized_size` the (width, height) after it;
    `crop` = (left, top, right, bottom) in the resized image (the whole image when no crop);
    `pad` = (left, top, right, bottom) added around the crop ((0, 0, 0, 0) when no padding);
    `quad_final` [4, 2] is the quad in the padded image that Pillow warps; `qsize` the quad side
    after the shrink; `border` the crop margin.
    """

    image_size: tuple[int, int]  # (height, width) of the original image
    output_size: int
    transform_size: int
    shrink: int
    resized_size: tuple[int, int]  # (width, height), Pillow order
    border: int
    crop: tuple[int, int, int, int]
    pad: tuple[int, int, int, int]
    qsize: float
    quad_final: np.ndarray


@dataclasses.dataclass(frozen=True)
class AlignTransform:
    """What paste-back needs: `quad` [4, 2] float64 is where the aligned square's corners
    (top-left, bottom-left, bottom-right, top-right) lie in the original photo, in pixel indices;
    the aligned pixel (i, j) of an `output_size` square samples the photo at the bilinear blend
    of the corners with weights from ((j + 0.5) / output_size, (i + 0.5) / output_size).
    `image_size` is the photo's (height, width)."""

    quad: np.ndarray
    output_size: int
    image_size: tuple[int, int]

    def as_dict(self) -> dict:
        return {
            "quad": np.asarray(self.quad, np.float64).tolist(),
            "output_size": int(self.output_size),
            "image_size": [int(v) for v in self.image_size],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "alignment transform") -> AlignTransform:
        """Inverse of `as_dict`, validated; `source` names the file in error messages."""
        try:
            quad = np.asarray(data["quad"], np.float64)
            output_size = int(data["output_size"])
            height, width = (int(v) for v in data["image_size"])
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{source}: expected keys quad [4,2], output_size, image_size [h,w] ({error})") from None
        if quad.shape != (4, 2) or not np.all(np.isfinite(quad)):
            raise InputError(f"{source}: quad must be 4 finite (x, y) corners, got shape {list(quad.shape)}")
        if output_size < 1 or height < 1 or width < 1:
            raise InputError(f"{source}: output_size and image_size must be positive")
        return cls(quad=quad, output_size=output_size, image_size=(height, width))


def check_landmarks(landmarks, what: str = "landmarks") -> np.ndarray:
    """[68, 2] finite (x, y) -> float64 array, else InputError."""
    points = np.asarray(landmarks)
    if points.shape != (NUM_LANDMARKS, 2):
        raise InputError(f"{what}: expected [68, 2] (x, y) points in dlib order, got shape {list(points.shape)}")
    if not np.issubdtype(points.dtype, np.number) or np.iscomplexobj(points):
        raise InputError(f"{what}: expected real numbers, got dtype {points.dtype}")
    points = points.astype(np.float64)
    if not np.all(np.isfinite(points)):
        raise InputError(f"{what}: contains NaN or infinite coordinates")
    return points


def face_quad(landmarks) -> tuple[np.ndarray, float]:
    """[68, 2] landmarks -> (quad [4, 2] float64: top-left, bottom-left, bottom-right, top-right,
    qsize: the quad's side in pixels)."""
    points = check_landmarks(landmarks)
    eye_left = points[36:42].mean(axis=0)
    eye_right = points[42:48].mean(axis=0)
    eye_centre = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_centre = (points[48] + points[54]) / 2
    eye_to_mouth = mouth_centre - eye_centre

    # The x axis: the eye line, tilted by the mouth direction turned 90 degrees.
    x_axis = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    length = np.hypot(*x_axis)
    scale = max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    if not length > 0 or not scale >= MIN_QUAD_SIZE / 2:
        raise InputError(f"landmarks: degenerate face (eye and mouth points give a crop of {2 * scale:.1f} px)")
    x_axis = x_axis / length * scale
    y_axis = np.flipud(x_axis) * [-1, 1]
    centre = eye_centre + 0.1 * eye_to_mouth
    quad = np.stack(
        [centre - x_axis - y_axis, centre - x_axis + y_axis, centre + x_axis + y_axis, centre + x_axis - y_axis]
    )
    return quad, float(2 * np.hypot(*x_axis))


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (
        math.floor(quad[:, 0].min()),
        math.floor(quad[:, 1].min()),
        math.ceil(quad[:, 0].max()),
        math.ceil(quad[:, 1].max()),
    )


def resolve_transform_size(output_size: int, transform_size: int | None) -> int:
    """None -> max(output_size, 256): pSp/e4e's 256 for small outputs, output_size for 1024."""
    if int(output_size) != output_size or output_size < 1:
        raise ConfigError(f"alignment output_size must be a positive integer, got {output_size!r}")
    if transform_size is None:
        return max(int(output_size), DEFAULT_TRANSFORM_SIZE)
    if int(transform_size) != transform_size or transform_size < output_size:
        raise ConfigError(
            f"alignment transform_size must be an integer >= output_size {output_size}, got {transform_size!r}"
        )
    return int(transform_size)


def plan_alignment(
    landmarks, image_size: tuple[int, int], output_size: int = 256, transform_size: int | None = None
) -> AlignPlan:
    """The shrink, crop and pad for landmarks in an image of (height, width) `image_size`."""
    transform_size = resolve_transform_size(output_size, transform_size)
    height, width = (int(v) for v in image_size)
    quad, qsize = face_quad(landmarks)

    shrink = math.floor(qsize / output_size * 0.5)
    resized = (width, height)
    if shrink > 1:
        resized = (max(int(np.rint(width / shrink)), 1), max(int(np.rint(height / shrink)), 1))
        quad = quad / shrink
        qsize = qsize / shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    left, top, right, bottom = _bounds(quad)
    crop = (
        max(left - border, 0),
        max(top - border, 0),
        min(right + border, resized[0]),
        min(bottom + border, resized[1]),
    )
    if not (crop[2] - crop[0] < resized[0] or crop[3] - crop[1] < resized[1]):
        crop = (0, 0, resized[0], resized[1])
    quad = quad - crop[:2]
    crop_width, crop_height = crop[2] - crop[0], crop[3] - crop[1]
    if crop_width < 1 or crop_height < 1:
        raise InputError(f"landmarks: the face lies entirely outside the {width}x{height} image")

    left, top, right, bottom = _bounds(quad)
    pad = (
        max(-left + border, 0),
        max(-top + border, 0),
        max(right - crop_width + border, 0),
        max(bottom - crop_height + border, 0),
    )
    if max(pad) > border - 4:
        least = int(np.rint(qsize * 0.3))
        pad = tuple(max(amount, least) for amount in pad)
        quad = quad + pad[:2]
    else:
        pad = (0, 0, 0, 0)
    return AlignPlan(
        image_size=(height, width),
        output_size=int(output_size),
        transform_size=transform_size,
        shrink=shrink,
        resized_size=resized,
        border=border,
        crop=crop,
        pad=pad,
        qsize=float(qsize),
        quad_final=quad,
    )


def _reflect_indices(size: int, radius: int) -> np.ndarray:
    """Indices of a half-sample symmetric extension (d c b a | a b c d | d c b a), any radius."""
    positions = np.arange(-radius, size + radius) % (2 * size)
    return np.where(positions < size, positions, 2 * size - 1 - positions)


def _fast_fft_length(minimum: int) -> int:
    """The smallest 2^a 3^b 5^c >= minimum (FFTs of such lengths are fastest)."""
    best = 1 << max(minimum - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < minimum:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def gaussian_blur(image: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Separable Gaussian over the two spatial axes of a float32 [H, W, C] image.

    Kernel exp(-x^2 / 2 sigma^2) normalised to sum 1 over |x| <= int(truncate * sigma + 0.5);
    edges extended half-sample symmetric; rows (axis 0) first, then columns, each pass computed
    in float64 and stored as float32 (the conventions of the usual scientific-Python filter).
    Each pass is a linear convolution done with real FFTs, so large sigmas on large photos stay
    fast; it agrees with direct summation to about 1e-12."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets.astype(np.float64) ** 2)
    weights /= weights.sum()
    result = image.astype(np.float32)
    for axis in (0, 1):
        size = result.shape[axis]
        extended = np.take(result, _reflect_indices(size, radius), axis=axis).astype(np.float64)
        length = extended.shape[axis]
        # A circular convolution over n >= length samples: outputs 2r..length-1 never wrap around.
        n = _fast_fft_length(length)
        spectrum = np.fft.rfft(extended, n=n, axis=axis)
        kernel = np.fft.rfft(weights, n=n)
        shape = [1] * result.ndim
        shape[axis] = kernel.shape[0]
        convolved = np.fft.irfft(spectrum * kernel.reshape(shape), n=n, axis=axis)
        result = np.take(convolved, np.arange(2 * radius, length), axis=axis).astype(np.float32)
    return result


def _pad_and_soften(image: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad uint8 [H, W, 3] by (left, top, right, bottom), blur the padding towards its
    outer edge and fade it to the median colour; returns uint8."""
    left, top, right, bottom = pad
    padded = np.pad(image.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    height, width, _ = padded.shape
    ys = np.arange(height, dtype=np.float32)[:, None, None]
    xs = np.arange(width, dtype=np.float32)[None, :, None]
    # 0 on the original image's edge, rising to 1 at the outer edge of the padding.
    edge = np.maximum(
        1.0 - np.minimum(xs / np.int64(left), (width - 1 - xs) / np.int64(right)),
        1.0 - np.minimum(ys / np.int64(top), (height - 1 - ys) / np.int64(bottom)),
    )
    padded += (gaussian_blur(padded, qsize * 0.02) - padded) * np.clip(edge * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(edge, 0.0, 1.0)
    return np.clip(np.rint(padded), 0, 255).astype(np.uint8)


def check_image(image, what: str = "image") -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise InputError(f"{what}: expected uint8 [H, W, 3] RGB pixels, got {array.dtype} {list(array.shape)}")
    return array


def prepare_for_warp(image: np.ndarray, plan: AlignPlan) -> np.ndarray:
    """Steps 2-4: shrink, crop and pad; returns the uint8 image that `warp_to_square` samples."""
    image = check_image(image)
    if image.shape[:2] != plan.image_size:
        raise InputError(f"image: planned for {plan.image_size}, got {image.shape[:2]}")
    picture = Image.fromarray(image, "RGB")
    if plan.shrink > 1:
        picture = picture.resize(plan.resized_size, Image.Resampling.LANCZOS)
    if plan.crop != (0, 0, *plan.resized_size):
        picture = picture.crop(plan.crop)
    array = np.asarray(picture)
    if max(plan.pad) > 0:
        array = _pad_and_soften(array, plan.pad, plan.qsize)
    return array


def warp_to_square(prepared: np.ndarray, plan: AlignPlan) -> np.ndarray:
    """Step 5: Pillow QUAD warp (bilinear) onto transform_size, LANCZOS down to output_size."""
    picture = Image.fromarray(prepared, "RGB").transform(
        (plan.transform_size, plan.transform_size),
        Image.Transform.QUAD,
        tuple((plan.quad_final + 0.5).flatten()),
        Image.Resampling.BILINEAR,
    )
    if plan.output_size < plan.transform_size:
        picture = picture.resize((plan.output_size, plan.output_size), Image.Resampling.LANCZOS)
    return np.asarray(picture).copy()


def photo_quad(plan: AlignPlan) -> np.ndarray:
    """The warped quad in original-photo pixel indices: pad and crop undone, and the shrink undone
    exactly (Pillow's resize scales continuous coordinates by old/new size on each axis)."""
    quad = plan.quad_final - plan.pad[:2] + plan.crop[:2]
    if plan.shrink > 1:
        height, width = plan.image_size
        scale = np.array([width / plan.resized_size[0], height / plan.resized_size[1]])
        quad = (quad + 0.5) * scale - 0.5
    return quad


def align_face(
    image: np.ndarray, landmarks, output_size: int = 256, transform_size: int | None = None
) -> tuple[np.ndarray, AlignTransform]:
    """uint8 [H, W, 3] photo + [68, 2] landmarks -> (aligned uint8 [S, S, 3], AlignTransform).

    S = `output_size`; the warp runs at `transform_size` (default max(S, 256)), then resizes to S.
    """
    image = check_image(image)
    plan = plan_alignment(landmarks, image.shape[:2], output_size, transform_size)
    aligned = warp_to_square(prepare_for_warp(image, plan), plan)
    transform = AlignTransform(quad=photo_quad(plan), output_size=plan.output_size, image_size=plan.image_size)
    return aligned, transform
