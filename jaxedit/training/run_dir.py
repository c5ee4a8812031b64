"""The run directory of `python -m train` (`jaxedit.training.pipeline`), and how a run resumes.

    RUN/
      work/pipeline.json         the run's `PipelineSettings` (written when the run starts)
      work/checkpoints/...       the stages' checkpoints (removed when the run has finished)
      work/metrics.jsonl, work/classifier/, ...   what the stages write (`jaxedit.training.common`)
      editors/, report.json, report.md, plots/     the results

A run that was stopped (a signal, a crash) continues with `resume=True` on the same directory: the
settings come from `work/pipeline.json`, the world and its labels are rebuilt (they are a pure
function of the settings), each training stage continues from its newest complete checkpoint (a
finished stage from its last one) and the evaluation runs again, so the editors and the report
are the ones an uninterrupted run writes.

Stops: a training stage stops at its next chunk boundary and saves (`PreemptionGuard`); the
world, the labels and the evaluation keep nothing worth saving, so a signal stops them at once
(`stop_at_once`). Either way `PipelineInterrupted` (a `TrainingInterrupted`, exit status 75) says
how far the run got.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxedit.errors import ConfigError
from jaxedit.io import atomic_write_text
from jaxedit.training.loop import TrainingInterrupted

WORK = "work"
SETTINGS_FILE = "pipeline.json"
REPORT_FILE = "report.json"


def default_run_dir() -> str:
    """runs/<UTC timestamp> (relative to the working directory)."""
    return f"runs/{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d-%H%M%S')}"


def settings_path(out: str | Path) -> Path:
    return Path(out) / WORK / SETTINGS_FILE


def check_run_directory(out: str | Path, resume: bool, resume_hint: str = "resume=True") -> None:
    """Refuse (one-line ConfigError, nothing created) a directory this run cannot use: a finished
    run; a stopped run when not resuming (`resume_hint` says how to continue it); nothing to
    resume when resuming; a path that is not a directory."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory (expected a run directory)")
    if (out / REPORT_FILE).exists():
        raise ConfigError(f"{out} already holds a report.json (a finished run); choose another run directory")
    stopped = (out / WORK).exists()
    if resume and not settings_path(out).is_file():
        raise ConfigError(f"{out}: no stopped run to resume here (no {WORK}/{SETTINGS_FILE})")
    if not resume and stopped:
        raise ConfigError(
            f"{out} holds a stopped run ({WORK}/); continue it with {resume_hint}, or choose another run directory"
        )


def read_settings(out: str | Path, settings_type: type) -> Any:
    """The settings a stopped run in `out` was started with (one-line ConfigError if unreadable)."""
    from jaxedit import config

    path = settings_path(out)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the run's settings ({type(error).__name__})") from None
    try:
        return config.from_dict(settings_type, data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def write_settings(out: str | Path, settings: Any) -> None:
    """Create `out/work/` and record the run's settings (the first thing a new run writes)."""
    from jaxedit import config

    path = settings_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(config.to_dict(settings), indent=1, sort_keys=True) + "\n")


def first_difference(saved: Any, current: Any) -> str | None:
    """'field: saved -> current' for the first setting that differs (dotted paths), or None."""
    from jaxedit import config

    def flat(value: Any, prefix: str = "") -> dict:
        if isinstance(value, dict):
            out = {}
            for key in sorted(value):
                out.update(flat(value[key], f"{prefix}{key}."))
            return out
        return {prefix[:-1]: value}

    a, b = flat(config.to_dict(saved)), flat(config.to_dict(current))
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}={a.get(key)!r} (this run: {b.get(key)!r})"
    return None


def remove_checkpoints(out: str | Path) -> None:
    """A finished run needs its checkpoints no more (they are the bulk of `work/`)."""
    shutil.rmtree(Path(out) / WORK / "checkpoints", ignore_errors=True)


class PipelineInterrupted(TrainingInterrupted):
    """The pipeline stopped by a signal outside a training loop (exit status 75; resume to continue)."""

    def __init__(self, out: Path, where: str, signal_name: str | None):
        super().__init__(0, 0, Path(out) / WORK, signal_name)
        self.args = (f"stopped by {self.signal_name} {where}; {out} keeps the finished stages and their checkpoints",)


class _StopNow(BaseException):  # not an Exception: no `except Exception` on the way may swallow it
    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def stop_at_once(guard: Any, out: Path, where: str) -> Iterator[None]:
    """Run work that saves nothing (`where`: what it does, e.g. "evaluating"): a signal the `guard`
    would handle stops it at once (`PipelineInterrupted`, after `guard.request`); a stop already
    requested stops it before it starts.
    Without a guard, or outside the main thread, nothing changes."""
    if guard is None:
        yield
        return
    if guard.requested:
        raise PipelineInterrupted(out, f"before {where}", guard.signal_name)
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        name = signal.Signals(signum).name
        guard.request(name)
        raise _StopNow(name)

    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield
    except _StopNow as stop:
        raise PipelineInterrupted(out, f"while {where}", stop.signal_name) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_if_requested(guard: Any, out: Path, where: str) -> None:
    """PipelineInterrupted when a signal came while a stage was finishing."""
    if guard is not None and guard.requested:
        raise PipelineInterrupted(out, where, guard.signal_name)
