"""`python -m train.classifier --config NAME --workdir DIR [--resume]`: train the latent classifier C."""

import sys

from jaxedit.training.classifier import main

if __name__ == "__main__":
    sys.exit(main())
