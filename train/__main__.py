"""`python -m train [flags]`: the whole method on the embedded synthetic world (see `--help`)."""

import sys

from jaxedit.cli.train import pipeline_main

if __name__ == "__main__":
    sys.exit(pipeline_main())
