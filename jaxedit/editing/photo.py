"""A user's photo through an encoder: what `jaxedit encode` and `jaxedit edit --image` do.

    load_photo -> landmarks (dlib, a file, or none for an already aligned crop) -> FFHQ alignment
    at the encoder's input size -> encoder -> W+ [1, num_ws, w_dim] -> edits -> generator ->
    panels, or the edited face pasted back into the photo at the photo's own size

- `FaceSource`: where the face's 68 landmarks come from (detected, a file, or an aligned crop).
- `prepare_photo(path, input_size, source)` -> `PreparedPhoto` (photo, aligned crop, transform).
- `check_latent_spaces(encoder, generator, editors)`: one-line `ConfigError` when their latents differ.
- `encode_photos(encoder, photos)` -> W+ `[N, num_ws, w_dim]`.
- `crop_at(photo, size)`: the aligned crop at another size (the "photo" panel at the generator's size).
- `paste_edit(generator, ws, photo)`: the edited face rendered at the generator's resolution and
  blended into the photo (`jaxedit.encoders.paste.paste_back`); pixels outside the face quad unchanged.

The paste-back uses the transform of the crop the encoder saw: the generator's reconstruction
shows that square, so warping it back through that transform lands the face where it was.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxedit.encoders.align import AlignTransform, align_face, face_quad
from jaxedit.encoders.photo import PhotoInfo, load_photo
from jaxedit.errors import ConfigError, InputError

MIN_FACE_WIDTH = 64  # pixels between the outermost jaw landmarks; the detector's minimum box width
W_PLUS_EDITORS_HINT = (
    "use W+ editors: the official latent transformers (`jaxedit convert latent-transformer`) or editors "
    "trained with the official preset (`jaxedit train --preset official`)"
)


@dataclasses.dataclass(frozen=True)
class FaceSource:
    """Where a photo's face comes from: `aligned` (the photo is already an FFHQ crop, encoded whole), else the
    68 landmarks of `landmarks` (a .npy/.txt/.csv/.json file), else dlib's detector, which picks
    face `face_index` (0-based, left to right) when the photo shows several."""

    landmarks: str | os.PathLike | None = None
    aligned: bool = False
    face_index: int | None = None

    def __post_init__(self):
        if self.aligned and self.landmarks is not None:
            raise ConfigError("an already aligned photo takes no landmarks")
        if self.face_index is not None and (self.aligned or self.landmarks is not None):
            raise ConfigError("a face index picks among detected faces: not with landmarks or an aligned photo")
        if self.face_index is not None and self.face_index < 0:
            raise ConfigError(f"face index {self.face_index}: expected 0 or more (faces numbered left to right)")


@dataclasses.dataclass(frozen=True)
class PreparedPhoto:
    """A photo ready for encoding and paste-back.

    image: uint8 [H, W, 3] upright RGB; info: what `save_photo` needs to write it like the original;
    landmarks: [68, 2] (x, y), None for an aligned crop; aligned: uint8, the face crop the encoder
    sees ([S, S, 3] at its input size S; an aligned photo as it is, which the encoder's input
    transform resizes to S x S as the references do, stretching it when not square); transform:
    from the aligned square back into `image`; how: where the face came from.
    """

    image: np.ndarray
    info: PhotoInfo
    landmarks: np.ndarray | None
    aligned: np.ndarray
    transform: AlignTransform
    how: str

    @property
    def path(self) -> str:
        return self.info.path


def whole_image_transform(image_size: tuple[int, int], output_size: int) -> AlignTransform:
    """The transform of a photo that is itself the aligned square: its corners are the quad."""
    height, width = (int(v) for v in image_size)
    x0, y0, x1, y1 = -0.5, -0.5, width - 0.5, height - 0.5
    quad = np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]], np.float64)
    return AlignTransform(quad=quad, output_size=int(output_size), image_size=(height, width))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image, "RGB").resize((size, size), Image.Resampling.LANCZOS))


def check_face_size(landmarks: np.ndarray, what: str, min_width: int = MIN_FACE_WIDTH) -> None:
    """InputError when the landmarks' face is narrower than `min_width` px (jaw to jaw)."""
    face_quad(landmarks)  # degenerate points: a one-line error of their own
    width = float(np.ptp(np.asarray(landmarks)[:17, 0]))
    if width < min_width:
        raise InputError(
            f"{what}: the face is {width:.0f} px wide, under the {min_width} px minimum; use a larger photo"
        )


def find_landmarks(image: np.ndarray, path: str | Path, source: FaceSource, detector: Any = None) -> np.ndarray:
    """[68, 2] landmarks of the photo's face, from `source.landmarks` or dlib's detector."""
    from jaxedit.encoders.landmarks import LandmarkDetector, load_landmarks

    if source.landmarks is not None:
        return load_landmarks(source.landmarks, image_size=image.shape[:2])
    detector = detector if detector is not None else LandmarkDetector()
    try:
        return detector.detect_landmarks(image, face_index=source.face_index)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


def prepare_photo(
    path: str | os.PathLike, input_size: int, source: FaceSource = FaceSource(), detector: Any = None
) -> PreparedPhoto:
    """Load a photo (`jaxedit.encoders.photo.load_photo`), find its face and align it at
    `input_size`. `detector`: a loaded `LandmarkDetector` to reuse (one is made when needed)."""
    image, info = load_photo(path)
    height, width = image.shape[:2]
    if source.aligned:  # resized to the input size as the references do (stretched when not square)
        return PreparedPhoto(
            image=image,
            info=info,
            landmarks=None,
            aligned=image,
            transform=whole_image_transform((height, width), input_size),
            how="already aligned",
        )
    landmarks = find_landmarks(image, path, source, detector)
    check_face_size(landmarks, str(path))
    aligned, transform = align_face(image, landmarks, output_size=input_size)
    if source.landmarks is not None:
        how = f"landmarks from {Path(source.landmarks).name}"
    else:
        how = "detected face" + (f" {source.face_index}" if source.face_index is not None else "")
    return PreparedPhoto(image=image, info=info, landmarks=landmarks, aligned=aligned, transform=transform, how=how)


def crop_at(photo: PreparedPhoto, size: int) -> np.ndarray:
    """The photo's aligned face crop at `size` (uint8 [size, size, 3]), aligned afresh from the photo."""
    if photo.landmarks is None:
        return _resize(photo.image, size)
    return align_face(photo.image, photo.landmarks, output_size=size)[0]


def check_latent_spaces(encoder: Any, generator: Any = None, editors: Any = None) -> None:
    """ConfigError in one line when the encoder's W+ [num_ws, w_dim] is not the generator's, or the
    editors do not work on it (W editors get an encoder's W+ latents: say what to use instead)."""
    from jaxedit.editing.edits import check_compatible, describe_latent_shape

    encoded = (int(encoder.num_ws), int(encoder.w_dim))
    if generator is not None and encoded != (int(generator.num_ws), int(generator.w_dim)):
        raise ConfigError(
            f"the encoder gives W+ [{encoded[0]}, {encoded[1]}] latents but the generator "
            f"({generator.resolution}x{generator.resolution}) takes W+ [{generator.num_ws}, {generator.w_dim}]: "
            "use the generator the encoder was trained with (its checkpoint holds it as its decoder)"
        )
    if editors is None:
        return
    if generator is not None:
        check_compatible(editors, generator)
    shape = tuple(int(s) for s in editors.latent_shape)
    if len(shape) == 1 and shape[0] == encoded[1]:
        raise ConfigError(
            f"the editors work on W [{shape[0]}] latents (one vector for every layer) but the encoder gives "
            f"W+ [{encoded[0]}, {encoded[1]}] latents with a vector per layer: {W_PLUS_EDITORS_HINT}"
        )
    if shape not in ((encoded[1],), encoded):
        raise ConfigError(
            f"the editors work on {describe_latent_shape(shape)} latents but the encoder gives "
            f"W+ [{encoded[0]}, {encoded[1]}]: they belong to different generators"
        )


def encode_photos(encoder: Any, photos: Sequence[PreparedPhoto], batch_size: int = 8) -> np.ndarray:
    """W+ latents `[N, num_ws, w_dim]` float32 of the photos' aligned crops.

    Batches of `batch_size` (the last one padded, so one compiled program serves every batch)."""
    from jaxedit.encoders.preprocess import preprocess

    if not photos:
        raise InputError("no photos to encode")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size}: expected at least 1")
    size = encoder.input_size
    images = np.concatenate([preprocess(photo.aligned[None], size) for photo in photos])
    batch = min(batch_size, len(images))
    latents = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        count = len(chunk)
        if count < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - count,) + chunk.shape[1:], chunk.dtype)])
        latents.append(np.asarray(encoder.encode(chunk))[:count])
    return np.concatenate(latents).astype(np.float32)


def paste_edit(
    generator: Any,
    ws: Any,
    photo: PreparedPhoto,
    noise_mode: str = "const",
    feather: float | None = None,
) -> np.ndarray:
    """Render W+ `[1, num_ws, w_dim]` at the generator's resolution and blend it into the photo
    through the inverse of its alignment -> uint8 [H, W, 3] at the photo's size."""
    import jax.numpy as jnp

    from jaxedit.encoders.paste import DEFAULT_FEATHER, paste_back

    ws = jnp.asarray(ws, jnp.float32)
    if ws.shape != (1, generator.num_ws, generator.w_dim):
        raise InputError(f"paste-back: expected W+ [1, {generator.num_ws}, {generator.w_dim}], got {list(ws.shape)}")
    face = np.asarray(generator.synthesis(ws, noise_mode))[0]  # [R, R, 3] on [-1, 1]
    return paste_back(
        photo.image,
        face,
        photo.transform,
        feather=DEFAULT_FEATHER if feather is None else feather,
        value_range=(-1.0, 1.0),
    )
