"""`python -m train [flags]`: the whole method on the embedded synthetic world (see `--help`)."""

import sys

from jaxedit.training.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
