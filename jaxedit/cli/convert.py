"""`jaxedit convert stylegan2 SRC [OUT]`, `jaxedit convert encoder SRC [OUT] [--with-decoder DIR]` and
`jaxedit convert latent-transformer --classifier F OUT`."""

from __future__ import annotations

import os
from pathlib import Path

from jaxedit.errors import ConfigError


def add_parser(subparsers) -> None:
    convert = subparsers.add_parser("convert", help="convert official PyTorch checkpoints (no torch needed)")
    kinds = convert.add_subparsers(dest="kind", required=True)

    stylegan2 = kinds.add_parser(
        "stylegan2",
        help="convert a rosinality .pt, pSp .pt or NVlabs .pkl StyleGAN2 checkpoint (format auto-detected)",
        description="Read a StyleGAN2 checkpoint without torch (nothing in the file is executed), check its layout "
        "key by key, and write a jaxedit generator directory atomically.",
    )
    stylegan2.add_argument("src", metavar="SRC", help="checkpoint file (.pt / .pkl)")
    stylegan2.add_argument(
        "out", metavar="OUT", nargs="?", default=None, help="output directory (default: ported_weights/<SRC stem>)"
    )
    stylegan2.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT if it is a jaxedit generator directory holding nothing else (never any other directory)",
    )
    stylegan2.set_defaults(handler=run_stylegan2)

    encoder = kinds.add_parser(
        "encoder",
        help="convert a pSp or e4e checkpoint's image encoder (format auto-detected)",
        description="Read a pSp (psp_ffhq_encode.pt) or e4e (e4e_ffhq_encode.pt) checkpoint without torch (nothing "
        "in the file is executed), check the encoder's layout key by key, and write a jaxedit encoder directory "
        "atomically. The file also holds the StyleGAN2 generator the encoder was trained with (its decoder): "
        "--with-decoder DIR writes it too, as `jaxedit convert stylegan2 SRC DIR` would.",
    )
    encoder.add_argument("src", metavar="SRC", help="pSp / e4e checkpoint file (.pt)")
    encoder.add_argument(
        "out",
        metavar="OUT",
        nargs="?",
        default=None,
        help="output directory (default: ported_weights/<SRC stem>_encoder)",
    )
    encoder.add_argument("--with-decoder", metavar="DIR", help="also write the checkpoint's generator (decoder) to DIR")
    encoder.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT (and DIR) if they are jaxedit encoder (generator) directories holding nothing else",
    )
    encoder.set_defaults(handler=run_encoder)

    transformer = kinds.add_parser(
        "latent-transformer",
        help="official latent-transformer classifier + tnets -> an editors directory",
        description="Convert the official latent_classifier_epoch_20.pth (and tnet_<k>.pth.tar files) to a "
        "jaxedit editors directory, the same format training writes. No torch needed.",
    )
    transformer.add_argument(
        "--classifier", required=True, metavar="FILE", help="latent_classifier_epoch_20.pth (LCNet state dict)"
    )
    transformer.add_argument(
        "--tnets", metavar="DIR", help="folder with tnet_<attribute index>.pth.tar files (default: classifier only)"
    )
    transformer.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT if it is a jaxedit editors directory holding nothing else (never any other directory)",
    )
    transformer.add_argument(
        "--generator",
        metavar="GEN_DIR",
        help="the converted generator these editors are for (recorded, so edit and eval can check it; "
        "default: none recorded, the generator is unknown)",
    )
    transformer.add_argument("out", metavar="OUT", help="editors directory to write")
    transformer.set_defaults(handler=run_latent_transformer)


def _refuse_existing(out: Path, overwrite: bool, kind: str, inputs: list) -> None:
    """Before any work: OUT must not exist, or (--overwrite) be a jaxedit directory of `kind` that
    may be replaced (`jaxedit.modeldir.check_model_destination`: nothing else in it, none of `inputs`)."""
    from jaxedit.modeldir import check_model_destination

    if os.path.lexists(out) and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    check_model_destination(out, kind, overwrite, inputs)


def run_stylegan2(args) -> int:
    from jaxedit.convert.stylegan2 import convert_stylegan2, default_output_dir

    out = Path(args.out) if args.out else default_output_dir(args.src)
    _refuse_existing(out, args.overwrite, "generator", [args.src])
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


def run_encoder(args) -> int:
    import shutil

    from jaxedit.convert.encoder import convert_encoder, default_output_dir

    out = Path(args.out) if args.out else default_output_dir(args.src)
    _refuse_existing(out, args.overwrite, "encoder", [args.src])
    if args.with_decoder is not None:
        decoder_dir = Path(args.with_decoder)
        _refuse_existing(decoder_dir, args.overwrite, "generator", [args.src])
        if decoder_dir.absolute() == out.absolute():
            raise ConfigError(f"--with-decoder {decoder_dir}: the encoder is written there; give another directory")
    existed = out.exists()
    result = convert_encoder(args.src, out, overwrite=args.overwrite)
    cfg = result.config
    print(f"detected format: {result.format}")
    print(f"input size: {cfg.input_size}x{cfg.input_size}")
    print(f"W+ latents: [{cfg.n_styles}, {cfg.w_dim}]")
    print(f"parameters: {result.num_parameters:,}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {result.path}")
    if args.with_decoder is None:
        if result.decoder_note:
            print(f"note: {result.decoder_note} (or rerun with --with-decoder DIR)")
        return 0
    from jaxedit.convert.stylegan2 import convert_stylegan2

    try:
        decoder = convert_stylegan2(args.src, args.with_decoder, overwrite=args.overwrite)
    except BaseException:
        if not existed:  # no half-done pair: the encoder directory goes when its decoder cannot be written
            shutil.rmtree(out, ignore_errors=True)
        raise
    dcfg = decoder.config
    print(
        f"wrote {decoder.path}: the decoder, a {dcfg.resolution}x{dcfg.resolution} generator with W+ "
        f"[{dcfg.num_ws}, {dcfg.w_dim}] ({decoder.num_parameters:,} parameters)"
    )
    return 0


def run_latent_transformer(args) -> int:
    from jaxedit.convert.latent_transformer import convert_latent_transformer
    from jaxedit.latent.editors import load_editors

    inputs = [args.classifier] + ([args.tnets] if args.tnets else [])
    _refuse_existing(Path(args.out), args.overwrite, "editors", inputs)
    generator = None
    if args.generator:
        from jaxedit.cli.errors import flag_named
        from jaxedit.stylegan2 import load_generator

        with flag_named("--generator"):
            generator = load_generator(args.generator)
    out = convert_latent_transformer(
        args.classifier, args.out, tnets=args.tnets, overwrite=args.overwrite, generator=generator
    )
    editors = load_editors(out)
    shape = " x ".join(str(s) for s in editors.latent_shape)
    widths = "-".join(str(w) for w in editors.classifier_module.widths)
    covered = ", ".join(editors.attributes) if editors.attributes else "none"
    print(
        f"wrote {out}: {editors.preset.name} editors on latents {shape}, classifier {widths}, "
        f"{len(editors.attributes)} transformer(s): {covered}"
    )
    from jaxedit.latent.provenance import describe_provenance

    print(f"  made for: {describe_provenance(editors.provenance)}")
    return 0
