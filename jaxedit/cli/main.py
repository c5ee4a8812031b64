"""The `jaxedit` command: argument parsing and messages only; the work lives in the library.

Each sub-command has one `_add_<name>` function that declares its arguments and sets `handler`,
a function of the parsed arguments. Errors of our own types (`JaxeditError`) and bad files print
one line, `jaxedit: error: ...`, and exit with status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxedit.errors import JaxeditError

EXIT_USAGE_ERROR = 2


def _add_convert(subparsers) -> None:
    convert = subparsers.add_parser("convert", help="convert official PyTorch checkpoints (no torch needed)")
    kinds = convert.add_subparsers(dest="kind", required=True)
    _add_convert_stylegan2(kinds)
    _add_convert_latent_transformer(kinds)


def _add_convert_stylegan2(kinds) -> None:
    """`jaxedit convert stylegan2 SRC [OUT] [--overwrite]`."""
    parser = kinds.add_parser(
        "stylegan2",
        help="convert a rosinality .pt, pSp .pt or NVlabs .pkl StyleGAN2 checkpoint (format auto-detected)",
        description="Read a StyleGAN2 checkpoint without torch (nothing in the file is executed), check its layout "
        "key by key, and write a jaxedit generator directory atomically.",
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint file (.pt / .pkl)")
    parser.add_argument(
        "out", metavar="OUT", nargs="?", default=None, help="output directory (default: ported_weights/<SRC stem>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(handler=_run_convert_stylegan2)


def _run_convert_stylegan2(args) -> int:
    from jaxedit.convert.stylegan2 import convert_stylegan2

    result = convert_stylegan2(args.src, args.out, overwrite=args.overwrite)
    cfg = result.config
    print(f"detected format: {result.format}")
    print(f"resolution: {cfg.resolution}x{cfg.resolution}")
    print(f"W+ layers (num_ws): {cfg.num_ws}")
    print(f"parameters: {result.num_parameters:,}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.path}")
    return 0


def _add_convert_latent_transformer(kinds) -> None:
    """`jaxedit convert latent-transformer --classifier F [--tnets DIR] [--overwrite] OUT`."""
    parser = kinds.add_parser(
        "latent-transformer",
        help="official latent-transformer classifier + tnets -> an editors directory",
        description="Convert the official latent_classifier_epoch_20.pth (and tnet_<k>.pth.tar files) to a "
        "jaxedit editors directory, the same format training writes. No torch needed.",
    )
    parser.add_argument(
        "--classifier", required=True, metavar="FILE", help="latent_classifier_epoch_20.pth (LCNet state dict)"
    )
    parser.add_argument(
        "--tnets", metavar="DIR", help="folder with tnet_<attribute index>.pth.tar files (default: classifier only)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("out", metavar="OUT", help="editors directory to write")
    parser.set_defaults(handler=_convert_latent_transformer)


def _convert_latent_transformer(args) -> int:
    from jaxedit.convert.latent_transformer import convert_latent_transformer
    from jaxedit.latent.editors import load_editors

    out = convert_latent_transformer(args.classifier, args.out, tnets=args.tnets, overwrite=args.overwrite)
    editors = load_editors(out)
    shape = " x ".join(str(s) for s in editors.latent_shape)
    widths = "-".join(str(w) for w in editors.classifier_module.widths)
    covered = ", ".join(editors.attributes) if editors.attributes else "none"
    print(
        f"wrote {out}: {editors.preset.name} editors on latents {shape}, classifier {widths}, "
        f"{len(editors.attributes)} transformer(s): {covered}"
    )
    return 0


def _add_generate(subparsers) -> None:
    """`jaxedit generate GEN_DIR ...`."""
    parser = subparsers.add_parser(
        "generate",
        help="render images from seeds or latent files with a converted generator",
        description="Render images. Seed s uses z = numpy.random.RandomState(s).randn(z_dim), as the NVlabs and "
        "rosinality scripts do. OUT ending in .png saves a grid; .npy saves raw float32 [B, H, W, 3] images (about [-1, 1]).",
    )
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="generator directory written by `jaxedit convert stylegan2`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seeds", help="seeds, e.g. 0-7 or 1,5,9")
    source.add_argument("--z", metavar="F.npy", help="z latents [B, z_dim] (runs the mapping)")
    source.add_argument("--w", metavar="F.npy", help="W latents [B, w_dim] (same w for every layer)")
    source.add_argument("--ws", metavar="F.npy", help="W+ latents [B, num_ws, w_dim]")
    parser.add_argument(
        "--truncation",
        type=float,
        default=1.0,
        metavar="PSI",
        help="truncation psi towards the average latent (default 1: none)",
    )
    parser.add_argument(
        "--truncation-cutoff", type=int, default=None, metavar="N", help="truncate only the first N W+ layers"
    )
    parser.add_argument(
        "--noise",
        choices=("const", "random", "none"),
        default="const",
        help="noise maps: stored (const, default), random, none",
    )
    parser.add_argument("--noise-seed", type=int, default=0, help="seed of the random noise (with --noise random)")
    parser.add_argument(
        "--noise-maps",
        metavar="F.npz",
        default=None,
        help="explicit noise maps noise_0 .. noise_{L-1}, each [R, R] (overrides --noise)",
    )
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per device batch (default 8)")
    parser.add_argument(
        "--precision",
        choices=("highest", "default", "bfloat16"),
        default="highest",
        help="float32 'highest' (default), 'default' (TF32 on GPUs) or 'bfloat16'",
    )
    parser.add_argument("--columns", type=int, default=None, help="grid columns for .png output (default: square-ish)")
    parser.add_argument(
        "--out", required=True, metavar="OUT", help="output .png (grid) or .npy (raw float32 [B, H, W, 3])"
    )
    parser.set_defaults(handler=_run_generate)


def _run_generate(args) -> int:
    from jaxedit.errors import InputError
    from jaxedit.stylegan2 import load_generator, render

    render.check_output_path(args.out)
    if args.columns is not None and args.columns < 1:
        raise InputError(f"--columns {args.columns}: expected a positive integer")
    generator = load_generator(args.gen_dir, precision=args.precision)
    if args.seeds is not None:
        kind, latents = "z", render.z_from_seeds(render.parse_seeds(args.seeds), generator.z_dim)
    else:
        kind = "z" if args.z else "w" if args.w else "ws"
        latents = render.load_latents(getattr(args, kind), kind, generator)
    noise = render.load_noise_maps(args.noise_maps, generator) if args.noise_maps else None
    images = render.render(
        generator,
        latents,
        kind,
        truncation_psi=args.truncation,
        truncation_cutoff=args.truncation_cutoff,
        noise_mode=args.noise,
        noise_seed=args.noise_seed,
        batch_size=args.batch_size,
        progress=True,
        noise=noise,
    )
    path = render.save_images(args.out, images, columns=args.columns)
    print(f"wrote {len(images)} images ({generator.resolution}x{generator.resolution}) to {path}")
    return 0


def _add_edit(subparsers) -> None:
    """`jaxedit edit GEN_DIR EDITORS_DIR (--seed N | --latent F) --attr NAME=ALPHA ... --out OUT.png`."""
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
    source.add_argument("--seed", metavar="N", help="z = RandomState(N).randn(z_dim), as jaxedit generate")
    source.add_argument("--latent", metavar="F.npy", help="W or W+ latents of this generator")
    parser.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="NAME=ALPHA",
        help="one edit step, e.g. Smiling=1.25 (repeat for a sequence; |ALPHA| > 3 warns)",
    )
    parser.add_argument("--sweep", metavar="NAME=START:STOP:COUNT", help="progressive edit, e.g. Smiling=-1.5:1.5:7")
    parser.add_argument(
        "--layers",
        metavar="RANGE",
        help="W+ layers that take the edits, e.g. 0-10 or 0,2,4-6 or all "
        "(default: the editors' preset: official 0-10, paper all)",
    )
    parser.add_argument(
        "--truncation", default="1.0", metavar="PSI", help="truncation psi towards the average latent (default 1: none)"
    )
    parser.add_argument(
        "--noise", choices=("const", "none"), default="const", help="noise maps: stored (const, default) or none"
    )
    parser.add_argument("--out", required=True, metavar="OUT.png", help="the strip or grid to write")
    parser.add_argument(
        "--save-latents", metavar="F.npy", help="also save every panel's W+ latents [panels, B, num_ws, w_dim]"
    )
    parser.set_defaults(handler=_run_edit)


def _parse_int(text: str, flag: str) -> int:
    from jaxedit.errors import ConfigError

    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected an integer") from None


def _parse_float(text: str, flag: str) -> float:
    import math

    from jaxedit.errors import ConfigError

    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{flag} {text!r}: expected a finite number")
    return value


def _run_edit(args) -> int:
    from jaxedit.editing.edits import parse_layers
    from jaxedit.editing.render import (
        edit_strip,
        edit_sweep,
        load_latent_file,
        parse_edit_spec,
        parse_sweep_spec,
        save_latents,
        seed_latents,
    )
    from jaxedit.errors import ConfigError
    from jaxedit.latent import load_editors
    from jaxedit.stylegan2 import load_generator
    from jaxedit.viz.grid import save_png

    if not args.out.lower().endswith(".png"):
        raise ConfigError(f"--out {args.out}: expected a .png path")
    if args.save_latents is not None and not args.save_latents.lower().endswith(".npy"):
        raise ConfigError(f"--save-latents {args.save_latents}: expected a .npy path")
    from jaxedit.stylegan2.render import check_output_path

    check_output_path(args.out)  # not a directory, parent not a file: before any work
    if args.save_latents is not None:
        check_output_path(args.save_latents, "--save-latents")
    steps = [parse_edit_spec(spec) for spec in args.attr]
    sweep = parse_sweep_spec(args.sweep) if args.sweep is not None else None
    if not steps and sweep is None:
        raise ConfigError("nothing to edit: give at least one --attr NAME=ALPHA or a --sweep")
    seed = _parse_int(args.seed, "--seed") if args.seed is not None else None
    psi = _parse_float(args.truncation, "--truncation")
    if args.layers is not None:
        parse_layers(args.layers)  # syntax check before loading anything
    generator = load_generator(args.gen_dir)
    editors = load_editors(args.editors_dir)
    latents = seed_latents(generator, seed, psi) if seed is not None else load_latent_file(args.latent, generator, psi)
    if sweep is None:
        result = edit_strip(generator, editors, latents, steps, layers=args.layers, noise_mode=args.noise, seed=seed)
    else:
        result = edit_sweep(
            generator,
            editors,
            latents,
            sweep[0],
            sweep[1],
            steps=steps,
            layers=args.layers,
            noise_mode=args.noise,
            seed=seed,
        )
    for message in result.warnings:
        print(f"jaxedit: warning: {message}", file=sys.stderr)
    path = save_png(args.out, result.image)
    what = (
        f"{len(result.row_labels)} x {len(result.column_labels)} grid"
        if sweep is not None
        else f"strip of {len(result.column_labels)} panels"
    )
    print(
        f"wrote {path}: {what} at {generator.resolution}x{generator.resolution} ({', '.join(result.row_labels if sweep is not None else result.column_labels)})"
    )
    if args.save_latents is not None:
        saved = save_latents(args.save_latents, result.latents)
        print(f"wrote {saved}: latents {list(result.latents.shape)}")
    return 0


def _add_eval(subparsers) -> None:
    """`jaxedit eval EDITORS_DIR [--out DIR] ...`."""
    parser = subparsers.add_parser(
        "eval",
        help="the paper's Table 1: our editors against InterFaceGAN and GANSpace",
        description="Edit N latents per attribute to reverse it (ours at alpha 1.25, InterFaceGAN/GANSpace at "
        "distance 3) and measure classification accuracy, attribute preservation and identity preservation "
        "(0.1%% false-acceptance cosine threshold). Labeller and identity: the SYNTHETIC world's stand-ins by default "
        "(rebuilt from the editors' training info), or a generator plus your JAX image classifier and face recogniser.",
    )
    parser.add_argument("editors", metavar="EDITORS_DIR", help="trained or converted editors directory")
    parser.add_argument("--out", default="", help="report directory (default EDITORS_DIR/../eval)")
    parser.add_argument(
        "--attributes", default="all", help="names or indices, comma-separated (default: all the editors cover)"
    )
    parser.add_argument("--count", type=int, default=1000, help="latents per attribute (default 1000)")
    parser.add_argument("--alpha", type=float, default=1.25, help="our edit strength (default 1.25)")
    parser.add_argument("--distance", type=float, default=3.0, help="InterFaceGAN/GANSpace distance (default 3)")
    parser.add_argument(
        "--baselines", default="interfacegan,interfacegan_cond,ganspace", help="comma-separated, or 'none'"
    )
    parser.add_argument(
        "--baseline-samples", type=int, default=20000, help="labelled latents the baselines are fitted on"
    )
    parser.add_argument("--identity-samples", type=int, default=4000)
    parser.add_argument("--identity-pairs", type=int, default=200000, help="random pairs for the 0.1%% FAR threshold")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the evaluation")
    parser.add_argument(
        "--world-seed",
        type=int,
        default=None,
        help="synthetic world seed (default: the one the editors were trained in)",
    )
    parser.add_argument(
        "--generator", default="", help="converted generator directory: latents from its mapping network"
    )
    parser.add_argument(
        "--image-classifier",
        default="",
        metavar="MODULE:CALLABLE",
        help="with --generator: images [B,H,W,3] -> probabilities [B,40] (CelebA order); replaces the synthetic labeller",
    )
    parser.add_argument(
        "--face-embedder",
        default="",
        metavar="MODULE:CALLABLE",
        help="with --generator: images -> identity embeddings [B,D]; replaces the synthetic identity",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="rendering batch with --image-classifier")
    parser.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    import math
    from pathlib import Path

    from jaxedit.attributes import ATTRIBUTES, parse_attributes
    from jaxedit.data import synthetic
    from jaxedit.errors import AttributeNameError, ConfigError
    from jaxedit.eval import protocol
    from jaxedit.eval.suite import SuiteSettings, import_callable, run_suite, synthetic_world_for
    from jaxedit.latent.editors import load_editors

    editors = load_editors(args.editors)
    names = (
        [ATTRIBUTES[i] for i in parse_attributes(args.attributes)]
        if args.attributes != "all"
        else list(editors.attributes)
    )
    missing = [name for name in names if name not in editors.attributes]
    if missing:
        raise AttributeNameError(
            f"{args.editors}: no transformer for {', '.join(missing)}; these editors cover {', '.join(editors.attributes) or 'none'}"
        )
    chosen = tuple(
        b.strip() for b in args.baselines.split(",") if b.strip() and args.baselines.strip().lower() != "none"
    )
    settings = SuiteSettings(
        count=args.count,
        alpha=args.alpha,
        distance=args.distance,
        baseline_samples=args.baseline_samples,
        identity_samples=args.identity_samples,
        identity_pairs=args.identity_pairs,
        baselines=chosen,
        seed=args.seed,
    )
    for name in ("count", "baseline_samples", "identity_samples", "identity_pairs"):
        if getattr(settings, name) < 2:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 2")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: expected a positive integer")
    for name in ("alpha", "distance"):
        if not math.isfinite(getattr(args, name)):
            raise ConfigError(f"--{name} {getattr(args, name)}: expected a finite number")
    for name in ("seed", "world_seed"):
        if getattr(args, name) is not None and not 0 <= getattr(args, name) < 2**63:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer 0..2**63-1")
    if (args.image_classifier or args.face_embedder) and not args.generator:
        raise ConfigError("--image-classifier and --face-embedder need --generator GEN_DIR to render the latents")
    if bool(args.image_classifier) != bool(args.face_embedder):
        raise ConfigError(
            "give both --image-classifier and --face-embedder (real weights), or neither (synthetic world)"
        )
    generator = None
    if args.generator:
        from jaxedit.stylegan2 import load_generator

        generator = load_generator(args.generator)
    world = synthetic_world_for(editors, args.world_seed, generator)
    space = "w+" if len(editors.latent_shape) == 2 else "w"
    sampler = lambda key, n: synthetic.sample_latents(world, key, n, space=space)
    if args.image_classifier:
        labeller = protocol.image_labeller(
            generator, import_callable(args.image_classifier), batch_size=args.batch_size
        )
        embedder = protocol.image_embedder(generator, import_callable(args.face_embedder), batch_size=args.batch_size)
        where = f"generator {args.generator}, labeller {args.image_classifier}, identity {args.face_embedder}"
    else:
        labeller, embedder = synthetic.labeller(world), synthetic.identity_embedder(world)
        where = world.describe()
    out = Path(args.out) if args.out else Path(args.editors).resolve().parent / "eval"
    print(where, file=sys.stderr)
    _, table = run_suite(
        editors,
        labeller,
        embedder,
        sampler,
        out,
        settings,
        attributes=names,
        extra_settings={"labeller": where, "editors_dir": str(args.editors)},
        title=where,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(table)
    print(f"\nwritten to {out}/ (report.json, report.md, plots/)")
    return 0


def _add_info(subparsers) -> None:
    """`jaxedit info DIR [--json]`."""
    info = subparsers.add_parser(
        "info",
        help="what a converted or trained directory holds",
        description="Describe a jaxedit model directory: generator architecture or editors' preset and "
        "attributes, parameter count, source file and its sha256, creation date. Arrays are not loaded.",
    )
    info.add_argument("directory", metavar="DIR", help="a directory written by `jaxedit convert` or training")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(handler=_run_info)


def _run_info(args) -> int:
    import json

    from jaxedit.cli.info import describe, format_info

    described = describe(args.directory)
    print(json.dumps(described, indent=1, sort_keys=True) if args.json else format_info(described))
    return 0


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors (a missing flag, `--truncation abc`) in one line too, like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="jaxedit", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (_add_convert, _add_generate, _add_edit, _add_eval, _add_info):
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except JaxeditError as error:
        if args.debug:
            raise
        print(f"jaxedit: error: {error}", file=sys.stderr)
        return EXIT_USAGE_ERROR
    except (OSError, ValueError) as error:  # files that vanish, unreadable paths, bad numbers
        if args.debug:
            raise
        print(f"jaxedit: error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return EXIT_USAGE_ERROR
    except KeyboardInterrupt:
        print("jaxedit: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
