"""Training checkpoints that survive kills and bit rot, and a SIGTERM/SIGINT guard.

- `TrainCheckpointer` keeps a training run's state (any pytree of arrays: params, optimizer state)
  plus a small JSON record in numbered steps under `WORKDIR/checkpoints/<stage>/`, through orbax's
  `CheckpointManager` (one `StandardSave` item for the state, one `JsonSave` item for the record).
  orbax finalizes a step only once it is complete, and `complete_steps()` are the manager's steps.
  The state may be numpy arrays or global `jax.Array`s on any mesh (every process writes its own
  shards); a restore reads into the template's shardings, so a checkpoint saved on one mesh
  restores on another mesh shape or on one device.
- Integrity: the record carries a sha256 of the state (the host arrays in canonical tree order,
  without the dummy attribute rows of a padded state) and a sha256 of the record itself. A restore
  verifies both; `restore_latest` sets a step that fails (unreadable, or a checksum that does not
  match) aside as `damaged-<step>`, says so, and falls back to the previous intact step.
  Staging directories of a save that never finished are removed when the directory is opened,
  and `damaged-<step>` directories are listed then (`notes`), so nothing is left unexplained.
- orbax's and tensorstore's own error logs (tracebacks from their threads) are held back during a
  save or a restore (unless the "absl" logger is set to DEBUG); the failure comes back as one
  `TrainingError` line, chained to the original exception.
- `PreemptionGuard` turns the first SIGTERM or SIGINT into a flag the training loop polls between
  compiled calls: the call in flight finishes, the loop saves and exits with `EXIT_PREEMPTED` (75,
  EX_TEMPFAIL: "try again", i.e. rerun with `--resume`). A second SIGINT interrupts at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxedit.errors import ConfigError, TrainingError
from jaxedit.orbax_logs import one_line, quiet_orbax
from jaxedit.training.sharding import gather_to_host, pad_attributes, unpad_attributes

EXIT_PREEMPTED = 75  # EX_TEMPFAIL from sysexits.h: stopped by a signal, state saved, rerun with --resume
STATE_ITEM = "state"
RECORD_ITEM = "record"
DAMAGED_PREFIX = "damaged-"


class PreemptionGuard:
    """Context manager: the first SIGTERM/SIGINT sets `requested` instead of killing the process.

    Poll `guard.requested` between compiled calls; `guard.signal_name` says which signal came.
    Handlers are installed only in the main thread (signals are delivered there) and the previous
    handlers come back on exit. A second SIGINT raises `KeyboardInterrupt` straight away.
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)):
        self._signals = tuple(signals)
        self._previous: dict[int, Any] = {}
        self._event = threading.Event()
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, name: str = "request") -> None:
        """Ask the loop to stop at the next boundary (what a signal does; also usable from code)."""
        if self.signal_name is None:
            self.signal_name = name
        self._event.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self._event.is_set():
            print(
                f"\n{name} received: finishing the step in flight, then saving a checkpoint "
                "(press Ctrl-C again to stop at once, losing unsaved steps)",
                file=sys.stderr,
                flush=True,
            )
        self.request(name)

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class TrainCheckpointer:
    """Numbered checkpoints of a training state (a pytree of arrays) and a JSON record per step.

    `num_attributes`: the state's leaves are stacked ``[K_padded, ...]`` over attributes of which
    the first K are real (`jaxedit.training.sharding.pad_attributes`); layouts and checksums then
    cover those K rows only, and a restore re-pads to the template's row count. None: the state
    has no attribute axis. `save` is synchronous: when it returns the step is on disk and
    finalized; the newest `max_to_keep` steps are kept.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2, *, num_attributes: int | None = None):
        import orbax.checkpoint as ocp

        self.directory = Path(directory).absolute()
        self.num_attributes = num_attributes
        try:
            str(self.directory).encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"{self.directory!r}: not a UTF-8 path; orbax checkpoints need one") from None
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"{self.directory}: exists and is not a directory (expected checkpoints)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.notes = [
            f"removed {name}: a save that did not finish" for name in sorted(ocp.step.tmp_checkpoints(self.directory))
        ] + [
            f"{path.name}: set aside in an earlier run (it failed verification); delete it when no longer needed"
            for path in sorted(self.directory.glob(DAMAGED_PREFIX + "*"))
        ]
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False, cleanup_tmp_directories=True
        )
        self._ocp = ocp
        with quiet_orbax():
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=(STATE_ITEM, RECORD_ITEM))

    def close(self) -> None:
        with quiet_orbax():
            self._manager.close()

    def __enter__(self) -> TrainCheckpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def complete_steps(self) -> list[int]:
        """The finalized steps, ascending."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, record: dict) -> bool:
        """Write `state` and `record` (JSON-able; `step`, the layout and the checksums are added) at
        `step`. Returns False (and writes nothing) when `step` is already saved."""
        if int(step) in self._manager.all_steps():
            return False
        state = jax.tree.map(lambda leaf: leaf if isinstance(leaf, jax.Array) else np.asarray(leaf), state)
        record = {
            **record,
            "step": int(step),
            "layout": state_layout(state, self.num_attributes),
            "rows": _rows(state, self.num_attributes),
            "state_sha256": state_digest(state, self.num_attributes),
        }
        record["record_sha256"] = record_digest(record)
        args = self._ocp.args.Composite(
            **{STATE_ITEM: self._ocp.args.StandardSave(state), RECORD_ITEM: self._ocp.args.JsonSave(record)}
        )
        try:
            with quiet_orbax():
                self._manager.save(int(step), args=args, force=True)
                self._manager.wait_until_finished()
        except Exception as error:
            raise TrainingError(f"{self.directory}: cannot write checkpoint step {step} ({one_line(error)})") from error
        return True

    def restore(self, step: int, template: Any) -> tuple[Any, dict]:
        """(state, record) at `step`, laid out like `template` (arrays or `jax.ShapeDtypeStruct`s;
        `jax.Array`s and structs with a sharding are restored with it, numpy leaves as numpy).

        TrainingError when the step cannot be read or fails its checksums; ConfigError when it
        holds the state of another setup (other shapes, attributes or config)."""
        where = self.directory / str(step)
        args = self._ocp.args.Composite(**{RECORD_ITEM: self._ocp.args.JsonRestore()})
        record = self._read(step, args, where)[RECORD_ITEM]
        if not isinstance(record, dict) or "record_sha256" not in record:
            raise TrainingError(f"{where}: the record holds no checksum (not written by this version of jaxedit)")
        if record["record_sha256"] != record_digest(record):
            raise TrainingError(f"{where}: the record does not match its checksum")
        wanted = state_layout(template, self.num_attributes)
        if record.get("layout") != wanted:
            raise ConfigError(
                f"{where}: checkpoint of a different training setup ({_first_difference(record.get('layout'), wanted)}); "
                "resume with the same config, overrides and attributes as the interrupted run"
            )
        saved_rows = record.get("rows")
        target = jax.tree.map(lambda leaf: _restore_target(leaf, saved_rows), template)
        args = self._ocp.args.Composite(**{STATE_ITEM: self._ocp.args.StandardRestore(target)})
        state = self._read(step, args, where)[STATE_ITEM]
        if state_digest(state, self.num_attributes) != record.get("state_sha256"):
            raise TrainingError(f"{where}: the arrays do not match the checksum saved with them")
        return self._fit(state, template, saved_rows), record

    def restore_latest(self, template: Any, warn: Callable[[str], None] | None = None) -> tuple[int, Any, dict] | None:
        """(step, state, record) of the newest intact checkpoint, or None if there is none.

        Steps that cannot be read or fail their checksums are set aside as `damaged-<step>`,
        each with a warning (through `warn`) naming the step and the reason.
        """
        warn = warn or (lambda message: warnings.warn(message, stacklevel=2))
        for step in reversed(self.complete_steps()):
            try:
                state, record = self.restore(step, template)
            except TrainingError as error:
                warn(f"skipping checkpoint step {step} (set aside as {self._set_aside(step)}): {error}")
                continue
            return step, state, record
        return None

    def _read(self, step: int, args: Any, where: Path) -> Any:
        try:
            with quiet_orbax():
                return self._manager.restore(int(step), args=args)
        except MemoryError:
            raise
        except Exception as error:  # orbax and tensorstore raise many types for damaged directories
            raise TrainingError(f"{where}: cannot read it ({one_line(error)})") from error

    def _fit(self, state: Any, template: Any, saved_rows: int | None) -> Any:
        """A state read with `saved_rows` rows, re-padded to the template's row count."""
        rows = _rows(template, self.num_attributes)
        if rows is None or saved_rows == rows:
            return state
        refit = lambda tree: pad_attributes(unpad_attributes(tree, self.num_attributes), rows)
        shardings = [getattr(leaf, "sharding", None) for leaf in jax.tree.leaves(template)]
        if any(sharding is None for sharding in shardings):
            return refit(gather_to_host(state))
        out = jax.tree.unflatten(jax.tree.structure(template), shardings)
        return jax.jit(refit, out_shardings=out)(state)

    def _set_aside(self, step: int) -> str:
        """Move a damaged step out of the manager's sight (process 0 renames; all wait for it)."""
        name = f"{DAMAGED_PREFIX}{step}"
        if jax.process_index() == 0:
            target = self.directory / name
            if target.exists():
                shutil.rmtree(target)
            os.replace(self.directory / str(step), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxedit set aside {self.directory} {step}")
        self._manager.reload()
        return name


def _rows(tree: Any, num_attributes: int | None) -> int | None:
    if num_attributes is None:
        return None
    return next((int(np.shape(leaf)[0]) for leaf in jax.tree.leaves(tree) if np.ndim(leaf) >= 1), None)


def _dtype(leaf: Any) -> np.dtype:
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype


def state_layout(tree: Any, num_attributes: int | None = None) -> list[list]:
    """JSON-able description of a state pytree: [path, shape, dtype] per leaf (leading axes cut to
    `num_attributes` when given)."""
    layout = []
    for path, leaf in jax.tree.flatten_with_path(tree)[0]:
        shape = list(np.shape(leaf))
        if num_attributes is not None and shape:
            shape[0] = min(shape[0], int(num_attributes))
        layout.append([jax.tree_util.keystr(path), shape, str(_dtype(leaf))])
    return layout


def state_digest(tree: Any, num_attributes: int | None = None) -> str:
    """sha256 over the host arrays of a state in tree order: each leaf's path, dtype, shape and
    bytes (the first `num_attributes` rows of each leaf with a leading axis, when given)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree.flatten_with_path(gather_to_host(tree))[0]:
        array = np.asarray(leaf)
        if num_attributes is not None and array.ndim:
            array = array[: int(num_attributes)]
        array = np.ascontiguousarray(array)
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def record_digest(record: dict) -> str:
    """sha256 of a record's canonical JSON, without its own `record_sha256`."""
    body = {key: value for key, value in record.items() if key != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _restore_target(leaf: Any, saved_rows: int | None) -> Any:
    """What orbax reads a leaf into: the template's shape with the saved row count, in the
    template's sharding (replicated on its mesh when the saved rows do not split over it)."""
    shape = tuple(np.shape(leaf))
    if saved_rows is not None and shape:
        shape = (int(saved_rows),) + shape[1:]
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return np.zeros(shape, _dtype(leaf))
    if isinstance(sharding, NamedSharding):
        try:
            sharding.shard_shape(shape)
        except ValueError:
            sharding = NamedSharding(sharding.mesh, P())
    return jax.ShapeDtypeStruct(shape, _dtype(leaf), sharding=sharding)


def _first_difference(saved: Any, wanted: list[list]) -> str:
    if not isinstance(saved, list):
        return "the checkpoint records no state layout"
    for (saved_path, saved_shape, saved_dtype), (path, shape, dtype) in zip(saved, wanted):
        if (saved_path, saved_shape, saved_dtype) != (path, shape, dtype):
            return f"saved {saved_path} {tuple(saved_shape)} {saved_dtype}, expected {path} {tuple(shape)} {dtype}"
    return f"saved {len(saved)} arrays, expected {len(wanted)}"
