"""Hostile files: every size a file states is bounded, nothing read back is trusted.

Each file is crafted here, at test time, by our own code (pickle opcodes written by hand, zip and
.npy containers assembled byte by byte, model directories edited after writing them); none is
committed. Every case must end in one of our errors, in one line, in under `MAX_SECONDS`, using
under `MAX_MEMORY_MB`: the heavy ones run in a fresh process (`hostile_worker.py`) whose peak
resident memory is measured, the light ones in this process under tracemalloc. Measurements are
printed at the end (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from jaxedit.convert.stylegan2 import params_from_checkpoint
from jaxedit.convert.torch_reader import read_checkpoint
from jaxedit.errors import CheckpointError, ConfigError, InputError, JaxeditError, sanitize
from jaxedit.io import load_array, load_npz
from tests.helpers.torch_writers import Tensor, nvlabs_module_tree, write_nvlabs_pickle, write_torch_zip

MAX_SECONDS = 10.0
MAX_MEMORY_MB = 1024.0
WORKER = Path(__file__).parent / "helpers" / "hostile_worker.py"
MEASURED: list[tuple[str, float, float, str]] = []  # (case, seconds, MB, how memory was measured)


@pytest.fixture(scope="module", autouse=True)
def _print_measurements():
    yield
    if MEASURED:
        print("\nhostile files: refusal time and memory")
        for case, seconds, megabytes, how in MEASURED:
            print(f"  {case:<44} {seconds:7.3f} s {megabytes:9.1f} MB ({how})")


def refused_in_process(case: str, call, error_type=JaxeditError) -> str:
    """Run `call`, which must raise `error_type` in one line within the bounds; the message."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error_type) as info:
            call()
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    MEASURED.append((case, seconds, peak, "tracemalloc peak"))
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message, message
    assert seconds < MAX_SECONDS and peak < MAX_MEMORY_MB, (case, seconds, peak)
    return message


def refused_in_worker(case: str, operation: str, path: Path, **args) -> dict:
    """Run the operation on `path` in a fresh process; it must refuse with our error within bounds."""
    command = [sys.executable, str(WORKER), operation, str(path), json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{case}: worker exited {done.returncode}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    MEASURED.append((case, report["seconds"], report["max_rss_mb"], "process peak RSS"))
    assert report["error"] is not None, f"{case}: the file was accepted"
    assert "\n" not in report["message"], report["message"]
    assert report["seconds"] < MAX_SECONDS, report
    assert report["max_rss_mb"] < MAX_MEMORY_MB, report
    return report


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


def _append_zeros(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"\x00" * 1000)


# ------------------------------------------------------------------------------------------------
# Crafting: pickle opcodes
# ------------------------------------------------------------------------------------------------
def _int(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def _str(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _put(index: int) -> bytes:
    return pickle.LONG_BINPUT + struct.pack("<I", index)


def _get(index: int) -> bytes:
    return pickle.LONG_BINGET + struct.pack("<I", index)


def ordered_dict_amplifier(pairs: int, reductions: int) -> bytes:
    """`[OrderedDict(L)] * reductions` over one memoized list L of `pairs` (key, None) pairs: each
    reduction costs 12 bytes of file and `pairs` steps of work."""
    out = [pickle.PROTO + b"\x02", _global("collections", "OrderedDict"), _put(0), pickle.POP]
    out += [pickle.EMPTY_LIST, _put(1), pickle.MARK]
    out.append(b"".join(_int(i) + pickle.NONE + pickle.TUPLE2 for i in range(pairs)))
    out += [pickle.APPENDS, pickle.POP, pickle.EMPTY_LIST, pickle.MARK]
    out.append((_get(0) + _get(1) + pickle.TUPLE1 + pickle.REDUCE) * reductions)
    out += [pickle.APPENDS, pickle.STOP]
    return b"".join(out)


def codecs_amplifier(chars: int, encodes: int) -> bytes:
    """`[_codecs.encode(S, "latin1")] * encodes` of one memoized `chars`-long string S: each call
    costs 17 bytes of file and produces `chars` bytes."""
    out = [pickle.PROTO + b"\x02", _global("_codecs", "encode"), _put(0), pickle.POP]
    out += [_str("a" * chars), _put(1), pickle.POP, _str("latin1"), _put(2), pickle.POP]
    out += [pickle.EMPTY_LIST, pickle.MARK]
    out.append((_get(0) + _get(1) + _get(2) + pickle.TUPLE2 + pickle.REDUCE) * encodes)
    out += [pickle.APPENDS, pickle.STOP]
    return b"".join(out)


def _legacy_blob(filler_ops: int) -> bytes:
    """A legacy `torch.save` storage blob whose object pickle runs 2 * filler_ops opcodes."""
    head = (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    )
    obj = (
        pickle.PROTO
        + b"\x02"
        + (pickle.NONE + pickle.POP) * filler_ops
        + pickle.MARK
        + _str("storage")
        + _global("torch", "FloatStorage")
        + _str("k")
        + _str("cpu")
        + _int(1)
        + pickle.NONE
        + pickle.TUPLE
        + pickle.BINPERSID
        + pickle.STOP
    )
    return head + obj + pickle.dumps(["k"], protocol=2) + struct.pack("<q", 1) + struct.pack("<f", 1.0)


def distinct_blob_amplifier(copies: int, filler_ops: int) -> bytes:
    """`_load_from_bytes(_codecs.encode(B, "latin1"))` `copies` times for one memoized blob text B:
    every call makes a distinct bytes object (no cache hit) whose pickles are parsed again."""
    text = _legacy_blob(filler_ops).decode("latin1")
    out = [pickle.PROTO + b"\x02", _global("torch.storage", "_load_from_bytes"), _put(0), pickle.POP]
    out += [_global("_codecs", "encode"), _put(1), pickle.POP, _str(text), _put(2), pickle.POP]
    out += [_str("latin1"), _put(3), pickle.POP, pickle.EMPTY_LIST, pickle.MARK]
    call = _get(0) + _get(1) + _get(2) + _get(3) + pickle.TUPLE2 + pickle.REDUCE + pickle.TUPLE1 + pickle.REDUCE
    out += [call * copies, pickle.APPENDS, pickle.STOP]
    return b"".join(out)


def shared_module_tree(levels: int) -> bytes:
    """An NVlabs-like G_ema whose every module holds the one below twice (through the memo): a
    file of a few KB that names 2**levels modules."""
    out = [pickle.PROTO + b"\x02", _global("torch_utils.persistence", "_reconstruct_persistent_obj"), _put(0)]
    out.append(pickle.POP + pickle.EMPTY_DICT + _put(1) + pickle.POP)  # memo 1: the leaf's _modules {}
    below = 1
    for level in range(levels):
        modules = pickle.EMPTY_DICT + pickle.MARK + _str("a") + _get(below) + _str("b") + _get(below) + pickle.SETITEMS
        if level == 0:
            modules = pickle.EMPTY_DICT
        state = pickle.EMPTY_DICT + pickle.MARK + _str("_parameters") + pickle.EMPTY_DICT + _str("_modules") + modules
        state += pickle.SETITEMS
        meta = pickle.EMPTY_DICT + pickle.MARK + _str("type") + _str("class") + _str("class_name")
        meta += _str("Generator") + _str("state") + state + pickle.SETITEMS
        out.append(_get(0) + meta + pickle.TUPLE1 + pickle.REDUCE + _put(2 + level) + pickle.POP)
        below = 2 + level
    out.append(pickle.EMPTY_DICT + _str("G_ema") + _get(below) + pickle.SETITEM + pickle.STOP)
    return b"".join(out)


# ------------------------------------------------------------------------------------------------
# 2. Work the reader is made to do
# ------------------------------------------------------------------------------------------------
def test_ordered_dict_over_a_memoized_list(tmp_path):
    """OrderedDict reductions over one memoized 300k-pair list: 3e10 steps without a work budget."""
    path = tmp_path / "ordered_dict.pkl"
    path.write_bytes(ordered_dict_amplifier(pairs=300_000, reductions=100_000))
    report = refused_in_worker(f"OrderedDict over a memoized list ({_mb(path)})", "read", path)
    assert report["error"] == "CheckpointError" and "steps of work" in report["message"]


def test_codecs_encode_of_a_memoized_string(tmp_path):
    """_codecs.encode of one memoized 8 MB string, 450k times: 3.6 TB produced without a budget."""
    path = tmp_path / "codecs.pkl"
    path.write_bytes(codecs_amplifier(chars=8_000_000, encodes=450_000))
    report = refused_in_worker(f"_codecs.encode amplification ({_mb(path)})", "read", path)
    assert report["error"] == "CheckpointError" and "steps of work" in report["message"]


def test_distinct_storage_blobs_share_one_budget(tmp_path):
    """100k distinct copies of a blob whose pickles run 400k opcodes: 4e10 opcodes without a
    budget shared across blobs (each used to get a fresh one, and copies defeat the blob cache)."""
    path = tmp_path / "blobs.pkl"
    path.write_bytes(distinct_blob_amplifier(copies=100_000, filler_ops=200_000))
    report = refused_in_worker(f"distinct storage blobs ({_mb(path)})", "read", path)
    assert report["error"] == "CheckpointError" and "steps of work" in report["message"]


def test_module_tree_sharing_one_submodule(tmp_path):
    path = tmp_path / "shared_modules.pkl"
    path.write_bytes(shared_module_tree(levels=60))
    report = refused_in_worker(f"module tree naming 2**60 modules ({_mb(path)})", "convert", path)
    assert report["error"] == "CheckpointError" and "modules" in report["message"]


def _cut_zip(tmp_path) -> tuple[Path, int]:
    rng = np.random.default_rng(0)
    path = tmp_path / "cut_while_read.pt"
    big = rng.standard_normal((1024, 1024)).astype(np.float32)
    write_torch_zip(path, {"small": Tensor(np.ones(4, np.float32)), "transposed": Tensor(big.T)})
    return path, path.stat().st_size // 4


def test_file_truncated_while_being_read_is_an_error_not_sigbus(tmp_path):
    """Another writer cuts the file while the reader is inside it (the tensor bytes are read after
    the pickle): the reader must report it, never die of SIGBUS as a memory-mapped read does."""
    path, keep = _cut_zip(tmp_path)
    report = refused_in_worker("zip truncated while being read", "read_truncating", path, keep=keep)
    assert report["error"] == "CheckpointError"
    assert "truncated" in report["message"] or "changed size" in report["message"]


class _ChangingFile:
    """A real file object that changes the file on disk at its first read (after the size is taken)."""

    def __init__(self, path: Path, change):
        self._file = open(path, "rb")
        self._path, self._change = path, change

    def read(self, *args):
        if self._change is not None:
            change, self._change = self._change, None
            change(self._path)
        return self._file.read(*args)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


@pytest.mark.parametrize(
    "change",
    [
        lambda p: os.truncate(p, p.stat().st_size // 2),
        _append_zeros,
    ],
    ids=["shrinks", "grows"],
)
def test_plain_pickle_whose_size_changes_after_stat(tmp_path, monkeypatch, change):
    from jaxedit.convert import torch_reader

    path = tmp_path / "changing.pkl"
    write_nvlabs_pickle(path, {"w": Tensor(np.arange(50_000, dtype=np.float32))})
    monkeypatch.setattr(torch_reader, "open", lambda p, mode: _ChangingFile(Path(p), change), raising=False)
    message = refused_in_process("plain pickle changing size while read", lambda: read_checkpoint(path))
    assert "changed size while being read" in message


# ------------------------------------------------------------------------------------------------
# 2. Sizes the file claims: architecture numbers
# ------------------------------------------------------------------------------------------------
def _convert(path: Path):
    return params_from_checkpoint(read_checkpoint(path), what=path.name)


def test_rosinality_key_claiming_a_huge_resolution(tmp_path):
    """A 1.4 KB file with `to_rgbs.1000000.bias` implied resolution 2**1000003."""
    path = tmp_path / "huge_rgb_index.pt"
    z = np.zeros
    state = {
        "style.1.weight": Tensor(z((8, 8), np.float32)),
        "input.input": Tensor(z((1, 4, 4, 4), np.float32)),
        "to_rgbs.1000000.bias": Tensor(z((1, 3, 1, 1), np.float32)),
    }
    write_torch_zip(path, {"g_ema": OrderedDict(state), "latent_avg": Tensor(z(8, np.float32))})
    assert path.stat().st_size < 4096
    message = refused_in_process("rosinality key to_rgbs.1000000", lambda: _convert(path), CheckpointError)
    assert "resolution 2**1000003" in message and "4096" in message


NVLABS_KWARGS = {
    "z_dim": 8,
    "c_dim": 0,
    "w_dim": 8,
    "img_resolution": 8,
    "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 32, "channel_max": 8, "conv_clamp": 256},
}


@pytest.mark.parametrize(
    ("where", "key", "value", "needle"),
    [
        ("mapping_kwargs", "num_layers", 10**9, "num_layers is 1000000000"),
        (None, "img_resolution", 2**1_000_000, "img_resolution is an integer of 1000001 bits"),
        (None, "img_resolution", float("inf"), "img_resolution is inf"),
        (None, "z_dim", float("nan"), "z_dim is nan"),
        ("mapping_kwargs", "lr_multiplier", float("nan"), "lr_multiplier nan"),
        ("mapping_kwargs", "lr_multiplier", float("inf"), "lr_multiplier inf"),
        ("synthesis_kwargs", "channel_max", 10**12, "channel_max is 1000000000000"),
    ],
    ids=["num_layers_1e9", "resolution_2pow1e6", "resolution_inf", "z_dim_nan", "lr_nan", "lr_inf", "channels_1e12"],
)
def test_nvlabs_init_kwargs_out_of_range(tmp_path, where, key, value, needle):
    kwargs = json.loads(json.dumps(NVLABS_KWARGS))
    (kwargs[where] if where else kwargs)[key] = value
    path = tmp_path / "kwargs.pkl"
    tree = nvlabs_module_tree({"mapping.w_avg": np.zeros(8, np.float32)}, kwargs)
    write_nvlabs_pickle(path, {"G_ema": tree})
    shown = f"2**{value.bit_length() - 1}" if isinstance(value, int) and value > 2**64 else repr(value)
    message = refused_in_process(f"NVlabs kwargs {key}={shown}", lambda: _convert(path), CheckpointError)
    assert needle in message, message


# ------------------------------------------------------------------------------------------------
# 2. Sizes the file claims: .npy / .npz
# ------------------------------------------------------------------------------------------------
def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    import io

    from numpy.lib import format as npy_format

    out = io.BytesIO()
    npy_format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def test_npy_header_claiming_128_tib(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(_npy_header((1 << 45,)) + b"\x00" * 16)
    message = refused_in_process("npy header claiming 128 TiB", lambda: load_array(path, what="latents"), InputError)
    assert "140,737,488,355,328 bytes" in message and "holds 16 bytes of data" in message


def _deflate_bomb(header: bytes, blocks: int) -> tuple[bytes, int, int]:
    """(raw deflate stream, crc32, inflated size) of `header` + blocks * 16 MiB of zeros, built by
    repeating one fully flushed block (cheap to make, ~1000:1)."""
    zeros = bytes(16 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = packer.compress(header) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush()
    crc = zlib.crc32(header)
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    return head + block * blocks + tail, crc, len(header) + blocks * len(zeros)


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip of (name, data as stored, method 0/8, crc32, uncompressed size) members, by hand."""
    local, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        encoded = name.encode()
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0)
        local += encoded + data
        fields = (20, 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0, 0, 0, 0, 0, offset)
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *fields)
        central += encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))


@pytest.fixture(scope="module")
def npz_bomb(tmp_path_factory) -> Path:
    """An .npz whose 'bomb' member (never used) inflates to 2 GiB from 2 MB, next to a small 'x'."""
    blocks = 128
    header = _npy_header((blocks * (16 << 20) // 4,))
    data, crc, size = _deflate_bomb(header, blocks)
    small = _npy_header((3,)) + np.arange(3, dtype="<f4").tobytes()
    path = tmp_path_factory.mktemp("npz") / "bomb.npz"
    write_zip(path, [("bomb.npy", data, 8, crc, size), ("x.npy", small, 0, zlib.crc32(small), len(small))])
    return path


def test_npz_reads_only_the_members_it_needs(npz_bomb):
    assert npz_bomb.stat().st_size < 3 << 20
    tracemalloc.start()
    start = time.perf_counter()
    arrays = load_npz(npz_bomb, ["x"])
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    MEASURED.append(("npz with an unused 2 GiB bomb: read 'x'", seconds, peak, "tracemalloc peak"))
    np.testing.assert_array_equal(arrays["x"], np.arange(3, dtype=np.float32))
    assert list(arrays) == ["x"] and seconds < MAX_SECONDS and peak < 16


def test_npz_deflate_bomb_is_refused_before_inflating(npz_bomb):
    report = refused_in_worker("npz member inflating 2 MB -> 2 GiB", "load_npz", npz_bomb, names=["bomb"])
    assert report["error"] == "InputError" and "decompression bomb" in report["message"]


def test_npz_member_whose_header_disagrees_with_the_archive(tmp_path):
    path = tmp_path / "liar.npz"
    member = _npy_header((1 << 30,)) + b"\x00" * 64
    write_zip(path, [("x.npy", member, 0, zlib.crc32(member), len(member))])
    message = refused_in_process("npz member header claiming 4 GiB", lambda: load_npz(path, ["x"]), InputError)
    assert "damaged archive" in message


def test_float64_beyond_float32_is_refused(tmp_path):
    path = tmp_path / "latent.npy"
    np.save(path, np.full((2, 8), 1e300))
    message = refused_in_process("float64 latent of 1e300", lambda: load_array(path, float32=True, finite=True))
    assert "beyond the float32 range" in message


def test_png_where_npy_is_expected(tmp_path):
    path = tmp_path / "face.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    message = refused_in_process("png given as .npy", lambda: load_array(path, what="latents"), InputError)
    assert message == f"latents {path}: a PNG image, not a .npy array"
    assert "allow_pickle" not in message


# ------------------------------------------------------------------------------------------------
# 3. Model directories read back
# ------------------------------------------------------------------------------------------------
TINY = {"resolution": 8, "z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channels": {4: 4, 8: 4}}


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    import jax

    from jaxedit.modeldir import write_model_dir
    from jaxedit.stylegan2.config import GeneratorConfig
    from jaxedit.stylegan2.loading import param_shapes

    config = GeneratorConfig(**TINY)
    rng = np.random.default_rng(0)
    shapes = param_shapes(config)
    tree = jax.tree.map(lambda leaf: rng.standard_normal(leaf.shape).astype(np.float32), shapes)
    tree["w_avg"] = np.zeros(config.w_dim, np.float32)
    path = tmp_path_factory.mktemp("models") / "generator"
    write_model_dir(path, "generator", config.to_dict(), tree)
    return path


def _copy(directory: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(directory, destination)
    return destination


def _edit_manifest(directory: Path, change) -> None:
    path = directory / "jaxedit.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_generator_directory_loads(generator_dir):
    from jaxedit.stylegan2.loading import load_generator

    generator = load_generator(generator_dir)
    assert generator.resolution == 8 and len(generator.manifest["params_sha256"]) == 64


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("lr_multiplier", [1], "lr_multiplier (a list)"),
        ("lr_multiplier", 0, "lr_multiplier 0.0"),
        ("mapping_layers", 1e9, "mapping_layers 1000000000.0: expected an integer 1..32"),
        ("mapping_layers", 10**9, "mapping_layers 1000000000: expected an integer 1..32"),
        ("resolution", 2**40, "resolution 1099511627776: expected an integer 4..4096"),
        ("channels", "512", "channels"),
    ],
)
def test_generator_manifest_with_wrong_types(generator_dir, tmp_path, field, value, needle):
    from jaxedit.stylegan2.loading import load_generator

    directory = _copy(generator_dir, tmp_path / "g")
    _edit_manifest(directory, lambda m: m["config"].__setitem__(field, value))
    message = refused_in_process(f"generator manifest {field}={value!r}"[:44], lambda: load_generator(directory))
    assert needle in message and str(directory) in message, message


@pytest.mark.parametrize("kind", ["huge", "deep", "deep_200k", "config_string", "nan_literal"])
def test_hostile_manifests(generator_dir, tmp_path, kind):
    from jaxedit.modeldir import read_model_dir

    directory = _copy(generator_dir, tmp_path / "g")
    manifest = directory / "jaxedit.json"
    if kind == "huge":
        with open(manifest, "r+b") as handle:
            handle.truncate(64 << 30)  # sparse: costs no disk
        needle = "larger than 1,048,576 bytes"
    elif kind == "deep":
        manifest.write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
        needle = "nests 100001 levels deep"
    elif kind == "deep_200k":
        manifest.write_text("[" * 200_000 + "]" * 200_000)
        needle = "nests 200000 levels deep"
    elif kind == "config_string":
        _edit_manifest(directory, lambda m: m.__setitem__("config", "resolution 1024"))
        needle = "config is 'resolution 1024', expected an object"
    else:
        manifest.write_text(manifest.read_text().replace('"z_dim": 8', '"z_dim": NaN'))
        needle = "NaN is not a JSON number"
    message = refused_in_process(f"manifest: {kind}", lambda: read_model_dir(directory), ConfigError)
    assert needle in message, message


def test_nan_params_are_refused(tmp_path):
    from jaxedit.modeldir import read_model_dir, write_model_dir

    params = {"w": np.array([1.0, np.nan], np.float32), "ok": np.ones(3, np.float32)}
    write_model_dir(tmp_path / "m", "generator", {}, params)
    message = refused_in_process("NaN params", lambda: read_model_dir(tmp_path / "m"), ConfigError)
    assert "params /w hold NaN or infinite values" in message


def test_bit_flipped_params_are_refused(generator_dir, tmp_path):
    from jaxedit.stylegan2.loading import load_generator

    directory = _copy(generator_dir, tmp_path / "g")
    files = [f for f in (directory / "params").rglob("*") if f.is_file()]
    biggest = max(files, key=lambda f: f.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0x04
    biggest.write_bytes(bytes(data))
    message = refused_in_process("bit-flipped params file", lambda: load_generator(directory), ConfigError)
    assert "checksum" in message or "cannot restore" in message


def test_directories_without_checksum_still_load(generator_dir, tmp_path):
    from jaxedit.stylegan2.loading import load_generator

    directory = _copy(generator_dir, tmp_path / "old")
    _edit_manifest(directory, lambda m: m.pop("params_sha256"))
    assert load_generator(directory).resolution == 8


@pytest.fixture(scope="module")
def editors_dir(tmp_path_factory) -> Path:
    import jax

    from jaxedit.latent import PRESETS, save_editors
    from jaxedit.latent.editors import expected_classifier_shapes, expected_transformer_shapes
    from jaxedit.latent.modules import classifier_from_preset, transformer_from_preset

    preset = PRESETS["official"].replace(num_ws=3, w_dim=16, classifier_hidden=(20, 10))
    rng = np.random.default_rng(0)
    classifier = jax.tree.map(
        lambda s: rng.normal(size=s.shape).astype(np.float32),
        expected_classifier_shapes(classifier_from_preset(preset)),
    )
    transformers = jax.tree.map(
        lambda s: rng.normal(size=(2, *s.shape)).astype(np.float32),
        expected_transformer_shapes(transformer_from_preset(preset)),
    )
    path = tmp_path_factory.mktemp("models") / "editors"
    return save_editors(path, preset, classifier, transformers, ["Smiling", "Young"])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: c.__setitem__("attributes", 5), "attributes must be a list"),
        (lambda c: c.__setitem__("attributes", ["Smiling", "smiling"]), "name 'Smiling' more than once"),
        (lambda c: c["method"].__setitem__("lr", "fast"), "method preset"),
        (lambda c: c["method"].__setitem__("edit_layers", 5), "method preset"),
        (lambda c: c.__setitem__("method", "official"), "'method' is a str, expected an object"),
        (lambda c: c["method"].__setitem__("num_ws", 10**12), "num_ws is 1000000000000, expected at most 64"),
    ],
    ids=["attributes_int", "duplicate_attributes", "lr_string", "edit_layers_int", "method_string", "num_ws_1e12"],
)
def test_editors_manifest_with_wrong_types(editors_dir, tmp_path, change, needle):
    import jaxedit

    directory = _copy(editors_dir, tmp_path / "e")
    _edit_manifest(directory, lambda m: change(m["config"]))
    message = refused_in_process("editors manifest: wrong field", lambda: jaxedit.load_editors(directory))
    assert needle in message, message


def test_editors_directory_loads(editors_dir):
    import jaxedit

    assert jaxedit.load_editors(editors_dir).attributes == ("Smiling", "Young")


# ------------------------------------------------------------------------------------------------
# 5. Text from files in error messages
# ------------------------------------------------------------------------------------------------
def test_hostile_key_text_is_escaped_and_capped(tmp_path):
    """A 10 MB key holding a newline and ANSI colour escapes, quoted by the converter's message."""
    key = "\n\x1b[31mRED\x1b[0m" + "k" * 10_000_000
    path = tmp_path / "key.pkl"
    path.write_bytes(pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + _str(key) + _int(1) + pickle.SETITEM + pickle.STOP)
    message = refused_in_process("10 MB key with newline + ANSI escapes", lambda: _convert(path), CheckpointError)
    assert "\\n\\x1b[31mRED" in message and len(message) <= 1000, message[:200]


def test_hostile_global_name_is_escaped(tmp_path):
    path = tmp_path / "global.pkl"
    path.write_bytes(pickle.PROTO + b"\x02" + _global("os\x1b[2J", "system\r") + pickle.STOP)
    message = refused_in_process("refused global with escapes", lambda: read_checkpoint(path), CheckpointError)
    assert "\\x1b[2J" in message and "\r" not in message


def test_sanitize():
    assert sanitize("a\nb\x1b[0m\u202e\udcff") == "a\\nb\\x1b[0m\\u202e\\udcff"
    long = sanitize("x" * 10_000_000, 100)
    assert len(long) == 100 and long.endswith("...(10000000 characters)")
    assert sanitize("Gesicht lächelt 笑") == "Gesicht lächelt 笑"
    assert str(CheckpointError("one\ntwo")) == "one\\ntwo"


# ------------------------------------------------------------------------------------------------
# The loaders of user arrays go through jaxedit.io
# ------------------------------------------------------------------------------------------------
def test_latent_and_noise_loaders_refuse_hostile_arrays(generator_dir, tmp_path):
    from jaxedit.stylegan2.loading import load_generator
    from jaxedit.stylegan2.render import load_latents, load_noise_maps

    generator = load_generator(generator_dir)
    huge = tmp_path / "ws.npy"
    huge.write_bytes(_npy_header((1 << 40, generator.num_ws, generator.w_dim)) + bytes(64))
    message = refused_in_process("ws latents: header claiming 512 TiB", lambda: load_latents(huge, "ws", generator))
    assert "holds 64 bytes of data" in message
    overflow = tmp_path / "w.npy"
    np.save(overflow, np.full((1, generator.w_dim), 1e300))
    message = refused_in_process("w latents: float64 of 1e300", lambda: load_latents(overflow, "w", generator))
    assert "beyond the float32 range" in message
    png = tmp_path / "z.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    message = refused_in_process("z latents: a .png given", lambda: load_latents(png, "z", generator))
    assert "a PNG image, not a .npy array" in message and "allow_pickle" not in message

    blocks = 8  # 128 MiB of zeros in 128 KB: over the 100:1 ratio and the 64 MiB floor
    header = _npy_header((blocks * (16 << 20) // 4,))
    data, crc, size = _deflate_bomb(header, blocks)
    noise = tmp_path / "noise.npz"
    write_zip(noise, [(f"noise_{j}.npy", data, 8, crc, size) for j in range(generator.config.num_noise_layers)])
    message = refused_in_process("noise maps: deflate bombs", lambda: load_noise_maps(noise, generator))
    assert "more than the" in message  # far beyond what 3 maps of at most 8 x 8 float64 need


def test_training_data_skips_unused_members(npz_bomb, tmp_path):
    from jaxedit.data.latents import load_latent_dataset

    path = tmp_path / "data.npz"
    latents = _npy_header((4, 8)) + np.zeros((4, 8), "<f4").tobytes()
    labels = _npy_header((4, 40)) + np.ones((4, 40), "<f4").tobytes()
    bomb = npz_bomb.read_bytes()  # its first member, copied whole: 2 GiB if inflated
    first_member = bomb[: bomb.index(b"PK\x03\x04", 30)]
    name_length = struct.unpack("<H", first_member[26:28])[0]
    crc, compressed, size = struct.unpack("<3L", first_member[14:26])
    deflated = first_member[30 + name_length : 30 + name_length + compressed]
    members = [
        ("latents.npy", latents, 0, zlib.crc32(latents), len(latents)),
        ("labels.npy", labels, 0, zlib.crc32(labels), len(labels)),
        ("unused.npy", deflated, 8, crc, size),
    ]
    write_zip(path, members)
    tracemalloc.start()
    start = time.perf_counter()
    dataset = load_latent_dataset(path)
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    MEASURED.append(("training .npz with an unused 2 GiB bomb", seconds, peak, "tracemalloc peak"))
    assert len(dataset) == 4 and seconds < MAX_SECONDS and peak < 16
