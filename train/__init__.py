"""Thin training entry points, run from the repository root (not installed with the package).

- `python -m train`: the whole method on the embedded synthetic world (`jaxedit.training.pipeline`).
- `python -m train.classifier`: train the latent classifier C (`jaxedit.training.classifier`).
- `python -m train.transformers`: train the attribute transformers (`jaxedit.training.transformers`).

Each calls `jaxedit.cli.train` (or `jaxedit.cli.train_stages`), which parses the flags and calls `jaxedit.training`; an installed package offers the
same as `jaxedit train`, `jaxedit train classifier` and `jaxedit train transformers`.
"""
