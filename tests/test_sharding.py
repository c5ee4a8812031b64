"""The mesh, sharded training, sharded checkpoints and a two-process jax.distributed run.

Multi-device checks run `tests/sharding_worker.py` in subprocesses with
``--xla_force_host_platform_device_count`` virtual CPU devices, so this pytest process (and the
rest of the suite) keeps its single device. The in-process tests below use one device only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxedit.errors import ConfigError, InputError
from jaxedit.training import sharding as S

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("sharding_worker.py")
TIMEOUT_S = 300  # generous for a loaded 2-core machine; each worker takes ~10-30 s alone


def worker_env(num_devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # loopback only, no proxies
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def run_worker(args: list[str], num_devices: int) -> None:
    process = subprocess.run(
        [sys.executable, str(WORKER), *args],
        env=worker_env(num_devices),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert process.returncode == 0, f"worker {args[0]} failed:\n{process.stderr[-4000:]}"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# 8 virtual devices


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory) -> dict:
    """One 8-device worker: sharded vs one-device training, then the checkpoint round trip."""
    folder = tmp_path_factory.mktemp("meshes")
    run_worker(["meshes", str(folder / "result.json"), str(folder / "ckpt")], 8)
    return json.loads((folder / "result.json").read_text())


def test_forty_attributes_sharded_over_eight_devices_match_one_device(equivalence):
    """Must show: 40 attributes, the real step, attr-sharded on 8 devices == one device (1e-6)."""
    assert equivalence["devices"] == 8
    for name in ("official 8x1", "paper 8x1", "official 6x1", "official scan_indexed 8x1"):
        result = equivalence[name]
        assert result["params_max_abs_diff"] <= 1e-6, (name, result)
        assert result["opt_state_max_rel_diff"] <= 1e-6, (name, result)
    assert equivalence["official scan_indexed 8x1"]["metrics_max_abs_diff"] <= 1e-6
    # 5 attributes per device; 40 on 6 devices is padded to 42 (7 per device) and stripped again.
    assert equivalence["official 8x1"]["per_device_rows"] == 5
    assert equivalence["official 6x1"]["padded_attributes"] == 42
    assert equivalence["official 6x1"]["per_device_rows"] == 7


def test_attribute_axis_needs_no_communication_data_axis_all_reduces(equivalence):
    """jit + NamedSharding partitions the vmapped step: no collective at all along "attr"."""
    for name in ("official 8x1", "official 6x1", "paper 8x1"):
        assert sum(equivalence[name]["collectives"].values()) == 0, equivalence[name]
    for name in ("official 4x2",):
        collectives = equivalence[name]["collectives"]
        assert collectives["all-reduce"] >= 1 and collectives["all-gather"] == 0, (name, collectives)


def test_data_axis_sharding_matches_one_device_up_to_summation_order(equivalence):
    """With the batch split over "data" the gradient sums are reassociated (float rounding); Adam
    divides by sqrt(v), which magnifies that rounding only for components with |g| near eps.
    The bulk agrees to 1e-6 and the worst component stays a fraction of one lr step (a wrong
    gradient, e.g. from half of the batch, moves most components by about lr)."""
    lr = equivalence["official lr"]
    for name in ("official 4x2",):
        result = equivalence[name]
        assert result["params_p999_abs_diff"] <= 1e-6, (name, result)
        assert result["params_max_abs_diff"] <= 0.25 * lr, (name, result)


def test_checkpoint_from_4x2_restores_on_8x1_and_one_device(equivalence):
    """Must show: a checkpoint written on a 4x2 mesh restores, equal, on 8x1 and on 1 device
    (and on 3x2, where 40 attributes are padded to 42); the 8x1 copy then trains on in step
    with the one-device program."""
    result = equivalence["checkpoint"]
    assert result["saved_on"] == {"attr": 4, "data": 2} and result["steps"] == [3]
    for name, devices, rows in (("8x1", 8, 40), ("1 device", 1, 40), ("3x2 (padded to 42)", 6, 42)):
        restored = result[name]
        assert restored["equal"] and restored["max_abs_diff"] == 0.0, (name, restored)
        assert (restored["step"], restored["num_attributes"], restored["rows"], restored["devices"]) == (
            3,
            40,
            rows,
            devices,
        )
        assert restored["spec"] == "P('attr',)"
    assert result["8x1"]["continued_step_max_abs_diff"] <= 1e-6


def test_train_transformers_stopped_on_8x1_resumed_on_6x1_equals_one_device(equivalence):
    """The real training loop (jaxedit.training.transformers) on meshes: stopped half way on 8x1 (sharded
    checkpoint), resumed on 6x1 (40 attributes padded to 42), the editors equal the one-device run;
    likewise one device -> 8x1 and 8x1 -> one device."""
    result = equivalence["train_transformers"]
    assert result["steps"] == [4, 2, 4] and result["attributes"] == 40 and result["checkpoint_steps"] == [2, 4]
    assert result["params_max_abs_diff"] <= 1e-6, result
    assert result["editors_dir_max_abs_diff"] <= 1e-6, result
    # Checkpoints cross between the one-device and the sharded loop in both directions.
    assert result["resumed_steps"] == [4, 4]
    assert result["one_device_checkpoint_resumed_on_8x1_max_abs_diff"] <= 1e-6, result
    assert result["sharded_checkpoint_resumed_on_one_device_max_abs_diff"] <= 1e-6, result
    # jaxedit.training.classifier data-parallel over 8 devices (the batch split 8 ways, gradients all-reduced).
    assert result["classifier_steps"] == [4, 4]
    assert result["classifier_params_p999_abs_diff"] <= 1e-6, result
    assert result["classifier_params_max_abs_diff"] <= 0.25 * result["classifier_lr"], result
    assert result["classifier_heldout_loss_diff"] <= 1e-5, result


def test_labelling_splits_batches_over_the_data_axis(equivalence):
    """jaxedit.data.labelling on 8 local devices (batch over the mesh's "data" axis) == one device."""
    result = equivalence["labelling"]
    assert result["count"] == 40 and result["labels_equal"], result
    assert result["latents_max_abs_diff"] <= 1e-6 and result["probabilities_max_abs_diff"] <= 1e-6, result


def test_two_process_distributed_run_trains_checkpoints_and_restores(tmp_path):
    """Must show: two jax.distributed processes on 127.0.0.1 (4 CPU devices each) train the 40
    transformers (attr over all 8 devices) and the classifier (data over all 8, each process
    feeding half of every batch), write one checkpoint together and restore it on another mesh;
    this (one-device) process then restores the same checkpoint too."""
    port = free_loopback_port()
    checkpoint = tmp_path / "shared" / "ckpt"
    outs = [tmp_path / f"process{index}.json" for index in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "distributed", str(outs[index]), str(checkpoint), str(port), "2", str(index)],
            env=worker_env(4),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        logs = [process.communicate(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, logs):
        assert process.returncode == 0, stderr[-4000:]
    results = [json.loads(out.read_text()) for out in outs]
    for index, result in enumerate(results):
        assert (
            result["process_index"],
            result["process_count"],
            result["local_devices"],
            result["global_devices"],
        ) == (index, 2, 4, 8)
        assert result["transformer_params_max_abs_diff_vs_single"] <= 1e-6, result
        assert result["transformer_opt_state_max_rel_diff_vs_single"] <= 1e-6, result
        assert result["transformer_rows_fed"] == [0, 32]  # attr spans hosts: each host feeds the whole batch
        assert result["classifier_rows_fed"] == [16 * index, 16 * index + 16]  # data spans hosts: half each
        assert result["classifier_p999_abs_diff_vs_single"] <= 1e-6, result
        assert result["classifier_max_abs_diff_vs_single"] <= 0.25 * result["classifier_lr"], result
        assert result["classifier_loss_diff"] <= 1e-5, result
        assert result["restored_step"] == 3 and result["restored_equal"], result
    # The two-host checkpoint restores on this single-device process as well.
    from jaxedit.training.steps import TransformerTrainer
    from tests.sharding_worker import NUM_ATTRIBUTES, small_official_preset

    template = jax.eval_shape(
        lambda: TransformerTrainer.create(small_official_preset()).init(jax.random.key(0), NUM_ATTRIBUTES)
    )
    step, restored, num = S.restore_sharded_checkpoint(checkpoint, template, S.single_device_mesh())
    expected = np.load(tmp_path / "shared" / "expected.npz")
    leaves = jax.tree_util.tree_leaves(S.gather_transformer_state(restored, num))
    assert (step, num, len(leaves)) == (3, 40, len(expected.files))
    for index, leaf in enumerate(leaves):
        np.testing.assert_array_equal(leaf, expected[f"arr_{index}"])


# ---------------------------------------------------------------------------------------------
# One device (this process)


def test_make_mesh_sizes_and_errors():
    mesh = S.make_mesh()
    assert S.mesh_shape(mesh) == {"attr": 1, "data": 1}
    assert S.mesh_shape(S.make_mesh(0, 0)) == {"attr": 1, "data": 1}
    assert "attr=1 x data=1 over 1 devices" in S.describe_mesh(mesh)
    with pytest.raises(ConfigError, match="2 x 1 = 2 devices, but 1 are available"):
        S.make_mesh(2, 1)
    with pytest.raises(ConfigError, match="does not divide"):
        S.make_mesh(None, 3)
    with pytest.raises(ConfigError, match=">= 1"):
        S.make_mesh(-1, 1)


def test_initialize_distributed_checks_its_arguments_in_one_line():
    with pytest.raises(ConfigError, match="num_processes must be >= 1"):
        S.initialize_distributed("127.0.0.1:1", 0, 0)
    with pytest.raises(ConfigError, match=r"process_id must be in \[0, 2\), got 2"):
        S.initialize_distributed("127.0.0.1:1", 2, 2)
    S.initialize_distributed(None, 1, 0)  # one process: nothing to join, returns at once
    assert jax.process_count() == 1


def test_padding_repeats_attribute_zero_and_strips_back():
    tree = {"w": np.arange(3 * 2, dtype=np.float32).reshape(3, 2), "count": np.array([1, 2, 3])}
    padded = S.pad_attributes(tree, 5)
    np.testing.assert_array_equal(padded["w"], [[0, 1], [2, 3], [4, 5], [0, 1], [0, 1]])
    np.testing.assert_array_equal(padded["count"], [1, 2, 3, 1, 1])
    stripped = S.unpad_attributes(padded, 3)
    np.testing.assert_array_equal(stripped["w"], tree["w"])
    with pytest.raises(InputError, match="leading axis of 3"):
        S.pad_attributes({"a": np.zeros((3, 2)), "b": np.zeros((4,))}, 5)


def test_batch_size_must_divide_over_data_axis_and_host_rows():
    mesh = S.make_mesh()
    assert S.process_batch_rows(mesh, 8) == slice(0, 8)
    batch = S.host_local_batch_to_global(np.ones((8, 3), np.float32), mesh, 8)
    assert batch.shape == (8, 3)
    with pytest.raises(InputError, match="expected 8 rows"):
        S.host_local_batch_to_global(np.ones((4, 3), np.float32), mesh, 8)


def test_restore_reports_missing_checkpoint(tmp_path):
    with pytest.raises(Exception, match="no sharded checkpoint"):
        S.restore_sharded_checkpoint(tmp_path / "nothing", {"w": np.zeros((2, 3))}, S.make_mesh())
