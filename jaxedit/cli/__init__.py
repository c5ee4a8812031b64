"""The `jaxedit` command: one module per sub-command, argparse types in `types`, one exit mapping."""

from jaxedit.cli.main import main

__all__ = ["main"]
