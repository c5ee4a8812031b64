"""`jaxedit edit GEN_DIR EDITORS_DIR (--seed N | --latent F) --attr NAME=ALPHA ... --out OUT.png`."""

from __future__ import annotations

import sys

from jaxedit.cli import types
from jaxedit.cli.errors import flag_named
from jaxedit.errors import ConfigError


def add_parser(subparsers) -> None:
    from jaxedit.editing.render import parse_edit_spec, parse_sweep_spec

    parser = subparsers.add_parser(
        "edit",
        help="edit a face: attributes changed one after another, or a progressive sweep",
        description="Edit the face of a seed or a latent file with trained or converted editors. --attr steps run "
        "in order, each on the previous result; OUT.png is a labelled strip (input, then one panel per step). "
        "With --sweep, OUT.png is a grid whose rows are the sweep's values (after any --attr steps). "
        "Attribute names are CelebA's, case-insensitive. Latent files: .npy W [w_dim] / [B, w_dim] or "
        "W+ [num_ws, w_dim] / [B, num_ws, w_dim]; every row is edited.",
    )
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="generator directory (jaxedit convert stylegan2)")
    parser.add_argument(
        "editors_dir", metavar="EDITORS_DIR", help="editors directory (training or jaxedit convert latent-transformer)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--seed", metavar="N", type=types.numpy_seed, help="z = RandomState(N).randn(z_dim), as jaxedit generate"
    )
    source.add_argument("--latent", metavar="F.npy", help="W or W+ latents of this generator")
    parser.add_argument(
        "--attr",
        action="append",
        default=[],
        type=types.library(parse_edit_spec, "edit"),
        metavar="NAME=ALPHA",
        help="one edit step, e.g. Smiling=1.25 (repeat for a sequence; |ALPHA| > 3 warns)",
    )
    parser.add_argument(
        "--sweep",
        type=types.library(parse_sweep_spec, "sweep"),
        metavar="NAME=START:STOP:COUNT",
        help="progressive edit, e.g. Smiling=-1.5:1.5:7",
    )
    parser.add_argument(
        "--layers",
        metavar="RANGE",
        type=types.layer_range,
        help="W+ layers that take the edits, e.g. 0-10 or 0,2,4-6 or all "
        "(default: the editors' preset: official 0-10, paper all)",
    )
    parser.add_argument(
        "--truncation",
        type=types.finite_float,
        default=1.0,
        metavar="PSI",
        help="truncation psi towards the average latent (default 1: none)",
    )
    parser.add_argument(
        "--noise", choices=("const", "none"), default="const", help="noise maps: stored (const, default) or none"
    )
    parser.add_argument("--out", required=True, metavar="OUT.png", help="the strip or grid to write")
    parser.add_argument(
        "--save-latents", metavar="F.npy", help="also save every panel's W+ latents [panels, B, num_ws, w_dim]"
    )
    parser.set_defaults(handler=run)


def run(args) -> int:
    from jaxedit.editing.render import edit_strip, edit_sweep, load_latent_file, save_latents, seed_latents
    from jaxedit.latent import load_editors
    from jaxedit.stylegan2 import load_generator
    from jaxedit.stylegan2.render import check_output_path
    from jaxedit.viz.grid import save_png

    for flag, path, suffix in (("--out", args.out, ".png"), ("--save-latents", args.save_latents, ".npy")):
        if path is not None:
            with flag_named(flag):
                check_output_path(path, (suffix,))  # the extension, not a directory, parent not a file: before any work
    if not args.attr and args.sweep is None:
        raise ConfigError("nothing to edit: give at least one --attr NAME=ALPHA or a --sweep")
    generator = load_generator(args.gen_dir)
    editors = load_editors(args.editors_dir)
    if args.seed is not None:
        latents = seed_latents(generator, args.seed, args.truncation)
    else:
        with flag_named("--latent"):
            latents = load_latent_file(args.latent, generator, args.truncation)
    if args.sweep is None:
        result = edit_strip(
            generator, editors, latents, args.attr, layers=args.layers, noise_mode=args.noise, seed=args.seed
        )
    else:
        result = edit_sweep(
            generator,
            editors,
            latents,
            *args.sweep,
            steps=args.attr,
            layers=args.layers,
            noise_mode=args.noise,
            seed=args.seed,
        )
    for message in result.warnings:
        print(f"jaxedit: warning: {message}", file=sys.stderr)
    path = save_png(args.out, result.image)
    if args.sweep is not None:
        what, labels = f"{len(result.row_labels)} x {len(result.column_labels)} grid", result.row_labels
    else:
        what, labels = f"strip of {len(result.column_labels)} panels", result.column_labels
    print(f"wrote {path}: {what} at {generator.resolution}x{generator.resolution} ({', '.join(labels)})")
    if args.save_latents is not None:
        saved = save_latents(args.save_latents, result.latents)
        print(f"wrote {saved}: latents {list(result.latents.shape)}")
    return 0
