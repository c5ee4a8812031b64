"""Tiny training setups for the train tests: a 2 x 16 W+ world with a fixed random labeller.

The latents are Gaussian; the labels come from a fixed random linear labeller (40 thresholded
projections), so C has something to learn and the 40 attributes are correlated like real ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxedit.config import override
from jaxedit.training.configs import TrainConfig, get_config
from jaxedit.training.data import TrainingData, from_arrays

TINY_OVERRIDES = {
    "num_ws": 2,
    "w_dim": 16,
    "classifier_hidden": (32, 16),
    "batch_size": 16,
    "epochs": 2,
    "classifier_batch_size": 40,
    "classifier_epochs": 2,
    "classifier_decay_epochs": 1,
    "edit_layers": (0, 2),
    "steps_per_call": 4,
    "checkpoint_every": 8,
    "checkpoint_seconds": 0.0,
    "progress": False,
}
TINY_CLI = [
    "--num_ws",
    "2",
    "--w_dim",
    "16",
    "--classifier_hidden",
    "32,16",
    "--batch_size",
    "16",
    "--epochs",
    "2",
    "--classifier_batch_size",
    "40",
    "--classifier_epochs",
    "2",
    "--classifier_decay_epochs",
    "1",
    "--edit_layers",
    "0,2",
    "--steps_per_call",
    "4",
    "--checkpoint_every",
    "8",
    "--checkpoint_seconds",
    "0",
    "--progress",
    "false",
]


def tiny_config(**changes) -> TrainConfig:
    """The official config shrunk by TINY_OVERRIDES, then `changes` (run or method field names)."""
    run_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    values = {**TINY_OVERRIDES, **changes, "name": "tiny"}
    return override(get_config("official"), {k if k in run_fields else f"method.{k}": v for k, v in values.items()})


def tiny_arrays(count: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(count, 2, 16)).astype(np.float32)
    labeller = np.random.default_rng(1234).normal(size=(32, 40))
    labels = (latents.reshape(count, -1) @ labeller > 0.3).astype(np.float32)
    return latents, labels


def tiny_data(count: int = 400, seed: int = 0) -> TrainingData:
    latents, labels = tiny_arrays(count, seed)
    return from_arrays(latents, labels, 0.9, source="tiny")


def write_tiny_npz(path: Path, count: int = 400) -> Path:
    latents, labels = tiny_arrays(count)
    np.savez(path, latents=latents, labels=labels)
    return path
