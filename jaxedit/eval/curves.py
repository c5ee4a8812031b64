"""Curves of an `Evaluation`'s strength sweeps, and their plots.

Two kinds of figure, written by `write_plots` to `RUN_DIR/plots/`:

- against edit strength (x = fraction of each method's table strength: ours alpha 1.25,
  InterFaceGAN and GANSpace distance 3): `target_probability.png`, `attribute_preservation.png`,
  `identity_preservation.png` (preservation over ALL edits);
- trade-off curves (x = classification accuracy, one point per sweep strength, so methods compare
  at equal accuracy whatever their strength units): `tradeoff_attribute_preservation.png`,
  `tradeoff_identity_preservation.png`, `tradeoff_identity_cosine.png`, each over the edits that
  flipped the target (the paper's definition). A point where nothing flipped is left out.

Panels: the chosen attributes (the paper's four) and the average over every swept attribute. The
average curve of a method takes, at each sweep strength, the mean accuracy over the attributes and
the mean preservation over the attributes where something flipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxedit.eval.protocol import Evaluation

STRENGTH_CURVES = ("target_probability", "attribute_preservation", "identity_preservation")
"""Sweep keys plotted against strength."""

TRADEOFF_CURVES = {
    "attribute_preservation": (
        "attribute_preservation_successful",
        "attributes kept",
        "attributes kept (share of the other labels unchanged)",
    ),
    "identity_preservation": (
        "identity_preservation_successful",
        "identity kept",
        "identity kept (share with cosine above the 0.1%-FAR threshold)",
    ),
    "identity_cosine": ("identity_cosine_successful", "identity cosine", "mean identity cosine"),
}
"""name -> (sweep key, y-axis label, what it measures) of the trade-off plots (over edits that flipped the target)."""


def tradeoff_curve(curve: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy [S], value [S]) of one method's sweep; NaN value where nothing flipped."""
    accuracy = np.asarray(curve["accuracy"], np.float64)
    values = np.asarray(curve[key], np.float64)
    return accuracy, np.where(accuracy > 0, values, np.nan)


def average_tradeoff(evaluation: Evaluation, method: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The method's trade-off curve averaged over every swept attribute (module docstring); None if unswept."""
    pairs = [
        tradeoff_curve(per[method], key) for per in evaluation.sweeps.values() if per and method in per and per[method]
    ]
    if not pairs:
        return None
    accuracy = np.mean(np.stack([p[0] for p in pairs]), axis=0)
    values = np.stack([p[1] for p in pairs])
    counted = np.isfinite(values).sum(axis=0)
    mean = np.where(counted > 0, np.nansum(values, axis=0) / np.maximum(counted, 1), np.nan)
    return accuracy, mean


def _average_over_attributes(evaluation: Evaluation, method: str, key: str):
    ys = [per[method][key] for per in evaluation.sweeps.values() if per and method in per]
    if not ys:
        return None
    xs = next(per[method]["fraction"] for per in evaluation.sweeps.values() if per and method in per)
    return xs, list(np.mean(np.asarray(ys, np.float64), axis=0))


def write_plots(
    evaluation: Evaluation, directory: str | os.PathLike, attributes: Sequence[str] | None = None
) -> list[Path]:
    """PNG plots of the sweeps (module docstring): panels per attribute in `attributes` (default:
    every swept attribute) plus the average over all swept attributes. Returns the written paths."""
    from jaxedit.viz.plots import small_multiples

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    swept = [name for name, per in evaluation.sweeps.items() if per]
    if not swept:
        return []
    shown = swept if attributes is None else [a for a in attributes if a in swept]
    average_title = f"average ({len(swept)} attributes)"
    written = []
    for curve in STRENGTH_CURVES:
        panels = {name: {m: (c["fraction"], c[curve]) for m, c in evaluation.sweeps[name].items()} for name in shown}
        panels[average_title] = {
            m: pair for m in evaluation.methods if (pair := _average_over_attributes(evaluation, m, curve)) is not None
        }
        written.append(
            small_multiples(
                panels,
                directory / f"{curve}.png",
                xlabel="strength / table strength",
                ylabel=curve.replace("_", " "),
                title=f"{curve.replace('_', ' ')} against edit strength "
                "(1 = ours alpha 1.25, InterFaceGAN/GANSpace distance 3; edits reverse the attribute)",
                markers=True,
            )
        )
    for name, (key, label, measure) in TRADEOFF_CURVES.items():
        panels = {
            attribute: {m: tradeoff_curve(c, key) for m, c in evaluation.sweeps[attribute].items()}
            for attribute in shown
        }
        panels[average_title] = {
            m: pair for m in evaluation.methods if (pair := average_tradeoff(evaluation, m, key)) is not None
        }
        written.append(
            small_multiples(
                panels,
                directory / f"tradeoff_{name}.png",
                xlabel="classification accuracy (target flipped)",
                ylabel=label,
                title=f"{measure} against accuracy, over the edits that flipped the target (one point per strength)",
                markers=True,
            )
        )
    return written
