"""`python -m train.transformers --config NAME --workdir DIR [--resume]`: train the attribute transformers."""

import sys

from jaxedit.cli.train_stages import transformers_main

if __name__ == "__main__":
    sys.exit(transformers_main())
