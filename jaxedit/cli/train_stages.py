"""The training stages from the command line: `python -m train.classifier`, `python -m train.transformers`,
`jaxedit train classifier|transformers`.

Each starts from a named `TrainConfig` (`--config`) and takes every field of the run and of its
method preset as a flag (`--lr 1e-3 --epochs 2 --batch_size 16`), typed by the field; `--preset NAME`
swaps the method preset before the method fields apply. Exit statuses as in `jaxedit.cli.train`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jaxedit.cli import types
from jaxedit.cli.errors import OneLineErrorParser, run_main
from jaxedit.cli.field_help import METHOD_HELP
from jaxedit.cli.field_help import RUN_HELP as RUN_FIELD_HELP
from jaxedit.errors import ConfigError

STAGE_HELP = {
    "classifier": "Train the latent classifier C (its result: WORKDIR/classifier).",
    "transformers": "Train attribute transformers (all 40 by default) at once, in one vmapped program.",
}
RUN_HELP = {
    "latents": "latents .npy [N, *latent_shape] (or an .npz holding latents and labels)",
    "labels": "labels .npy [N, 40], 0/1 or -1/1",
    "attributes": "transformers to train: CelebA names or indices, comma-separated, or all",
    "classifier": "a classifier workdir or any editors directory (default: WORKDIR/classifier)",
    "generator": "the converted generator whose mapping made --latents: the editors record it",
    "checkpoint_seconds": "save every this many seconds (0: off)",
    "checkpoint_every": "save every this many steps (0: off)",
    "max_steps": "stop after this many steps (0: the full schedule)",
}


def stage_parser(stage: str, prog: str) -> tuple[OneLineErrorParser, dict[str, str]]:
    from jaxedit.latent.presets import MethodPreset
    from jaxedit.training.configs import CONFIGS, TrainConfig

    parser = OneLineErrorParser(
        prog=prog,
        usage="%(prog)s --workdir DIR [--config NAME] [--resume] [--preset NAME] [--FIELD VALUE ...]",
        description=STAGE_HELP[stage],
        allow_abbrev=False,
        epilog="Every field of the run and of its method preset is a flag (--lr 1e-3 --epochs 2 --batch_size 16 "
        "--checkpoint_seconds 300); defaults come from --config. Exit status: 0 done, 2 bad input, 1 training "
        "failed (non-finite), 75 stopped by SIGTERM/SIGINT with a checkpoint saved (rerun with --resume).",
    )
    parser.add_argument("--config", choices=tuple(CONFIGS), default="official", help="named config (default official)")
    parser.add_argument("--workdir", required=True, help="directory for checkpoints, metrics, plots and the result")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in WORKDIR")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    types.add_preset_flag(parser, "swap the whole method preset")
    run_fields = parser.add_argument_group("run fields (jaxedit.training.configs.TrainConfig)")
    flags = types.add_config_flags(
        run_fields,
        TrainConfig,
        skip=("name", "method"),
        help={**RUN_FIELD_HELP, **RUN_HELP},
        types={"attributes": types.attribute_list, "seed": types.seed, "synthetic_seed": types.seed},
        show_defaults=False,
    )
    method_fields = parser.add_argument_group("method fields (jaxedit.latent.presets.MethodPreset)")
    method_flags = types.add_config_flags(
        method_fields,
        MethodPreset,
        prefix="method.",
        skip=("name",),
        help=METHOD_HELP,
        show_defaults=False,
    )
    flags.update(method_flags, method="--preset")
    return parser, flags


def stage_config(args: argparse.Namespace, flags: dict[str, str]):
    """The `TrainConfig` of parsed stage flags: the named config with the flags given applied."""
    from jaxedit.training.configs import get_config

    return types.apply_flags(get_config(args.config), types.config_changes(args, flags), flags)


def resume_command(command: Sequence[str], argv: Sequence[str]) -> str:
    """The command line that continues a run: the same one, with `--resume`."""
    args = list(argv)
    if "--resume" not in args:
        args.append("--resume")
    return " ".join(shlex.quote(a) for a in [*command, *args])


def _train_classifier(args: argparse.Namespace, config) -> None:
    from jaxedit.training.checkpoint import PreemptionGuard
    from jaxedit.training.classifier import train_classifier
    from jaxedit.training.common import training_mesh
    from jaxedit.training.data import load_training_data

    data = load_training_data(config)
    with PreemptionGuard() as guard:
        train_classifier(config, data, Path(args.workdir), resume=args.resume, guard=guard, mesh=training_mesh(config))


def _train_transformers(args: argparse.Namespace, config, classifier_command: str) -> None:
    from jaxedit.attributes import parse_attributes
    from jaxedit.training.checkpoint import PreemptionGuard
    from jaxedit.training.common import training_mesh
    from jaxedit.training.data import load_training_data
    from jaxedit.training.transformers import load_classifier_params, train_transformers

    attributes = parse_attributes(config.attributes)
    classifier_path = Path(config.classifier) if config.classifier else Path(args.workdir) / "classifier"
    if not classifier_path.exists():
        raise ConfigError(
            f"{classifier_path}: no classifier here; train one with {classifier_command} --workdir DIR, "
            "or pass --classifier DIR"
        )
    classifier_params = load_classifier_params(classifier_path, config)
    data = load_training_data(config)
    with PreemptionGuard() as guard:
        train_transformers(
            config,
            data,
            classifier_params,
            attributes,
            Path(args.workdir),
            resume=args.resume,
            guard=guard,
            mesh=training_mesh(config),
        )


def stage_main(stage: str, argv: Sequence[str] | None, prog: str, command: Sequence[str]) -> int:
    """Parse a stage's flags, build its `TrainConfig`, train; `command` is how the user ran it
    (for the resume hint and the messages)."""
    from jaxedit.training.common import start_distributed

    argv = list(sys.argv[1:] if argv is None else argv)
    parser, flags = stage_parser(stage, prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # a usage error (its one line printed) or --help
        return int(stop.code or 0)

    def work() -> int:
        config = stage_config(args, flags)
        start_distributed(config)
        started = time.perf_counter()
        if stage == "classifier":
            _train_classifier(args, config)
        else:
            sibling = [*command[:-1], command[-1].replace("transformers", "classifier")]
            _train_transformers(args, config, " ".join(sibling))
        print(f"{prog}: done in {time.perf_counter() - started:.1f} s; results in {args.workdir}", file=sys.stderr)
        return 0

    return run_main(prog, work, debug=args.debug, resume_command=resume_command(command, argv))


def _python_m(module: str) -> list[str]:
    return [os.path.basename(sys.executable), "-m", module]


def classifier_main(argv: Sequence[str] | None = None) -> int:
    """`python -m train.classifier`."""
    return stage_main("classifier", argv, "python -m train.classifier", _python_m("train.classifier"))


def transformers_main(argv: Sequence[str] | None = None) -> int:
    """`python -m train.transformers`."""
    return stage_main("transformers", argv, "python -m train.transformers", _python_m("train.transformers"))
