"""Every golden StyleGAN2 image reproduced from the CONVERTED directories, via the API and the CLI.

The fixtures (rosinality, pSp and NVlabs reference outputs, NCHW) were made by the PyTorch codes;
we convert the checkpoint files with `jaxedit convert stylegan2`, then render through
`load_generator` and through `jaxedit generate ... --out F.npy`. Tolerance: max |diff| <= 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxedit.cli.main import main
from jaxedit.stylegan2 import load_generator
from tests.helpers.paths import STYLEGAN2_FIXTURES

TOLERANCE = 1e-4
ROSINALITY_LIKE = ["rosinality_small", "psp_small"]
NVLABS_LIKE = ["nvlabs_small", "nvlabs_small_clamp"]
SOURCES = {
    "rosinality_small": "rosinality_small.pt",
    "psp_small": "psp_small.pt",
    "nvlabs_small": "nvlabs_small.pkl",
    "nvlabs_small_clamp": "nvlabs_small_clamp.pkl",
}
EXPECTED_FORMAT = {
    "rosinality_small": "rosinality",
    "psp_small": "psp",
    "nvlabs_small": "nvlabs",
    "nvlabs_small_clamp": "nvlabs",
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    dirs = {}
    for name, filename in SOURCES.items():
        out = root / name
        assert main(["convert", "stylegan2", str(STYLEGAN2_FIXTURES / filename), str(out)]) == 0
        dirs[name] = out
    return dirs


@pytest.fixture(scope="module")
def generators(converted):
    return {name: load_generator(path) for name, path in converted.items()}


def io_of(name: str):
    base = "rosinality_small" if name == "psp_small" else name
    return np.load(STYLEGAN2_FIXTURES / f"{base}_io.npz")


def nchw(images) -> np.ndarray:
    return np.transpose(np.asarray(images), (0, 3, 1, 2))


def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = float(np.max(np.abs(actual - expected)))
    assert diff <= TOLERANCE, f"{what}: max |diff| {diff:.3g} > {TOLERANCE}"


def cli_images(tmp_path, gen_dir, *args, batch_size=4) -> np.ndarray:
    """Run `jaxedit generate GEN_DIR *args --out F.npy` and return the images as NCHW."""
    out = tmp_path / f"out_{len(list(tmp_path.iterdir()))}.npy"
    assert main(["generate", str(gen_dir), *args, "--batch-size", str(batch_size), "--out", str(out)]) == 0
    images = np.load(out)
    assert images.dtype == np.float32 and images.ndim == 4 and images.shape[-1] == 3
    return nchw(images)


def save(tmp_path, name, array) -> str:
    path = tmp_path / f"{name}.npy"
    np.save(path, np.asarray(array, np.float32))
    return str(path)


def test_convert_prints_format_resolution_layers_and_parameter_count(tmp_path, capsys):
    assert main(["convert", "stylegan2", str(STYLEGAN2_FIXTURES / "nvlabs_small.pkl"), str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "detected format: nvlabs" in out
    assert "resolution: 64x64" in out
    assert "W+ layers (num_ws): 10" in out
    # 3 mapping layers of 32x32 + biases; synthesis with channel_max 32 (64x64: 16 channels).
    assert "parameters: 89,544" in out


@pytest.mark.parametrize("name", list(SOURCES))
def test_converted_directory_records_format_and_config(generators, name):
    g = generators[name]
    assert g.manifest["source"]["format"] == EXPECTED_FORMAT[name]
    assert len(g.manifest["source"]["sha256"]) == 64
    assert (g.resolution, g.num_ws, g.w_dim, g.z_dim) == (64, 10, 32, 32)
    assert len(g.noise_const) == 9 and g.noise_const[-1].shape == (64, 64)


@pytest.mark.parametrize("name", ROSINALITY_LIKE)
def test_rosinality_images_through_the_api(generators, name):
    g, io = generators[name], io_of(name)
    np.testing.assert_allclose(np.asarray(g.w_avg), io["latent_avg"], atol=1e-6)
    ws = g.mapping(io["z"])
    assert_close(ws[:, 0], io["w"], "w = mapping(z)")
    assert_close(nchw(g.synthesis(ws)), io["img_z"], "img_z")
    assert_close(nchw(g.synthesis(io["w"])), io["img_w"], "img_w")
    assert_close(nchw(g.synthesis(io["wplus"])), io["img_wplus"], "img_wplus")
    assert_close(nchw(g.synthesis(g.mapping(io["z"], truncation_psi=0.7))), io["img_trunc07"], "img_trunc07")
    mixed = g.mix(g.mapping(io["z"]), g.mapping(io["z2"]), 3)
    assert_close(nchw(g.synthesis(mixed)), io["img_mix3"], "img_mix3")
    noise = [io[f"noise_{j}"][0, 0] for j in range(9)]
    assert_close(nchw(g.synthesis(io["wplus"], noise=noise)), io["img_noise"], "img_noise")


@pytest.mark.parametrize("name", ROSINALITY_LIKE)
def test_rosinality_images_through_the_cli(generators, converted, tmp_path, name):
    g, io, gen_dir = generators[name], io_of(name), converted[name]
    z, w, wplus = save(tmp_path, "z", io["z"]), save(tmp_path, "w", io["w"]), save(tmp_path, "wplus", io["wplus"])
    # batch size 3: two chunks (3 + 1 padded to 3), stitched back in order
    assert_close(cli_images(tmp_path, gen_dir, "--z", z, batch_size=3), io["img_z"], "CLI img_z")
    assert_close(cli_images(tmp_path, gen_dir, "--w", w), io["img_w"], "CLI img_w")
    assert_close(cli_images(tmp_path, gen_dir, "--ws", wplus), io["img_wplus"], "CLI img_wplus")
    assert_close(cli_images(tmp_path, gen_dir, "--z", z, "--truncation", "0.7"), io["img_trunc07"], "CLI img_trunc07")
    mixed = save(tmp_path, "mixed", g.mix(g.mapping(io["z"]), g.mapping(io["z2"]), 3))
    assert_close(cli_images(tmp_path, gen_dir, "--ws", mixed), io["img_mix3"], "CLI img_mix3")
    noise_file = STYLEGAN2_FIXTURES / "rosinality_small_io.npz"  # holds noise_0 .. noise_8 as [1, 1, R, R]
    assert_close(
        cli_images(tmp_path, gen_dir, "--ws", wplus, "--noise-maps", str(noise_file)), io["img_noise"], "CLI img_noise"
    )


@pytest.mark.parametrize("name", NVLABS_LIKE)
def test_nvlabs_latents_and_images_through_the_api(generators, name):
    g, io = generators[name], io_of(name)
    np.testing.assert_allclose(np.asarray(g.w_avg), io["w_avg"], atol=1e-6)
    assert_close(g.mapping(io["z"]), io["ws"], "ws")
    assert_close(g.mapping(io["z"], 0.7), io["ws_trunc07"], "ws_trunc07")
    assert_close(g.mapping(io["z"], 0.7, 4), io["ws_trunc07_cut4"], "ws_trunc07_cut4")
    assert_close(nchw(g.synthesis(io["ws"], noise_mode="const")), io["img_const"], "img_const")
    assert_close(nchw(g.synthesis(io["ws"], noise_mode="none")), io["img_none"], "img_none")
    assert_close(nchw(g.synthesis(io["ws_random"])), io["img_random_ws"], "img_random_ws")
    assert_close(nchw(g(io["z"], truncation_psi=0.7, truncation_cutoff=4)), io["img_trunc07_cut4"], "img_trunc07_cut4")


@pytest.mark.parametrize("name", NVLABS_LIKE)
def test_nvlabs_images_through_the_cli(converted, tmp_path, name):
    io, gen_dir = io_of(name), converted[name]
    ws, ws_random, z = (
        save(tmp_path, "ws", io["ws"]),
        save(tmp_path, "ws_random", io["ws_random"]),
        save(tmp_path, "z", io["z"]),
    )
    assert_close(cli_images(tmp_path, gen_dir, "--ws", ws, "--noise", "const"), io["img_const"], "CLI img_const")
    assert_close(cli_images(tmp_path, gen_dir, "--ws", ws, "--noise", "none"), io["img_none"], "CLI img_none")
    assert_close(cli_images(tmp_path, gen_dir, "--ws", ws_random), io["img_random_ws"], "CLI img_random_ws")
    assert_close(
        cli_images(tmp_path, gen_dir, "--z", z, "--truncation", "0.7", "--truncation-cutoff", "4"),
        io["img_trunc07_cut4"],
        "CLI img_trunc07_cut4",
    )


def test_clamp_changes_the_output(generators):
    """The clamp fixture really exercises conv_clamp: without it the images differ a lot."""
    io = io_of("nvlabs_small_clamp")
    g = generators["nvlabs_small_clamp"]
    assert g.config.conv_clamp == 0.5
    # each of the 5 toRGB outputs is clipped to +-0.5 and the upsampling FIR (taps 1/4, 3/4 per axis)
    # never exceeds its input's max, so the image stays within 5 * 0.5
    assert np.max(np.abs(io["img_const"])) <= 0.5 * 5 + 1e-5
    from dataclasses import replace

    from jaxedit.stylegan2 import LoadedGenerator

    unclamped = LoadedGenerator.from_params(replace(g.config, conv_clamp=None), g.params, g.w_avg)
    diff = np.max(np.abs(nchw(unclamped.synthesis(io["ws"])) - io["img_const"]))
    assert diff > 0.1


def test_random_noise_is_keyed_and_differs_from_const(generators):
    import jax

    g, io = generators["nvlabs_small"], io_of("nvlabs_small")
    a = g.synthesis(io["ws"], "random", rng=jax.random.key(1))
    b = g.synthesis(io["ws"], "random", rng=jax.random.key(1))
    c = g.synthesis(io["ws"], "random", rng=jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.max(np.abs(np.asarray(a) - np.asarray(c))) > 1e-2
    assert np.max(np.abs(nchw(a) - io["img_const"])) > 1e-2


def test_generator_module_renders_the_truncated_fixture(generators):
    """The linen `Generator` (mapping + truncation + synthesis in one apply) on the converted params."""
    import jax

    from jaxedit.stylegan2 import Generator

    g, io = generators["nvlabs_small"], io_of("nvlabs_small")
    module = Generator(g.config)
    images = jax.jit(lambda params, z, w_avg: module.apply({"params": params}, z, w_avg, 0.7, 4))(
        g.params, io["z"], g.w_avg
    )
    assert_close(nchw(images), io["img_trunc07_cut4"], "Generator.apply img_trunc07_cut4")
