"""Files and directories written atomically, never over anything jaxedit did not write.

Every output is built under a staging name beside its destination (same filesystem) and published
with one rename, so a failure or a kill never leaves a half-written result at the destination:

- Staging names are short and of fixed length, `.jxs-<pid>-<host tag>-<random>` (plus a suffix for
  files), so every legal destination name works, up to the filesystem's 255 bytes.
- A directory is published with an atomic no-replace rename (Linux `renameat2(RENAME_NOREPLACE)`;
  elsewhere an exclusive `mkdir` of the destination, then a rename onto that empty directory). When
  the destination appeared while the result was written, nothing is replaced, the new result is
  discarded and a one-line `ConfigError` says so: of concurrent writers to one destination exactly
  one wins.
- Replacing an existing directory (`overwrite=True`) needs a `why_not_replaceable` check that
  vouches for it (model directories: a jaxedit manifest of the same kind and nothing else), and is
  always refused for a symbolic link, a git checkout, the working directory or one of its parents,
  and a directory holding one of the `inputs` (the files the new result is made from). The swap is
  atomic (`renameat2(RENAME_EXCHANGE)`); the directory swapped out must still be the one checked
  (same inode, check passed again) before it is removed, otherwise it is swapped back.
- A file (`atomic_file`) replaces a file at its destination (the file is the target), never a directory.
- Staging left by a killed process (its pid no longer running on this machine) is removed by the
  next write into the same directory (`remove_stale_staging`).
- New directories get the usual permissions (0o777 less the umask), as `mkdir` gives.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from jaxedit.errors import ConfigError, sanitize

STAGING_PREFIX = ".jxs-"
_STAGING_NAME = re.compile(r"^\.jxs-([0-9]{1,10})-([0-9a-f]{6})-[0-9a-f]{8}(\.[A-Za-z0-9]{1,10})?$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,10})?$")
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2

WhyNotReplaceable = Callable[[Path], "str | None"]
"""A check of an existing directory: None when it may be replaced, else the reason it may not."""


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def staging_name(suffix: str = "") -> str:
    """A fresh staging name `.jxs-<pid>-<host tag>-<8 random hex>` + `suffix` (at most 39 characters)."""
    if not _SUFFIX.match(suffix):
        raise ValueError(f"staging suffix {suffix!r}: expected '' or a short extension like '.npy'")
    return f"{STAGING_PREFIX}{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}{suffix}"


def _process_running(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_staging(directory: str | os.PathLike) -> list[Path]:
    """Remove the staging files and directories in `directory` left by jaxedit processes of this
    machine that are no longer running (a `kill -9`, a power cut); returns what was removed.

    Only names of the exact staging pattern with this machine's host tag and a dead owner pid are
    touched; staging of a running process, of another machine, or anything else is left alone.
    """
    removed = []
    host = _host_tag()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING_NAME.match(entry.name)
        if not match or match.group(2) != host or _process_running(int(match.group(1))):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


@functools.lru_cache(maxsize=1)
def _libc_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Rename with `flags`; False when this system or filesystem cannot (then nothing happened)."""
    function = _libc_renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(target))


def _appeared(destination: Path) -> ConfigError:
    return ConfigError(
        f"{destination} appeared while the result was written; nothing was replaced and the new result was discarded"
    )


def _changed(destination: Path) -> ConfigError:
    return ConfigError(
        f"{destination} changed while the result was written; nothing was replaced and the new result was discarded"
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _check_name(destination: Path) -> None:
    """Refuse, before any work, a name longer than the filesystem of its (existing) parent allows."""
    for parent in (destination.parent, *destination.parent.parents):
        if parent.is_dir():
            try:
                limit = os.pathconf(parent, "PC_NAME_MAX")
            except (OSError, ValueError):
                return
            if len(os.fsencode(destination.name)) > limit:
                raise ConfigError(f"{destination}: the name is longer than the {limit} bytes this filesystem allows")
            return


def _working_directory() -> Path | None:
    try:
        return Path.cwd().resolve()
    except OSError:  # removed meanwhile: then it is no directory we could replace
        return None


def _why_not_replace(destination: Path, why_not_replaceable: WhyNotReplaceable | None, inputs: Sequence) -> str | None:
    if os.path.islink(destination):
        return "it is a symbolic link"
    if not destination.is_dir():
        return "it is not a directory"
    real = destination.resolve()
    if (destination / ".git").exists():
        return "it is a git checkout"
    working = _working_directory()
    if working is not None and working.is_relative_to(real):
        return "it is the working directory or one of its parents"
    for source in inputs:
        if Path(source).absolute().resolve().is_relative_to(real):
            return f"it holds {sanitize(str(source), 200)}, which the new result is made from"
    if why_not_replaceable is None:
        return None if not any(destination.iterdir()) else "nothing vouches that jaxedit wrote what it holds"
    return why_not_replaceable(destination)


def check_destination(
    destination: str | os.PathLike,
    overwrite: bool = False,
    why_not_replaceable: WhyNotReplaceable | None = None,
    inputs: Sequence[str | os.PathLike] = (),
) -> tuple[int, int] | None:
    """Raise the one-line ConfigError `atomic_directory` would raise for `destination` before any
    work; returns the identity (device, inode) of the existing directory that may be replaced, or
    None when there is none."""
    destination = Path(destination).absolute()
    _check_name(destination)
    identity = _identity(destination)
    if identity is None:
        return None
    if not overwrite:
        raise ConfigError(f"{destination} already exists; pass overwrite=True to replace it")
    reason = _why_not_replace(destination, why_not_replaceable, inputs)
    if reason is not None:
        raise ConfigError(f"{destination}: not replacing it: {reason}")
    return identity


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise ConfigError(f"{path}: {blocking} is not a directory") from None


def _make_staging_directory(parent: Path) -> Path:
    while True:
        staging = parent / staging_name()
        try:
            staging.mkdir()  # mode 0o777 less the umask, as any new directory
            return staging
        except FileExistsError:
            continue


def _remove_tree(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.islink(path) or not os.path.isdir(path):
            path.unlink()
        else:
            shutil.rmtree(path)


def _publish_new(staging: Path, destination: Path) -> None:
    """Rename `staging` to `destination`, which must not exist: never replaces anything."""
    try:
        if _renameat2(staging, destination, _RENAME_NOREPLACE):
            return
    except FileExistsError:
        raise _appeared(destination) from None
    try:
        destination.mkdir()  # claims the name; a concurrent writer's mkdir fails
    except FileExistsError:
        raise _appeared(destination) from None
    try:
        os.rename(staging, destination)  # onto the empty directory made just above
    except OSError as error:
        with contextlib.suppress(OSError):
            destination.rmdir()  # only while still empty: someone may have written into it
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise _appeared(destination) from None
        raise


def _still_replaceable(old: Path, identity, why_not_replaceable, inputs) -> bool:
    return _identity(old) == identity and _why_not_replace(old, why_not_replaceable, inputs) is None


def _publish_replacing(staging: Path, destination: Path, identity, why_not_replaceable, inputs) -> None:
    """Swap `staging` in for the verified directory at `destination`, then remove that one."""
    try:
        exchanged = _renameat2(staging, destination, _RENAME_EXCHANGE)
    except FileNotFoundError:  # the old directory went away meanwhile: publish as new
        _publish_new(staging, destination)
        return
    if exchanged:
        try:
            replaceable = _still_replaceable(staging, identity, why_not_replaceable, inputs)
        except BaseException:
            _renameat2(staging, destination, _RENAME_EXCHANGE)
            raise
        if not replaceable:
            _renameat2(staging, destination, _RENAME_EXCHANGE)  # the old one back; the new goes with staging
            raise _changed(destination)
        _remove_tree(staging)  # the old directory, checked before the work and after the swap
        return
    retired = destination.parent / staging_name()
    try:
        os.rename(destination, retired)
    except FileNotFoundError:
        _publish_new(staging, destination)
        return
    try:
        if not _still_replaceable(retired, identity, why_not_replaceable, inputs):
            raise _changed(destination)
        _publish_new(staging, destination)
    except BaseException:
        with contextlib.suppress(Exception):
            _publish_new(retired, destination)  # the old one back where nothing took its place
        raise
    _remove_tree(retired)


@contextlib.contextmanager
def atomic_directory(
    destination: str | os.PathLike,
    overwrite: bool = False,
    why_not_replaceable: WhyNotReplaceable | None = None,
    inputs: Sequence[str | os.PathLike] = (),
) -> Iterator[Path]:
    """Yield a fresh staging directory that becomes `destination` only if the block succeeds.

    Args:
      destination: the directory to write; it must not exist unless `overwrite`.
      overwrite: replace an existing directory, only when `why_not_replaceable` returns None for it
        (without a check, only an empty directory) and it is none of the directories always refused
        (module docstring).
      why_not_replaceable: the check of an existing directory (`WhyNotReplaceable`).
      inputs: the files the result is made from; a directory holding one is never replaced.

    Raises:
      ConfigError: one line, before the block runs when the destination is refused, after it when
        the destination appeared or changed meanwhile (the new result is then discarded).

    On any exception the staging directory is removed and the destination is left as it was.
    """
    destination = Path(destination).absolute()
    identity = check_destination(destination, overwrite, why_not_replaceable, inputs)
    _make_parent(destination)
    remove_stale_staging(destination.parent)
    staging = _make_staging_directory(destination.parent)
    ours = _identity(staging)
    try:
        yield staging
        if identity is None:
            _publish_new(staging, destination)
        else:
            _publish_replacing(staging, destination, identity, why_not_replaceable, inputs)
    except BaseException:
        if _identity(staging) == ours:  # never what a failed swap-back may have left there
            with contextlib.suppress(OSError):  # the error that got us here is the one to report;
                _remove_tree(staging)  # staging that stays is removed by the next write here
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "", remove_stale: bool = True) -> Iterator[Path]:
    """Yield a staging path beside `path` (ending in `suffix`, e.g. ".npy" for `np.save`) that is
    renamed to `path` when the block succeeds, replacing a file there but never a directory.

    On any exception the staging file is removed and `path` is left as it was. Creates the parent
    directory. `remove_stale`: first remove stale staging in the parent (`remove_stale_staging`);
    a writer of many files into one directory does that once and passes False.
    """
    path = Path(path)
    _check_name(path.absolute())
    if os.path.isdir(path) and not os.path.islink(path):
        raise ConfigError(f"{path} is a directory; not replacing it with a file")
    _make_parent(path)
    if remove_stale:
        remove_stale_staging(path.parent)
    staging = path.parent / staging_name(suffix)
    try:
        yield staging
        try:
            os.replace(staging, path)
        except IsADirectoryError:
            raise ConfigError(f"{path} is a directory; not replacing it with a file") from None
    finally:
        staging.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (`atomic_file`); returns the path."""
    with atomic_file(path) as staging:
        staging.write_text(text)
    return Path(path)
