"""Reports of an `Evaluation`: the JSON report, the Markdown table, and the alpha-sweep plots.

JSON (`report_dict`), values in [0, 1] (cosines in [-1, 1], None where no edit flipped)::

    {"attributes": {"<Name>": {"<method>": {"accuracy", "attribute_preservation",
                                            "identity_preservation", "identity_cosine_mean",
                                            "identity_cosine_std"}, ...}, ...},
     "average": {"<method>": {...}},          # mean over every evaluated attribute
     "settings": {...}}                       # what produced the numbers (free-form, JSON)

The Markdown table (`markdown_table`) shows chosen attributes and the average, in percent, one
column group per metric with the methods side by side (as in the paper's Table 1), plus the
identity cosine (mean +- standard deviation over the flipped edits). `summary_text` is what
`python -m train` prints: the paper's four attributes beside the paper's quoted Table 1, the
average over every attribute, then the comparison at matched accuracy.
Plots (`write_plots`, `jaxedit.eval.curves`): against edit strength and against accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxedit.eval.protocol import Evaluation

METRICS = ("accuracy", "attribute_preservation", "identity_preservation")
COSINE_METRICS = ("identity_cosine_mean", "identity_cosine_std")
METRIC_TITLES = {
    "accuracy": "accuracy",
    "attribute_preservation": "attributes kept",
    "identity_preservation": "identity kept",
}


def _mean_defined(values) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def report_dict(evaluation: Evaluation, settings: dict) -> dict:
    """The JSON report of `evaluation` (format in the module docstring).

    The average of the cosine statistics is over the attributes where some edit flipped (the
    "identity_cosine_std" average is the mean of the per-attribute spreads)."""
    attributes = {
        name: {
            method: {
                **{metric: float(values[metric]) for metric in METRICS},
                **{metric: values.get(metric) for metric in COSINE_METRICS},
            }
            for method, values in per_method.items()
        }
        for name, per_method in evaluation.table.items()
    }
    average = {
        method: {
            **{metric: float(np.mean([attributes[name][method][metric] for name in attributes])) for metric in METRICS},
            **{
                metric: _mean_defined(attributes[name][method][metric] for name in attributes)
                for metric in COSINE_METRICS
            },
        }
        for method in evaluation.methods
    }
    settings = dict(settings)
    settings.setdefault("identity_threshold", evaluation.threshold)
    settings.setdefault("latents_per_attribute", evaluation.count)
    return {"attributes": attributes, "average": average, "settings": settings}


def write_json(report: dict, path: str | os.PathLike) -> Path:
    """Write the report as indented JSON, atomically (`jaxedit.io.atomic_write_text`)."""
    from jaxedit.io import atomic_write_text

    return atomic_write_text(path, json.dumps(report, indent=2, sort_keys=False) + "\n")


def markdown_table(report: dict, attributes: Sequence[str] | None = None, title: str = "") -> str:
    """Rows: `attributes` (default all) and the average; cells: percent, methods separated by ' / '."""
    methods = list(report["average"])
    rows = list(report["attributes"]) if attributes is None else [a for a in attributes if a in report["attributes"]]
    methods_label = " / ".join(methods)
    header = (
        "| attribute | "
        + " | ".join(f"{METRIC_TITLES[m]} ({methods_label})" for m in METRICS)
        + f" | identity cosine, mean +- std ({methods_label}) |"
    )
    lines = ([f"**{title}**", ""] if title else []) + [header, "|" + "---|" * (len(METRICS) + 2)]

    def cells(per_method: dict) -> str:
        percent = " | ".join(
            " / ".join(f"{100 * per_method[method][metric]:.2f}" for method in methods) for metric in METRICS
        )
        cosine = " / ".join(format_cosine(per_method[method]) for method in methods)
        return f"{percent} | {cosine}"

    for name in rows:
        lines.append(f"| {name} | {cells(report['attributes'][name])} |")
    lines.append(f"| average ({len(report['attributes'])} attributes) | {cells(report['average'])} |")
    return "\n".join(lines)


def format_cosine(values: dict) -> str:
    """ "0.912 +- 0.031" from a metrics dict's identity_cosine_mean / _std ("-" when undefined)."""
    mean, std = values.get("identity_cosine_mean"), values.get("identity_cosine_std")
    if mean is None:
        return "-"
    return f"{mean:.3f} +- {std:.3f}" if std is not None else f"{mean:.3f}"


def matched_accuracy(evaluation: Evaluation, reference: str = "ours") -> dict:
    """Each baseline at the strength where its classification accuracy equals the reference's.

    From the sweeps, per attribute and baseline: the smallest strength (linear interpolation
    between sweep points) whose accuracy reaches the reference method's table accuracy, and the
    preservation metrics (over successful edits) there (from the first sweep point with any success
    when the lower point flipped nothing). None where the baseline never reaches it
    within the sweep, or where the reference flipped nothing. Returns {attribute: {method:
    {"fraction", "accuracy", "attribute_preservation", "identity_preservation",
    "identity_cosine_mean"} or None}}, and "average": per baseline, its means over the attributes
    where it was matched ("attributes": how many) beside the reference's means over the same
    attributes ("ours_attribute_preservation", "ours_identity_preservation",
    "ours_identity_cosine_mean"). The cosine is over flipped edits (None where a sweep has none).
    """
    table = {}
    for name, per_method in evaluation.sweeps.items():
        if reference not in evaluation.table.get(name, {}):
            continue
        target = evaluation.table[name][reference]["accuracy"]
        ours = evaluation.table[name][reference]
        table[name] = {
            reference: {
                "fraction": 1.0,
                **{m: ours[m] for m in METRICS},
                "identity_cosine_mean": ours.get("identity_cosine_mean"),
            }
        }
        for method, curve in per_method.items():
            if method == reference:
                continue
            accuracy = np.asarray(curve["accuracy"])
            hit = np.nonzero(accuracy >= target)[0]
            if target <= 0 or hit.size == 0:
                table[name][method] = None
                continue
            i = int(hit[0])
            if i == 0:
                weight = 0.0
                j = 0
            else:
                j = i - 1
                span = accuracy[i] - accuracy[j]
                weight = 1.0 if span <= 0 else (target - accuracy[j]) / span

            def at(key, weight=weight, curve=curve, i=i, j=j):
                return float((1 - weight) * curve[key][j] + weight * curve[key][i])

            # preservation is undefined (recorded as 0) where nothing flipped: take the upper point's
            kept = at if accuracy[j] > 0 else (lambda key, curve=curve, i=i: float(curve[key][i]))
            cosine = kept("identity_cosine_successful") if "identity_cosine_successful" in curve else float("nan")
            table[name][method] = {
                "fraction": at("fraction"),
                "accuracy": at("accuracy"),
                "attribute_preservation": kept("attribute_preservation_successful"),
                "identity_preservation": kept("identity_preservation_successful"),
                "identity_cosine_mean": cosine if np.isfinite(cosine) else None,
            }
    average = {}
    methods = [m for m in evaluation.methods if m != reference]
    for method in methods:
        matched_names = [n for n, per in table.items() if per.get(method) is not None]
        if not matched_names:
            continue
        values = {
            key: float(np.mean([table[n][method][key] for n in matched_names]))
            for key in ("fraction", "accuracy", "attribute_preservation", "identity_preservation")
        }
        values.update(
            {
                f"{reference}_{key}": float(np.mean([table[n][reference][key] for n in matched_names]))
                for key in ("attribute_preservation", "identity_preservation")
            }
        )
        values["identity_cosine_mean"] = _mean_defined(table[n][method]["identity_cosine_mean"] for n in matched_names)
        values[f"{reference}_identity_cosine_mean"] = _mean_defined(
            table[n][reference]["identity_cosine_mean"] for n in matched_names
        )
        values["attributes"] = len(matched_names)
        average[method] = values
    return {"attributes": table, "average": average, "reference": reference}


def matched_markdown(matched: dict, attributes: Sequence[str] | None = None) -> str:
    """Markdown of `matched_accuracy`: per attribute, each method's strength fraction, accuracy and
    preservation; then per baseline the averages beside ours on the same attributes."""
    reference = matched.get("reference", "ours")
    if not matched["average"]:
        return "(no attribute where a baseline reached our accuracy within the sweep)"
    methods = [reference, *matched["average"]]
    rows = [a for a in (attributes or matched["attributes"]) if a in matched["attributes"]]
    header = (
        "| attribute | "
        + " | ".join(f"{m}: strength x, accuracy, attributes kept, identity kept, identity cosine" for m in methods)
        + " |"
    )
    lines = [header, "|" + "---|" * (len(methods) + 1)]

    def cell(values):
        if values is None:
            return "not reached"
        return (
            f"{values['fraction']:.2f}, {100 * values['accuracy']:.1f}, {100 * values['attribute_preservation']:.2f}, "
            f"{100 * values['identity_preservation']:.2f}, {_cosine(values.get('identity_cosine_mean'))}"
        )

    for name in rows:
        lines.append(f"| {name} | " + " | ".join(cell(matched["attributes"][name].get(m)) for m in methods) + " |")
    lines += [
        "",
        f"| baseline | attributes matched | attributes kept (baseline / {reference}) | identity kept (baseline / {reference}) "
        f"| identity cosine (baseline / {reference}) |",
        "|---|---|---|---|---|",
    ]
    for method, v in matched["average"].items():
        lines.append(
            f"| {method} | {v['attributes']} | {100 * v['attribute_preservation']:.2f} / {100 * v[reference + '_attribute_preservation']:.2f} "
            f"| {100 * v['identity_preservation']:.2f} / {100 * v[reference + '_identity_preservation']:.2f} "
            f"| {_cosine(v.get('identity_cosine_mean'))} / {_cosine(v.get(reference + '_identity_cosine_mean'))} |"
        )
    return "\n".join(lines)


def _cosine(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ------------------------------------------------------------------------------------------------
# What `python -m train` prints

PAPER_TABLE1 = {
    "Young": ("Age", {"ours": (98.10, 90.65, 99.69), "interfacegan": (99.90, 81.79, 76.28)}),
    "Eyeglasses": ("Eyeglasses", {"ours": (97.10, 90.25, 99.69), "interfacegan": (85.50, 86.22, 99.53)}),
    "Male": ("Gender", {"ours": (90.90, 86.25, 99.23), "interfacegan": (98.60, 76.91, 91.28)}),
    "Smiling": ("Smiling", {"ours": (100.00, 89.58, 100.00), "interfacegan": (100.00, 86.87, 99.70)}),
}
"""The paper's Table 1 (Yao et al., ICIP 2021), quoted: StyleGAN2 FFHQ latents, rendered and
labelled by a real CelebA attribute classifier, identity by VGG-Face; ours at alpha 1.25,
InterFaceGAN at distance 3. Per CelebA attribute: (the paper's name, {method: (accuracy,
attribute preservation, identity preservation)}) in percent."""

MEASURES = (
    ("accuracy", "accuracy: share of edits whose target label flipped"),
    ("attribute_preservation", "attributes kept: share of the other labels unchanged, over flipped edits"),
    ("identity_preservation", "identity kept: share with cosine above the 0.1%-FAR threshold, over flipped edits"),
    ("identity_cosine", "identity cosine: mean +- std over flipped edits (not in the paper)"),
)


def _measure_cell(values: dict | None, measure: str) -> str:
    if values is None:
        return "-"
    if measure == "identity_cosine":
        return format_cosine(values)
    return f"{100 * values[measure]:.2f}"


SIZING_FIELDS = ("w_dim", "num_ws", "edit_layers", "transformer_hidden")
"""Preset fields that follow the world's latent shape (not settings of the method)."""


def settings_text(preset, alpha: float, distance: float, count: int, transformer_samples: int | None = None) -> str:
    """One line of what produced a table: the method's loss weights and optimizer, the strengths,
    the latents per attribute, and every preset field changed from the named preset (fields that
    only follow the latent shape aside), with the named preset's value beside it."""
    from jaxedit.latent.presets import PRESETS

    shape = "W" if preset.space == "w" else "W+"
    text = (
        f"Settings: {shape} {list(preset.latent_shape)}, {preset.describe_training()}"
        + (f" on {transformer_samples} latents" if transformer_samples else "")
        + f"; ours at alpha {alpha:g}, InterFaceGAN and GANSpace at distance {distance:g}; {count} latents per attribute."
    )
    reference = PRESETS.get(preset.name)
    if reference is None:
        return text
    changed = [
        f"{field} {getattr(preset, field)!r} (preset: {getattr(reference, field)!r})"
        for field in (f.name for f in dataclasses.fields(preset))
        if field not in SIZING_FIELDS and getattr(preset, field) != getattr(reference, field)
    ]
    if alpha != reference.table_alpha:
        changed.append(f"alpha {alpha:g} (the paper's table: {reference.table_alpha:g})")
    if preset.name == "paper" and transformer_samples and transformer_samples != 10_000:
        changed.append(f"{transformer_samples} training latents (the paper: 10000)")
    if preset.name == "official" and transformer_samples and transformer_samples != 27_000:
        changed.append(f"{transformer_samples} training latents (the official code: 27000 CelebA-HQ inversions)")
    return text + f" Changed from the {preset.name} preset: {'; '.join(changed) if changed else 'nothing'}."


def summary_text(
    report: dict, matched: dict, attributes: Sequence[str] = tuple(PAPER_TABLE1), settings: str = ""
) -> str:
    """The printed result of a run, in three Markdown blocks, each saying what it measures:

    1. the paper's four attributes: the paper's Table 1 (quoted, FFHQ + a real classifier) beside
       every method of this run on its labeller (here the synthetic world);
    2. the average over every evaluated attribute (this run only; the paper gives no average);
    3. the comparison at matched accuracy (`matched_accuracy`).
    `settings`: a line of what produced the numbers, printed first.
    """
    methods = list(report["average"])
    count = report.get("settings", {}).get("latents_per_attribute", "N")
    here = " | ".join(f"here: {m}" for m in methods)
    blocks = [settings] if settings else []
    rows = [a for a in attributes if a in report["attributes"]]
    if rows:
        lines = [
            f"1. The paper's four attributes, percent. Every method edits the same {count} latents per attribute to "
            "reverse it. 'paper' columns: the paper's Table 1, quoted (StyleGAN2 FFHQ, labelled by a real CelebA "
            "attribute classifier, identity by VGG-Face). 'here' columns: this run, labelled by its labeller (the "
            "SYNTHETIC world's stand-ins unless a real classifier was given).",
            "",
            f"| attribute | measure | paper: ours | paper: interfacegan | {here} |",
            "|" + "---|" * (4 + len(methods)),
        ]
        for name in rows:
            paper_name, quoted = PAPER_TABLE1.get(name, (name, {}))
            label = name if paper_name == name else f"{name} (paper: {paper_name})"
            for index, (measure, description) in enumerate(MEASURES):
                paper_cells = [
                    f"{quoted[m][index]:.2f}" if m in quoted and index < 3 else "-" for m in ("ours", "interfacegan")
                ]
                cells = [_measure_cell(report["attributes"][name].get(m), measure) for m in methods]
                lines.append(f"| {label if index == 0 else ''} | {description} | {' | '.join(paper_cells + cells)} |")
        blocks.append("\n".join(lines))
    total = len(report["attributes"])
    lines = [
        f"2. Average over all {total} evaluated attributes (this run only; the paper reports no average).",
        "",
        f"| measure | {' | '.join(methods)} |",
        "|" + "---|" * (1 + len(methods)),
    ]
    for measure, description in MEASURES:
        lines.append(f"| {description} | {' | '.join(_measure_cell(report['average'][m], measure) for m in methods)} |")
    blocks.append("\n".join(lines))
    reference = matched.get("reference", "ours")
    lines = [
        f"3. At matched accuracy: each baseline's strength moved along its sweep (interpolated) until its accuracy "
        f"equals that of {reference} on that attribute; preservation over flipped edits; means over the attributes where "
        f"the baseline got there, {reference} on the same attributes. Higher is better.",
        "",
    ]
    if not matched["average"]:
        lines.append("(no attribute where a baseline reached our accuracy within the sweep)")
    else:
        lines += [
            f"| baseline | attributes matched | its strength (x table) | attributes kept: baseline / {reference} "
            f"| identity kept: baseline / {reference} | identity cosine: baseline / {reference} |",
            "|---|---|---|---|---|---|",
        ]
        for method, v in matched["average"].items():
            lines.append(
                f"| {method} | {v['attributes']} of {len(matched['attributes'])} | {v['fraction']:.2f} "
                f"| {100 * v['attribute_preservation']:.2f} / {100 * v[reference + '_attribute_preservation']:.2f} "
                f"| {100 * v['identity_preservation']:.2f} / {100 * v[reference + '_identity_preservation']:.2f} "
                f"| {_cosine(v.get('identity_cosine_mean'))} / {_cosine(v.get(reference + '_identity_cosine_mean'))} |"
            )
        shown = [a for a in rows if a in matched["attributes"]]
        if shown:
            lines += [
                "",
                "Per attribute (strength x table, accuracy, attributes kept, identity kept, identity cosine):",
                "",
            ]
            lines.append(matched_markdown(matched, shown).split("\n\n")[0])
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_plots(
    evaluation: Evaluation, directory: str | os.PathLike, attributes: Sequence[str] | None = None
) -> list[Path]:
    """The sweep plots (`jaxedit.eval.curves.write_plots`): against strength and against accuracy."""
    from jaxedit.eval.curves import write_plots as write_curve_plots

    return write_curve_plots(evaluation, directory, attributes)
