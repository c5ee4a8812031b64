"""`jaxedit eval EDITORS_DIR [--out DIR] ...`: the paper's Table 1 for trained or converted editors."""

from __future__ import annotations

import sys

from jaxedit.cli import types
from jaxedit.errors import ConfigError

SUITE_HELP = {
    "count": "latents per attribute",
    "alpha": "our edit strength; none: the editors' preset table_alpha (1.25 in both presets)",
    "distance": "InterFaceGAN/GANSpace distance",
    "baseline_samples": "labelled latents the baselines are fitted on",
    "identity_samples": "latents for the identity threshold",
    "identity_pairs": "random pairs for the 0.1%% FAR threshold",
    "far": "false-acceptance rate of the identity threshold",
    "conditions": "most correlated attributes the conditional InterFaceGAN normal is made orthogonal to",
    "baselines": "comma-separated, or 'none'",
    "seed": "sampling seed of the evaluation",
}


def _baselines(text: str) -> tuple[str, ...]:
    return () if text.strip().lower() == "none" else types.tuple_of(str)(text)


def add_parser(subparsers) -> None:
    from jaxedit.eval.suite import SuiteSettings

    parser = subparsers.add_parser(
        "eval",
        help="the paper's Table 1: our editors against InterFaceGAN and GANSpace",
        description="Edit N latents per attribute to reverse it (ours at alpha 1.25, InterFaceGAN/GANSpace at "
        "distance 3) and measure classification accuracy, attribute preservation and identity preservation "
        "(0.1% false-acceptance cosine threshold). Labeller and identity: the SYNTHETIC world's stand-ins by default "
        "(rebuilt from the editors' training info), or a generator plus your JAX image classifier and face recogniser.",
    )
    parser.add_argument("editors", metavar="EDITORS_DIR", help="trained or converted editors directory")
    parser.add_argument("--out", default="", help="report directory (default EDITORS_DIR/../eval)")
    parser.add_argument(
        "--attributes",
        type=types.attribute_list,
        default="all",
        help="names or indices, comma-separated (default: all the editors cover)",
    )
    flags = types.add_config_flags(
        parser,
        SuiteSettings,
        hyphens=True,
        help=SUITE_HELP,
        types={"baselines": _baselines, "seed": types.seed},
    )
    parser.add_argument(
        "--world-seed",
        type=types.seed,
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
    parser.add_argument(
        "--batch-size", type=types.positive_int, default=16, help="rendering batch with --image-classifier"
    )
    parser.set_defaults(handler=run, suite_flags=flags)


def run(args) -> int:
    from pathlib import Path

    from jaxedit.attributes import ATTRIBUTES, parse_attributes
    from jaxedit.data import synthetic
    from jaxedit.errors import AttributeNameError
    from jaxedit.eval import protocol
    from jaxedit.eval.suite import SuiteSettings, check_memory, import_callable, run_suite, synthetic_world_for
    from jaxedit.latent.editors import load_editors

    settings = types.apply_flags(SuiteSettings(), types.config_changes(args, args.suite_flags), args.suite_flags)
    if (args.image_classifier or args.face_embedder) and not args.generator:
        raise ConfigError("--image-classifier and --face-embedder need --generator GEN_DIR to render the latents")
    if bool(args.image_classifier) != bool(args.face_embedder):
        raise ConfigError(
            "give both --image-classifier and --face-embedder (real weights), or neither (synthetic world)"
        )
    editors = load_editors(args.editors)
    check_memory(settings, editors.latent_shape)  # before the world, the baselines or any labelling
    names = (
        [ATTRIBUTES[i] for i in parse_attributes(args.attributes)]
        if args.attributes.strip().lower() != "all"
        else list(editors.attributes)
    )
    missing = [name for name in names if name not in editors.attributes]
    if missing:
        raise AttributeNameError(
            f"{args.editors}: no transformer for {', '.join(missing)}; "
            f"these editors cover {', '.join(editors.attributes) or 'none'}"
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
        progress=True,
    )
    print(table)
    print(f"\nwritten to {out}/ (report.json, report.md, plots/)")
    return 0
