"""Orbax failures as one line: `quiet_orbax` holds back the tracebacks orbax and asyncio log from
their threads when a save or restore fails, and `one_line` names the error that is raised instead.

Orbax writes and reads in background threads, each with its own event loop. When one write fails
(a full disk, a vanished directory), the error reaches the caller, but the same failure is also
logged, with its traceback, by the thread that hit it, by the sibling writes that were abandoned
and by tensorstore reporting to a loop that is already closed. The caller's one-line error says
all of it; these reports are dropped unless the "absl" logger is set to DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator


def one_line(error: BaseException) -> str:
    """`TypeName: first line of the message` (at most 1000 characters of it)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:1000]}" if text else type(error).__name__


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """Within the block, orbax's thread logs are held back (module docstring); the reports that
    come after a failed save (the abandoned writes) are dropped from then on. Left alone when the
    "absl" logger is set to DEBUG."""
    logger = logging.getLogger("absl")
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    _drop_closed_loop_reports()
    _drop_abandoned_orbax_task_reports()
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _drop_closed_loop_reports() -> None:
    """Tensorstore reports each abandoned read or write to orbax's event loop, closed by then;
    Python prints every such RuntimeError ("Event loop is closed") through `sys.unraisablehook`.
    Drop those reports, keep all others."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_reports", False):
        return

    def hook(unraisable) -> None:
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)

    hook.drops_closed_loop_reports = True
    sys.unraisablehook = hook


class _AbandonedOrbaxTasks(logging.Filter):
    """Drops asyncio's "... exception was never retrieved" reports (of a task, a gathering future
    or a tensorstore future) whose exception comes from orbax or tensorstore."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "exception was never retrieved" not in record.getMessage():
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not (_raised_in_orbax(error) or _tensorstore_status(error))


def _raised_in_orbax(error: BaseException | None) -> bool:
    if error is None:
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return any(f"{os.sep}orbax{os.sep}" in frame.filename for frame in frames)


def _tensorstore_status(error: BaseException | None) -> bool:
    """Set by tensorstore's C++ code: no Python frames, the message led by a status code
    ("OUT_OF_RANGE: Error writing ...")."""
    return (
        isinstance(error, ValueError)
        and error.__traceback__ is None
        and re.match(r"[A-Z][A-Z_]{3,}: ", str(error)) is not None
    )


def _drop_abandoned_orbax_task_reports() -> None:
    """When one of a save's parallel writes fails, orbax raises that error and abandons the sibling
    writes; those that fail too are logged by asyncio, with a traceback, when they are collected,
    often after the save has returned. Drop those reports only."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(existing, _AbandonedOrbaxTasks) for existing in logger.filters):
        logger.addFilter(_AbandonedOrbaxTasks())
