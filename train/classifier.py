"""`python -m train.classifier --config NAME --workdir DIR [--resume]`: train the latent classifier C."""

import sys

from jaxedit.cli.train_stages import classifier_main

if __name__ == "__main__":
    sys.exit(classifier_main())
