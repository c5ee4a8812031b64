"""The whole method end to end on the embedded synthetic world, with the paper's Table 1.

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

Every editors directory it writes records its provenance (`jaxedit.latent.provenance`: the world's
parameters, the generator's identity, the preset, the latent space), so `jaxedit eval` and
`jaxedit edit` find the world or generator the editors belong to.

A stopped run continues with `run_pipeline(settings, resume=True)` (`python -m train --resume
--out RUN`): finished stages are not redone, a stage in progress continues from its checkpoint, and
the editors and report equal an uninterrupted run's (`jaxedit.training.run_dir`).

`run_pipeline(PipelineSettings(...))` is the library call; `python -m train` and `jaxedit train`
(`jaxedit.cli.train`) build the settings from flags. `QUICK` shrinks the sample counts and epochs
(paper preset: 2 minutes on 2 idle CPU cores; the defaults about 20 CPU minutes; the official
preset's W+ transformers cost about 20 times the paper's per step).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxedit.attributes import ATTRIBUTES, parse_attributes
from jaxedit.config import check_types
from jaxedit.data.world_config import WorldConfig
from jaxedit.errors import ConfigError
from jaxedit.eval.suite import SuiteSettings
from jaxedit.latent.presets import PAPER, MethodPreset


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything `run_pipeline` does, as one frozen value (saved in report.json under "pipeline").

    method: the method preset ("paper": W, the default; "official": W+), sized to the world's
      latents by `method_preset_for` (w_dim, num_ws, edit_layers); its other fields as given.
    w_dim, z_dim, mapping_layers, num_ws: the synthetic world's random mapping network and W+
      depth (`WorldConfig`'s fields and defaults). generator: converted generator directory whose
      mapping network replaces it.
    evaluation: the protocol's settings (`jaxedit.eval.suite.SuiteSettings`: latents per attribute,
      identity pairs, strengths). seed: seeds everything; the evaluation's own seed is replaced by it.
    samples: labelled latents for the classifier (90/10 split) and the baselines' fits.
    transformer_samples: latents the transformers train on (the paper: 10K).
    attributes: the attributes to train and evaluate ("all" or names/indices).
    out: the run directory ("": runs/<UTC timestamp>, created only once everything is checked).
    progress: show progress bars.
    """

    method: MethodPreset = PAPER
    w_dim: int = WorldConfig.w_dim
    z_dim: int = WorldConfig.z_dim
    mapping_layers: int = WorldConfig.mapping_layers
    num_ws: int = WorldConfig.num_ws
    evaluation: SuiteSettings = SuiteSettings()
    seed: int = 0
    samples: int = 50_000
    transformer_samples: int = 10_000
    attributes: str = "all"
    generator: str = ""
    out: str = ""
    progress: bool = True

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("samples", "transformer_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"pipeline settings: {name} must be >= 1, got {getattr(self, name)}")
        if self.transformer_samples > self.samples:
            raise ConfigError(
                f"pipeline settings: transformer_samples {self.transformer_samples} exceeds samples {self.samples}"
            )
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"pipeline settings: seed must be in 0..2**63-1, got {self.seed}")
        parse_attributes(self.attributes)


QUICK = {
    "samples": 20_000,
    "transformer_samples": 4000,
    "method.epochs": 3,
    "method.classifier_epochs": 10,
    "method.classifier_decay_epochs": 5,
    "evaluation.count": 500,
    "evaluation.identity_pairs": 100_000,
}
"""The quick run (`--quick`): changes to `PipelineSettings` for `jaxedit.config.override`."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


LABELLED_SAMPLE_STREAM = 11
"""The labelled sample (C's data, the baselines' fit) is drawn with fold_in(key(seed), 11)."""


def load_generator_for(settings: PipelineSettings):
    """The converted generator of `settings.generator` (None without one); refuses a bad directory."""
    if not settings.generator:
        return None
    from jaxedit.stylegan2 import load_generator

    return load_generator(settings.generator)


def build_world_for(settings: PipelineSettings, log: Callable[[str], None] = _log, generator=None):
    """The synthetic world of the settings (its latents from `generator`'s mapping when given, else
    from a random mapping network), and the generator (loaded here when not passed)."""
    from jaxedit.data import synthetic

    generator = generator if generator is not None else load_generator_for(settings)
    if generator is not None:
        world = synthetic.world_from_generator(generator, WorldConfig(seed=settings.seed))
        return world, generator
    config = WorldConfig(
        seed=settings.seed,
        z_dim=settings.z_dim,
        w_dim=settings.w_dim,
        mapping_layers=settings.mapping_layers,
        num_ws=settings.num_ws,
    )
    return synthetic.build_world(config), None


def labelled_sample(world, seed: int, count: int, space: str) -> tuple[np.ndarray, np.ndarray]:
    """The run's labelled latents: `count` latents of `world` in `space` drawn with
    fold_in(key(seed), LABELLED_SAMPLE_STREAM), and the labeller's probabilities [count, 40]
    (what C trains on and the baselines are fitted on; `jaxedit eval` draws the same sample)."""
    from jaxedit.data import synthetic

    key = jax.random.fold_in(jax.random.key(seed), LABELLED_SAMPLE_STREAM)
    latents = np.asarray(synthetic.sample_latents(world, key, count, space=space))
    label_fn = synthetic.labeller(world)
    probabilities = np.concatenate([np.asarray(label_fn(latents[i : i + 8192])) for i in range(0, len(latents), 8192)])
    return latents, probabilities


def method_preset_for(settings: PipelineSettings, world) -> MethodPreset:
    """The settings' method sized to the world's latents (W: [w_dim]; W+: [num_ws, w_dim], the
    edit layers clipped to num_ws); a paper-kind transformer's hidden width follows w_dim."""
    preset = settings.method
    changes = {"w_dim": world.w_dim}
    if preset.space == "w+":
        num_ws = world.config.num_ws
        first, stop = preset.edit_layers or (0, num_ws)
        changes.update(num_ws=num_ws, edit_layers=(first, min(stop, num_ws)))
    if preset.transformer_kind == "paper" and world.w_dim != preset.w_dim:
        changes["transformer_hidden"] = world.w_dim
    return preset.replace(**changes)


def run_pipeline(
    settings: PipelineSettings, log: Callable[[str], None] = _log, *, resume: bool = False, guard=None
) -> dict:
    """Run everything (module docstring) and return the report dict (also written to RUN_DIR).

    resume: continue the stopped run in `settings.out` (`jaxedit.training.run_dir`); its settings
    must equal the recorded ones. guard: a `jaxedit.training.checkpoint.PreemptionGuard` whose
    signals stop the run (`run_dir.PipelineInterrupted` or `TrainingInterrupted`, exit status 75):
    a training stage at its next chunk boundary after a checkpoint, other work at once.
    Nothing is created before the settings, the run directory and the generator are checked.
    """
    from jaxedit.data import synthetic
    from jaxedit.eval import report
    from jaxedit.eval.suite import run_suite
    from jaxedit.latent.editors import editors_from_params, save_editors
    from jaxedit.latent.provenance import make_provenance
    from jaxedit.training import run_dir
    from jaxedit.training.classifier import train_classifier
    from jaxedit.training.configs import TrainConfig
    from jaxedit.training.data import TrainingData, from_arrays
    from jaxedit.training.transformers import train_transformers

    started = time.perf_counter()
    timings = {}
    out = Path(settings.out or run_dir.default_run_dir())
    settings = dataclasses.replace(settings, out=str(out))
    run_dir.check_run_directory(out, resume)
    if resume:
        difference = run_dir.first_difference(
            dataclasses.replace(run_dir.read_settings(out, PipelineSettings), out=str(out), progress=True),
            dataclasses.replace(settings, progress=True),
        )
        if difference:
            raise ConfigError(f"{out} was started with {difference}; resume with the run's own settings")
    attribute_indices = parse_attributes(settings.attributes)
    names = [ATTRIBUTES[i] for i in attribute_indices]
    generator = load_generator_for(settings)
    if not resume:
        run_dir.write_settings(out, settings)
    log(f"run directory {out}" + (" (resumed)" if resume else ""))

    tick = time.perf_counter()
    with run_dir.stop_at_once(guard, out, "building the world and its labels"):
        world, generator = build_world_for(settings, log, generator)
        preset = method_preset_for(settings, world)
        log(world.describe())
        latents, probabilities = labelled_sample(world, settings.seed, settings.samples, preset.space)
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
    work = out / run_dir.WORK
    classifier = train_classifier(config, data, work, resume=resume, guard=guard, log=log)
    timings["classifier"] = time.perf_counter() - tick
    run_dir.stop_if_requested(guard, out, "after the classifier")

    tick = time.perf_counter()
    num_pairs = min(settings.transformer_samples, data.num_train)
    pairs = TrainingData(data.latents, data.labels, num_pairs, source=f"{data.source}, first {num_pairs} latents")
    run = train_transformers(
        config,
        pairs,
        classifier.params,
        attribute_indices,
        work,
        resume=resume,
        guard=guard,
        editors_dir=work / "editors",
        log=log,
    )
    transformer_params, transformer_steps = run.params, run.steps
    timings["transformers"] = time.perf_counter() - tick
    log(f"trained {len(names)} transformers at once: {transformer_steps} steps in {timings['transformers']:.1f} s")
    run_dir.stop_if_requested(guard, out, "after the transformers")
    suite_settings = dataclasses.replace(settings.evaluation, seed=settings.seed)
    training = {
        "data": data.source,
        "samples": settings.samples,
        "transformer_samples": settings.transformer_samples,
        "transformer_steps": transformer_steps,
        "classifier_heldout_accuracy": classifier.heldout_accuracy,
        "world_config": world.config.to_dict(),
        "world_source": world.source,
        "generator": settings.generator,
        "evaluation": {
            **dataclasses.asdict(suite_settings),
            "baselines": list(suite_settings.baselines),
            "baseline_samples": settings.samples,
        },
        "labelled_sample": {"seed": settings.seed, "count": settings.samples},
    }
    provenance = make_provenance(preset, origin="trained", world=world.config.to_dict(), generator=generator)
    save_editors(
        out / "editors",
        preset,
        classifier.params,
        transformer_params,
        names,
        training=training,
        overwrite=True,
        provenance=provenance,
    )
    editors = editors_from_params(
        preset, classifier.params, transformer_params, names, training=training, provenance=provenance
    )

    tick = time.perf_counter()
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
    with run_dir.stop_at_once(guard, out, "evaluating"):
        result, table = run_suite(
            editors,
            synthetic.labeller(world),
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
            progress=settings.progress,
        )
        timings["evaluation"] = time.perf_counter() - tick
        timings["total"] = time.perf_counter() - started
        result["settings"]["seconds"] = timings
        report.write_json(result, out / "report.json")
    run_dir.remove_checkpoints(out)
    print(table)
    print(f"\nwritten to {out}/ (report.json, report.md, plots/, editors/) in {timings['total']:.0f} s")
    return result
