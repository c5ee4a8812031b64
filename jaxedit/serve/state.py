"""The edit a page request asks for, validated: pure functions from decoded JSON to `EditRequest`.

A request body (JSON object) of `/api/render`, `/api/latents`, `/api/video`, `/api/paste`::

    {
      "source": {"seed": 3} | {"latent": "<upload id>"} | {"photo": "<upload id>"},
      "edits": [["Smiling", 1.0], ["Eyeglasses", -0.5]],   sequential, in the order the user touched them
      "truncation": 1.0,                                    psi towards the average latent
      "layers": [0, 10],                                    first and last W+ layer taking the edits
      "preview": false,                                     low-resolution render while dragging
      "client": "k3v9", "seq": 12,                          optional: newer seq of a client supersedes
      "attribute": "Smiling"                                /api/video only: the attribute swept
    }

Every field is checked (type, finiteness, range, known attribute, known layer) and a bad one is a
`RequestError` with the HTTP status to answer and a one-line message naming the field. Absent
optional fields take the defaults of `Limits`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import threading
from collections.abc import Sequence
from typing import Any

from jaxedit.errors import InputError, sanitize

SEED_LIMIT = 2**32  # numpy's RandomState takes seeds 0..2**32-1, as `jaxedit generate --seeds`
ALPHA_LIMIT = 3.0  # beyond this the editors extrapolate far outside what they were trained for
TRUNCATION_RANGE = (0.0, 2.0)
CLIENT_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
UPLOAD_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
SEQ_LIMIT = 2**53  # what a JavaScript number holds exactly
CLIENTS_REMEMBERED = 256


class RequestError(InputError):
    """A request the server refuses; `status` is the HTTP status of the answer (a 4xx)."""

    status = 400


class NotFoundError(RequestError):
    status = 404


class MethodNotAllowedError(RequestError):
    status = 405


class SupersededError(RequestError):
    """A newer request of the same client arrived while this one waited: it is not rendered."""

    status = 409


class LengthRequiredError(RequestError):
    status = 411


class TooLargeError(RequestError):
    status = 413


class UnsupportedMediaError(RequestError):
    status = 415


@dataclasses.dataclass(frozen=True)
class FaceSource:
    """Where the face comes from: kind 'seed' (value an int) or 'latent' / 'photo' (an upload id)."""

    kind: str
    value: int | str

    def key(self) -> tuple[str, int | str]:
        return (self.kind, self.value)


@dataclasses.dataclass(frozen=True)
class EditRequest:
    """One validated request: the face, the edits in order, truncation, W+ layers, preview flag."""

    source: FaceSource
    edits: tuple[tuple[str, float], ...]
    truncation: float
    layers: tuple[int, int]  # first and last W+ layer (inclusive) that take the edits
    preview: bool = False
    client: str | None = None
    seq: int | None = None
    attribute: str | None = None  # the swept attribute (video requests)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a request may name: the editors' attributes, the latent's W+ layers, the defaults."""

    attributes: tuple[str, ...]
    num_ws: int
    default_layers: tuple[int, int]
    default_truncation: float = 1.0
    alpha_limit: float = ALPHA_LIMIT

    def canonical(self, name: Any, field: str = "attribute") -> str:
        """The editors' spelling of an attribute name (case-insensitive), else `RequestError`."""
        if not isinstance(name, str):
            raise RequestError(f"{field}: expected an attribute name (a string), got {_describe(name)}")
        lowered = {a.lower(): a for a in self.attributes}
        key = name.strip().lower()
        if key not in lowered:
            raise RequestError(f"{field} {sanitize(name, 60)!r}: these editors have no such attribute")
        return lowered[key]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return sanitize(repr(value), 40)


def parse_number(value: Any, field: str, low: float, high: float) -> float:
    """A finite JSON number within [low, high], else `RequestError` naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{field}: expected a number, got {_describe(value)}")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.inf
    if not math.isfinite(number):
        raise RequestError(f"{field}: expected a finite number, got {_describe(value)}")
    if not low <= number <= high:
        raise RequestError(f"{field}: {number:g} is outside [{low:g}, {high:g}]")
    return number


def parse_int(value: Any, field: str, low: int, high: int) -> int:
    """A JSON integer within [low, high] (inclusive), else `RequestError` naming `field`."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        else:
            raise RequestError(f"{field}: expected an integer, got {_describe(value)}")
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 30 else f"{str(value)[:12]}...({len(str(value))} digits)"
        raise RequestError(f"{field}: {shown} is outside {low}..{high}")
    return value


def parse_source(value: Any) -> FaceSource:
    """{"seed": N} | {"latent": id} | {"photo": id} -> FaceSource."""
    if not isinstance(value, dict) or len(value) != 1:
        raise RequestError('source: expected one of {"seed": N}, {"latent": ID}, {"photo": ID}')
    ((kind, item),) = value.items()
    if kind == "seed":
        return FaceSource("seed", parse_int(item, "source.seed", 0, SEED_LIMIT - 1))
    if kind in ("latent", "photo"):
        if not isinstance(item, str) or not UPLOAD_ID_PATTERN.fullmatch(item):
            raise RequestError(f"source.{kind}: expected an upload id, got {_describe(item)}")
        return FaceSource(kind, item)
    raise RequestError(f"source: unknown kind {sanitize(kind, 40)!r} (expected seed, latent or photo)")


def parse_edits(value: Any, limits: Limits) -> tuple[tuple[str, float], ...]:
    """[[name, alpha], ...] -> ((canonical name, alpha), ...); each attribute at most once."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError(f"edits: expected a list of [attribute, alpha] pairs, got {_describe(value)}")
    if len(value) > len(limits.attributes):
        raise RequestError(f"edits: {len(value)} steps, but these editors have {len(limits.attributes)} attributes")
    steps: list[tuple[str, float]] = []
    for k, item in enumerate(value):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise RequestError(f"edits[{k}]: expected [attribute, alpha], got {_describe(item)}")
        name = limits.canonical(item[0], f"edits[{k}]")
        if any(name == seen for seen, _ in steps):
            raise RequestError(f"edits[{k}]: {name} appears twice (one slider, one step)")
        alpha = parse_number(item[1], f"edits[{k}] alpha of {name}", -limits.alpha_limit, limits.alpha_limit)
        steps.append((name, alpha))
    return tuple(steps)


def parse_layers(value: Any, limits: Limits) -> tuple[int, int]:
    """[first, last] W+ layers (inclusive, first <= last), default `limits.default_layers`."""
    if value is None:
        return limits.default_layers
    if not isinstance(value, list) or len(value) != 2:
        raise RequestError(f"layers: expected [first, last], got {_describe(value)}")
    first = parse_int(value[0], "layers[0]", 0, limits.num_ws - 1)
    last = parse_int(value[1], "layers[1]", 0, limits.num_ws - 1)
    if first > last:
        raise RequestError(f"layers: first {first} is after last {last}")
    return first, last


KNOWN_FIELDS = frozenset({"source", "edits", "truncation", "layers", "preview", "client", "seq", "attribute"})


def parse_request(body: Any, limits: Limits, need_attribute: bool = False) -> EditRequest:
    """A decoded JSON body -> `EditRequest` (see the module docstring), else `RequestError`."""
    if not isinstance(body, dict):
        raise RequestError(f"request body: expected a JSON object, got {_describe(body)}")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise RequestError(f"request body: unknown field {sanitize(unknown[0], 40)!r}")
    if "source" not in body:
        raise RequestError("request body: missing 'source'")
    source = parse_source(body["source"])
    edits = parse_edits(body.get("edits"), limits)
    truncation = limits.default_truncation
    if body.get("truncation") is not None:
        truncation = parse_number(body["truncation"], "truncation", *TRUNCATION_RANGE)
    layers = parse_layers(body.get("layers"), limits)
    preview = body.get("preview", False)
    if not isinstance(preview, bool):
        raise RequestError(f"preview: expected true or false, got {_describe(preview)}")
    client = body.get("client")
    if client is not None and (not isinstance(client, str) or not CLIENT_PATTERN.fullmatch(client)):
        raise RequestError("client: expected 1-64 letters, digits, '-' or '_'")
    seq = None if body.get("seq") is None else parse_int(body["seq"], "seq", 0, SEQ_LIMIT)
    attribute = None
    if need_attribute or body.get("attribute") is not None:
        if body.get("attribute") is None:
            raise RequestError("attribute: name the attribute to sweep")
        attribute = limits.canonical(body["attribute"], "attribute")
    return EditRequest(source, edits, truncation, layers, preview, client, seq, attribute)


def sweep_edits(edits: Sequence[tuple[str, float]], attribute: str, alpha: float) -> tuple[tuple[str, float], ...]:
    """The edits with `attribute` at `alpha`: in place when it is one of them, else appended last."""
    if any(name == attribute for name, _ in edits):
        return tuple((name, alpha if name == attribute else value) for name, value in edits)
    return (*edits, (attribute, alpha))


class LatestOnly:
    """The newest `seq` seen per client; an older request of that client is stale."""

    def __init__(self, capacity: int = CLIENTS_REMEMBERED):
        self._latest: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def arrive(self, client: str | None, seq: int | None) -> None:
        if client is None or seq is None:
            return
        with self._lock:
            self._latest[client] = max(self._latest.get(client, -1), seq)
            self._latest.move_to_end(client)
            while len(self._latest) > self._capacity:
                self._latest.popitem(last=False)

    def is_stale(self, client: str | None, seq: int | None) -> bool:
        if client is None or seq is None:
            return False
        with self._lock:
            return self._latest.get(client, -1) > seq
