"""Preemption-safe training state: checkpoints that survive kills, and a SIGTERM/SIGINT guard.

- `TrainCheckpointer` keeps a training run's state (any pytree of arrays: params, optimizer state,
  step counters) plus a small JSON record in numbered orbax step directories under
  `WORKDIR/checkpoints/`. orbax writes each step to `<step>.orbax-checkpoint-tmp-<time>/` and renames
  it to `<step>/` only once complete (a `commit_success.txt` is written inside before the rename);
  a process killed while saving leaves only the tmp directory. `complete_steps()` lists just the
  finalized steps (named by a number, holding `commit_success.txt` at the top and in every item,
  with a readable JSON record), and `restore_latest()` falls back to the previous complete step
  when the newest one cannot be read, so a resume always starts from the last complete checkpoint.
- `PreemptionGuard` turns the first SIGTERM or SIGINT into a flag the training loop polls between
  compiled calls: the call in flight finishes, the loop saves and exits with `EXIT_PREEMPTED` (75,
  EX_TEMPFAIL: "try again", i.e. rerun with `--resume`). A second SIGINT interrupts at once.
- `all_finite_per_row` reports, for a pytree whose leaves have a leading attribute axis, which
  rows are entirely finite (used to stop training on a NaN and name the attribute).
"""

from __future__ import annotations

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
import jax.numpy as jnp
import numpy as np

from jaxedit.errors import ConfigError, TrainingError

EXIT_PREEMPTED = 75  # EX_TEMPFAIL from sysexits.h: stopped by a signal, state saved, rerun with --resume
COMMIT_FILE = "commit_success.txt"
TMP_MARKER = ".orbax-checkpoint-tmp"
STATE_ITEM = "state"
RECORD_ITEM = "record"


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


def _to_host(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf), tree)


def is_complete_step_dir(path: Path) -> bool:
    """True for a finalized orbax step directory `<digits>/` holding commit files and a readable record."""
    if not path.is_dir() or path.is_symlink() or not path.name.isdigit() or TMP_MARKER in path.name:
        return False
    if not (path / COMMIT_FILE).is_file():
        return False
    for item in (STATE_ITEM, RECORD_ITEM):
        if not (path / item / COMMIT_FILE).is_file():
            return False
    try:
        record = json.loads((path / RECORD_ITEM / "metadata").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and record.get("step") == int(path.name)


class TrainCheckpointer:
    """Numbered checkpoints of a training state (a pytree of arrays) and a JSON record per step.

    `directory` is created if missing. `save(step, state, record)` is synchronous: when it returns
    the step is on disk and finalized. `max_to_keep` old steps are kept (older ones deleted by orbax
    after a newer one is complete).
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        self.directory = Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"{self.directory}: exists and is not a directory (expected checkpoints)")
        self.directory.mkdir(parents=True, exist_ok=True)
        # Found before orbax starts (it deletes its own tmp directories when it opens the directory).
        self.found_incomplete: list[Path] = self.incomplete_entries()
        for entry in self.found_incomplete:
            if entry.name.isdigit():
                self._quarantine(entry)
            else:
                shutil.rmtree(entry, ignore_errors=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> TrainCheckpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def complete_steps(self) -> list[int]:
        """Steps with a finalized, complete checkpoint, ascending (tmp and damaged ones left out)."""
        return sorted(int(p.name) for p in self.directory.iterdir() if is_complete_step_dir(p))

    def incomplete_entries(self) -> list[Path]:
        """Leftovers that are not complete checkpoints (tmp dirs of interrupted saves, damaged steps)."""
        return sorted(
            p
            for p in self.directory.iterdir()
            if (TMP_MARKER in p.name or p.name.isdigit()) and not is_complete_step_dir(p)
        )

    def _quarantine(self, entry: Path) -> Path:
        """Rename a damaged step directory out of orbax's sight (`damaged-<step>`, replacing an older one)."""
        target = self.directory / f"damaged-{entry.name}"
        if target.exists():
            shutil.rmtree(target)
        os.replace(entry, target)
        return target

    def save(self, step: int, state: Any, record: dict) -> bool:
        """Write `state` (pytree of arrays) and `record` (JSON-able dict; `step` is added) at `step`.

        Returns False (and writes nothing) when `step` is already saved completely.
        """
        record = {**record, "step": int(step), "layout": state_layout(state)}
        if is_complete_step_dir(self.directory / str(step)):
            return False
        args = self._ocp.args.Composite(
            **{
                STATE_ITEM: self._ocp.args.StandardSave(_to_host(state)),
                RECORD_ITEM: self._ocp.args.JsonSave(record),
            }
        )
        self._manager.save(int(step), args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, step: int, template: Any) -> tuple[Any, dict]:
        """(state, record) at `step`; `template` is a pytree of arrays with the expected structure."""
        path = self.directory / str(step)
        if not is_complete_step_dir(path):
            raise TrainingError(f"{path}: not a complete checkpoint")
        saved_layout = json.loads((path / RECORD_ITEM / "metadata").read_text()).get("layout")
        if saved_layout != state_layout(template):
            raise ConfigError(
                f"{path}: checkpoint of a different training setup ({_first_difference(saved_layout, state_layout(template))}); "
                "resume with the same config, overrides and attributes as the interrupted run"
            )
        abstract = jax.tree_util.tree_map(
            lambda leaf: jax.ShapeDtypeStruct(
                np.shape(leaf), np.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
            ),
            template,
        )
        args = self._ocp.args.Composite(
            **{
                STATE_ITEM: self._ocp.args.StandardRestore(abstract),
                RECORD_ITEM: self._ocp.args.JsonRestore(),
            }
        )
        try:
            restored = self._manager.restore(int(step), args=args)
        except Exception as error:  # orbax raises many types for damaged or mismatched directories
            raise TrainingError(f"{path}: cannot restore ({type(error).__name__}: {error})".splitlines()[0]) from error
        state = _to_host(restored[STATE_ITEM])
        _check_same_structure(path, template, state)
        return state, dict(restored[RECORD_ITEM])

    def restore_latest(self, template: Any, warn: Callable[[str], None] | None = None) -> tuple[int, Any, dict] | None:
        """(step, state, record) of the newest checkpoint that restores, or None if there is none.

        Damaged or unreadable newer steps are skipped with a warning (through `warn`).
        """
        warn = warn or (lambda message: warnings.warn(message, stacklevel=2))
        for entry in self.found_incomplete:
            warn(f"ignoring incomplete checkpoint {entry.name} in {self.directory} (a save that did not finish)")
        failures = []
        for step in reversed(self.complete_steps()):
            try:
                state, record = self.restore(step, template)
            except TrainingError as error:
                failures.append(str(error))
                moved = self._quarantine(self.directory / str(step))
                self._manager.reload()
                warn(f"skipping checkpoint step {step} (moved to {moved.name}): {error}")
                continue
            return step, state, record
        if failures:
            raise TrainingError(f"{self.directory}: no checkpoint restores ({failures[0]})")
        return None


def state_layout(tree: Any) -> list[list]:
    """JSON-able description of a state pytree: [path, shape, dtype] per leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [
        [
            jax.tree_util.keystr(path),
            list(np.shape(leaf)),
            str(np.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype),
        ]
        for path, leaf in flat
    ]


def _first_difference(saved: Any, wanted: list[list]) -> str:
    if not isinstance(saved, list):
        return "the checkpoint records no state layout"
    for (saved_path, saved_shape, saved_dtype), (path, shape, dtype) in zip(saved, wanted):
        if (saved_path, saved_shape, saved_dtype) != (path, shape, dtype):
            return f"saved {saved_path} {tuple(saved_shape)} {saved_dtype}, expected {path} {tuple(shape)} {dtype}"
    return f"saved {len(saved)} arrays, expected {len(wanted)}"


def _check_same_structure(path: Path, template: Any, state: Any) -> None:
    expected = jax.tree_util.tree_structure(template)
    found = jax.tree_util.tree_structure(state)
    if expected != found:
        raise TrainingError(f"{path}: checkpoint holds a different state layout than this run expects")
    for want, got in zip(jax.tree_util.tree_leaves(template), jax.tree_util.tree_leaves(state)):
        if np.shape(want) != np.shape(got):
            raise TrainingError(
                f"{path}: checkpoint array of shape {np.shape(got)} where this run expects {np.shape(want)} "
                "(different config or attributes?)"
            )


@jax.jit
def all_finite_per_row(tree: Any) -> jax.Array:
    """[K] bool: row k is True when every leaf's slice `leaf[k]` is finite (leaves are [K, ...])."""
    rows = [
        jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(rows), axis=0)
