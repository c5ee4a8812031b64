"""Reading photos of every Pillow mode as upright 8-bit RGB, refusing bad files, saving back."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxedit.encoders.photo import MAX_PHOTO_PIXELS, load_photo, save_format, save_photo
from jaxedit.errors import InputError, JaxeditError


def quadrants(height: int = 40, width: int = 60) -> np.ndarray:
    """uint8 [H, W, 3]: red, green, blue and white quadrants (top-left, top-right, bottom-left,
    bottom-right), so any rotation or flip is visible."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = (255, 0, 0)
    image[:h, w:] = (0, 255, 0)
    image[h:, :w] = (0, 0, 255)
    image[h:, w:] = (255, 255, 255)
    return image


def test_rgb_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    loaded, info = load_photo(tmp_path / "a.png")
    np.testing.assert_array_equal(loaded, image)
    assert (info.format, info.mode, info.size, info.exif_orientation) == ("PNG", "RGB", (30, 50), 1)
    save_photo(tmp_path / "b.png", loaded, like=info)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), image)


def test_rgba_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 40, 0)
    rgba[0, :, 3] = (255, 0, 128)
    rgba[1, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded, info = load_photo(tmp_path / "a.png")
    assert info.mode == "RGBA"
    np.testing.assert_array_equal(loaded[0, 0], (200, 40, 0))
    np.testing.assert_array_equal(loaded[0, 1], (255, 255, 255))
    np.testing.assert_allclose(loaded[0, 2], (228, 147, 127), atol=1)  # 128/255 of the colour over white
    np.testing.assert_array_equal(loaded[1], np.tile((200, 40, 0), (3, 1)))


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("L", np.array([[0, 77, 255]], np.uint8), [0, 77, 255]),
        ("1", np.array([[False, True, True]]), [0, 255, 255]),
        ("I;16", np.array([[0, 32768, 65535]], np.uint16), [0, 128, 255]),
    ],
)
def test_grey_modes_in_png(tmp_path, mode, values, expected):
    Image.fromarray(values).save(tmp_path / "a.png")  # bool -> "1", uint16 -> "I;16"
    loaded, info = load_photo(tmp_path / "a.png")
    assert info.mode == mode and loaded.shape == (1, 3, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[0], np.repeat(np.array(expected)[:, None], 3, axis=1))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[0, 100, 255]], np.int32), [0, 100, 255]),  # already 8-bit values
        (np.array([[0, 32768, 65535]], np.int32), [0, 128, 255]),  # 16-bit values
        (np.array([[-50, 0, 150]], np.int32), [0, 64, 255]),  # anything else: min..max stretched
        (np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),  # float in [0, 1]
        (np.array([[0.0, 100.0, 255.0]], np.float32), [0, 100, 255]),  # float in [0, 255]
    ],
)
def test_32_bit_integer_and_float_tiff(tmp_path, values, expected):
    Image.fromarray(values).save(tmp_path / "a.tif")
    loaded, info = load_photo(tmp_path / "a.tif")
    assert info.mode in {"I", "F"} and info.format == "TIFF"
    np.testing.assert_array_equal(loaded[0, :, 0], expected)


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (3, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 0])
    palette.putdata([0, 1, 2])
    palette.save(tmp_path / "plain.png")
    loaded, info = load_photo(tmp_path / "plain.png")
    assert info.mode == "P"
    np.testing.assert_array_equal(loaded[0], [(10, 20, 30), (200, 100, 50), (0, 0, 0)])
    palette.save(tmp_path / "transparent.png", transparency=2)
    loaded, _ = load_photo(tmp_path / "transparent.png")
    np.testing.assert_array_equal(loaded[0], [(10, 20, 30), (200, 100, 50), (255, 255, 255)])


def test_la_and_cmyk(tmp_path):
    la = np.array([[[90, 255], [90, 0]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    loaded, _ = load_photo(tmp_path / "la.png")
    np.testing.assert_array_equal(loaded[0], [(90, 90, 90), (255, 255, 255)])
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(255, 0, 0, 0), (0, 0, 0, 255)])  # cyan ink; black ink
    cmyk.save(tmp_path / "cmyk.tif")
    loaded, info = load_photo(tmp_path / "cmyk.tif")
    assert info.mode == "CMYK"
    np.testing.assert_array_equal(loaded[0], [(0, 255, 255), (0, 0, 0)])


@pytest.mark.parametrize(("orientation", "turns"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(tmp_path, orientation, turns):
    """Orientation 6: the camera was turned, the picture must be rotated 90 degrees clockwise to
    display (np.rot90 k=-1); 8: counter-clockwise; 3: half a turn."""
    image = quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=95, exif=exif)
    loaded, info = load_photo(tmp_path / "a.jpg")
    expected = np.rot90(image, k=turns)
    assert loaded.shape == expected.shape and info.size == expected.shape[:2]
    assert info.exif_orientation == orientation
    assert np.abs(loaded.astype(int) - expected).mean() < 4


def tiny_png_declaring(width: int, height: int) -> bytes:
    """A valid-looking 1-bit greyscale PNG of huge declared size: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [100_000, 10_000])  # over twice Pillow's limit; between our cap and twice it
def test_decompression_bomb_is_refused(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(tiny_png_declaring(side, side))
    assert path.stat().st_size < 200 and side * side > MAX_PHOTO_PIXELS
    with pytest.raises(InputError, match="bomb") as error:
        load_photo(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_pixel_cap_is_configurable(tmp_path):
    Image.fromarray(quadrants()).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="60x40 pixels is over the limit of 1,000"):
        load_photo(tmp_path / "a.png", max_pixels=1000)


def test_not_an_image_truncated_and_missing_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a picture\n")
    with pytest.raises(InputError, match="not an image") as error:
        load_photo(text)
    assert str(text) in str(error.value)

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    for name in ("cut.jpg", "cut.png"):
        source = tmp_path / ("a" + name[-4:])
        if name.endswith(".png"):
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(source)
            data = source.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError, match="truncated") as error:
            load_photo(tmp_path / name)
        assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(InputError, match="no such file"):
        load_photo(tmp_path / "missing.png")
    with pytest.raises(InputError, match="not a file"):
        load_photo(tmp_path)


def test_save_keeps_the_format_and_the_colour_profile(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    smooth = np.repeat(np.linspace(0, 255, 48)[None, :, None], 32, 0).repeat(3, -1).astype(np.uint8)
    profile = b"not-a-real-icc-profile-but-carried-as-bytes"
    Image.fromarray(smooth).save(tmp_path / "photo.jpg", quality=80, icc_profile=profile)
    loaded, info = load_photo(tmp_path / "photo.jpg")
    assert info.icc_profile == profile

    save_photo(tmp_path / "edited.jpg", loaded, like=info)
    with Image.open(tmp_path / "edited.jpg") as saved:
        assert saved.format == "JPEG" and saved.info.get("icc_profile") == profile
        assert np.abs(np.asarray(saved).astype(int) - loaded).max() <= 3  # quality 95, no chroma subsampling

    save_photo(tmp_path / "edited.unknown_extension", image, like=info)  # no format from the name: the original's
    with Image.open(tmp_path / "edited.unknown_extension") as saved:
        assert saved.format == "JPEG"
    assert save_format(tmp_path / "x.png", like=info) == "PNG"  # the extension wins
    assert save_format(tmp_path / "x", like=None) == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.jpg", "edited.unknown_extension", "photo.jpg"]


def test_save_refuses_bad_pixels_and_leaves_no_partial_file(tmp_path):
    with pytest.raises(InputError, match="uint8"):
        save_photo(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    (tmp_path / "a.png").mkdir()
    with pytest.raises(JaxeditError, match="is a directory"):  # never replaced by a file
        save_photo(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
