"""The device mesh, and how transformer states, batches and classifier params are laid on it.

Everything here is plain JAX distribution (`jax.sharding`, `jax.distributed`, orbax): the same
code runs on one device, on N local devices and on several hosts.

The mesh has two named axes:

- ``"attr"`` (`ATTR_AXIS`): the attribute axis. The K transformers (their params and optimizer
  state, stacked along a leading axis ``[K, ...]``) are split over it. Attributes are independent
  problems, so this axis needs no communication at all in the training step.
- ``"data"`` (`DATA_AXIS`): the batch axis. Batches ``[B, ...]`` are split over it; gradients are
  summed across it by XLA (an all-reduce), so it costs communication once per step.

A stacked transformer state must have a leading axis that is a multiple of the attr axis size:
`shard_transformer_state` pads K with copies of the first attribute ("dummy" attributes whose
updates are computed and thrown away) and `gather_transformer_state` strips them again. Batches
must have a size that is a multiple of the data axis size (a one-line `ConfigError` otherwise).

On several hosts, call `initialize_distributed` first (before anything touches a device), build
the mesh over all hosts' devices with `make_mesh`, and have each host load only the batch rows
`process_batch_rows` names, turned into one global array by `host_local_batch_to_global`.

Checkpoints (`save_sharded_checkpoint`, `restore_sharded_checkpoint`) are orbax checkpoints written
shard by shard by every process; they restore onto any mesh shape (a different number of devices,
a different attr x data split, one device), re-padding the attribute axis as the new mesh needs.

The training loop (`jaxedit.training.transformers`, `jaxedit.training.classifier`) uses: `sharded_scan_advance` /
`classifier_scan_advance` (one compiled `lax.scan` chunk per call), `ShardedTrainCheckpointer`
(the loop's checkpointer for a sharded state) and `finite_rows_on_host`. `docs/scaling.md` has the
commands for multi-GPU machines, several hosts and TPU pod slices.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxedit.errors import CheckpointError, ConfigError, InputError, TrainingError
from jaxedit.training.checkpoint import (
    RECORD_ITEM,
    STATE_ITEM,
    TrainCheckpointer,
    _first_difference,
    all_finite_per_row,
    is_complete_step_dir,
    state_layout,
)

ATTR_AXIS = "attr"
DATA_AXIS = "data"
LAYOUT_ITEM = "layout"


# ----------------------------------------------------------------------------------------------
# Processes and the mesh


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    coordinator_bind_address: str | None = None,
    initialization_timeout: int = 300,
) -> None:
    """Join a multi-process JAX run (a thin wrapper over `jax.distributed.initialize`).

    Call it once per process, before any other JAX call. With all arguments None, JAX detects the
    cluster itself (TPU pod slices, SLURM, Open MPI) or reads ``JAX_COORDINATOR_ADDRESS``; on a
    plain multi-GPU cluster give ``coordinator_address="host0:port"``, ``num_processes`` and each
    process's ``process_id``. ``coordinator_bind_address`` restricts where process 0 listens
    (by default on every interface at the coordinator's port).
    """
    if num_processes is not None and num_processes < 1:
        raise ConfigError(f"num_processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError(f"process_id must be in [0, {num_processes}), got {process_id}")
    if num_processes == 1:
        return  # one process: nothing to join
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
            coordinator_bind_address=coordinator_bind_address,
            initialization_timeout=initialization_timeout,
        )
    except (RuntimeError, ValueError, TypeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"jax.distributed.initialize failed: {message}") from error


def make_mesh(
    num_attr: int | None = None,
    num_data: int | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A 2-D mesh ``(attr, data)`` over `devices` (default: every device of every process).

    ``num_attr``/``num_data`` of None or 0 mean "what is left": with neither given, every device
    goes to the attr axis (``num_data=1``). The product must equal the number of devices.
    Axes are `AxisType.Auto`, so jitted code is partitioned by XLA from the input shardings.
    """
    devices = list(jax.devices() if devices is None else devices)
    count = len(devices)
    if count == 0:
        raise ConfigError("make_mesh: no devices")
    num_attr = None if num_attr in (None, 0) else int(num_attr)
    num_data = None if num_data in (None, 0) else int(num_data)
    for name, size in (("mesh attr", num_attr), ("mesh data", num_data)):
        if size is not None and size < 1:
            raise ConfigError(f"{name} size must be >= 1 (or 0 for automatic), got {size}")
    if num_attr is None and num_data is None:
        num_data = 1
    if num_attr is None:
        if count % num_data:
            raise ConfigError(f"mesh data size {num_data} does not divide the {count} devices")
        num_attr = count // num_data
    if num_data is None:
        if count % num_attr:
            raise ConfigError(f"mesh attr size {num_attr} does not divide the {count} devices")
        num_data = count // num_attr
    if num_attr * num_data != count:
        raise ConfigError(
            f"mesh attr x data = {num_attr} x {num_data} = {num_attr * num_data} devices, but {count} are available"
        )
    return jax.make_mesh(
        (num_attr, num_data), (ATTR_AXIS, DATA_AXIS), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices
    )


def single_device_mesh(device: jax.Device | None = None) -> Mesh:
    """A 1 x 1 mesh on one device (default: this process's first device)."""
    return make_mesh(1, 1, devices=[device if device is not None else jax.local_devices()[0]])


def mesh_shape(mesh: Mesh) -> dict[str, int]:
    """``{"attr": a, "data": d}``."""
    return {ATTR_AXIS: int(mesh.shape[ATTR_AXIS]), DATA_AXIS: int(mesh.shape[DATA_AXIS])}


def describe_mesh(mesh: Mesh) -> str:
    """One line: ``mesh attr=4 x data=2 over 8 devices (cpu) in 1 process(es)``."""
    shape = mesh_shape(mesh)
    platform = mesh.devices.flat[0].platform
    processes = len({d.process_index for d in mesh.devices.flat})
    return (
        f"mesh attr={shape[ATTR_AXIS]} x data={shape[DATA_AXIS]} over {mesh.devices.size} devices "
        f"({platform}) in {processes} process(es)"
    )


# ----------------------------------------------------------------------------------------------
# Shardings


def attribute_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over "attr", the rest replicated (stacked transformer leaves)."""
    return NamedSharding(mesh, P(ATTR_AXIS))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over "data", the rest replicated (batches ``[B, ...]``)."""
    return NamedSharding(mesh, P(DATA_AXIS))


def attribute_data_sharding(mesh: Mesh) -> NamedSharding:
    """``[K, B, ...]`` split over "attr" then "data" (per-attribute batches)."""
    return NamedSharding(mesh, P(ATTR_AXIS, DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (classifier params, scalars)."""
    return NamedSharding(mesh, P())


def padded_num_attributes(num_attributes: int, mesh: Mesh) -> int:
    """K rounded up to a multiple of the attr axis size."""
    size = int(mesh.shape[ATTR_AXIS])
    return -(-int(num_attributes) // size) * size


def _leading_size(tree: Any) -> int | None:
    for leaf in jax.tree_util.tree_leaves(tree):
        if np.ndim(leaf) >= 1:
            return int(np.shape(leaf)[0])
    return None


def _check_leading(tree: Any, size: int, what: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if np.ndim(leaf) >= 1 and np.shape(leaf)[0] != size:
            raise InputError(
                f"{what}: leaf {jax.tree_util.keystr(path)} has shape {tuple(np.shape(leaf))}, "
                f"expected a leading axis of {size}"
            )


def transformer_state_sharding(state: Any, mesh: Mesh) -> Any:
    """The sharding tree of a stacked transformer state: attr-split leaves, replicated scalars."""
    return jax.tree_util.tree_map(
        lambda leaf: attribute_sharding(mesh) if np.ndim(leaf) >= 1 else replicated_sharding(mesh), state
    )


def batch_sharding(batch: Any, mesh: Mesh, *, attribute_axis: bool = False) -> Any:
    """The sharding tree of a batch (``[B, ...]`` leaves, or ``[K, B, ...]`` with attribute_axis)."""
    leading = attribute_data_sharding(mesh) if attribute_axis else data_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda leaf: leading if np.ndim(leaf) >= (2 if attribute_axis else 1) else replicated_sharding(mesh), batch
    )


def replicated_tree_sharding(tree: Any, mesh: Mesh) -> Any:
    """Replicated sharding for every leaf (classifier params and its optimizer state)."""
    return jax.tree_util.tree_map(lambda _: replicated_sharding(mesh), tree)


# ----------------------------------------------------------------------------------------------
# Attribute padding


def pad_attributes(tree: Any, size: int) -> Any:
    """Grow every ``[K, ...]`` leaf to ``[size, ...]`` with copies of attribute 0 (dummies).

    Dummy attributes are real, valid copies (their updates are finite and independent of the
    others under vmap); `unpad_attributes` drops them. Scalars are left as they are.
    """
    num = _leading_size(tree)
    if num is None or num == size:
        return tree
    if num > size:
        raise InputError(f"cannot pad {num} attributes down to {size}")
    _check_leading(tree, num, "pad_attributes")

    def pad(leaf):
        if np.ndim(leaf) == 0:
            return leaf
        xp = jnp if isinstance(leaf, jax.Array) else np
        filler = xp.repeat(leaf[:1], size - num, axis=0)
        return xp.concatenate([leaf, filler], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def unpad_attributes(tree: Any, num_attributes: int) -> Any:
    """Keep the first ``num_attributes`` rows of every ``[K_padded, ...]`` leaf."""
    return jax.tree_util.tree_map(lambda leaf: leaf if np.ndim(leaf) == 0 else leaf[:num_attributes], tree)


def _repad_on_mesh(tree: Any, num_attributes: int, mesh: Mesh) -> Any:
    """Strip to K and re-pad for `mesh`, landing attr-sharded (one jitted program, no host copy)."""
    size = padded_num_attributes(num_attributes, mesh)
    shardings = transformer_state_sharding(tree, mesh)
    repad = jax.jit(lambda t: pad_attributes(unpad_attributes(t, num_attributes), size), out_shardings=shardings)
    return repad(tree)


# ----------------------------------------------------------------------------------------------
# Placing host data on the mesh (one process or many)


def _place(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """A global array from a value every process holds in full (same value on every process).

    Already placed arrays are left alone; anything else goes through host memory once (cheaper
    than resharding a one-device array, which compiles a slicing program per shape).
    """
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    host = np.asarray(leaf)
    if jax.process_count() == 1:
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_transformer_state(state: Any, mesh: Mesh) -> Any:
    """Pad a stacked ``[K, ...]`` transformer state for `mesh` and split it over "attr".

    Every process passes the same full state (e.g. from the same seeded init). Returns the padded
    state (leading axis `padded_num_attributes(K, mesh)`); keep K to strip it later.
    """
    num = _leading_size(state)
    if num is None:
        raise InputError("shard_transformer_state: the state has no array with a leading attribute axis")
    _check_leading(state, num, "shard_transformer_state")
    padded = pad_attributes(gather_to_host(state), padded_num_attributes(num, mesh))
    shardings = transformer_state_sharding(padded, mesh)
    return jax.tree_util.tree_map(_place, padded, shardings)


def shard_per_attribute(tree: Any, mesh: Mesh) -> Any:
    """Per-attribute inputs ``[K, ...]`` (attribute indices, correlation rows): padded, attr-split."""
    return shard_transformer_state(tree, mesh)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every leaf, whole, on every device of the mesh (classifier params, shared constants)."""
    return jax.tree_util.tree_map(lambda leaf: _place(leaf, replicated_sharding(mesh)), tree)


def _check_batch_size(size: int, mesh: Mesh) -> None:
    data = int(mesh.shape[DATA_AXIS])
    if size % data:
        raise ConfigError(f"batch size {size} is not a multiple of the mesh data axis ({data} devices)")


def shard_batch(batch: Any, mesh: Mesh, *, attribute_axis: bool = False) -> Any:
    """Split a batch (the full, global batch, on one process) over "data".

    ``[B, ...]`` leaves go over "data" (replicated over "attr"); with ``attribute_axis=True``
    the leaves are ``[K_padded, B, ...]`` and go over both. For several processes, where each host
    holds only its rows, use `host_local_batch_to_global`.
    """
    if jax.process_count() > 1:
        raise ConfigError(
            "shard_batch takes a whole batch on one process; with several processes use host_local_batch_to_global"
        )
    axis = 1 if attribute_axis else 0
    for leaf in jax.tree_util.tree_leaves(batch):
        if np.ndim(leaf) > axis:
            _check_batch_size(np.shape(leaf)[axis], mesh)
    shardings = batch_sharding(batch, mesh, attribute_axis=attribute_axis)
    return jax.tree_util.tree_map(lambda leaf, sharding: jax.device_put(leaf, sharding), batch, shardings)


def process_batch_rows(mesh: Mesh, global_batch_size: int) -> slice:
    """The rows of a global batch ``[B, ...]`` that this process must load and feed.

    Where the data axis spans processes each host gets its own contiguous slice; where it lies
    within a host (e.g. hosts split along "attr"), the slice is the whole batch.
    """
    _check_batch_size(global_batch_size, mesh)
    indices = data_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
    starts = [index[0].start or 0 for index in indices.values()]
    stops = [global_batch_size if index[0].stop is None else index[0].stop for index in indices.values()]
    return slice(min(starts), max(stops))


def host_local_batch_to_global(local_batch: Any, mesh: Mesh, global_batch_size: int) -> Any:
    """Assemble each process's rows (`process_batch_rows`) into global arrays split over "data".

    ``local_batch`` leaves are ``[rows, ...]`` with ``rows`` the length of this process's slice.
    """
    rows = process_batch_rows(mesh, global_batch_size)
    expected = rows.stop - rows.start
    sharding = data_sharding(mesh)

    def to_global(leaf):
        leaf = np.asarray(leaf)
        if leaf.ndim == 0 or leaf.shape[0] != expected:
            raise InputError(
                f"host batch leaf has shape {leaf.shape}, expected {expected} rows "
                f"(rows {rows.start}:{rows.stop} of a global batch of {global_batch_size})"
            )
        return jax.make_array_from_process_local_data(sharding, leaf, (global_batch_size,) + leaf.shape[1:])

    return jax.tree_util.tree_map(to_global, local_batch)


def gather_to_host(tree: Any) -> Any:
    """Every leaf as a full numpy array on every process (an all-gather across hosts if needed)."""

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(fetch, tree)


def gather_transformer_state(state: Any, num_attributes: int) -> Any:
    """A padded, sharded transformer state back as numpy ``[K, ...]`` leaves on every process."""
    return unpad_attributes(gather_to_host(state), num_attributes)


# ----------------------------------------------------------------------------------------------
# Sharded steps


def jit_sharded(
    step: Callable,
    in_shardings: Any,
    out_shardings: Any,
    *,
    donate_argnums: Sequence[int] = (),
    static_argnums: Sequence[int] = (),
) -> Callable:
    """`step` (jitted or not) compiled with explicit input/output shardings.

    `jax.jit` with `NamedSharding`s partitions the program (GSPMD): a step vmapped over the
    attribute axis runs K/attr attributes per device with no communication along "attr"; a batch
    split over "data" makes XLA all-reduce the gradients across "data".
    """
    return jax.jit(
        step,
        in_shardings=in_shardings,
        out_shardings=out_shardings,
        donate_argnums=tuple(donate_argnums),
        static_argnums=tuple(static_argnums),
    )


def sharded_transformer_step(trainer: Any, mesh: Mesh, *, donate_state: bool = False) -> Callable:
    """`trainer.step` (a `jaxedit.latent.TransformerTrainer`) partitioned over `mesh`.

    ``step(state [K_pad, ...] attr-split, classifier_params replicated, correlation [A, A]
    replicated, attributes int32 [K_pad] attr-split, batch [B, *latent] data-split)
    -> (state attr-split, metrics {name: [K_pad]} attr-split)``. K_pad =
    `padded_num_attributes(K, mesh)`; build the inputs with `shard_transformer_state`,
    `shard_per_attribute`, `replicate` and `shard_batch` / `host_local_batch_to_global`.
    """
    attr, data, repl = attribute_sharding(mesh), data_sharding(mesh), replicated_sharding(mesh)
    return jit_sharded(
        trainer.step,
        (attr, repl, repl, attr, data),
        (attr, attr),
        donate_argnums=(0,) if donate_state else (),
    )


def sharded_transformer_scan(trainer: Any, mesh: Mesh, *, donate_state: bool = False) -> Callable:
    """`trainer.scan_steps` over `mesh`: batches [S, B, *latent] split over "data" on axis 1,
    metrics {name: [S, K_pad]} split over "attr" on axis 1."""
    attr, repl = attribute_sharding(mesh), replicated_sharding(mesh)
    steps_data = NamedSharding(mesh, P(None, DATA_AXIS))
    steps_attr = NamedSharding(mesh, P(None, ATTR_AXIS))
    return jit_sharded(
        trainer.scan_steps,
        (attr, repl, repl, attr, steps_data),
        (attr, steps_attr),
        donate_argnums=(0,) if donate_state else (),
    )


def sharded_transformer_scan_indexed(trainer: Any, mesh: Mesh, *, donate_state: bool = False) -> Callable:
    """`trainer.scan_indexed` over `mesh`: latents [N, *latent] replicated (every device gathers
    its own rows), indices int32 [S, B] split over "data" on axis 1, metrics [S, K_pad] over "attr"."""
    attr, repl = attribute_sharding(mesh), replicated_sharding(mesh)
    steps_data = NamedSharding(mesh, P(None, DATA_AXIS))
    steps_attr = NamedSharding(mesh, P(None, ATTR_AXIS))
    return jit_sharded(
        trainer.scan_indexed,
        (attr, repl, repl, attr, repl, steps_data),
        (attr, steps_attr),
        donate_argnums=(0,) if donate_state else (),
    )


def sharded_classifier_step(trainer: Any, mesh: Mesh, *, donate_state: bool = False) -> Callable:
    """`trainer.step` (a `jaxedit.latent.ClassifierTrainer`) data-parallel over every mesh device.

    ``step(state replicated, latents [B, *latent], labels [B, A]) -> (state, {"loss", "accuracy"})``
    with the batch split over "data" (use a mesh with attr=1 to put every device on the data axis:
    ``make_mesh(1, None)``); XLA sums the gradients across "data".
    """
    data, repl = data_sharding(mesh), replicated_sharding(mesh)
    return jit_sharded(trainer.step, (repl, data, data), (repl, repl), donate_argnums=(0,) if donate_state else ())


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _manager(directory: str | Path, *, max_to_keep: int | None = None, read_only: bool = False):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options, item_names=(STATE_ITEM, LAYOUT_ITEM))


def save_sharded_checkpoint(
    directory: str | Path,
    step: int,
    state: Any,
    *,
    num_attributes: int,
    mesh: Mesh,
    max_to_keep: int | None = None,
) -> Path:
    """Save a padded, attr-sharded transformer state as orbax step ``step`` under ``directory``.

    Every process calls it with its shards; each writes its own part (no gather). Beside the arrays
    a small JSON records K (the real attribute count), the padded count and the mesh shape.
    Returns the step's directory.
    """
    import orbax.checkpoint as ocp

    layout = {
        "num_attributes": int(num_attributes),
        "padded_attributes": int(_leading_size(state) or num_attributes),
        "mesh": mesh_shape(mesh),
        "process_count": jax.process_count(),
    }
    with _manager(directory, max_to_keep=max_to_keep) as manager:
        manager.save(
            int(step),
            args=ocp.args.Composite(
                **{STATE_ITEM: ocp.args.StandardSave(state), LAYOUT_ITEM: ocp.args.JsonSave(layout)}
            ),
            force=True,
        )
        manager.wait_until_finished()
    return Path(directory).absolute() / str(int(step))


def checkpoint_steps(directory: str | Path) -> list[int]:
    """The steps saved under ``directory`` (ascending; empty if there is none)."""
    if not Path(directory).is_dir():
        return []
    with _manager(directory, read_only=True) as manager:
        return sorted(manager.all_steps())


def read_checkpoint_layout(directory: str | Path, step: int | None = None) -> tuple[int, dict]:
    """(step, layout dict) of a sharded checkpoint (the latest step by default)."""
    steps = checkpoint_steps(directory)
    if not steps:
        raise CheckpointError(f"{directory}: no sharded checkpoint here")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise CheckpointError(f"{directory}: no step {step} (have {steps})")
    path = Path(directory) / str(step) / LAYOUT_ITEM / "metadata"
    try:
        layout = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint layout ({error})") from error
    return step, layout


def restore_target(template: Any, mesh: Mesh, saved_rows: int) -> tuple[Any, bool]:
    """Abstract arrays (`jax.ShapeDtypeStruct` with shardings) to read a saved padded state into.

    Returns (target, direct): ``direct`` when the saved ``saved_rows`` divide over the mesh's attr
    axis (each process then reads only its own shards); otherwise the target is replicated and the
    caller re-pads (`_repad_on_mesh`).
    """
    direct = saved_rows % int(mesh.shape[ATTR_AXIS]) == 0
    read_sharding = attribute_sharding(mesh) if direct else replicated_sharding(mesh)

    def abstract(leaf):
        shape = tuple(np.shape(leaf))
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        if len(shape) == 0:
            return jax.ShapeDtypeStruct(shape, dtype, sharding=replicated_sharding(mesh))
        return jax.ShapeDtypeStruct((saved_rows,) + shape[1:], dtype, sharding=read_sharding)

    return jax.tree_util.tree_map(abstract, template), direct


def fit_restored_state(state: Any, num_attributes: int, saved_rows: int, direct: bool, mesh: Mesh) -> Any:
    """A state read by `restore_target`'s target, padded and attr-sharded for ``mesh``."""
    if direct and saved_rows == padded_num_attributes(num_attributes, mesh):
        return state
    return _repad_on_mesh(state, num_attributes, mesh)


def restore_sharded_checkpoint(
    directory: str | Path,
    template: Any,
    mesh: Mesh,
    *,
    step: int | None = None,
) -> tuple[int, Any, int]:
    """Restore a transformer state saved by `save_sharded_checkpoint` onto ``mesh``.

    ``template`` gives the tree structure and per-attribute shapes/dtypes (arrays or
    `jax.ShapeDtypeStruct`s, any leading size). The mesh may differ from the one that saved: the
    arrays are read straight into the new attr sharding (each process reading only its shards)
    when the saved padded size divides over it, and otherwise read replicated and re-padded.
    Returns ``(step, state padded for mesh and attr-sharded, num_attributes)``.
    """
    import orbax.checkpoint as ocp

    step, layout = read_checkpoint_layout(directory, step)
    num_attributes = int(layout["num_attributes"])
    saved_rows = int(layout["padded_attributes"])
    target, direct = restore_target(template, mesh, saved_rows)
    with _manager(directory, read_only=True) as manager:
        try:
            restored = manager.restore(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(target)}))
        except (ValueError, KeyError, TypeError, FileNotFoundError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise CheckpointError(f"{directory}/{step}: cannot restore onto this template ({message})") from error
    return step, fit_restored_state(restored[STATE_ITEM], num_attributes, saved_rows, direct, mesh), num_attributes


# ----------------------------------------------------------------------------------------------
# The training loop (jaxedit.training.transformers) on a mesh


class ShardedTrainCheckpointer(TrainCheckpointer):
    """`jaxedit.training.checkpoint.TrainCheckpointer` for a padded, attr-sharded transformer state.

    Same directory layout, commit checks and fallbacks; the differences: the state is saved as the
    sharded arrays it is (every process writes its own shards, nothing is gathered), the record
    also holds ``num_attributes``, ``padded_attributes`` and the mesh, the layout check compares the
    unpadded ``[K, ...]`` shapes (so a run may resume on another mesh or device count), and
    `restore(step, template)` reads into ``template``'s mesh (``template``: the padded sharded state
    from `shard_transformer_state`), re-padding when the attr axis size changed.
    """

    def __init__(self, directory: str | Path, mesh: Mesh, num_attributes: int, max_to_keep: int = 2):
        self.mesh = mesh
        self.num_attributes = int(num_attributes)
        super().__init__(directory, max_to_keep=max_to_keep)

    def _quarantine(self, entry: Path) -> Path:
        """Only process 0 renames a damaged step: all processes see the same shared directory."""
        if jax.process_index() == 0:
            return super()._quarantine(entry)
        return self.directory / f"damaged-{entry.name}"

    def _unpadded_layout(self, state: Any) -> list:
        return state_layout(jax.eval_shape(lambda tree: unpad_attributes(tree, self.num_attributes), state))

    def save(self, step: int, state: Any, record: dict) -> bool:
        import orbax.checkpoint as ocp

        if is_complete_step_dir(self.directory / str(step)):
            return False
        record = {
            **record,
            "step": int(step),
            "layout": self._unpadded_layout(state),
            "num_attributes": self.num_attributes,
            "padded_attributes": int(_leading_size(state) or self.num_attributes),
            "mesh": mesh_shape(self.mesh),
        }
        args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state), RECORD_ITEM: ocp.args.JsonSave(record)})
        self._manager.save(int(step), args=args, force=True)
        self._manager.wait_until_finished()
        return True

    def restore(self, step: int, template: Any) -> tuple[Any, dict]:
        import orbax.checkpoint as ocp

        path = self.directory / str(step)
        if not is_complete_step_dir(path):
            raise TrainingError(f"{path}: not a complete checkpoint")
        record = json.loads((path / RECORD_ITEM / "metadata").read_text())
        wanted = self._unpadded_layout(template)
        if record.get("layout") != wanted or record.get("num_attributes", self.num_attributes) != self.num_attributes:
            raise ConfigError(
                f"{path}: checkpoint of a different training setup ({_first_difference(record.get('layout'), wanted)}); "
                "resume with the same config, overrides and attributes as the interrupted run"
            )
        saved_rows = int(record.get("padded_attributes", self.num_attributes))
        target, direct = restore_target(template, self.mesh, saved_rows)
        try:
            restored = self._manager.restore(
                int(step), args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(target)})
            )
        except Exception as error:  # orbax raises many types for damaged or mismatched directories
            raise TrainingError(f"{path}: cannot restore ({type(error).__name__}: {error})".splitlines()[0]) from error
        state = fit_restored_state(restored[STATE_ITEM], self.num_attributes, saved_rows, direct, self.mesh)
        # A checkpoint written by the one-device TrainCheckpointer holds numpy arrays: place them.
        state = jax.tree_util.tree_map(_place, state, transformer_state_sharding(state, self.mesh))
        return state, record


def holds_sharded_checkpoints(directory: str | Path) -> bool:
    """Whether ``directory`` holds complete checkpoints written by `ShardedTrainCheckpointer`
    (a one-device resume must then read them with it, on `single_device_mesh()`)."""
    directory = Path(directory)
    if not directory.is_dir():
        return False
    for path in directory.iterdir():
        if is_complete_step_dir(path):
            try:
                record = json.loads((path / RECORD_ITEM / "metadata").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if "padded_attributes" in record:
                return True
    return False


def sharded_scan_advance(
    trainer: Any,
    mesh: Mesh,
    classifier_params: Any,
    correlation: Any,
    attributes: Sequence[int],
    latents: np.ndarray,
) -> Callable[[Any, np.ndarray], tuple[Any, dict]]:
    """The ``advance(state, indices int32 [S, B]) -> (state, {metric: numpy [S, K]})`` of the
    training loop (`jaxedit.training.loop.run_steps`) on ``mesh``.

    The state is the padded attr-sharded state; latents [N, *latent], the classifier params and the
    correlation are put on every device once; each call's indices are split over "data" (every
    process holding all indices feeds the rows of its devices). The metrics come back gathered to
    every process and stripped of the dummy attributes.
    """
    num = len(attributes)
    scan = sharded_transformer_scan_indexed(trainer, mesh)
    placed_classifier = replicate(classifier_params, mesh)
    placed_correlation = replicate(np.asarray(correlation, np.float32), mesh)
    placed_attributes = shard_per_attribute(np.asarray(attributes, np.int32), mesh)
    placed_latents = replicate(np.asarray(latents, np.float32), mesh)
    steps_data = NamedSharding(mesh, P(None, DATA_AXIS))

    def advance(state, indices):
        indices = np.asarray(indices, np.int32)
        _check_batch_size(indices.shape[1], mesh)
        state, metrics = scan(
            state, placed_classifier, placed_correlation, placed_attributes, placed_latents, _place(indices, steps_data)
        )
        return state, {name: value[:, :num] for name, value in gather_to_host(metrics).items()}

    return advance


def sharded_classifier_scan_indexed(trainer: Any, mesh: Mesh, *, donate_state: bool = False) -> Callable:
    """`trainer.scan_indexed` of a `ClassifierTrainer`, data-parallel over ``mesh``: state,
    latents [N, *latent] and labels [N, A] replicated, indices int32 [S, B] split over "data" on
    axis 1, metrics [S] replicated. Use a mesh with every device on "data" (``make_mesh(1, None)``)."""
    repl = replicated_sharding(mesh)
    steps_data = NamedSharding(mesh, P(None, DATA_AXIS))
    return jit_sharded(
        trainer.scan_indexed, (repl, repl, repl, steps_data), (repl, repl), donate_argnums=(0,) if donate_state else ()
    )


def classifier_scan_advance(trainer: Any, mesh: Mesh, latents: np.ndarray, labels: np.ndarray) -> Callable:
    """The training loop's ``advance(state, indices [S, B]) -> (state, {metric: [S]})`` for the
    classifier on ``mesh`` (state: `replicate`d once by the caller); each process feeds the index
    rows of its devices."""
    scan = sharded_classifier_scan_indexed(trainer, mesh)
    placed_latents = replicate(np.asarray(latents, np.float32), mesh)
    placed_labels = replicate(np.asarray(labels, np.float32), mesh)
    steps_data = NamedSharding(mesh, P(None, DATA_AXIS))

    def advance(state, indices):
        indices = np.asarray(indices, np.int32)
        _check_batch_size(indices.shape[1], mesh)
        state, metrics = scan(state, placed_latents, placed_labels, _place(indices, steps_data))
        return state, gather_to_host(metrics)

    return advance


def finite_rows_on_host(state: Any, num_attributes: int) -> np.ndarray:
    """bool [K]: which attributes' params are all finite (gathered from every process)."""
    return gather_to_host(all_finite_per_row(state.params))[:num_attributes]


__all__ = [
    "ATTR_AXIS",
    "DATA_AXIS",
    "initialize_distributed",
    "make_mesh",
    "single_device_mesh",
    "mesh_shape",
    "describe_mesh",
    "attribute_sharding",
    "data_sharding",
    "attribute_data_sharding",
    "replicated_sharding",
    "padded_num_attributes",
    "transformer_state_sharding",
    "batch_sharding",
    "replicated_tree_sharding",
    "pad_attributes",
    "unpad_attributes",
    "shard_transformer_state",
    "shard_per_attribute",
    "replicate",
    "shard_batch",
    "process_batch_rows",
    "host_local_batch_to_global",
    "gather_to_host",
    "gather_transformer_state",
    "jit_sharded",
    "sharded_transformer_step",
    "sharded_transformer_scan",
    "sharded_transformer_scan_indexed",
    "sharded_classifier_step",
    "save_sharded_checkpoint",
    "checkpoint_steps",
    "read_checkpoint_layout",
    "restore_target",
    "fit_restored_state",
    "restore_sharded_checkpoint",
    "ShardedTrainCheckpointer",
    "holds_sharded_checkpoints",
    "sharded_scan_advance",
    "sharded_classifier_scan_indexed",
    "classifier_scan_advance",
    "finite_rows_on_host",
]
