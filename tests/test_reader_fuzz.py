"""Fuzzing the checkpoint reader (hypothesis): truncations, byte flips, splices, insertions.

For every readable fixture, each mutated file must give either a result made only of inert
types (no stand-in or internal object leaks) or one of our own one-line `JaxeditError`s: no other
exception, no case slower than `CASE_SECONDS`, no process-spawning / import / exec audit event,
`/tmp/jaxedit_pwned` never created (malicious fixtures are spliced in as well), tensor bytes within
the reader's budget, and Python-level peak memory (tracemalloc, which also sees numpy's buffers)
within a small multiple of the file size. Derandomized, so CI sees the same cases every run.
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxedit.convert import torch_reader
from jaxedit.convert.torch_reader import CheckpointReader, NamespaceRecord, PersistentObject
from jaxedit.errors import JaxeditError
from tests.helpers.paths import FIXTURES, STYLEGAN2_FIXTURES

TARGETS = {
    "rosinality_small.pt": (STYLEGAN2_FIXTURES / "rosinality_small.pt", 300),
    "psp_small.pt": (STYLEGAN2_FIXTURES / "psp_small.pt", 200),
    "nvlabs_small.pkl": (STYLEGAN2_FIXTURES / "nvlabs_small.pkl", 300),
    "nvlabs_small_clamp.pkl": (STYLEGAN2_FIXTURES / "nvlabs_small_clamp.pkl", 100),
    "latent_classifier_small.pth": (FIXTURES / "latent_transformer" / "latent_classifier_small.pth", 300),
    "tnet_small.pth.tar": (FIXTURES / "latent_transformer" / "tnet_small.pth.tar", 250),
    "dtypes_zip.pt": (FIXTURES / "reader" / "dtypes_zip.pt", 300),
    "dtypes_legacy.pt": (FIXTURES / "reader" / "dtypes_legacy.pt", 300),
    "malicious_storage.pkl": (STYLEGAN2_FIXTURES / "malicious_storage.pkl", 150),
    "malicious.pt": (STYLEGAN2_FIXTURES / "malicious.pt", 150),
}
DONORS = [p.read_bytes() for p in sorted(STYLEGAN2_FIXTURES.glob("malicious*"))] + [
    (FIXTURES / "reader" / "dtypes_legacy.pt").read_bytes(),
    (STYLEGAN2_FIXTURES / "rosinality_small.pt").read_bytes()[:16_384],
]
DATA = {name: path.read_bytes() for name, (path, _) in TARGETS.items()}
CASE_SECONDS = 5.0
PWNED = Path("/tmp/jaxedit_pwned")
MEMORY_FACTOR = 6  # peak traced bytes <= MEMORY_FACTOR * file size + MEMORY_SLACK
MEMORY_SLACK = 4 << 20
FORBIDDEN_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "subprocess.Popen",
    "exec",
    "compile",
    "import",
    "pickle.find_class",
    "ctypes",
)
INERT_LEAVES = (str, bytes, int, float, complex, bool, type(None), np.ndarray, np.generic, np.dtype)
_ALLOWED_INTERNAL = (torch_reader._StorageRef,)  # a bare storage (not inside a tensor)

_audit_active = False
_audit_events: list[str] = []


def _audit(event: str, args) -> None:
    if _audit_active and event.startswith(FORBIDDEN_EVENTS):
        _audit_events.append(f"{event}:{str(args)[:80]}")


sys.addaudithook(_audit)


class _CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so the reader's own handlers cannot swallow it."""


def _on_alarm(signum, frame):
    raise _CaseTimeout()


def _check_inert(obj, depth: int = 0, seen: set | None = None) -> None:
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 200:
        return
    seen.add(id(obj))
    if isinstance(obj, INERT_LEAVES):
        if isinstance(obj, np.ndarray):
            assert obj.flags.c_contiguous and obj.flags.owndata
        return
    if isinstance(obj, PersistentObject):
        assert isinstance(obj.class_name, str)
        _check_inert(obj.state, depth + 1, seen)
        return
    if isinstance(obj, dict):
        assert type(obj) in (dict, NamespaceRecord)
        for k, v in obj.items():
            _check_inert(k, depth + 1, seen)
            _check_inert(v, depth + 1, seen)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_inert(v, depth + 1, seen)
        return
    assert isinstance(obj, _ALLOWED_INTERNAL), f"non-inert object in result: {type(obj)}"


def _run_case(path: Path, data: bytes, *, trace_memory: bool) -> None:
    global _audit_active
    path.write_bytes(data)
    reader = CheckpointReader(path)
    _audit_events.clear()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    if trace_memory:
        tracemalloc.start()
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    _audit_active = True
    result = error = None
    try:
        result = reader.read()
    except JaxeditError as e:
        error = e
    except _CaseTimeout:
        pytest.fail(f"reading a mutated {path.name} took longer than {CASE_SECONDS} s")
    finally:
        _audit_active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if trace_memory:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert _audit_events == [], list(_audit_events)
    assert not PWNED.exists(), "a mutated checkpoint executed code"
    assert reader.bytes_materialised <= reader.max_total_bytes
    if trace_memory:
        assert peak <= MEMORY_FACTOR * len(data) + MEMORY_SLACK, (peak, len(data))
    if error is not None:
        msg = str(error)
        assert "\n" not in msg and msg.startswith(path.name + ":"), msg
    else:
        _check_inert(result)


def _positions(n: int):
    hot = min(n, 20_000)
    return st.one_of(st.integers(0, n - 1), st.integers(0, hot - 1), st.integers(max(0, n - 4096), n - 1))


@st.composite
def mutations(draw, n: int) -> tuple:
    """A small recipe (applied by `_mutate`), so hypothesis never holds megabytes per example."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "insert", "delete"]))
    if kind == "truncate":
        return (kind, draw(st.integers(0, n - 1)))
    if kind == "flip":
        flips = draw(st.lists(st.tuples(_positions(n), st.integers(1, 255)), min_size=1, max_size=8))
        return (kind, tuple(flips))
    if kind == "delete":
        return (kind, draw(_positions(n)), draw(st.integers(1, 64)))
    donor = draw(st.integers(0, len(DONORS)))  # len(DONORS) stands for the file itself
    return (kind, donor, draw(st.integers(0, 1 << 30)), draw(st.integers(1, 512)), draw(_positions(n)))


def _mutate(data: bytes, recipe: tuple) -> bytes:
    kind = recipe[0]
    if kind == "truncate":
        return data[: recipe[1]]
    out = bytearray(data)
    if kind == "flip":
        for pos, mask in recipe[1]:
            out[pos] ^= mask
        return bytes(out)
    if kind == "delete":
        _, start, length = recipe
        return bytes(out[:start] + out[start + length :])
    _, donor_index, d_start, length, start = recipe
    donor = DONORS[donor_index] if donor_index < len(DONORS) else data
    d_start %= len(donor)
    chunk = donor[d_start : d_start + length]
    if kind == "insert":
        return bytes(out[:start] + chunk + out[start:])
    return bytes(out[:start] + chunk + out[start + len(chunk) :])


_GLOBAL_NAMES = [
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "BFloat16Storage"),
    ("torch.storage", "_load_from_bytes"),
    ("collections", "OrderedDict"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("dnnlib.util", "EasyDict"),
    ("argparse", "Namespace"),
    ("_codecs", "encode"),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("torch", "Size"),
    ("posix", "system"),
    ("builtins", "getattr"),
    ("copyreg", "_reconstructor"),
]


def _short_str(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


@st.composite
def _token(draw) -> bytes:
    simple = [
        b"(",
        b"]",
        b"}",
        b")",
        b"\x8f",
        b"N",
        b"\x88",
        b"\x89",
        b"a",
        b"e",
        b"s",
        b"u",
        b"\x90",
        b"\x91",
        b"t",
        b"\x85",
        b"\x86",
        b"\x87",
        b"l",
        b"d",
        b"0",
        b"1",
        b"2",
        b"\x94",
        b"R",
        b"b",
        b"\x81",
        b"\x93",
        b"Q",
        b"i",
        b"\x82\x01",
        b"c",
        b".",
    ]
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return draw(st.sampled_from(simple))
    if kind == 4:
        return b"K" + bytes([draw(st.integers(0, 255))])
    if kind == 5:
        return b"\x8a\x08" + draw(st.binary(min_size=8, max_size=8))
    if kind == 6:
        return _short_str(
            draw(st.sampled_from(["storage", "cpu", "0", "f4", "latin1", "<", "class", "state", "class_name", "type"]))
        )
    if kind == 7:
        return draw(st.sampled_from([b"h", b"q"])) + bytes([draw(st.integers(0, 6))])
    if kind == 8:
        module, name = draw(st.sampled_from(_GLOBAL_NAMES))
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return b"C" + bytes([4]) + draw(st.binary(min_size=4, max_size=4))


@st.composite
def random_pickles(draw) -> bytes:
    body = b"".join(draw(st.lists(_token(), min_size=1, max_size=40)))
    return b"\x80\x02" + body + b"."


def _fuzz_settings(max_examples: int):
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(autouse=True)
def _no_pwned():
    PWNED.unlink(missing_ok=True)
    yield
    assert not PWNED.exists()


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_fixture(name, tmp_path):
    data = DATA[name]
    path = tmp_path / f"fuzzed_{name}"

    @_fuzz_settings(TARGETS[name][1])
    @given(recipe=mutations(len(data)))
    def run(recipe):
        _run_case(path, _mutate(data, recipe), trace_memory=False)

    run()


def test_fuzz_random_pickles(tmp_path):
    """Random opcode sequences over the allowed and refused opcodes and globals (the machine)."""
    path = tmp_path / "random.pkl"

    @_fuzz_settings(600)
    @given(pickled=random_pickles())
    def run(pickled):
        _run_case(path, pickled, trace_memory=False)

    run()


@pytest.mark.parametrize("name", ["dtypes_zip.pt", "dtypes_legacy.pt", "rosinality_small.pt"])
def test_fuzz_memory_bounded(name, tmp_path):
    """Same mutations, with every allocation traced: peak stays within a few times the file."""
    data = DATA[name]
    path = tmp_path / f"traced_{name}"

    @_fuzz_settings(60)
    @given(recipe=mutations(len(data)))
    def run(recipe):
        _run_case(path, _mutate(data, recipe), trace_memory=True)

    run()
