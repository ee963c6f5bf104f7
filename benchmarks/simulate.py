"""How fast are batched forward simulations, jaxmsk vs OpenSim vs MuJoCo?

1 s simulations at batch sizes 1 … 4096 with random time-varying excitations (one random
pattern per trajectory), of OpenSim's arm26 (2 DoF, 6 compliant-tendon De Groote–Fregly
muscles, imported with `jaxmsk.load_osim` from `arm26.osim` of the osim-rl package) and of
the built-in wrist (1 DoF, 5 compliant-tendon muscles); compile time apart, steady state the
median of repeated calls, blocking on results. Muscle-steps/s counts accepted solver steps
× muscles over all trajectories. In the same run: OpenSim's Manager simulating the same
arm26 (DeGrooteFregly2016 muscles, integrator accuracy 1e-5), and MuJoCo (C) rolling out
MyoSuite's myoelbow (1 DoF, 6 rigid-tendon muscles, `myo_sim`) for 1 s at its own time step.

Accuracy is measured too, each simulator against its own converged solution of the same
problem: OpenSim at accuracy 1e-5 against OpenSim at 1e-9, and jaxmsk at the benchmark's
tolerances against jaxmsk at rtol 1e-10 (the first 16 trajectories of each model). The
speed ratios are meaningful only where jaxmsk's error is no larger than OpenSim's.

    python -m benchmarks.simulate [--max-batch 4096]
                                  [--solver stabilized|tsit5|bosh3|kvaerno5]
                                  [--rtol 1e-3] [--controller i|pi] [--cpu-devices 2]
                                  [--dtype float32]
                                  [--out benchmarks/results/simulate.json]

Tsit5 (5th order, 6 evaluations per step) is `simulate(solver="explicit")`. Bosh3 (3rd order,
3 evaluations per step) suits these models better at everyday tolerances: arm26's step size
is limited by the stability of its stiff tendons, not by accuracy, and per evaluation Bosh3's
stability interval is longer. `stabilized` (`jaxmsk.StabilizedRK3`, 5 evaluations per step)
is stable on [−10.08, 0] of the real axis, where arm26's stiff tendon-force modes lie: 2.0
per evaluation against Bosh3's 0.84.

Across processes and devices (JAX's distributed runtime, `jaxmsk.distributed`):

    python -m jaxmsk.launch -n 2 --devices-per-process 2 -- \
        python -m benchmarks.simulate --distributed --batch 64

simulates one batch of arm26 split over every device of every process
(`jaxmsk.distributed.simulate_batch`), times it (compilation apart), checks it against the
same batch simulated in one process on one device in the same chunks (`--chunk`), and
prints on its last line
`distributed: processes=P devices=D batch=B max_abs_diff_vs_single=X` (X: the largest
difference in any coordinate, rad). OpenSim and MuJoCo are not run in this mode.

Needs opensim, osim-rl (`pip install --no-deps osim-rl==3.0.11`), mujoco and myo_sim.
Prints a markdown table naming the device and writes benchmarks/results/simulate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _excitation(ts, n_muscles, rng):
    phase = rng.uniform(0, 2 * np.pi, n_muscles)
    freq = rng.uniform(0.5, 2.0, n_muscles)
    # Co-contraction around 0.2 (as in the arm26 parity test): the arm moves through about a
    # radian without leaving the range its paths were fitted over (arm26 has no joint limits;
    # far outside that range the polynomial paths, and the dynamics, stop being meaningful).
    return 0.2 + 0.05 * np.sin(2 * np.pi * freq * ts[:, None] + phase)


ARM26_COORDINATES = ("r_shoulder_elev", "r_elbow_flex")


def _opensim_seconds(path, ts, exc, q0, repeats=3):
    """Median wall time (s) of OpenSim's `Manager.integrate` over 1 s at accuracy 1e-5, each
    repeat on a fresh model (`tests/helpers.opensim_prescribed_model`; model construction and
    equilibrium not timed)."""
    from tests.helpers import import_opensim, opensim_prescribed_model

    osim = import_opensim()  # (also quiets OpenSim's logger in spawned processes)
    times = []
    for _ in range(repeats):
        model, state, _ = opensim_prescribed_model(path, ARM26_COORDINATES, ts, exc, q0)
        manager = osim.Manager(model)
        manager.setIntegratorAccuracy(1e-5)
        manager.initialize(state)
        t0 = time.perf_counter()
        manager.integrate(float(ts[-1]))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _mujoco_seconds(repeats=5):
    import mujoco
    import myo_sim

    m = mujoco.MjModel.from_xml_path(str(myo_sim.get_xml_path("myoelbow")))
    d = mujoco.MjData(m)
    n_steps = int(round(1.0 / m.opt.timestep))
    times = []
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        mujoco.mj_resetData(m, d)
        ctrl = rng.uniform(0.1, 0.4, m.nu)
        t0 = time.perf_counter()
        for _ in range(n_steps):
            d.ctrl[:] = ctrl
            mujoco.mj_step(m, d)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n_steps, m.opt.timestep


def distributed(args) -> int:
    """--distributed: one arm26 batch over every device of every process, against one
    device."""
    if args.cpu_devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={args.cpu_devices}").strip()
    from jaxmsk import distributed as dist

    where = dist.initialize() if ("JAX_COORDINATOR_ADDRESS" in os.environ
                                  or "SLURM_JOB_ID" in os.environ) else None
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    from jax.experimental import multihost_utils

    import jaxmsk as msk
    from tests.helpers import arm26_dgf_osim

    where = where or dist.info()
    solver = {"tsit5": "explicit", "kvaerno5": "stiff", "stabilized": "stabilized"}.get(
        args.solver)
    if solver is None:
        import diffrax

        solver = diffrax.Bosh3()
    rtol, atol = args.rtol, args.rtol * 1e-2
    with tempfile.TemporaryDirectory() as tmp:
        model = msk.load_osim(arm26_dgf_osim(os.path.join(tmp, "arm26_dgf.osim")))
    ts = np.linspace(0.0, 1.0, 101)
    q0 = np.array([0.3, 0.8])
    rng = np.random.default_rng(0)  # the same batch in every process
    excs = np.stack([_excitation(ts, model.n_muscles, rng) for _ in range(args.batch)])
    kw = dict(solver=solver, rtol=rtol, atol=atol)
    t0 = time.perf_counter()
    kw_split = dict(kw, chunk=args.chunk)
    out = dist.simulate_batch(model, excs, ts, q0=q0, **kw_split)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = dist.simulate_batch(model, excs, ts, q0=q0, **kw_split)  # gathered: blocks
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    failed = int(np.sum(out.result != 0))
    # The reference: the same batch in this process alone, on its first device, in the same
    # chunks; and, for comparison, in one vmap of the whole batch.
    one = dist.batch_mesh(jax.local_devices()[:1])
    ref = dist.simulate_batch(model, excs, ts, q0=q0, mesh=one, chunk=args.chunk, **kw).q
    diff = float(np.max(np.abs(ref - out.q)))
    wide = dist.simulate_batch(model, excs, ts, q0=q0, mesh=one, **kw).q
    diff_wide = float(np.max(np.abs(wide - out.q)))
    worst = float(np.max(np.asarray(multihost_utils.process_allgather(np.array([diff])))
                         if where.process_count > 1 else diff))
    device = jax.devices()[0]
    name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    print(f"process {where.process_index}: {where.local_device_count} local device(s); "
          f"batch {args.batch} over {where.device_count}: {steady * 1e3:.1f} ms steady "
          f"(first call {first:.1f} s, compilation included), {failed} failed; "
          f"max |Δq| vs one device here {diff:.2e} rad (same chunks of {args.chunk}), "
          f"{diff_wide:.2e} rad (the whole batch in one vmap)", flush=True)
    if where.process_count > 1:
        multihost_utils.sync_global_devices("benchmarks.simulate: printed")
    if where.process_index == 0:
        time.sleep(0.2)  # (the other processes' lines first)
        print(f"# arm26, {name}, {args.dtype}, solver {args.solver}, rtol {rtol:g}, 1 s; "
              f"{args.batch / steady:.3g} trajectories/s over {where.device_count} devices")
        print(f"distributed: processes={where.process_count} devices={where.device_count} "
              f"batch={args.batch} max_abs_diff_vs_single={worst:.3g}", flush=True)
    return 0 if failed == 0 else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-batch", type=int, default=4096)
    ap.add_argument("--factor", type=int, default=4, help="batch size growth factor")
    ap.add_argument("--solver", choices=("tsit5", "bosh3", "kvaerno5", "stabilized"),
                    default="stabilized")
    ap.add_argument("--rtol", type=float, default=1e-3, help="jaxmsk's rtol (atol = rtol/100)")
    ap.add_argument("--controller", choices=("i", "pi"), default="i",
                    help="step-size control: i = simulate's default; pi = pcoeff 0.4, icoeff 0.3")
    ap.add_argument("--cpu-devices", type=int, default=1,
                    help="on a CPU, split each batch over this many XLA host devices (one "
                         "thread each; e.g. the number of cores) with shard_map; OpenSim and "
                         "MuJoCo still run one simulation on one core")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--models", default="arm26,wrist")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "simulate.json")
    ap.add_argument("--distributed", action="store_true",
                    help="join the processes started by `python -m jaxmsk.launch` or a cluster "
                         "manager (jax.distributed) and split one batch over all their devices")
    ap.add_argument("--batch", type=int, default=64, help="batch size of --distributed")
    ap.add_argument("--chunk", type=int, default=8,
                    help="--distributed: trajectories per vmap on a device (a fixed chunk makes "
                         "the result independent of the number of devices)")
    args = ap.parse_args(argv)
    if args.distributed:
        return distributed(args)
    if args.cpu_devices > 1:  # before JAX starts its CPU backend; no effect on accelerators
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={args.cpu_devices}").strip()

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import equinox as eqx
    import jax.numpy as jnp

    import jaxmsk as msk

    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    if len(jax.devices()) > 1:
        device_name += (f" × {len(jax.devices())} "
                        f"(batches of ≥ {len(jax.devices())} split over them)")
    ts = np.linspace(0.0, 1.0, 101)
    q0 = np.array([0.3, 0.8])
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        from tests.helpers import arm26_dgf_osim, opensim_model_simulation  # the oracle builders

        path = arm26_dgf_osim(os.path.join(tmp, "arm26_dgf.osim"))
        models = {"arm26": msk.load_osim(path), "wrist": msk.models.wrist()}
        exc0 = _excitation(ts, 6, rng)
        osim_s = _opensim_seconds(path, ts, exc0, q0)
        # OpenSim's error at accuracy 1e-5 against its own converged (1e-9) solution, from
        # untimed runs that integrate from output time to output time.
        osim_q, osim_ref = (opensim_model_simulation(path, ARM26_COORDINATES, ts, exc0, q0,
                                                     accuracy=acc) for acc in (1e-5, 1e-9))
        osim_err = float(np.max(np.abs(osim_q - osim_ref)))
        osim_parallel_s = None
        if args.cpu_devices > 1:
            # The same cores for OpenSim: one process per core, each simulating at once.
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(args.cpu_devices) as pool:
                runs = pool.starmap(_opensim_seconds, [(path, ts, exc0, q0)] * args.cpu_devices)
            osim_parallel_s = statistics.median(runs) / args.cpu_devices
    mj_s, mj_steps, mj_dt = _mujoco_seconds()
    import diffrax

    solver = {"tsit5": "explicit", "bosh3": diffrax.Bosh3(), "kvaerno5": "stiff",
              "stabilized": "stabilized"}[args.solver]
    rtol, atol = args.rtol, args.rtol * 1e-2
    gains = dict(pcoeff=0.4, icoeff=0.3) if args.controller == "pi" else {}
    print(f"# jaxmsk simulate benchmark — device {device_name}, {args.dtype}, "
          f"solver {args.solver}, rtol {rtol:g}, {args.controller.upper()} controller; "
          f"OpenSim arm26 1 s: {osim_s * 1e3:.1f} ms (max angle error "
          f"{osim_err:.2e} rad at accuracy 1e-5); MuJoCo myoelbow 1 s "
          f"({mj_steps} steps of {mj_dt * 1e3:.1f} ms): {mj_s * 1e3:.2f} ms")
    if osim_parallel_s is not None:
        print(f"# OpenSim with {args.cpu_devices} simulations at once, one per process: "
              f"{osim_parallel_s * 1e3:.1f} ms per trajectory; jaxmsk ratios against that are "
              f"the OpenSim ratios × {osim_parallel_s / osim_s:.2f}")

    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))

    def runner(q0, solver=solver, rtol=rtol, atol=atol, gains=gains):
        def batch(model, excs):
            tr = jax.vmap(lambda e: msk.simulate(model, e, jnp.asarray(ts), q0=jnp.asarray(q0),
                                                 solver=solver, rtol=rtol, atol=atol,
                                                 throw=False, **gains))(excs)
            return tr.q, tr.stats["num_accepted_steps"], tr.result

        one = eqx.filter_jit(batch)
        # Several devices: each runs its own solver loop on its share of the batch (no
        # per-step synchronisation). The model is closed over; check_vma=False: simulate's
        # eqx.error_if input checks are not written for shard_map's replication typing.
        spec = jax.sharding.PartitionSpec("batch")
        split = {}

        def run(model, excs):
            if len(devices) > 1 and excs.shape[0] % len(devices) == 0:
                if id(model) not in split:
                    split[id(model)] = jax.jit(jax.shard_map(
                        lambda e: batch(model, e), mesh=mesh, in_specs=spec, out_specs=spec,
                        check_vma=False))
                return split[id(model)](excs)
            return one(model, excs)
        return run

    def accuracy(model, start_q, n=16):
        """Max angle error (rad) at the benchmark's settings against rtol 1e-10 (Tsit5)."""
        excs = jnp.asarray(np.stack([_excitation(ts, model.n_muscles, np.random.default_rng(k))
                                     for k in range(n)]))
        q = runner(start_q)(model, excs)[0]
        ref = runner(start_q, "explicit", 1e-10, 1e-12, {})(model, excs)[0]
        return float(jnp.max(jnp.abs(q - ref)))

    rows = []
    for name in args.models.split(","):
        model = models[name]
        start_q = q0 if name == "arm26" else np.zeros(1)
        run = runner(start_q)
        err = accuracy(model, start_q)
        print(f"  {name}: max angle error {err:.2e} rad against rtol 1e-10", flush=True)
        batch = 1
        while batch <= args.max_batch:
            excs = jnp.asarray(np.stack([_excitation(ts, model.n_muscles, rng)
                                         for _ in range(batch)]))
            t0 = time.perf_counter()
            jax.block_until_ready(run(model, excs))
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                _, steps, result = jax.block_until_ready(run(model, excs))
                times.append(time.perf_counter() - t0)
            steady = statistics.median(times)
            per = steady / batch
            failed = int(np.sum(np.asarray(result._value) != 0)) if hasattr(result, "_value") else 0
            muscle_steps = float(np.sum(np.asarray(steps))) * model.n_muscles
            rows.append(dict(model=name, batch=batch, compile_s=first - steady, batch_s=steady,
                             trajectories_per_s=batch / steady, per_trajectory_s=per,
                             muscle_steps_per_s=muscle_steps / steady,
                             mean_steps=float(np.mean(np.asarray(steps))), failed=failed,
                             speedup_vs_opensim=osim_s / per, ratio_vs_mujoco=mj_s / per,
                             max_angle_error=err))
            print(f"  {name} batch {batch:5d}: {steady * 1e3:9.1f} ms ({per * 1e3:.3f} ms per "
                  f"trajectory, {np.mean(np.asarray(steps)):.0f} steps, {failed} failed)",
                  flush=True)
            batch *= args.factor
    lines = ["| model | batch | trajectories/s | per trajectory (ms) | muscle-steps/s "
             "| compile (s) | OpenSim arm26 ÷ per trajectory "
             "| MuJoCo myoelbow ÷ per trajectory |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    notes = [f"Max angle error against each simulator's own converged solution: OpenSim arm26 "
             f"(accuracy 1e-5) {osim_err:.2e} rad"] + [
        f"jaxmsk {name} ({args.solver}, rtol {rtol:g}, {args.controller.upper()}) {err:.2e} rad"
        for name, err in dict((r["model"], r["max_angle_error"]) for r in rows).items()]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['trajectories_per_s']:.3g} | "
                     f"{r['per_trajectory_s'] * 1e3:.3f} | {r['muscle_steps_per_s']:.3g} | "
                     f"{r['compile_s']:.1f} | {r['speedup_vs_opensim']:.1f}× | "
                     f"{r['ratio_vs_mujoco']:.2f}× |")
    table = "\n".join(lines) + "\n\n" + "; ".join(notes) + "."
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(dict(device=device_name, n_devices=len(devices),
                                       solver=args.solver, rtol=rtol, atol=atol,
                                       controller=args.controller,
                                       dtype=args.dtype, opensim_s=osim_s,
                                       opensim_max_angle_error=osim_err,
                                       opensim_parallel_per_trajectory_s=osim_parallel_s,
                                       mujoco_s=mj_s, rows=rows, table=table), indent=2))
    os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
