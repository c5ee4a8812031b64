"""Train K attribute transformers at once: `python -m train.transformers --config NAME
--attributes Smiling,15,... (default all 40) --workdir DIR [--classifier DIR] [--resume]`.

The library entry point is `train_transformers(config, data, classifier_params, attributes,
workdir, ...)`: the K transformers are stacked along a leading axis and advanced together by one
vmapped, `lax.scan`ned program (`jaxedit.training.steps.TransformerTrainer.scan`, jitted for the
device mesh by `transformer_chunks`: the K transformers over its "attr" axis, batches over "data";
one device is the mesh of one). Attribute
j's transformer starts from `fold_in(fold_in(key(seed), 1), j)`, so it does not depend on which
other attributes train beside it. The result is `DIR/editors/` (the classifier and the K
transformers, `jaxedit.load_editors` reads it); checkpoints go to `DIR/checkpoints/transformers/`,
metric lines to `DIR/metrics.jsonl` (stage "transformers", one line per attribute and chunk), the
loss curves per attribute to `DIR/transformer_losses.png`.

`--classifier` names a `jaxedit.training.classifier` workdir (its `classifier/`), or any editors directory
(a trained classifier, or converted official editors); the default is `DIR/classifier`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.attributes import attribute_name, parse_attributes
from jaxedit.errors import ConfigError
from jaxedit.latent.editors import load_editors, save_editors
from jaxedit.latent.losses import correlation_matrix
from jaxedit.latent.modules import init_transformer_params
from jaxedit.latent.provenance import describe_shape, make_provenance
from jaxedit.training import sharding
from jaxedit.training.checkpoint import PreemptionGuard
from jaxedit.training.common import (
    data_digest,
    open_checkpointer,
    output_dir,
    resume_state,
    run_fingerprint,
    run_stage,
    write_json,
)
from jaxedit.training.configs import TrainConfig
from jaxedit.training.data import TrainingData
from jaxedit.training.loop import LoopResult, MetricsLog, Schedule, loss_curves, rows_all_finite
from jaxedit.training.sharding import ATTR_AXIS, DATA_AXIS, ChunkRunner, chunk_sharding, jit_step, place, replicated
from jaxedit.training.steps import TransformerState, TransformerTrainer, stack_slots
from jaxedit.viz.plots import small_multiples

STAGE = "transformers"
TRANSFORMER_SEED_STREAM = 1


@dataclasses.dataclass
class TransformerRun:
    """Outcome of `train_transformers`: final stacked params [K, ...], the editors directory, timings."""

    params: Any
    attributes: tuple[str, ...]
    directory: Path
    steps: int
    seconds: float


def transformer_schedule(config: TrainConfig, num_train: int) -> Schedule:
    method = config.method
    return Schedule(num_train, method.batch_size, method.epochs, config.max_steps)


def initial_state(trainer: TransformerTrainer, seed: int, attributes: Sequence[int]) -> TransformerState:
    """Stacked fresh params (attribute j from fold_in(fold_in(key(seed), 1), j)) and zero Adam moments."""
    base = jax.random.fold_in(jax.random.key(seed), TRANSFORMER_SEED_STREAM)
    params = [init_transformer_params(trainer.transformer, jax.random.fold_in(base, int(j))) for j in attributes]
    return trainer.init_from_params(stack_slots(params))


def transformer_chunks(
    trainer: TransformerTrainer,
    mesh: Any,
    state: TransformerState,
    classifier_params: Any,
    correlation: Any,
    attributes: Sequence[int],
    latents: np.ndarray,
) -> ChunkRunner:
    """`trainer.scan` jitted for `mesh` and fed by the loop: ``advance(state, indices int32 [S, B])
    -> (state, {metric: numpy [S, K]})``.

    `state` is the padded, attr-split state (`sharding.place_per_attribute`), whose layout the
    step keeps; the attribute ids are padded alike and split over "attr"; latents [N, *latent],
    the classifier params and the correlation [A, A] are put on every device once. The metrics
    come back to every process stripped of the dummy attributes.
    """
    repl = replicated(mesh)
    ids = sharding.place_per_attribute(np.asarray(attributes, np.int32), mesh)
    state_shardings = sharding.tree_shardings(state, mesh, ATTR_AXIS)
    scan = jit_step(
        trainer.scan,
        (state_shardings, repl, repl, ids.sharding, repl, chunk_sharding(mesh, DATA_AXIS)),
        (state_shardings, chunk_sharding(mesh, ATTR_AXIS)),
    )
    constants = (place(classifier_params, repl), place(np.asarray(correlation), repl), ids, place(latents, repl))
    return ChunkRunner(scan, constants, mesh, rows=len(attributes))


def tree_digest(tree: Any) -> str:
    """sha256 over a pytree's leaves (paths, shapes, bytes): identifies the classifier a run used."""
    import hashlib

    digest = hashlib.sha256()
    for path, leaf in jax.tree.flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(np.asarray(leaf, np.float32))
        digest.update(f"{jax.tree_util.keystr(path)}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def load_classifier_params(path: str | Path, config: TrainConfig) -> Any:
    """Classifier params from a jaxedit.training.classifier workdir or an editors directory, checked against the preset."""
    path = Path(path)
    if (path / "classifier" / "jaxedit.json").is_file():
        path = path / "classifier"
    editors = load_editors(path)
    method = config.method
    if (
        editors.preset.classifier_widths != method.classifier_widths
        or editors.preset.classifier_activation != method.classifier_activation
    ):
        raise ConfigError(
            f"{path}: classifier widths {list(editors.preset.classifier_widths)} ({editors.preset.classifier_activation}) "
            f"do not match the config's {list(method.classifier_widths)} ({method.classifier_activation})"
        )
    return jax.tree.map(np.asarray, editors.classifier_params)


def editors_provenance(config: TrainConfig, data: TrainingData) -> dict:
    """What the trained editors record (`jaxedit.latent.provenance`): the generator of
    `config.generator` (its latent size checked against the preset's), else the synthetic world the
    data came from, else a note that the latents' generator is unknown."""
    method = config.method
    if config.generator:
        from jaxedit.stylegan2 import load_generator

        generator = load_generator(config.generator)
        expected = tuple(method.latent_shape)
        actual = (generator.w_dim,) if len(expected) == 1 else (generator.num_ws, generator.w_dim)
        if actual != expected:
            raise ConfigError(
                f"generator {config.generator}: its latents are {describe_shape(actual)}, "
                f"the {method.name} preset here trains on {describe_shape(expected)}"
            )
        return make_provenance(method, origin="trained", generator=generator)
    if data.world is not None:
        return make_provenance(method, origin="trained", world=data.world)
    source = data.source or "latents given as arrays"
    return make_provenance(
        method,
        origin="trained",
        note=f"trained on {source}; their generator was not given (train with --generator GEN_DIR to record it)",
    )


def train_transformers(
    config: TrainConfig,
    data: TrainingData,
    classifier_params: Any,
    attributes: Sequence[int | str] | str | None,
    workdir: str | Path,
    *,
    resume: bool = False,
    guard: PreemptionGuard | None = None,
    trainer: TransformerTrainer | None = None,
    editors_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    mesh: Any = None,
) -> TransformerRun:
    """Train one transformer per attribute in `attributes` (names/indices, "all" or None: all 40).

    The correlation matrix comes from all of `data.labels` (the official code's choice); batches
    from the first `data.num_train` rows. Writes `editors_dir` (default `workdir/editors`).
    resume / guard / trainer: as in `jaxedit.training.classifier.train_classifier`.
    Raises `TrainingError` naming the attribute and step on a non-finite loss or parameter.
    mesh: a `jaxedit.training.sharding.make_mesh` mesh: the K transformers go over its "attr" axis
    (padded with dummy copies to a multiple of it), batches over "data". None: this process's
    first device. Checkpoints hold the state as laid out and resume onto any mesh.
    """
    workdir = Path(workdir)
    method = config.method
    data.check(method.latent_shape, method.num_attributes)
    indices = parse_attributes(attributes if attributes is not None else "all")
    if not indices:
        raise ConfigError("no attributes to train")
    names = tuple(attribute_name(j) for j in indices)
    provenance = editors_provenance(config, data)
    schedule = transformer_schedule(config, data.num_train)
    log(f"{STAGE}: {method.describe_training()}")
    trainer = trainer or TransformerTrainer.create(method)
    mesh = mesh if mesh is not None else sharding.single_device_mesh()
    fingerprint = run_fingerprint(
        config,
        {
            "stage": STAGE,
            "attributes_trained": list(names),
            "num_samples": int(data.latents.shape[0]),
            "num_train": data.num_train,
            "classifier_sha256": tree_digest(classifier_params),
            "data_sha256": data_digest(data.latents, data.labels),
        },
    )
    fingerprint.pop("attributes", None)
    checkpointer = open_checkpointer(workdir, STAGE, config, resume, num_attributes=len(indices))
    outputs = output_dir(workdir)
    metrics = MetricsLog(outputs / "metrics.jsonl")
    try:
        state = sharding.place_per_attribute(initial_state(trainer, config.seed, indices), mesh)
        if mesh.devices.size > 1:
            padded = sharding.leading_size(state)
            log(f"{STAGE}: {sharding.describe_mesh(mesh)}, {len(indices)} attributes padded to {padded}")
        start, state = resume_state(
            state,
            checkpointer,
            metrics,
            resume=resume,
            fingerprint=fingerprint,
            stage=STAGE,
            total_steps=schedule.total_steps,
            log=log,
        )
        advance = transformer_chunks(
            trainer,
            mesh,
            state,
            classifier_params,
            correlation_matrix(jnp.asarray(data.labels)),
            indices,
            data.train_latents,
        )

        def record(step: int) -> dict:
            return {
                "stage": STAGE,
                "seed": config.seed,
                "epoch": schedule.epoch_of(step) if step < schedule.total_steps else method.epochs,
                "position": step % schedule.steps_per_epoch,
                "attributes": list(names),
                "mesh": sharding.mesh_shape(mesh),
                "fingerprint": fingerprint,
            }

        result: LoopResult = run_stage(
            state,
            config,
            start=start,
            schedule=schedule,
            advance=advance,
            checkpointer=checkpointer,
            record=record,
            row_names=list(names),
            finite_rows=lambda s: rows_all_finite(s.params, len(indices)),
            metrics=metrics,
            stage=STAGE,
            guard=guard,
            bar_label=f"{STAGE} x{len(names)}",
        )
    finally:
        checkpointer.close()

    params = sharding.unpad_attributes(sharding.gather_to_host(result.state.params), len(indices))
    training = {
        "stage": STAGE,
        "config": config.name,
        "seed": config.seed,
        "steps": result.step,
        "data": data.source,
        "num_train": data.num_train,
        "epochs": method.epochs,
        "batch_size": method.batch_size,
    }
    directory = save_editors(
        Path(editors_dir) if editors_dir is not None else outputs / "editors",
        method,
        jax.tree.map(np.asarray, classifier_params),
        params,
        names,
        training=training,
        overwrite=True,
        provenance=provenance,
    )
    curves = loss_curves(metrics.read(STAGE), ("class", "attribute", "recon"))
    if curves:
        small_multiples(
            curves,
            outputs / "transformer_losses.png",
            xlabel="step",
            ylabel="loss",
            title=f"transformer losses ({config.name}, {method.loss_kind} losses)",
        )
    write_json(
        outputs / "transformers_run.json",
        {"config": config.to_dict(), **training, "attributes": list(names), "seconds_in_steps": result.seconds},
    )
    return TransformerRun(params, names, directory, result.step, result.seconds)
