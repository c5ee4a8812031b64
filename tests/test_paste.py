"""Paste-back: the inverse of the alignment warp, blended through a feathered mask."""

import numpy as np
import pytest

from jaxedit.encoders.align import align_face
from jaxedit.encoders.paste import feather_mask, paste_back, square_coordinates
from jaxedit.errors import InputError
from tests.helpers.paths import FIXTURES


@pytest.fixture(scope="module")
def landmarks():
    with np.load(FIXTURES / "encoders" / "align_small_io.npz") as data:
        return data["landmarks"]


def smooth_photo(height: int = 300, width: int = 380, seed: int = 0) -> np.ndarray:
    """Sums of low-frequency plane waves, uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    channels = []
    for _ in range(3):
        value = np.full((height, width), 128.0)
        for _ in range(4):
            fx, fy = rng.uniform(-1, 1, 2) * 2 * np.pi / 90
            value += rng.uniform(10, 25) * np.sin(fx * xs + fy * ys + rng.uniform(0, 2 * np.pi))
        channels.append(value)
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def photo_coordinates(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return square_coordinates(quad, np.stack([xs, ys], axis=-1))


@pytest.mark.parametrize("size", [256, 64])
def test_pasting_the_unedited_crop_restores_the_photo(landmarks, size):
    photo = smooth_photo()
    aligned, transform = align_face(photo, landmarks, output_size=size)
    pasted = paste_back(photo, aligned, transform)

    st = photo_coordinates(transform.quad, photo.shape[:2])
    inside_square = np.all((st > 0) & (st < 1), axis=-1)
    np.testing.assert_array_equal(pasted[~inside_square], photo[~inside_square])

    # Away from the photo's edges (where alignment blurred its reflect padding into the crop).
    ys, xs = np.mgrid[: photo.shape[0], : photo.shape[1]]
    interior = inside_square & (xs >= 30) & (xs < photo.shape[1] - 30) & (ys >= 30) & (ys < photo.shape[0] - 30)
    diff = np.abs(pasted[interior].astype(np.int64) - photo[interior])
    assert diff.mean() < 0.75, diff.mean()  # measured 0.38 (256) and 0.44 (64)
    assert diff.max() <= 4, diff.max()  # measured 1 and 2


def test_an_edit_changes_only_pixels_inside_the_quad(landmarks):
    photo = smooth_photo(seed=1)
    aligned, transform = align_face(photo, landmarks, output_size=64)
    edited = np.full((128, 128, 3), 1.0, np.float32)  # white on the generator's [-1, 1] scale, another size
    pasted = paste_back(photo, edited, transform, feather=0.15)

    st = photo_coordinates(transform.quad, photo.shape[:2])
    inside_square = np.all((st > 0) & (st < 1), axis=-1)
    changed = np.any(pasted != photo, axis=-1)
    assert changed.any() and not np.any(changed & ~inside_square)
    core = np.all((st > 0.15) & (st < 0.85), axis=-1)  # where the mask is 1
    assert np.all(pasted[core] == 255)
    left, top = np.floor(transform.quad.min(axis=0)).astype(int)
    right, bottom = np.ceil(transform.quad.max(axis=0)).astype(int)
    rows, columns = np.nonzero(changed)
    assert (
        rows.min() >= max(top, 0) and rows.max() <= bottom and columns.min() >= max(left, 0) and columns.max() <= right
    )


def test_feather_mask_is_exactly_zero_outside_and_one_inside():
    st = np.array([[-0.1, 0.5], [0.0, 0.5], [0.5, 1.0], [0.05, 0.5], [0.5, 0.5], [0.1, 0.9], [np.nan, 0.5]])
    weights = feather_mask(st, feather=0.1)
    assert weights[0] == 0 and weights[1] == 0 and weights[2] == 0 and weights[6] == 0
    assert 0 < weights[3] < 1 and weights[4] == 1 and weights[5] == 1
    np.testing.assert_array_equal(feather_mask(st, feather=0.0), [0, 0, 0, 1, 1, 1, 0])


def test_square_coordinates_invert_a_general_quad():
    """The bilinear map of a non-parallelogram (where the quadratic term matters)."""
    quad = np.array([[10.0, 20.0], [15.0, 200.0], [230.0, 210.0], [200.0, 5.0]])
    st = np.random.default_rng(0).uniform(0, 1, (500, 2))
    s, t = st[:, :1], st[:, 1:]
    points = quad[0] * (1 - s) * (1 - t) + quad[3] * s * (1 - t) + quad[1] * (1 - s) * t + quad[2] * s * t
    np.testing.assert_allclose(square_coordinates(quad, points), st, atol=1e-9)


def test_bad_inputs_are_refused(landmarks):
    photo = smooth_photo(120, 150)
    _, transform = align_face(smooth_photo(), landmarks, output_size=64)
    with pytest.raises(InputError, match="alignment was made on"):
        paste_back(photo, np.zeros((64, 64, 3), np.uint8), transform)
    photo = smooth_photo()
    with pytest.raises(InputError, match="square"):
        paste_back(photo, np.zeros((64, 32, 3), np.uint8), transform)
    with pytest.raises(InputError, match="NaN"):
        paste_back(photo, np.full((64, 64, 3), np.nan, np.float32), transform)
    with pytest.raises(InputError, match="value_range"):
        paste_back(photo, np.zeros((64, 64, 3), np.float32), transform, value_range=(1.0, 1.0))
    with pytest.raises(InputError, match="feather"):
        paste_back(photo, np.zeros((64, 64, 3), np.uint8), transform, feather=0.7)
