"""Latent/label data for training and evaluation.

- `latents`: `.npy`/`.npz` datasets, the train/held-out split, epoch batch indices.
- `labelling`: label sampled latents with a generator and a JAX image classifier.
- `synthetic`: the embedded synthetic attribute world (a stand-in for render + annotate).
"""
