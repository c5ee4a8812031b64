"""Read PyTorch checkpoint files without torch and without executing anything from the file.

Formats (detected from the first bytes, never from the file name; only regular files are opened):

* **zip** (`torch.save` since 1.6): `P/data.pkl` plus raw storages `P/data/<key>`, located through
  the zip central directory (the local headers carry zero sizes); only stored (uncompressed)
  members; storage bytes are read only for the tensors that reference them. TorchScript archives
  (`torch.jit.save`) are recognised and refused;
* **legacy** (`torch.save` before 1.6): five back-to-back pickles (magic number, protocol 1001,
  sys-info, the object, the storage keys) followed by `int64 count + raw bytes` per storage;
* **plain pickle** (NVlabs `.pkl` network pickles), whose storages are legacy-format blobs reached
  through `torch.storage._load_from_bytes` (a blob may hold only a storage: no blob in a blob).

Every pickle goes through `jaxedit.convert.pickle_safe.RestrictedUnpickler` with the allow-list
built in `CheckpointReader._make_globals`, each entry mapped to a stand-in defined here. What
comes back:

* tensors and `Parameter`s -> C-contiguous, writable `np.ndarray` copies (native byte order,
  shape and strides applied); bfloat16 -> `ml_dtypes.bfloat16` (bit-exact; `.astype(np.float32)`
  when needed). A parameter is not distinguished from a buffer by type: use the module's
  `_parameters` / `_buffers` dicts (NVlabs) or the key names (state dicts). With
  `memory_map=True` (zip only) contiguous tensors are read-only views into a map of the file (the
  caller must then keep the file unchanged while it uses them: a map of a file that shrinks faults);
* `OrderedDict`, `dnnlib.util.EasyDict` -> plain `dict`; `argparse.Namespace` -> `NamespaceRecord`
  (a `dict` with attribute access); `torch.Size` -> `tuple`; `torch.device` -> `str`;
* numpy scalars -> numpy scalars (`np.float64`...), numpy dtypes -> `np.dtype` (plain numeric
  kinds only; their BUILD step is the only state-setting allowed besides a Namespace's
  attributes and a state dict's `_metadata`, which is discarded);
* NVlabs persistent objects -> `PersistentObject(class_name, state)`; `state` is the module's
  `__dict__` (`_parameters`, `_buffers`, `_non_persistent_buffers_set`, `_modules`, `_init_kwargs`,
  plain attributes...). Every submodule in `_modules` is itself a `PersistentObject` (NVlabs marks
  every network class persistent; a plain `torch.nn.Module` subclass is refused as a global). The
  embedded `module_src` is dropped, never compiled.

A result may hold nothing else: a bare allowed global or a storage outside a tensor is refused.

Resource limits: each tensor's extent (offset + sum((size - 1) * stride)) is checked against the
elements its storage really holds, each storage's element count against the bytes present, and
the bytes materialised for tensors are charged to a budget (`max_total_bytes`, by default
`DEFAULT_BUDGET_FACTOR` x file size + `DEFAULT_BUDGET_SLACK`) *before* anything is allocated, so a
stride-0 expansion or many views of one storage cannot blow up memory. The work of the whole read
(every pickle opcode, nested storage blobs included, plus the elements each stand-in touches and
the bytes it produces) is charged to one `WorkBudget` of `DEFAULT_WORK_PER_BYTE` x file size +
`DEFAULT_WORK_FLOOR` units, so a small file cannot make the reader redo work on a memoized object
millions of times. Pickles are also capped in operations each, dict keys are restricted to
collision-safe types, a repeated storage blob is parsed once; flattening a module tree has depth,
cycle and size limits.

The file is read with plain reads (never a memory map unless `memory_map=True`): a file that is
truncated or rewritten while being read gives a `CheckpointError`, never a crash (SIGBUS).
"""

from __future__ import annotations

import dataclasses
import encodings.cp437  # noqa: F401  (zipfile decodes legacy member names with it, lazily)
import io
import math
import mmap
import os
import re
import stat
import struct
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from jaxedit.convert.pickle_safe import RestrictedUnpickler, StandIn, WorkBudget, check_key, short
from jaxedit.errors import CheckpointError, JaxeditError, UnsafeCheckpointError, sanitize

__all__ = [
    "read_checkpoint",
    "module_state_dict",
    "init_kwargs",
    "PersistentObject",
    "NamespaceRecord",
    "CheckpointReader",
    "DEFAULT_BUDGET_FACTOR",
    "DEFAULT_BUDGET_SLACK",
    "DEFAULT_WORK_PER_BYTE",
    "DEFAULT_WORK_FLOOR",
]

DEFAULT_BUDGET_FACTOR = 4
DEFAULT_BUDGET_SLACK = 1 << 20
# Real checkpoints need far less work than their size in units (their bulk is raw tensor bytes);
# a unit is about one pickle opcode, ~1 microsecond, so a refusal never takes more than seconds.
DEFAULT_WORK_PER_BYTE = 0.125
DEFAULT_WORK_FLOOR = 2_000_000
MAX_MODULE_DEPTH = 64
MAX_MODULES = 100_000  # modules visited when flattening one network (shared submodules count each time)
MAX_KWARGS_NODES = 100_000  # values visited when converting one network's init kwargs
_DICT_ITEM_WORK = 4  # work units per dict item built by a stand-in (time and memory of one entry)
_BYTES_PER_WORK = 8  # bytes produced per work unit
_BLOB_WORK = 64  # fixed work units per storage blob parsed (besides its opcodes)
_MAX_DIM = 1 << 48
_MAX_NDIM = 32
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage type name -> numpy dtype of one element (native little-endian)
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    "UntypedStorage": np.dtype("u1"),
}
_STORAGE_QUALNAMES = frozenset([f"torch.{name}" for name in _STORAGE_DTYPES] + ["torch.storage.UntypedStorage"])
# torch dtype objects named in `_rebuild_tensor_v3` (torch >= 2.3 uses it for these dtypes and
# more; the tensor's storage is then an UntypedStorage of bytes)
_TORCH_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
    "complex64": np.dtype("<c8"),
    "complex128": np.dtype("<c16"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}
_TORCH_DTYPE_QUALNAMES = frozenset(f"torch.{name}" for name in _TORCH_DTYPES)
_SIMPLE_DTYPE = re.compile(r"^[<>|=]?(b1|\?|i1|i2|i4|i8|u1|u2|u4|u8|f2|f4|f8|c8|c16)$")


# ------------------------------------------------------------------------------------------------
# Inert result types
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class PersistentObject:
    """An NVlabs `torch_utils.persistence` object, reduced to data.

    Attributes:
      class_name: the class named in the pickle (`"Generator"`, `"SynthesisLayer"`...).
      state: the object's `__dict__` as pickled: for a network module `_parameters` and `_buffers`
        (`{name: np.ndarray | None}`), `_non_persistent_buffers_set` (a `set` of names),
        `_modules` (`{name: PersistentObject | None}`), `_init_args`, `_init_kwargs`, and plain
        attributes (`z_dim`, `w_dim`, ...).
      version: the persistence format version recorded in the pickle.
    """

    class_name: str
    state: dict
    version: int | None = None

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r}, state keys={sorted(map(str, self.state))})"


class NamespaceRecord(dict):
    """An `argparse.Namespace` from a checkpoint: a plain dict whose items read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# ------------------------------------------------------------------------------------------------
# Storages and tensors
# ------------------------------------------------------------------------------------------------
class _StorageRef:
    """Elements of one storage: `numel` items of `dtype` at byte `offset` of `buf` (or pending)."""

    __slots__ = ("key", "dtype", "numel", "buf", "offset", "big_endian", "file")

    def __init__(
        self, key: str, dtype: np.dtype, numel: int, buf=None, offset: int = 0, big_endian: bool = False, file=None
    ):
        self.file = file  # the open checkpoint (zip format): contiguous tensors are read from it
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.buf = buf
        self.offset = offset
        self.big_endian = big_endian

    def __reduce__(self):
        raise TypeError("not picklable")


class _Pending:
    """Placeholder for a tensor whose storage bytes are not located yet (legacy pass one)."""

    __slots__ = ()


_PENDING = _Pending()


def _check_no_internals(root: Any) -> None:
    """Refuse a result that still holds a loader-internal object (a bare allowed global, a bare
    storage): everything returned must be plain data. Iterative, linear, cycle-safe."""
    stack, seen = [root], set()
    while stack:
        obj = stack.pop()
        t = type(obj)
        if t in _SCALAR_TYPES or isinstance(obj, (np.ndarray, np.generic, np.dtype)):
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if t is dict or t is NamespaceRecord:
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif t in (list, tuple, set, frozenset):
            stack.extend(obj)
        elif t is PersistentObject:
            stack.append(obj.state)
        elif t is StandIn:
            raise CheckpointError(f"the data holds a bare reference to {obj.qualname}")
        elif t is _StorageRef:
            raise CheckpointError("the data holds a bare storage outside any tensor (not supported)")
        else:
            raise CheckpointError(f"the data holds an unexpected {short(obj)}")


_SCALAR_TYPES = frozenset({str, bytes, int, float, complex, bool, type(None)})


def _c_contiguous(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _as_int(value: Any, what: str) -> int:
    if type(value) is bool or not isinstance(value, (int, np.integer)):
        raise CheckpointError(f"tensor {what} is a {short(value)}, expected an integer")
    return int(value)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, list):
        raise CheckpointError(f"tensor {what} is a {short(value)}, expected a tuple of integers")
    if len(value) > _MAX_NDIM:
        raise CheckpointError(f"tensor {what} has {len(value)} dimensions (limit {_MAX_NDIM})")
    out = tuple(_as_int(v, what) for v in value)
    for v in out:
        if not 0 <= v < _MAX_DIM:
            raise CheckpointError(f"tensor {what} {out} has an implausible entry {v}")
    return out


# ------------------------------------------------------------------------------------------------
# The reader
# ------------------------------------------------------------------------------------------------
class CheckpointReader:
    """One read of one checkpoint file; `read()` returns the object tree.

    `bytes_materialised` counts the tensor bytes allocated so far (checked against
    `max_total_bytes` before each allocation).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_total_bytes: int | None = None,
        memory_map: bool = False,
        max_work: int | None = None,
    ):
        self.path = Path(path)
        self.memory_map = memory_map
        self.name = self.path.name
        self.max_total_bytes = max_total_bytes
        self.max_work = max_work
        self.work = WorkBudget(max_work if max_work is not None else DEFAULT_WORK_FLOOR)
        self.bytes_materialised = 0
        self.file_size = 0
        self._globals = self._make_globals()
        self._blob_globals = {k: v for k, v in self._globals.items() if k in _STORAGE_QUALNAMES}
        self._in_blob = False
        self._blobs: dict[int, tuple[bytes, _StorageRef]] = {}
        self._legacy_headers: dict[bytes, bool] = {}  # validated header bytes -> big-endian

    # -- public ---------------------------------------------------------------------------------
    def read(self) -> Any:
        try:
            result = self._read()
            _check_no_internals(result)
            return result
        except JaxeditError as e:
            raise type(e)(f"{sanitize(self.name, 200)}: {sanitize(str(e))}") from None
        except RecursionError:
            raise CheckpointError(f"{sanitize(self.name, 200)}: structure nested too deeply") from None
        except MemoryError:
            raise CheckpointError(f"{sanitize(self.name, 200)}: out of memory while reading") from None
        except Exception as e:  # any parser failure on hostile bytes becomes our error type
            raise CheckpointError(
                f"{sanitize(self.name, 200)}: corrupt or truncated checkpoint ({type(e).__name__}: {_error_text(e)})"
            ) from None

    # -- budget ---------------------------------------------------------------------------------
    def _charge(self, nbytes: int) -> None:
        assert self.max_total_bytes is not None
        if self.bytes_materialised + nbytes > self.max_total_bytes:
            raise CheckpointError(
                f"tensors would need more than {self.max_total_bytes} bytes in total (the byte "
                f"budget for this {self.file_size}-byte file; pass max_total_bytes to raise it)"
            )
        self.bytes_materialised += nbytes

    # -- dispatch on format ---------------------------------------------------------------------
    def _read(self) -> Any:
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):  # no FIFOs or devices (/dev/zero)
                raise CheckpointError("not a regular file")
            f = open(self.path, "rb")
        except OSError as e:
            raise CheckpointError(f"cannot open ({e.strerror or type(e).__name__})") from None
        with f:
            self.file_size = os.fstat(f.fileno()).st_size
            if self.max_total_bytes is None:
                self.max_total_bytes = DEFAULT_BUDGET_FACTOR * self.file_size + DEFAULT_BUDGET_SLACK
            if self.max_work is None:
                self.work.limit = int(DEFAULT_WORK_PER_BYTE * self.file_size) + DEFAULT_WORK_FLOOR
            self.work.what = f"this {self.file_size}-byte file"
            if self.file_size == 0:
                raise CheckpointError("empty file")
            head = f.read(4)
            if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.memory_map else None
                result = self._read_zip(f, mm)
                self._check_unchanged(f)
                return result
            if head[:1] != b"\x80":
                raise CheckpointError(f"not a PyTorch checkpoint or pickle (starts with {head!r})")
            f.seek(0)
            data = f.read(self.file_size + 1)
            if len(data) != self.file_size:
                raise CheckpointError(_CHANGED)
        return self._read_pickle_file(data)

    def _check_unchanged(self, f: io.BufferedReader) -> None:
        if os.fstat(f.fileno()).st_size != self.file_size:
            raise CheckpointError(_CHANGED)

    # -- zip ------------------------------------------------------------------------------------
    def _read_zip(self, f: io.BufferedReader, mm: mmap.mmap | None) -> Any:
        """The object of a zip checkpoint; `mm` (a map of the file) only when tensors are returned
        as views into it, everything else is read with plain reads."""
        try:
            f.seek(0)
            zf = zipfile.ZipFile(f)  # parses the central directory only; members are read by offset
            infos = zf.infolist()
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            ValueError,
            OSError,
            EOFError,
            struct.error,
            UnicodeDecodeError,
            NotImplementedError,
        ) as e:
            raise CheckpointError(f"zip archive is truncated or damaged ({_error_text(e, 80)})") from None
        if not infos:
            raise CheckpointError("zip archive is empty")
        top = infos[0].filename.split("/", 1)[0]
        entries = {info.filename: info for info in infos}
        pkl = entries.get(f"{top}/data.pkl")
        if f"{top}/constants.pkl" in entries or any(n.startswith(f"{top}/code/") for n in entries):
            raise CheckpointError(
                "a TorchScript archive (torch.jit.save), not a torch.save checkpoint; TorchScript code is never loaded"
            )
        if pkl is None:
            raise CheckpointError(f"zip archive has no {short(top)}/data.pkl: not a PyTorch checkpoint")
        byteorder = "little"
        if f"{top}/byteorder" in entries:
            raw = self._zip_member(f, entries[f"{top}/byteorder"])
            if raw not in (b"little", b"big"):
                raise CheckpointError(f"zip byteorder record is {raw[:16]!r}")
            byteorder = raw.decode()
        big = byteorder == "big"
        storages: dict[str, _StorageRef] = {}

        def persistent_load(pid: Any) -> _StorageRef:
            if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
                raise CheckpointError(f"unexpected persistent id (a {short(pid)})")
            _, stype, key, _location, numel = pid
            dtype = self._storage_dtype(stype)
            if type(key) is not str:
                raise CheckpointError("storage key is not a string")
            numel = _as_int(numel, "storage size")
            if numel < 0:
                raise CheckpointError(f"storage {short(key)} has negative size")
            cached = storages.get(key)
            if cached is not None:
                if cached.dtype != dtype:
                    raise CheckpointError(f"storage {short(key)} is used with two element types")
                return cached
            info = entries.get(f"{top}/data/{key}")
            if info is None:
                raise CheckpointError(f"zip archive lacks the storage {short(top)}/data/{short(key)}")
            start, length = self._zip_span(f, info)
            if numel * dtype.itemsize > length:
                raise CheckpointError(
                    f"storage {short(key)} claims {numel} x {dtype.itemsize} bytes but the archive holds {length}"
                )
            ref = _StorageRef(key, dtype, numel, mm, start, big, file=f)
            storages[key] = ref
            return ref

        pickle_bytes = self._zip_member(f, pkl)
        try:
            return self._unpickle(io.BytesIO(pickle_bytes), self._globals, persistent_load)
        finally:
            for ref in storages.values():
                ref.buf = ref.file = None

    def _zip_span(self, f: io.BufferedReader, info: zipfile.ZipInfo) -> tuple[int, int]:
        """Byte offset and length of a stored (uncompressed) member's data inside the file."""
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"zip member {short(info.filename)} is compressed; torch never compresses checkpoints"
            )
        if info.flag_bits & 0x1:
            raise CheckpointError(f"zip member {short(info.filename)} is encrypted")
        if info.compress_size != info.file_size:
            raise CheckpointError(f"zip member {short(info.filename)} has inconsistent sizes")
        hdr = info.header_offset
        if hdr < 0 or hdr + 30 > self.file_size:
            raise CheckpointError(f"zip member {short(info.filename)} lies outside the file")
        local = _read_exact(f, hdr, 30)
        if local[:4] != b"PK\x03\x04":
            raise CheckpointError(f"zip member {short(info.filename)} has a bad local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = hdr + 30 + name_len + extra_len
        if start + info.file_size > self.file_size:
            raise CheckpointError(f"zip member {short(info.filename)} extends beyond the end of the file (truncated)")
        return start, info.file_size

    def _zip_member(self, f: io.BufferedReader, info: zipfile.ZipInfo) -> bytes:
        start, length = self._zip_span(f, info)
        return _read_exact(f, start, length)

    # -- plain pickle / legacy ------------------------------------------------------------------
    def _read_pickle_file(self, data: bytes) -> Any:
        stream = io.BytesIO(data)
        first = self._unpickle(stream, self._globals, None, what="pickle")
        if type(first) is int and first == _LEGACY_MAGIC:
            stream.seek(0)
            return self._read_legacy(stream, data, blob=False)
        return first

    def _read_legacy(self, stream: io.BytesIO, data: bytes, *, blob: bool) -> Any:
        """Parse a legacy `torch.save` stream from `stream`'s position; `data` is its buffer."""
        no_globals: dict[str, StandIn] = {}
        header_start = stream.tell()
        for header, header_big in self._legacy_headers.items():
            # Byte-identical to a header already parsed and checked: same result, skip the work.
            if data.startswith(header, header_start):
                stream.seek(header_start + len(header))
                big = header_big
                break
        else:
            magic = self._unpickle(stream, no_globals, None, what="legacy magic number")
            if type(magic) is not int or magic != _LEGACY_MAGIC:
                raise CheckpointError("legacy stream lacks the torch magic number")
            protocol = self._unpickle(stream, no_globals, None, what="legacy protocol")
            if type(protocol) is not int or protocol != _LEGACY_PROTOCOL:
                raise CheckpointError(f"legacy protocol version is {short(protocol)}, not 1001")
            sys_info = self._unpickle(stream, no_globals, None, what="legacy sys info")
            if type(sys_info) is not dict:
                raise CheckpointError("legacy sys info is not a dict")
            big = sys_info.get("little_endian", True) is False
            if len(self._legacy_headers) < 8:
                self._legacy_headers[bytes(data[header_start : stream.tell()])] = big

        globals_table = self._blob_globals if blob else self._globals
        object_start = stream.tell()
        pending: dict[str, _StorageRef] = {}
        views: dict[str, tuple[str, int, int]] = {}

        def parse_pid(pid: Any) -> tuple[str, np.dtype, int, Any]:
            if type(pid) is not tuple or len(pid) != 6 or pid[0] != "storage":
                raise CheckpointError(f"unexpected persistent id (a {short(pid)})")
            _, stype, key, _location, numel, view = pid
            if type(key) is not str:
                raise CheckpointError("storage key is not a string")
            return key, self._storage_dtype(stype), _as_int(numel, "storage size"), view

        def collect(pid: Any) -> _StorageRef:
            key, dtype, numel, view = parse_pid(pid)
            ref = pending.get(key)
            if ref is None:
                ref = pending[key] = _StorageRef(key, dtype, numel, big_endian=big)
            elif ref.dtype != dtype:
                raise CheckpointError(f"storage {short(key)} is used with two element types")
            if view is not None:
                if type(view) is not tuple or len(view) != 3 or type(view[0]) is not str:
                    raise CheckpointError("malformed storage view record")
                vkey = view[0]
                views[vkey] = (key, _as_int(view[1], "view offset"), _as_int(view[2], "view size"))
                return _StorageRef(vkey, dtype, 0, big_endian=big)
            return ref

        # Pass one: find the storages and the end of the object pickle; tensors stay pending.
        outer_mode, self._pending_mode = self._pending_mode, True
        try:
            obj = self._unpickle(stream, globals_table, collect, what="legacy object")
        finally:
            self._pending_mode = outer_mode
        keys = self._unpickle(stream, no_globals, None, what="legacy storage key list")
        if type(keys) is not list or any(type(k) is not str for k in keys):
            raise CheckpointError("legacy storage key list is not a list of strings")
        pos = stream.tell()
        for key in keys:
            ref = pending.get(key)
            if ref is None:
                raise CheckpointError(f"legacy key list names an unknown storage {short(key)}")
            if pos + 8 > len(data):
                raise CheckpointError(f"legacy storage {short(key)} is truncated")
            (count,) = struct.unpack(">q" if big else "<q", data[pos : pos + 8])
            pos += 8
            nbytes = count * ref.dtype.itemsize
            if count < 0 or pos + nbytes > len(data):
                raise CheckpointError(
                    f"legacy storage {short(key)} claims {count} elements but the file holds "
                    f"{max(0, len(data) - pos)} bytes (truncated)"
                )
            ref.numel = count
            ref.buf = data
            ref.offset = pos
            pos += nbytes
        missing = [k for k, r in pending.items() if r.buf is None]
        if missing:
            raise CheckpointError(f"legacy storage {short(missing[0])} has no data")
        resolved = dict(pending)
        for vkey, (base_key, off, size) in views.items():
            base = resolved[base_key]
            if off < 0 or size < 0 or off + size > base.numel:
                raise CheckpointError(f"storage view {short(vkey)} exceeds its base storage")
            resolved[vkey] = _StorageRef(vkey, base.dtype, size, data, base.offset + off * base.dtype.itemsize, big)
        if blob:
            if type(obj) is not _StorageRef:
                raise CheckpointError("storage blob does not hold a storage")
            return resolved[obj.key]
        end = stream.tell()

        def resolve(pid: Any) -> _StorageRef:
            return resolved[parse_pid(pid)[0]]

        # Pass two: the same object pickle with every storage located.
        stream.seek(object_start)
        obj = self._unpickle(stream, globals_table, resolve, what="legacy object")
        stream.seek(end)
        return obj

    # -- unpickling -----------------------------------------------------------------------------
    _pending_mode = False

    def _unpickle(
        self, stream: io.BytesIO, globals_table: dict[str, StandIn], persistent_load, what: str = "pickle"
    ) -> Any:
        unpickler = RestrictedUnpickler(stream, globals_table, persistent_load, self._build_hook, work=self.work)
        try:
            return unpickler.load()
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            raise CheckpointError(f"{what}: {e}" if what != "pickle" else str(e)) from None
        except IndexError:
            raise CheckpointError(f"{what}: corrupt pickle (its stack underflows)") from None
        except (EOFError, struct.error) as e:
            raise CheckpointError(f"{what}: corrupt or truncated pickle ({type(e).__name__})") from None

    def _build_hook(self, inst: Any, state: Any) -> bool:
        """The only state-setting the loader performs (BUILD opcode)."""
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
            inst.__setstate__(state)
            return True
        if type(inst) is NamespaceRecord and type(state) is dict:
            self.work.charge(_DICT_ITEM_WORK * len(state))
            if any(type(k) is not str for k in state):
                return False
            inst.update(state)
            return True
        if type(inst) is dict and (state is None or type(state) is dict):
            # torch state dicts carry `_metadata` (module versions) as instance state: discarded.
            return True
        return False

    def _storage_dtype(self, stype: Any) -> np.dtype:
        if type(stype) is not StandIn or stype.qualname not in _STORAGE_QUALNAMES:
            raise CheckpointError(f"storage type is a {short(stype)}, not a torch storage type")
        return stype.value

    # -- stand-ins ------------------------------------------------------------------------------
    def _rebuild_tensor(self, storage: Any, storage_offset: Any, size: Any, stride: Any, *_rest: Any) -> Any:
        if type(storage) is not _StorageRef:
            raise CheckpointError(f"tensor storage is a {short(storage)}, not a storage")
        offset = _as_int(storage_offset, "storage offset")
        shape = _int_tuple(size, "size")
        strides = _int_tuple(stride, "stride")
        if len(shape) != len(strides):
            raise CheckpointError(f"tensor size {shape} and stride {strides} differ in length")
        if not 0 <= offset < _MAX_DIM:
            raise CheckpointError(f"tensor storage offset {offset} is implausible")
        if self._pending_mode:
            return _PENDING
        numel = math.prod(shape)
        extent = offset + sum((n - 1) * s for n, s in zip(shape, strides)) + 1 if numel else 0
        if extent > storage.numel or offset > storage.numel:
            raise CheckpointError(
                f"tensor of size {shape}, stride {strides}, offset {offset} needs {extent} "
                f"elements but its storage {short(storage.key)} holds {storage.numel}"
            )
        dtype = storage.dtype
        contiguous = numel > 0 and _c_contiguous(shape, strides)
        start = storage.offset + offset * dtype.itemsize
        if contiguous and self.memory_map and storage.file is not None and not storage.big_endian:
            # zero-copy: a read-only view into the memory-mapped file
            return np.frombuffer(storage.buf, dtype=dtype, count=numel, offset=start).reshape(shape)
        self._charge(numel * dtype.itemsize)
        out = np.empty(shape, dtype=dtype)
        if contiguous and storage.file is not None:
            # read straight into the result
            storage.file.seek(start)
            got = storage.file.readinto(out.reshape(-1).view(np.uint8))
            if got != numel * dtype.itemsize:
                raise CheckpointError(f"storage {short(storage.key)} is truncated ({_CHANGED})")
        elif numel:
            raw = np.dtype(f"V{dtype.itemsize}")  # opaque elements: works for every dtype
            span = (extent - offset) * dtype.itemsize
            buf, at = storage.buf, start
            if buf is None or storage.file is not None:  # zip: read the span (never through a map)
                self.work.charge(span // _BYTES_PER_WORK)
                buf, at = _read_exact(storage.file, start, span), 0
            base = np.frombuffer(buf, dtype=raw, count=extent - offset, offset=at)
            view = np.lib.stride_tricks.as_strided(
                base, shape=shape, strides=tuple(s * dtype.itemsize for s in strides), writeable=False
            )
            np.copyto(out.view(raw), view)
            del base, view
        if numel and storage.big_endian and dtype.itemsize > 1:
            swap = np.dtype(f"<f{dtype.itemsize // 2}") if dtype.kind == "c" else np.dtype(f"<u{dtype.itemsize}")
            out.view(swap).byteswap(inplace=True)
        return out

    def _rebuild_tensor_v3(
        self,
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        hooks: Any = None,
        dtype: Any = None,
        *_rest: Any,
    ) -> Any:
        """A tensor of `dtype` over an untyped (byte) storage; offset and strides in elements."""
        if type(storage) is not _StorageRef or storage.dtype.itemsize != 1:
            raise CheckpointError(f"tensor storage is a {short(storage)}, not an untyped storage")
        if type(dtype) is not StandIn or dtype.qualname not in _TORCH_DTYPE_QUALNAMES:
            raise CheckpointError(f"tensor dtype is a {short(dtype)}, not a torch dtype")
        typed = _StorageRef(
            storage.key,
            dtype.value,
            storage.numel // dtype.value.itemsize,
            storage.buf,
            storage.offset,
            storage.big_endian,
            file=storage.file,
        )
        return self._rebuild_tensor(typed, storage_offset, size, stride)

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, hooks: Any = None, *_rest: Any) -> Any:
        if not (isinstance(data, np.ndarray) or data is _PENDING):
            raise CheckpointError(f"parameter data is a {short(data)}, not a tensor")
        return data

    def _load_from_bytes(self, blob: Any) -> _StorageRef:
        if self._in_blob:
            raise UnsafeCheckpointError("storage blob nested inside a storage blob is refused")
        if type(blob) is not bytes:
            raise CheckpointError(f"storage blob is a {short(blob)}, not bytes")
        cached = self._blobs.get(id(blob))
        if cached is not None and cached[0] is blob:  # the same memoized blob, called again
            return cached[1]
        self.work.charge(_BLOB_WORK)  # besides the opcodes of its pickles, charged as they run
        self._in_blob = True
        try:
            ref = self._read_legacy(io.BytesIO(blob), blob, blob=True)
            self._blobs[id(blob)] = (blob, ref)
            return ref
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(f"inside a storage blob: {e}") from None
        except CheckpointError as e:
            raise CheckpointError(f"storage blob: {e}") from None
        finally:
            self._in_blob = False

    def _make_globals(self) -> dict[str, StandIn]:
        table: dict[str, StandIn] = {}

        def add(qualname: str, **kw: Any) -> None:
            table[qualname] = StandIn(qualname, **kw)

        for stype, dtype in _STORAGE_DTYPES.items():
            add(f"torch.{stype}", value=dtype)
        add("torch.storage.UntypedStorage", value=_STORAGE_DTYPES["UntypedStorage"])
        for name, dtype in _TORCH_DTYPES.items():
            add(f"torch.{name}", value=dtype)
        add("torch._utils._rebuild_tensor_v3", call=self._rebuild_tensor_v3)
        add("torch._utils._rebuild_tensor_v2", call=self._rebuild_tensor)
        add("torch._utils._rebuild_tensor", call=self._rebuild_tensor)
        add("torch._utils._rebuild_parameter", call=self._rebuild_parameter)
        add("torch._utils._rebuild_parameter_with_state", call=self._rebuild_parameter)
        add("torch.storage._load_from_bytes", call=self._load_from_bytes)
        add("torch.Size", call=_torch_size)
        add("torch.device", call=_torch_device)
        add("collections.OrderedDict", call=self._ordered_dict)
        add("dnnlib.util.EasyDict", call=self._ordered_dict, new=_new_empty_dict)
        add("dnnlib.EasyDict", call=self._ordered_dict, new=_new_empty_dict)
        add("argparse.Namespace", new=_new_namespace)
        add("numpy.dtype", call=_numpy_dtype)
        add("numpy.core.multiarray.scalar", call=_numpy_scalar)
        add("numpy._core.multiarray.scalar", call=_numpy_scalar)
        add("_codecs.encode", call=self._codecs_encode)
        add("torch_utils.persistence._reconstruct_persistent_obj", call=_persistent_obj)
        return table

    def _ordered_dict(self, *args: Any) -> dict:
        """`OrderedDict(items)` / `EasyDict(items)` -> a plain dict; its items are charged to the
        work budget (the same memoized item list may be passed any number of times)."""
        if len(args) == 1 and type(args[0]) in (dict, list, tuple):
            self.work.charge(_DICT_ITEM_WORK * len(args[0]))
        return _ordered_dict(*args)

    def _codecs_encode(self, *args: Any) -> bytes:
        """`_codecs.encode(text, "latin1")` (how protocol-2 pickles store bytes); the bytes produced
        are charged to the work budget (the same memoized text may be encoded any number of times)."""
        if args and type(args[0]) is str:
            self.work.charge(len(args[0]) // _BYTES_PER_WORK + 1)
        return _codecs_encode(*args)


# ------------------------------------------------------------------------------------------------
# Stand-ins that need no reader state
# ------------------------------------------------------------------------------------------------
_CHANGED = "the file was truncated or changed size while being read"


def _error_text(error: BaseException, limit: int = 100) -> str:
    """The message of a foreign exception, sanitized; never raises (a huge int in the message
    cannot be converted to text, for example)."""
    try:
        return sanitize(str(error), limit)
    except Exception:
        return "no details"


def _read_exact(f: io.BufferedReader, start: int, length: int) -> bytes:
    """`length` bytes of `f` from offset `start`, or CheckpointError when the file ends first."""
    f.seek(start)
    data = f.read(length)
    if len(data) != length:
        raise CheckpointError(f"data at offset {start} extends beyond the end of the file ({_CHANGED})")
    return data


def _torch_size(*args: Any) -> tuple:
    if len(args) != 1 or type(args[0]) not in (tuple, list):
        raise CheckpointError("malformed torch.Size")
    return _int_tuple(args[0], "torch.Size")


def _torch_device(*args: Any) -> str:
    if not 1 <= len(args) <= 2 or type(args[0]) is not str:
        raise CheckpointError("malformed torch.device")
    if len(args) == 1 or args[1] is None:
        return args[0]
    return f"{args[0]}:{_as_int(args[1], 'device index')}"


def _ordered_dict(*args: Any) -> dict:
    if not args:
        return {}
    if len(args) != 1:
        raise CheckpointError("malformed OrderedDict/EasyDict arguments")
    (items,) = args
    if type(items) is dict:
        return dict(items)
    if type(items) not in (list, tuple):
        raise CheckpointError("malformed OrderedDict/EasyDict arguments")
    out = {}
    for pair in items:
        if type(pair) not in (list, tuple) or len(pair) != 2:
            raise CheckpointError("malformed OrderedDict item")
        check_key(pair[0])
        out[pair[0]] = pair[1]
    return out


def _new_empty_dict(*args: Any) -> dict:
    if args:
        raise CheckpointError("malformed EasyDict construction")
    return {}


def _new_namespace(*args: Any) -> NamespaceRecord:
    if args:
        raise CheckpointError("malformed argparse.Namespace construction")
    return NamespaceRecord()


def _numpy_dtype(*args: Any) -> np.dtype:
    if not 1 <= len(args) <= 3 or type(args[0]) is not str or not _SIMPLE_DTYPE.match(args[0]):
        raise UnsafeCheckpointError(
            f"numpy dtype {short(str(args[0]) if args else '')} is refused (only plain numbers)"
        )
    if any(type(a) is not bool for a in args[1:]):
        raise CheckpointError("malformed numpy dtype arguments")
    return np.dtype(args[0], False, True)  # a fresh copy: its BUILD never touches numpy's own


def _check_dtype_state(inst: np.dtype, state: Any) -> None:
    ok = (
        type(state) is tuple
        and len(state) in (8, 9)
        and state[0] in (3, 4)
        and state[1] in ("<", ">", "|", "=")
        and state[2] is None
        and state[3] is None
        and state[4] is None
        and state[5] in (-1, inst.itemsize)
        and state[6] in (-1, inst.alignment)
        and state[7] == 0
        and (len(state) == 8 or state[8] is None)
    )
    if not ok:
        raise UnsafeCheckpointError("numpy dtype state other than a plain byte order is refused")


def _numpy_scalar(*args: Any) -> Any:
    if len(args) != 2 or not isinstance(args[0], np.dtype) or type(args[1]) is not bytes:
        raise CheckpointError("malformed numpy scalar")
    dtype, raw = args
    if len(raw) != dtype.itemsize:
        raise CheckpointError(f"numpy scalar has {len(raw)} bytes for a {dtype} value")
    return np.frombuffer(raw, dtype=dtype)[0]  # numpy scalars are always in native byte order


def _codecs_encode(*args: Any) -> bytes:
    if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafeCheckpointError("_codecs.encode is allowed only for latin-1 byte strings")
    return args[0].encode("latin1")


def _persistent_obj(*args: Any) -> PersistentObject:
    if len(args) != 1 or type(args[0]) is not dict:
        raise CheckpointError("malformed NVlabs persistent object")
    meta = args[0]
    class_name, state = meta.get("class_name"), meta.get("state")
    if meta.get("type") != "class" or type(class_name) is not str or type(state) is not dict:
        raise CheckpointError("malformed NVlabs persistent object record")
    version = meta.get("version")
    return PersistentObject(class_name, state, version if type(version) is int else None)


# ------------------------------------------------------------------------------------------------
# Public functions
# ------------------------------------------------------------------------------------------------
def read_checkpoint(
    path: str | os.PathLike,
    *,
    max_total_bytes: int | None = None,
    memory_map: bool = False,
    max_work: int | None = None,
) -> Any:
    """Read a torch checkpoint or NVlabs network pickle safely (nothing from the file executes).

    Args:
      path: a `torch.save` zip (torch >= 1.6), a legacy `torch.save` file, or a plain pickle.
      max_total_bytes: budget for all tensor data materialised; default
        `DEFAULT_BUDGET_FACTOR * file size + DEFAULT_BUDGET_SLACK`.
      memory_map: zip format only: return contiguous little-endian tensors as read-only views
        into a memory map of the file (nothing copied, nothing charged to the budget; the map
        lives as long as the arrays, and the file must not change while they are used). Other
        tensors are copied as usual.
      max_work: budget of work units for the whole read (pickle opcodes, nested blobs included,
        plus the elements and bytes stand-ins produce); default
        `DEFAULT_WORK_PER_BYTE * file size + DEFAULT_WORK_FLOOR`.

    Returns:
      The pickled object with tensors as C-contiguous numpy arrays (see the module docstring for
      every type mapping).

    Raises:
      UnsafeCheckpointError: the file names a global outside the allow-list or uses a refused
        opcode / state-setting step (message: file name and what was refused).
      CheckpointError: unreadable, truncated, changed while being read, corrupt, not a checkpoint,
        or over the byte or work budget.
    """
    return CheckpointReader(path, max_total_bytes=max_total_bytes, memory_map=memory_map, max_work=max_work).read()


def _module_state(module: Any, where: str) -> dict:
    if isinstance(module, PersistentObject):
        return module.state
    if type(module) is dict and ("_parameters" in module or "_modules" in module):
        return module
    raise CheckpointError(f"{where or 'module'} is a {short(module)}, not a network module")


def module_state_dict(module: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten an NVlabs network (PersistentObject / module-state dict) into `state_dict()`.

    Walks `_modules` recursively (depth limit `MAX_MODULE_DEPTH`, cycles refused, at most
    `MAX_MODULES` visits: a submodule shared by several parents counts once per parent), collects
    `_parameters` and `_buffers` except names in `_non_persistent_buffers_set`; `None` entries are
    skipped, as torch does. Keys are joined with '.' below `prefix`.
    """
    out: dict[str, np.ndarray] = {}
    on_path: set[int] = set()
    visits = [0]

    def walk(mod: Any, pre: str, depth: int) -> None:
        visits[0] += 1
        if visits[0] > MAX_MODULES:
            raise CheckpointError(f"network has more than {MAX_MODULES} modules (counting shared ones per use)")
        if depth > MAX_MODULE_DEPTH:
            raise CheckpointError(f"module tree deeper than {MAX_MODULE_DEPTH} at {short(pre)}")
        if id(mod) in on_path:
            raise CheckpointError(f"module tree has a cycle at {short(pre or 'the root')}")
        state = _module_state(mod, pre.rstrip("."))
        on_path.add(id(mod))
        non_persistent = state.get("_non_persistent_buffers_set") or set()
        if not isinstance(non_persistent, (set, frozenset, list, tuple)):
            raise CheckpointError(f"{short(pre) or 'module'}: malformed non-persistent buffer set")
        for group in ("_parameters", "_buffers"):
            tensors = state.get(group) or {}
            if type(tensors) is not dict:
                raise CheckpointError(f"{short(pre) or 'module'}.{group} is not a dict")
            for name, value in tensors.items():
                if value is None or (group == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(value, np.ndarray):
                    raise CheckpointError(f"{short(pre + str(name))} is a {short(value)}, not a tensor")
                out[pre + str(name)] = value
        children = state.get("_modules") or {}
        if type(children) is not dict:
            raise CheckpointError(f"{short(pre) or 'module'}._modules is not a dict")
        for name, child in children.items():
            if child is not None:
                walk(child, f"{pre}{name}.", depth + 1)
        on_path.discard(id(mod))

    walk(module, f"{prefix}." if prefix and not prefix.endswith(".") else prefix, 0)
    return out


def _plain(value: Any, depth: int = 0, visits: list[int] | None = None) -> Any:
    visits = visits if visits is not None else [0]
    visits[0] += 1
    if visits[0] > MAX_KWARGS_NODES:
        raise CheckpointError(f"init kwargs hold more than {MAX_KWARGS_NODES} values (counting shared ones per use)")
    if depth > 32:
        raise CheckpointError("init kwargs nested too deeply")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1, visits) for k, v in value.items()}
    if type(value) is list:
        return [_plain(v, depth + 1, visits) for v in value]
    if type(value) is tuple:
        return tuple(_plain(v, depth + 1, visits) for v in value)
    return value


def init_kwargs(module: Any) -> dict:
    """The module's `_init_kwargs` (z_dim, w_dim, img_resolution, mapping_kwargs, ...) as plain
    python values (dicts, lists, numbers, strings; numpy scalars converted)."""
    state = _module_state(module, "network")
    kwargs = state.get("_init_kwargs")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"network _init_kwargs is a {short(kwargs)}, not a dict")
    return _plain(kwargs)
