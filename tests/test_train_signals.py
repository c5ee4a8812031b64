"""Real processes, real signals (issue 7): SIGTERM/SIGINT mid-training, SIGKILL mid-save.

- `python -m train.transformers` gets SIGTERM (or SIGINT) once its metric log shows progress:
  it must finish the chunk in flight, save, exit 75 and print the resume command; running that
  command must end with exactly the params of an uninterrupted run (computed in this process).
- A process saving checkpoints in a loop is SIGKILLed while a save is in flight (a staging
  directory on disk): the next opening removes and reports it, restoring gives the last complete step.
- A full disk (a file size limit) while saving, and a workdir whose name is not UTF-8: one line
  on stderr, no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxedit.latent.editors import load_editors, save_editors
from jaxedit.latent.modules import classifier_from_preset, init_classifier_params
from jaxedit.training.checkpoint import PreemptionGuard, TrainCheckpointer
from jaxedit.training.loop import TrainingInterrupted
from jaxedit.training.steps import TransformerTrainer
from jaxedit.training.transformers import train_transformers
from tests.helpers.train_tiny import TINY_CLI, tiny_config, tiny_data, write_tiny_npz

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 30  # 30 x 22 single-step chunks: long enough to signal mid-run, a few seconds in all
ATTRIBUTES = "Smiling,Young"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("signals")
    config = tiny_config(epochs=EPOCHS, steps_per_call=1, checkpoint_every=0)
    classifier_params = init_classifier_params(classifier_from_preset(config.method), jax.random.key(3))
    save_editors(root / "classifier", config.method, classifier_params, None, [])
    data_file = write_tiny_npz(root / "data.npz")
    trainer = TransformerTrainer.create(config.method)
    reference = train_transformers(
        config,
        tiny_data(),
        classifier_params,
        ATTRIBUTES.split(","),
        root / "reference",
        trainer=trainer,
        log=lambda message: None,
    )
    return root, data_file, reference, trainer


def _command(workdir: Path, data_file: Path, classifier: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "train.transformers",
        "--config",
        "official",
        *TINY_CLI,
        "--epochs",
        str(EPOCHS),
        "--steps_per_call",
        "1",
        "--checkpoint_every",
        "0",
        "--latents",
        str(data_file),
        "--attributes",
        ATTRIBUTES,
        "--classifier",
        str(classifier),
        "--workdir",
        str(workdir),
    ]


def _wait_for_progress(process: subprocess.Popen, metrics: Path, lines: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"training exited early with {process.returncode}: {process.stderr.read()}")
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= lines:
            return
        time.sleep(0.005)
    raise AssertionError("no training progress within the timeout")


def test_sigterm_saves_exits_75_and_cli_resume_matches_an_uninterrupted_run(prepared, tmp_path):
    root, data_file, reference, _ = prepared
    workdir = tmp_path / "run"
    command = _command(workdir, data_file, root / "classifier")
    process = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_progress(process, workdir / "metrics.jsonl", lines=2 * 5)  # 5 steps of 2 attributes logged
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 75, stderr
    assert "stopped by SIGTERM at step" in stderr
    assert "to continue:" in stderr and "--resume" in stderr and "Traceback" not in stderr
    stopped_at = int(stderr.split("at step ")[1].split("/")[0])
    total = EPOCHS * (360 // 16)
    assert 5 <= stopped_at < total
    with TrainCheckpointer(workdir / "checkpoints" / "transformers") as checkpointer:
        assert checkpointer.complete_steps() == [stopped_at]

    resumed = subprocess.run(command + ["--resume"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {stopped_at}/{total}" in resumed.stderr
    editors = load_editors(workdir / "editors")
    assert editors.attributes == ("Smiling", "Young")
    for got, want in zip(jax.tree.leaves(editors.transformer_params), jax.tree.leaves(reference.params)):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_a_real_sigint_in_process_stops_at_a_chunk_boundary_and_resume_matches(prepared, tmp_path):
    """Ctrl-C (a real SIGINT to this process, from a thread once progress shows) under the guard."""
    root, data_file, reference, trainer = prepared
    config = tiny_config(epochs=EPOCHS, steps_per_call=1, checkpoint_every=0)
    classifier_params = load_editors(root / "classifier").classifier_params
    metrics = tmp_path / "metrics.jsonl"

    def send_sigint_on_progress():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2 * 5:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.002)

    sender = threading.Thread(target=send_sigint_on_progress)
    with PreemptionGuard() as guard:
        sender.start()
        with pytest.raises(TrainingInterrupted) as stopped:
            train_transformers(
                config,
                tiny_data(),
                classifier_params,
                ATTRIBUTES.split(","),
                tmp_path,
                guard=guard,
                trainer=trainer,
                log=lambda message: None,
            )
    sender.join()
    assert stopped.value.signal_name == "SIGINT" and stopped.value.exit_status == 75
    assert 5 <= stopped.value.step < EPOCHS * 22
    resumed = train_transformers(
        config,
        tiny_data(),
        classifier_params,
        ATTRIBUTES.split(","),
        tmp_path,
        resume=True,
        trainer=trainer,
        log=lambda message: None,
    )
    for got, want in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params)):
        np.testing.assert_array_equal(np.asarray(got), want)


SAVER = textwrap.dedent(
    """
    import sys, numpy as np
    from jaxedit.training.checkpoint import TrainCheckpointer
    checkpointer = TrainCheckpointer(sys.argv[1], max_to_keep=2)
    state = {"params": np.zeros((24, 512, 512), np.float32), "count": np.int64(0)}
    for step in range(1, 100000):
        checkpointer.save(step, {"params": state["params"] + step, "count": np.int64(step)}, {"epoch": 0})
    """
)


def _staging(directory: Path) -> list[str]:
    import orbax.checkpoint as ocp

    return sorted(ocp.step.tmp_checkpoints(directory)) if directory.is_dir() else []


def test_sigkill_during_a_save_leaves_staging_that_is_removed_and_the_last_complete_step_restores(tmp_path):
    directory = tmp_path / "checkpoints"
    leftovers: list[str] = []
    for _attempt in range(5):  # the kill must land while a save is in flight; retry if it lands between saves
        process = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(directory)], cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = os.listdir(directory) if directory.is_dir() else []
            if any(n.isdigit() for n in names) and _staging(directory):
                break
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        process.stderr.close()
        leftovers = _staging(directory)
        if leftovers:
            break
    assert leftovers, "never caught a save in flight"

    complete_before = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    template = {"params": np.zeros((24, 512, 512), np.float32), "count": np.int64(0)}
    with TrainCheckpointer(directory) as checkpointer:
        assert checkpointer.notes == [f"removed {name}: a save that did not finish" for name in leftovers]
        step, state, record = checkpointer.restore_latest(template, warn=pytest.fail)
    assert step == max(complete_before) and record["step"] == step
    assert int(state["count"]) == step and float(state["params"][3, 7, 11]) == float(step)
    assert _staging(directory) == []


def _tiny_cli(tmp_path: Path, workdir: Path) -> list[str]:
    """A tiny transformer run of the CLI (classifier and data written under tmp_path)."""
    config = tiny_config()
    classifier_params = init_classifier_params(classifier_from_preset(config.method), jax.random.key(3))
    save_editors(tmp_path / "classifier", config.method, classifier_params, None, [])
    data_file = write_tiny_npz(tmp_path / "data.npz")
    return [
        sys.executable,
        "-m",
        "train.transformers",
        "--config",
        "official",
        *TINY_CLI,
        "--latents",
        str(data_file),
        "--attributes",
        ATTRIBUTES,
        "--classifier",
        str(tmp_path / "classifier"),
        "--workdir",
        os.fsdecode(workdir),
    ]


LIMITED = (  # the CLI in a process whose writes past 2000 bytes fail with EFBIG, as on a full disk:
    # each checkpoint array of the tiny run takes more (4096 bytes), so the save of step 8 always fails
    "import resource, runpy, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); runpy.run_module('train.transformers', run_name='__main__')"
)


def test_a_full_disk_while_saving_is_one_line_and_the_next_run_removes_the_staging(tmp_path):
    command = [*_tiny_cli(tmp_path, tmp_path / "run"), "--max_steps", "8"]
    limited = [sys.executable, "-c", LIMITED, *command[3:]]
    failed = subprocess.run(limited, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    lines = [line for line in failed.stderr.splitlines() if "error:" in line]
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert len(lines) == 1 and "cannot write checkpoint step 8" in lines[0] and "File too large" in lines[0], lines
    assert len(failed.stderr.strip().splitlines()) <= 2, failed.stderr  # the training settings, the error
    directory = tmp_path / "run" / "checkpoints" / "transformers"
    staging = _staging(directory)
    assert staging, sorted(os.listdir(directory))
    resumed = subprocess.run(command + ["--resume"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed {staging[0]}: a save that did not finish" in resumed.stderr
    assert _staging(directory) == []


def test_a_workdir_name_that_is_not_utf8_is_one_line(tmp_path):
    workdir = Path(os.fsdecode(os.fsencode(tmp_path) + b"/run\xff"))
    result = subprocess.run(
        _tiny_cli(tmp_path, workdir), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300
    )
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "not a UTF-8 path" in lines[0], result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # the training settings, the error
