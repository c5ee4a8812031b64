"""Files and directories written atomically, and file digests.

Everything jaxedit writes goes through a staging path beside the destination (same filesystem) and
an `os.replace` at the end, so a failure or a kill never leaves a half-written file or directory.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jaxedit.errors import ConfigError


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def atomic_directory(destination: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory that becomes `destination` only if the block succeeds.

    The staging directory lives beside the destination (same filesystem, so the final rename is
    atomic). On any exception it is removed and the destination is left as it was.
    """
    destination = Path(destination).absolute()
    if destination.exists() and not overwrite:
        raise ConfigError(f"{destination} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"{destination} exists and is not a directory")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        yield staging
        if destination.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
            os.replace(destination, retired / destination.name)
            os.replace(staging, destination)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a staging path beside `path` (`.NAME.partial` + `suffix`, e.g. ".npy" for `np.save`)
    that is renamed to `path` when the block succeeds. On any exception the staging file is
    removed and `path` is left as it was. Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial{suffix}")
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (`atomic_file`); returns the path."""
    with atomic_file(path) as staging:
        staging.write_text(text)
    return Path(path)
