"""A tiny `python -m train --quick --generator GEN` run on the converted small rosinality generator.

- Its editors record the generator (source sha256, params digest, architecture) and the world.
- `jaxedit eval` on them, with no other flag, evaluates in the run's world (the generator's
  mapping, the run's seed, settings and labelled sample) and reproduces the run's report exactly.
- Another generator (the small NVlabs network, same shapes) is refused by `jaxedit eval` and
  `jaxedit edit` in one line; `--force` runs with a warning.
- Real SIGINTs to real processes at three moments (building the world, the classifier stage, mid
  transformers), each followed by `python -m train --resume --out RUN`: every stop exits 75 with
  the resume command, and the last resume ends with the editors and report numbers of the
  uninterrupted run, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxedit.cli.main import main
from jaxedit.convert.stylegan2 import convert_stylegan2
from jaxedit.latent.editors import load_editors
from tests.helpers.paths import STYLEGAN2_FIXTURES

REPO = Path(__file__).resolve().parents[1]
FLAGS = [
    "--quick",
    "--samples",
    "1500",
    "--transformer-samples",
    "320",
    "--epochs",
    "60",
    "--classifier-epochs",
    "2",
    "--eval-count",
    "50",
    "--identity-samples",
    "200",
    "--identity-pairs",
    "5000",
    "--no-progress",
    "--set",
    "batch_size=32",
    "--attributes",
    "Smiling,Young",
]
TRANSFORMER_STEPS = 60 * (320 // 32)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _train(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "train", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _Lines:
    """A process's stderr lines, read as they come (a thread), with a wait for one of them."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, process: subprocess.Popen, ready, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready(self.lines):
                return
            if process.poll() is not None:
                raise AssertionError(f"exited early with {process.returncode}: {''.join(self.lines)[-2000:]}")
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting; stderr so far: {''.join(self.lines)[-2000:]}")

    def text(self) -> str:
        self.thread.join(timeout=60)
        return "".join(self.lines)


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    root = tmp_path_factory.mktemp("generators")
    convert_stylegan2(STYLEGAN2_FIXTURES / "rosinality_small.pt", root / "rosinality_small")
    convert_stylegan2(STYLEGAN2_FIXTURES / "nvlabs_small.pkl", root / "nvlabs_small")
    return root / "rosinality_small", root / "nvlabs_small"


@pytest.fixture(scope="module")
def reference(generators, tmp_path_factory):
    """The uninterrupted run (a real process, as the resumed ones)."""
    root = tmp_path_factory.mktemp("reference")
    process = _train(["--generator", str(generators[0]), "--out", str(root / "run"), *FLAGS], cwd=root)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert "Average over all 2 evaluated attributes" in out
    assert not (root / "run" / "work" / "checkpoints").exists()  # a finished run keeps no checkpoints
    return root / "run"


def _numbers(report_path: Path) -> dict:
    report = json.loads(report_path.read_text())
    return {"attributes": report["attributes"], "average": report["average"]}


def test_editors_record_the_generator_and_the_world(reference, generators, capsys):
    provenance = load_editors(reference / "editors").provenance
    generator = provenance["generator"]
    digest = hashlib.sha256((STYLEGAN2_FIXTURES / "rosinality_small.pt").read_bytes()).hexdigest()
    assert generator["source_sha256"] == digest and generator["path"] == str(generators[0].absolute())
    manifest = json.loads((generators[0] / "jaxedit.json").read_text())
    assert generator["params_sha256"] == manifest["params_sha256"]
    assert generator["architecture"] == manifest["config"]
    assert provenance["world"]["seed"] == 0 and provenance["world"]["w_dim"] == 32
    assert (provenance["preset"], provenance["latent_space"], provenance["latent_shape"]) == ("paper", "w", [32])
    assert main(["info", str(reference / "editors")]) == 0
    printed = capsys.readouterr().out
    assert f"trained on the mapping of generator {generators[0].absolute()} (64 px, params " in printed


def test_jaxedit_eval_reproduces_the_runs_report(reference, tmp_path, capsys):
    assert main(["eval", str(reference / "editors"), "--out", str(tmp_path / "eval")]) == 0
    err = capsys.readouterr().err
    assert "on: SYNTHETIC attribute world" in err and "mapping network of the converted generator" in err
    assert "with the settings of the run that trained them" in err and "warning" not in err
    assert _numbers(tmp_path / "eval" / "report.json") == _numbers(reference / "report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # nothing written beside the editors


def test_another_generator_is_refused_unless_forced(reference, generators, tmp_path, capsys):
    editors, nvlabs = str(reference / "editors"), str(generators[1])
    code = main(["eval", editors, "--generator", nvlabs, "--out", str(tmp_path / "eval"), "--count", "10"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "were made for generator" in err and f"not generator {generators[1].absolute()}" in err
    assert "; pass --force to use them anyway" in err and not (tmp_path / "eval").exists()
    edit = ["edit", nvlabs, editors, "--seed", "3", "--attr", "Smiling=1", "--out", str(tmp_path / "e.png")]
    assert main(edit) == 2
    err = capsys.readouterr().err
    assert "; pass --force to use them anyway" in err and len(err.strip().splitlines()) == 1
    assert main([*edit, "--force"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("jaxedit: warning: editors ") and "(--force: used anyway)" in err
    assert (
        main(
            [
                "edit",
                str(generators[0]),
                editors,
                "--seed",
                "3",
                "--attr",
                "Smiling=1",
                "--out",
                str(tmp_path / "m.png"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().err == ""  # the recorded generator: no warning


def _sigint_when(process: subprocess.Popen, lines: _Lines, ready) -> tuple[int, str]:
    lines.wait_for(process, ready)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=300)
    return process.returncode, lines.text()


def _metrics_of(run: Path, stage: str):
    def ready(_lines) -> bool:
        metrics = run / "work" / "metrics.jsonl"
        return metrics.is_file() and f'"stage": "{stage}"' in metrics.read_text()

    return ready


def test_ctrl_c_at_three_moments_then_resume_matches_the_uninterrupted_run(reference, generators, tmp_path):
    run = tmp_path / "run"
    resume = ["--resume", "--out", str(run)]
    moments = [
        # while the world and its labels are built (no checkpoint: stopped at once)
        (
            ["--generator", str(generators[0]), "--out", str(run), *FLAGS],
            lambda ls: any(line.startswith("run directory") for line in ls),
        ),
        # once the labels are done: the classifier stage stops at its next chunk boundary
        (resume, lambda ls: any(line.startswith("labelled ") for line in ls)),
        # once the transformers have logged a chunk: they stop at a later chunk, with a checkpoint
        (resume, _metrics_of(run, "transformers")),
    ]
    for args, ready in moments:
        process = _train(args, cwd=tmp_path)
        code, err = _sigint_when(process, _Lines(process), ready)
        assert code == 75, err[-3000:]
        assert "stopped by SIGINT" in err and "Traceback" not in err
        assert f"to continue: python -m train --resume --out {run}" in err
        assert (run / "work" / "pipeline.json").is_file() and not (run / "report.json").exists()
    assert "at step " in err and f"/{TRANSFORMER_STEPS}; checkpoint saved" in err
    steps = [int(p.name) for p in (run / "work" / "checkpoints" / "transformers").iterdir() if p.name.isdigit()]
    assert steps and 0 < max(steps) < TRANSFORMER_STEPS

    process = _train(resume, cwd=tmp_path)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    assert f"transformers: resuming at step {max(steps)}/{TRANSFORMER_STEPS}" in err
    assert _numbers(run / "report.json") == _numbers(reference / "report.json")
    got, want = load_editors(run / "editors"), load_editors(reference / "editors")
    assert got.attributes == want.attributes
    for a, b in zip(
        jax.tree.leaves((got.classifier_params, got.transformer_params)),
        jax.tree.leaves((want.classifier_params, want.transformer_params)),
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing in the working directory


def test_a_refused_run_creates_no_directory(generators, tmp_path, monkeypatch, capsys):
    """Bad inputs are refused before any directory exists (also the default runs/<timestamp>)."""
    from jaxedit.cli.train import pipeline_main

    monkeypatch.chdir(tmp_path)
    assert pipeline_main(["--generator", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert pipeline_main(["--generator", str(generators[0] / "params"), "--no-progress"]) == 2
    assert pipeline_main(["--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert pipeline_main(["--resume"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and "no stopped run to resume here" in err[2] and "--resume needs --out" in err[3]
    assert list(tmp_path.iterdir()) == []


def test_work_without_checkpoints_stops_at_once_and_a_second_ctrl_c_is_130(tmp_path, capsys):
    """Real SIGINTs to this process: the first stops the world/evaluation work at once (75, the
    guard knows), the second, once the guard has been asked, stops everything at once (130)."""
    from jaxedit.cli.errors import run_main
    from jaxedit.training.checkpoint import PreemptionGuard
    from jaxedit.training.run_dir import PipelineInterrupted, stop_at_once

    def work() -> int:
        with PreemptionGuard() as guard:
            with pytest.raises(PipelineInterrupted) as stopped:
                with stop_at_once(guard, tmp_path, "evaluating"):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(30)  # never finishes: the signal stops it
            assert stopped.value.exit_status == 75 and guard.requested
            assert str(stopped.value).startswith(f"stopped by SIGINT while evaluating; {tmp_path} keeps")
            with pytest.raises(PipelineInterrupted, match="stopped by SIGINT before evaluating"):
                with stop_at_once(guard, tmp_path, "evaluating"):
                    raise AssertionError("a stop already requested runs nothing")
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C
            time.sleep(30)
        return 0

    started = time.monotonic()
    assert run_main("python -m train", work) == 130
    assert time.monotonic() - started < 20 and capsys.readouterr().err.endswith("python -m train: interrupted\n")
