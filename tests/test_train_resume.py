"""Training stopped and continued ends exactly where an uninterrupted run ends.

In process, on the real training path: a stop request after a few chunks (what SIGTERM does), a
bit flipped in the newest checkpoint (resume falls back to the previous intact step), a NaN put
into one attribute's params by the jitted step itself. The real-signal subprocess checks are in
test_train_signals.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxedit.errors import ConfigError, TrainingError
from jaxedit.latent.editors import load_editors, save_editors
from jaxedit.latent.modules import init_classifier_params
from jaxedit.training.checkpoint import PreemptionGuard, TrainCheckpointer
from jaxedit.training.classifier import classifier_schedule, train_classifier
from jaxedit.training.loop import BatchOrder, TrainingInterrupted
from jaxedit.training.steps import ClassifierTrainer, TransformerTrainer
from jaxedit.training.transformers import train_transformers, transformer_schedule
from tests.helpers.train_tiny import tiny_config, tiny_data

ATTRS = ["Smiling", "Eyeglasses", "Young"]
QUIET = lambda message: None


@pytest.fixture(scope="module")
def setup():
    config = tiny_config()
    data = tiny_data()
    transformer_trainer = TransformerTrainer.create(config.method)
    classifier_trainer = ClassifierTrainer.create(
        config.method, classifier_schedule(config, data.num_train).steps_per_epoch
    )
    classifier_params = init_classifier_params(transformer_trainer.classifier, jax.random.key(5))
    return config, data, transformer_trainer, classifier_trainer, classifier_params


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    """The uninterrupted transformer run (2 epochs x 22 steps, chunks of 4, checkpoints every 8)."""
    config, data, trainer, _, classifier_params = setup
    workdir = tmp_path_factory.mktemp("reference")
    run = train_transformers(config, data, classifier_params, ATTRS, workdir, trainer=trainer, log=QUIET)
    return run, workdir


class StopAfterChunks(PreemptionGuard):
    """A guard that asks the loop to stop (as a SIGTERM would) when it polls after `chunks` chunks."""

    def __init__(self, chunks: int, name: str = "SIGTERM"):
        super().__init__()
        self.polls, self.chunks, self.name = 0, chunks, name

    @property
    def requested(self) -> bool:
        self.polls += 1
        if self.polls == self.chunks:
            self.request(self.name)
        return super().requested


def flip_a_bit(step_dir):
    """Flip one bit in the middle of the largest file of a saved step (the arrays' data)."""
    largest = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x04
    largest.write_bytes(bytes(data))


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _metric_lines(workdir, stage):
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["stage"] == stage]


def test_transformers_stopped_and_resumed_match_uninterrupted_bitwise(setup, reference, tmp_path):
    config, data, trainer, _, classifier_params = setup
    run, reference_dir = reference
    assert run.steps == 2 * (360 // 16)  # 2 epochs x 22 drop-last batches

    with pytest.raises(TrainingInterrupted) as stopped:
        train_transformers(
            config, data, classifier_params, ATTRS, tmp_path, trainer=trainer, guard=StopAfterChunks(3), log=QUIET
        )
    assert stopped.value.step == 12 and stopped.value.exit_status == 75
    with TrainCheckpointer(tmp_path / "checkpoints" / "transformers") as checkpointer:
        assert checkpointer.complete_steps() == [8, 12]
    assert not (tmp_path / "editors").exists()

    resumed = train_transformers(
        config, data, classifier_params, ATTRS, tmp_path, resume=True, trainer=trainer, log=QUIET
    )
    assert resumed.steps == run.steps
    for got, want in zip(_leaves(resumed.params), _leaves(run.params)):
        np.testing.assert_array_equal(got, want)
    # The editors on disk are the same, and the metric log shows every chunk once, with the same values.
    for got, want in zip(
        _leaves(load_editors(tmp_path / "editors").transformer_params),
        _leaves(load_editors(reference_dir / "editors").transformer_params),
    ):
        np.testing.assert_array_equal(got, want)
    assert _metric_lines(tmp_path, "transformers") == _metric_lines(reference_dir, "transformers")
    assert (tmp_path / "transformer_losses.png").stat().st_size > 1000


def test_a_flipped_bit_falls_back_to_the_previous_intact_step_and_still_matches(setup, reference, tmp_path):
    """A bit flipped in the newest step's arrays: --resume says it skips that step and why, sets
    it aside, resumes from the previous one and ends bit-identical; a staging directory left by a
    killed save is removed and reported; the next run lists the damaged step."""
    config, data, trainer, _, classifier_params = setup
    run, _ = reference
    with pytest.raises(TrainingInterrupted):
        train_transformers(
            config, data, classifier_params, ATTRS, tmp_path, trainer=trainer, guard=StopAfterChunks(5), log=QUIET
        )
    directory = tmp_path / "checkpoints" / "transformers"
    assert sorted(p.name for p in directory.iterdir()) == ["16", "20"]
    flip_a_bit(directory / "20")
    shutil.copytree(directory / "16", directory / "24.orbax-checkpoint-tmp-1700000000")  # a save killed midway

    messages = []
    resumed = train_transformers(
        config, data, classifier_params, ATTRS, tmp_path, resume=True, trainer=trainer, log=messages.append
    )
    skipped = [m for m in messages if "skipping checkpoint step 20" in m]
    assert len(skipped) == 1 and "set aside as damaged-20" in skipped[0], messages
    assert "checksum" in skipped[0] or "cannot read" in skipped[0], skipped
    assert any("removed 24.orbax-checkpoint-tmp-1700000000" in m for m in messages), messages
    assert any("resuming at step 16/44" in m for m in messages), messages
    for got, want in zip(_leaves(resumed.params), _leaves(run.params)):
        np.testing.assert_array_equal(got, want)
    names = sorted(p.name for p in directory.iterdir())
    assert "damaged-20" in names and not any("tmp" in name for name in names), names
    with TrainCheckpointer(directory) as checkpointer:
        assert any(note.startswith("damaged-20: set aside") for note in checkpointer.notes), checkpointer.notes


def test_the_checksum_catches_changed_values_that_orbax_reads_without_complaint(tmp_path):
    """Flipping a bit inside an uncompressed array's bytes gives different numbers, not an error;
    only the checksum tells. Both steps flipped: nothing intact, so the run starts afresh."""
    state = {"w": np.arange(4096, dtype=np.float32).reshape(4, 1024), "count": np.int64(7)}
    with TrainCheckpointer(tmp_path) as checkpointer:
        checkpointer.save(1, state, {"epoch": 0})
        checkpointer.save(2, state, {"epoch": 0})
    for step in ("1", "2"):
        flip_a_bit(tmp_path / step)
    messages = []
    with TrainCheckpointer(tmp_path) as checkpointer:
        assert checkpointer.restore_latest(state, warn=messages.append) is None
        assert checkpointer.complete_steps() == []
    assert [m.split(":")[0] for m in messages] == [
        "skipping checkpoint step 2 (set aside as damaged-2)",
        "skipping checkpoint step 1 (set aside as damaged-1)",
    ]
    assert all(m.endswith("the arrays do not match the checksum saved with them") for m in messages), messages


def test_classifier_stopped_across_the_lr_decay_resumes_exactly(setup, tmp_path):
    config, data, _, trainer, _ = setup
    reference = train_classifier(config, data, tmp_path / "a", trainer=trainer, log=QUIET)
    assert reference.steps == 2 * 9 and reference.heldout_accuracy is not None

    guard = StopAfterChunks(4, "SIGINT")  # chunks [0,4) [4,8) [8,9) [9,13): past the epoch-1 lr decay at step 9
    with pytest.raises(TrainingInterrupted) as stopped:
        train_classifier(config, data, tmp_path / "b", trainer=trainer, guard=guard, log=QUIET)
    assert stopped.value.step == 13
    resumed = train_classifier(config, data, tmp_path / "b", resume=True, trainer=trainer, log=QUIET)
    for got, want in zip(_leaves(resumed.params), _leaves(reference.params)):
        np.testing.assert_array_equal(got, want)
    assert load_editors(tmp_path / "b" / "classifier").attributes == ()


def test_resume_refuses_a_different_setup_and_fresh_runs_refuse_old_checkpoints(setup, reference, tmp_path):
    config, data, trainer, classifier_trainer, classifier_params = setup
    _, reference_dir = reference
    workdir = tmp_path / "w"
    shutil.copytree(reference_dir / "checkpoints", workdir / "checkpoints")
    with pytest.raises(ConfigError, match=r"already holds checkpoints.*resume=True"):
        train_transformers(config, data, classifier_params, ATTRS, workdir, trainer=trainer, log=QUIET)
    other_lr = dataclasses.replace(config, method=config.method.replace(lr=config.method.lr * 2))
    with pytest.raises(ConfigError, match="lr="):
        train_transformers(
            other_lr,
            data,
            classifier_params,
            ATTRS,
            workdir,
            resume=True,
            trainer=TransformerTrainer.create(other_lr.method),
            log=QUIET,
        )
    with pytest.raises(ConfigError, match="different training setup"):
        train_transformers(
            config, data, classifier_params, ["Smiling"], workdir, resume=True, trainer=trainer, log=QUIET
        )
    other_data = tiny_data(seed=1)  # as many rows, other values: the steps would read different batches
    assert other_data.latents.shape == data.latents.shape
    with pytest.raises(ConfigError, match="data_sha256="):
        train_transformers(
            config, other_data, classifier_params, ATTRS, workdir, resume=True, trainer=trainer, log=QUIET
        )
    short = dataclasses.replace(config, max_steps=2)  # max_steps may change on resume; the data may not
    train_classifier(short, data, tmp_path / "c", trainer=classifier_trainer, log=QUIET)
    with pytest.raises(ConfigError, match="data_sha256="):
        train_classifier(config, other_data, tmp_path / "c", resume=True, trainer=classifier_trainer, log=QUIET)


def test_an_attribute_trained_alone_matches_its_slot_in_a_group(setup, reference, tmp_path):
    config, data, trainer, _, classifier_params = setup
    run, _ = reference
    alone = train_transformers(
        dataclasses.replace(config, max_steps=44),
        data,
        classifier_params,
        ["Eyeglasses"],
        tmp_path,
        trainer=trainer,
        log=QUIET,
    )
    for got, want in zip(_leaves(alone.params), _leaves(run.params)):
        np.testing.assert_allclose(got[0], want[1], rtol=1e-5, atol=1e-6)


def test_a_nan_stops_training_naming_attribute_and_step_and_keeps_the_last_good_checkpoint(setup, tmp_path):
    """The real loop with a step that turns Eyeglasses' (slot 1) params into NaN when it reads the
    batch of step 17 (the chunk of steps 17..20): training stops naming both, keeps step 16."""
    config, data, trainer, _, classifier_params = setup
    schedule_rows = BatchOrder(transformer_schedule(config, data.num_train), config.seed).indices(16, 1)[0]

    def poisoned_scan(state, classifier_params, correlation, attributes, latents, indices):
        poison = jnp.all(indices[0] == jnp.asarray(schedule_rows))
        params = jax.tree.map(lambda leaf: leaf.at[1].set(jnp.where(poison, jnp.nan, leaf[1])), state.params)
        return trainer.scan(state._replace(params=params), classifier_params, correlation, attributes, latents, indices)

    poisoned = dataclasses.replace(trainer, scan=poisoned_scan)
    with pytest.raises(TrainingError, match=r"non-finite \w+ for attribute Eyeglasses at step 17"):
        train_transformers(config, data, classifier_params, ATTRS, tmp_path, trainer=poisoned, log=QUIET)
    with TrainCheckpointer(tmp_path / "checkpoints" / "transformers", num_attributes=3) as checkpointer:
        assert checkpointer.complete_steps() == [8, 16]
        step, state, _ = checkpointer.restore_latest(jax.tree.map(np.asarray, trainer.init(jax.random.key(0), 3)))
    assert step == 16 and all(np.isfinite(leaf).all() for leaf in _leaves(state))
    assert not (tmp_path / "editors").exists()


def test_an_absurd_learning_rate_fails_with_a_one_line_error(setup, tmp_path, capsys):
    from jaxedit.cli.train_stages import transformers_main as main
    from tests.helpers.train_tiny import TINY_CLI, write_tiny_npz

    _, _, trainer, _, classifier_params = setup
    config = tiny_config()
    save_editors(tmp_path / "classifier", config.method, classifier_params, None, [])
    data_file = write_tiny_npz(tmp_path / "data.npz")
    status = main(
        [
            "--config",
            "official",
            *TINY_CLI,
            "--latents",
            str(data_file),
            "--lr",
            "1e38",
            "--attributes",
            "Smiling,Young",
            "--workdir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if "error:" in line]
    assert status == 1 and "Traceback" not in err, err
    assert len(error) == 1 and "non-finite" in error[0] and "attribute Smiling" in error[0] and "step" in error[0]


def test_official_class_loss_is_finite_under_jit_for_one_sided_batches():
    """Regression: XLA folded `B - positives + 1e-8` to `B - positives`, so a batch whose flipped
    targets were all 1 (common for rare attributes) gave inf * 0 = NaN inside the jitted step."""
    from jaxedit.latent.losses import bce_with_logits, official_class_loss

    logits = jnp.linspace(-2.0, 2.0, 16)
    for target in (jnp.ones(16), jnp.zeros(16)):
        value = jax.jit(official_class_loss)(logits, target)
        np.testing.assert_allclose(value, np.mean(np.asarray(bce_with_logits(logits, target))), rtol=1e-6)
        assert np.isfinite(np.asarray(jax.jit(jax.grad(official_class_loss))(logits, target))).all()


def test_cli_resume_past_a_flipped_bit_says_so_and_matches_the_uninterrupted_run(setup, reference, tmp_path, capsys):
    """`python -m train.transformers ... --resume` after a bit flip in the newest checkpoint: exit 0,
    a line naming the skipped step and why, no traceback, editors equal to an uninterrupted run."""
    from jaxedit.cli.train_stages import transformers_main as main
    from tests.helpers.train_tiny import TINY_CLI, write_tiny_npz

    _, _, _, _, classifier_params = setup
    run, _ = reference
    save_editors(tmp_path / "classifier", tiny_config().method, classifier_params, None, [])
    command = [
        "--config",
        "official",
        *TINY_CLI,
        "--latents",
        str(write_tiny_npz(tmp_path / "data.npz")),
        "--attributes",
        ",".join(ATTRS),
        "--classifier",
        str(tmp_path / "classifier"),
        "--workdir",
        str(tmp_path / "run"),
    ]
    assert main([*command, "--max_steps", "20"]) == 0  # checkpoints at 16 and 20 (two kept)
    flip_a_bit(tmp_path / "run" / "checkpoints" / "transformers" / "20")
    capsys.readouterr()
    assert main([*command, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    skipped = [line for line in err.splitlines() if "skipping checkpoint step 20" in line]
    assert len(skipped) == 1 and ("checksum" in skipped[0] or "cannot read" in skipped[0]), err
    assert "resuming at step 16/44" in err, err
    for got, want in zip(_leaves(load_editors(tmp_path / "run" / "editors").transformer_params), _leaves(run.params)):
        np.testing.assert_array_equal(got, want)
