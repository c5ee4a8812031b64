"""`jaxedit eval EDITORS_DIR --out DIR ...`: the paper's Table 1 for trained or converted editors.

The world comes from the editors' provenance (`jaxedit.latent.provenance`): the generator they
record (or `--generator`, which must be that one unless `--force`), else the synthetic world they
were trained in. The settings default to those of the run that trained them (its seed, counts and
labelled sample), so the numbers equal the run's report; flags change them.
"""

from __future__ import annotations

import sys

from jaxedit.cli import types
from jaxedit.cli.binding import add_force_flag
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
        "in the world the editors record (the mapping of their generator, or the synthetic world they were trained in; "
        "another one is refused unless --force), or a generator plus your JAX image classifier and face recogniser. "
        "Settings default to those of the run that trained the editors, so the table reproduces its report.",
    )
    parser.add_argument("editors", metavar="EDITORS_DIR", help="trained or converted editors directory")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="report directory (report.json, report.md, plots/); required: nothing is written beside the editors "
        "unless DIR says so",
    )
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
        "--generator",
        default="",
        help="converted generator directory: latents from its mapping network (default: the one the editors "
        "record, else the synthetic world they were trained in)",
    )
    add_force_flag(parser)
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

    if (args.image_classifier or args.face_embedder) and not args.generator:
        raise ConfigError("--image-classifier and --face-embedder need --generator GEN_DIR to render the latents")
    if bool(args.image_classifier) != bool(args.face_embedder):
        raise ConfigError(
            "give both --image-classifier and --face-embedder (real weights), or neither (synthetic world)"
        )
    editors = load_editors(args.editors)
    recorded = recorded_settings(editors)
    settings = types.apply_flags(recorded, types.config_changes(args, args.suite_flags), args.suite_flags)
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
    generator, own_world = evaluation_generator(editors, args)
    world = synthetic_world_for(editors, args.world_seed, generator)
    space = "w+" if len(editors.latent_shape) == 2 else "w"
    sampler = lambda key, n: synthetic.sample_latents(world, key, n, space=space)
    baseline_sample = {}
    if own_world and not args.image_classifier:
        baseline_sample = run_baseline_sample(editors, world, settings, space)
    if args.image_classifier:
        labeller = protocol.image_labeller(
            generator, import_callable(args.image_classifier), batch_size=args.batch_size
        )
        embedder = protocol.image_embedder(generator, import_callable(args.face_embedder), batch_size=args.batch_size)
        where = f"generator {args.generator}, labeller {args.image_classifier}, identity {args.face_embedder}"
    else:
        labeller, embedder = synthetic.labeller(world), synthetic.identity_embedder(world)
        where = world.describe()
    out = Path(args.out)
    print(f"evaluating {args.editors} on: {where}", file=sys.stderr)
    if settings == recorded and recorded != SuiteSettings():
        print("with the settings of the run that trained them (flags change them)", file=sys.stderr)
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
        **baseline_sample,
        progress=True,
    )
    print(table)
    print(f"\nwritten to {out}/ (report.json, report.md, plots/)")
    return 0


def recorded_settings(editors):
    """The evaluation settings of the run that trained the editors (`training["evaluation"]`), or
    the defaults when none are recorded or they are unreadable."""
    from jaxedit import config
    from jaxedit.eval.suite import SuiteSettings

    recorded = editors.training.get("evaluation")
    if not isinstance(recorded, dict):
        return SuiteSettings()
    try:
        return config.from_dict(SuiteSettings, recorded)
    except (ConfigError, TypeError, ValueError):
        return SuiteSettings()


def evaluation_generator(editors, args):
    """(generator or None, whether the world is the one the editors were trained in).

    --generator, else the generator the editors record (from its recorded path), else none (the
    synthetic world). A generator other than the recorded one, or editors that record neither a
    world nor a generator evaluated in a random synthetic world, are refused unless --force."""
    from pathlib import Path

    from jaxedit.cli.binding import check_generator, warn
    from jaxedit.latent.provenance import MATCH, describe_provenance
    from jaxedit.stylegan2 import load_generator

    record = editors.provenance
    recorded_generator = (record or {}).get("generator") or {}
    if args.generator:
        generator = load_generator(args.generator)
    elif recorded_generator:
        path = recorded_generator.get("path")
        if not path or not Path(path).is_dir():
            raise ConfigError(
                f"editors {args.editors} were made for generator {path}, which is not there; "
                "pass --generator DIR (a conversion of the same checkpoint)"
            )
        generator = load_generator(path)
    else:
        generator = None
    if generator is not None:
        verdict = check_generator(editors, generator, args.editors, args.force)
        return generator, verdict == MATCH and args.world_seed is None
    if record is None:
        warn(f"editors {args.editors}: {describe_provenance(None)}; the world is rebuilt from their training info")
        return None, False
    if not record.get("world"):
        message = f"editors {args.editors}: {describe_provenance(record)}; they were not trained in a synthetic world"
        if not args.force:
            raise ConfigError(
                f"{message}: pass --generator DIR (with --image-classifier and --face-embedder for real labels), "
                "or --force to evaluate them in a random synthetic world"
            )
        warn(f"{message} (--force: evaluated in a random synthetic world)")
        return None, False
    return None, args.world_seed is None


def run_baseline_sample(editors, world, settings, space: str) -> dict:
    """The labelled sample the run fitted its baselines on (`run_suite`'s baseline_latents and
    baseline_probabilities), when the settings ask for the same one (seed and size); else {}."""
    from jaxedit.training.pipeline import labelled_sample

    recorded = editors.training.get("labelled_sample")
    if not isinstance(recorded, dict) or recorded.get("seed") != settings.seed:
        return {}
    if recorded.get("count") != settings.baseline_samples or not settings.baselines:
        return {}
    latents, probabilities = labelled_sample(world, settings.seed, settings.baseline_samples, space)
    return {"baseline_latents": latents, "baseline_probabilities": probabilities}
