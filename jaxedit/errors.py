"""The exception types jaxedit raises on bad input.

Every error our code raises on a user's file, argument or data derives from `JaxeditError` and
carries a one-line message naming the problem (which file, which key, what was expected). The CLI
prints these without a traceback; anything else is a bug.
"""


class JaxeditError(Exception):
    """Base class: a problem with the user's input, reported in one line."""


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
