"""Test helpers: write PyTorch-format checkpoints WITHOUT torch, to feed the converters.

- `write_torch_zip(path, obj)`: torch >= 1.6 zip serialization (`archive/data.pkl` with
  `('storage', torch.FloatStorage, key, 'cpu', numel)` persistent ids, `archive/data/<key>` raw
  little-endian bytes at 64-byte-aligned offsets, `archive/version`, `archive/byteorder`).
- `write_nvlabs_pickle(path, obj)`: an NVlabs network pickle (protocol 4, STACK_GLOBAL): persistent
  objects as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, tensors as
  `torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(<legacy torch.save blob>), ...)`.

Objects to write are plain Python containers plus the markers below. Pickle opcodes are emitted
by hand (a few dozen lines) because pickling a `torch.*` global normally needs torch importable.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

_STORAGE_TYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


@dataclasses.dataclass
class Tensor:
    """A tensor to write (contiguous); `parameter=True` wraps it in `_rebuild_parameter`."""

    array: np.ndarray
    parameter: bool = False


@dataclasses.dataclass
class Persistent:
    """An NVlabs persistent object: meta = {type, version, module_src, class_name, state}."""

    class_name: str
    state: dict


@dataclasses.dataclass
class Global:
    module: str
    name: str


class _Emitter:
    """Emit pickle opcodes for dict/list/tuple/set/str/int/float/bool/None/bytes/Tensor/Persistent."""

    def __init__(self, protocol: int, storage_writer):
        self.out = io.BytesIO()
        self.protocol = protocol
        self.storage_writer = storage_writer  # array -> emits the storage object (persistent id or blob)

    def bytes(self) -> bytes:
        return self.out.getvalue()

    def w(self, data: bytes) -> None:
        self.out.write(data)

    def start(self) -> None:
        self.w(pickle.PROTO + bytes([self.protocol]))

    def stop(self) -> None:
        self.w(pickle.STOP)

    def global_(self, module: str, name: str) -> None:
        if self.protocol >= 4:
            self.obj(module)
            self.obj(name)
            self.w(pickle.STACK_GLOBAL)
        else:
            self.w(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def obj(self, value: Any) -> None:
        if value is None:
            self.w(pickle.NONE)
        elif value is True:
            self.w(pickle.NEWTRUE)
        elif value is False:
            self.w(pickle.NEWFALSE)
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                self.w(pickle.BININT + struct.pack("<i", value))
            else:
                encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
                if len(encoded) < 256:
                    self.w(pickle.LONG1 + bytes([len(encoded)]) + encoded)
                else:
                    self.w(pickle.LONG4 + struct.pack("<i", len(encoded)) + encoded)
        elif isinstance(value, float):
            self.w(pickle.BINFLOAT + struct.pack(">d", value))
        elif isinstance(value, str):
            encoded = value.encode("utf-8")
            self.w(pickle.BINUNICODE + struct.pack("<I", len(encoded)) + encoded)
        elif isinstance(value, bytes):
            self.w(pickle.BINBYTES + struct.pack("<I", len(value)) + value)
        elif isinstance(value, Global):
            self.global_(value.module, value.name)
        elif isinstance(value, tuple):
            if not value:
                self.w(pickle.EMPTY_TUPLE)
                return
            self.w(pickle.MARK)
            for item in value:
                self.obj(item)
            self.w(pickle.TUPLE)
        elif isinstance(value, list):
            self.w(pickle.EMPTY_LIST)
            if value:
                self.w(pickle.MARK)
                for item in value:
                    self.obj(item)
                self.w(pickle.APPENDS)
        elif isinstance(value, (set, frozenset)):
            self.w(pickle.EMPTY_SET)
            if value:
                self.w(pickle.MARK)
                for item in sorted(value):
                    self.obj(item)
                self.w(pickle.ADDITEMS)
        elif isinstance(value, OrderedDict):
            self.global_("collections", "OrderedDict")
            self.w(pickle.EMPTY_TUPLE + pickle.REDUCE)
            self._items(value)
        elif isinstance(value, dict):
            self.w(pickle.EMPTY_DICT)
            self._items(value)
        elif isinstance(value, Tensor):
            self.tensor(value)
        elif isinstance(value, Persistent):
            self.global_("torch_utils.persistence", "_reconstruct_persistent_obj")
            meta = {
                "type": "class",
                "version": 4,
                "module_src": "# placeholder: a loader must never execute this",
                "class_name": value.class_name,
                "state": value.state,
            }
            self.w(pickle.MARK)
            self.obj(meta)
            self.w(pickle.TUPLE + pickle.REDUCE)
        else:
            raise TypeError(f"cannot emit {type(value).__name__}")

    def _items(self, mapping) -> None:
        if not mapping:
            return
        self.w(pickle.MARK)
        for key, item in mapping.items():
            self.obj(key)
            self.obj(item)
        self.w(pickle.SETITEMS)

    def tensor(self, tensor: Tensor) -> None:
        # A Fortran-ordered array (e.g. a transposed view) is written as torch writes a transposed
        # tensor: its memory order in the storage, with non-C strides. Everything else is C order.
        fortran = tensor.array.ndim > 1 and tensor.array.flags.f_contiguous and not tensor.array.flags.c_contiguous
        array = tensor.array if fortran else np.array(tensor.array, order="C")  # (not ascontiguousarray: 0-d stays 0-d)
        if tensor.parameter:
            self.global_("torch._utils", "_rebuild_parameter")
            self.w(pickle.MARK)
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.w(pickle.MARK)
        self.storage_writer(self, array)
        stride = tuple(int(s // array.itemsize) for s in array.strides) if array.ndim else ()
        self.obj(0)
        self.obj(tuple(int(d) for d in array.shape))
        self.obj(stride)
        self.obj(False)
        self.obj(OrderedDict())
        self.w(pickle.TUPLE + pickle.REDUCE)
        if tensor.parameter:
            self.obj(True)
            self.obj(OrderedDict())
            self.w(pickle.TUPLE + pickle.REDUCE)


def write_torch_zip(path, obj: Any, folder: str = "archive") -> None:
    """Write `obj` (containers + `Tensor`s) like `torch.save(obj, path)` (zip format)."""
    storages: list[np.ndarray] = []

    def storage_writer(emitter: _Emitter, array: np.ndarray) -> None:
        key = str(len(storages))
        storages.append(array)
        emitter.w(pickle.MARK)
        emitter.obj("storage")
        emitter.global_("torch", _STORAGE_TYPES[array.dtype])
        emitter.obj(key)
        emitter.obj("cpu")
        emitter.obj(int(array.size))
        emitter.w(pickle.TUPLE + pickle.BINPERSID)

    emitter = _Emitter(2, storage_writer)
    emitter.start()
    emitter.obj(obj)
    emitter.stop()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        _write_aligned(archive, f"{folder}/data.pkl", emitter.bytes())
        _write_aligned(archive, f"{folder}/byteorder", b"little")
        for key, array in enumerate(storages):
            _write_aligned(
                archive, f"{folder}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes(order="A")
            )
        _write_aligned(archive, f"{folder}/version", b"3\n")


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes, alignment: int = 64) -> None:
    """Add an uncompressed entry whose data starts at a multiple of `alignment` (as torch does)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    offset = archive.fp.tell()
    header = 30 + len(name.encode())
    pad = (-(offset + header + 4)) % alignment
    info.extra = struct.pack("<HH", 0x5A5A, pad) + b"Z" * pad
    archive.writestr(info, data)


def _legacy_storage_blob(array: np.ndarray) -> bytes:
    """A storage as `torch.save(storage, f, _use_new_zipfile_serialization=False)` writes it."""
    out = io.BytesIO()
    for value in (
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
    ):
        out.write(pickle.dumps(value, protocol=2))
    key = "140000000000"
    emitter = _Emitter(2, None)
    emitter.start()
    emitter.w(pickle.MARK)
    emitter.obj("storage")
    emitter.global_("torch", _STORAGE_TYPES[array.dtype])
    emitter.obj(key)
    emitter.obj("cpu")
    emitter.obj(int(array.size))
    emitter.obj(None)
    emitter.w(pickle.TUPLE + pickle.BINPERSID)
    emitter.stop()
    out.write(emitter.bytes())
    out.write(pickle.dumps([key], protocol=2))
    out.write(struct.pack("<q", int(array.size)))
    out.write(array.astype(array.dtype.newbyteorder("<")).tobytes(order="A"))
    return out.getvalue()


def write_nvlabs_pickle(path, obj: Any) -> None:
    """Write `obj` (containers, `Persistent`, `Tensor`) as an NVlabs network pickle (protocol 4)."""

    def storage_writer(emitter: _Emitter, array: np.ndarray) -> None:
        emitter.global_("torch.storage", "_load_from_bytes")
        emitter.w(pickle.MARK)
        emitter.obj(_legacy_storage_blob(array))
        emitter.w(pickle.TUPLE + pickle.REDUCE)

    emitter = _Emitter(4, storage_writer)
    emitter.start()
    emitter.obj(obj)
    emitter.stop()
    with open(path, "wb") as handle:
        handle.write(emitter.bytes())


# ------------------------------------------------------------------------------------------------
# NVlabs module trees from a flat state dict
# ------------------------------------------------------------------------------------------------

_NVLABS_CLASSES = {
    "": "Generator",
    "mapping": "MappingNetwork",
    "synthesis": "SynthesisNetwork",
}


def _class_for(path: str) -> str:
    if path in _NVLABS_CLASSES:
        return _NVLABS_CLASSES[path]
    leaf = path.rsplit(".", 1)[-1]
    if leaf.startswith("fc") or leaf == "affine":
        return "FullyConnectedLayer"
    if leaf.startswith("conv"):
        return "SynthesisLayer"
    if leaf == "torgb":
        return "ToRGBLayer"
    if leaf.startswith("b"):
        return "SynthesisBlock"
    return "Module"


def nvlabs_module_tree(
    state_dict: dict[str, np.ndarray], init_kwargs: dict, buffer_names=("w_avg", "resample_filter", "noise_const")
) -> Persistent:
    """Nest a flat `G_ema.state_dict()` into persistent objects (_parameters/_buffers/_modules)."""
    root: dict = {}
    for key, value in state_dict.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def build(node: dict, path: str) -> Persistent:
        params, buffers, modules = OrderedDict(), OrderedDict(), OrderedDict()
        for name, value in node.items():
            child_path = f"{path}.{name}" if path else name
            if isinstance(value, dict):
                modules[name] = build(value, child_path)
            elif name in buffer_names:
                buffers[name] = Tensor(value)
            else:
                params[name] = Tensor(value, parameter=True)
        state = {
            "training": False,
            "_parameters": params,
            "_buffers": buffers,
            "_non_persistent_buffers_set": set(),
            "_modules": modules,
            "_init_args": (),
            "_init_kwargs": init_kwargs if not path else {},
        }
        return Persistent(_class_for(path), state)

    return build(root, "")
