"""`jaxedit encode ENCODER_DIR PHOTO... --out latents.npy [--generator GEN_DIR --preview recon.png]`.

Also the face flags `jaxedit edit --image` shares: `--landmarks FILE`, `--aligned`, `--face N`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jaxedit.cli import types
from jaxedit.cli.errors import flag_named
from jaxedit.errors import ConfigError, InputError


def add_face_flags(parser, several: bool = False) -> None:
    """The flags that say where a photo's face is (dlib detection when none is given)."""
    each = " (repeat once per photo, in order)" if several else ""
    faces = parser.add_argument_group(
        "finding the face",
        "By default dlib finds the face and its 68 landmarks (pip install 'jaxedit[faces]'); without dlib, give "
        "--landmarks or --aligned.",
    )
    faces.add_argument(
        "--landmarks",
        metavar="FILE",
        action="append" if several else "store",
        default=None,
        help=f"68 (x, y) landmarks in dlib order: .npy, .txt/.csv (68 rows) or .json{each}",
    )
    faces.add_argument(
        "--aligned",
        action="store_true",
        help="the photo is already an FFHQ-aligned face crop: encode it whole (resized to the encoder's input)",
    )
    faces.add_argument(
        "--face",
        metavar="N",
        type=types.integer,
        default=None,
        help="with several faces in a photo, the one to use (0-based, numbered left to right)",
    )


def face_sources(args, photos: list[str]) -> list:
    """One `FaceSource` per photo from the face flags."""
    from jaxedit.editing.photo import FaceSource

    landmarks = args.landmarks
    if landmarks is None:
        landmarks = [None] * len(photos)
    elif isinstance(landmarks, str):
        landmarks = [landmarks]
    if args.aligned and any(landmarks):
        raise ConfigError("--aligned and --landmarks: an aligned crop needs no landmarks, give one or the other")
    if args.face is not None and (args.aligned or any(landmarks)):
        raise ConfigError("--face picks among detected faces: not with --landmarks or --aligned")
    if args.face is not None and args.face < 0:
        raise ConfigError(f"--face {args.face}: expected 0 or more (faces are numbered left to right)")
    if len(landmarks) != len(photos):
        raise ConfigError(f"--landmarks given {len(landmarks)} times for {len(photos)} photos: give one per photo")
    return [FaceSource(landmarks=lm, aligned=args.aligned, face_index=args.face) for lm in landmarks]


def prepare_photos(photos: list[str], sources: list, input_size: int) -> list:
    """`PreparedPhoto`s; the landmark detector is loaded once, and only when a photo needs it.
    Errors name the photo, and the flag of the landmarks file they came from."""
    from jaxedit.editing.photo import prepare_photo

    detector = None
    if any(not source.aligned and source.landmarks is None for source in sources):
        from jaxedit.encoders.landmarks import LandmarkDetector

        try:
            detector = LandmarkDetector(lazy=True)
        except ConfigError as error:
            raise ConfigError(f"{error}; see --landmarks and --aligned") from None
    prepared = []
    for path, source in zip(photos, sources):
        try:
            prepared.append(prepare_photo(path, input_size, source, detector))
        except InputError as error:
            message = str(error).replace("choose one with a face index", "choose one with --face N")
            if source.landmarks is not None and str(source.landmarks) in message:
                message = f"--landmarks: {message}"
            raise InputError(message) from None
    return prepared


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="photos -> W+ latents with a pSp/e4e encoder (FFHQ alignment first)",
        description="Find each photo's face, align it as FFHQ was (68 landmarks), and encode it with a converted "
        "pSp or e4e encoder. OUT.npy holds float32 W+ latents [N, num_ws, w_dim], one row per photo, which "
        "`jaxedit generate --ws` and `jaxedit edit --latent` take. --preview renders them with the generator.",
    )
    parser.add_argument("encoder_dir", metavar="ENCODER_DIR", help="encoder directory (jaxedit convert encoder)")
    parser.add_argument("photos", metavar="PHOTO", nargs="+", help="photos (any format Pillow reads)")
    parser.add_argument("--out", required=True, metavar="OUT.npy", help="W+ latents [N, num_ws, w_dim] to write")
    parser.add_argument(
        "--generator", metavar="GEN_DIR", help="generator directory, checked against the encoder (needed by --preview)"
    )
    parser.add_argument(
        "--preview", metavar="PREVIEW.png", help="a grid: each photo's aligned crop beside its reconstruction"
    )
    parser.add_argument(
        "--batch-size", type=types.positive_int, default=8, metavar="N", help="photos per encoder batch (default 8)"
    )
    add_face_flags(parser, several=True)
    parser.set_defaults(handler=run)


def run(args) -> int:
    import numpy as np

    from jaxedit.editing.photo import check_latent_spaces, crop_at, encode_photos
    from jaxedit.editing.requests import save_latents
    from jaxedit.encoders import load_encoder
    from jaxedit.io import check_output_path

    with flag_named("--out"):
        check_output_path(args.out, (".npy",))
    if args.preview is not None:
        if args.generator is None:
            raise ConfigError("--preview renders the latents: give the generator with --generator GEN_DIR")
        with flag_named("--preview"):
            check_output_path(args.preview, (".png",))
    sources = face_sources(args, args.photos)
    encoder = load_encoder(args.encoder_dir)
    generator = None
    if args.generator is not None:
        from jaxedit.stylegan2 import load_generator

        generator = load_generator(args.generator)
        check_latent_spaces(encoder, generator)
    photos = prepare_photos(args.photos, sources, encoder.input_size)
    latents = encode_photos(encoder, photos, args.batch_size)
    for photo in photos:
        height, width = photo.image.shape[:2]
        print(f"{photo.path}: {width}x{height}, {photo.how}", file=sys.stderr)
    saved = save_latents(args.out, latents)
    print(f"wrote {saved}: {encoder.kind} latents {list(latents.shape)}")
    if args.preview is not None:
        from jaxedit.viz.grid import labelled_grid, save_png, to_uint8

        size = generator.resolution
        crops = np.stack([crop_at(photo, size) for photo in photos])
        recon = np.concatenate(
            [to_uint8(np.asarray(generator.synthesis(latents[i : i + 1]))) for i in range(len(latents))]
        )
        labels = [Path(photo.path).name for photo in photos]
        picture = labelled_grid(
            np.stack([crops, recon], axis=1),
            column_labels=["photo", "reconstruction"],
            row_labels=labels if len(labels) > 1 else None,
        )
        print(f"wrote {save_png(args.preview, picture)}: {len(photos)} photo(s) and reconstructions at {size}x{size}")
    return 0
