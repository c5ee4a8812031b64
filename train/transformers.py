"""`python -m train.transformers --config NAME --workdir DIR [--resume]`: train the attribute transformers."""

import sys

from jaxedit.training.transformers import main

if __name__ == "__main__":
    sys.exit(main())
