"""Subprocess side of tests/test_sharding.py: runs with several virtual CPU devices.

Run as ``python tests/sharding_worker.py MODE OUT_JSON [...]`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=N JAX_PLATFORMS=cpu`` so that the pytest process
itself keeps one device. Each mode writes its measurements to OUT_JSON; the test asserts on them.

Modes:
  meshes OUT DIR             40 attributes, the real TransformerTrainer step, one device vs
                             8x1 / 4x2 / 6x1 meshes; then the 4x2 state saved to DIR and
                             restored on 8x1, on 1 device and on 3x2 (padded to 42)
  distributed OUT DIR PORT NUM_PROCESSES PROCESS_ID
                             one process of a localhost jax.distributed run: train, save, restore
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

SEED_BATCHES = 0
NUM_ATTRIBUTES = 40
BATCH = 32
STEPS = 3


def small_official_preset():
    from jaxedit.latent import get_preset

    return get_preset("official").replace(num_ws=2, classifier_hidden=(64, 32))


def small_paper_preset():
    from jaxedit.latent import get_preset

    return get_preset("paper").replace(classifier_hidden=(64, 32), transformer_hidden=64)


def problem(preset, num_attributes=NUM_ATTRIBUTES, steps=STEPS, batch=BATCH):
    """Everything a transformer run needs, the same on every process (seeded)."""
    from jaxedit.training.steps import ClassifierTrainer, TransformerTrainer

    trainer = TransformerTrainer.create(preset)
    classifier_params = ClassifierTrainer.create(preset, 10).init(jax.random.key(1)).params
    rng = np.random.default_rng(SEED_BATCHES)
    batches = rng.normal(size=(steps, batch) + preset.latent_shape).astype(np.float32)
    labels = (rng.random((256, preset.num_attributes)) < 0.4).astype(np.float32)
    correlation = np.nan_to_num(np.corrcoef(labels.T)).astype(np.float32)
    attributes = (np.arange(num_attributes) % preset.num_attributes).astype(np.int32)
    state0 = trainer.init(jax.random.key(0), num_attributes)
    return trainer, classifier_params, correlation, attributes, batches, state0


def train_single(trainer, classifier_params, correlation, attributes, batches, state):
    """The one-device reference: plain arrays, the trainer's own jitted step (runs on device 0)."""
    for batch in batches:
        state, _ = trainer.step(state, classifier_params, correlation, attributes, batch)
    return jax.tree_util.tree_map(np.asarray, state)


def train_sharded(mesh, trainer, classifier_params, correlation, attributes, batches, state0):
    from jaxedit.training import sharding as S

    step = S.sharded_transformer_step(trainer, mesh)
    state = S.shard_transformer_state(state0, mesh)
    args = (
        S.replicate(classifier_params, mesh),
        S.replicate(correlation, mesh),
        S.shard_per_attribute(attributes, mesh),
    )
    for batch in batches:
        global_batch = S.host_local_batch_to_global(batch[S.process_batch_rows(mesh, len(batch))], mesh, len(batch))
        state, metrics = step(state, *args, global_batch)
    return state, step, args, global_batch


def max_abs_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def p999_abs_diff(a, b) -> float:
    """The 99.9th percentile of |a - b| over all elements of all leaves."""
    diffs = np.concatenate(
        [
            np.abs(np.asarray(x) - np.asarray(y)).ravel()
            for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
        ]
    )
    return float(np.quantile(diffs, 0.999))


def max_rel_diff(a, b) -> float:
    """Largest |a - b| of each leaf relative to that leaf's largest |b| (Adam moments are O(1..10))."""
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / max(float(np.max(np.abs(np.asarray(y)))), 1e-30))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def collectives(compiled_text: str) -> dict:
    return {
        op: compiled_text.count(f" {op}(") for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute")
    }


def mode_meshes(out: Path, directory: Path) -> None:
    """One device vs 8x1 / 4x2 / 6x1 meshes (and the scan program), then the checkpoint round trip."""
    from jaxedit.training import sharding as S

    result = {"devices": jax.device_count()}
    for name, preset in (("official", small_official_preset()), ("paper", small_paper_preset())):
        problem_ = problem(preset)
        trainer, classifier_params, correlation, attributes, batches, state0 = problem_
        reference = train_single(*problem_)
        meshes = [(8, 1), (4, 2), (6, 1)] if name == "official" else [(8, 1)]
        for num_attr, num_data in meshes:
            devices = jax.devices()[: num_attr * num_data]
            mesh = S.make_mesh(num_attr, num_data, devices=devices)
            state, step, args, batch = train_sharded(mesh, *problem_)
            gathered = S.gather_transformer_state(state, NUM_ATTRIBUTES)
            diffs = np.concatenate(
                [
                    np.abs(x - y).ravel()
                    for x, y in zip(
                        jax.tree_util.tree_leaves(gathered.params), jax.tree_util.tree_leaves(reference.params)
                    )
                ]
            )
            hlo = step.lower(state, *args, batch).compile().as_text()
            result[f"{name} {num_attr}x{num_data}"] = {
                "params_max_abs_diff": float(diffs.max()),
                "params_p999_abs_diff": float(np.quantile(diffs, 0.999)),
                "opt_state_max_rel_diff": max_rel_diff(gathered.opt_state, reference.opt_state),
                "padded_attributes": int(jax.tree_util.tree_leaves(state)[0].shape[0]),
                "per_device_rows": int(jax.tree_util.tree_leaves(state.params)[0].addressable_shards[0].data.shape[0]),
                "collectives": collectives(hlo),
            }
            if (name, num_attr, num_data) == ("official", 4, 2):
                kept_4x2 = (mesh, state, problem_)
        result[f"{name} lr"] = preset.lr
    # The multi-step program (lax.scan gathering batches from device-resident latents), 8x1 mesh.
    mesh_4x2, state_4x2, official = kept_4x2
    trainer, classifier_params, correlation, attributes, batches, state0 = official
    preset = trainer.preset
    latents = batches.reshape((-1,) + preset.latent_shape)
    indices = np.arange(len(latents), dtype=np.int32).reshape(STEPS, BATCH)[:, ::-1].copy()
    ref_state, ref_metrics = trainer.scan_indexed(state0, classifier_params, correlation, attributes, latents, indices)
    mesh = S.make_mesh(8, 1)
    scan = S.sharded_transformer_scan_indexed(trainer, mesh)
    state, metrics = scan(
        S.shard_transformer_state(state0, mesh),
        S.replicate(classifier_params, mesh),
        S.replicate(correlation, mesh),
        S.shard_per_attribute(attributes, mesh),
        S.replicate(latents, mesh),
        S.replicate(indices, mesh),
    )
    gathered = S.gather_transformer_state(state, NUM_ATTRIBUTES)
    result["official scan_indexed 8x1"] = {
        "params_max_abs_diff": max_abs_diff(gathered.params, ref_state.params),
        "opt_state_max_rel_diff": max_rel_diff(gathered.opt_state, ref_state.opt_state),
        "metrics_max_abs_diff": max_abs_diff(
            {k: np.asarray(v)[:, :NUM_ATTRIBUTES] for k, v in metrics.items()}, ref_metrics
        ),
    }
    result["checkpoint"] = checkpoint_round_trip(directory, *kept_4x2)
    result["train_transformers"] = train_transformers_on_meshes(directory.parent / "runs", official)
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


def train_transformers_on_meshes(root: Path, problem_) -> dict:
    """`jaxedit.training.transformers.train_transformers` (the real loop, checkpoints, editors): one device
    uninterrupted; on an 8x1 mesh stopped half way (max_steps) and resumed on a 6x1 mesh (40
    attributes padded to 42, the checkpoint re-padded from 40 rows); one device -> 8x1; 8x1 -> one
    device. Then `jaxedit.training.classifier` on one device and data-parallel over 8 devices."""
    import dataclasses

    from jaxedit.training import sharding as S
    from jaxedit.training.configs import get_config
    from jaxedit.training.data import TrainingData
    from jaxedit.training.steps import TransformerTrainer
    from jaxedit.training.transformers import train_transformers

    trainer, classifier_params, correlation, attributes, batches, state0 = problem_
    preset = trainer.preset.replace(batch_size=16, epochs=1)
    rng = np.random.default_rng(11)
    latents = rng.normal(size=(80,) + preset.latent_shape).astype(np.float32)
    labels = (rng.random((80, preset.num_attributes)) < 0.4).astype(np.float32)
    data = TrainingData(latents, labels, num_train=64, source="worker")  # 4 steps of 16
    config = dataclasses.replace(
        get_config("synthetic"), method=preset, steps_per_call=2, checkpoint_every=2, progress=False
    )
    quiet = lambda message: None
    shared = TransformerTrainer.create(preset)  # one set of jitted functions for the seven runs
    single = train_transformers(config, data, classifier_params, "all", root / "single", log=quiet, trainer=shared)
    half = train_transformers(
        dataclasses.replace(config, max_steps=2),
        data,
        classifier_params,
        "all",
        root / "sharded",
        log=quiet,
        trainer=shared,
        mesh=S.make_mesh(8, 1),
    )
    resumed = train_transformers(
        config,
        data,
        classifier_params,
        "all",
        root / "sharded",
        resume=True,
        log=quiet,
        trainer=shared,
        mesh=S.make_mesh(6, 1, devices=jax.devices()[:6]),
    )
    # A one-device checkpoint resumed on a mesh, and a sharded one resumed on one device.
    train_transformers(
        dataclasses.replace(config, max_steps=2),
        data,
        classifier_params,
        "all",
        root / "to_mesh",
        log=quiet,
        trainer=shared,
    )
    to_mesh = train_transformers(
        config,
        data,
        classifier_params,
        "all",
        root / "to_mesh",
        resume=True,
        log=quiet,
        trainer=shared,
        mesh=S.make_mesh(8, 1),
    )
    train_transformers(
        dataclasses.replace(config, max_steps=2),
        data,
        classifier_params,
        "all",
        root / "to_one",
        log=quiet,
        trainer=shared,
        mesh=S.make_mesh(8, 1),
    )
    to_one = train_transformers(
        config, data, classifier_params, "all", root / "to_one", resume=True, log=quiet, trainer=shared
    )
    from jaxedit.latent import load_editors
    from jaxedit.training.classifier import train_classifier

    editors = load_editors(root / "sharded" / "editors")
    classifier_config = dataclasses.replace(
        config, method=preset.replace(classifier_batch_size=16, classifier_epochs=1)
    )
    classifier_single = train_classifier(classifier_config, data, root / "classifier_single", log=quiet)
    classifier_sharded = train_classifier(
        classifier_config, data, root / "classifier_sharded", log=quiet, mesh=S.make_mesh(4, 2)
    )
    return {
        "classifier_steps": [classifier_single.steps, classifier_sharded.steps],
        "classifier_params_max_abs_diff": max_abs_diff(classifier_sharded.params, classifier_single.params),
        "classifier_params_p999_abs_diff": p999_abs_diff(classifier_sharded.params, classifier_single.params),
        "classifier_heldout_loss_diff": abs(classifier_sharded.heldout_loss - classifier_single.heldout_loss),
        "classifier_lr": preset.classifier_lr,
        "steps": [single.steps, half.steps, resumed.steps],
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


def checkpoint_round_trip(directory: Path, mesh, state, problem_) -> dict:
    """Save the state trained on `mesh` (4x2), restore on 8x1, on 1 device and on 3x2 (padded)."""
    from jaxedit.training import sharding as S

    trainer, classifier_params, correlation, attributes, batches, state0 = problem_
    preset = trainer.preset
    saved = S.gather_transformer_state(state, NUM_ATTRIBUTES)
    S.save_sharded_checkpoint(directory, STEPS, state, num_attributes=NUM_ATTRIBUTES, mesh=mesh)
    template = jax.eval_shape(lambda: state0)
    result = {"saved_on": S.mesh_shape(mesh), "steps": S.checkpoint_steps(directory)}
    targets = {
        "8x1": S.make_mesh(8, 1),
        "1 device": S.single_device_mesh(),
        "3x2 (padded to 42)": S.make_mesh(3, 2, devices=jax.devices()[:6]),
    }
    for name, target in targets.items():
        step, restored, num = S.restore_sharded_checkpoint(directory, template, target)
        leaf = jax.tree_util.tree_leaves(restored.params)[0]
        result[name] = {
            "step": step,
            "num_attributes": num,
            "rows": int(leaf.shape[0]),
            "spec": str(leaf.sharding.spec),
            "devices": len(leaf.sharding.device_set),
            "equal": all(
                np.array_equal(x, y)
                for x, y in zip(
                    jax.tree_util.tree_leaves(S.gather_transformer_state(restored, num)),
                    jax.tree_util.tree_leaves(saved),
                )
            ),
            "max_abs_diff": max_abs_diff(S.gather_transformer_state(restored, num), saved),
        }
        # The restored state keeps training on the new mesh, in step with the one-device run.
        if name == "8x1":
            step_fn = S.sharded_transformer_step(trainer, target)
            more = np.random.default_rng(7).normal(size=(BATCH,) + preset.latent_shape).astype(np.float32)
            trained, _ = step_fn(
                restored,
                S.replicate(classifier_params, target),
                S.replicate(correlation, target),
                S.shard_per_attribute(attributes, target),
                S.shard_batch(more, target),
            )
            expected, _ = trainer.step(
                jax.tree_util.tree_map(np.asarray, saved), classifier_params, correlation, attributes, more
            )
            result[name]["continued_step_max_abs_diff"] = max_abs_diff(
                S.gather_transformer_state(trained, NUM_ATTRIBUTES), expected
            )
    return result


def mode_distributed(out: Path, directory: Path, port: int, num_processes: int, process_id: int) -> None:
    from jaxedit.training import sharding as S

    address = f"127.0.0.1:{port}"
    S.initialize_distributed(
        address, num_processes, process_id, coordinator_bind_address=address, initialization_timeout=60
    )
    from jaxedit.training.steps import ClassifierTrainer

    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
    }
    preset = small_official_preset()
    trainer, classifier_params, correlation, attributes, batches, state0 = problem(preset)
    local_device = jax.local_devices()[0]

    # Transformers: 40 attributes over every device of both processes (attr across hosts).
    mesh = S.make_mesh(None, 1)
    result["transformer_mesh"] = S.describe_mesh(mesh)
    result["transformer_rows_fed"] = [S.process_batch_rows(mesh, BATCH).start, S.process_batch_rows(mesh, BATCH).stop]
    state, *_ = train_sharded(mesh, trainer, classifier_params, correlation, attributes, batches, state0)
    gathered = S.gather_transformer_state(state, NUM_ATTRIBUTES)
    with jax.default_device(local_device):
        reference = train_single(trainer, classifier_params, correlation, attributes, batches, state0)
    result["transformer_params_max_abs_diff_vs_single"] = max_abs_diff(gathered.params, reference.params)
    result["transformer_opt_state_max_rel_diff_vs_single"] = max_rel_diff(gathered.opt_state, reference.opt_state)

    # Classifier: data-parallel over all devices; each process feeds only its half of every batch.
    data_mesh = S.make_mesh(1, None)
    classifier_trainer = ClassifierTrainer.create(preset, 10)
    rng = np.random.default_rng(3)
    latents = rng.normal(size=(STEPS, BATCH) + preset.latent_shape).astype(np.float32)
    labels = (rng.random((STEPS, BATCH, preset.num_attributes)) < 0.4).astype(np.float32)
    rows = S.process_batch_rows(data_mesh, BATCH)
    result["classifier_mesh"] = S.describe_mesh(data_mesh)
    result["classifier_rows_fed"] = [rows.start, rows.stop]
    classifier_state0 = classifier_trainer.init(jax.random.key(5))
    classifier_step = S.sharded_classifier_step(classifier_trainer, data_mesh)
    classifier_state = S.replicate(classifier_state0, data_mesh)
    for x, y in zip(latents, labels):
        local_x, local_y = x[rows], y[rows]  # this host's shard only
        classifier_state, metrics = classifier_step(
            classifier_state,
            S.host_local_batch_to_global(local_x, data_mesh, BATCH),
            S.host_local_batch_to_global(local_y, data_mesh, BATCH),
        )
    with jax.default_device(local_device):
        expected = classifier_state0
        for x, y in zip(latents, labels):
            expected, expected_metrics = classifier_trainer.step(expected, x, y)
    result["classifier_max_abs_diff_vs_single"] = max_abs_diff(
        S.gather_to_host(classifier_state).params, expected.params
    )
    result["classifier_p999_abs_diff_vs_single"] = p999_abs_diff(
        S.gather_to_host(classifier_state).params, expected.params
    )
    result["classifier_loss_diff"] = abs(float(S.gather_to_host(metrics["loss"])) - float(expected_metrics["loss"]))
    result["classifier_lr"] = preset.classifier_lr

    # Checkpoint written by both processes into one shared directory, restored onto a 4x2 mesh.
    S.save_sharded_checkpoint(directory, STEPS, state, num_attributes=NUM_ATTRIBUTES, mesh=mesh)
    other_mesh = S.make_mesh(4, 2)
    step, restored, num = S.restore_sharded_checkpoint(directory, jax.eval_shape(lambda: state0), other_mesh)
    result["restored_step"] = step
    result["restored_mesh"] = S.describe_mesh(other_mesh)
    result["restored_equal"] = all(
        np.array_equal(x, y)
        for x, y in zip(
            jax.tree_util.tree_leaves(S.gather_transformer_state(restored, num)), jax.tree_util.tree_leaves(gathered)
        )
    )
    if process_id == 0:
        np.savez(directory.parent / "expected.npz", *[np.asarray(x) for x in jax.tree_util.tree_leaves(gathered)])
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
