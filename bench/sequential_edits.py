"""Sequential edits on the SYNTHETIC world: ours against InterFaceGAN, four attributes in a row.

    python -m train --out RUN_DIR                 # (or --quick) trains the editors
    python bench/sequential_edits.py --run RUN_DIR [--sequence Young,Eyeglasses,Male,Smiling]

Rebuilds the run's synthetic world (a stand-in for "render, then annotate"; see
`jaxedit.data.synthetic`) from the editors' training record, fits InterFaceGAN (and its conditional
variant) on freshly labelled latents of that world, estimates the identity threshold at 0.1% false
acceptance, and edits `--count` fresh latents with each method, step by step, each step reversing
its attribute (ours: alpha 1.25, InterFaceGAN: distance 3; `jaxedit.eval.sequential`). Then sweeps
every method's strength (`--fractions` of its table strength) and compares the methods at the same
share of reversed targets (InterFaceGAN interpolated at ours' rate). Prints Markdown tables and
writes `RUN_DIR/sequential_edits.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np


def build_world(editors):
    """The synthetic world the editors were trained in (their training record names it; with a
    recorded `--generator`, its mapping network supplies the latents)."""
    from jaxedit.eval.suite import synthetic_world_for

    generator_dir = editors.training.get("generator") or ""
    generator = None
    if generator_dir:
        from jaxedit.stylegan2 import load_generator

        generator = load_generator(generator_dir)
    return synthetic_world_for(editors, None, generator)


def run(args: argparse.Namespace) -> dict:
    from jaxedit.attributes import ATTRIBUTES
    from jaxedit.data import synthetic
    from jaxedit.eval import baselines, identity, protocol
    from jaxedit.eval.sequential import (
        at_matched_reversal,
        format_sequential_report,
        sequential_edit_report,
        strength_curve,
    )
    from jaxedit.latent import load_editors
    from jaxedit.latent.losses import correlation_matrix

    started = time.perf_counter()
    run_dir = Path(args.run)
    editors = load_editors(run_dir / "editors")
    world = build_world(editors)
    space = editors.preset.space
    print(world.describe(), file=sys.stderr)
    label = synthetic.labeller(world)
    embed = synthetic.identity_embedder(world)
    key = jax.random.fold_in(jax.random.key(args.seed), 77)
    key_fit, key_svm, key_id, key_pairs, key_eval = jax.random.split(key, 5)

    fit_latents = np.asarray(synthetic.sample_latents(world, key_fit, args.baseline_samples, space=space))
    probabilities = np.concatenate(
        [np.asarray(label(fit_latents[i : i + 8192])) for i in range(0, len(fit_latents), 8192)]
    )
    boundaries = baselines.fit_interfacegan(fit_latents, probabilities, key_svm)
    conditions = baselines.most_correlated(np.asarray(correlation_matrix((probabilities > 0.5).astype(np.float32))), 2)
    methods = [
        protocol.transformer_method(editors, args.alpha),
        protocol.interfacegan_method(boundaries, ATTRIBUTES, args.distance),
        protocol.interfacegan_method(
            boundaries,
            ATTRIBUTES,
            args.distance,
            name="interfacegan_cond",
            normals=baselines.conditional_normals(boundaries.normals, conditions),
        ),
    ]
    threshold = identity.far_threshold(
        embed,
        synthetic.sample_latents(world, key_id, args.identity_samples, space=space),
        key_pairs,
        num_pairs=args.identity_pairs,
    )
    latents = synthetic.sample_latents(world, key_eval, args.count, space=space)
    report = sequential_edit_report(methods, label, embed, latents, args.sequence.split(","), threshold)
    report["settings"] = {
        "run": str(run_dir),
        "alpha": args.alpha,
        "distance": args.distance,
        "seed": args.seed,
        "baseline_samples": args.baseline_samples,
        "identity_pairs": args.identity_pairs,
        "preset": editors.preset.name,
        "world": world.describe(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(format_sequential_report(report))
    if args.fractions:
        fractions = [float(f) for f in args.fractions.split(",")]
        curve = strength_curve(methods, label, embed, latents, args.sequence.split(","), threshold, fractions)
        report["curve"] = curve
        print(
            "\nStrength curve (fractions of each method's table strength): targets reversed / others kept / identity kept, %"
        )
        print("| fraction | " + " | ".join(curve) + " |")
        print("|---|" + "---|" * len(curve))
        for i, fraction in enumerate(sorted(fractions)):
            cells = [
                f"{100 * p[i]['targets_flipped']:.1f} / {100 * p[i]['others_kept']:.1f} / {100 * p[i]['identity_kept']:.1f}"
                for p in curve.values()
            ]
            print(f"| {fraction:g} | " + " | ".join(cells) + " |")
        report["matched_curve"] = {}
        print(
            "\nAlong ours' curve, the others' numbers interpolated at the same share of reversed targets "
            "(others kept / identity kept, %; '-' outside their range)"
        )
        print("| ours fraction | targets reversed | ours | " + " | ".join(n for n in curve if n != "ours") + " |")
        print("|---|---|---|" + "---|" * (len(curve) - 1))
        for point in curve["ours"]:
            row = [
                f"{point['fraction']:g}",
                f"{100 * point['targets_flipped']:.1f}",
                f"{100 * point['others_kept']:.1f} / {100 * point['identity_kept']:.1f}",
            ]
            for name in [n for n in curve if n != "ours"]:
                matched = at_matched_reversal(curve[name], point["targets_flipped"])
                report["matched_curve"].setdefault(name, []).append(matched)
                row.append(
                    "-"
                    if matched is None
                    else f"{100 * matched['others_kept']:.1f} / {100 * matched['identity_kept']:.1f}"
                )
            print("| " + " | ".join(row) + " |")
        ours = report["methods"]["ours"]["final"]
        report["matched"] = {}
        print(
            f"\nAt ours' reversal rate ({100 * ours['targets_flipped']:.1f}% of targets, alpha {args.alpha:g}): others kept / identity kept, %"
        )
        print(f"- ours: {100 * ours['others_kept']:.2f} / {100 * ours['identity_kept']:.2f}")
        for name in [n for n in curve if n != "ours"]:
            matched = at_matched_reversal(curve[name], ours["targets_flipped"])
            report["matched"][name] = matched
            if matched is None:
                print(
                    f"- {name}: its curve does not reach {100 * ours['targets_flipped']:.1f}% (range "
                    f"{100 * min(p['targets_flipped'] for p in curve[name]):.1f}..{100 * max(p['targets_flipped'] for p in curve[name]):.1f}%)"
                )
            else:
                print(
                    f"- {name} (distance {matched['strength']:.2f}, interpolated): {100 * matched['others_kept']:.2f} / {100 * matched['identity_kept']:.2f}"
                )
    out = Path(args.json) if args.json else run_dir / "sequential_edits.json"
    from jaxedit.io import atomic_write_text

    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(f"\nwritten to {out} in {report['settings']['seconds']:.0f} s", file=sys.stderr)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="RUN_DIR of `python -m train` (its editors/ and synthetic world)")
    parser.add_argument("--sequence", default="Young,Eyeglasses,Male,Smiling", help="attributes, edited in this order")
    parser.add_argument("--count", type=int, default=1000, help="latents edited (default 1000)")
    parser.add_argument("--alpha", type=float, default=1.25, help="our strength (default 1.25)")
    parser.add_argument("--distance", type=float, default=3.0, help="InterFaceGAN distance (default 3)")
    parser.add_argument(
        "--baseline-samples", type=int, default=20_000, help="labelled latents InterFaceGAN is fitted on"
    )
    parser.add_argument("--identity-samples", type=int, default=4000)
    parser.add_argument("--identity-pairs", type=int, default=100_000)
    parser.add_argument(
        "--fractions",
        default="0.1,0.25,0.5,1,1.5,2",
        help="also sweep every method's strength over these fractions of its table strength and compare "
        "at ours' reversal rate ('' to skip)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="where to write the JSON (default RUN_DIR/sequential_edits.json)")
    args = parser.parse_args(argv)
    from jaxedit.errors import JaxeditError

    try:
        run(args)
    except JaxeditError as error:
        print(f"sequential_edits: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
