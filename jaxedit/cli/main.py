"""The `jaxedit` command (also `python -m jaxedit`): the top parser and the dispatch to sub-commands.

Each sub-command lives in its own module (`convert`, `encode`, `generate`, `edit`, `eval`, `info`, `serve`, `train`)
with an `add_parser(subparsers)` that declares its flags and sets `handler`; the work lives in the
library. Every outcome goes through `jaxedit.cli.errors.run_main`: one line on stderr and exit
status 2 on bad input (`--debug` shows the traceback instead).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jaxedit.cli import convert, edit, encode, errors, generate, info, serve, train
from jaxedit.cli import eval as eval_command

COMMANDS = (convert, encode, generate, edit, eval_command, info, serve, train)


def build_parser() -> errors.OneLineErrorParser:
    import jaxedit

    parser = errors.OneLineErrorParser(
        prog="jaxedit",
        description="Non-linear, disentangled StyleGAN2 face editing in JAX: convert checkpoints, generate, edit, "
        "evaluate, train.",
    )
    parser.add_argument("--version", action="version", version=f"jaxedit {jaxedit.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=errors.OneLineErrorParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if args.command == "train":  # `jaxedit train ...` parses its own flags (jaxedit.cli.train)
            return train.run_train(rest, debug=args.debug)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as stop:  # a usage error (its one line printed), --help or --version
        return int(stop.code or 0)
    return errors.run_main("jaxedit", lambda: args.handler(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
