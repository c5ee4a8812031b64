"""Read one hostile file in a fresh process and report how it ended (used by test_hostile_files.py).

    python tests/helpers/hostile_worker.py OPERATION PATH [JSON_ARGUMENTS]

prints one JSON line: {"error": the JaxeditError subclass raised or null, "message": its text,
"seconds": the operation's wall time, "max_rss_mb": the process's peak resident memory}. Any other
exception escapes as a traceback (exit status 1); a crash (SIGBUS...) shows as a negative status.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def _operation(name: str, path: str, args: dict):
    from jaxedit.convert.torch_reader import CheckpointReader, read_checkpoint

    if name == "read":
        return lambda: read_checkpoint(path)
    if name == "convert":
        from jaxedit.convert.stylegan2 import params_from_checkpoint

        return lambda: params_from_checkpoint(read_checkpoint(path), what=Path(path).name)
    if name == "read_truncating":
        # Another writer cuts the file to `keep` bytes while the reader is inside it (after the
        # pickle, before the tensor bytes): a memory-mapped read would die of SIGBUS here.
        original = CheckpointReader._rebuild_tensor

        def rebuild_then_cut(self, *call_args):
            if not getattr(self, "_cut", False):
                self._cut = True
                os.truncate(path, args["keep"])
            return original(self, *call_args)

        CheckpointReader._rebuild_tensor = rebuild_then_cut
        return lambda: read_checkpoint(path)
    if name == "load_npz":
        from jaxedit.io import load_npz

        return lambda: load_npz(path, args["names"])
    if name == "load_array":
        from jaxedit.io import load_array

        return lambda: load_array(path, float32=True, finite=True)
    raise SystemExit(f"unknown operation {name!r}")


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; `ru_maxrss` would include the parent's, which
    Linux carries across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    name, path = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    from jaxedit.errors import JaxeditError

    call = _operation(name, path, args)
    error = None
    start = time.perf_counter()
    try:
        call()
    except JaxeditError as caught:
        error = caught
    seconds = time.perf_counter() - start
    report = {
        "error": type(error).__name__ if error is not None else None,
        "message": str(error) if error is not None else "",
        "seconds": seconds,
        "max_rss_mb": _peak_rss_mb(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
