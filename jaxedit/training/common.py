"""What jaxedit.training.classifier and jaxedit.training.transformers share: the workdir layout, resuming and running a stage
(`resume_state`, `run_stage`), the distributed start and the device mesh.

Workdir layout (one DIR can hold both stages)::

    DIR/
      metrics.jsonl                 JSON lines, {"stage", "step", "epoch", "attribute", "metrics": {loss: value}}
      checkpoints/classifier/       orbax train-state checkpoints of the classifier stage
      checkpoints/transformers/     ... of the transformer stage
      classifier/                   the trained classifier (an editors directory with no transformers)
      editors/                      the trained editors (classifier + K transformers)
      classifier_losses.png, transformer_losses.png
      classifier_run.json, transformers_run.json    the config and the outcome of each stage

The command lines (`python -m train.classifier`, `jaxedit train transformers`, ...) and their exit
statuses live in `jaxedit.cli.train` and `jaxedit.cli.errors`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.errors import ConfigError
from jaxedit.io import atomic_write_text
from jaxedit.training.checkpoint import TrainCheckpointer
from jaxedit.training.configs import TrainConfig
from jaxedit.training.loop import BatchOrder, LoopResult, MetricsLog, Schedule, run_steps

# Fields that do not change what a run computes: a resume may change them.
RESUME_FREE_FIELDS = (
    "progress",
    "checkpoint_every",
    "checkpoint_seconds",
    "keep_checkpoints",
    "max_steps",
    "classifier",
    "generator",
    "latents",
    "labels",
    "mesh_attributes",
    "mesh_data",
    "distributed",
    "coordinator_address",
    "num_processes",
    "process_id",
)


def checkpoint_dir(workdir: Path, stage: str) -> Path:
    return Path(workdir) / "checkpoints" / stage


def run_fingerprint(config: TrainConfig, extra: dict | None = None) -> dict:
    """The parts of a config a resumed run must share with the interrupted one."""
    values = config.to_dict()
    for field in RESUME_FREE_FIELDS:
        values.pop(field, None)
    values.pop("name", None)
    values.update(extra or {})
    return values


def data_digest(latents: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the training arrays (shapes and bytes): a resume must read the same data, not just as many rows."""
    import hashlib

    digest = hashlib.sha256()
    for array in (latents, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def check_resume_fingerprint(saved: dict | None, current: dict, where: Path) -> None:
    """ConfigError naming the first field that differs between the checkpoint's run and this one."""
    if saved is None:
        return
    for key in sorted(set(saved) | set(current)):
        if key == "method":
            saved_method, current_method = saved.get(key) or {}, current.get(key) or {}
            for field in sorted(set(saved_method) | set(current_method)):
                if saved_method.get(field) != current_method.get(field):
                    raise ConfigError(
                        f"{where}: the checkpoint was made with {field}={saved_method.get(field)!r}, this run has "
                        f"{current_method.get(field)!r}; resume with the same config and overrides"
                    )
        elif saved.get(key) != current.get(key):
            raise ConfigError(
                f"{where}: the checkpoint was made with {key}={saved.get(key)!r}, this run has {current.get(key)!r}; "
                "resume with the same config and overrides"
            )


def open_checkpointer(
    workdir: Path, stage: str, config: TrainConfig, resume: bool, num_attributes: int | None = None
) -> TrainCheckpointer:
    """The stage's checkpointer (`num_attributes`: see `TrainCheckpointer`); refuses to start
    afresh over existing checkpoints unless `resume`."""
    directory = checkpoint_dir(workdir, stage)
    checkpointer = TrainCheckpointer(directory, max_to_keep=config.keep_checkpoints, num_attributes=num_attributes)
    if not resume and checkpointer.complete_steps():
        checkpointer.close()
        raise ConfigError(
            f"{directory} already holds checkpoints (steps {checkpointer.complete_steps()}); resume to continue "
            "that run (resume=True), or use another work directory"
        )
    return checkpointer


def start_distributed(config: TrainConfig) -> None:
    """Join the multi-process run when `config.distributed` (before anything touches a device)."""
    if config.distributed:
        from jaxedit.training.sharding import initialize_distributed

        initialize_distributed(
            config.coordinator_address or None,
            config.num_processes or None,
            config.process_id if config.process_id >= 0 else None,
        )


def training_mesh(config: TrainConfig):
    """The `jaxedit.training.sharding` mesh of `config.mesh_attributes` x `config.mesh_data` (on
    one device, the mesh of one)."""
    from jaxedit.training.sharding import make_mesh

    return make_mesh(config.mesh_attributes, config.mesh_data)


def output_dir(workdir: Path) -> Path:
    """Where this process writes metrics, plots and results: WORKDIR on process 0, and
    WORKDIR/.process-<i> on the others of a multi-process run (checkpoints stay shared)."""
    import jax

    index = jax.process_index()
    return Path(workdir) if index == 0 else Path(workdir) / f".process-{index}"


def write_json(path: Path, value: Any) -> None:
    """Write `value` as sorted, indented JSON (numpy scalars/arrays allowed), atomically."""
    atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def progress_bar(config: TrainConfig, total: int, initial: int, stage: str):
    """A tqdm bar (to stderr), or None when `config.progress` is false."""
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (a log file gets the stage lines only)
    return tqdm(
        total=total, initial=initial, desc=stage, unit="step", dynamic_ncols=True, file=sys.stderr, disable=None
    )


def resume_state(
    state: Any,
    checkpointer: TrainCheckpointer,
    metrics: MetricsLog,
    *,
    resume: bool,
    fingerprint: dict,
    stage: str,
    total_steps: int,
    log: Callable[[str], None],
) -> tuple[int, Any]:
    """(start step, state): the newest intact checkpoint's when `resume` finds one (its run
    fingerprint must match `fingerprint`; the state comes back laid out like `state`), else
    (0, `state`). Cuts `metrics` back to `stage`'s lines up to the start step (all of them when
    starting afresh)."""
    for note in checkpointer.notes:
        log(f"{stage}: {checkpointer.directory}: {note}")
    start = 0
    if resume:
        restored = checkpointer.restore_latest(state, warn=lambda message: log(f"{stage}: {message}"))
        if restored is not None:
            start, state, saved = restored
            check_resume_fingerprint(saved.get("fingerprint"), fingerprint, checkpointer.directory)
            log(f"{stage}: resuming at step {start}/{total_steps} from {checkpointer.directory}")
        else:
            log(f"{stage}: no intact checkpoint in {checkpointer.directory}; starting from step 0")
    metrics.truncate(stage, start) if start else metrics.reset(stage)
    return start, state


def run_stage(
    state: Any,
    config: TrainConfig,
    *,
    start: int,
    schedule: Schedule,
    advance: Callable,
    checkpointer: TrainCheckpointer,
    record: Callable[[int], dict],
    row_names: Sequence[str],
    finite_rows: Callable,
    metrics: MetricsLog,
    stage: str,
    guard: Any,
    bar_label: str,
) -> LoopResult:
    """`jaxedit.training.loop.run_steps` from `start` with the config's seed, chunking and checkpoint
    cadence, under a progress bar labelled `bar_label` (when `config.progress`)."""
    bar = progress_bar(config, schedule.total_steps, start, bar_label)
    try:
        return run_steps(
            state,
            start_step=start,
            schedule=schedule,
            order=BatchOrder(schedule, config.seed),
            advance=advance,
            steps_per_call=config.steps_per_call,
            checkpointer=checkpointer,
            checkpoint_every=config.checkpoint_every,
            checkpoint_seconds=config.checkpoint_seconds,
            record=record,
            row_names=list(row_names),
            finite_rows=finite_rows,
            metrics_log=metrics,
            stage=stage,
            guard=guard,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
