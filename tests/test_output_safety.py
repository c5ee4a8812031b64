"""Outputs never lose a user's data: one regression test per class of hazard (issue 11).

- `convert --overwrite` replaces only a jaxedit model directory of the same kind holding nothing
  else; it refuses, before any work and in one line, a folder holding the source checkpoint, the
  --tnets folder, a git checkout, any other directory, another kind, a symbolic link, the working
  directory. Nothing is deleted.
- A directory that appears at OUT while the result is written is never replaced (one line); one
  swapped in under --overwrite is not either; of four concurrent conversions to one OUT exactly one
  wins and the others say so.
- Staging names fit every legal OUT name (255 bytes); new directories respect the umask; staging
  left by a `kill -9` is removed by the next write into the same folder. A full disk while the
  arrays are written is one line naming OUT, and leaves nothing behind.
- `generate` writes its images as they are rendered: peak memory does not grow with the number of
  seeds (.npy, one PNG per image, PNG grid), the outputs equal the images rendered at once, and a
  grid or .npy that cannot be written is refused before any rendering.

Every case is crafted here (tiny generators with random params, copies of the small fixtures).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxedit.atomic import STAGING_PREFIX, atomic_directory, atomic_file, staging_name
from jaxedit.cli.main import main
from jaxedit.errors import ConfigError
from jaxedit.modeldir import MANIFEST_FILE, PARAMS_DIR, read_manifest, write_model_dir
from tests.helpers.paths import LATENT_FIXTURES, STYLEGAN2_FIXTURES

ROSINALITY = STYLEGAN2_FIXTURES / "rosinality_small.pt"
WORKER = Path(__file__).parent / "helpers" / "output_safety_worker.py"
REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxedit: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` with its bytes (None for directories)."""
    return {str(p.relative_to(directory)): None if p.is_dir() else p.read_bytes() for p in sorted(directory.rglob("*"))}


def staging_left(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(STAGING_PREFIX)]


def worker_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "MALLOC_ARENA_MAX": "2"}


def tiny_params(value: float = 0.0) -> dict:
    return {"a": np.full(3, value, np.float32)}


# ------------------------------------------------------------------------------------------------
# --overwrite replaces only what jaxedit wrote
# ------------------------------------------------------------------------------------------------
@pytest.fixture()
def checkpoints(tmp_path) -> Path:
    """A folder of checkpoints, the source among them."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(ROSINALITY, folder / "ffhq.pt")
    (folder / "notes.txt").write_text("my notes")
    return folder


def test_overwrite_never_replaces_what_jaxedit_did_not_write(tmp_path, checkpoints, capsys, monkeypatch):
    src = checkpoints / "ffhq.pt"
    git = tmp_path / "repo"
    (git / ".git").mkdir(parents=True)
    (git / "code.py").write_text("print(1)")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "me.jpg").write_bytes(b"\xff\xd8\xff")
    editors = write_model_dir(tmp_path / "editors", "editors", {}, tiny_params())
    extra = write_model_dir(tmp_path / "gen_and_more", "generator", {}, tiny_params())
    (extra / "results.csv").write_text("1,2")
    link = tmp_path / "link"
    link.symlink_to(other, target_is_directory=True)
    tnets = tmp_path / "tnets"
    tnets.mkdir()
    shutil.copy(LATENT_FIXTURES / "tnet_small.pth.tar", tnets / "tnet_15.pth.tar")
    before = snapshot(tmp_path)
    cases = [
        (["convert", "stylegan2", src, checkpoints], "holds", "which the new result is made from"),
        (["convert", "stylegan2", src, git], "it is a git checkout"),
        (["convert", "stylegan2", src, other], "not a jaxedit model directory"),
        (["convert", "stylegan2", src, editors], "jaxedit 'editors' directory, not 'generator'"),
        (["convert", "stylegan2", src, extra], "'results.csv'", "which jaxedit does not write there"),
        (["convert", "stylegan2", src, link], "symbolic link"),
        (["convert", "stylegan2", src, tmp_path], "working directory or one of its parents"),
        (["convert", "encoder", src, checkpoints], "holds"),
        (
            ["convert", "latent-transformer", "--classifier", LATENT_FIXTURES / "latent_classifier_small.pth"]
            + ["--tnets", tnets, tnets],
            "holds",
        ),
    ]
    monkeypatch.chdir(tmp_path)
    for argv, *needles in cases:
        code, _, err = run_cli(capsys, *argv, "--overwrite")
        assert_one_line_error(code, err, "not replacing it", *needles)
    assert snapshot(tmp_path) == before  # nothing deleted, nothing added (no staging either)


def test_overwrite_replaces_a_model_directory_of_the_same_kind(tmp_path, capsys):
    out = tmp_path / "gen"
    write_model_dir(out, "generator", {"old": True}, tiny_params(1.0))
    code, _, err = run_cli(capsys, "convert", "stylegan2", ROSINALITY, out, "--overwrite")
    assert code == 0, err
    manifest = read_manifest(out, "generator")
    assert manifest["source"]["format"] == "rosinality" and "old" not in manifest["config"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]  # the old one removed, no staging left


# ------------------------------------------------------------------------------------------------
# Destinations that appear or change while the result is written
# ------------------------------------------------------------------------------------------------
def test_out_appearing_mid_conversion_is_never_replaced(tmp_path, capsys, monkeypatch):
    import jaxedit.modeldir as modeldir

    out = tmp_path / "gen"
    save = modeldir.save_pytree

    def save_while_someone_makes_out(directory, tree):
        save(directory, tree)
        out.mkdir()
        (out / "theirs.txt").write_text("another process wrote this")

    monkeypatch.setattr(modeldir, "save_pytree", save_while_someone_makes_out)
    code, _, err = run_cli(capsys, "convert", "stylegan2", ROSINALITY, out)
    assert_one_line_error(code, err, "appeared while the result was written", "nothing was replaced")
    assert snapshot(out) == {"theirs.txt": b"another process wrote this"}
    assert staging_left(tmp_path) == []
    # an empty directory appearing is not replaced either
    with pytest.raises(ConfigError, match="appeared"):
        with atomic_directory(tmp_path / "later") as staging:
            (staging / "mine").write_text("x")
            (tmp_path / "later").mkdir()
    assert list((tmp_path / "later").iterdir()) == [] and staging_left(tmp_path) == []


def test_out_swapped_during_overwrite_is_put_back(tmp_path, capsys, monkeypatch):
    import jaxedit.modeldir as modeldir

    out = tmp_path / "gen"
    write_model_dir(out, "generator", {}, tiny_params(1.0))
    save = modeldir.save_pytree

    def save_while_someone_swaps_out(directory, tree):
        save(directory, tree)
        out.rename(tmp_path / "moved")
        out.mkdir()
        (out / "theirs.txt").write_text("swapped in meanwhile")

    monkeypatch.setattr(modeldir, "save_pytree", save_while_someone_swaps_out)
    code, _, err = run_cli(capsys, "convert", "stylegan2", ROSINALITY, out, "--overwrite")
    assert_one_line_error(code, err, "changed while the result was written", "nothing was replaced")
    assert snapshot(out) == {"theirs.txt": b"swapped in meanwhile"}
    assert read_manifest(tmp_path / "moved", "generator")  # the original, untouched
    assert staging_left(tmp_path) == []


@pytest.mark.parametrize("renameat2", ["linux", "absent"])
def test_publishing_rules_hold_with_and_without_renameat2(tmp_path, monkeypatch, renameat2):
    """Where renameat2 is missing (other systems, old kernels) the fallback keeps the same rules."""
    import jaxedit.atomic as atomic

    if renameat2 == "absent":
        monkeypatch.setattr(atomic, "_libc_renameat2", lambda: None)
    vouch = lambda directory: None if (directory / "mine").exists() else "not mine"
    out = tmp_path / "out"
    with atomic_directory(out) as staging:
        (staging / "mine").write_text("1")
    with atomic_directory(out, overwrite=True, why_not_replaceable=vouch) as staging:
        (staging / "mine").write_text("2")
    assert (out / "mine").read_text() == "2"
    with pytest.raises(ConfigError, match="changed while"):
        with atomic_directory(out, overwrite=True, why_not_replaceable=vouch) as staging:
            (staging / "mine").write_text("3")
            out.rename(tmp_path / "moved")
            out.mkdir()
            (out / "theirs").write_text("t")
    assert snapshot(out) == {"theirs": b"t"} and (tmp_path / "moved" / "mine").read_text() == "2"
    for name, contents in (("empty", {}), ("full", {"theirs": "t"})):
        with pytest.raises(ConfigError, match="appeared while"):
            with atomic_directory(tmp_path / name) as staging:
                (staging / "mine").write_text("4")
                (tmp_path / name).mkdir()
                for file, text in contents.items():
                    (tmp_path / name / file).write_text(text)
        assert snapshot(tmp_path / name) == {k: v.encode() for k, v in contents.items()}
    assert staging_left(tmp_path) == []


def test_concurrent_conversions_to_one_out_exactly_one_wins(tmp_path):
    out, barrier = tmp_path / "gen", tmp_path / "barrier"
    barrier.mkdir()
    command = [sys.executable, str(WORKER), "barrier", str(barrier), "4", "--", "convert", "stylegan2"]
    processes = [
        subprocess.Popen(
            [*command, str(ROSINALITY), str(out)], env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2, 2, 2], results
    for code, err in results:
        if code:
            assert_one_line_error(code, err, str(out), "appeared while the result was written")
    assert read_manifest(out, "generator")["source"]["format"] == "rosinality"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["barrier", "gen"]  # no staging left


# ------------------------------------------------------------------------------------------------
# Staging names, permissions, stale staging
# ------------------------------------------------------------------------------------------------
def test_longest_legal_names_work(tmp_path):
    for length in (238, 250, 255):
        directory = write_model_dir(tmp_path / ("d" * length), "generator", {}, tiny_params())
        assert read_manifest(directory, "generator")
        with atomic_file(tmp_path / ("f" * (length - 4) + ".npy"), ".npy") as staging:
            np.save(staging, np.zeros(2))
    assert len(os.fsencode(staging_name(".npy"))) <= 39
    with pytest.raises(ConfigError, match="longer than the 255 bytes"):
        write_model_dir(tmp_path / ("d" * 256), "generator", {}, tiny_params())
    assert staging_left(tmp_path) == []


def test_new_directories_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        written = write_model_dir(tmp_path / "made" / "gen", "generator", {}, tiny_params())
        os.umask(0o077)
        private = write_model_dir(tmp_path / "private", "generator", {}, tiny_params())
    finally:
        os.umask(previous)
    assert (written.stat().st_mode & 0o777, written.parent.stat().st_mode & 0o777) == (0o755, 0o755)
    assert (written / MANIFEST_FILE).stat().st_mode & 0o777 == 0o644
    assert private.stat().st_mode & 0o777 == 0o700


def test_staging_left_by_kill_9_is_removed_by_the_next_run(tmp_path, capsys):
    parent = tmp_path / "models"
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "stall", "--", "convert", "stylegan2", str(ROSINALITY), str(parent / "gen")],
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert worker.stdout.readline().strip() == b"staged", worker.stderr.read()
        stale = staging_left(parent)
        assert len(stale) == 1 and (parent / stale[0] / PARAMS_DIR).is_dir()  # staged, not yet published
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    live = parent / staging_name().replace(f"-{os.getpid()}-", "-1-", 1)  # pid 1 runs: never stale
    live.mkdir()
    (parent / ".jxs-notes").mkdir()  # not a staging name: not ours to remove
    code, _, err = run_cli(capsys, "convert", "stylegan2", ROSINALITY, parent / "gen2")
    assert code == 0, err
    assert sorted(p.name for p in parent.iterdir()) == sorted([".jxs-notes", live.name, "gen2"])


def test_a_full_disk_while_writing_a_model_is_one_line_and_leaves_nothing(tmp_path):
    """The arrays are written by orbax's threads, which log each failed write with a traceback."""
    limited = (  # jaxedit in a process whose writes past 64 KiB fail with EFBIG, as on a full disk
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16)); "
        "from jaxedit.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "models" / "gen"
    out.parent.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", limited, "convert", "stylegan2", str(ROSINALITY), str(out)],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(result.returncode, result.stderr, f"{out}: cannot write the arrays", "File too large")
    assert list(out.parent.iterdir()) == []


def test_a_file_never_replaces_a_directory(tmp_path):
    (tmp_path / "out.png").mkdir()
    (tmp_path / "out.png" / "keep").write_text("x")
    with pytest.raises(ConfigError, match="is a directory"):
        with atomic_file(tmp_path / "out.png") as staging:
            staging.write_text("y")
    assert (tmp_path / "out.png" / "keep").read_text() == "x" and staging_left(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# generate streams to disk
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory) -> Path:
    from jaxedit.stylegan2.config import GeneratorConfig
    from jaxedit.stylegan2.loading import random_generator

    config = GeneratorConfig(resolution=32, z_dim=8, w_dim=8, mapping_layers=2, channels={4: 4, 8: 4, 16: 4, 32: 4})
    generator = random_generator(config, jax.random.key(0))
    tree = dict(jax.tree.map(np.asarray, generator.params))
    tree["w_avg"] = np.asarray(generator.w_avg)
    return write_model_dir(tmp_path_factory.mktemp("models") / "gen32", "generator", config.to_dict(), tree)


def test_generate_outputs_equal_the_images_rendered_at_once(tiny_generator, tmp_path, capsys):
    from jaxedit.stylegan2 import load_generator, render
    from jaxedit.viz.grid import grid, to_uint8

    seeds = [3, 0, 11, 7, 5]
    generator = load_generator(tiny_generator)
    expected = render.render(generator, render.z_from_seeds(seeds, generator.z_dim), "z", batch_size=len(seeds))
    common = ["generate", tiny_generator, "--seeds", "3,0,11,7,5", "--batch-size", "2"]
    for target in (["--out", tmp_path / "a.npy"], ["--out", tmp_path / "a.png"], ["--outdir", tmp_path / "d"]):
        code, _, err = run_cli(capsys, *common, *target)
        assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), expected, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), grid(to_uint8(expected)))
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [f"seed{s:04d}.png" for s in sorted(seeds)]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d" / "seed0011.png")), to_uint8(expected[2]))
    assert staging_left(tmp_path) == [] and staging_left(tmp_path / "d") == []


def test_generate_refuses_outputs_it_cannot_write_before_rendering(tiny_generator, tmp_path, capsys, monkeypatch):
    from jaxedit.viz import image_files

    code, _, err = run_cli(capsys, "generate", tiny_generator, "--seeds", "0-99999", "--out", tmp_path / "big.png")
    assert_one_line_error(code, err, "--out", "100,000 images of 32x32", "write a .npy array or one PNG per image")
    monkeypatch.setattr(image_files.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**6, 10**6 - 1000, 1000))
    code, _, err = run_cli(capsys, "generate", tiny_generator, "--seeds", "0-9", "--out", tmp_path / "a.npy")
    assert_one_line_error(code, err, "need 122,880 bytes, the disk has 1,000")
    assert list(tmp_path.iterdir()) == []


def test_generate_memory_does_not_grow_with_the_number_of_seeds(tiny_generator, tmp_path):
    """Peak RSS of one process that first writes N = 512 seeds in each form (a .npy array, one PNG
    per image, a PNG grid: the start-up and first-use costs), then 32N = 16,384 seeds in each form
    (32 x 32: 12 KB a float image). Holding the 32N images would add 200 MB (as floats; a grid's
    uint8 tiles, cells and canvas 150 MB); streaming, one chunk and one row of grid tiles at a time,
    stays within the allocator's noise (up to 35 MB measured)."""
    n, large = 512, 32 * 512
    forms = {"npy": ["--out", "{}.npy"], "dir": ["--outdir", "{}"], "png": ["--out", "{}.png"]}
    runs = [
        ["--seeds", f"0-{count - 1}", flag, str(tmp_path / template.format(f"{form}{count}")), "--batch-size", "512"]
        for count in (n, large)
        for form, (flag, template) in forms.items()
    ]
    result = subprocess.run(
        [sys.executable, str(WORKER), "peaks", json.dumps(runs), "--", str(tiny_generator)],
        env=worker_env(),
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    peaks = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert max(peaks[3:]) - peaks[2] < 80, peaks
    assert np.load(tmp_path / f"npy{large}.npy", mmap_mode="r").shape == (large, 32, 32, 3)
    assert len(list((tmp_path / f"dir{large}").iterdir())) == large
    with Image.open(tmp_path / f"png{large}.png") as png:
        png.load()
        assert png.size == (128 * 32 + 127 * 2, 128 * 32 + 127 * 2)
