"""pSp / e4e encoders: conversion of the reference checkpoints and agreement with the reference forward.

The small fixtures (`tests/fixtures/encoders/`) are the real reference classes with fewer channels
(IR-SE-50 unit layout, widths 16/20/24/36, 10 styles of 32, 64x64 input), random weights, and the
outputs of the reference code on two images: every intermediate map, the codes, the latents and
the images their decoder renders. The full-size test builds a file with exactly the keys and
shapes of the released `psp_ffhq_encode.pt` / `e4e_ffhq_encode.pt` (random values).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from jaxedit.convert.encoder import convert_encoder, params_from_checkpoint
from jaxedit.convert.stylegan2 import convert_stylegan2
from jaxedit.convert.torch_reader import read_checkpoint
from jaxedit.encoders import EncoderConfig, count_parameters, load_encoder, preprocess
from jaxedit.errors import CheckpointError, ConfigError, InputError, UnsafeCheckpointError
from jaxedit.modeldir import read_manifest
from jaxedit.stylegan2 import load_generator
from tests.helpers.paths import FIXTURES, LATENT_FIXTURES, STYLEGAN2_FIXTURES
from tests.helpers.torch_writers import Tensor, write_torch_zip

ENCODER_FIXTURES = FIXTURES / "encoders"
KINDS = ("psp", "e4e")
TOLERANCE = 1e-4  # relative to each array's largest magnitude
SMALL_CONFIG = dict(
    input_size=64,
    in_channels=3,
    stem_channels=16,
    stage_depths=(16, 20, 24, 36),
    stage_units=(3, 4, 14, 3),
    se_channels=(1, 1, 1, 2),
    n_styles=10,
    w_dim=32,
)


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1))


def assert_close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    error = float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
    assert error < TOLERANCE, f"{what}: max |diff| / max |ref| = {error:.2e}"


def nothing_written(dest: Path) -> bool:
    leftovers = [n for n in os.listdir(dest.parent) if n.startswith(f".{dest.name}.")]
    return not dest.exists() and not leftovers


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{kind: (ConvertedEncoder, LoadedEncoder, reference arrays)} for the two small fixtures."""
    out = {}
    for kind in KINDS:
        dest = tmp_path_factory.mktemp("encoders") / kind
        result = convert_encoder(ENCODER_FIXTURES / f"{kind}_encoder_small.pt", dest)
        out[kind] = (result, load_encoder(dest), dict(np.load(ENCODER_FIXTURES / f"{kind}_encoder_small_io.npz")))
    return out


@pytest.fixture
def small_checkpoint():
    """(kind -> the object the reader returns for the small fixture), fresh per test (mutable)."""
    return {kind: read_checkpoint(ENCODER_FIXTURES / f"{kind}_encoder_small.pt") for kind in KINDS}


# ------------------------------------------------------------------------------------------------
# Agreement with the reference forward
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_conversion_reports_the_architecture(converted, kind):
    result, encoder, _ = converted[kind]
    assert result.format == kind and encoder.kind == kind
    assert result.config == EncoderConfig(kind=kind, **SMALL_CONFIG)
    assert (result.n_styles, result.w_dim, result.input_size) == (10, 32, 64)
    assert (encoder.num_ws, encoder.w_dim, encoder.input_size) == (10, 32, 64)
    # counted from the reference's own description: every encoder tensor except BN running
    # statistics and num_batches_tracked
    assert result.num_parameters == encoder.num_parameters == 559_948
    assert result.decoder_tensors == 89
    assert result.notes == []
    assert f"jaxedit convert stylegan2 {ENCODER_FIXTURES / f'{kind}_encoder_small.pt'}" in result.decoder_note
    manifest = read_manifest(result.path, expected_kind="encoder")
    assert manifest["source"]["format"] == kind and len(manifest["source"]["sha256"]) == 64


@pytest.mark.parametrize("kind", KINDS)
def test_every_tap_codes_and_latents_match_the_reference(converted, kind):
    _, encoder, ref = converted[kind]
    x = nchw_to_nhwc(ref["x"])
    taps = encoder.taps(x)
    for name in ("input_layer_out", "c1", "c2", "c3", "p2", "p1"):
        assert_close(taps[name], nchw_to_nhwc(ref[name]), f"{kind} {name}")
    if "style_outputs" in ref:
        assert_close(taps["style_outputs"], ref["style_outputs"], f"{kind} style_outputs")
    assert_close(encoder.codes(x), ref["codes"], f"{kind} codes")
    # latent_avg rows differ in these fixtures: adding only row 0 would fail here
    np.testing.assert_array_equal(np.asarray(encoder.latent_avg), ref["latent_avg"])
    assert_close(encoder.encode(x), ref["latents"], f"{kind} latents")


@pytest.mark.parametrize("kind", KINDS)
def test_input_transform_matches_the_reference(converted, kind):
    _, encoder, ref = converted[kind]
    x = preprocess(ref["image_uint8"], 64)
    assert x.dtype == np.float32 and x.shape == (2, 64, 64, 3)
    difference = np.abs(x - nchw_to_nhwc(ref["x"]))
    assert difference.max() <= 1 / 127.5 + 1e-6  # at most one grey level
    assert difference.mean() < 1e-3
    assert_close(encoder.encode_uint8(ref["image_uint8"]), ref["latents"], f"{kind} latents from uint8")


@pytest.mark.parametrize("kind", KINDS)
def test_decoded_latents_match_the_reference_images(converted, tmp_path, kind):
    _, encoder, ref = converted[kind]
    convert_stylegan2(ENCODER_FIXTURES / f"{kind}_encoder_small.pt", tmp_path / "decoder")
    generator = load_generator(tmp_path / "decoder")
    images = generator.synthesis(encoder.encode(nchw_to_nhwc(ref["x"])), noise_mode="const")
    assert_close(images, nchw_to_nhwc(ref["images"]), f"{kind} images")


# ------------------------------------------------------------------------------------------------
# What the converter accepts and refuses
# ------------------------------------------------------------------------------------------------


def _one_line(error: Exception) -> str:
    message = str(error)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name", ["malicious.pkl", "malicious.pt", "malicious_nested.pkl", "malicious_storage.pkl"])
def test_malicious_files_are_refused_without_running_code(tmp_path, name):
    marker = Path("/tmp/jaxedit_pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError) as caught:
        convert_encoder(STYLEGAN2_FIXTURES / name, tmp_path / "out")
    assert name in _one_line(caught.value)
    assert not marker.exists()
    assert nothing_written(tmp_path / "out")


def test_a_malicious_pickle_is_an_unsafe_checkpoint_error(tmp_path):
    with pytest.raises(UnsafeCheckpointError):
        convert_encoder(STYLEGAN2_FIXTURES / "malicious.pkl", tmp_path / "out")


@pytest.mark.parametrize(
    "path",
    [
        STYLEGAN2_FIXTURES / "rosinality_small.pt",
        STYLEGAN2_FIXTURES / "nvlabs_small.pkl",
        STYLEGAN2_FIXTURES / "psp_small.pt",  # a pSp file whose encoder is a stub
        LATENT_FIXTURES / "tnet_small.pth.tar",
        LATENT_FIXTURES / "latent_classifier_small.pth",
    ],
    ids=lambda p: p.name,
)
def test_other_checkpoints_are_not_encoders(tmp_path, path):
    with pytest.raises(CheckpointError) as caught:
        convert_encoder(path, tmp_path / "out")
    message = _one_line(caught.value)
    assert message.startswith(path.name) and "not a pSp/e4e encoder" in message
    assert nothing_written(tmp_path / "out")


def _without(obj, key):
    del obj["state_dict"][key]


def _reshape(obj, key, shape):
    obj["state_dict"][key] = np.zeros(shape, np.float32)


def _poison(obj, key):
    obj["state_dict"][key] = obj["state_dict"][key].copy()
    obj["state_dict"][key].flat[3] = np.nan


BAD_FILES = {
    "missing key": (
        lambda o: _without(o, "encoder.body.5.res_layer.5.fc2.weight"),
        ["missing key encoder.body.5.res_layer.5.fc2.weight"],
    ),
    "missing shortcut": (
        lambda o: _without(o, "encoder.body.7.shortcut_layer.0.weight"),
        ["missing key encoder.body.7.shortcut_layer.0.weight"],
    ),
    "style head shape": (
        lambda o: _reshape(o, "encoder.styles.4.linear.weight", (32, 31)),
        ["encoder.styles.4.linear.weight: expected shape [32, 32], got [32, 31]"],
    ),
    "lateral shape": (
        lambda o: _reshape(o, "encoder.latlayer2.weight", (36, 24, 1, 1)),
        ["encoder.latlayer2.weight: expected shape [36, 20, 1, 1], got [36, 24, 1, 1]"],
    ),
    "SE shape": (
        lambda o: _reshape(o, "encoder.body.22.res_layer.5.fc1.weight", (36, 2, 1, 1)),
        ["encoder.body.22.res_layer.5.fc1.weight: expected shape [2, 36, 1, 1]"],
    ),
    "extra key": (
        lambda o: o["state_dict"].__setitem__("encoder.styles.3.extra", np.zeros(3, np.float32)),
        ["unexpected key encoder.styles.3.extra"],
    ),
    "non-finite": (
        lambda o: _poison(o, "encoder.body.10.res_layer.3.weight"),
        ["encoder.body.10.res_layer.3.weight: contains non-finite values"],
    ),
    "non-finite latent_avg": (
        lambda o: o.__setitem__("latent_avg", np.full((10, 32), np.inf, np.float32)),
        ["latent_avg: contains non-finite values"],
    ),
    "latent_avg shape": (
        lambda o: o.__setitem__("latent_avg", np.zeros((9, 32), np.float32)),
        ["latent_avg: expected shape [10, 32], got [9, 32]"],
    ),
    "no latent_avg": (lambda o: o.pop("latent_avg"), ["latent_avg is missing"]),
    "unknown encoder": (
        lambda o: o["opts"].__setitem__("encoder_type", "BackboneEncoderUsingLastLayerIntoW"),
        ["'BackboneEncoderUsingLastLayerIntoW' is not supported", "GradualStyleEncoder", "Encoder4Editing"],
    ),
    "no encoder_type": (lambda o: o["opts"].pop("encoder_type"), ["not a pSp/e4e encoder", "encoder_type"]),
    "style count": (
        lambda o: o["opts"].__setitem__("n_styles", 18),
        ["opts n_styles = 18, but the state dict has 10 style heads"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_layouts_are_refused_in_one_line(small_checkpoint, case):
    mutate, needles = BAD_FILES[case]
    obj = small_checkpoint["psp"]
    mutate(obj)
    with pytest.raises(CheckpointError) as caught:
        params_from_checkpoint(obj, "bad.pt")
    message = _one_line(caught.value)
    assert message.startswith("bad.pt: ")
    for needle in needles:
        assert needle in message, message


def test_e4e_style_count_is_checked_against_stylegan_size(small_checkpoint):
    obj = small_checkpoint["e4e"]
    obj["opts"]["stylegan_size"] = 1024
    with pytest.raises(CheckpointError, match=r"stylegan_size = 1024, i\.e\. 18 styles, but the state dict has 10"):
        params_from_checkpoint(obj, "e4e.pt")


def _as_torch_tree(obj):
    if isinstance(obj, np.ndarray):
        return Tensor(obj)
    if isinstance(obj, dict):
        return OrderedDict((k, _as_torch_tree(v)) for k, v in obj.items())
    return obj


def test_a_refused_file_leaves_nothing_behind(small_checkpoint, tmp_path):
    obj = small_checkpoint["psp"]
    _without(obj, "encoder.styles.9.convs.6.bias")
    write_torch_zip(tmp_path / "broken.pt", _as_torch_tree(obj))
    with pytest.raises(CheckpointError, match="missing key encoder.styles.9.convs.6.bias"):
        convert_encoder(tmp_path / "broken.pt", tmp_path / "out")
    assert nothing_written(tmp_path / "out")


def test_older_option_sets_and_a_single_average_latent(small_checkpoint):
    """Files from before `n_styles` was saved (pSp: only output_size; or no size at all), and a
    [w_dim] latent_avg (broadcast to every W+ layer, as the reference's repeat does)."""
    obj = small_checkpoint["psp"]
    del obj["opts"]["n_styles"]
    result = params_from_checkpoint(copy.deepcopy(obj), "old.pt")
    assert result.n_styles == 10
    del obj["opts"]["output_size"]
    obj["latent_avg"] = obj["latent_avg"][3].copy()
    result = params_from_checkpoint(obj, "old.pt")
    assert result.n_styles == 10
    np.testing.assert_array_equal(result.params["latent_avg"], np.broadcast_to(obj["latent_avg"], (10, 32)))


def test_existing_destination_needs_overwrite(converted):
    result, _, _ = converted["psp"]
    with pytest.raises(ConfigError, match="already exists"):
        convert_encoder(ENCODER_FIXTURES / "psp_encoder_small.pt", result.path)
    convert_encoder(ENCODER_FIXTURES / "psp_encoder_small.pt", result.path, overwrite=True)
    assert load_encoder(result.path).kind == "psp"


def test_encode_checks_its_input(converted):
    _, encoder, ref = converted["psp"]
    with pytest.raises(InputError, match=r"expected \[B, 64, 64, 3\]"):
        encoder.encode(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match="encode_uint8"):
        encoder.encode(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        encoder.encode_uint8(nchw_to_nhwc(ref["x"]))
    with pytest.raises(InputError, match=r"\[B, H, W, 3\]"):
        encoder.encode_uint8(ref["image_uint8"][0])


# ------------------------------------------------------------------------------------------------
# The released layouts at full size
# ------------------------------------------------------------------------------------------------


def test_released_layouts_match_the_manifests():
    """The layout our converter expects for the default config is exactly the released files'
    `encoder.*` keys and shapes, in order (pSp and e4e share it), with the same parameter count."""
    from jaxedit.convert.encoder import batch_norms, encoder_layout
    from jaxedit.encoders.loading import param_shapes

    for kind in KINDS:
        manifest = json.loads((ENCODER_FIXTURES / f"{kind}_encoder_ffhq_manifest.json").read_text())
        released = {k: tuple(v) for k, v in manifest["state_dict"].items() if k.startswith("encoder.")}
        counters = {k for k in released if k.endswith(".num_batches_tracked")}
        config = EncoderConfig(kind=kind)
        floats = [(k, v) for k, v in released.items() if k not in counters]
        assert list(encoder_layout(config).items()) == floats
        assert {f"{n}.num_batches_tracked" for n in batch_norms(config)} == counters
        assert counters == set(manifest["non_float32"])
        assert manifest["counts"]["encoder_parameters"] == 267_136_704
        assert tuple(manifest["latent_avg"]) == (config.n_styles, config.w_dim)
    # the two encoders hold the same parameters; trace the module once
    assert count_parameters(param_shapes(EncoderConfig())) == 267_136_704


def full_size_checkpoint(manifest: dict, kind: str, rng: np.random.Generator) -> dict:
    """The released file's structure with random values that keep the forward finite: conv
    weights N(0, 1/fan_in), BatchNorm near identity, PReLU near 0.25, decoder values from a shared pool."""
    pool = rng.standard_normal(1 << 23, np.float32)
    state = OrderedDict()
    for key, shape in manifest["state_dict"].items():
        size = int(np.prod(shape))
        if key.endswith("num_batches_tracked"):
            state[key] = Tensor(np.array(100_000, np.int64))
            continue
        start = int(rng.integers(0, pool.size - size + 1))
        values = pool[start : start + size].reshape(shape)
        if key.endswith("running_var"):
            values = 1.0 + 0.1 * np.abs(values)
        elif key.endswith(("running_mean", ".bias")):
            values = 0.1 * values
        elif key.startswith("encoder.") and len(shape) == 4:
            values = values / np.sqrt(np.prod(shape[1:]))
        elif key.startswith("encoder.") and len(shape) == 1:  # PReLU slopes (*.2.weight) or BN scales
            values = 0.25 + 0.05 * values if key.endswith("2.weight") else 1.0 + 0.1 * values
        state[key] = Tensor(np.asarray(values, np.float32))
    opts = dict(manifest["opts"])
    if kind == "psp":  # the released file predates these options (see the manifest's opts_note)
        opts.pop("learn_in_w", None)
        opts.pop("output_size", None)
    latent_avg = np.broadcast_to(rng.standard_normal(512, np.float32), manifest["latent_avg"]).copy()
    return {"state_dict": state, "opts": opts, "latent_avg": Tensor(latent_avg)}


@pytest.mark.slow
def test_released_files_convert_and_encode_a_256_image(tmp_path):
    """A file with every key and shape of psp_ffhq_encode.pt (1.2 GB of float32, decoder included)
    goes through the reader, the converter, the directory and one 256x256 encode on the CPU; the
    e4e layout (zeros) goes through the converter in memory (its forward is checked on the small fixture)."""
    manifest = json.loads((ENCODER_FIXTURES / "psp_encoder_ffhq_manifest.json").read_text())
    src = tmp_path / "psp_ffhq_encode.pt"
    write_torch_zip(src, full_size_checkpoint(manifest, "psp", np.random.default_rng(7)), folder=src.stem)
    start = time.perf_counter()
    result = convert_encoder(src, tmp_path / "encoder")
    convert_seconds = time.perf_counter() - start
    src.unlink()
    assert result.format == "psp"
    assert result.config == EncoderConfig(kind="psp")  # IR-SE-50, 256x256, 18 x 512
    assert result.num_parameters == manifest["counts"]["encoder_parameters"] == 267_136_704
    assert result.decoder_tensors == manifest["counts"]["decoder_tensors"] == 171
    del result

    encoder = load_encoder(tmp_path / "encoder")
    image = np.random.default_rng(1).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    start = time.perf_counter()
    ws = np.asarray(encoder.encode_uint8(image))
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ws_again = np.asarray(encoder.encode_uint8(image))
    encode_seconds = time.perf_counter() - start
    assert ws.shape == (1, 18, 512) and np.all(np.isfinite(ws))
    np.testing.assert_array_equal(ws, ws_again)
    del encoder

    e4e = json.loads((ENCODER_FIXTURES / "e4e_encoder_ffhq_manifest.json").read_text())
    zeros = {
        k: np.broadcast_to(np.zeros((), np.int64 if k in e4e["non_float32"] else np.float32), v)
        for k, v in e4e["state_dict"].items()
    }
    e4e_obj = {"state_dict": zeros, "opts": e4e["opts"], "latent_avg": np.zeros(e4e["latent_avg"], np.float32)}
    e4e_result = params_from_checkpoint(e4e_obj, "e4e_ffhq_encode.pt")
    assert e4e_result.format == "e4e" and e4e_result.config == EncoderConfig(kind="e4e")  # 18 from stylegan_size
    assert e4e_result.num_parameters == 267_136_704
    print(
        f"\npsp full size: convert {convert_seconds:.1f} s, first encode (compile) {first_seconds:.1f} s, "
        f"encode 1x256x256 {encode_seconds:.2f} s"
    )
