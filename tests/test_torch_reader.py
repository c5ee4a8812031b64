"""The torch-free checkpoint reader: exact agreement with torch, refusal of hostile files, errors.

Reference data (`fixtures/reader/torch_reference.json`) was written by torch itself
(`fixtures/reader/make_torch_reference.py`, dev-only); torch is never imported here.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import time
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from jaxedit.convert.torch_reader import (
    NamespaceRecord,
    PersistentObject,
    init_kwargs,
    module_state_dict,
    read_checkpoint,
)
from jaxedit.errors import CheckpointError, UnsafeCheckpointError
from tests.helpers.paths import FIXTURES, STYLEGAN2_FIXTURES

READER_FIXTURES = FIXTURES / "reader"
REFERENCE = json.loads((READER_FIXTURES / "torch_reference.json").read_text())
PWNED = Path("/tmp/jaxedit_pwned")
MALICIOUS = ["malicious.pkl", "malicious.pt", "malicious_nested.pkl", "malicious_storage.pkl"]


# ------------------------------------------------------------------------------------------------
# Flattening our output the way the reference generator flattened torch's
# ------------------------------------------------------------------------------------------------
def _entry(a: np.ndarray) -> dict:
    return {
        "dtype": str(a.dtype),
        "shape": list(a.shape),
        "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
    }


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _has_tensor(obj) -> bool:
    if isinstance(obj, (np.ndarray, PersistentObject)):
        return True
    if isinstance(obj, dict):
        return any(_has_tensor(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_tensor(v) for v in obj)
    return False


def _flatten(obj, prefix: str, tensors: dict, values: dict) -> None:
    if isinstance(obj, PersistentObject):
        for k, a in module_state_dict(obj).items():
            tensors[f"{prefix}state_dict/{k}"] = a
        if "_init_kwargs" in obj.state:
            values[f"{prefix}init_kwargs"] = init_kwargs(obj)
    elif isinstance(obj, np.ndarray):
        tensors[prefix.rstrip("/")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if _has_tensor(v):
                _flatten(v, f"{prefix}{k}/", tensors, values)
            else:
                values[f"{prefix}{k}"] = _plain(v)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}{i}/", tensors, values)
    else:
        values[prefix.rstrip("/")] = _plain(obj)


# ------------------------------------------------------------------------------------------------
# 1. Exact agreement with torch
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", sorted(REFERENCE))
def test_matches_torch_exactly(rel):
    obj = read_checkpoint(FIXTURES / rel)
    tensors, values = {}, {}
    _flatten(obj, "", tensors, values)
    expected = REFERENCE[rel]["tensors"]
    assert set(tensors) == set(expected), set(tensors) ^ set(expected)
    assert list(tensors) == list(expected)  # same order as torch's dicts and state_dict()
    for key, ref in expected.items():
        a = tensors[key]
        assert _entry(a) == ref, key
        assert a.flags.c_contiguous and a.flags.writeable and a.dtype.isnative, key
    assert json.loads(json.dumps(values)) == REFERENCE[rel]["values"]


def test_state_dict_key_order_matches_torch():
    """module_state_dict walks modules in torch's order (own params, buffers, then children)."""
    obj = read_checkpoint(STYLEGAN2_FIXTURES / "nvlabs_small.pkl")
    ref = REFERENCE["stylegan2/nvlabs_small.pkl"]["tensors"]
    for net in ("G", "D", "G_ema"):
        want = [k.split("/", 2)[2] for k in ref if k.startswith(f"{net}/state_dict/")]
        assert list(module_state_dict(obj[net])) == want


def test_representation_of_nvlabs_pickle():
    obj = read_checkpoint(STYLEGAN2_FIXTURES / "nvlabs_small.pkl")
    g = obj["G_ema"]
    assert isinstance(g, PersistentObject) and g.class_name == "Generator"
    assert "module_src" not in g.state
    assert isinstance(g.state["_modules"]["synthesis"], PersistentObject)
    mapping = g.state["_modules"]["mapping"]
    assert set(mapping.state["_buffers"]) == {"w_avg"}
    kwargs = init_kwargs(g)
    assert kwargs["z_dim"] == 32 and kwargs["w_dim"] == 32 and kwargs["img_resolution"] == 64
    assert kwargs["mapping_kwargs"] == {"num_layers": 3}
    assert kwargs["synthesis_kwargs"]["conv_clamp"] is None
    assert type(obj["training_set_kwargs"]) is dict  # EasyDict -> dict
    # prefixes and None/non-persistent handling
    sd = module_state_dict(g, prefix="G_ema")
    assert all(k.startswith("G_ema.") for k in sd) and "G_ema.mapping.w_avg" in sd
    fc0 = mapping.state["_modules"]["fc0"]
    weight_gain = fc0.state["weight_gain"]
    assert isinstance(weight_gain, np.floating)  # a numpy scalar, rebuilt via numpy.dtype + BUILD


def test_namespace_and_python_values():
    obj = read_checkpoint(READER_FIXTURES / "dtypes_zip.pt")
    assert isinstance(obj["opts"], NamespaceRecord) and obj["opts"].lr == 0.001
    assert obj["bf16"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert obj["u16"].dtype == np.uint16 and obj["f8e4m3"].dtype == ml_dtypes.float8_e4m3fn
    legacy = read_checkpoint(READER_FIXTURES / "dtypes_legacy.pt")
    assert len(legacy) >= 20
    for key, a in legacy.items():
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(obj[key], a)


def test_reads_all_six_fixtures_quickly():
    paths = [
        STYLEGAN2_FIXTURES / "rosinality_small.pt",
        STYLEGAN2_FIXTURES / "psp_small.pt",
        STYLEGAN2_FIXTURES / "nvlabs_small.pkl",
        STYLEGAN2_FIXTURES / "nvlabs_small_clamp.pkl",
        FIXTURES / "latent_transformer" / "latent_classifier_small.pth",
        FIXTURES / "latent_transformer" / "tnet_small.pth.tar",
    ]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for p in paths:
            read_checkpoint(p)
        best = min(best, time.perf_counter() - start)
    print(f"read all six fixtures in {best * 1e3:.1f} ms")
    assert best < 1.0


# ------------------------------------------------------------------------------------------------
# 2. Hostile files
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def no_pwned():
    PWNED.unlink(missing_ok=True)
    yield
    assert not PWNED.exists(), "a checkpoint executed code"


class _AuditGuard:
    """Records process-spawning / code-loading audit events while active."""

    FORBIDDEN = (
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "subprocess.Popen",
        "exec",
        "compile",
        "import",
        "pickle.find_class",
        "ctypes",
        "builtins.input",
    )

    def __init__(self):
        self.active = False
        self.events: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if self.active and event.startswith(self.FORBIDDEN):
            self.events.append(event)

    def __enter__(self):
        self.events.clear()
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False


AUDIT = _AuditGuard()


@pytest.mark.parametrize("name", MALICIOUS)
def test_malicious_fixture_refused(name, no_pwned):
    with AUDIT, pytest.raises(UnsafeCheckpointError) as info:
        read_checkpoint(STYLEGAN2_FIXTURES / name)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{name}: ")
    assert "posix.system" in msg
    assert AUDIT.events == []


# ------------------------------------------------------------------------------------------------
# Hand-built files: a tiny pickle assembler and zip / legacy writers
# ------------------------------------------------------------------------------------------------
def _int(v: int) -> bytes:
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)  # LONG1


def _str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor(key: str, numel: int, offset: int, size, stride, stype="FloatStorage", legacy=False) -> bytes:
    pid = [_str("storage"), _global("torch", stype), _str(key), _str("cpu"), _int(numel)]
    if legacy:
        pid.append(b"N")
    return (
        _global("torch._utils", "_rebuild_tensor_v2")
        + _tuple(_tuple(*pid) + b"Q", _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89", b"}")
        + b"R"
    )


def _dict_pickle(items: dict[str, bytes]) -> bytes:
    body = b"".join(_str(k) + v + b"s" for k, v in items.items())
    return b"\x80\x02}" + body + b"."


def _write_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], top="archive") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/data.pkl", data_pkl)
        zf.writestr(f"{top}/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"{top}/data/{key}", raw)
        zf.writestr(f"{top}/version", "3\n")
    return path


def _write_legacy(path: Path, obj_pkl: bytes, storages: dict[str, bytes], itemsize=4, little=True) -> Path:
    sys_info = (
        b"\x80\x02}"
        + _str("protocol_version")
        + _int(1001)
        + b"s"
        + _str("little_endian")
        + (b"\x88" if little else b"\x89")
        + b"s."
    )
    keys = b"\x80\x02]" + b"".join(_str(k) + b"a" for k in storages) + b"."
    out = b"\x80\x02" + _int(0x1950A86A20F9469CFC6C) + b"." + b"\x80\x02" + _int(1001) + b"."
    out += sys_info + obj_pkl + keys
    for raw in storages.values():
        out += struct.pack("<q" if little else ">q", len(raw) // itemsize) + raw
    path.write_bytes(out)
    return path


def _one_line_error(exc_type, path: Path, *, contains: str = "", **kw) -> str:
    with AUDIT, pytest.raises(exc_type) as info:
        read_checkpoint(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(path.name + ":"), msg
    assert contains in msg, msg
    assert AUDIT.events == []
    return msg


def test_strided_views_in_hand_built_zip(tmp_path):
    storage = np.arange(14, dtype="<f4")
    pkl = _dict_pickle({"t": _tensor("0", 14, 2, (3, 4), (1, 3)), "e": _tensor("0", 14, 5, (2, 3), (0, 1))})
    obj = read_checkpoint(_write_zip(tmp_path / "ok.pt", pkl, {"0": storage.tobytes()}))
    np.testing.assert_array_equal(obj["t"], storage[2:14].reshape(4, 3).T)
    np.testing.assert_array_equal(obj["e"], np.stack([storage[5:8]] * 2))


def test_tensor_larger_than_storage(tmp_path):
    pkl = _dict_pickle({"t": _tensor("0", 10, 0, (4, 4), (4, 1))})
    path = _write_zip(tmp_path / "overrun.pt", pkl, {"0": np.zeros(10, "<f4").tobytes()})
    _one_line_error(CheckpointError, path, contains="needs 16 elements")
    pkl = _dict_pickle({"t": _tensor("0", 4, 3, (2,), (1,))})
    path = _write_zip(tmp_path / "offset.pt", pkl, {"0": np.zeros(4, "<f4").tobytes()})
    _one_line_error(CheckpointError, path, contains="holds 4")


def test_storage_claiming_more_bytes_than_present(tmp_path):
    pkl = _dict_pickle({"t": _tensor("0", 1 << 40, 0, (1 << 20,), (1,))})
    path = _write_zip(tmp_path / "claims.pt", pkl, {"0": np.zeros(10, "<f4").tobytes()})
    _one_line_error(CheckpointError, path, contains="claims")


def test_stride0_expansion_against_budget(tmp_path):
    pkl = _dict_pickle({"t": _tensor("0", 1, 0, (1 << 20, 1 << 20), (0, 0))})
    path = _write_zip(tmp_path / "bomb.pt", pkl, {"0": np.ones(1, "<f4").tobytes()})
    _one_line_error(CheckpointError, path, contains="budget")
    pkl = _dict_pickle({"t": _tensor("0", 1, 0, (1000, 1000), (0, 0))})
    path = _write_zip(tmp_path / "expand.pt", pkl, {"0": np.ones(1, "<f4").tobytes()})
    _one_line_error(CheckpointError, path, contains="budget")  # 4 MB from a tiny file
    obj = read_checkpoint(path, max_total_bytes=5_000_000)
    assert obj["t"].shape == (1000, 1000) and np.all(obj["t"] == 1)


def test_many_views_of_one_storage_against_budget(tmp_path):
    storage = np.zeros(50_000, "<f4").tobytes()
    pkl = _dict_pickle({f"v{i}": _tensor("0", 50_000, 0, (50_000,), (1,)) for i in range(40)})
    path = _write_zip(tmp_path / "views.pt", pkl, {"0": storage})
    _one_line_error(CheckpointError, path, contains="budget")


def test_legacy_big_endian_and_truncation(tmp_path):
    values = (np.arange(6) * 1.5).astype(">f4")
    obj_pkl = _dict_pickle({"t": _tensor("k1", 6, 0, (2, 3), (3, 1), legacy=True)})
    path = _write_legacy(tmp_path / "be.pt", obj_pkl, {"k1": values.tobytes()}, little=False)
    out = read_checkpoint(path)["t"]
    assert out.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(out, values.astype("<f4").reshape(2, 3))
    data = path.read_bytes()
    (tmp_path / "be_cut.pt").write_bytes(data[:-5])
    _one_line_error(CheckpointError, tmp_path / "be_cut.pt", contains="truncated")


def test_nested_blob_refused(tmp_path):
    inner_object = b"\x80\x02" + _global("torch.storage", "_load_from_bytes") + b"C\x01x\x85R."
    inner = _write_legacy(tmp_path / "inner", inner_object, {}).read_bytes()
    pkl = (
        b"\x80\x02}"
        + _str("w")
        + _global("torch.storage", "_load_from_bytes")
        + b"B"
        + struct.pack("<I", len(inner))
        + inner
        + b"\x85R"
        + b"s."
    )
    (tmp_path / "nested_blob.pkl").write_bytes(pkl)
    msg = _one_line_error(UnsafeCheckpointError, tmp_path / "nested_blob.pkl")
    assert "storage blob" in msg and "_load_from_bytes" in msg


@pytest.mark.parametrize(
    "payload, contains",
    [
        (b"\x80\x02\x82\x01.", "EXT1"),  # copyreg extension code
        (b"\x80\x02(iposix\nsystem\n.", "INST"),
        (b"\x80\x02]}b.", "BUILD"),  # state-setting on a list
        (_global("collections", "OrderedDict") + b")\x81.", "OrderedDict"),  # NEWOBJ of a non-class
        (b"\x80\x02" + _global("numpy", "dtype") + _tuple(_str("O")) + b"R.", "dtype"),
        (b"\x80\x02" + _global("builtins", "eval") + _tuple(_str("1")) + b"R.", "builtins.eval"),
        (b"\x80\x02" + _global("torch", "load") + b".", "torch.load"),
    ],
)
def test_refused_constructs(tmp_path, payload, contains, no_pwned):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload if payload.startswith(b"\x80") else b"\x80\x02" + payload)
    _one_line_error(UnsafeCheckpointError, path, contains=contains)


# ------------------------------------------------------------------------------------------------
# 3. Not checkpoints, damaged checkpoints
# ------------------------------------------------------------------------------------------------
def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


def test_not_checkpoints(tmp_path):
    import io

    cases = {
        "empty.pt": b"",
        "random.pt": np.random.default_rng(0).bytes(4096),
        "notes.txt": b"just some text\nnot a checkpoint\n",
        "image.png": _png_bytes(),
    }
    npy = io.BytesIO()
    np.save(npy, np.arange(5))
    cases["array.npy"] = npy.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    cases["other.zip"] = zbuf.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:  # the layout of a torch.jit.save archive
        zf.writestr("model/data.pkl", _dict_pickle({}))
        zf.writestr("model/code/__torch__.py", "def forward(self): ...")
        zf.writestr("model/constants.pkl", b"\x80\x02).")
    cases["torchscript.pt"] = zbuf.getvalue()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        _one_line_error(CheckpointError, tmp_path / name, contains="TorchScript" if name == "torchscript.pt" else "")
    _one_line_error(CheckpointError, tmp_path / "missing.pt", contains="cannot open")
    _one_line_error(CheckpointError, tmp_path, contains="not a regular file")  # a directory
    _one_line_error(CheckpointError, Path("/dev/zero"), contains="not a regular file")


@pytest.mark.parametrize(
    "rel",
    [
        "stylegan2/rosinality_small.pt",
        "stylegan2/nvlabs_small.pkl",
        "latent_transformer/tnet_small.pth.tar",
        "reader/dtypes_legacy.pt",
    ],
)
def test_truncated_fixtures(tmp_path, rel):
    data = (FIXTURES / rel).read_bytes()
    for cut in (1, 2, 10, 100, len(data) // 3, len(data) // 2, len(data) - 200, len(data) - 1):
        path = tmp_path / f"cut{cut}_{Path(rel).name}"
        path.write_bytes(data[:cut])
        with AUDIT:
            with pytest.raises(CheckpointError) as info:
                read_checkpoint(path)
        assert "\n" not in str(info.value) and str(info.value).startswith(path.name + ":")
        assert AUDIT.events == []


# ------------------------------------------------------------------------------------------------
# Resource limits of the pickle machine itself
# ------------------------------------------------------------------------------------------------
def test_int_tuple_dict_keys_refused(tmp_path):
    """Tuples of ints have a fixed, invertible hash: many colliding keys would make loading
    quadratic, so such keys are refused (str tuples and plain ints are fine)."""
    ok = b"\x80\x02}" + _tuple(_str("a"), _str("b")) + _int(1) + b"s" + _int(7) + _int(2) + b"s."
    (tmp_path / "ok.pkl").write_bytes(ok)
    assert read_checkpoint(tmp_path / "ok.pkl") == {("a", "b"): 1, 7: 2}
    bad = b"\x80\x02}" + _tuple(_int(1), _int(2)) + _int(1) + b"s."
    (tmp_path / "tuplekey.pkl").write_bytes(bad)
    _one_line_error(CheckpointError, tmp_path / "tuplekey.pkl", contains="dict key")


def test_operation_cap():
    import io

    from jaxedit.convert.pickle_safe import RestrictedUnpickler

    data = b"\x80\x02]" + b"N" * 50 + b"."
    assert RestrictedUnpickler(io.BytesIO(b"\x80\x02]."), {}, max_ops=10).load() == []
    with pytest.raises(CheckpointError, match="operations"):
        RestrictedUnpickler(io.BytesIO(data), {}, max_ops=10).load()


def test_repeated_blob_is_parsed_once(tmp_path):
    """One memoized storage blob passed to _load_from_bytes 60000 times stays linear and fast."""
    raw = np.arange(4, dtype="<f4").tobytes()
    blob = _write_legacy(
        tmp_path / "blob",
        b"\x80\x02"
        + _tuple(_str("storage"), _global("torch", "FloatStorage"), _str("k"), _str("cpu"), _int(4), b"N")
        + b"Q.",
        {"k": raw},
    ).read_bytes()
    call = b"h\x00h\x01\x85R0"  # BINGET fn, BINGET blob, TUPLE1, REDUCE, POP
    pkl = (
        b"\x80\x02"
        + _global("torch.storage", "_load_from_bytes")
        + b"q\x00"
        + b"B"
        + struct.pack("<I", len(blob))
        + blob
        + b"q\x010"
        + b"0"
        + call * 60_000
        + _global("torch._utils", "_rebuild_tensor_v2")
        + _tuple(b"h\x00h\x01\x85R", _int(0), _tuple(_int(4)), _tuple(_int(1)), b"\x89", b"}")
        + b"R."
    )
    (tmp_path / "many.pkl").write_bytes(pkl)
    start = time.perf_counter()
    out = read_checkpoint(tmp_path / "many.pkl")
    assert time.perf_counter() - start < 2.0
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32))


def test_memory_map_views_equal_copies():
    path = READER_FIXTURES / "dtypes_zip.pt"
    copied = read_checkpoint(path)
    mapped = read_checkpoint(path, memory_map=True)
    ref = REFERENCE["reader/dtypes_zip.pt"]["tensors"]
    views = 0
    for key, a in copied.items():
        if isinstance(a, np.ndarray):
            b = mapped[key]
            assert _entry(b) == ref[key] and a.dtype == b.dtype
            views += not b.flags.writeable  # contiguous tensors come back as read-only views
    assert views >= 10
    assert mapped["transposed"].flags.writeable  # strided: copied as usual


# ------------------------------------------------------------------------------------------------
# Flattening NVlabs module trees
# ------------------------------------------------------------------------------------------------
def _module(params=None, buffers=None, modules=None, non_persistent=(), **attrs) -> PersistentObject:
    state = {
        "_parameters": params or {},
        "_buffers": buffers or {},
        "_modules": modules or {},
        "_non_persistent_buffers_set": set(non_persistent),
        **attrs,
    }
    return PersistentObject("Layer", state)


def test_module_state_dict_rules():
    w, b, f = np.ones((2, 2), np.float32), np.zeros(2, np.float32), np.ones(3, np.float32)
    child = _module({"weight": w, "bias": None}, {"filter": f, "scratch": f}, non_persistent=("scratch",))
    root = _module(
        {"const": b},
        modules={"fc": child, "empty": None},
        _init_kwargs={"z_dim": np.int64(32), "gain": np.float64(0.5), "nested": {"k": [1]}},
    )
    assert list(module_state_dict(root)) == ["const", "fc.weight", "fc.filter"]
    assert list(module_state_dict(root, prefix="G")) == ["G.const", "G.fc.weight", "G.fc.filter"]
    kwargs = init_kwargs(root)
    assert kwargs == {"z_dim": 32, "gain": 0.5, "nested": {"k": [1]}}
    assert type(kwargs["z_dim"]) is int and type(kwargs["gain"]) is float


def test_module_state_dict_limits():
    loop = _module()
    loop.state["_modules"]["again"] = loop
    with pytest.raises(CheckpointError, match="cycle"):
        module_state_dict(loop)
    deep = _module()
    for _ in range(100):
        deep = _module(modules={"m": deep})
    with pytest.raises(CheckpointError, match="deeper"):
        module_state_dict(deep)
    with pytest.raises(CheckpointError, match="not a network module"):
        module_state_dict(["not", "a", "module"])
    bad = _module({"weight": "a string"})
    with pytest.raises(CheckpointError, match="not a tensor"):
        module_state_dict(bad)
