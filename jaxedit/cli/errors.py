"""The one mapping from outcomes to exit statuses and one-line messages, for every command.

`run_main(prog, work, debug=...)` runs `work()` and returns the exit status:

| status | when |
|---|---|
| 0 | done |
| 1 | `TrainingError`: training cannot go on (a non-finite loss); the last good checkpoint is kept |
| 2 | bad input: a `JaxeditError`, or a file the OS refuses (`OSError`); also argparse usage errors |
| 75 | (EX_TEMPFAIL) training stopped by SIGTERM/SIGINT after writing a checkpoint: rerun with `--resume` |
| 130 | interrupted (Ctrl-C) outside a checkpointed loop |

Errors print one line, `PROG: error: MESSAGE`, made safe by `jaxedit.errors.sanitize`; with
`debug` the exception propagates with its traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import re
import sys
from collections.abc import Callable, Iterator

from jaxedit.errors import JaxeditError, TrainingError, sanitize

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors (a missing flag, `--truncation abc`) in one line too, like every other error;
    an unknown flag gets the closest known ones suggested."""

    def error(self, message: str):
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("--"):
            known = [option for action in self._actions for option in action.option_strings]
            close = difflib.get_close_matches(unknown.group(1).split("=")[0], known, n=3, cutoff=0.6)
            if close:
                message += f"; did you mean {', '.join(close)}?"
        command = "jaxedit" if self.prog.startswith("jaxedit") else self.prog  # one prefix for every jaxedit error
        self.exit(EXIT_BAD_INPUT, f"{command}: error: {sanitize(message, 600)} (see {self.prog} --help)\n")


@contextlib.contextmanager
def flag_named(flag: str) -> Iterator[None]:
    """Library errors raised in the block name `flag` first: `--latent: F.npy: no such file`."""
    try:
        yield
    except JaxeditError as error:
        raise type(error)(f"{flag}: {error}") from error


def _say(prog: str, message: str) -> None:
    print(f"{prog}: {sanitize(message, 1000)}", file=sys.stderr)


def run_main(
    prog: str, work: Callable[[], int | None], *, debug: bool = False, resume_command: str | None = None
) -> int:
    """`work()`'s status (None counts as 0), or the status of what it raised (module docstring).
    `resume_command`: printed after a stop by a signal (the command line that continues the run)."""
    try:
        return int(work() or EXIT_OK)
    except TrainingError as error:
        if debug:
            raise
        _say(prog, f"error: {error}")
        return EXIT_FAILED
    except JaxeditError as error:
        if debug:
            raise
        _say(prog, f"error: {error}")
        return EXIT_BAD_INPUT
    except OSError as error:  # a path that vanished, a full disk, an unreadable file
        if debug:
            raise
        _say(prog, f"error: {type(error).__name__}: {error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:
        from jaxedit.training.loop import TrainingInterrupted  # late: only training raises it (and it imports jax)

        if not isinstance(error, TrainingInterrupted):
            raise
        _say(prog, str(error))
        if resume_command:
            _say(prog, f"to continue: {resume_command}")
        return error.exit_status
