"""What jaxedit.training.classifier and jaxedit.training.transformers share: the workdir layout, resuming and running a stage
(`resume_state`, `run_stage`), CLI glue.

Workdir layout (one DIR can hold both stages)::

    DIR/
      metrics.jsonl                 JSON lines, {"stage", "step", "epoch", "attribute", "metrics": {loss: value}}
      checkpoints/classifier/       orbax train-state checkpoints of the classifier stage
      checkpoints/transformers/     ... of the transformer stage
      classifier/                   the trained classifier (an editors directory with no transformers)
      editors/                      the trained editors (classifier + K transformers)
      classifier_losses.png, transformer_losses.png
      classifier_run.json, transformers_run.json    the config and the outcome of each stage

CLI exit statuses: 0 done; 2 a bad input (one-line message; `--debug` shows the traceback);
75 (EX_TEMPFAIL) stopped by SIGTERM/SIGINT after saving a checkpoint: rerun with `--resume`;
1 training failed (e.g. a non-finite loss), the last good checkpoint kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxedit.cli.main import OneLineErrorParser
from jaxedit.errors import ConfigError, JaxeditError, TrainingError
from jaxedit.io import atomic_write_text
from jaxedit.training.checkpoint import EXIT_PREEMPTED, TrainCheckpointer
from jaxedit.training.configs import TrainConfig, apply_overrides, get_config, parse_override_args
from jaxedit.training.loop import BatchOrder, LoopResult, MetricsLog, Schedule, TrainingInterrupted, run_steps

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_BAD_INPUT = 2

# Fields that do not change what a run computes: a resume may change them.
RESUME_FREE_FIELDS = (
    "progress",
    "checkpoint_every",
    "checkpoint_seconds",
    "keep_checkpoints",
    "max_steps",
    "classifier",
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
    workdir: Path,
    stage: str,
    config: TrainConfig,
    resume: bool,
    make: Callable[..., TrainCheckpointer] = TrainCheckpointer,
) -> TrainCheckpointer:
    """The stage's checkpointer; refuses to start afresh over existing checkpoints without --resume.
    `make(directory, max_to_keep=...)` builds it (e.g. a `jaxedit.training.sharding.ShardedTrainCheckpointer`)."""
    directory = checkpoint_dir(workdir, stage)
    checkpointer = make(directory, max_to_keep=config.keep_checkpoints)
    if not resume and checkpointer.complete_steps():
        checkpointer.close()
        raise ConfigError(
            f"{directory} already holds checkpoints (steps {checkpointer.complete_steps()}); pass --resume to continue "
            "that run, or use another --workdir"
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
    """The `jaxedit.training.sharding` mesh of `config.mesh_attributes` x `config.mesh_data`, or None when
    there is one device in all (the plain one-device program then runs, unchanged)."""
    import jax

    if jax.device_count() == 1 and config.mesh_attributes in (0, 1) and config.mesh_data in (0, 1):
        return None
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

    return tqdm(total=total, initial=initial, desc=stage, unit="step", dynamic_ncols=True, file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# CLI glue


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
    """(start step, state): the newest complete checkpoint's when `resume` finds one (its run
    fingerprint must match `fingerprint`), else (0, `state`). Cuts `metrics` back to `stage`'s
    lines up to the start step (all of them when starting afresh)."""
    import jax
    import jax.numpy as jnp

    start = 0
    if resume:
        restored = checkpointer.restore_latest(state, warn=log)
        if restored is not None:
            start, host_state, saved = restored
            check_resume_fingerprint(saved.get("fingerprint"), fingerprint, checkpointer.directory)
            state = jax.tree.map(jnp.asarray, host_state)
            log(f"{stage}: resuming at step {start}/{total_steps} from {checkpointer.directory}")
        else:
            log(f"{stage}: no checkpoint in {checkpointer.directory}; starting from step 0")
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


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=prog,
        description=description,
        allow_abbrev=False,
        epilog=(
            "Any config field can be overridden with --FIELD VALUE (run fields and method fields, e.g. --lr 1e-3 "
            "--epochs 2 --batch_size 16 --steps_per_call 100 --checkpoint_every 500 --checkpoint_seconds 300 --latents F.npy --labels F.npy). "
            "Exit status: 0 done, 2 bad input, 1 training failed (non-finite), 75 stopped by SIGTERM/SIGINT with a "
            "checkpoint saved (rerun with --resume)."
        ),
    )
    parser.add_argument(
        "--config", default="official", help="named config: paper, official, synthetic (default official)"
    )
    parser.add_argument("--workdir", required=True, help="directory for checkpoints, metrics, plots and the result")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in WORKDIR")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def parse_config(known: argparse.Namespace, extra: Sequence[str], parser: argparse.ArgumentParser) -> TrainConfig:
    """The named config with the `--field value` overrides in `extra` applied."""
    config = get_config(known.config)
    overrides = parse_override_args(extra)
    return apply_overrides(config, overrides)


def resume_command(argv: Sequence[str], module: str) -> str:
    args = list(argv)
    if "--resume" not in args:
        args.append("--resume")
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m", module, *args])


def run_cli(
    prog: str,
    module: str,
    argv: Sequence[str] | None,
    build: Callable[[argparse.ArgumentParser], None],
    work: Callable[[argparse.Namespace, TrainConfig], Any],
    description: str,
) -> int:
    """Parse, run `work(args, config)`, and map outcomes to exit statuses and one-line messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = base_parser(prog, description)
    build(parser)
    known, extra = parser.parse_known_args(argv)
    try:
        config = parse_config(known, extra, parser)
        start_distributed(config)
        started = time.perf_counter()
        work(known, config)
        print(f"{prog}: done in {time.perf_counter() - started:.1f} s; results in {known.workdir}", file=sys.stderr)
        return EXIT_OK
    except TrainingInterrupted as stop:
        print(f"{prog}: {stop}", file=sys.stderr)
        print(f"{prog}: to continue: {resume_command(argv, module)}", file=sys.stderr)
        return EXIT_PREEMPTED
    except TrainingError as error:
        if known.debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    except JaxeditError as error:
        if known.debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, ValueError) as error:
        if known.debug:
            raise
        print(f"{prog}: error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (no checkpoint written for the unfinished steps)", file=sys.stderr)
        return 130
