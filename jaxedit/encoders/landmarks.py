"""68-point face landmarks: detected with dlib (optional extra `faces`) or read from a file.

Detection uses dlib's HOG frontal-face detector and its 68-point shape predictor, the model FFHQ,
pSp and e4e aligned with. dlib comes from the `dlib-bin` wheel and the predictor file
`shape_predictor_68_face_landmarks.dat` from the `face_recognition_models` package; both are
installed by `pip install 'jaxedit[faces]'`. The predictor was trained on the iBUG 300-W data set,
whose licence excludes commercial use.

Faces are numbered left to right (then top to bottom) by their detection boxes.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from jaxedit.encoders.align import NUM_LANDMARKS, check_image, check_landmarks
from jaxedit.errors import ConfigError, InputError
from jaxedit.io import load_array

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
MODELS_PACKAGE = "face_recognition_models"
MIN_FACE_SIZE = 64  # pixels (detection box width); smaller faces align to a blurry crop
MAX_LANDMARKS_FILE_BYTES = 1 << 20
COORDINATE_LIMIT = 1e5  # landmarks farther out than this (pixels) are not a face in a photo
_EXTRA_HINT = "pip install 'jaxedit[faces]', or give landmarks from a file, or an already aligned photo"


def find_predictor_file() -> Path:
    """The 68-point predictor inside the installed `face_recognition_models` package.

    Located without importing the package (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "models" / PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    if spec is None:
        raise ConfigError(f"face landmarks need the {MODELS_PACKAGE} package ({_EXTRA_HINT})")
    raise ConfigError(f"{MODELS_PACKAGE} is installed but has no models/{PREDICTOR_FILE} ({_EXTRA_HINT})")


class LandmarkDetector:
    """dlib's face detector + 68-point predictor, loaded once (the predictor file is 100 MB).

    `predictor_path` defaults to the file in `face_recognition_models`. `lazy`: read the predictor
    when the first landmarks are asked for, so a photo without a usable face is refused without
    reading it (a one-shot command); otherwise at construction (a server)."""

    def __init__(self, predictor_path: str | os.PathLike | None = None, lazy: bool = False):
        try:
            import dlib
        except ImportError:
            raise ConfigError(f"face detection needs dlib ({_EXTRA_HINT})") from None
        path = Path(predictor_path) if predictor_path is not None else find_predictor_file()
        if not path.is_file():
            raise ConfigError(f"{path}: landmark predictor file not found")
        self._predictor_path = path
        self._predictor = None if lazy else self._load_predictor()
        self._detector = dlib.get_frontal_face_detector()

    def _load_predictor(self):
        import dlib

        try:
            return dlib.shape_predictor(str(self._predictor_path))
        except RuntimeError as error:
            detail = str(error).strip().splitlines()[0]
            raise ConfigError(f"{self._predictor_path}: not a dlib shape predictor ({detail})") from None

    def detect_faces(self, image: np.ndarray, upsample: int | None = None) -> list[tuple[int, int, int, int]]:
        """Face boxes (left, top, right, bottom), numbered left to right. `upsample` None: search
        at the photo's size, and once more at twice its size only if nothing was found."""
        image = np.ascontiguousarray(check_image(image))
        passes = [0, 1] if upsample is None else [int(upsample)]
        boxes: list = []
        for times in passes:
            boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in self._detector(image, times)]
            if boxes:
                break
        return sorted(boxes, key=lambda box: (box[0], box[1]))

    def landmarks_in_box(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        import dlib

        image = np.ascontiguousarray(check_image(image))
        if self._predictor is None:
            self._predictor = self._load_predictor()
        shape = self._predictor(image, dlib.rectangle(*(int(v) for v in box)))
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)

    def detect_landmarks(
        self,
        image: np.ndarray,
        face_index: int | None = None,
        min_face_size: int = MIN_FACE_SIZE,
        upsample: int | None = None,
    ) -> np.ndarray:
        """uint8 [H, W, 3] -> [68, 2] float64 (x, y) landmarks of one face.

        With several faces, `face_index` (0-based, left to right) picks one; without it, faces
        narrower than `min_face_size` px are ignored and exactly one must remain."""
        boxes = self.detect_faces(image, upsample)
        height, width = np.asarray(image).shape[:2]
        if not boxes:
            raise InputError(f"no face found in the {width}x{height} photo (a frontal, upright face is needed)")

        def describe(index: int) -> str:
            left, top, right, bottom = boxes[index]
            return f"{index}: {right - left}x{bottom - top} px at ({left}, {top})"

        if face_index is not None:
            if not 0 <= face_index < len(boxes):
                raise InputError(
                    f"face index {face_index} out of range: found {len(boxes)} face(s), numbered 0-{len(boxes) - 1}"
                )
            chosen = face_index
        else:
            large = [i for i, box in enumerate(boxes) if box[2] - box[0] >= min_face_size]
            if len(large) > 1:
                listed = "; ".join(describe(i) for i in large)
                raise InputError(
                    f"found {len(large)} faces ({listed}); choose one with a face index (numbered left to right)"
                )
            chosen = large[0] if large else max(range(len(boxes)), key=lambda i: boxes[i][2] - boxes[i][0])
        left, top, right, bottom = boxes[chosen]
        if right - left < min_face_size:
            raise InputError(f"face {describe(chosen)} is under the {min_face_size} px minimum; use a larger photo")
        return self.landmarks_in_box(image, boxes[chosen])


def detect_landmarks(
    image: np.ndarray,
    face_index: int | None = None,
    min_face_size: int = MIN_FACE_SIZE,
    detector: LandmarkDetector | None = None,
) -> np.ndarray:
    """uint8 [H, W, 3] photo -> [68, 2] float64 landmarks of one face (see
    `LandmarkDetector.detect_landmarks`). Pass a `detector` to reuse a loaded predictor."""
    detector = detector if detector is not None else LandmarkDetector()
    return detector.detect_landmarks(image, face_index=face_index, min_face_size=min_face_size)


def _read_json_points(path: Path):
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        if "landmarks" not in data:
            raise InputError(f"{path}: expected a [68, 2] list or an object with a 'landmarks' key")
        data = data["landmarks"]
    return np.array(data, dtype=np.float64)


def load_landmarks(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read [68, 2] (x, y) landmarks in dlib order from .npy, .txt/.csv (68 rows of x y, spaces
    or commas) or .json (a [68, 2] list, or {"landmarks": [...]}) -> float64 [68, 2].

    With `image_size` (height, width), every point must lie within one image size of the image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such landmarks file")
    if path.stat().st_size > MAX_LANDMARKS_FILE_BYTES:
        raise InputError(f"{path}: {path.stat().st_size:,} bytes is too large for 68 landmarks")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            points = load_array(path, shapes=[(NUM_LANDMARKS, 2)], kinds="iuf", max_bytes=MAX_LANDMARKS_FILE_BYTES)
        elif suffix in {".txt", ".csv"}:
            points = np.loadtxt(path.read_text().replace(",", " ").splitlines(), dtype=np.float64, ndmin=2)
        elif suffix == ".json":
            points = _read_json_points(path)
        else:
            raise InputError(f"{path}: landmarks must be a .npy, .txt, .csv or .json file")
    except InputError:
        raise
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: unreadable landmarks ({detail})") from None
    points = check_landmarks(points, what=str(path))
    if np.abs(points).max() > COORDINATE_LIMIT:
        raise InputError(f"{path}: landmark coordinates beyond {COORDINATE_LIMIT:.0f} px")
    if image_size is not None:
        height, width = image_size
        outside = (
            (points[:, 0] < -width)
            | (points[:, 0] > 2 * width)
            | (points[:, 1] < -height)
            | (points[:, 1] > 2 * height)
        )
        if np.any(outside):
            raise InputError(f"{path}: {int(outside.sum())} landmark(s) far outside the {width}x{height} photo")
    return points
