"""Editors and the generator or world they were made for, as the commands word it (`--force`).

`jaxedit edit` and `jaxedit eval` read the editors' provenance (`jaxedit.latent.provenance`): a
generator other than the recorded one is refused in one line unless `--force` (then a warning);
editors without a record, or bound to no generator, get a warning that the fit cannot be checked.
"""

from __future__ import annotations

import sys
from typing import Any

from jaxedit.errors import ConfigError, sanitize

FORCE_HELP = "use editors with a generator or world other than the one they record (a warning instead of a refusal)"


def add_force_flag(parser) -> None:
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def warn(message: str) -> None:
    print(f"jaxedit: warning: {sanitize(message, 600)}", file=sys.stderr)


def check_generator(editors: Any, generator: Any, editors_dir: str, force: bool) -> str:
    """The verdict of `compare_generator` for the editors at `editors_dir`: MISMATCH refused
    (ConfigError naming --force) unless `force` (a warning), UNCHECKED warned, MATCH silent.
    Latents of other sizes are refused first, whatever `force` says (`check_compatible`)."""
    from jaxedit.editing.edits import check_compatible
    from jaxedit.latent.provenance import MISMATCH, UNCHECKED, compare_generator

    check_compatible(editors, generator)
    verdict, reason = compare_generator(editors.provenance, generator)
    where = f"editors {editors_dir}: {reason}"
    if verdict == MISMATCH:
        if not force:
            raise ConfigError(f"{where}; pass --force to use them anyway")
        warn(f"{where} (--force: used anyway)")
    elif verdict == UNCHECKED:
        warn(where)
    return verdict
