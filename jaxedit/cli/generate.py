"""`jaxedit generate GEN_DIR (--seeds S | --z F | --w F | --ws F) (--out OUT | --outdir DIR)`: render images;
`jaxedit generate GEN_DIR --style-mix ROWS:COLUMNS[:LAYER] --out OUT.png`: the style-mixing figure."""

from __future__ import annotations

from jaxedit.cli import types
from jaxedit.cli.errors import flag_named


def add_parser(subparsers) -> None:
    from jaxedit.stylegan2.render import parse_seeds
    from jaxedit.stylegan2.style_mixing import DEFAULT_LAYER, parse_style_mix
    from jaxedit.viz.image_files import MAX_GRID_PIXELS

    parser = subparsers.add_parser(
        "generate",
        help="render images from seeds or latent files with a converted generator",
        description="Render images. Seed s uses z = numpy.random.RandomState(s).randn(z_dim), as the NVlabs and "
        "rosinality scripts do. OUT ending in .png saves a grid; .npy saves raw float32 [B, H, W, 3] images "
        "(about [-1, 1]); --outdir DIR saves one PNG per image (seed<NNNN>.png). Images are written as they are "
        "rendered, so memory does not grow with their number (a grid is capped at "
        f"{MAX_GRID_PIXELS:,} image pixels). --style-mix renders the style-mixing figure: cell (r, c) takes the "
        "W+ layers below LAYER from column seed c and the rest from row seed r.",
    )
    parser.add_argument("gen_dir", metavar="GEN_DIR", help="generator directory written by `jaxedit convert stylegan2`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--seeds", type=types.library(parse_seeds, "seeds"), help="seeds, e.g. 0-7 or 1,5,9")
    source.add_argument("--z", metavar="F.npy", help="z latents [B, z_dim] (runs the mapping)")
    source.add_argument("--w", metavar="F.npy", help="W latents [B, w_dim] (same w for every layer)")
    source.add_argument("--ws", metavar="F.npy", help="W+ latents [B, num_ws, w_dim]")
    source.add_argument(
        "--style-mix",
        type=types.library(parse_style_mix, "style mix"),
        metavar="ROWS:COLUMNS[:LAYER]",
        help="style-mixing figure (--out .png), e.g. 0-3:10-13: the column seeds give W+ layers 0..LAYER-1, the "
        f"row seeds the rest (default LAYER {DEFAULT_LAYER}, as NVlabs' style_mixing.py --styles=0-6)",
    )
    parser.add_argument(
        "--truncation",
        type=types.finite_float,
        default=1.0,
        metavar="PSI",
        help="truncation psi towards the average latent (default 1: none)",
    )
    parser.add_argument(
        "--truncation-cutoff", type=types.integer, default=None, metavar="N", help="truncate only the first N W+ layers"
    )
    parser.add_argument(
        "--noise",
        choices=("const", "random", "none"),
        default="const",
        help="noise maps: stored (const, default), random, none",
    )
    parser.add_argument(
        "--noise-seed", type=types.seed, default=0, help="seed of the random noise (with --noise random)"
    )
    parser.add_argument(
        "--noise-maps",
        metavar="F.npz",
        default=None,
        help="explicit noise maps noise_0 .. noise_{L-1}, each [R, R] (overrides --noise)",
    )
    parser.add_argument(
        "--batch-size", type=types.positive_int, default=8, metavar="N", help="images per device batch (default 8)"
    )
    parser.add_argument(
        "--precision",
        choices=("highest", "default", "bfloat16"),
        default="highest",
        help="float32 'highest' (default), 'default' (TF32 on GPUs) or 'bfloat16'",
    )
    parser.add_argument(
        "--columns",
        type=types.positive_int,
        default=None,
        help="grid columns for .png output (default: one row up to 5 images, else near-square, with no empty "
        "cell where the count allows)",
    )
    parser.add_argument(
        "--labels",
        action="store_true",
        help="label the grid's tiles: each image's seed (or row of the latent file); with --style-mix the seeds "
        "of the rows and columns",
    )
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--out", metavar="OUT", help="output .png (grid) or .npy (raw float32 [B, H, W, 3])")
    output.add_argument(
        "--outdir",
        metavar="DIR",
        help="write one PNG per image into DIR (made if missing): seed<NNNN>.png for --seeds, else image<NNNN>.png "
        "by row; files of those names are replaced, nothing else in DIR is touched",
    )
    parser.set_defaults(handler=run)


def run(args) -> int:
    from jaxedit.io import check_output_path
    from jaxedit.stylegan2 import load_generator, render
    from jaxedit.stylegan2.loading import check_truncation_cutoff
    from jaxedit.viz import image_files

    if args.style_mix is not None:
        return _style_mix(args)
    if args.out is not None:
        with flag_named("--out"):
            check_output_path(args.out)
    else:
        with flag_named("--outdir"):
            image_files.check_output_directory(args.outdir)
    generator = load_generator(args.gen_dir, precision=args.precision)
    if args.seeds is not None:
        kind, latents = "z", render.SeedLatents(args.seeds, generator.z_dim)
    else:
        kind = "z" if args.z else "w" if args.w else "ws"
        with flag_named(f"--{kind}"):
            latents = render.load_latents(getattr(args, kind), kind, generator)
    with flag_named("--truncation-cutoff"):
        check_truncation_cutoff(args.truncation_cutoff, generator.num_ws)
    noise = None
    if args.noise_maps:
        with flag_named("--noise-maps"):
            noise = render.load_noise_maps(args.noise_maps, generator)
    count, image_shape = len(latents), (generator.resolution, generator.resolution, 3)
    if args.out is not None:
        with flag_named("--out"):
            image_files.check_output(args.out, count, image_shape)
    chunks = render.render_chunks(
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
    if args.out is not None:
        labels = None
        if args.labels:
            labels = [f"seed {s}" for s in args.seeds] if args.seeds is not None else [f"#{i}" for i in range(count)]
        path = image_files.write_images(args.out, chunks, count, image_shape, columns=args.columns, labels=labels)
    else:
        names = image_files.seed_file_name(args.seeds) if args.seeds is not None else image_files.row_file_name(count)
        path = image_files.write_image_files(args.outdir, chunks, names)
    print(f"wrote {count} images ({generator.resolution}x{generator.resolution}) to {path}")
    return 0


def _style_mix(args) -> int:
    from jaxedit.errors import ConfigError
    from jaxedit.io import check_output_path
    from jaxedit.stylegan2 import load_generator, style_mixing
    from jaxedit.stylegan2.loading import check_truncation_cutoff
    from jaxedit.viz.grid import save_png

    if args.out is None:
        raise ConfigError("--style-mix writes one figure: give --out FIGURE.png, not --outdir")
    given = [flag for flag, value in (("--columns", args.columns), ("--noise-maps", args.noise_maps)) if value]
    if given or args.noise == "random":
        raise ConfigError(f"--style-mix: {', '.join(given) or '--noise random'} does not apply to the figure")
    with flag_named("--out"):
        check_output_path(args.out, (".png",))
    generator = load_generator(args.gen_dir, precision=args.precision)
    with flag_named("--truncation-cutoff"):
        check_truncation_cutoff(args.truncation_cutoff, generator.num_ws)
    with flag_named("--style-mix"):
        figure = style_mixing.style_mix_figure(
            generator,
            args.style_mix,
            truncation_psi=args.truncation,
            truncation_cutoff=args.truncation_cutoff,
            noise_mode=args.noise,
            batch_size=args.batch_size,
            labels=args.labels,
            progress=True,
        )
    path = save_png(args.out, figure)
    size = f"{generator.resolution}x{generator.resolution}"
    print(f"wrote {path}: {style_mixing.describe(args.style_mix, generator.num_ws)} at {size}")
    return 0
