"""`python -m jaxedit ...`: the same as the `jaxedit` command."""

import sys

from jaxedit.cli import main

if __name__ == "__main__":
    sys.exit(main())
