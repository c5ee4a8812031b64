"""Run `jaxedit` in a fresh process with a pause inside the write of a model directory (used by
test_output_safety.py).

    python tests/helpers/output_safety_worker.py barrier DIR COUNT -- JAXEDIT_ARGS...
        once the model is staged, wait until COUNT workers have staged theirs (files in DIR), then
        publish: every writer reaches the final rename together.
    python tests/helpers/output_safety_worker.py stall -- JAXEDIT_ARGS...
        once the model is staged, print "staged" and sleep (to be killed with SIGKILL).
    python tests/helpers/output_safety_worker.py peaks OUT_ARGS_JSON -- GEN_DIR
        run `jaxedit generate GEN_DIR` once per entry of the JSON list of argument lists and print
        one JSON line: the process's peak resident memory (MB) after each run.

The exit status is jaxedit's; stderr carries its messages.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def _pause_after_staging(pause) -> None:
    import jaxedit.modeldir as modeldir

    save = modeldir.save_pytree

    def save_then_pause(directory, tree):
        save(directory, tree)
        pause()

    modeldir.save_pytree = save_then_pause


def _barrier(directory: Path, count: int) -> None:
    (directory / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(directory.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def _stall() -> None:
    print("staged", flush=True)
    time.sleep(600)


def _peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(argv: list[str]) -> int:
    from jaxedit.cli.main import main as jaxedit_main

    split = argv.index("--")
    mode, options, rest = argv[0], argv[1:split], argv[split + 1 :]
    if mode == "barrier":
        _pause_after_staging(lambda: _barrier(Path(options[0]), int(options[1])))
    elif mode == "stall":
        _pause_after_staging(_stall)
    elif mode == "peaks":
        peaks = []
        for extra in json.loads(options[0]):
            status = jaxedit_main(["generate", *rest, *extra])
            if status:
                return status
            peaks.append(_peak_mb())
        print(json.dumps(peaks), flush=True)
        return 0
    return jaxedit_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
