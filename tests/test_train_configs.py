"""Configs, overrides, CLI error messages, data order, metric log, plots and checkpointer details."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
from PIL import Image

from jaxedit.config import from_dict, override
from jaxedit.data.latents import epoch_indices
from jaxedit.errors import ConfigError, InputError
from jaxedit.training.checkpoint import PreemptionGuard, TrainCheckpointer
from jaxedit.training.configs import CONFIGS, TrainConfig, get_config
from jaxedit.training.loop import BatchOrder, MetricsLog, Schedule
from jaxedit.viz.plots import PALETTE, line_plot, small_multiples
from tests.helpers.train_tiny import TINY_CLI, write_tiny_npz


def test_named_configs_carry_the_reference_presets():
    official, paper, synthetic = get_config("official"), get_config("paper"), get_config("synthetic")
    assert official.method.latent_shape == (18, 512) and official.method.classifier_widths == (9216, 2048, 512, 40)
    assert (official.method.batch_size, official.method.lr, official.method.weight_decay, official.method.epochs) == (
        32,
        1e-3,
        5e-4,
        10,
    )
    assert (
        official.method.classifier_batch_size,
        official.method.classifier_epochs,
        official.method.classifier_lr,
    ) == (256, 20, 1e-4)
    assert paper.method.latent_shape == (512,) and (paper.method.batch_size, paper.method.lr) == (16, 1e-4)
    assert synthetic.data == "synthetic" and synthetic.synthetic_samples > 0
    for config in CONFIGS.values():
        assert from_dict(TrainConfig, json.loads(json.dumps(config.to_dict()))) == config


def _stage_config(argv: list[str]) -> TrainConfig:
    from jaxedit.cli.train_stages import stage_config, stage_parser

    parser, flags = stage_parser("classifier", "train.classifier")
    return stage_config(parser.parse_args(["--workdir", "unused", *argv]), flags)


def test_flags_are_typed_by_the_fields_and_reach_run_and_method_fields():
    config = _stage_config(
        [
            *("--lr", "3e-4", "--epochs", "2", "--classifier_hidden", "64,32", "--edit_layers", "none"),
            *("--progress", "false", "--batch_size", "8", "--steps_per_call", "7", "--seed", "5"),
        ]
    )
    assert config.method.lr == 3e-4 and config.method.epochs == 2 and config.method.classifier_hidden == (64, 32)
    assert config.method.edit_layers is None and config.method.batch_size == 8
    assert config.progress is False and config.steps_per_call == 7 and config.seed == 5
    assert isinstance(config.method.lr, float) and isinstance(config.seed, int)
    swapped = _stage_config(["--lr", "0.5", "--preset", "paper"])
    assert swapped.method.space == "w" and swapped.method.lr == 0.5  # preset first, then the method fields
    assert swapped.method.batch_size == 16  # the paper's, not the official's


def test_override_is_validated_and_reaches_nested_fields():
    config = override(get_config("official"), {"seed": 3, "method.lr": 1e-3, "method.classifier_hidden": [8, 4]})
    assert config.seed == 3 and config.method.lr == 1e-3 and config.method.classifier_hidden == (8, 4)
    for changes, message in [
        ({"method.lrr": 1.0}, "has no field 'lrr'; did you mean lr?"),
        ({"seed": "3"}, "seed must be an integer, got '3'"),
        ({"method.lr": float("nan")}, "lr must be a finite number"),
        ({"method.edit_layers": (1, 2, 3)}, "edit_layers must be a tuple of 2 integers or None"),
        ({"progress": 1}, "progress must be true or false"),
    ]:
        with pytest.raises(ConfigError) as error:
            override(get_config("official"), changes)
        assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lrr", "1"], "unrecognized arguments: --lrr 1; did you mean --lr?"),
        (["--epochs", "two"], "argument --epochs: expected an integer, got 'two'"),
        (["--lr", "nan"], "argument --lr: expected a finite number"),
        (["--edit_layers", "1,2,3"], "argument --edit_layers: expected 2 comma-separated values"),
        (["--progress", "maybe"], "argument --progress: expected true or false"),
        (["--preset", "mine"], "argument --preset: unknown method preset 'mine'"),
        (["--config", "nope"], "argument --config: invalid choice: 'nope'"),
        (["--epochs"], "argument --epochs: expected one argument"),
        (["--data", "web"], "--data web: config 'official': data must be one of files, synthetic"),
        (["--steps_per_call", "0"], "--steps_per_call 0: config 'official': steps_per_call must be >= 1"),
        (["--batch_size", "0"], "--batch_size 0: preset 'official': batch_size must be a positive integer"),
        (["--preset", "paper", "--lr", "0"], "--lr 0.0: preset 'paper': lr must be > 0"),
    ],
)
def test_bad_flags_fail_with_one_line_naming_the_flag(argv, message, tmp_path, capsys):
    from jaxedit.cli.train_stages import classifier_main

    try:
        status = classifier_main(["--workdir", str(tmp_path / "w"), *argv])
    except SystemExit as exit_:  # argparse usage errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "w").exists()


def _run(main, argv, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err.strip()
    return status, err


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    from jaxedit.cli.train_stages import classifier_main, transformers_main

    data = write_tiny_npz(tmp_path / "data.npz")
    cases = [
        (classifier_main, ["--workdir", str(tmp_path / "a"), "--bogus", "1"], "unrecognized arguments: --bogus"),
        (
            classifier_main,
            ["--workdir", str(tmp_path / "a"), "--latents", str(tmp_path / "missing.npy")],
            "no such file",
        ),
        (classifier_main, ["--workdir", str(tmp_path / "a"), "--latents", str(tmp_path)], "is a directory"),
        (classifier_main, ["--workdir", str(tmp_path / "a"), "--latents", str(data)], "latents of shape [400, 2, 16]"),
        (
            transformers_main,
            ["--workdir", str(tmp_path / "b"), *TINY_CLI, "--latents", str(data), "--attributes", "Smilling"],
            "did you mean Smiling",
        ),
        (
            transformers_main,
            ["--workdir", str(tmp_path / "b"), *TINY_CLI, "--latents", str(data)],
            "no classifier here; train one with",
        ),
        (
            transformers_main,
            ["--workdir", str(tmp_path / "b"), *TINY_CLI, "--latents", str(data), "--classifier", str(data)],
            "not a directory",
        ),
    ]
    for main, argv, expected in cases:
        status, err = _run(main, argv, capsys)
        assert status == 2, (argv, err)
        assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, (argv, err)
    with pytest.raises(InputError, match="no such file"):  # --debug: the exception itself, with its traceback
        classifier_main(["--workdir", str(tmp_path / "a"), "--latents", str(tmp_path / "missing.npy"), "--debug"])


def test_data_order_is_a_function_of_seed_and_epoch_and_chunks_restart_each_epoch():
    schedule = Schedule(num_train=50, batch_size=8, epochs=3, max_steps=0)
    assert (schedule.steps_per_epoch, schedule.total_steps) == (6, 18)
    order = BatchOrder(schedule, seed=3)
    rows = order.indices(0, 18)
    for epoch in range(3):
        seen = rows[epoch * 6 : (epoch + 1) * 6].reshape(-1)
        assert len(set(seen.tolist())) == 48 and seen.max() < 50  # drop-last, no repeats within an epoch
        np.testing.assert_array_equal(seen, np.asarray(epoch_indices(3, epoch, 50, 8)).reshape(-1))
    assert not np.array_equal(rows[:6], rows[6:12])
    np.testing.assert_array_equal(BatchOrder(schedule, seed=3).indices(7, 5), rows[7:12])  # any start, same rows
    assert not np.array_equal(BatchOrder(schedule, seed=4).indices(0, 6), rows[:6])
    ends = []
    step = 0
    while step < schedule.total_steps:
        step = schedule.chunk_end(step, 4)
        ends.append(step)
    assert ends == [4, 6, 10, 12, 16, 18]
    assert Schedule(50, 8, 3, max_steps=5).total_steps == 5
    with pytest.raises(ConfigError, match="fewer than one batch"):
        Schedule(5, 8, 1)


def test_metrics_log_truncates_one_stage_and_tolerates_a_torn_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append([{"stage": "classifier", "step": s, "metrics": {"loss": 1.0}} for s in (4, 8)])
    log.append([{"stage": "transformers", "step": s, "attribute": "Smiling", "metrics": {}} for s in (4, 8, 12)])
    with open(log.path, "a") as handle:
        handle.write('{"stage": "transf')  # a kill mid-write
    assert len(log.read()) == 5
    log.truncate("transformers", 4)
    assert [(r["stage"], r["step"]) for r in log.read()] == [("classifier", 4), ("classifier", 8), ("transformers", 4)]


def test_plots_draw_every_series_in_its_colour(tmp_path):
    xs = np.arange(50)
    path = line_plot(
        {"class": (xs, np.exp(-xs / 10)), "recon": (xs, np.where(xs == 20, np.nan, xs / 50))},
        "Smiling",
        "step",
        "loss",
        tmp_path / "one.png",
    )
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (420, 640, 3)
    for colour in PALETTE[:2]:
        assert (np.abs(image.astype(int) - colour).sum(axis=-1) < 30).sum() > 100
    grid = small_multiples(
        {f"a{i}": {"loss": (xs, xs * i)} for i in range(5)}, tmp_path / "grid.png", panel_size=(200, 150)
    )
    assert Image.open(grid).size == (3 * 200, 2 * 150)
    with pytest.raises(InputError, match="xs has 50 points, ys has 3"):
        line_plot({"bad": (xs, [1, 2, 3])}, "t", "x", "y", tmp_path / "bad.png")


@pytest.mark.parametrize("title", ["", "identity against accuracy, over the edits that flipped the target " * 3])
def test_small_multiples_texts_never_overlap_and_stay_in_the_figure(tmp_path, monkeypatch, title):
    import jaxedit.viz.plots as plots

    drawn = []
    write_png = plots._write_png
    monkeypatch.setattr(plots, "_write_png", lambda figure, path: (drawn.append(figure), write_png(figure, path))[1])
    xs = np.arange(0, 30000, 500)
    scale = [10.0 ** (i % 5) if i % 3 else 1e-5 for i in range(12)]  # every third panel: "1e-5+1.0001" above it
    panels = {
        f"{name}_{i}": {
            "ours": (xs, np.exp(-xs / 1e4) * scale[i] + (0 if i % 3 else 1.0001)),
            "InterFaceGAN conditional": (xs, -(xs / 3e4) * scale[i] + (0 if i % 3 else 1.0001)),
        }
        for i, name in enumerate(["Wearing_Necktie", "Young", "Mouth_Slightly_Open"] * 4)
    }
    path = small_multiples(
        panels, tmp_path / "grid.png", xlabel="accuracy", ylabel="kept", title=title, panel_size=(240, 200)
    )
    figure = drawn[0]
    renderer = figure.canvas.get_renderer()
    boxes = [axes.get_tightbbox(renderer) for axes in figure.axes if axes.axison]
    legend = figure.legends[0].get_window_extent(renderer)
    width, height = Image.open(path).size
    assert len(boxes) == 12 and (width, height) == (4 * 240, 3 * 200)
    for index, box in enumerate(boxes + [legend]):
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (index, box)
        for other in boxes[index + 1 :]:
            assert not box.overlaps(other), (index, box, other)
    scaled = [axes for axes in figure.axes if axes.yaxis.get_offset_text().get_text()]
    assert len(scaled) == 4
    for axes in scaled:  # a panel's title clears its y axis's scale
        offset = axes.yaxis.get_offset_text().get_window_extent(renderer)
        assert not axes.title.get_window_extent(renderer).overlaps(offset)
    if title:
        title_box = figure._suptitle.get_window_extent(renderer)
        assert all(not title_box.overlaps(box) for box in boxes + [legend])


def test_checkpointer_refuses_another_layout_without_touching_the_checkpoint(tmp_path):
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "count": np.int64(4)}
    with TrainCheckpointer(tmp_path) as checkpointer:
        assert checkpointer.save(4, state, {"epoch": 0}) is True
        assert checkpointer.save(4, state, {"epoch": 0}) is False  # already complete
        with pytest.raises(ConfigError, match=r"saved \['w'\] \(2, 3\) float32, expected \['w'\] \(3, 3\)"):
            checkpointer.restore_latest({"w": np.zeros((3, 3), np.float32), "count": np.int64(0)})
        assert checkpointer.complete_steps() == [4]
        step, restored, record = checkpointer.restore_latest(state)
    assert step == 4 and record["epoch"] == 0
    np.testing.assert_array_equal(restored["w"], state["w"])


def test_guard_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard() as guard:
        assert signal.getsignal(signal.SIGTERM) != before
        assert not guard.requested
        signal.raise_signal(signal.SIGTERM)
        assert guard.requested and guard.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


def test_training_data_from_the_official_npy_pair_and_from_a_synthetic_hook(tmp_path):
    from jaxedit.training.data import load_training_data
    from tests.helpers.train_tiny import tiny_arrays, tiny_config, tiny_data

    latents, labels = tiny_arrays(200)
    np.save(tmp_path / "dlatents.npy", latents)
    np.save(tmp_path / "anno.npy", np.where(labels > 0, 1, -1).astype(np.int64))  # CelebA's -1/1 coding
    config = override(tiny_config(), {"latents": str(tmp_path / "dlatents.npy"), "labels": str(tmp_path / "anno.npy")})
    data = load_training_data(config)
    assert data.num_train == 180 and data.heldout_latents.shape == (20, 2, 16)
    np.testing.assert_array_equal(data.labels, labels)
    synthetic = override(tiny_config(), {"data": "synthetic", "synthetic_samples": 400})
    hooked = load_training_data(synthetic, synthetic=lambda c: tiny_data(c.synthetic_samples))
    assert hooked.latents.shape == (400, 2, 16) and hooked.num_train == 360
    with pytest.raises(InputError, match=r"expects \[N, 2, 16\]"):
        load_training_data(
            synthetic,
            synthetic=lambda c: tiny_data(400).__class__(
                np.zeros((400, 3, 16), np.float32), tiny_data(400).labels, 360, "wrong"
            ),
        )


class _RecordingCheckpointer:
    def __init__(self, directory):
        self.directory = directory
        self.saved: list[int] = []

    def save(self, step, state, record):
        assert record["step_in_record"] == step
        self.saved.append(step)
        return True


def _run_fake_loop(tmp_path, checkpoint_every, checkpoint_seconds, sleep, guard=None):
    import time as _time

    from jaxedit.training.loop import run_steps

    schedule = Schedule(num_train=40, batch_size=4, epochs=2)  # 10 steps per epoch, 20 in all

    def advance(state, indices):
        _time.sleep(sleep)
        return {"w": state["w"] + len(indices)}, {"loss": np.ones((len(indices), 1))}

    checkpointer = _RecordingCheckpointer(tmp_path)
    result = run_steps(
        {"w": np.zeros(2)},
        start_step=0,
        schedule=schedule,
        order=BatchOrder(schedule, 0),
        advance=advance,
        steps_per_call=3,
        checkpointer=checkpointer,
        checkpoint_every=checkpoint_every,
        checkpoint_seconds=checkpoint_seconds,
        record=lambda step: {"step_in_record": step},
        row_names=["classifier"],
        finite_rows=lambda state: np.isfinite(state["w"]).all()[None],
        metrics_log=None,
        stage="test",
        guard=guard,
    )
    return result, checkpointer.saved


def test_checkpoints_by_step_count_by_time_and_at_the_end(tmp_path):
    # chunks of 3 restart at each epoch: ends 3 6 9 10 13 16 19 20
    result, saved = _run_fake_loop(tmp_path, checkpoint_every=5, checkpoint_seconds=0, sleep=0)
    assert result.step == 20 and float(result.state["w"][0]) == 20
    assert saved == [6, 10, 16, 20]
    _, saved = _run_fake_loop(tmp_path, checkpoint_every=0, checkpoint_seconds=0, sleep=0)
    assert saved == [20]
    _, saved = _run_fake_loop(tmp_path, checkpoint_every=0, checkpoint_seconds=0.05, sleep=0.03)
    assert saved[-1] == 20 and 2 <= len(saved) <= 6  # about every other chunk, and the end
    guard = PreemptionGuard()
    guard.request("SIGTERM")
    from jaxedit.training.loop import TrainingInterrupted

    with pytest.raises(TrainingInterrupted) as stopped:
        _run_fake_loop(tmp_path, checkpoint_every=0, checkpoint_seconds=0, sleep=0, guard=guard)
    assert stopped.value.step == 3  # the chunk in flight finished, then the save and the stop
