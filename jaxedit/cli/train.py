"""Training from the command line: `jaxedit train [classifier|transformers] ...` and `python -m train*`.

- `jaxedit train` / `python -m train`: the whole method on the synthetic world
  (`jaxedit.training.pipeline.run_pipeline`); flags set `PipelineSettings` fields.
- `jaxedit train classifier` / `python -m train.classifier`: train C (`train_classifier`), and
  `jaxedit train transformers` / `python -m train.transformers`: train K transformers at once; the
  two stage commands live in `jaxedit.cli.train_stages`.

Exit statuses come from
`jaxedit.cli.errors.run_main` (0 done, 1 training failed, 2 bad input, 75 stopped by a signal with a
checkpoint written: rerun with `--resume`, 130 interrupted). The pipeline resumes with
`python -m train --resume --out RUN` (its settings come from the run directory).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from jaxedit.cli import types
from jaxedit.cli.errors import OneLineErrorParser, run_main
from jaxedit.cli.field_help import WORLD_HELP
from jaxedit.errors import ConfigError

STAGES = ("classifier", "transformers")


# ------------------------------------------------------------------------------------------------
# The pipeline: `python -m train`, `jaxedit train`

PIPELINE_FLAGS = {
    "samples": "samples",
    "transformer_samples": "transformer-samples",
    "method.epochs": "epochs",
    "method.classifier_epochs": "classifier-epochs",
    "evaluation.count": "eval-count",
    "evaluation.identity_samples": "identity-samples",
    "evaluation.identity_pairs": "identity-pairs",
    "w_dim": "w-dim",
    "z_dim": "z-dim",
    "mapping_layers": "mapping-layers",
    "num_ws": "num-ws",
    "evaluation.alpha": "alpha",
    "evaluation.distance": "distance",
}
PIPELINE_HELP = {
    "samples": "labelled latents for C and the baselines",
    "transformer_samples": "latents the transformers train on",
    "method.epochs": "transformer epochs",
    "method.classifier_epochs": "classifier epochs (its lr decays after half of them)",
    "evaluation.count": "latents per attribute in the protocol",
    "evaluation.identity_samples": "latents for the identity threshold",
    "evaluation.identity_pairs": "random pairs for the identity threshold",
    "num_ws": "W+ depth of the world (official preset)",
    "evaluation.alpha": "our edit strength for the table; none: the preset's table_alpha (1.25)",
    "evaluation.distance": "InterFaceGAN/GANSpace distance",
}


def _method_assignment(text: str) -> tuple[str, object]:
    """`--set FIELD=VALUE`: a method preset field and its value, typed by the field."""
    from jaxedit.config import field_types
    from jaxedit.latent.presets import MethodPreset

    name, sep, value = text.partition("=")
    fields = field_types(MethodPreset)
    if not sep or name.strip() not in fields or name.strip() == "name":
        import difflib

        close = difflib.get_close_matches(name.strip(), list(fields), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else " (e.g. lr, recon_weight, batch_size)"
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=VALUE with a method preset field{hint}")
    parse, _ = types.for_annotation(fields[name.strip()])
    try:
        return "method." + name.strip(), parse(value.strip())
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{name.strip()}: {error}") from None


def pipeline_parser(prog: str) -> tuple[OneLineErrorParser, dict[str, str]]:
    from jaxedit.training import pipeline

    defaults = pipeline.PipelineSettings()
    parser = OneLineErrorParser(prog=prog, description=pipeline.__doc__.splitlines()[0], allow_abbrev=False)
    if prog.startswith("jaxedit"):
        parser.epilog = "The stages alone, on your own latents: jaxedit train classifier|transformers --help."
    types.add_preset_flag(parser, "paper: W (default); official: W+")
    parser.add_argument("--out", default=argparse.SUPPRESS, help="run directory (default runs/<UTC timestamp>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped run in --out (its own settings; other flags given must agree with them)",
    )
    parser.add_argument(
        "--generator",
        default=argparse.SUPPRESS,
        help="converted generator directory: use its mapping network for the latents",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller samples and epochs (paper preset: 2 minutes on 2 CPU cores)"
    )
    parser.add_argument("--seed", type=types.seed, default=argparse.SUPPRESS, help="seeds everything (default 0)")
    parser.add_argument(
        "--attributes",
        type=types.attribute_list,
        default=argparse.SUPPRESS,
        help="attributes to train and evaluate (names or indices, comma-separated; default all)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS, help="no progress bars"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    quick_help = {
        path: f"{PIPELINE_HELP.get(path, '')}; --quick {value}".lstrip("; ") for path, value in pipeline.QUICK.items()
    }
    flags = types.add_config_flags(
        parser,
        type(defaults),
        defaults=defaults,
        only=PIPELINE_FLAGS,
        rename=PIPELINE_FLAGS,
        help={**WORLD_HELP, **PIPELINE_HELP, **quick_help},
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        type=_method_assignment,
        default=[],
        metavar="FIELD=VALUE",
        help="set a method preset field, e.g. --set recon_weight=1 --set lr=1e-3 (repeatable)",
    )
    flags.update(method="--preset", seed="--seed", attributes="--attributes", out="--out", generator="--generator")
    return parser, flags


def pipeline_settings(args: argparse.Namespace, flags: dict[str, str]):
    """The `PipelineSettings` of parsed flags: the defaults, then `--quick`'s changes, then the
    flags given (`--classifier-epochs N` also moves the lr decay to N // 2), then `--set`.
    With `--resume`: the stopped run's recorded settings, which the flags given must not change."""
    from jaxedit.training.pipeline import QUICK, PipelineSettings

    given = types.config_changes(args, [*flags, "progress"])
    changes = dict(QUICK) if args.quick else {}
    changes.update(given)
    if "method.classifier_epochs" in given:
        changes["method.classifier_decay_epochs"] = max(1, given["method.classifier_epochs"] // 2)
    for path, value in args.assignments:
        changes[path] = value
        flags.setdefault(path, f"--set {path.split('.', 1)[1]}=")
    if args.resume:
        return _resumed_settings(args, changes, flags)
    if "transformer_samples" not in given:  # at most the samples (`--samples 3000` alone is fine)
        samples = changes.get("samples", PipelineSettings.samples)
        changes["transformer_samples"] = min(
            samples, changes.get("transformer_samples", PipelineSettings.transformer_samples)
        )
    return types.apply_flags(PipelineSettings(), changes, flags)


def _resumed_settings(args: argparse.Namespace, changes: dict, flags: dict[str, str]):
    """The recorded settings of the run in --out; a flag that would change them is refused."""
    import dataclasses

    from jaxedit.training import run_dir
    from jaxedit.training.pipeline import PipelineSettings

    saved = dataclasses.replace(run_dir.read_settings(args.out, PipelineSettings), out=args.out)
    wanted = types.apply_flags(saved, changes, flags)
    difference = run_dir.first_difference(
        dataclasses.replace(saved, progress=True), dataclasses.replace(wanted, progress=True)
    )
    if difference:
        raise ConfigError(
            f"--resume: {args.out} was started with {difference}; give no settings flags (or the run's own) to resume"
        )
    return wanted


def pipeline_main(argv: Sequence[str] | None = None, prog: str = "python -m train") -> int:
    """`python -m train [flags]` (and `jaxedit train [flags]`).

    The first SIGINT/SIGTERM stops the run (a training stage after a checkpoint) with exit status
    75 and prints the command that resumes it; a second Ctrl-C stops at once (130)."""
    from jaxedit.training import run_dir
    from jaxedit.training.checkpoint import PreemptionGuard
    from jaxedit.training.pipeline import run_pipeline

    parser, flags = pipeline_parser(prog)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as stop:  # a usage error (its one line printed) or --help
        return int(stop.code or 0)
    if args.resume and not getattr(args, "out", None):
        print(f"{prog}: error: --resume needs --out RUN_DIR (the stopped run)", file=sys.stderr)
        return 2
    args.out = getattr(args, "out", None) or run_dir.default_run_dir()
    resume = f"{prog} --resume --out {shlex.quote(args.out)}"

    def work() -> int:
        run_dir.check_run_directory(args.out, args.resume, resume_hint=resume)
        settings = pipeline_settings(args, flags)
        with PreemptionGuard() as guard:
            run_pipeline(settings, resume=args.resume, guard=guard)
        return 0

    return run_main(prog, work, debug=args.debug, resume_command=resume)


# ------------------------------------------------------------------------------------------------
# `jaxedit train ...`


def add_parser(subparsers) -> None:
    """`jaxedit train`: its flags are parsed by `run_train` (the pipeline's or a stage's parser)."""
    subparsers.add_parser(
        "train",
        add_help=False,
        help="train the classifier and the 40 transformers: the whole method on the synthetic world, or one stage "
        "on your latents (train classifier|transformers)",
    )


def run_train(argv: Sequence[str], debug: bool = False) -> int:
    """`jaxedit train [classifier|transformers] FLAGS` (`debug`: `jaxedit --debug train ...`)."""
    argv = list(argv)
    extra = ["--debug"] if debug and "--debug" not in argv else []
    if argv and argv[0] in STAGES:
        from jaxedit.cli.train_stages import stage_main

        stage = argv[0]
        return stage_main(stage, [*argv[1:], *extra], f"jaxedit train {stage}", ["jaxedit", "train", stage])
    return pipeline_main([*argv, *extra], prog="jaxedit train")
