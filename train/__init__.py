"""Training entry points: `python -m train` (the whole method on the synthetic world),
`python -m train.classifier` and `python -m train.transformers` (the two stages), their configs
(`train.configs`), data (`train.data`) and shared workdir/CLI pieces (`train.common`).
"""
