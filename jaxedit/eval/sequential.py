"""Sequential edits: several attributes changed one after another, measured like the paper's Table 1.

`sequential_edit_report(methods, labeller, embedder, latents, sequence, threshold)` edits the same
N latents with every method, step by step: step k reverses attribute `sequence[k]` (signed per
latent from its ORIGINAL label, at the method's table strength: ours alpha 1.25, InterFaceGAN
distance 3) and feeds the result to step k+1. After every step and at the end it measures, against
the original latents' labels and identity embeddings:

- `targets_flipped`: share of (latent, target) pairs whose target label is now reversed, for the
  targets edited so far; `all_targets_flipped`: share of latents with every edited target reversed;
- `others_kept`: over all latents, the share of the attributes NOT in the sequence whose label is
  unchanged (the paper's attribute preservation, for the whole sequence);
- `others_kept_successful`: the same over the latents whose targets all flipped;
- `identity_kept`: share of latents whose identity cosine to the original stays above `threshold`
  (`identity_kept_successful`: over the latents whose targets all flipped);
- `earlier_targets_kept` (per step): of the (latent, earlier target) pairs reversed before this
  step, the share still reversed after it (whether a later edit undoes an earlier one; None at
  the first step or when nothing was reversed).

Methods are `jaxedit.eval.protocol.EditMethod`s, so ours, InterFaceGAN and its conditional variant
go through the same code; the labeller and embedder are arguments (synthetic world or real models).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import ATTRIBUTES, attribute_index
from jaxedit.errors import InputError
from jaxedit.eval import metrics
from jaxedit.eval.protocol import EditMethod, Embedder, Labeller, apply_batched


def _share_kept(before: np.ndarray, after: np.ndarray, columns: np.ndarray, rows: np.ndarray) -> float:
    if not rows.any():
        return 0.0
    return float(np.mean(before[rows][:, columns] == after[rows][:, columns]))


def sequential_edit_report(
    methods: Sequence[EditMethod],
    labeller: Labeller,
    embedder: Embedder,
    latents,
    sequence: Sequence[str | int],
    threshold: float,
    labeller_attributes: Sequence[str] = ATTRIBUTES,
    batch_size: int = 1000,
) -> dict:
    """`{method name: {"steps": [...per step...], "final": {...}}}` (module docstring); values in [0, 1]."""
    latents = jnp.asarray(latents, jnp.float32)
    if latents.ndim < 2 or latents.shape[0] == 0:
        raise InputError(f"sequential edits need latents [N, ...], got shape {tuple(latents.shape)}")
    names = tuple(labeller_attributes)
    targets = [names[attribute_index(a, names)] for a in sequence]
    if not targets or len(set(targets)) != len(targets):
        raise InputError(f"a sequence needs distinct attributes, got {targets}")
    columns = [names.index(t) for t in targets]
    others = np.ones(len(names), bool)
    others[columns] = False
    labels0 = apply_batched(labeller, latents, batch_size) > 0.5
    emb0 = apply_batched(embedder, latents, batch_size)
    everyone = np.ones(labels0.shape[0], bool)
    report = {}
    for method in methods:
        current = latents
        steps = []
        reversed_before = np.zeros((labels0.shape[0], 0), bool)
        for k, (name, j) in enumerate(zip(targets, columns)):
            towards = np.where(labels0[:, j], -1.0, 1.0).astype(np.float32)  # reverse, from the original label
            strength = jnp.asarray(towards * method.strength)
            current = jnp.concatenate(
                [
                    jnp.asarray(method.edit(current[i : i + batch_size], name, strength[i : i + batch_size]))
                    for i in range(0, current.shape[0], batch_size)
                ]
            )
            labels = apply_batched(labeller, current, batch_size) > 0.5
            embeddings = apply_batched(embedder, current, batch_size)
            done = columns[: k + 1]
            reversed_ = labels[:, done] != labels0[:, done]  # [N, k+1]
            all_flipped = reversed_.all(axis=1)
            cosines = metrics.cosine_similarity(emb0, embeddings)
            was_reversed = reversed_before  # earlier targets reversed before this step: still reversed after it?
            kept = float(np.mean(reversed_[:, :-1][was_reversed])) if was_reversed.any() else None
            reversed_before = reversed_
            steps.append(
                {
                    "attribute": name,
                    "target_flipped": float(np.mean(reversed_[:, -1])),
                    "earlier_targets_kept": kept,
                    "targets_flipped": float(np.mean(reversed_)),
                    "all_targets_flipped": float(np.mean(all_flipped)),
                    "others_kept": _share_kept(labels0, labels, others, everyone),
                    "identity_kept": float(np.mean(cosines > threshold)),
                }
            )
        final = dict(steps[-1])
        final.pop("attribute")
        final.pop("target_flipped")
        final.pop("earlier_targets_kept")
        final["per_target_flipped"] = {
            t: float(np.mean(labels[:, j] != labels0[:, j])) for t, j in zip(targets, columns)
        }
        final["others_kept_successful"] = _share_kept(labels0, labels, others, all_flipped)
        final["identity_kept_successful"] = (
            float(np.mean(cosines[all_flipped] > threshold)) if all_flipped.any() else 0.0
        )
        final["latent_distance"] = float(
            np.mean(np.linalg.norm(np.asarray(current - latents).reshape(len(latents), -1), axis=1))
        )
        report[method.name] = {"steps": steps, "final": final, "strength": method.strength}
    return {"sequence": targets, "count": int(latents.shape[0]), "threshold": float(threshold), "methods": report}


def format_sequential_report(report: dict) -> str:
    """A Markdown table of the final numbers (percentages) and one of the per-step numbers."""
    methods = list(report["methods"])
    sequence = " -> ".join(report["sequence"])
    lines = [
        f"Sequential edits {sequence} on {report['count']} latents (each step reverses its attribute; "
        f"identity threshold {report['threshold']:.4f}); percentages",
        "",
        "| method | all 4 targets reversed | targets reversed | others kept (all / successful) | identity kept (all / successful) |",
        "|---|---|---|---|---|",
    ]
    lines[3 - 1] = lines[3 - 1].replace("all 4", f"all {len(report['sequence'])}")
    for name in methods:
        f = report["methods"][name]["final"]
        lines.append(
            f"| {name} | {100 * f['all_targets_flipped']:.2f} | {100 * f['targets_flipped']:.2f} | "
            f"{100 * f['others_kept']:.2f} / {100 * f['others_kept_successful']:.2f} | "
            f"{100 * f['identity_kept']:.2f} / {100 * f['identity_kept_successful']:.2f} |"
        )
    lines += [
        "",
        "| step | " + " | ".join(f"{m}: reversed / earlier kept / others kept" for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for k, attribute in enumerate(report["sequence"]):
        cells = []
        for name in methods:
            s = report["methods"][name]["steps"][k]
            kept = "-" if s["earlier_targets_kept"] is None else f"{100 * s['earlier_targets_kept']:.1f}"
            cells.append(f"{100 * s['target_flipped']:.1f} / {kept} / {100 * s['others_kept']:.1f}")
        lines.append(f"| {k + 1}. {attribute} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strength_curve(
    methods: Sequence[EditMethod],
    labeller: Labeller,
    embedder: Embedder,
    latents,
    sequence: Sequence[str | int],
    threshold: float,
    fractions: Sequence[float] = (0.25, 0.5, 1.0, 1.5, 2.0),
    labeller_attributes: Sequence[str] = ATTRIBUTES,
    batch_size: int = 1000,
) -> dict:
    """The final numbers of `sequential_edit_report` at several fractions of each method's table
    strength: `{method: [{"fraction", "strength", **final}, ...]}` (fractions ascending)."""
    import dataclasses

    curve: dict = {m.name: [] for m in methods}
    for fraction in sorted(float(f) for f in fractions):
        scaled = [dataclasses.replace(m, strength=m.strength * fraction) for m in methods]
        report = sequential_edit_report(
            scaled, labeller, embedder, latents, sequence, threshold, labeller_attributes, batch_size
        )
        for m in scaled:
            curve[m.name].append({"fraction": fraction, "strength": m.strength, **report["methods"][m.name]["final"]})
    return curve


def at_matched_reversal(points: Sequence[dict], targets_flipped: float) -> dict | None:
    """`others_kept` and `identity_kept` of a method at a given `targets_flipped`, interpolated
    linearly between the two curve points around it (None when outside the curve's range)."""
    ordered = sorted(points, key=lambda p: p["targets_flipped"])
    for low, high in zip(ordered, ordered[1:]):
        if low["targets_flipped"] <= targets_flipped <= high["targets_flipped"]:
            span = high["targets_flipped"] - low["targets_flipped"]
            t = 0.0 if span == 0 else (targets_flipped - low["targets_flipped"]) / span
            return {
                key: low[key] + t * (high[key] - low[key])
                for key in ("others_kept", "identity_kept", "strength", "all_targets_flipped")
            } | {"targets_flipped": targets_flipped}
    return None
