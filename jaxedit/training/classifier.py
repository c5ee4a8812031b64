"""Train the latent classifier C: `python -m train.classifier --config NAME --workdir DIR [--resume]`.

The library entry point is `train_classifier(config, data, workdir, ...)`; the result is written
to `DIR/classifier/` (an editors directory with no transformers, which `jaxedit.training.transformers
--classifier DIR` reads), with checkpoints in `DIR/checkpoints/classifier/`, metric lines in
`DIR/metrics.jsonl` (stage "classifier") and the loss curve in `DIR/classifier_losses.png`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxedit.latent.editors import save_editors
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
from jaxedit.training.sharding import DATA_AXIS, ChunkRunner, chunk_sharding, jit_step, place, replicated
from jaxedit.training.steps import CLASSIFIER_METRICS, ClassifierTrainer
from jaxedit.viz.plots import small_multiples

STAGE = "classifier"
CLASSIFIER_SEED_STREAM = 0  # init key = fold_in(key(seed), 0); the transformers use stream 1


@dataclasses.dataclass
class ClassifierRun:
    """Outcome of `train_classifier`: final params, where they were written, and what happened."""

    params: Any
    directory: Path
    steps: int
    seconds: float
    heldout_loss: float | None
    heldout_accuracy: list[float] | None


def classifier_schedule(config: TrainConfig, num_train: int) -> Schedule:
    method = config.method
    return Schedule(num_train, method.classifier_batch_size, method.classifier_epochs, config.max_steps)


def classifier_chunks(trainer: ClassifierTrainer, mesh: Any, latents: np.ndarray, labels: np.ndarray) -> ChunkRunner:
    """`trainer.scan` jitted for `mesh`, data-parallel: ``advance(state, indices int32 [S, B]) ->
    (state, {metric: numpy [S]})`` with the state, latents [N, *latent] and labels [N, A] on every
    device and each step's batch split over "data" (XLA all-reduces the gradients)."""
    repl = replicated(mesh)
    scan = jit_step(trainer.scan, (repl, repl, repl, chunk_sharding(mesh, DATA_AXIS)), (repl, repl))
    return ChunkRunner(scan, (place(latents, repl), place(labels, repl)), mesh)


def train_classifier(
    config: TrainConfig,
    data: TrainingData,
    workdir: str | Path,
    *,
    resume: bool = False,
    guard: PreemptionGuard | None = None,
    trainer: ClassifierTrainer | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    mesh: Any = None,
) -> ClassifierRun:
    """Train C on `data` per `config` (its method's classifier_* fields), writing into `workdir`.

    resume: continue from the newest intact checkpoint (else refuse to overwrite checkpoints).
    guard: a `PreemptionGuard` whose signals stop the run at a chunk boundary (raises
      `TrainingInterrupted` after saving). None: no signal handling here.
    trainer: the pure functions to train with (default `ClassifierTrainer.create(config.method,
      ...)`); passing the same trainer to several runs compiles its steps once.
    Raises `TrainingError` on a non-finite loss or parameter (the last good checkpoint is kept).
    mesh: a `jaxedit.training.sharding` mesh whose devices all go on "data": the batches are split
    over them (data parallel, state replicated). None: this process's first device.
    """
    workdir = Path(workdir)
    method = config.method
    data.check(method.latent_shape, method.num_attributes)
    schedule = classifier_schedule(config, data.num_train)
    trainer = trainer or ClassifierTrainer.create(method, schedule.steps_per_epoch)
    fingerprint = run_fingerprint(
        config,
        {
            "stage": STAGE,
            "num_samples": int(data.latents.shape[0]),
            "num_train": data.num_train,
            "data_sha256": data_digest(data.latents, data.labels),
        },
    )
    devices = list(mesh.devices.flat) if mesh is not None else [jax.local_devices()[0]]
    mesh = sharding.make_mesh(1, None, devices=devices)  # every device on "data"
    checkpointer = open_checkpointer(workdir, STAGE, config, resume)
    outputs = output_dir(workdir)
    metrics = MetricsLog(outputs / "metrics.jsonl")
    try:
        key = jax.random.fold_in(jax.random.key(config.seed), CLASSIFIER_SEED_STREAM)
        state = jax.jit(trainer.init, out_shardings=replicated(mesh))(key)
        if mesh.devices.size > 1:
            log(f"{STAGE}: {sharding.describe_mesh(mesh)}")
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

        def record(step: int) -> dict:
            return {
                "stage": STAGE,
                "seed": config.seed,
                "epoch": schedule.epoch_of(step) if step < schedule.total_steps else method.classifier_epochs,
                "position": step % schedule.steps_per_epoch,
                "fingerprint": fingerprint,
            }

        result: LoopResult = run_stage(
            state,
            config,
            start=start,
            schedule=schedule,
            advance=classifier_chunks(trainer, mesh, data.train_latents, data.train_labels),
            checkpointer=checkpointer,
            record=record,
            row_names=[STAGE],
            finite_rows=lambda s: rows_all_finite(jax.tree.map(lambda leaf: leaf[None], s.params), 1),
            metrics=metrics,
            stage=STAGE,
            guard=guard,
            bar_label=STAGE,
        )
    finally:
        checkpointer.close()

    params = sharding.gather_to_host(result.state.params)
    heldout_loss = heldout_accuracy = None
    if data.heldout_latents.shape[0]:
        evaluate = jax.jit(trainer.evaluate)
        evaluation = evaluate(params, jnp.asarray(data.heldout_latents), jnp.asarray(data.heldout_labels))
        heldout_loss = float(evaluation["loss"])
        heldout_accuracy = [float(a) for a in np.asarray(evaluation["accuracy"])]
        log(
            f"{STAGE}: held-out loss {heldout_loss:.4f}, mean accuracy {np.mean(heldout_accuracy):.4f} "
            f"({data.heldout_latents.shape[0]} samples)"
        )
    training = {
        "stage": STAGE,
        "config": config.name,
        "seed": config.seed,
        "steps": result.step,
        "data": data.source,
        "num_train": data.num_train,
        "heldout_loss": heldout_loss,
        "heldout_accuracy": heldout_accuracy,
    }
    directory = save_editors(outputs / "classifier", method, params, None, [], training=training, overwrite=True)
    curves = loss_curves(metrics.read(STAGE), CLASSIFIER_METRICS)
    if curves:
        small_multiples(
            curves,
            outputs / "classifier_losses.png",
            xlabel="step",
            ylabel="value",
            columns=1,
            panel_size=(640, 360),
            title=f"classifier ({config.name})",
        )
    write_json(
        outputs / "classifier_run.json", {"config": config.to_dict(), **training, "seconds_in_steps": result.seconds}
    )
    return ClassifierRun(params, directory, result.step, result.seconds, heldout_loss, heldout_accuracy)
