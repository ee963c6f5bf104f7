"""Several devices and several processes, on JAX's own distributed runtime.

One program runs in every process (SPMD). `initialize()` joins the processes through
`jax.distributed.initialize` (which reads SLURM and other cluster managers itself; jaxmsk adds
the `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` variables beside JAX's `JAX_COORDINATOR_ADDRESS`,
which `python -m jaxmsk.launch` sets for local processes). After it, `jax.devices()` lists the
devices of all processes; `batch_mesh()` is a one-axis `jax.sharding.Mesh` over them, and:

- `simulate_batch` splits a batch of simulations over the mesh (each device runs its own solver
  loop on its share, `jax.shard_map`; no per-step synchronisation) and returns the whole batch
  on every process;
- `my_items` says which items of a list (folds, seeds, subjects) this process takes, and
  `gather_objects` brings each process's results (anything JSON can hold) to all of them.

Without `initialize()` (one process) every function here works on the local devices, so the
same program runs on a laptop, on one GPU and on a cluster. On CPUs, collectives go through
gloo (set by `initialize`); `XLA_FLAGS=--xla_force_host_platform_device_count=D` gives a
process D host devices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DistributedInfo", "initialize", "info", "batch_mesh", "simulate_batch",
           "my_items", "gather_objects", "gather", "is_main_process", "broadcast_flag"]

BATCH_AXIS = "batch"


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands: `process_index` of `process_count`, its local devices and
    all devices (of every process)."""

    process_index: int
    process_count: int
    local_device_count: int
    device_count: int
    platform: str

    def __str__(self) -> str:
        return (f"process {self.process_index}/{self.process_count}, "
                f"{self.local_device_count} local of {self.device_count} {self.platform} "
                "devices")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name}={value!r} is not an integer; set "
                         "it to a whole number (or unset it)") from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> DistributedInfo:
    """Join this process to the others (`jax.distributed.initialize`), once.

    Arguments not given are read from `JAX_COORDINATOR_ADDRESS` ("host:port"),
    `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, and otherwise detected by JAX from the cluster
    manager (SLURM, Open MPI, cloud TPU). Call it before anything else touches JAX's devices.
    On CPU the collectives are set to gloo. A second call returns the same information.
    `kwargs` go to `jax.distributed.initialize` (e.g. `local_device_ids`,
    `initialization_timeout`).
    """
    if not jax.distributed.is_initialized():
        num_processes = num_processes if num_processes is not None else _env_int(
            "JAX_NUM_PROCESSES")
        process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
        if (num_processes is None) != (process_id is None):
            raise ValueError("initialize: give both the number of processes and this "
                             "process's id (JAX_NUM_PROCESSES and JAX_PROCESS_ID), or neither "
                             f"(got num_processes={num_processes}, process_id={process_id})")
        if num_processes is not None and not 0 <= process_id < num_processes:
            raise ValueError(f"initialize: process_id {process_id} must be in "
                             f"0..{num_processes - 1} (num_processes={num_processes})")
        try:  # before the backends start; harmless on accelerators
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except Exception:  # pragma: no cover - a jax without gloo: CPU collectives then fail
            pass
        try:
            jax.distributed.initialize(coordinator_address=coordinator_address,
                                       num_processes=num_processes, process_id=process_id,
                                       **kwargs)
        except ValueError as e:
            raise ValueError(
                f"initialize: {e}. Outside a cluster manager, start the processes with "
                "`python -m jaxmsk.launch -n N -- <command>`, or set JAX_COORDINATOR_ADDRESS "
                "(host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID in each "
                "process") from e
    return info()


def info() -> DistributedInfo:
    """This process's place among the processes (1 of 1 without `initialize`)."""
    return DistributedInfo(jax.process_index(), jax.process_count(), jax.local_device_count(),
                           jax.device_count(), jax.devices()[0].platform)


def is_main_process() -> bool:
    """True in process 0, the one that writes files."""
    return jax.process_index() == 0


def batch_mesh(devices: Sequence | None = None) -> jax.sharding.Mesh:
    """A one-axis mesh (axis "batch") over `devices` (default: every device of every
    process)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.array(devices), (BATCH_AXIS,))


def _global(x: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """A global array sharded along its first axis over `mesh`, from the whole array that
    every process holds."""
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(BATCH_AXIS))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _replicated(x, mesh: jax.sharding.Mesh) -> jax.Array:
    """A global array replicated over `mesh`, from the same value in every process."""
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _is_implicit(solver) -> bool:
    import diffrax

    return (solver is None or (isinstance(solver, str) and solver == "stiff")
            or isinstance(solver, diffrax.AbstractImplicitSolver))


def gather(tree):
    """Every leaf of `tree` (global arrays, sharded or not) as a NumPy array on every
    process."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


_SIMULATE_CACHE: dict = {}


def simulate_batch(model, excitation, ts, *, q0, qdot0=None,
                   mesh: jax.sharding.Mesh | None = None, chunk: int | None = None,
                   **simulate_kwargs):
    """`jaxmsk.simulate` of a batch of trajectories split over the devices of `mesh` (default
    `batch_mesh()`: all devices of all processes).

    Args:
        model: the `Model`, shared by the batch.
        excitation: (batch, time, muscles), the same whole array in every process.
        ts: (time,) output times (s).
        q0, qdot0: (dofs,) for all or (batch, dofs) per trajectory (qdot0 default zeros).
        chunk: trajectories integrated together (one `vmap`); a device runs its share as
            consecutive chunks. Default: its whole share at once. With a fixed chunk every
            trajectory goes through the same compiled code whatever the number of devices
            or processes (bitwise on CPU); otherwise the batch width each device sees can
            change the last bits of the rounding (arm26, 1 s: 1.8e-15 rad between 64
            trajectories in one `vmap` and 4 devices × 16). Rounding differences matter
            because adaptive step-size decisions can tip on them: `jax.vmap(simulate)` with
            q0 closed over (not batched) compiles the initial equilibrium differently and
            differs from this function by 1.4e-6 rad at rtol 1e-3 (within the tolerance).
        simulate_kwargs: to `simulate` (solver, rtol, atol, max_steps, ...); `throw` is False
            here, so a run that fails is marked in `result` instead of raising in one device.

    Returns:
        The `Trajectory` of the whole batch (leaves with a leading batch axis; `result`
        as the integer diffrax result codes, 0 = success), as NumPy arrays on every process.
        Trajectories whose solver stopped are listed in a RuntimeWarning.
        A batch that does not divide among the devices (times `chunk`) is padded by
        repeating its last trajectory; the padding is dropped.
    """
    import equinox as eqx

    from jaxmsk._simulate import simulate

    mesh = batch_mesh() if mesh is None else mesh
    excitation = np.asarray(excitation)
    if excitation.ndim != 3:
        raise ValueError(f"simulate_batch: excitation must be (batch, time, muscles), got "
                         f"shape {excitation.shape}; for one trajectory call jaxmsk.simulate")
    n = excitation.shape[0]
    dofs = model.n_dofs
    if qdot0 is None:
        qdot0 = np.zeros(dofs)
    q0 = np.broadcast_to(np.asarray(q0, dtype=float), (n, dofs))
    qdot0 = np.broadcast_to(np.asarray(qdot0, dtype=float), (n, dofs))
    if "throw" in simulate_kwargs and simulate_kwargs["throw"]:
        raise ValueError("simulate_batch: throw=True is not supported (a failure would stop "
                         "one device's loop); read the result codes instead")
    simulate_kwargs = {**simulate_kwargs, "throw": False}
    n_dev = mesh.devices.size
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"simulate_batch: chunk must be a positive integer or None, got "
                         f"{chunk!r}")
    pad = (-n) % (n_dev * (chunk or 1))
    if pad:
        excitation = np.concatenate([excitation, np.repeat(excitation[-1:], pad, 0)])
        q0 = np.concatenate([q0, np.repeat(q0[-1:], pad, 0)])
        qdot0 = np.concatenate([qdot0, np.repeat(qdot0[-1:], pad, 0)])
    dtype = jnp.zeros(()).dtype  # float64 under x64, float32 otherwise
    ts = jnp.asarray(ts, dtype)
    arrays, static = eqx.partition(model, eqx.is_array)

    def local(arrays, e, q, qd):
        m = eqx.combine(arrays, static)
        many = jax.vmap(lambda e1, q1, qd1: simulate(m, e1, ts, q0=q1, qdot0=qd1,
                                                     **simulate_kwargs))
        if chunk is None or chunk >= e.shape[0]:
            out = many(e, q, qd)
        else:
            split = lambda x: x.reshape(x.shape[0] // chunk, chunk, *x.shape[1:])  # noqa: E731
            out = jax.lax.map(lambda xs: many(*xs), (split(e), split(q), split(qd)))
            out = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)
        return eqx.tree_at(lambda t: t.result, out, out.result._value)

    spec = jax.sharding.PartitionSpec(BATCH_AXIS)
    implicit = _is_implicit(simulate_kwargs.get("solver"))
    key = (id(static), tuple(sorted((k, repr(v)) for k, v in simulate_kwargs.items())),
           mesh.devices.shape, tuple(d.id for d in mesh.devices.flat), ts.shape,
           excitation.shape[1:], str(dtype), chunk)
    fn = _SIMULATE_CACHE.get(key)
    if fn is None:
        if implicit:
            # lineax (0.1.1, the implicit solvers' linear solves) rejects vectors typed with
            # shard_map's manual mesh (lineax issue #185): the batch is partitioned by XLA
            # instead (jit with sharded inputs and outputs). The devices then step together
            # (the loop ends when every trajectory has), which costs a collective per step.
            sharding = jax.sharding.NamedSharding(mesh, spec)
            replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            fn = jax.jit(local, in_shardings=(replicated, sharding, sharding, sharding),
                         out_shardings=sharding)
        else:
            # Each device runs its own solver loop on its share (no per-step collective).
            # check_vma=False: simulate's eqx.error_if input checks are not written for
            # shard_map's replication typing. The model's arrays are replicated.
            fn = jax.jit(jax.shard_map(local, mesh=mesh,
                                       in_specs=(jax.sharding.PartitionSpec(), spec, spec, spec),
                                       out_specs=spec, check_vma=False))
        _SIMULATE_CACHE[key] = fn
    arrays = jax.tree.map(lambda x: _replicated(x, mesh), arrays)
    g = [_global(x.astype(dtype), mesh) for x in (excitation, q0, qdot0)]
    out = gather(fn(arrays, *g))
    out = jax.tree.map(lambda x: x[:n] if np.ndim(x) and x.shape[0] == n + pad else x, out)
    failed = np.flatnonzero(np.asarray(out.result) != 0)
    if failed.size:
        import warnings

        warnings.warn(f"simulate_batch: {failed.size} of {n} simulations stopped before "
                      f"ts[-1] (trajectories {failed[:10].tolist()}"
                      f"{' ...' if failed.size > 10 else ''}; diffrax result codes in "
                      "`result`); their states after the stop are not a solution. Raise "
                      "max_steps or change the solver/tolerances.", RuntimeWarning,
                      stacklevel=2)
    beyond = np.flatnonzero(np.any(np.asarray(out.path_domain_excursion) > 0, axis=-1))
    if beyond.size:
        import warnings

        warnings.warn(f"simulate_batch: {beyond.size} of {n} trajectories leave the box the "
                      f"muscle paths were fitted over (trajectories {beyond[:10].tolist()}"
                      f"{' ...' if beyond.size > 10 else ''}; see `path_domain_excursion`); "
                      "there the paths extrapolate and the motion may be wrong.",
                      RuntimeWarning, stacklevel=2)
    return out


def my_items(items: Sequence) -> list:
    """The items of `items` this process takes (round robin: item i goes to process
    i mod process_count), in order."""
    p, k = jax.process_count(), jax.process_index()
    return [x for i, x in enumerate(items) if i % p == k]


def gather_objects(obj) -> list:
    """Each process's `obj` (anything `json.dumps` takes), as the list over processes, on every
    process. Collective: every process must call it, in the same order."""
    if jax.process_count() == 1:
        return [json.loads(json.dumps(obj))]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32)))
    width = int(sizes.max())
    padded = np.zeros(width, np.uint8)
    padded[:data.size] = data
    every = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(bytes(every[i, :int(sizes.ravel()[i])]).decode())
            for i in range(every.shape[0])]


def broadcast_flag(flag: bool) -> bool:
    """Process 0's `flag` on every process (e.g. whether to go on)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.array(bool(flag))))
