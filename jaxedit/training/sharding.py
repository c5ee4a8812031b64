"""The device mesh, where arrays go on it, and the one place update steps are jitted.

Everything here is plain JAX distribution (`jax.sharding`, `jax.distributed`): the same code runs
on one device (a 1 x 1 mesh), on N local devices and on several hosts.

The mesh has two named axes:

- ``"attr"`` (`ATTR_AXIS`): the attribute axis. The K transformers (their params and optimizer
  state, stacked along a leading axis ``[K, ...]``) are split over it. Attributes are independent
  problems, so this axis needs no communication at all in the training step.
- ``"data"`` (`DATA_AXIS`): the batch axis. A chunk's batch indices ``[S, B]`` are split over it
  on axis 1; gradients are summed across it by XLA (an all-reduce once per step).

`tree_shardings` derives the shardings of any tree from the mesh: leaves with a leading axis are
split over the axis named, everything else is replicated. A stacked transformer state's leading
axis must be a multiple of the attr axis size: `pad_attributes` pads K with copies of the first
attribute ("dummy" attributes whose updates are computed and thrown away) and `unpad_attributes`
strips them again. A batch size must be a multiple of the data axis size (`check_batch_size`).

`jit_step(fn, in_shardings, out_shardings)` compiles a pure step (`jaxedit.training.steps`) for the
mesh, donating its state argument, and `ChunkRunner` feeds it a chunk's batch indices; `place` turns host values every process holds into global
arrays (each process transfers only the pieces its devices hold) and `gather_to_host` brings
arrays back as numpy on every process.

On several hosts, call `initialize_distributed` first (before anything touches a device), then
build the mesh over all hosts' devices with `make_mesh`. `docs/scaling.md` has the commands for
multi-GPU machines, several hosts and TPU pod slices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxedit.errors import ConfigError, InputError

ATTR_AXIS = "attr"
DATA_AXIS = "data"


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


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (classifier params, constants, scalars)."""
    return NamedSharding(mesh, P())


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over "data", the rest replicated (batches ``[B, ...]``)."""
    return NamedSharding(mesh, P(DATA_AXIS))


def tree_shardings(tree: Any, mesh: Mesh, axis: str | None = None) -> Any:
    """The sharding of every leaf of `tree` on `mesh`: leaves with a leading axis are split over
    the mesh axis `axis` (`ATTR_AXIS` for per-attribute trees such as a stacked transformer state
    and its attribute ids, `DATA_AXIS` for batches); scalars, and everything when `axis` is None,
    are replicated. Leaves may be arrays or `jax.ShapeDtypeStruct`s."""
    split = NamedSharding(mesh, P(axis)) if axis is not None else replicated(mesh)
    return jax.tree.map(lambda leaf: split if np.ndim(leaf) >= 1 else replicated(mesh), tree)


def chunk_sharding(mesh: Mesh, axis: str) -> NamedSharding:
    """``[S, X, ...]`` arrays of a chunk (S steps) split over `axis` on their second axis: batch
    indices ``[S, B]`` over "data", metrics ``[S, K]`` over "attr"."""
    return NamedSharding(mesh, P(None, axis))


def padded_num_attributes(num_attributes: int, mesh: Mesh) -> int:
    """K rounded up to a multiple of the attr axis size."""
    size = int(mesh.shape[ATTR_AXIS])
    return -(-int(num_attributes) // size) * size


def leading_size(tree: Any) -> int | None:
    """The leading axis size of the first leaf that has one (None for a tree of scalars)."""
    for leaf in jax.tree.leaves(tree):
        if np.ndim(leaf) >= 1:
            return int(np.shape(leaf)[0])
    return None


def pad_attributes(tree: Any, size: int) -> Any:
    """Grow every ``[K, ...]`` leaf to ``[size, ...]`` with copies of attribute 0 (dummies).

    Dummy attributes are real, valid copies (their updates are finite and independent of the
    others under vmap); `unpad_attributes` drops them. Scalars are left as they are.
    """
    num = leading_size(tree)
    if num is None or num == size:
        return tree
    if num > size:
        raise InputError(f"cannot pad {num} attributes down to {size}")
    for path, leaf in jax.tree.leaves_with_path(tree):
        if np.ndim(leaf) >= 1 and np.shape(leaf)[0] != num:
            raise InputError(
                f"pad_attributes: leaf {jax.tree_util.keystr(path)} has shape {tuple(np.shape(leaf))}, "
                f"expected a leading axis of {num}"
            )

    def pad(leaf):
        if np.ndim(leaf) == 0:
            return leaf
        xp = jnp if isinstance(leaf, jax.Array) else np
        return xp.concatenate([leaf, xp.repeat(leaf[:1], size - num, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def unpad_attributes(tree: Any, num_attributes: int) -> Any:
    """Keep the first ``num_attributes`` rows of every ``[K_padded, ...]`` leaf."""
    return jax.tree.map(lambda leaf: leaf if np.ndim(leaf) == 0 else leaf[:num_attributes], tree)


def _place_leaf(leaf: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    host = np.asarray(leaf)  # through host memory once: cheaper than resharding a one-device array
    if jax.process_count() == 1:
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place(tree: Any, shardings: Any) -> Any:
    """Global arrays from host values that every process holds in full (the same on every
    process), laid out as `shardings` (a tree of shardings, or one for every leaf). Each process
    transfers only the pieces its own devices hold; arrays already laid out so are kept."""
    if isinstance(shardings, NamedSharding):
        return jax.tree.map(lambda leaf: _place_leaf(leaf, shardings), tree)
    return jax.tree.map(_place_leaf, tree, shardings)


def place_per_attribute(tree: Any, mesh: Mesh) -> Any:
    """A stacked ``[K, ...]`` tree (a transformer state, attribute ids) padded to
    `padded_num_attributes(K, mesh)` and split over "attr"."""
    num = leading_size(tree)
    if num is None:
        raise InputError("place_per_attribute: the tree has no array with a leading attribute axis")
    padded = pad_attributes(gather_to_host(tree), padded_num_attributes(num, mesh))
    return place(padded, tree_shardings(padded, mesh, ATTR_AXIS))


def check_batch_size(size: int, mesh: Mesh) -> None:
    """ConfigError unless a batch of `size` rows splits evenly over the data axis."""
    data = int(mesh.shape[DATA_AXIS])
    if size % data:
        raise ConfigError(f"batch size {size} is not a multiple of the mesh data axis ({data} devices)")


def gather_to_host(tree: Any) -> Any:
    """Every leaf as a full numpy array on every process (an all-gather across hosts if needed)."""

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(fetch, tree)


def jit_step(fn: Callable, in_shardings: Any, out_shardings: Any, *, donate: bool = True) -> Callable:
    """`fn(state, ...) -> (state, ...)` jitted for a mesh: inputs and outputs laid out as given
    (`jax.jit` with `NamedSharding`s partitions the program: a step vmapped over the attribute
    axis runs K/attr attributes per device with no communication along "attr"; indices split over
    "data" make XLA all-reduce the gradients across "data"). `donate`: the state (argument 0) is
    donated, so the caller must not use a state after passing it in."""
    return jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings, donate_argnums=(0,) if donate else ())


@dataclasses.dataclass(frozen=True)
class ChunkRunner:
    """The training loop's ``advance(state, indices int32 [S, B]) -> (state, {metric: numpy [S, ...]})``.

    `scan(state, *args, indices)` is a step jitted by `jit_step`; `args` are its other inputs,
    placed on `mesh` once. Each call splits the indices over "data" on axis 1 and brings the
    metrics back to every process as numpy, cut to the first `rows` entries of axis 1 (the real
    attributes of a padded state) when `rows` is given.
    """

    scan: Callable
    args: tuple
    mesh: Mesh
    rows: int | None = None

    def indices(self, indices: Any) -> jax.Array:
        """int32 [S, B] batch indices as a global array split over "data" (B a multiple of its size)."""
        indices = np.asarray(indices, np.int32)
        check_batch_size(indices.shape[1], self.mesh)
        return place(indices, chunk_sharding(self.mesh, DATA_AXIS))

    def __call__(self, state: Any, indices: Any) -> tuple[Any, dict]:
        state, metrics = self.scan(state, *self.args, self.indices(indices))
        metrics = gather_to_host(metrics)
        if self.rows is not None:
            metrics = {name: value[:, : self.rows] for name, value in metrics.items()}
        return state, metrics
