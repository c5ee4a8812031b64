"""`python -m train`: the whole method end to end on the embedded synthetic world, with the paper's Table 1.

Steps (everything written to `--out RUN_DIR`, default `runs/<UTC timestamp>`):

1. build the SYNTHETIC attribute world (`jaxedit.data.synthetic`: a stand-in for "render, then
   annotate with an attribute classifier and a face recogniser"; latents from a seeded random
   StyleGAN2 mapping network, or from a converted generator's mapping with `--generator DIR`);
2. sample and label latents in the preset's space (`paper`: W, the default; `official`: W+);
3. train the latent classifier C (`jaxedit.training.classifier.train_classifier`);
4. train all 40 transformers at once (one vmapped program, `jaxedit.training.transformers.train_transformers`)
   -> `RUN_DIR/editors/`;
5. fit the baselines on the same labelled latents: InterFaceGAN (plain and conditional) and
   GANSpace (`jaxedit.eval.baselines`);
6. run the paper's protocol (`jaxedit.eval.protocol`) on fresh latents -> `report.json`,
   `report.md`, `plots/*.png`, and print the table for Young, Eyeglasses, Male, Smiling and the
   average over all evaluated attributes.

`--quick` shrinks the sample counts and epochs (under 3 minutes on 2 CPU cores); the defaults take
under 10. `run_pipeline(PipelineSettings(...))` is the same as a library call.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxedit.attributes import ATTRIBUTES, parse_attributes
from jaxedit.cli.main import OneLineErrorParser
from jaxedit.errors import ConfigError, JaxeditError


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything `run_pipeline` does, as one frozen value (saved in report.json under "settings").

    preset: "paper" (W) or "official" (W+). generator: converted generator directory whose
      mapping network replaces the random one ("" for the random mapping of the world config).
    samples: labelled latents for the classifier (90/10 split) and the baselines' fits.
    transformer_samples: latents the transformers train on (the paper: 10K), epochs: their epochs.
    classifier_epochs: epochs of C. eval_count: latents per attribute in the protocol (the paper: 1000).
    identity_samples / identity_pairs: latents and random pairs for the 0.1%-FAR threshold.
    w_dim, z_dim, mapping_layers, num_ws: the random mapping network (W+ depth for `official`).
    attributes: the attributes to train and evaluate ("all" or names/indices).
    alpha: our table strength; distance: InterFaceGAN's and GANSpace's.
    """

    preset: str = "paper"
    out: str = ""
    generator: str = ""
    seed: int = 0
    quick: bool = False
    samples: int = 50_000
    transformer_samples: int = 10_000
    epochs: int = 10
    classifier_epochs: int = 20
    eval_count: int = 1000
    identity_samples: int = 4000
    identity_pairs: int = 200_000
    w_dim: int = 512
    z_dim: int = 512
    mapping_layers: int = 8
    num_ws: int = 18
    attributes: str = "all"
    alpha: float = 1.25
    distance: float = 3.0
    method_overrides: tuple[tuple[str, str], ...] = ()
    progress: bool = True

    def __post_init__(self) -> None:
        if self.preset not in ("paper", "official"):
            raise ConfigError(f"--preset: expected paper or official, got {self.preset!r}")
        for name in (
            "samples",
            "transformer_samples",
            "epochs",
            "classifier_epochs",
            "eval_count",
            "identity_samples",
            "identity_pairs",
            "w_dim",
            "z_dim",
            "mapping_layers",
            "num_ws",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.transformer_samples > self.samples:
            raise ConfigError(f"--transformer-samples {self.transformer_samples} exceeds --samples {self.samples}")
        if not self.alpha > 0 or not self.distance > 0:
            raise ConfigError("--alpha and --distance must be > 0")
        if not (math.isfinite(self.alpha) and math.isfinite(self.distance)):
            raise ConfigError(f"--alpha {self.alpha} / --distance {self.distance}: expected finite numbers")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed {self.seed}: expected an integer 0..2**63-1")


QUICK = dict(
    samples=20_000, transformer_samples=4000, epochs=3, classifier_epochs=10, eval_count=500, identity_pairs=100_000
)
"""What `--quick` changes (flags given explicitly still win)."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_world_for(settings: PipelineSettings, log: Callable[[str], None] = _log):
    """The synthetic world of the settings, and the generator when `--generator` is given."""
    from jaxedit.data import synthetic

    if settings.generator:
        from jaxedit.stylegan2 import load_generator

        generator = load_generator(settings.generator)
        world = synthetic.world_from_generator(generator, synthetic.WorldConfig(seed=settings.seed))
        return world, generator
    config = synthetic.WorldConfig(
        seed=settings.seed,
        z_dim=settings.z_dim,
        w_dim=settings.w_dim,
        mapping_layers=settings.mapping_layers,
        num_ws=settings.num_ws,
    )
    return synthetic.build_world(config), None


def method_preset_for(settings: PipelineSettings, world):
    """The method preset sized to the world's latents (paper: W [w_dim]; official: W+ [num_ws, w_dim])."""
    from jaxedit.latent.presets import get_preset

    preset = get_preset(settings.preset)
    changes = {
        "w_dim": world.w_dim,
        "epochs": settings.epochs,
        "classifier_epochs": settings.classifier_epochs,
        "classifier_decay_epochs": max(1, settings.classifier_epochs // 2),
    }
    if preset.space == "w+":
        num_ws = world.config.num_ws
        first, stop = preset.edit_layers or (0, num_ws)
        changes.update(num_ws=num_ws, edit_layers=(first, min(stop, num_ws)))
    if settings.preset == "paper" and world.w_dim != preset.w_dim:
        changes["transformer_hidden"] = world.w_dim
    preset = preset.replace(**changes)
    if settings.method_overrides:
        from jaxedit.training.configs import TrainConfig, apply_overrides

        config = apply_overrides(TrainConfig(name="pipeline", method=preset), dict(settings.method_overrides))
        preset = config.method
    return preset


def run_pipeline(settings: PipelineSettings, log: Callable[[str], None] = _log) -> dict:
    """Run everything (module docstring) and return the report dict (also written to RUN_DIR)."""
    from jaxedit.data import synthetic
    from jaxedit.eval import report
    from jaxedit.eval.suite import SuiteSettings, run_suite
    from jaxedit.latent.editors import editors_from_params, save_editors
    from jaxedit.training.classifier import train_classifier
    from jaxedit.training.configs import TrainConfig
    from jaxedit.training.data import TrainingData, from_arrays
    from jaxedit.training.transformers import train_transformers

    started = time.perf_counter()
    timings = {}
    out = Path(settings.out or f"runs/{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d-%H%M%S')}")
    if (out / "report.json").exists():
        raise ConfigError(f"{out} already holds a report.json; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    attribute_indices = parse_attributes(settings.attributes)
    names = [ATTRIBUTES[i] for i in attribute_indices]

    tick = time.perf_counter()
    world, generator = build_world_for(settings, log)
    preset = method_preset_for(settings, world)
    log(world.describe())
    key = jax.random.PRNGKey(settings.seed)
    key_data = jax.random.fold_in(key, 11)
    latents = np.asarray(synthetic.sample_latents(world, key_data, settings.samples, space=preset.space))
    label_fn = synthetic.labeller(world)
    probabilities = np.concatenate([np.asarray(label_fn(latents[i : i + 8192])) for i in range(0, len(latents), 8192)])
    labels = (probabilities > 0.5).astype(np.float32)
    timings["world_and_labels"] = time.perf_counter() - tick
    log(
        f"labelled {len(latents)} latents {list(latents.shape[1:])} in {timings['world_and_labels']:.1f} s (preset {preset.name}, space {preset.space})"
    )

    tick = time.perf_counter()
    config = TrainConfig(
        name=f"pipeline-{preset.name}",
        method=preset,
        data="files",
        seed=settings.seed,
        checkpoint_every=0,
        checkpoint_seconds=0.0,
        progress=settings.progress,
        steps_per_call=100,
    )
    data = from_arrays(latents, labels, preset.train_fraction, source=f"synthetic world seed {settings.seed}")
    classifier = train_classifier(config, data, out / "work", log=log)
    timings["classifier"] = time.perf_counter() - tick

    tick = time.perf_counter()
    num_pairs = min(settings.transformer_samples, data.num_train)
    pairs = TrainingData(data.latents, data.labels, num_pairs, source=f"{data.source}, first {num_pairs} latents")
    run = train_transformers(
        config, pairs, classifier.params, attribute_indices, out / "work", editors_dir=out / "work" / "editors", log=log
    )
    transformer_params, transformer_steps = run.params, run.steps
    timings["transformers"] = time.perf_counter() - tick
    log(f"trained {len(names)} transformers at once: {transformer_steps} steps in {timings['transformers']:.1f} s")
    training = {
        "data": data.source,
        "samples": settings.samples,
        "transformer_samples": settings.transformer_samples,
        "transformer_steps": transformer_steps,
        "classifier_heldout_accuracy": classifier.heldout_accuracy,
        "world_config": world.config.to_dict(),
        "world_source": world.source,
        "generator": settings.generator,
    }
    save_editors(
        out / "editors", preset, classifier.params, transformer_params, names, training=training, overwrite=True
    )
    editors = editors_from_params(preset, classifier.params, transformer_params, names, training=training)

    tick = time.perf_counter()
    suite_settings = SuiteSettings(
        count=settings.eval_count,
        alpha=settings.alpha,
        distance=settings.distance,
        identity_samples=settings.identity_samples,
        identity_pairs=settings.identity_pairs,
        seed=settings.seed,
    )
    sampler = lambda key, n: synthetic.sample_latents(world, key, n, space=preset.space)
    extra = {
        "pipeline": {**dataclasses.asdict(settings), "out": str(out)},
        "world": world.describe(),
        "world_config": world.config.to_dict(),
        "method": preset.to_dict(),
        "labeller": "SYNTHETIC stand-in for render + CelebA attribute classifier (jaxedit.data.synthetic)",
        "identity": "SYNTHETIC stand-in for a face recogniser: RBF random features of the non-attribute part of w",
        "classifier_heldout_accuracy": float(np.mean(classifier.heldout_accuracy))
        if classifier.heldout_accuracy
        else None,
        "jax_backend": jax.default_backend(),
    }
    result, table = run_suite(
        editors,
        label_fn,
        synthetic.identity_embedder(world),
        sampler,
        out,
        suite_settings,
        attributes=names,
        extra_settings=extra,
        title=f"{world.describe()}; the paper's protocol",
        baseline_latents=latents,
        baseline_probabilities=probabilities,
        log=log,
    )
    timings["evaluation"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started
    result["settings"]["seconds"] = timings
    report.write_json(result, out / "report.json")
    print(table)
    print(f"\nwritten to {out}/ (report.json, report.md, plots/, editors/) in {timings['total']:.0f} s")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m train", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument(
        "--preset", choices=("paper", "official"), default="paper", help="paper: W (default); official: W+"
    )
    parser.add_argument("--out", default="", help="run directory (default runs/<UTC timestamp>)")
    parser.add_argument(
        "--generator", default="", help="converted generator directory: use its mapping network for the latents"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller samples and epochs (under 3 minutes on 2 CPU cores)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--attributes", default="all", help="attributes to train and evaluate (names or indices, comma-separated)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    defaults = PipelineSettings()
    for name in (
        "samples",
        "transformer_samples",
        "epochs",
        "classifier_epochs",
        "eval_count",
        "identity_samples",
        "identity_pairs",
        "w_dim",
        "z_dim",
        "mapping_layers",
        "num_ws",
    ):
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"default {getattr(defaults, name)}" + (f", --quick {QUICK[name]}" if name in QUICK else ""),
        )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a method preset field, e.g. --set recon_weight=1 --set lr=1e-3 (repeatable)",
    )
    parser.add_argument("--alpha", type=float, default=1.25, help="our edit strength for the table (default 1.25)")
    parser.add_argument("--distance", type=float, default=3.0, help="InterFaceGAN/GANSpace distance (default 3)")
    return parser


def settings_from_args(args: argparse.Namespace) -> PipelineSettings:
    values = {
        "preset": args.preset,
        "out": args.out,
        "generator": args.generator,
        "quick": args.quick,
        "seed": args.seed,
        "attributes": args.attributes,
        "alpha": args.alpha,
        "distance": args.distance,
        "progress": not args.no_progress,
    }
    overrides = []
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or not field.strip():
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        overrides.append((field.strip(), value.strip()))
    values["method_overrides"] = tuple(overrides)
    if args.quick:
        values.update(QUICK)
    for name in (
        "samples",
        "transformer_samples",
        "epochs",
        "classifier_epochs",
        "eval_count",
        "identity_samples",
        "identity_pairs",
        "w_dim",
        "z_dim",
        "mapping_layers",
        "num_ws",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if values.get("transformer_samples", PipelineSettings.transformer_samples) > values.get(
        "samples", PipelineSettings.samples
    ):
        values["transformer_samples"] = values.get("samples", PipelineSettings.samples)
    return PipelineSettings(**values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_pipeline(settings_from_args(args))
    except JaxeditError as error:
        if args.debug:
            raise
        print(f"python -m train: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an output path that is a file, a full disk, an unreadable input
        if args.debug:
            raise
        print(f"python -m train: error: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
