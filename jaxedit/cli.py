"""The `jaxedit` command: argument parsing and messages only; the work lives in the library.

Each sub-command has one `_add_<name>` function that declares its arguments and sets `handler`,
a function of the parsed arguments. Errors of our own types (`JaxeditError`) and bad files print
one line, `jaxedit: error: ...`, and exit with status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from jaxedit.errors import JaxeditError

EXIT_USAGE_ERROR = 2


def _add_convert(subparsers) -> None:
    convert = subparsers.add_parser("convert", help="convert official PyTorch checkpoints (no torch needed)")
    kinds = convert.add_subparsers(dest="kind", required=True)
    _add_convert_stylegan2(kinds)
    _add_convert_latent_transformer(kinds)


def _add_convert_stylegan2(kinds) -> None:
    """`jaxedit convert stylegan2 SRC OUT` (owner: the generator work)."""


def _add_convert_latent_transformer(kinds) -> None:
    """`jaxedit convert latent-transformer --classifier F [--tnets DIR] OUT` (owner: the method work)."""


def _add_generate(subparsers) -> None:
    """`jaxedit generate GEN_DIR ...` (owner: the generator work)."""


def _add_edit(subparsers) -> None:
    """`jaxedit edit GEN_DIR EDITORS_DIR ...` (owner: the editing work)."""


def _add_eval(subparsers) -> None:
    """`jaxedit eval ...` (owner: the evaluation work)."""


def _add_info(subparsers) -> None:
    """`jaxedit info DIR` (owner: the editing work)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxedit", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (_add_convert, _add_generate, _add_edit, _add_eval, _add_info):
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except JaxeditError as error:
        if args.debug:
            raise
        print(f"jaxedit: error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    except (OSError, ValueError) as error:  # files that vanish, unreadable paths, bad numbers
        if args.debug:
            raise
        print(f"jaxedit: error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return EXIT_USAGE_ERROR
    except KeyboardInterrupt:
        print("jaxedit: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
