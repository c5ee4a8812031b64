"""Files and directories written atomically, file digests, and bounded reading of user arrays.

Everything jaxedit writes goes through `atomic_directory` / `atomic_file` / `atomic_write_text`
(defined in `jaxedit.atomic`, which says what may be replaced): a staging path beside the
destination and one rename at the end, so a failure or a kill never leaves a half-written result.

Arrays given by users (`.npy` files, `.npz` members) are read with `load_array` / `load_npz`, which
trust nothing in the file: the header is parsed first (never a pickle), its dtype and shape are
checked against what the caller expects and against the bytes really present before anything is
allocated, compressed members are inflated in a stream capped at the size their header declares,
and only the members asked for are read. Every failure is a one-line `InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import math
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from jaxedit.atomic import atomic_directory as atomic_directory
from jaxedit.atomic import atomic_file as atomic_file
from jaxedit.atomic import atomic_write_text as atomic_write_text
from jaxedit.errors import InputError, sanitize


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] = (".png", ".npy")) -> None:
    """Fail before any work when an output path has another extension or cannot be a file."""
    if Path(path).suffix.lower() not in suffixes:
        raise InputError(f"{path}: expected a {' or '.join(suffixes)} path")
    if Path(path).is_dir():
        raise InputError(f"{path}: is a directory")
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{path}: {parent} is not a directory")
            break


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ------------------------------------------------------------------------------------------------
# Bounded reading of .npy / .npz arrays
# ------------------------------------------------------------------------------------------------
DEFAULT_MAX_ARRAY_BYTES = 8 << 30
"""Largest array `load_array` / `load_npz` allocate unless the caller says otherwise (8 GiB)."""
MAX_COMPRESSION_RATIO = 100
"""A compressed .npz member may inflate to at most this many times its compressed size ..."""
SMALL_MEMBER_BYTES = 64 << 20
"""... unless it inflates to no more than this (64 MiB): beyond both it is refused as a bomb."""
MAX_NPZ_MEMBERS = 10_000
_NPY_MAGIC = b"\x93NUMPY"
_NUMERIC_KINDS = "biuf"

ShapePattern = Sequence[int | str | None]
"""An expected shape: an int is an exact size, a str names a free axis ("B"), None is any size."""


def _label(path: str | os.PathLike, what: str | None) -> str:
    return sanitize(f"{what} {path}" if what else str(path), 300)


def _shape_text(pattern: ShapePattern) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in pattern) + "]"


def _matches(shape: tuple[int, ...], pattern: ShapePattern) -> bool:
    return len(shape) == len(pattern) and all(not isinstance(p, int) or p == d for d, p in zip(shape, pattern))


def _not_npy(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "an .npz/zip archive, expected a .npy array"
    if head.startswith(b"\x89PNG"):
        return "a PNG image, not a .npy array"
    if head[:3] == b"\xff\xd8\xff":
        return "a JPEG image, not a .npy array"
    if not head:
        return "an empty file, not a readable .npy array"
    return "not a readable .npy array (it has no NumPy header)"


def _read_header(stream: IO[bytes], label: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a .npy stream positioned at its magic; nothing else read."""
    from numpy.lib import format as npy_format

    head = stream.read(6)
    if head != _NPY_MAGIC:
        raise InputError(f"{label}: {_not_npy(head)}")
    version = stream.read(2)
    try:
        if version == b"\x01\x00":
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        elif version == b"\x02\x00":
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise InputError(f"{label}: unsupported .npy format version {tuple(version)!r}")
    except InputError:
        raise
    except Exception as error:  # ValueError, SyntaxError, RecursionError, MemoryError... from the header text
        raise InputError(f"{label}: unreadable .npy header ({type(error).__name__})") from None
    if len(shape) > 32 or any(d < 0 for d in shape):
        raise InputError(f"{label}: .npy header declares an invalid shape")
    return tuple(shape), bool(fortran), dtype


def _check_header(
    label: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    shapes: Sequence[ShapePattern] | None,
    kinds: str,
) -> int:
    """The array's byte count after checking its dtype and shape against the caller's."""
    if dtype.kind not in kinds or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        wanted = {"b": "bool", "i": "integer", "u": "unsigned", "f": "floating-point"}
        want = "/".join(wanted.get(k, k) for k in kinds)
        raise InputError(f"{label}: holds {sanitize(str(dtype), 40)} values, expected {want} numbers")
    if shapes is not None and not any(_matches(shape, p) for p in shapes):
        expected = " or ".join(_shape_text(p) for p in shapes)
        raise InputError(f"{label}: expected {expected}, got {list(shape)}")
    return math.prod(shape) * dtype.itemsize


def _check_size(label: str, shape: tuple[int, ...], dtype: np.dtype, nbytes: int, max_bytes: int) -> None:
    if nbytes > max_bytes:
        raise InputError(
            f"{label}: shape {list(shape)} of {dtype} needs {nbytes:,} bytes, more than the {max_bytes:,} allowed"
        )


def _read_data(stream: IO[bytes], label: str, shape, fortran: bool, dtype: np.dtype, nbytes: int) -> np.ndarray:
    out = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    view = memoryview(out.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
    done = 0
    while done < nbytes:
        got = stream.readinto(view[done : min(nbytes, done + (64 << 20))])
        if not got:
            raise InputError(f"{label}: data ends after {done} of {nbytes} bytes (truncated, or changed while read)")
        done += got
    if fortran:
        out = out.T
    if not dtype.isnative:
        out = out.astype(dtype.newbyteorder("="))
    return np.ascontiguousarray(out)


def _finish(array: np.ndarray, label: str, float32: bool, finite: bool) -> np.ndarray:
    if float32 and array.dtype != np.float32:
        source = array
        with np.errstate(over="ignore", invalid="ignore"):
            array = array.astype(np.float32)
        if finite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            if source.dtype.kind == "f" and np.all(np.isfinite(source)):
                raise InputError(
                    f"{label}: holds values beyond the float32 range (largest |x| {np.max(np.abs(source)):.3g})"
                )
            raise InputError(f"{label}: contains non-finite values (NaN or infinity)")
    if finite and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{label}: contains non-finite values (NaN or infinity)")
    return array


def load_array(
    path: str | os.PathLike,
    *,
    what: str | None = None,
    shapes: Sequence[ShapePattern] | None = None,
    kinds: str = _NUMERIC_KINDS,
    max_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    float32: bool = False,
    finite: bool = False,
) -> np.ndarray:
    """One array from a `.npy` file, read without trusting the file.

    Args:
      path: the `.npy` file (never unpickled; an .npz, an image or any other file is refused).
      what: how messages name the file ("--ws" gives "--ws PATH: ..."); None names the path alone.
      shapes: allowed shape patterns (`ShapePattern`), checked on the header before any allocation.
      kinds: allowed dtype kinds ("b" bool, "i" int, "u" unsigned, "f" float).
      max_bytes: largest array allocated.
      float32: return float32 (values beyond the float32 range are refused when `finite`).
      finite: refuse NaN and infinities.

    Returns:
      A C-contiguous, native-byte-order array.

    Raises:
      InputError: one line naming the file and what was expected.
    """
    label = _label(path, what)
    path = Path(path)
    with _open_for_reading(path, label, "a .npy file") as handle:
        size = os.fstat(handle.fileno()).st_size
        if not os.path.isfile(path):
            raise InputError(f"{label}: not a regular file, expected a .npy file")
        shape, fortran, dtype = _read_header(handle, label)
        nbytes = _check_header(label, shape, dtype, shapes, kinds)
        present = size - handle.tell()
        if nbytes != present:
            raise InputError(
                f"{label}: its header declares {list(shape)} {dtype} ({nbytes:,} bytes) but the file holds "
                f"{present:,} bytes of data (truncated or damaged)"
            )
        _check_size(label, shape, dtype, nbytes, max_bytes)
        array = _read_data(handle, label, shape, fortran, dtype, nbytes)
    return _finish(array, label, float32, finite)


def is_npz(path: str | os.PathLike) -> bool:
    """Whether `path` starts like a zip archive (an .npz), whatever its name; False if unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")


def npz_names(path: str | os.PathLike, *, what: str | None = None) -> list[str]:
    """The array names of an `.npz` archive (member names without ".npy"), nothing inflated."""
    with _open_npz(path, what) as (archive, _label_text):
        return [info.filename[:-4] for info in archive.infolist() if info.filename.endswith(".npy")]


def _open_for_reading(path: Path, label: str, expected: str):
    """`open(path, "rb")`, its failures as one-line InputErrors naming `label` and what was `expected`."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, expected {expected}") from None
    except OSError as error:
        raise InputError(f"{label}: cannot open ({error.strerror or type(error).__name__})") from None


@contextlib.contextmanager
def _open_npz(path: str | os.PathLike, what: str | None) -> Iterator[tuple[zipfile.ZipFile, str]]:
    label = _label(path, what)
    path = Path(path)
    with _open_for_reading(path, label, "an .npz archive") as handle:
        head = handle.read(6)
        handle.seek(0)
        if head.startswith(_NPY_MAGIC):
            raise InputError(f"{label}: a .npy array, expected an .npz archive")
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")):
            raise InputError(f"{label}: not an .npz archive")
        try:
            archive = zipfile.ZipFile(handle)
        except Exception as error:  # BadZipFile, LargeZipFile, OSError, ValueError, struct.error...
            raise InputError(f"{label}: damaged .npz archive ({type(error).__name__})") from None
        with archive:
            if len(archive.infolist()) > MAX_NPZ_MEMBERS:
                raise InputError(f"{label}: holds more than {MAX_NPZ_MEMBERS} members")
            yield archive, label


def load_npz(
    path: str | os.PathLike,
    names: Sequence[str] | Mapping[str, Sequence[ShapePattern] | None] | None = None,
    *,
    what: str | None = None,
    optional: Sequence[str] = (),
    kinds: str = _NUMERIC_KINDS,
    max_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    float32: bool = False,
    finite: bool = False,
) -> dict[str, np.ndarray]:
    """The named arrays of an `.npz` archive, read without trusting the archive.

    Only the members named are read (all of them when `names` is None); each member's header is
    checked (dtype, `shapes` pattern when `names` maps names to patterns, `max_bytes` in total)
    before it is inflated, and it is inflated in a stream that stops at the size its header
    declares; a compressed member claiming more than `SMALL_MEMBER_BYTES` at over
    `MAX_COMPRESSION_RATIO` times its compressed size is refused as a decompression bomb. Names in
    `optional` may be absent; any other missing name is an InputError. Other arguments as in
    `load_array`.
    """
    patterns = dict(names) if isinstance(names, Mapping) else {n: None for n in names} if names is not None else None
    out: dict[str, np.ndarray] = {}
    with _open_npz(path, what) as (archive, label):
        infos = {info.filename: info for info in archive.infolist()}
        if patterns is None:
            patterns = {name[:-4]: None for name in infos if name.endswith(".npy")}
        budget = max_bytes
        for name, shapes in patterns.items():
            info = infos.get(f"{name}.npy") or infos.get(name)
            if info is None:
                if name in optional:
                    continue
                have = ", ".join(sanitize(n[:-4] if n.endswith(".npy") else n, 40) for n in list(infos)[:8])
                raise InputError(
                    f"{label}: no array {sanitize(name, 60)!r} in the archive (it holds: {have or 'nothing'})"
                )
            member = f"{label}[{sanitize(name, 60)}]"
            out[name] = _finish(_read_member(archive, info, member, shapes, kinds, budget), member, float32, finite)
            budget -= out[name].nbytes
    return out


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, shapes, kinds: str, max_bytes: int):
    if info.flag_bits & 0x1:
        raise InputError(f"{label}: encrypted member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputError(f"{label}: unsupported compression (only stored or deflated members)")
    try:
        with archive.open(info) as stream:
            shape, fortran, dtype = _read_header(stream, label)
            nbytes = _check_header(label, shape, dtype, shapes, kinds)
            header_bytes = stream.tell()
            if info.file_size != header_bytes + nbytes:
                raise InputError(
                    f"{label}: its header declares {list(shape)} {dtype} ({nbytes:,} bytes) but the member holds "
                    f"{max(info.file_size - header_bytes, 0):,} bytes of data (damaged archive)"
                )
            _check_size(label, shape, dtype, nbytes, max_bytes)
            if info.compress_type == zipfile.ZIP_DEFLATED and nbytes > max(
                SMALL_MEMBER_BYTES, MAX_COMPRESSION_RATIO * info.compress_size
            ):
                raise InputError(
                    f"{label}: {info.compress_size:,} compressed bytes claim to inflate to {nbytes:,} "
                    f"(over {MAX_COMPRESSION_RATIO}:1, a decompression bomb?)"
                )
            array = _read_data(stream, label, shape, fortran, dtype, nbytes)
            if stream.read(1):  # also makes zipfile check the member's CRC
                raise InputError(f"{label}: more data than its header declares (damaged archive)")
    except InputError:
        raise
    except Exception as error:  # BadZipFile (CRC), zlib.error, EOFError, OSError...
        raise InputError(f"{label}: damaged archive member ({type(error).__name__})") from None
    return array
