"""Landmarks from files, and from dlib (the optional `faces` extra) on a real photograph.

`fixtures/encoders/astronaut_face.jpg` is a 384x320 crop of the NASA portrait of Eileen Collins
(public domain; scikit-image ships the full picture as skimage/data/astronaut.png);
`astronaut_face_landmarks.json` holds what dlib 20.0's 68-point predictor found on it.
"""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from jaxedit.encoders import landmarks as landmarks_module
from jaxedit.encoders.align import align_face
from jaxedit.encoders.landmarks import LandmarkDetector, find_predictor_file, load_landmarks
from jaxedit.encoders.paste import paste_back, square_coordinates
from jaxedit.encoders.photo import load_photo, save_photo
from jaxedit.errors import ConfigError, InputError
from tests.helpers.paths import FIXTURES

ASTRONAUT = FIXTURES / "encoders" / "astronaut_face.jpg"
ASTRONAUT_LANDMARKS = FIXTURES / "encoders" / "astronaut_face_landmarks.json"

FACES_EXTRA = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models")
needs_faces_extra = pytest.mark.skipif(
    not FACES_EXTRA, reason="the faces extra (dlib-bin, face_recognition_models) is not installed"
)


@pytest.fixture(scope="module")
def reference_landmarks() -> np.ndarray:
    return np.array(json.loads(ASTRONAUT_LANDMARKS.read_text())["landmarks"], np.float64)


@pytest.mark.parametrize("suffix", [".npy", ".txt", ".csv", ".json", "dict.json"])
def test_load_landmarks_formats(tmp_path, reference_landmarks, suffix):
    path = tmp_path / f"points{suffix}"
    if suffix == ".npy":
        np.save(path, reference_landmarks.astype(np.int64))
    elif suffix == ".txt":
        np.savetxt(path, reference_landmarks, fmt="%.3f")
    elif suffix == ".csv":
        np.savetxt(path, reference_landmarks, fmt="%.3f", delimiter=",")
    elif suffix == ".json":
        path.write_text(json.dumps(reference_landmarks.tolist()))
    else:
        path.write_text(json.dumps({"landmarks": reference_landmarks.tolist()}))
    points = load_landmarks(path, image_size=(320, 384))
    assert points.dtype == np.float64
    np.testing.assert_allclose(points, reference_landmarks, atol=1e-3)


def test_load_landmarks_refusals(tmp_path, reference_landmarks):
    cases = {
        "short.npy": (lambda p: np.save(p, np.zeros((5, 2))), r"\[68, 2\]"),
        "nan.npy": (lambda p: np.save(p, np.where(np.eye(68, 2) > 0, np.nan, 1.0)), "NaN"),
        "objects.npy": (lambda p: np.save(p, np.array([{"x": 1}], dtype=object)), "object values"),
        "words.txt": (lambda p: p.write_text("left eye\nright eye\n"), "unreadable"),
        "far.json": (lambda p: p.write_text(json.dumps((reference_landmarks + 5000).tolist())), "far outside"),
        "huge.json": (lambda p: p.write_text(json.dumps((reference_landmarks * 1e7).tolist())), "beyond"),
        "keys.json": (lambda p: p.write_text(json.dumps({"points": []})), "'landmarks' key"),
        "points.pts": (lambda p: p.write_text("version: 1\n"), ".npy, .txt, .csv or .json"),
    }
    for name, (write, message) in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(InputError, match=message) as error:
            load_landmarks(path, image_size=(320, 384))
        assert str(path) in str(error.value) and "\n" not in str(error.value), name
    with pytest.raises(InputError, match="no such"):
        load_landmarks(tmp_path / "missing.npy")


def test_missing_extra_is_one_line_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'jaxedit\[faces\]'"):
        LandmarkDetector()
    monkeypatch.setattr(landmarks_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="face_recognition_models package"):
        find_predictor_file()


@pytest.fixture(scope="module")
def detector():
    if not FACES_EXTRA:
        pytest.skip("the faces extra (dlib-bin, face_recognition_models) is not installed")
    return LandmarkDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image, _ = load_photo(ASTRONAUT)
    return image


@needs_faces_extra
def test_predictor_file_is_found_without_importing_its_package():
    path = find_predictor_file()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 90e6
    assert "face_recognition_models" not in __import__("sys").modules


@needs_faces_extra
def test_detects_the_astronaut(detector, astronaut, reference_landmarks):
    points = detector.detect_landmarks(astronaut)
    assert points.shape == (68, 2)
    np.testing.assert_allclose(points, reference_landmarks, atol=2.0)
    # The eyes lie inside the detection box, left eye left of the right one, above the mouth.
    (left, top, right, bottom) = detector.detect_faces(astronaut)[0]
    eyes = points[36:48]
    assert np.all((eyes[:, 0] > left) & (eyes[:, 0] < right) & (eyes[:, 1] > top) & (eyes[:, 1] < bottom))
    assert points[36:42, 0].mean() < points[42:48, 0].mean() and points[36:48, 1].mean() < points[48:60, 1].mean()


@needs_faces_extra
def test_several_faces_need_an_index(detector, astronaut, reference_landmarks):
    pair = np.concatenate([astronaut, astronaut], axis=1)
    with pytest.raises(InputError, match=r"found 2 faces \(0: .* px at .*; 1: .*\); choose one with a face index"):
        detector.detect_landmarks(pair)
    second = detector.detect_landmarks(pair, face_index=1)
    np.testing.assert_allclose(second, reference_landmarks + (astronaut.shape[1], 0), atol=2.0)
    with pytest.raises(InputError, match="face index 2 out of range: found 2 face"):
        detector.detect_landmarks(pair, face_index=2)


@needs_faces_extra
def test_no_face_and_too_small_a_face(detector, astronaut):
    with pytest.raises(InputError, match="no face found in the 96x64 photo"):
        detector.detect_landmarks(np.full((64, 96, 3), 128, np.uint8))
    half = np.asarray(Image.fromarray(astronaut).resize((192, 160), Image.Resampling.LANCZOS))
    with pytest.raises(InputError, match=r"face 0: \d+x\d+ px at .* is under the 64 px minimum"):
        detector.detect_landmarks(half)
    assert detector.detect_landmarks(half, min_face_size=32).shape == (68, 2)


@needs_faces_extra
def test_photo_to_aligned_face_and_back(detector, tmp_path):
    """The whole path on a real photograph: read, detect, align, paste back, save."""
    photo, info = load_photo(ASTRONAUT)
    points = detector.detect_landmarks(photo)
    aligned, transform = align_face(photo, points, output_size=256)
    assert aligned.shape == (256, 256, 3)
    # FFHQ framing: the eyes sit on a level line just above the middle, symmetric about it.
    eyes = np.array([points[36:42].mean(axis=0), points[42:48].mean(axis=0)])
    (s_left, t_left), (s_right, t_right) = square_coordinates(transform.quad, eyes)
    assert abs((s_left + s_right) / 2 - 0.5) < 0.03 and abs(t_left - t_right) < 0.01
    assert 0.4 < t_left < 0.5 and 0.2 < s_right - s_left < 0.25 + 1e-9  # eye distance is at most a quarter
    pasted = paste_back(photo, aligned, transform)
    ys, xs = np.mgrid[: photo.shape[0], : photo.shape[1]]
    face = (np.abs(xs - eyes[:, 0].mean()) < 40) & (np.abs(ys - eyes[:, 1].mean() - 20) < 40)
    assert np.abs(pasted[face].astype(int) - photo[face]).mean() < 2.0
    save_photo(tmp_path / "edited.jpg", pasted, like=info)
    reread, _ = load_photo(tmp_path / "edited.jpg")
    assert reread.shape == photo.shape
