"""`jaxedit convert stylegan2` and `jaxedit generate`: full config-f layouts, and one-line errors.

Checkpoint files are written here without torch (`tests/helpers/torch_writers.py`): the full
1024 layouts from `*_ffhq1024_manifest.json` with random values, and the small fixtures with one
key removed, added or reshaped. Every refusal must come out of the CLI as exit code 2 with one
line on stderr, no traceback, and nothing left at OUT.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest

from jaxedit.cli.main import main
from jaxedit.convert.torch_reader import init_kwargs, module_state_dict, read_checkpoint
from jaxedit.stylegan2 import GeneratorConfig, load_generator, nvlabs_channels
from tests.helpers.paths import LATENT_FIXTURES, STYLEGAN2_FIXTURES
from tests.helpers.torch_writers import Tensor, nvlabs_module_tree, write_nvlabs_pickle, write_torch_zip

FIR_1D = np.array([1.0, 3.0, 3.0, 1.0], np.float32)
FIR_2D = np.outer(FIR_1D, FIR_1D) / 64.0


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("jaxedit: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def nothing_written(out_dir) -> bool:
    parent = os.path.dirname(os.path.abspath(out_dir))
    leftovers = (
        [n for n in os.listdir(parent) if n.startswith(f".{os.path.basename(out_dir)}.")]
        if os.path.isdir(parent)
        else []
    )
    return not os.path.exists(out_dir) and not leftovers


# ------------------------------------------------------------------------------------------------
# Full config-f layouts (random values), converted; one 1024x1024 render on the CPU
# ------------------------------------------------------------------------------------------------


def random_tensors_for(manifest: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors = {}
    for key, shape in manifest.items():
        if key.endswith(("blur.kernel", "upsample.kernel")):
            value = FIR_2D * 4  # rosinality stores the FIR with its gain of 4
        elif key.endswith("resample_filter"):
            value = FIR_2D  # NVlabs: sum 1
        elif key.endswith(("noise.weight", "noise_strength")):
            value = rng.uniform(0.1, 0.3, size=shape)
        elif key.endswith(("modulation.bias", "affine.bias")):
            value = 1.0 + 0.1 * rng.standard_normal(shape, np.float32)
        else:
            value = rng.standard_normal(shape, np.float32)
        tensors[key] = np.asarray(value, np.float32).reshape(shape)
    return tensors


@pytest.mark.slow
def test_full_config_f_layouts_convert_and_render_1024(tmp_path, capsys):
    rng = np.random.default_rng(0)
    manifests = {
        name: json.loads((STYLEGAN2_FIXTURES / f"{name}_ffhq1024_manifest.json").read_text())
        for name in ("rosinality", "nvlabs")
    }

    ros = manifests["rosinality"]
    ros_tensors = random_tensors_for(ros["g_ema"], rng)
    latent_avg = rng.standard_normal(ros["latent_avg"], np.float32)
    write_torch_zip(
        tmp_path / "stylegan2-ffhq-config-f.pt",
        {"g_ema": OrderedDict((k, Tensor(v)) for k, v in ros_tensors.items()), "latent_avg": Tensor(latent_avg)},
    )
    del ros_tensors
    code, out, err = run_cli(capsys, "convert", "stylegan2", tmp_path / "stylegan2-ffhq-config-f.pt", tmp_path / "ros")
    assert code == 0, err
    assert "detected format: rosinality" in out and "resolution: 1024x1024" in out
    assert "W+ layers (num_ws): 18" in out and "parameters: 30,370,060" in out

    nv_tensors = random_tensors_for(manifests["nvlabs"], rng)
    kwargs = {
        "z_dim": 512,
        "c_dim": 0,
        "w_dim": 512,
        "img_resolution": 1024,
        "img_channels": 3,
        "mapping_kwargs": {"num_layers": 8},
        "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
    }
    write_nvlabs_pickle(
        tmp_path / "stylegan2-ffhq-1024x1024.pkl",
        {"G": None, "D": None, "G_ema": nvlabs_module_tree(nv_tensors, kwargs), "augment_pipe": None},
    )
    code, out, err = run_cli(capsys, "convert", "stylegan2", tmp_path / "stylegan2-ffhq-1024x1024.pkl", tmp_path / "nv")
    assert code == 0, err
    assert "detected format: nvlabs" in out and "W+ layers (num_ws): 18" in out and "parameters: 30,370,060" in out

    g_nv = load_generator(tmp_path / "nv")
    assert g_nv.config == GeneratorConfig(resolution=1024, channels=nvlabs_channels(1024), conv_clamp=256)
    # spot-check the tensor mapping of the largest block and the stored noise / average latent
    np.testing.assert_array_equal(
        np.asarray(g_nv.params["synthesis"]["b1024"]["conv1"]["kernel"]),
        nv_tensors["synthesis.b1024.conv1.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(np.asarray(g_nv.noise_const[-1]), nv_tensors["synthesis.b1024.conv1.noise_const"])
    np.testing.assert_array_equal(np.asarray(g_nv.w_avg), nv_tensors["mapping.w_avg"])
    del g_nv, nv_tensors

    g = load_generator(tmp_path / "ros")
    assert g.config.channels == GeneratorConfig().channels and g.num_ws == 18
    np.testing.assert_array_equal(np.asarray(g.w_avg), latent_avg)  # rosinality's latent_avg kept
    ws = g.mapping(rng.standard_normal((1, 512)).astype(np.float32), truncation_psi=0.7)
    image = np.asarray(g.synthesis(ws))
    assert image.shape == (1, 1024, 1024, 3) and image.dtype == np.float32
    assert np.all(np.isfinite(image)) and image.std() > 0


# ------------------------------------------------------------------------------------------------
# Broken files: one line, which key, which shape
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rosinality_state():
    checkpoint = read_checkpoint(STYLEGAN2_FIXTURES / "rosinality_small.pt")
    return dict(checkpoint["g_ema"]), checkpoint["latent_avg"]


@pytest.fixture(scope="module")
def nvlabs_state():
    g_ema = read_checkpoint(STYLEGAN2_FIXTURES / "nvlabs_small.pkl")["G_ema"]
    return module_state_dict(g_ema), init_kwargs(g_ema)


def write_rosinality(path, state, latent_avg):
    write_torch_zip(
        path, {"g_ema": OrderedDict((k, Tensor(v)) for k, v in state.items()), "latent_avg": Tensor(latent_avg)}
    )
    return path


@pytest.mark.parametrize(
    "edit, needles",
    [
        ("reshape", ["convs.2.conv.weight: expected shape [1, 24, 32, 3, 3], got [1, 16, 32, 3, 3]"]),
        ("drop", ["missing key to_rgbs.1.conv.weight"]),
        ("extra", ["unexpected key convs.0.conv.extra"]),
        ("nan", ["style.2.weight: contains non-finite values"]),
        ("fir", ["convs.0.conv.blur.kernel", "standard FIR"]),
        ("latent_avg", ["latent_avg: expected shape [32]"]),
    ],
)
def test_broken_rosinality_files_name_the_key(tmp_path, capsys, rosinality_state, edit, needles):
    state, latent_avg = dict(rosinality_state[0]), rosinality_state[1]
    if edit == "reshape":
        state["convs.2.conv.weight"] = state["convs.2.conv.weight"][:, :16]
    elif edit == "drop":
        del state["to_rgbs.1.conv.weight"]
    elif edit == "extra":
        state["convs.0.conv.extra"] = np.zeros(3, np.float32)
    elif edit == "nan":
        state["style.2.weight"] = state["style.2.weight"].copy()
        state["style.2.weight"][0, 0] = np.nan
    elif edit == "fir":
        state["convs.0.conv.blur.kernel"] = np.ones((4, 4), np.float32) / 4
    elif edit == "latent_avg":
        latent_avg = np.zeros(31, np.float32)
    src = write_rosinality(tmp_path / "broken.pt", state, latent_avg)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "convert", "stylegan2", src, out)
    assert_one_line_error(code, err, "broken.pt", *needles)
    assert nothing_written(out)


@pytest.mark.parametrize(
    "edit, needles",
    [
        ("reshape", ["synthesis.b8.conv0.weight: expected shape [32, 32, 3, 3], got [16, 32, 3, 3]"]),
        ("drop", ["missing key mapping.w_avg"]),
        ("resnet", ["architecture 'resnet' is not supported"]),
        ("conditional", ["c_dim=10", "not supported"]),
        ("stylegan3", ["StyleGAN3"]),
        ("clamp_nan", ["conv_clamp nan", "positive number"]),
        ("clamp_negative", ["conv_clamp -256", "positive number"]),
    ],
)
def test_broken_nvlabs_files_name_the_problem(tmp_path, capsys, nvlabs_state, edit, needles):
    state, kwargs = dict(nvlabs_state[0]), json.loads(json.dumps(nvlabs_state[1]))
    if edit == "reshape":
        state["synthesis.b8.conv0.weight"] = state["synthesis.b8.conv0.weight"][:16]
    elif edit == "drop":
        del state["mapping.w_avg"]
    elif edit == "resnet":
        kwargs["synthesis_kwargs"]["architecture"] = "resnet"
    elif edit == "conditional":
        kwargs["c_dim"] = 10
    elif edit == "stylegan3":
        state["synthesis.input.affine.weight"] = np.zeros((4, 32), np.float32)
    elif edit == "clamp_nan":
        kwargs["synthesis_kwargs"]["conv_clamp"] = float("nan")
    elif edit == "clamp_negative":
        kwargs["synthesis_kwargs"]["conv_clamp"] = -256
    src = tmp_path / "broken.pkl"
    write_nvlabs_pickle(src, {"G_ema": nvlabs_module_tree(state, kwargs)})
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "convert", "stylegan2", src, out)
    assert_one_line_error(code, err, *needles)
    assert nothing_written(out)


def test_wrong_architecture_and_non_checkpoint_files(tmp_path, capsys):
    half = (STYLEGAN2_FIXTURES / "rosinality_small.pt").read_bytes()
    cases = {
        "latent transformer state dict": (LATENT_FIXTURES / "tnet_small.pth.tar", "not a StyleGAN2 checkpoint"),
        "empty": (tmp_path / "empty.pt", "empty.pt"),
        "random": (tmp_path / "random.pkl", "random.pkl"),
        "text": (tmp_path / "notes.pt", "notes.pt"),
        "truncated": (tmp_path / "truncated.pt", "truncated.pt"),
        "missing": (tmp_path / "nope.pt", "nope.pt"),
    }
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "random.pkl").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "notes.pt").write_text("just some text\n" * 20)
    (tmp_path / "truncated.pt").write_bytes(half[: len(half) // 2])
    for what, (src, needle) in cases.items():
        out = tmp_path / f"out_{what.replace(' ', '_')}"
        code, _, err = run_cli(capsys, "convert", "stylegan2", src, out)
        assert_one_line_error(code, err, needle)
        assert nothing_written(out), what


@pytest.mark.parametrize("name", ["malicious.pkl", "malicious.pt", "malicious_nested.pkl", "malicious_storage.pkl"])
def test_malicious_files_are_refused(tmp_path, capsys, name):
    marker = "/tmp/jaxedit_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    code, _, err = run_cli(capsys, "convert", "stylegan2", STYLEGAN2_FIXTURES / name, tmp_path / "out")
    assert_one_line_error(code, err, name)
    assert not os.path.exists(marker)
    assert nothing_written(tmp_path / "out")


def test_missing_average_latent_is_estimated_and_said(tmp_path, capsys, rosinality_state):
    state = rosinality_state[0]
    src = tmp_path / "g_ema_only.pt"
    write_torch_zip(src, {"g_ema": OrderedDict((k, Tensor(v)) for k, v in state.items())})
    code, out, err = run_cli(capsys, "convert", "stylegan2", src, tmp_path / "out")
    assert code == 0, err
    assert "note: no average latent stored; estimated as the mean of mapping(z) over 10000 z" in out
    g = load_generator(tmp_path / "out")
    z = np.random.default_rng(1).standard_normal((4000, 32)).astype(np.float32)
    independent = np.asarray(g.mapping(z))[:, 0].mean(axis=0)
    # two sample means of the same distribution: close relative to the spread of w
    spread = float(np.asarray(g.mapping(z))[:, 0].std())
    assert np.max(np.abs(np.asarray(g.w_avg) - independent)) < 0.1 * spread


def test_existing_output_needs_overwrite(tmp_path, capsys):
    src = STYLEGAN2_FIXTURES / "rosinality_small.pt"
    out = tmp_path / "gen"
    assert run_cli(capsys, "convert", "stylegan2", src, out)[0] == 0
    code, _, err = run_cli(capsys, "convert", "stylegan2", src, out)
    assert_one_line_error(code, err, "already exists", "--overwrite")
    code, _, err = run_cli(capsys, "convert", "stylegan2", src, out, "--overwrite")
    assert code == 0, err


def test_default_output_is_ported_weights_stem(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "convert", "stylegan2", STYLEGAN2_FIXTURES / "psp_small.pt")
    assert code == 0, err
    assert (tmp_path / "ported_weights" / "psp_small" / "jaxedit.json").is_file()
    assert "detected format: psp" in out


# ------------------------------------------------------------------------------------------------
# jaxedit generate: outputs and input validation
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "rosinality_small"
    assert main(["convert", "stylegan2", str(STYLEGAN2_FIXTURES / "rosinality_small.pt"), str(out)]) == 0
    return out


def test_seeds_use_numpy_randomstate_and_png_grid_matches_npy(gen_dir, tmp_path, capsys):
    from PIL import Image

    from jaxedit.viz.grid import gutter_width, to_uint8

    code, out, err = run_cli(capsys, "generate", gen_dir, "--seeds", "0-2,7", "--out", tmp_path / "g.npy")
    assert code == 0, err and "wrote 4 images" in out
    images = np.load(tmp_path / "g.npy")
    z = np.stack([np.random.RandomState(s).randn(32) for s in (0, 1, 2, 7)]).astype(np.float32)
    g = load_generator(gen_dir)
    np.testing.assert_allclose(images, np.asarray(g.synthesis(g.mapping(z))), atol=1e-5)

    code, _, err = run_cli(capsys, "generate", gen_dir, "--seeds", "0-2,7", "--out", tmp_path / "g.png")
    assert code == 0, err
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    gutter = gutter_width(64)
    assert grid.shape == (64, 4 * 64 + 3 * gutter, 3)  # 4 tiles in a row, thin white gutters between
    expected = to_uint8(images)
    for index in range(4):
        x = index * (64 + gutter)
        np.testing.assert_array_equal(grid[:, x : x + 64], expected[index])
        assert index == 0 or (grid[:, x - gutter : x] == 255).all()


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["--ws", "{w4x32}"],
            ["--ws", "expected W+ [10, 32] / [B, 10, 32] / [P, B, 10, 32]", "got [4, 32] (these are W latents)"],
        ),
        (["--z", "{ws}"], ["--z", "expected z [B, 32] or [32], got [4, 10, 32]"]),
        (["--w", "{missing}"], ["--w", "no such file"]),
        (["--seeds", "7-3"], ["--seeds", "backwards"]),
        (["--seeds", "a,b"], ["--seeds"]),
        (["--seeds", "0", "--truncation-cutoff", "11"], ["truncation cutoff 11", "0..10"]),
        (["--seeds", "0", "--batch-size", "0"], ["--batch-size"]),
        (["--seeds", "0", "--truncation", "nan"], ["--truncation", "finite"]),
        (["--seeds", "0", "--truncation", "inf"], ["--truncation", "finite"]),
        (["--seeds", "0", "--noise-maps", "{w4x32}"], ["--noise-maps"]),
    ],
)
def test_generate_input_errors_are_one_line(gen_dir, tmp_path, capsys, args, needles):
    files = {"w4x32": tmp_path / "w.npy", "ws": tmp_path / "ws.npy", "missing": tmp_path / "missing.npy"}
    np.save(files["w4x32"], np.zeros((4, 32), np.float32))
    np.save(files["ws"], np.zeros((4, 10, 32), np.float32))
    argv = [a.format(**files) for a in args]
    code, _, err = run_cli(capsys, "generate", gen_dir, *argv, "--out", tmp_path / "o.npy")
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "o.npy").exists()


def test_generate_refuses_bad_output_and_bad_directory(gen_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "generate", gen_dir, "--seeds", "0", "--out", tmp_path / "o.jpg")
    assert_one_line_error(code, err, ".png", ".npy")
    code, _, err = run_cli(capsys, "generate", tmp_path, "--seeds", "0", "--out", tmp_path / "o.npy")
    assert_one_line_error(code, err, "not a jaxedit model directory")
