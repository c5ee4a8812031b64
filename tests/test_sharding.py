"""The mesh, training on it, its checkpoints across mesh shapes and a two-process jax.distributed run.

Multi-device checks run `tests/helpers/sharding_worker.py` in subprocesses with
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
WORKER = Path(__file__).parent / "helpers" / "sharding_worker.py"
TIMEOUT_S = 900  # generous for a loaded 2-core machine; the meshes worker takes ~140 s of CPU alone


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
    """One 8-device worker: the training chunk on meshes vs one device, the checkpoint round trip,
    the training loop across meshes, labelling."""
    folder = tmp_path_factory.mktemp("meshes")
    run_worker(["meshes", str(folder / "result.json"), str(folder / "ckpt")], 8)
    return json.loads((folder / "result.json").read_text())


def test_forty_attributes_sharded_over_attr_match_one_device(equivalence):
    """Must show: 40 attributes, the real chunk (3 steps), attr-sharded on 8 (or 6) devices == one
    device. The official preset agrees bit for bit; the paper preset's MLP is compiled for 5 rows
    per device instead of 40, so its matmuls round differently: the bulk agrees to 1e-7 and the
    worst component (Adam magnifies rounding where |g| is near eps) stays under a tenth of a step."""
    assert equivalence["devices"] == 8
    for name in ("official 8x1", "paper 8x1", "official 6x1"):
        result = equivalence[name]
        lr = equivalence[f"{name.split()[0]} lr"]
        assert result["params_p999_abs_diff"] <= 1e-7 and result["params_max_abs_diff"] <= 0.1 * lr, (name, result)
        assert result["opt_state_max_rel_diff"] <= 1e-5, (name, result)
        assert result["metrics_max_abs_diff"] <= 1e-5 and result["metrics_shape"] == [3, 40], (name, result)
    for name in ("official 8x1", "official 6x1"):
        assert equivalence[name]["params_max_abs_diff"] == 0.0, equivalence[name]
    # 5 attributes per device; 40 on 6 devices is padded to 42 (7 per device) and stripped again.
    assert equivalence["official 8x1"]["per_device_rows"] == 5
    assert equivalence["official 6x1"]["padded_attributes"] == 42
    assert equivalence["official 6x1"]["per_device_rows"] == 7


def test_attribute_axis_needs_no_communication_data_axis_all_reduces(equivalence):
    """jit + NamedSharding partitions the vmapped step: no collective at all along "attr"."""
    for name in ("official 8x1", "official 6x1", "paper 8x1"):
        assert sum(equivalence[name]["collectives"].values()) == 0, equivalence[name]
    collectives = equivalence["official 4x2"]["collectives"]
    assert collectives["all-reduce"] >= 1 and collectives["all-gather"] == 0, collectives


def test_data_axis_sharding_matches_one_device_up_to_summation_order(equivalence):
    """With the batch split over "data" the gradient sums are reassociated (float rounding); Adam
    divides by sqrt(v), which magnifies that rounding only for components with |g| near eps.
    The bulk agrees to 1e-6 and the worst component stays a fraction of one lr step (a wrong
    gradient, e.g. from half of the batch, moves most components by about lr)."""
    lr = equivalence["official lr"]
    result = equivalence["official 4x2"]
    assert result["params_p999_abs_diff"] <= 1e-6, result
    assert result["params_max_abs_diff"] <= 0.25 * lr, result


def test_checkpoint_from_4x2_restores_on_8x1_and_one_device(equivalence):
    """Must show: a checkpoint written on a 4x2 mesh restores, equal, on 8x1 and on 1 device
    (and on 3x2, where 40 attributes are padded to 42); the 8x1 copy then trains on in step
    with the one-device program."""
    result = equivalence["checkpoint"]
    assert result["saved_on"] == {"attr": 4, "data": 2} and result["steps"] == [3]
    for name, devices, rows in (("8x1", 8, 40), ("1 device", 1, 40), ("3x2 (padded to 42)", 6, 42)):
        restored = result[name]
        assert restored["equal"] and restored["max_abs_diff"] == 0.0, (name, restored)
        assert (restored["step"], restored["rows"], restored["devices"]) == (3, rows, devices), (name, restored)
        assert restored["spec"] == "P('attr',)"
    assert result["8x1"]["continued_chunk_max_abs_diff"] <= 2e-6


def test_train_transformers_stopped_on_8x1_resumed_on_6x1_equals_one_device(equivalence):
    """The real training loop on meshes: stopped half way on 8x1, resumed on 6x1 (40 attributes
    padded to 42), the editors equal the one-device run; likewise one device -> 8x1 and 8x1 ->
    one device; the classifier data-parallel over 8 devices."""
    result = equivalence["train_transformers"]
    assert result["steps"] == [4, 2, 4] and result["attributes"] == 40 and result["checkpoint_steps"] == [2, 4]
    assert result["params_max_abs_diff"] <= 2e-6, result
    assert result["editors_dir_max_abs_diff"] <= 2e-6, result
    assert result["resumed_steps"] == [4, 4]
    assert result["one_device_checkpoint_resumed_on_8x1_max_abs_diff"] <= 2e-6, result
    assert result["sharded_checkpoint_resumed_on_one_device_max_abs_diff"] <= 2e-6, result
    assert result["classifier_steps"] == [4, 4]
    assert result["classifier_params_p999_abs_diff"] <= 1e-6, result
    assert result["classifier_params_max_abs_diff"] <= 0.25 * result["classifier_lr"], result
    assert result["classifier_heldout_loss_diff"] <= 1e-5, result


def test_labelling_splits_batches_over_the_data_axis(equivalence):
    """jaxedit.data.labelling on 8 local devices (batch over the mesh's "data" axis) == one device."""
    result = equivalence["labelling"]
    assert result["count"] == 40 and result["labels_equal"], result
    assert result["latents_max_abs_diff"] <= 1e-6 and result["probabilities_max_abs_diff"] <= 1e-6, result


def test_two_process_distributed_training_checkpoints_and_resumes(tmp_path):
    """Must show: two jax.distributed processes on 127.0.0.1 (4 CPU devices each) run the training
    loop: the 40 transformers stopped half way with "attr" over all 8 devices, the checkpoint
    written by both processes into one directory, resumed on 4x2; the classifier with the batch
    split over all 8. The results equal this one-device process's runs, which also resumes
    the two-process checkpoint."""
    from jaxedit.latent import load_editors
    from jaxedit.training.classifier import train_classifier
    from jaxedit.training.transformers import train_transformers
    from tests.helpers.sharding_worker import QUIET, loop_problem, max_abs_diff, p999_abs_diff

    port = free_loopback_port()
    shared = tmp_path / "shared"
    outs = [tmp_path / f"process{index}.json" for index in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "distributed", str(outs[index]), str(shared), str(port), "2", str(index)],
            env=worker_env(4),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        config, data, classifier_params = loop_problem()
        reference = train_transformers(config, data, classifier_params, "all", tmp_path / "one", log=QUIET)
        reference_classifier = train_classifier(config, data, tmp_path / "one", log=QUIET)
        logs = [process.communicate(timeout=TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, logs):
        assert process.returncode == 0, stderr[-4000:]
    results = [json.loads(out.read_text()) for out in outs]
    for index, result in enumerate(results):
        assert (result["process_index"], result["process_count"], result["global_devices"]) == (index, 2, 8)
        assert result["meshes"]["stopped"].startswith("mesh attr=8 x data=1 over 8 devices (cpu) in 2 process")
        assert result["meshes"]["classifier"].startswith("mesh attr=1 x data=8 over 8 devices (cpu) in 2 process")
        assert result["steps"] == [2, 4, 4] and result["checkpoint_steps"] == [2, 4], result
        assert abs(result["heldout_loss"] - reference_classifier.heldout_loss) <= 1e-5, result
    expected = np.load(shared / "params.npz")
    got = [expected[f"arr_{index}"] for index in range(len(expected.files))]
    assert max_abs_diff(got, jax.tree.leaves(reference.params)) <= 2e-6
    classifier = load_editors(shared / "classifier").classifier_params
    assert p999_abs_diff(classifier, reference_classifier.params) <= 1e-6
    assert max_abs_diff(classifier, reference_classifier.params) <= 0.25 * config.method.classifier_lr
    # The two-process checkpoint resumes on this one-device process: step 4 of 4, the same params.
    resumed = train_transformers(config, data, classifier_params, "all", shared, resume=True, log=QUIET)
    assert resumed.steps == 4
    for leaf, want in zip(jax.tree.leaves(resumed.params), got):
        np.testing.assert_array_equal(leaf, want)


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


def test_tree_shardings_split_leading_axes_and_replicate_the_rest():
    mesh = S.make_mesh()
    tree = {"w": np.zeros((4, 3)), "count": np.int32(0)}
    attr = S.tree_shardings(tree, mesh, S.ATTR_AXIS)
    assert str(attr["w"].spec) == "P('attr',)" and str(attr["count"].spec) == "P()"
    assert str(S.tree_shardings(tree, mesh)["w"].spec) == "P()"
    two_way = jax.sharding.AbstractMesh((1, 2), (S.ATTR_AXIS, S.DATA_AXIS))  # shapes only, no devices needed
    S.check_batch_size(4, two_way)
    with pytest.raises(ConfigError, match=r"batch size 3 is not a multiple of the mesh data axis \(2 devices\)"):
        S.check_batch_size(3, two_way)
