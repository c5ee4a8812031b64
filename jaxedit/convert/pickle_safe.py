"""A restricted pickle virtual machine that never runs code named by the data.

`RestrictedUnpickler` subclasses the standard library's pure-Python unpickler
(`pickle._Unpickler`; the C `pickle.Unpickler` cannot be restricted per opcode and preallocates its
memo from a 4-byte index found in the file) and replaces its opcode table with an allow-list:

* globals (GLOBAL, STACK_GLOBAL) resolve only through `find_class`, which looks the exact
  `module.name` up in a table of stand-ins supplied by the caller and raises
  `UnsafeCheckpointError` for anything else; nothing is ever imported;
* INST, OBJ, NEWOBJ_EX, EXT1/2/4 (the copyreg extension registry and its cache bypass
  `find_class`), BYTEARRAY8, NEXT_BUFFER and READONLY_BUFFER are refused outright;
* REDUCE and NEWOBJ call only `StandIn` objects from that table;
* BUILD (state setting) is delegated to `build_hook`, which refuses everything the caller does
  not explicitly accept; SETITEM(S) only fill `dict`s, APPEND(S) only `list`s, ADDITEMS only `set`s;
* dict keys and set members must be plain hashable literals (no attacker-chosen `__hash__`/`__eq__`
  work, no quadratic hash-collision inputs; tuple keys of at most `MAX_KEY_ITEMS` items);
* the work is capped: each pickle runs at most `max_ops` opcodes, and every opcode plus the work the
  caller's stand-ins do (elements they touch, bytes they produce) is charged to a `WorkBudget`
  that the caller may share between all the pickles of one file (nested blobs included), so a
  small file cannot make a memoized object be re-processed millions of times.

Errors raised here are `CheckpointError`/`UnsafeCheckpointError` without the file name; the caller
prefixes it.
"""

from __future__ import annotations

# Codecs the pickle opcodes decode with, imported now rather than lazily mid-read.
import encodings.ascii
import encodings.latin_1
import encodings.raw_unicode_escape
import encodings.utf_8  # noqa: F401
import io
import pickle
from collections.abc import Callable
from typing import Any

from jaxedit.errors import CheckpointError, UnsafeCheckpointError, sanitize

__all__ = ["StandIn", "RestrictedUnpickler", "WorkBudget", "check_key", "short"]

_MAX_OPS_DEFAULT = 5_000_000
_MAX_KEY_DEPTH = 4
MAX_KEY_ITEMS = 64
_INT_KEY_LIMIT = 1 << 60  # ints below 2**61 - 1 hash to themselves: no crafted collisions


def short(value: object, limit: int = 80) -> str:
    """An untrusted string for an error message (`jaxedit.errors.sanitize`d), or the type name of
    anything else (never its repr, which could be huge or costly)."""
    return sanitize(value if isinstance(value, str) else type(value).__name__, limit)


class WorkBudget:
    """Work one read may still do, in units of about one elementary Python step.

    Every executed opcode costs 1; stand-ins charge what they do besides (`charge`): elements
    touched, bytes produced / 8. One budget is shared by all the pickles of one file, nested storage
    blobs included, and its limit is derived from the file size by the caller, so the total work is
    linear in the file size whatever the file references repeatedly.
    """

    __slots__ = ("limit", "used", "what")

    def __init__(self, limit: int, what: str = "this file"):
        self.limit = int(limit)
        self.used = 0
        self.what = what

    def charge(self, units: int) -> None:
        self.used += units
        if self.used > self.limit:
            self.refuse()

    def refuse(self) -> None:
        raise CheckpointError(
            f"reading would take more than {self.limit:,} steps of work, the limit for {self.what} "
            "(a file crafted to make the reader repeat work?)"
        )


class StandIn:
    """What an allowed global resolves to: our own function, never the original object.

    `call` runs for REDUCE (`global(*args)`); `new` (optional) runs for NEWOBJ
    (`cls.__new__(cls, *args)`). A stand-in without `call` may only appear as a value (for example a
    storage type inside a persistent id).
    """

    __slots__ = ("qualname", "call", "new", "value")

    def __init__(
        self,
        qualname: str,
        call: Callable[..., Any] | None = None,
        new: Callable[..., Any] | None = None,
        value: Any = None,
    ):
        self.qualname = qualname
        self.call = call
        self.new = new
        self.value = value

    def __repr__(self) -> str:
        return f"<stand-in for {self.qualname}>"

    def __reduce__(self):  # never pickled back out
        raise TypeError("stand-ins cannot be pickled")


def check_key(key: object, depth: int = 0) -> None:
    """Refuse dict keys / set members whose hashing or comparison an attacker could steer.

    str/bytes hashes are randomized per process; ints below 2**60 hash to themselves; floats
    collide at most a few ways. Tuples have a fixed, invertible hash, so a file could hold many
    colliding int tuples and make dict insertion quadratic: tuple keys may only hold str, bytes,
    bool and None (and such tuples).
    """
    t = type(key)
    if t is str or t is bytes or t is bool or key is None:
        return
    if t is tuple and len(key) > MAX_KEY_ITEMS:
        raise CheckpointError(f"pickle uses a tuple of {len(key)} items as a dict key (limit {MAX_KEY_ITEMS})")
    if depth == 0:
        if t is int:
            if -_INT_KEY_LIMIT < key < _INT_KEY_LIMIT:
                return
            raise CheckpointError("pickle uses an out-of-range integer as a dict key")
        if t is float:
            return
    if t is tuple and depth < _MAX_KEY_DEPTH:
        for item in key:
            check_key(item, depth + 1)
        return
    raise CheckpointError(f"pickle uses a {short(key)} as (part of) a dict key or set member")


class _Stop(Exception):
    def __init__(self, value):
        super().__init__()
        self.value = value


def _refuse(opname: str):
    def handler(self):
        raise UnsafeCheckpointError(f"pickle opcode {opname} is refused by the safe loader")

    handler.__name__ = f"refuse_{opname.lower()}"
    return handler


_BASE = pickle._Unpickler  # the pure-Python implementation shipped by the standard library

_ALLOWED_OPCODES = (
    "MARK",
    "POP",
    "POP_MARK",
    "DUP",
    "FLOAT",
    "INT",
    "BININT",
    "BININT1",
    "LONG",
    "BININT2",
    "NONE",
    "PERSID",
    "BINPERSID",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "GET",
    "BINGET",
    "LONG_BINGET",
    "PUT",
    "BINPUT",
    "LONG_BINPUT",
    "LIST",
    "EMPTY_LIST",
    "TUPLE",
    "EMPTY_TUPLE",
    "BINFLOAT",
    "PROTO",
    "TUPLE1",
    "TUPLE2",
    "TUPLE3",
    "NEWTRUE",
    "NEWFALSE",
    "LONG1",
    "LONG4",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINUNICODE8",
    "BINBYTES8",
    "SHORT_BINUNICODE",
    "EMPTY_SET",
    "EMPTY_DICT",
    "MEMOIZE",
)
_REFUSED_OPCODES = (
    "INST",
    "OBJ",
    "NEWOBJ_EX",
    "EXT1",
    "EXT2",
    "EXT4",
    "BYTEARRAY8",
    "NEXT_BUFFER",
    "READONLY_BUFFER",
)


class RestrictedUnpickler(_BASE):
    """Unpickle one pickle (up to its STOP) from a binary file object, safely.

    Args:
      file: a binary file object positioned at the pickle's first byte; left just after its STOP.
      globals_table: `{"module.name": StandIn}`: the only globals the pickle may name.
      persistent_load: called with each persistent id (BINPERSID/PERSID), returns its object.
      build_hook: `build_hook(inst, state) -> bool`: True when it applied (or deliberately
        discarded) the state; False makes BUILD refuse.
      max_ops: cap on executed opcodes (objects created) for this pickle.
      work: the budget this pickle's opcodes are charged to (shared with the caller's stand-ins
        and the file's other pickles); a fresh `WorkBudget(max_ops)` when None.
    """

    dispatch: dict[int, Callable] = {}

    def __init__(
        self,
        file: io.BufferedIOBase,
        globals_table: dict[str, StandIn],
        persistent_load: Callable[[Any], Any] | None = None,
        build_hook: Callable[[Any, Any], bool] | None = None,
        max_ops: int = _MAX_OPS_DEFAULT,
        work: WorkBudget | None = None,
    ):
        super().__init__(file, encoding="latin1")
        self._globals_table = globals_table
        self._persistent = persistent_load
        self._build_hook = build_hook
        self._max_ops = max_ops
        self._work = work if work is not None else WorkBudget(max_ops, "this pickle")

    # -- driver ---------------------------------------------------------------------------------
    def load(self) -> Any:
        self.read = self._file_read
        self.readline = self._file_readline
        self.readinto = None
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read = self.read
        dispatch = self.dispatch
        work = self._work
        max_ops = self._max_ops
        # Opcodes are counted locally and settled with the shared budget every `settle_every` of
        # them (and when the pickle ends); stand-ins charge the shared budget directly.
        settle_every = 4096
        ops = settled = 0
        checkpoint = min(settle_every, max_ops + 1)
        try:
            while True:
                key = read(1)
                if not key:
                    raise CheckpointError("pickle data ends before its STOP opcode (truncated)")
                handler = dispatch.get(key[0])
                if handler is None:
                    raise CheckpointError(f"invalid pickle opcode 0x{key[0]:02x}")
                ops += 1
                if ops >= checkpoint:
                    if ops > max_ops:
                        raise CheckpointError(f"pickle has more than {max_ops} operations")
                    work.charge(ops - settled)
                    settled = ops
                    checkpoint = min(ops + settle_every, max_ops + 1)
                handler(self)
        except _Stop as stop:
            value = stop.value
        work.charge(ops - settled)
        return value

    def find_class(self, module: str, name: str) -> StandIn:
        stand_in = self._globals_table.get(f"{module}.{name}")
        if stand_in is None:
            raise UnsafeCheckpointError(
                f"refused global {short(module)}.{short(name)} (not in the safe loader's allow-list)"
            )
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise CheckpointError("unexpected persistent id in this pickle")
        return self._persistent(pid)

    # -- overridden opcodes ---------------------------------------------------------------------
    def load_stop(self):
        raise _Stop(self.stack.pop())

    def load_frame(self):
        # Frames only group bytes for buffered reading; the stream is contiguous, so skip the size.
        data = self.read(8)
        if len(data) != 8:
            raise CheckpointError("pickle data ends inside a FRAME header (truncated)")

    def load_reduce(self):
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if type(func) is not StandIn or func.call is None:
            raise UnsafeCheckpointError(f"pickle calls a {short(func)}, which is not callable here")
        if type(args) is not tuple:
            raise CheckpointError("pickle REDUCE arguments are not a tuple")
        stack[-1] = func.call(*args)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(cls) is not StandIn or cls.new is None:
            what = cls.qualname if type(cls) is StandIn else short(cls)
            raise UnsafeCheckpointError(f"pickle instantiates {what}, which is refused")
        if type(args) is not tuple:
            raise CheckpointError("pickle NEWOBJ arguments are not a tuple")
        self.append(cls.new(*args))

    def load_build(self):
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if self._build_hook is None or not self._build_hook(inst, state):
            raise UnsafeCheckpointError(f"pickle sets the state of a {short(inst)} (BUILD), which is refused")

    def load_append(self):
        value = self.stack.pop()
        target = self.stack[-1]
        if type(target) is not list:
            raise CheckpointError(f"pickle appends to a {short(target)}")
        target.append(value)

    def load_appends(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not list:
            raise CheckpointError(f"pickle appends to a {short(target)}")
        target.extend(items)

    def load_setitem(self):
        stack = self.stack
        value = stack.pop()
        key = stack.pop()
        target = stack[-1]
        if not isinstance(target, dict):
            raise CheckpointError(f"pickle sets an item of a {short(target)}")
        check_key(key)
        target[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, dict):
            raise CheckpointError(f"pickle sets items of a {short(target)}")
        if len(items) % 2:
            raise CheckpointError("pickle SETITEMS has an odd number of items")
        for i in range(0, len(items), 2):
            check_key(items[i])
            target[items[i]] = items[i + 1]

    def load_dict(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise CheckpointError("pickle DICT has an odd number of items")
        d = {}
        for i in range(0, len(items), 2):
            check_key(items[i])
            d[items[i]] = items[i + 1]
        self.append(d)

    def load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise CheckpointError(f"pickle adds set items to a {short(target)}")
        for item in items:
            check_key(item)
        target.update(items)

    def load_frozenset(self):
        items = self.pop_mark()
        for item in items:
            check_key(item)
        self.append(frozenset(items))

    def pop_mark(self):
        if not self.metastack:
            raise CheckpointError("pickle pops a MARK that was never pushed")
        return super().pop_mark()


def _build_dispatch() -> dict[int, Callable]:
    table: dict[int, Callable] = {}
    for name in _ALLOWED_OPCODES:
        code = getattr(pickle, name)[0]
        table[code] = _BASE.dispatch[code]
    for name in _REFUSED_OPCODES:
        table[getattr(pickle, name)[0]] = _refuse(name)
    overrides = {
        "STOP": RestrictedUnpickler.load_stop,
        "FRAME": RestrictedUnpickler.load_frame,
        "REDUCE": RestrictedUnpickler.load_reduce,
        "NEWOBJ": RestrictedUnpickler.load_newobj,
        "BUILD": RestrictedUnpickler.load_build,
        "APPEND": RestrictedUnpickler.load_append,
        "APPENDS": RestrictedUnpickler.load_appends,
        "SETITEM": RestrictedUnpickler.load_setitem,
        "SETITEMS": RestrictedUnpickler.load_setitems,
        "DICT": RestrictedUnpickler.load_dict,
        "ADDITEMS": RestrictedUnpickler.load_additems,
        "FROZENSET": RestrictedUnpickler.load_frozenset,
        "GLOBAL": _BASE.load_global,
        "STACK_GLOBAL": _BASE.load_stack_global,
    }
    for name, fn in overrides.items():
        table[getattr(pickle, name)[0]] = fn
    return table


RestrictedUnpickler.dispatch = _build_dispatch()
