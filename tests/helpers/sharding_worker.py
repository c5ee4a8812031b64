"""Subprocess side of tests/test_sharding.py: runs with several virtual CPU devices.

Run as ``python tests/sharding_worker.py MODE OUT_JSON [...]`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=N JAX_PLATFORMS=cpu`` so that the pytest process
itself keeps one device. Each mode writes its measurements to OUT_JSON; the test asserts on them.
Everything runs the code training runs: `transformer_chunks` / `classifier_chunks` (the steps
jitted for a mesh), `TrainCheckpointer`, `train_transformers` and `train_classifier`.

Modes:
  meshes OUT DIR             40 attributes, one chunk of the real step on one device vs 8x1 / 4x2 /
                             6x1 meshes; the 4x2 state checkpointed in DIR and restored on 8x1,
                             on 1 device and on 3x2 (padded to 42); the training loop across meshes
  distributed OUT DIR PORT NUM_PROCESSES PROCESS_ID
                             one process of a localhost jax.distributed run of the training loop
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jax
import numpy as np

NUM_ATTRIBUTES = 40
BATCH = 32
STEPS = 3
QUIET = lambda message: None


def small_official_preset():
    from jaxedit.latent import get_preset

    return get_preset("official").replace(num_ws=2, classifier_hidden=(64, 32))


def small_paper_preset():
    from jaxedit.latent import get_preset

    return get_preset("paper").replace(classifier_hidden=(64, 32), transformer_hidden=64)


def problem(preset):
    """One chunk of transformer training, the same on every process (seeded): the trainer, the
    classifier params, the correlation, 40 attribute ids, latents [STEPS*BATCH, ...], indices
    [STEPS, BATCH] and the initial stacked state (numpy)."""
    from jaxedit.training.steps import ClassifierTrainer, TransformerTrainer

    trainer = TransformerTrainer.create(preset)
    classifier_params = jax.jit(ClassifierTrainer.create(preset, 10).init)(jax.random.key(1)).params
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(STEPS * BATCH,) + preset.latent_shape).astype(np.float32)
    labels = (rng.random((256, preset.num_attributes)) < 0.4).astype(np.float32)
    correlation = np.nan_to_num(np.corrcoef(labels.T)).astype(np.float32)
    attributes = (np.arange(NUM_ATTRIBUTES) % preset.num_attributes).astype(np.int32)
    indices = rng.permutation(STEPS * BATCH).astype(np.int32).reshape(STEPS, BATCH)
    state0 = jax.tree.map(np.asarray, trainer.init(jax.random.key(0), NUM_ATTRIBUTES))
    return trainer, classifier_params, correlation, attributes, latents, indices, state0


def run_chunk(mesh, problem_, state=None, indices=None, hlo=False):
    """(runner, state after one chunk on `mesh`, metrics, the compiled program's text if `hlo`)."""
    from jaxedit.training.sharding import place_per_attribute
    from jaxedit.training.transformers import transformer_chunks

    trainer, classifier_params, correlation, attributes, latents, default_indices, state0 = problem_
    placed = place_per_attribute(state0 if state is None else state, mesh)
    runner = transformer_chunks(trainer, mesh, placed, classifier_params, correlation, attributes, latents)
    if hlo:
        hlo = runner.scan.lower(placed, *runner.args, runner.indices(default_indices)).compile().as_text()
    after, metrics = runner(placed, default_indices if indices is None else indices)
    return runner, after, metrics, hlo


def unpadded(state):
    from jaxedit.training.sharding import gather_to_host, unpad_attributes

    return unpad_attributes(gather_to_host(state), NUM_ATTRIBUTES)


def max_abs_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def p999_abs_diff(a, b) -> float:
    """The 99.9th percentile of |a - b| over all elements of all leaves."""
    diffs = np.concatenate(
        [np.abs(np.asarray(x) - np.asarray(y)).ravel() for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    )
    return float(np.quantile(diffs, 0.999))


def max_rel_diff(a, b) -> float:
    """Largest |a - b| of each leaf relative to that leaf's largest |b| (Adam moments are O(1..10))."""
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / max(float(np.max(np.abs(np.asarray(y)))), 1e-30))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def collectives(compiled_text: str) -> dict:
    return {
        op: compiled_text.count(f" {op}(") for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute")
    }


def mode_meshes(out: Path, directory: Path) -> None:
    """One device vs 8x1 / 4x2 / 6x1 meshes, the checkpoint round trip, the loop across meshes."""
    from jaxedit.training import sharding as S

    result = {"devices": jax.device_count()}
    for name, preset in (("official", small_official_preset()), ("paper", small_paper_preset())):
        problem_ = problem(preset)
        _, reference, reference_metrics, _ = run_chunk(S.single_device_mesh(), problem_)
        reference = unpadded(reference)
        meshes = [(8, 1), (4, 2), (6, 1)] if name == "official" else [(8, 1)]
        for num_attr, num_data in meshes:
            mesh = S.make_mesh(num_attr, num_data, devices=jax.devices()[: num_attr * num_data])
            _, state, metrics, hlo = run_chunk(mesh, problem_, hlo=True)
            gathered = unpadded(state)
            result[f"{name} {num_attr}x{num_data}"] = {
                "params_max_abs_diff": max_abs_diff(gathered.params, reference.params),
                "params_p999_abs_diff": p999_abs_diff(gathered.params, reference.params),
                "opt_state_max_rel_diff": max_rel_diff(gathered.opt_state, reference.opt_state),
                "metrics_max_abs_diff": max_abs_diff(metrics, reference_metrics),
                "metrics_shape": list(metrics["total"].shape),
                "padded_attributes": S.leading_size(state),
                "per_device_rows": int(jax.tree.leaves(state.params)[0].addressable_shards[0].data.shape[0]),
                "collectives": collectives(hlo),
            }
            if (name, num_attr, num_data) == ("official", 4, 2):
                kept_4x2 = (state, problem_)
        result[f"{name} lr"] = preset.lr
    result["checkpoint"] = checkpoint_round_trip(directory, *kept_4x2)
    result["train_transformers"] = train_transformers_on_meshes(directory.parent / "runs")
    result["labelling"] = labelling_on_local_devices()
    out.write_text(json.dumps(result, indent=1))


class _TinyGenerator:
    """A stand-in generator for `label_generator_samples`: ws = tanh(z @ M), images from ws."""

    z_dim, num_ws = 16, 3

    def __init__(self):
        self.matrix = np.random.default_rng(5).normal(size=(16, 8)).astype(np.float32)

    def mapping(self, z, truncation_psi=1.0):
        import jax.numpy as jnp

        w = jnp.tanh(z @ self.matrix)
        return jnp.repeat(w[:, None], self.num_ws, axis=1)

    def synthesis(self, ws, noise_mode="const"):
        import jax.numpy as jnp

        return jnp.tanh(jnp.einsum("bld,c->bldc", ws, jnp.ones(3)))  # [B, num_ws, 8, 3] "images"


def labelling_on_local_devices() -> dict:
    """`jaxedit.data.labelling.label_generator_samples` with the batch over the 8 devices' "data"
    axis vs on one device: the same latents and labels."""
    import jax.numpy as jnp

    from jaxedit.data.labelling import label_generator_samples

    generator = _TinyGenerator()
    classifier = lambda images: jax.nn.sigmoid(jnp.mean(images, axis=(1, 2)) @ jnp.ones((3, 40)) * 3.0)
    spread = label_generator_samples(generator, classifier, 40, seed=2, batch_size=16, space="w+", progress=False)
    single = label_generator_samples(
        generator, classifier, 40, seed=2, batch_size=16, space="w+", progress=False, devices=[jax.devices()[0]]
    )
    return {
        "count": int(spread.latents.shape[0]),
        "latents_max_abs_diff": max_abs_diff(spread.latents, single.latents),
        "probabilities_max_abs_diff": max_abs_diff(spread.probabilities, single.probabilities),
        "labels_equal": bool(np.array_equal(spread.labels, single.labels)),
    }


def loop_problem():
    """A run of the training loop: (config, data, classifier params, classifier config), 4 steps of
    16 for the transformers (chunks of 2, checkpoints every 2) and the classifier, seeded."""
    from jaxedit.training.configs import get_config
    from jaxedit.training.data import TrainingData
    from jaxedit.training.steps import ClassifierTrainer

    preset = small_official_preset().replace(batch_size=16, epochs=1, classifier_batch_size=16, classifier_epochs=1)
    rng = np.random.default_rng(11)
    latents = rng.normal(size=(80,) + preset.latent_shape).astype(np.float32)
    labels = (rng.random((80, preset.num_attributes)) < 0.4).astype(np.float32)
    data = TrainingData(latents, labels, num_train=64, source="worker")
    config = dataclasses.replace(
        get_config("synthetic"), method=preset, steps_per_call=2, checkpoint_every=2, progress=False
    )
    classifier_params = jax.jit(ClassifierTrainer.create(preset, 10).init)(jax.random.key(1)).params
    return config, data, jax.tree.map(np.asarray, classifier_params)


def train_transformers_on_meshes(root: Path) -> dict:
    """`train_transformers` (the real loop, checkpoints, editors): one device uninterrupted; on an
    8x1 mesh stopped half way (max_steps) and resumed on a 6x1 mesh (40 attributes padded to 42,
    the checkpoint re-padded from 40 rows); one device -> 8x1; 8x1 -> one device. Then
    `train_classifier` on one device and data-parallel over 8 devices."""
    from jaxedit.latent import load_editors
    from jaxedit.training import sharding as S
    from jaxedit.training.classifier import train_classifier
    from jaxedit.training.steps import TransformerTrainer
    from jaxedit.training.transformers import train_transformers

    config, data, classifier_params = loop_problem()
    half = dataclasses.replace(config, max_steps=2)
    shared = TransformerTrainer.create(config.method)  # one set of functions: each mesh compiles once

    def run(workdir, run_config, mesh=None, resume=False):
        return train_transformers(
            run_config,
            data,
            classifier_params,
            "all",
            root / workdir,
            resume=resume,
            log=QUIET,
            trainer=shared,
            mesh=mesh,
        )

    single = run("single", config)
    stopped = run("sharded", half, S.make_mesh(8, 1))
    resumed = run("sharded", config, S.make_mesh(6, 1, devices=jax.devices()[:6]), resume=True)
    run("to_mesh", half)
    to_mesh = run("to_mesh", config, S.make_mesh(8, 1), resume=True)
    run("to_one", half, S.make_mesh(8, 1))
    to_one = run("to_one", config, resume=True)
    editors = load_editors(root / "sharded" / "editors")
    classifier_single = train_classifier(config, data, root / "classifier_single", log=QUIET)
    classifier_sharded = train_classifier(config, data, root / "classifier_sharded", log=QUIET, mesh=S.make_mesh(4, 2))
    return {
        "classifier_steps": [classifier_single.steps, classifier_sharded.steps],
        "classifier_params_max_abs_diff": max_abs_diff(classifier_sharded.params, classifier_single.params),
        "classifier_params_p999_abs_diff": p999_abs_diff(classifier_sharded.params, classifier_single.params),
        "classifier_heldout_loss_diff": abs(classifier_sharded.heldout_loss - classifier_single.heldout_loss),
        "classifier_lr": config.method.classifier_lr,
        "steps": [single.steps, stopped.steps, resumed.steps],
        "attributes": len(resumed.attributes),
        "params_max_abs_diff": max_abs_diff(resumed.params, single.params),
        "one_device_checkpoint_resumed_on_8x1_max_abs_diff": max_abs_diff(to_mesh.params, single.params),
        "sharded_checkpoint_resumed_on_one_device_max_abs_diff": max_abs_diff(to_one.params, single.params),
        "resumed_steps": [to_mesh.steps, to_one.steps],
        "editors_dir_max_abs_diff": max_abs_diff(editors.transformer_params, single.params),
        "checkpoint_steps": sorted(
            int(p.name) for p in (root / "sharded" / "checkpoints" / "transformers").iterdir() if p.name.isdigit()
        ),
    }


def checkpoint_round_trip(directory: Path, state, problem_) -> dict:
    """Save the state trained on 4x2 with `TrainCheckpointer`, restore it on 8x1, on 1 device and
    on 3x2 (padded to 42); the 8x1 copy trains one more chunk in step with one device."""
    from jaxedit.training import sharding as S
    from jaxedit.training.checkpoint import TrainCheckpointer

    saved = unpadded(state)
    with TrainCheckpointer(directory, num_attributes=NUM_ATTRIBUTES) as checkpointer:
        checkpointer.save(STEPS, state, {"stage": "test"})
        result = {
            "saved_on": S.mesh_shape(state.params["kernel"].sharding.mesh),
            "steps": checkpointer.complete_steps(),
        }
        targets = {
            "8x1": S.make_mesh(8, 1),
            "1 device": S.single_device_mesh(),
            "3x2 (padded to 42)": S.make_mesh(3, 2, devices=jax.devices()[:6]),
        }
        for name, mesh in targets.items():
            template = S.place_per_attribute(problem_[-1], mesh)
            step, restored, _ = checkpointer.restore_latest(template, warn=print)
            leaf = jax.tree.leaves(restored.params)[0]
            result[name] = {
                "step": step,
                "rows": int(leaf.shape[0]),
                "spec": str(leaf.sharding.spec),
                "devices": len(leaf.sharding.device_set),
                "max_abs_diff": max_abs_diff(unpadded(restored), saved),
                "equal": all(
                    np.array_equal(x, y) for x, y in zip(jax.tree.leaves(unpadded(restored)), jax.tree.leaves(saved))
                ),
            }
            if name == "8x1":  # the restored state trains on, in step with the one-device program
                more = np.random.default_rng(7).permutation(STEPS * BATCH).astype(np.int32).reshape(STEPS, BATCH)
                _, on_mesh, _, _ = run_chunk(mesh, problem_, restored, more)
                _, on_one, _, _ = run_chunk(S.single_device_mesh(), problem_, saved, more)
                result[name]["continued_chunk_max_abs_diff"] = max_abs_diff(unpadded(on_mesh), unpadded(on_one))
    return result


def mode_distributed(out: Path, directory: Path, port: int, num_processes: int, process_id: int) -> None:
    """One process of a two-process run of the training loop, checkpoints in one shared directory:
    the transformers stopped half way on a mesh with "attr" across both hosts (8x1), resumed on
    4x2; the classifier data-parallel over all 8 devices (each host feeding half of every batch)."""
    from jaxedit.training import sharding as S

    address = f"127.0.0.1:{port}"
    S.initialize_distributed(
        address, num_processes, process_id, coordinator_bind_address=address, initialization_timeout=60
    )
    from jaxedit.training.classifier import train_classifier
    from jaxedit.training.transformers import train_transformers

    config, data, classifier_params = loop_problem()
    meshes = {"stopped": S.make_mesh(None, 1), "resumed": S.make_mesh(4, 2), "classifier": S.make_mesh(1, None)}
    stopped = train_transformers(
        dataclasses.replace(config, max_steps=2), data, classifier_params, "all", directory, log=QUIET,
        mesh=meshes["stopped"],
    )  # fmt: skip
    resumed = train_transformers(
        config, data, classifier_params, "all", directory, resume=True, log=QUIET, mesh=meshes["resumed"]
    )
    classifier = train_classifier(config, data, directory, log=QUIET, mesh=meshes["classifier"])
    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
        "meshes": {name: S.describe_mesh(mesh) for name, mesh in meshes.items()},
        "steps": [stopped.steps, resumed.steps, classifier.steps],
        "checkpoint_steps": sorted(
            int(p.name) for p in (directory / "checkpoints" / "transformers").iterdir() if p.name.isdigit()
        ),
        "heldout_loss": classifier.heldout_loss,
    }
    if process_id == 0:
        np.savez(directory / "params.npz", *[np.asarray(x) for x in jax.tree.leaves(resumed.params)])
    out.write_text(json.dumps(result, indent=1))
    jax.distributed.shutdown()


def main(argv: list[str]) -> None:
    mode, out = argv[0], Path(argv[1])
    if mode == "meshes":
        mode_meshes(out, Path(argv[2]))
    elif mode == "distributed":
        mode_distributed(out, Path(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
