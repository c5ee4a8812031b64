"""Reports of an `Evaluation`: the JSON report, the Markdown table, and the alpha-sweep plots.

JSON (`report_dict`), values in [0, 1]::

    {"attributes": {"<Name>": {"<method>": {"accuracy", "attribute_preservation",
                                            "identity_preservation"}, ...}, ...},
     "average": {"<method>": {...}},          # mean over every evaluated attribute
     "settings": {...}}                       # what produced the numbers (free-form, JSON)

The Markdown table (`markdown_table`) shows chosen attributes and the average, in percent, one
column group per metric with the methods side by side (as in the paper's Table 1).
Plots (`write_plots`): target probability, attribute preservation and identity preservation
against edit strength (a fraction of each method's table strength), one panel per attribute and
one for the average.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxedit.eval.protocol import Evaluation

METRICS = ("accuracy", "attribute_preservation", "identity_preservation")
METRIC_TITLES = {
    "accuracy": "accuracy",
    "attribute_preservation": "attributes kept",
    "identity_preservation": "identity kept",
}
CURVES = ("target_probability", "attribute_preservation", "identity_preservation")


def report_dict(evaluation: Evaluation, settings: dict) -> dict:
    """The JSON report of `evaluation` (format in the module docstring)."""
    attributes = {
        name: {method: {metric: float(values[metric]) for metric in METRICS} for method, values in per_method.items()}
        for name, per_method in evaluation.table.items()
    }
    average = {
        method: {
            metric: float(np.mean([attributes[name][method][metric] for name in attributes])) for metric in METRICS
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
    header = "| attribute | " + " | ".join(f"{METRIC_TITLES[m]} ({methods_label})" for m in METRICS) + " |"
    lines = ([f"**{title}**", ""] if title else []) + [header, "|" + "---|" * (len(METRICS) + 1)]

    def cells(per_method: dict) -> str:
        return " | ".join(
            " / ".join(f"{100 * per_method[method][metric]:.2f}" for method in methods) for metric in METRICS
        )

    for name in rows:
        lines.append(f"| {name} | {cells(report['attributes'][name])} |")
    lines.append(f"| average ({len(report['attributes'])} attributes) | {cells(report['average'])} |")
    return "\n".join(lines)


def matched_accuracy(evaluation: Evaluation, reference: str = "ours") -> dict:
    """Each baseline at the strength where its classification accuracy equals the reference's.

    From the sweeps, per attribute and baseline: the smallest strength (linear interpolation
    between sweep points) whose accuracy reaches the reference method's table accuracy, and the
    preservation metrics (over successful edits) there (from the first sweep point with any success
    when the lower point flipped nothing). None where the baseline never reaches it
    within the sweep, or where the reference flipped nothing. Returns {attribute: {method:
    {"fraction", "accuracy", "attribute_preservation", "identity_preservation"} or None}}, and
    "average": per baseline, its means over the attributes where it was matched ("attributes":
    how many) beside the reference's means over the same attributes ("ours_attribute_preservation",
    "ours_identity_preservation").
    """
    table = {}
    for name, per_method in evaluation.sweeps.items():
        if reference not in evaluation.table.get(name, {}):
            continue
        target = evaluation.table[name][reference]["accuracy"]
        table[name] = {reference: {"fraction": 1.0, **{m: evaluation.table[name][reference][m] for m in METRICS}}}
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
            table[name][method] = {
                "fraction": at("fraction"),
                "accuracy": at("accuracy"),
                "attribute_preservation": kept("attribute_preservation_successful"),
                "identity_preservation": kept("identity_preservation_successful"),
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
        + " | ".join(f"{m}: strength x, accuracy, attributes kept, identity kept" for m in methods)
        + " |"
    )
    lines = [header, "|" + "---|" * (len(methods) + 1)]

    def cell(values):
        if values is None:
            return "not reached"
        return (
            f"{values['fraction']:.2f}, {100 * values['accuracy']:.1f}, {100 * values['attribute_preservation']:.2f}, "
            f"{100 * values['identity_preservation']:.2f}"
        )

    for name in rows:
        lines.append(f"| {name} | " + " | ".join(cell(matched["attributes"][name].get(m)) for m in methods) + " |")
    lines += [
        "",
        f"| baseline | attributes matched | attributes kept (baseline / {reference}) | identity kept (baseline / {reference}) |",
        "|---|---|---|---|",
    ]
    for method, v in matched["average"].items():
        lines.append(
            f"| {method} | {v['attributes']} | {100 * v['attribute_preservation']:.2f} / {100 * v[reference + '_attribute_preservation']:.2f} "
            f"| {100 * v['identity_preservation']:.2f} / {100 * v[reference + '_identity_preservation']:.2f} |"
        )
    return "\n".join(lines)


def write_plots(
    evaluation: Evaluation, directory: str | os.PathLike, attributes: Sequence[str] | None = None
) -> list[Path]:
    """PNG plots of the sweeps: one file per curve, panels per attribute plus the average."""
    from jaxedit.viz.plots import small_multiples

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    swept = [name for name, per in evaluation.sweeps.items() if per]
    if not swept:
        return []
    shown = swept if attributes is None else [a for a in attributes if a in swept]
    written = []
    for curve in CURVES:
        panels = {}
        for name in shown:
            panels[name] = {m: (c["fraction"], c[curve]) for m, c in evaluation.sweeps[name].items()}
        average = {}
        for method in evaluation.methods:
            ys = [evaluation.sweeps[name][method][curve] for name in swept if method in evaluation.sweeps[name]]
            if ys:
                xs = evaluation.sweeps[swept[0]][method]["fraction"]
                average[method] = (xs, list(np.mean(np.asarray(ys), axis=0)))
        panels[f"average ({len(swept)})"] = average
        written.append(
            small_multiples(
                panels,
                directory / f"{curve}.png",
                xlabel="strength / table strength (ours alpha 1.25, IFG 3)",
                ylabel=curve.replace("_", " "),
                title=f"{curve.replace('_', ' ')} against edit strength (edits signed to reverse the attribute)",
            )
        )
    return written
