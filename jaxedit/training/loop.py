"""The training loop shared by the classifier and the transformers: chunks, order, logs, signals.

One run is a fixed sequence of update steps: `Schedule` says how many (epochs x steps per epoch,
drop-last batches, optionally cut at `max_steps`), `BatchOrder` which training rows each step
reads. Epoch e's order is a permutation drawn from (seed, e) alone
(`jaxedit.data.latents.epoch_indices`), so the rows of step s are a pure function of (seed, s): a
run resumed at step s reads exactly what the uninterrupted run read.

`run_steps` advances a state chunk by chunk (one compiled `lax.scan` call per chunk). Chunks are
laid out from each epoch's start in pieces of `steps_per_call` (the last piece of an epoch may be
shorter), so they are the same whether or not a run was interrupted: checkpoints, metrics and
signal handling happen only at chunk boundaries. After every chunk:

- the metrics (means over the chunk, one row per attribute) go to `MetricsLog` (JSON lines);
- losses and params are checked: a non-finite value raises `TrainingError` naming the attribute
  and the step, before anything is saved, so the last good checkpoint stays the newest one;
- a checkpoint is written when the step crossed a multiple of `checkpoint_every`, or when
  `checkpoint_seconds` passed since the last one, and at the end;
- if a SIGTERM/SIGINT arrived (`PreemptionGuard`), a checkpoint is written and `TrainingInterrupted`
  is raised (the CLI turns it into exit status 75).

What the loop calls is passed in (`advance`, `finite_rows`, the checkpointer): the stages
(`jaxedit.training.classifier`, `jaxedit.training.transformers`) give it their step jitted for their
mesh (one device is a mesh of one) and a `jaxedit.training.checkpoint.TrainCheckpointer`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.data.latents import epoch_indices
from jaxedit.errors import ConfigError, TrainingError
from jaxedit.io import atomic_write_text
from jaxedit.training.checkpoint import EXIT_PREEMPTED, PreemptionGuard
from jaxedit.training.sharding import gather_to_host


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at `step` (resume to continue).

    Not an error: the CLI exits with `EXIT_PREEMPTED` (75) and prints how to resume.
    """

    def __init__(self, step: int, total_steps: int, checkpoint_dir: Path, signal_name: str | None):
        self.step = step
        self.total_steps = total_steps
        self.checkpoint_dir = Path(checkpoint_dir)
        self.signal_name = signal_name or "a stop request"
        self.exit_status = EXIT_PREEMPTED
        super().__init__(
            f"stopped by {self.signal_name} at step {step}/{total_steps}; checkpoint saved in {self.checkpoint_dir}"
        )


@dataclasses.dataclass(frozen=True)
class Schedule:
    """num_train rows, drop-last batches of batch_size, `epochs` passes; max_steps > 0 cuts it short."""

    num_train: int
    batch_size: int
    epochs: int
    max_steps: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError(f"schedule: batch_size and epochs must be >= 1, got {self.batch_size}, {self.epochs}")
        if self.num_train < self.batch_size:
            raise ConfigError(
                f"schedule: {self.num_train} training samples are fewer than one batch of {self.batch_size}"
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.num_train // self.batch_size

    @property
    def total_steps(self) -> int:
        full = self.epochs * self.steps_per_epoch
        return min(full, self.max_steps) if self.max_steps > 0 else full

    def epoch_of(self, step: int) -> int:
        """Epoch (0-based) of the step with 0-based index `step`."""
        return step // self.steps_per_epoch

    def chunk_end(self, step: int, steps_per_call: int) -> int:
        """End (exclusive) of the chunk starting at `step`: pieces of steps_per_call from each epoch's start."""
        epoch_start = self.epoch_of(step) * self.steps_per_epoch
        within = step - epoch_start
        end = epoch_start + min((within // steps_per_call + 1) * steps_per_call, self.steps_per_epoch)
        return min(end, self.total_steps)


class BatchOrder:
    """Which training rows each step reads: `indices(start, count)` -> int32 [count, batch_size]."""

    def __init__(self, schedule: Schedule, seed: int):
        self.schedule = schedule
        self.seed = int(seed)
        self._cache: dict[int, np.ndarray] = {}

    def epoch(self, epoch: int) -> np.ndarray:
        """int32 [steps_per_epoch, batch_size]: `jaxedit.data.latents.epoch_indices(seed, epoch, ...)`."""
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            self._cache[epoch] = np.asarray(
                epoch_indices(self.seed, epoch, self.schedule.num_train, self.schedule.batch_size), np.int32
            )
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        rows = np.empty((count, self.schedule.batch_size), np.int32)
        for offset in range(count):
            epoch, position = divmod(start + offset, self.schedule.steps_per_epoch)
            rows[offset] = self.epoch(epoch)[position]
        return rows


class MetricsLog:
    """`WORKDIR/metrics.jsonl`: one JSON object per line, tagged with a `stage` ("classifier", ...).

    Lines: {"stage", "step", "epoch", "attribute", "metrics": {name: mean over the chunk}}; `step`
    counts finished update steps (the value after the chunk); non-finite means are written as null. `truncate(stage, step)` drops a stage's lines after
    `step` (on resume, so the log shows each step once); unreadable lines (a kill mid-write) are
    dropped by `read`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self, stage: str | None = None) -> list[dict]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (stage is None or record.get("stage") == stage):
                records.append(record)
        return records

    def truncate(self, stage: str, step: int) -> None:
        """Keep other stages' lines and this stage's lines with step <= `step` (atomic rewrite)."""
        if not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get("stage") != stage or int(r.get("step", 0)) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def reset(self, stage: str) -> None:
        self.truncate(stage, -1)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
            handle.flush()


class Checkpointer(Protocol):
    """What the loop needs from a checkpointer (a `jaxedit.training.checkpoint.TrainCheckpointer`)."""

    directory: Path

    def save(self, step: int, state: Any, record: dict) -> bool: ...


@dataclasses.dataclass
class LoopResult:
    """The state after the last step, the step reached, and seconds spent in compiled calls."""

    state: Any
    step: int
    seconds: float


@jax.jit
def _finite_per_row(tree: Any) -> jax.Array:
    rows = [
        jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(rows), axis=0)


def rows_all_finite(tree: Any, count: int) -> np.ndarray:
    """bool [count]: row k is True when every leaf's slice `leaf[k]` is finite (leaves are
    [K, ...], K >= count, on any mesh; the answer is gathered to every process)."""
    return gather_to_host(_finite_per_row(tree))[:count]


def _finite_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def run_steps(
    state: Any,
    *,
    start_step: int,
    schedule: Schedule,
    order: BatchOrder,
    advance: Callable[[Any, np.ndarray], tuple[Any, Mapping[str, Any]]],
    steps_per_call: int,
    checkpointer: Checkpointer | None,
    checkpoint_every: int,
    record: Callable[[int], dict],
    row_names: Sequence[str],
    finite_rows: Callable[[Any], Any],
    metrics_log: MetricsLog | None,
    stage: str,
    guard: PreemptionGuard | None = None,
    progress: Any = None,
    checkpoint_seconds: float = 0.0,
) -> LoopResult:
    """Advance `state` from `start_step` to `schedule.total_steps` (see the module docstring).

    advance(state, indices int32 [S, B]) -> (state, {metric: [S, K] or [S]}): S update steps.
    finite_rows(state) -> bool [K]: which rows (attributes) have only finite params.
    record(step) -> JSON-able dict saved beside each checkpoint (seed, epoch, config...).
    row_names: K names for the metric rows (attributes; ["classifier"] for a single model).
    progress: a tqdm-like object (`update(n)`, `set_postfix_str(s)`) or None.
    """
    total = schedule.total_steps
    step = start_step
    seconds = 0.0
    saved_step = start_step
    saved_at = time.monotonic()

    def save(at: int) -> None:
        nonlocal saved_step, saved_at
        if checkpointer is not None and at != saved_step:
            checkpointer.save(at, state, record(at))
            saved_step, saved_at = at, time.monotonic()

    while step < total:
        end = schedule.chunk_end(step, steps_per_call)
        indices = order.indices(step, end - step)
        began = time.perf_counter()
        new_state, metrics = advance(state, indices)
        host_metrics = {name: np.asarray(value, np.float64) for name, value in metrics.items()}
        seconds += time.perf_counter() - began
        _check_finite(stage, row_names, step, host_metrics, finite_rows(new_state), end)
        state = new_state
        if metrics_log is not None:
            metrics_log.append(_chunk_records(stage, schedule, end, row_names, host_metrics))
        if progress is not None:
            progress.update(end - step)
            progress.set_postfix_str(_postfix(host_metrics))
        previous, step = step, end
        if checkpoint_every > 0 and step // checkpoint_every > previous // checkpoint_every:
            save(step)
        elif checkpoint_seconds > 0 and time.monotonic() - saved_at >= checkpoint_seconds and step < total:
            save(step)
        if guard is not None and guard.requested and step < total:
            if checkpointer is None:
                raise TrainingInterrupted(step, total, Path("."), guard.signal_name)
            save(step)
            raise TrainingInterrupted(step, total, checkpointer.directory, guard.signal_name)
    save(step)
    return LoopResult(state=state, step=step, seconds=seconds)


def _check_finite(
    stage: str, row_names: Sequence[str], start: int, metrics: Mapping[str, np.ndarray], finite_params: Any, end: int
) -> None:
    """Raise TrainingError naming the first non-finite attribute and step of a chunk."""
    for name, values in metrics.items():
        values = values.reshape(values.shape[0], -1)  # [S, K]
        bad = ~np.isfinite(values)
        if bad.any():
            offset, row = map(int, np.argwhere(bad)[0])
            raise TrainingError(
                f"{stage}: non-finite {name} for {_row_label(row_names, row)} at step {start + offset + 1}; "
                "training stopped, the last good checkpoint is kept (lower the lr or check the data)"
            )
    finite_params = np.asarray(finite_params).reshape(-1)
    if not finite_params.all():
        row = int(np.argwhere(~finite_params)[0][0])
        raise TrainingError(
            f"{stage}: non-finite parameters for {_row_label(row_names, row)} after step {end}; "
            "training stopped, the last good checkpoint is kept (lower the lr or check the data)"
        )


def _row_label(row_names: Sequence[str], row: int) -> str:
    name = row_names[row] if row < len(row_names) else f"row {row}"
    return f"attribute {name}" if name != "classifier" else "the classifier"


def _chunk_records(
    stage: str, schedule: Schedule, end: int, row_names: Sequence[str], metrics: Mapping[str, np.ndarray]
) -> list[dict]:
    epoch = schedule.epoch_of(end - 1)
    records = []
    for row, name in enumerate(row_names):
        values_of_row = {}
        for metric, values in metrics.items():
            values = values.reshape(values.shape[0], -1)
            values_of_row[metric] = _finite_float(float(values[:, row].mean()))
        records.append({"stage": stage, "step": end, "epoch": epoch, "attribute": name, "metrics": values_of_row})
    return records


def _postfix(metrics: Mapping[str, np.ndarray]) -> str:
    parts = []
    for name in list(metrics)[:3]:
        parts.append(f"{name} {float(np.mean(metrics[name])):.4g}")
    return ", ".join(parts)


def loss_curves(
    records: Sequence[Mapping[str, Any]], metric_names: Sequence[str]
) -> dict[str, dict[str, tuple[list, list]]]:
    """{attribute: {metric: (steps, values)}} from metric lines (for `jaxedit.viz.plots.small_multiples`)."""
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    for record in sorted(records, key=lambda r: int(r.get("step", 0))):
        panel = panels.setdefault(str(record.get("attribute")), {})
        values = record.get("metrics") or {}
        for metric in metric_names:
            if metric in values:
                xs, ys = panel.setdefault(metric, ([], []))
                xs.append(int(record["step"]))
                ys.append(float("nan") if values[metric] is None else float(values[metric]))
    return panels
