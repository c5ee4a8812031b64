"""`jaxedit edit GEN_DIR EDITORS_DIR (--seed N | --seeds A-B | --latent F | --image PHOTO --encoder DIR)
--attr NAME=ALPHA ... [--method ours,interfacegan,ganspace] --out OUT` (OUT: the panels as a .png, or with
--paste-back the edited photo itself)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxedit.cli import types
from jaxedit.cli.binding import add_force_flag, check_generator
from jaxedit.cli.encode import add_face_flags
from jaxedit.cli.errors import flag_named
from jaxedit.errors import ConfigError, InputError

MAX_FACES = 64
"""Faces in one `edit --seeds` picture (every panel is rendered and held in memory)."""
METHODS = ("ours", "interfacegan", "ganspace")


def _methods(text: str) -> list[str]:
    """'ours,interfacegan' -> ['ours', 'interfacegan'] (known names, any case)."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in METHODS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: expected methods among {', '.join(METHODS)}, comma-separated")
    return names


def _method_list(given) -> list[str]:
    names = [name for group in given or [["ours"]] for name in group]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"--method: {', '.join(twice)} given twice")
    return names


def add_parser(subparsers) -> None:
    from jaxedit.editing.requests import parse_edit_spec, parse_sweep_spec
    from jaxedit.stylegan2.render import parse_seeds

    parser = subparsers.add_parser(
        "edit",
        help="edit a face: attributes changed one after another, or a progressive sweep",
        description="Edit the face of a seed or a latent file with trained or converted editors. --attr steps run "
        "in order, each on the previous result; OUT.png is a labelled strip (input, then one panel per step), one "
        "row per face. With --sweep, OUT.png has one row of frames per face, the sweep's values left to right "
        "(after any --attr steps). --method adds rows for the InterFaceGAN and GANSpace baselines on the same "
        "faces and steps. "
        "Attribute names are CelebA's, case-insensitive. Latent files: .npy W [w_dim] / [B, w_dim] or "
        "W+ [num_ws, w_dim] / [B, num_ws, w_dim]; every row is edited. --image PHOTO --encoder DIR edits a "
        "photo: its face is aligned and encoded, the strip starts with the aligned photo and its reconstruction, "
        "and with --paste-back OUT is the photo itself, at its own size, with the last step's face pasted back.",
    )
    parser.add_argument(
        "gen_dir",
        metavar="GEN_DIR",
        help="generator directory (jaxedit convert stylegan2), or a python -m train RUN_DIR alone: its editors and "
        "its generator, or the schematic of its synthetic world",
    )
    parser.add_argument(
        "editors_dir",
        metavar="EDITORS_DIR",
        nargs="?",
        help="editors directory (training or jaxedit convert latent-transformer); omitted with a RUN_DIR",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--seed", metavar="N", type=types.numpy_seed, help="z = RandomState(N).randn(z_dim), as jaxedit generate"
    )
    source.add_argument(
        "--seeds",
        metavar="SEEDS",
        type=types.library(parse_seeds, "seeds"),
        help=f"several faces, one row each, e.g. 0-7 or 1,5,9 (at most {MAX_FACES})",
    )
    source.add_argument("--latent", metavar="F.npy", help="W or W+ latents of this generator")
    source.add_argument("--image", metavar="PHOTO", help="a photo to encode and edit (needs --encoder)")
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
        "--method",
        action="append",
        type=_methods,
        metavar="METHODS",
        help="ours (default), interfacegan, ganspace, comma-separated: one row per method and face, in this order. "
        "The baselines move a unit direction in W by ALPHA x --baseline-scale on the layers ours edits; they are "
        "fitted on --baseline-samples latents of the generator labelled by the editors' classifier",
    )
    parser.add_argument(
        "--baseline-samples",
        type=types.positive_int,
        default=10_000,
        metavar="N",
        help="latents the baselines are fitted on (default 10000; with --method)",
    )
    parser.add_argument(
        "--baseline-scale",
        type=types.finite_float,
        default=None,
        metavar="D",
        help="baseline distance in W per unit of alpha (default 2.4: alpha 1.25 is distance 3, as in the paper's "
        "Table 1)",
    )
    parser.add_argument(
        "--labels",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="label bands: the faces (seeds), the steps or alphas, the methods (default on)",
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
    parser.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="the strip or grid to write (.png); with --paste-back the edited photo (.png, .jpg, ...; no "
        "extension: the photo's own format)",
    )
    parser.add_argument(
        "--fps",
        type=types.finite_float,
        default=10.0,
        metavar="FPS",
        help="frames per second of a video OUT (default 10)",
    )
    parser.add_argument(
        "--pingpong", action="store_true", help="a video OUT plays the sweep forward, then back (loops smoothly)"
    )
    parser.add_argument(
        "--save-latents", metavar="F.npy", help="also save every panel's W+ latents [panels, B, num_ws, w_dim]"
    )
    photo = parser.add_argument_group("editing a photo (--image)")
    photo.add_argument("--encoder", metavar="ENCODER_DIR", help="pSp/e4e encoder directory (jaxedit convert encoder)")
    photo.add_argument(
        "--paste-back",
        action="store_true",
        help="write the photo itself, at its own size, with the edited face (the last --attr step) blended in",
    )
    add_face_flags(parser)
    add_force_flag(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from jaxedit.editing.render import edit_strip, edit_sweep
    from jaxedit.editing.requests import load_latent_file, save_latents, seeds_latents
    from jaxedit.io import check_output_path
    from jaxedit.viz.grid import save_png

    _check_photo_flags(args)
    methods = _method_list(args.method)
    if args.seeds is not None and len(args.seeds) > MAX_FACES:
        raise ConfigError(f"--seeds: {len(args.seeds)} faces, at most {MAX_FACES} in one picture")
    if args.paste_back and len(methods) != 1:
        raise ConfigError("--paste-back writes one edited photo: give one --method")
    outputs = [("--save-latents", args.save_latents, (".npy",))]
    video = Path(args.out).suffix.lower() in VIDEO_SUFFIXES
    if video:
        _check_video_flags(args, methods)
    if not args.paste_back:
        outputs.append(("--out", args.out, VIDEO_SUFFIXES if video else (".png",)))
    for flag, path, suffixes in outputs:
        if path is not None:
            with flag_named(flag):
                check_output_path(path, suffixes)  # the extension, not a directory, parent not a file: before any work
    if args.paste_back:
        _check_photo_output(args.out)
    if not args.attr and args.sweep is None:
        raise ConfigError("nothing to edit: give at least one --attr NAME=ALPHA or a --sweep")
    generator, editors, bound = _load_models(args)
    photo, panels, faces = None, {}, None
    seeds = [args.seed] if args.seed is not None else args.seeds
    if seeds is not None:
        latents, faces = seeds_latents(generator, seeds, args.truncation), [f"seed {seed}" for seed in seeds]
    elif args.latent is not None:
        with flag_named("--latent"):
            latents = load_latent_file(args.latent, generator, args.truncation)
    else:
        photo, latents, panels = _encode_photo(args, generator, editors)
    if not bound:
        check_generator(editors, generator, args.editors_dir, args.force)  # before any edit is made or rendered
    if video:
        return _write_video(args, generator, editors, latents)
    methods = _fit_baselines(args, methods, generator, editors)
    options = dict(layers=args.layers, methods=methods)
    if args.paste_back:  # only the last step is rendered
        from jaxedit.editing.render import sequence_latents

        panels_latents, labels, alpha_warnings = sequence_latents(generator, editors, latents, args.attr, **options)
        _warn(alpha_warnings)
        return _write_pasted(args, generator, photo, panels_latents, labels[-1])
    options.update(noise_mode=args.noise, face_labels=faces, labels=args.labels)
    if args.sweep is None:
        result = edit_strip(generator, editors, latents, args.attr, **options, **panels)
        what = f"strip of {len(result.column_labels)} panels"
    else:
        result = edit_sweep(generator, editors, latents, *args.sweep, steps=args.attr, **options, **panels)
        what = f"sweep of {len(result.column_labels)} frames"
    _warn(result.warnings)
    path = save_png(args.out, result.image)
    count = len(result.row_labels or ())
    rows = f"; {count} row{'s' * (count > 1)} ({', '.join(result.row_labels)})" if count else ""
    size = f"{generator.resolution}x{generator.resolution}"
    print(f"wrote {path}: {what} at {size} ({', '.join(result.column_labels)}){rows}")
    if args.save_latents is not None:
        saved = save_latents(args.save_latents, result.latents)
        print(f"wrote {saved}: latents {list(result.latents.shape)}")
    return 0


def _fit_baselines(args, methods: list[str], generator, editors) -> list:
    """The --method list with each baseline name replaced by its fitted directions."""
    baselines = [name for name in methods if name != "ours"]
    if not baselines:
        if args.baseline_scale is not None:
            raise ConfigError("--baseline-scale: only with --method interfacegan or ganspace")
        return methods
    from jaxedit.editing.edits import resolve_attribute
    from jaxedit.eval.baselines import fit_linear_directions

    asked = [name for name, _ in args.attr] + ([args.sweep[0]] if args.sweep is not None else [])
    names = list(dict.fromkeys(editors.attributes[resolve_attribute(editors, name)] for name in asked))
    fitted = fit_linear_directions(
        generator, editors, names, baselines, samples=args.baseline_samples, scale=args.baseline_scale
    )
    for directions in fitted:
        print(directions.description, file=sys.stderr)
    by_name = {directions.name: directions for directions in fitted}
    return [by_name.get(name, name) for name in methods]


def _check_photo_flags(args) -> None:
    """The photo flags go with --image (and --image with --encoder), before anything is loaded."""
    if args.image is None:
        given = [flag for flag, value in (("--encoder", args.encoder), ("--paste-back", args.paste_back)) if value]
        given += [
            f
            for f, v in (
                ("--landmarks", args.landmarks),
                ("--aligned", args.aligned),
                ("--face", args.face is not None),
            )
            if v
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --image PHOTO")
        return
    if args.encoder is None:
        raise ConfigError("--image needs an encoder: --encoder ENCODER_DIR (jaxedit convert encoder)")
    if args.paste_back and args.sweep is not None:
        raise ConfigError("--paste-back writes one edited photo: give --attr steps, not --sweep")


def _check_photo_output(out: str) -> None:
    """--out with --paste-back: an image extension Pillow can write, or none (the photo's format)."""
    from PIL import Image

    from jaxedit.io import check_output_path

    suffix = Path(out).suffix.lower()
    Image.init()
    if suffix and Image.registered_extensions().get(suffix) not in Image.SAVE:
        raise InputError(f"--out: {out}: not an image extension Pillow can write (e.g. .png, .jpg)")
    with flag_named("--out"):
        check_output_path(out, (suffix,))


def _encode_photo(args, generator, editors):
    """(PreparedPhoto, W+ [1, num_ws, w_dim], panel arguments of edit_strip) for --image."""
    import numpy as np

    from jaxedit.cli.encode import face_sources, prepare_photos
    from jaxedit.editing.photo import check_latent_spaces, crop_at, encode_photos
    from jaxedit.encoders import load_encoder

    with flag_named("--encoder"):
        encoder = load_encoder(args.encoder)
    check_latent_spaces(encoder, generator, editors)
    (photo,) = prepare_photos([args.image], face_sources(args, [args.image]), encoder.input_size)
    latents = encode_photos(encoder, [photo])
    if args.truncation != 1.0:
        latents = np.asarray(generator.truncate(latents, args.truncation))
    height, width = photo.image.shape[:2]
    print(f"{photo.path}: {width}x{height}, {photo.how}, encoded by {encoder.kind}", file=sys.stderr)
    if args.paste_back:
        return photo, latents, {}
    crop = crop_at(photo, generator.resolution)[None]
    if args.sweep is None:
        return photo, latents, {"input_label": "reconstruction", "lead_panels": [("photo", crop)]}
    from jaxedit.viz.grid import to_uint8

    recon = to_uint8(np.asarray(generator.synthesis(latents, args.noise)))
    return photo, latents, {"lead_panels": [("photo", crop), ("reconstruction", recon)]}


def _warn(messages) -> None:
    for message in messages:
        print(f"jaxedit: warning: {message}", file=sys.stderr)


def _write_pasted(args, generator, photo, latents, label: str) -> int:
    """latents: W+ [P, 1, num_ws, w_dim] of the reconstruction and each step; the last is pasted."""
    from jaxedit.editing.photo import paste_edit
    from jaxedit.editing.requests import save_latents
    from jaxedit.encoders.photo import save_format, save_photo

    pasted = paste_edit(generator, latents[-1], photo, noise_mode=args.noise)
    path = save_photo(args.out, pasted, like=photo.info)
    height, width = pasted.shape[:2]
    print(f"wrote {path}: {save_format(path, photo.info)} {width}x{height}, {label} pasted back")
    if args.save_latents is not None:
        saved = save_latents(args.save_latents, latents)
        print(f"wrote {saved}: latents {list(latents.shape)}")
    return 0


VIDEO_SUFFIXES = (".gif", ".webp", ".mp4")


def _load_models(args) -> tuple:
    """(generator, editors, bound): from GEN_DIR EDITORS_DIR, or from a run directory alone (bound: the run
    directory already pairs them, with the schematic of its world when it recorded no generator)."""
    from jaxedit.latent import load_editors
    from jaxedit.stylegan2 import load_generator

    if args.editors_dir is None:
        from jaxedit.data.schematic_renderer import SchematicRenderer
        from jaxedit.serve.models import load_run

        generator, editors = load_run(args.gen_dir)
        if isinstance(generator, SchematicRenderer):
            print(f"faces: {generator.describe()}", file=sys.stderr)
        return generator, editors, True
    return load_generator(args.gen_dir), load_editors(args.editors_dir), False


def _check_video_flags(args, methods) -> None:
    if args.sweep is None:
        raise ConfigError(f"--out {args.out}: a video shows a --sweep NAME=START:STOP:COUNT; give one")
    if args.paste_back or args.image is not None:
        raise ConfigError(f"--out {args.out}: videos of photos are not supported; write a .png strip")
    if methods != ["ours"]:
        raise ConfigError(f"--out {args.out}: a video shows ours only; use a .png OUT for --method rows")
    if not args.fps > 0:
        raise ConfigError(f"--fps: must be a positive number of frames per second, got {args.fps:g}")


def _write_video(args, generator, editors, latents) -> int:
    from jaxedit.editing.requests import save_latents
    from jaxedit.editing.video import sweep_video

    name, alphas = args.sweep
    path, ws = sweep_video(
        args.out,
        generator,
        editors,
        latents,
        name,
        alphas,
        steps=args.attr,
        layers=args.layers,
        noise_mode=args.noise,
        fps=args.fps,
        pingpong=args.pingpong,
    )
    frames = 2 * len(alphas) - 2 if args.pingpong and len(alphas) > 2 else len(alphas)
    print(f"wrote {path}: {frames} frames of {name} from {alphas[0]:g} to {alphas[-1]:g} at {args.fps:g} fps")
    if args.save_latents is not None:
        saved = save_latents(args.save_latents, ws)
        print(f"wrote {saved}: latents {list(ws.shape)}")
    return 0
