"""The exception types jaxedit raises on bad input, and `sanitize` for text taken from files.

Every error our code raises on a user's file, argument or data derives from `JaxeditError` and
carries a one-line message naming the problem (which file, which key, what was expected). The CLI
prints these without a traceback; anything else is a bug.

Messages quote names read from files (dict keys, paths, attribute names), which may hold newlines,
terminal escape sequences or megabytes of text. `sanitize` is the one function that makes such text
safe to print: control characters escaped, length capped. `JaxeditError.__str__` applies it to the
whole message, so no error can span several lines or carry a live escape sequence.
"""

import unicodedata

MESSAGE_LIMIT = 1000
"""Longest `str(JaxeditError)` in characters; longer messages are cut (with their length noted)."""

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def sanitize(text: object, limit: int = 300) -> str:
    """`text` made safe to print on one line: control and invisible format characters (newline,
    ESC, bidi overrides, lone surrogates...) escaped as `\\n`, `\\x1b`, `\\u202e`; at most `limit`
    characters, a longer text cut with "...(N characters)" noting its original length.

    Only the first `limit` characters are ever examined, so a 10 MB string costs no more than a
    short one. Non-strings are rendered with `str` first.
    """
    if not isinstance(text, str):
        text = str(text)
    limit = max(int(limit), 24)
    head = text[:limit]
    escaped = head if head.isprintable() else "".join(_escape(c) for c in head)
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    note = f"...({len(text)} characters)"
    return escaped[: limit - len(note)] + note


def describe_value(value: object) -> str:
    """A value read from a file, named briefly for a message: numbers, None and bools by repr (an
    integer of more than 64 bits by its size only), strings quoted and `sanitize`d to 60
    characters, anything else by its type ("a list")."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (bool, int, float, type(None))):
        return repr(value)
    if isinstance(value, str):
        return repr(sanitize(value, 60))
    return f"a {type(value).__name__}"


class JaxeditError(Exception):
    """Base class: a problem with the user's input, reported in one line.

    `str(error)` is the message passed sanitized (`sanitize`, at most `MESSAGE_LIMIT` characters).
    """

    def __str__(self) -> str:
        return sanitize(super().__str__(), MESSAGE_LIMIT)


class CheckpointError(JaxeditError):
    """A checkpoint file is unreadable, unsafe, truncated or of the wrong layout."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks for something the safe loader refuses (a global, a state-setting call...)."""


class ConfigError(JaxeditError):
    """A configuration, flag value or saved directory is invalid or inconsistent."""


class InputError(JaxeditError):
    """A latent, label or image array has the wrong shape, dtype or content."""


class AttributeNameError(JaxeditError):
    """An attribute name or index does not name one of the 40 CelebA attributes."""


class TrainingError(JaxeditError):
    """Training cannot go on (a non-finite loss or parameter, a checkpoint that does not match)."""
