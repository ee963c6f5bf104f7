"""How fast are static equilibria and compliant-tendon derivatives, jaxmsk vs OpenSim?

For N = 10² … 10⁶ random physiological De Groote–Fregly muscles stacked in one module,
times (a) `DeGrooteFregly2016Muscle.equilibrium` (compliant tendon, bracketed Newton) and
(b) `norm_tendon_force_derivative`, each jit-compiled: compile time apart, steady state as
the median of repeated calls, always blocking on the results. In the same run, OpenSim 4.x
equilibrates the same kind of muscles (`Model::equilibrateMuscles` on a model with one
slider-mounted DeGrooteFregly2016Muscle per case) and its per-muscle time gives the ratio.
The first OpenSim cases are also solved by jaxmsk to show both compute the same equilibria.

    python -m benchmarks.muscle                 # full table, float64
    python -m benchmarks.muscle --max-n 10000   # quicker
    python -m benchmarks.muscle --float32       # single precision (GPU-friendly)

Writes benchmarks/results/muscle.json and prints a markdown table naming the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _random_cases(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fmax = rng.uniform(20.0, 5000.0, n)
    lopt = rng.uniform(0.02, 0.30, n)
    lts = lopt * rng.uniform(0.2, 6.0, n)
    alpha = rng.uniform(0.0, 0.6, n)
    act = rng.uniform(0.0, 1.0, n)
    width = lopt * np.sin(alpha)
    lm = np.maximum(lopt * rng.uniform(0.5, 1.6, n), 1.05 * width)
    lmt = lts * (1.0 + rng.uniform(0.0, 0.045, n)) + np.sqrt(lm**2 - width**2)
    ft = rng.uniform(0.05, 1.0, n)
    vmt = rng.uniform(-0.1, 0.1, n)
    return dict(fmax=fmax, lopt=lopt, lts=lts, alpha=alpha, act=act, lmt=lmt, ft=ft, vmt=vmt)


def _time(fn, *args, repeats: int):
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times)
    return first - steady, steady


def _opensim_equilibria(cases: dict, n: int, batch: int = 100):
    """OpenSim: equilibrate n muscles (in models of `batch` slider-mounted muscles each).

    Returns (seconds per muscle equilibrium, tendon forces). Model construction and
    `initSystem` are excluded from the time; setting the state (coordinates, activations),
    `equilibrateMuscles` and `realizeDynamics` (to read the forces) are in it.
    """
    import opensim as osim

    osim.Logger.setLevelString("error")
    forces = np.empty(n)
    elapsed = 0.0
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        model = osim.Model()
        model.setGravity(osim.Vec3(0))
        muscles, coords = [], []
        for i in idx:
            body = osim.Body(f"b{i}", 1.0, osim.Vec3(0), osim.Inertia(1))
            model.addBody(body)
            joint = osim.SliderJoint(f"j{i}", model.getGround(), osim.Vec3(0), osim.Vec3(0),
                                     body, osim.Vec3(0), osim.Vec3(0))
            joint.updCoordinate().setName(f"x{i}")
            model.addJoint(joint)
            mus = osim.DeGrooteFregly2016Muscle()
            mus.setName(f"m{i}")
            mus.set_max_isometric_force(float(cases["fmax"][i]))
            mus.set_optimal_fiber_length(float(cases["lopt"][i]))
            mus.set_tendon_slack_length(float(cases["lts"][i]))
            mus.set_pennation_angle_at_optimal(float(cases["alpha"][i]))
            mus.addNewPathPoint("o", model.getGround(), osim.Vec3(0))
            mus.addNewPathPoint("i", body, osim.Vec3(0))
            model.addForce(mus)
            muscles.append(mus)
            coords.append(joint)
        state = model.initSystem()
        coord_objs = [j.getCoordinate() for j in coords]
        muscles = [osim.DeGrooteFregly2016Muscle.safeDownCast(model.getMuscles().get(k))
                   for k in range(len(coords))]
        t0 = time.perf_counter()
        for k, i in enumerate(idx):
            coord_objs[k].setValue(state, float(cases["lmt"][i]), False)
            muscles[k].setActivation(state, float(cases["act"][i]))
        model.equilibrateMuscles(state)
        model.realizeDynamics(state)
        elapsed += time.perf_counter() - t0
        for k, i in enumerate(idx):
            forces[i] = muscles[k].getTendonForce(state)
    return elapsed / n, forces


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--opensim-n", type=int, default=1000, help="muscles OpenSim equilibrates")
    ap.add_argument("--opensim-batch", type=int, default=50, help="muscles per OpenSim model")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--float32", action="store_true",
                    help="single precision (default float64)")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "muscle.json")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import equinox as eqx
    import jax.numpy as jnp

    import jaxmsk as msk

    dtype = jnp.float32 if args.float32 else jnp.float64
    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', str(device))}"
    print(f"# jaxmsk muscle benchmark — device {device_name}, {dtype.__name__}, "
          f"{os.cpu_count()} CPU cores, jax {jax.__version__}, "
          f"{platform.processor() or platform.machine()}")

    @eqx.filter_jit
    def equilibrium(m, lmt, act):
        return m.equilibrium(lmt, act).tendon_force

    @eqx.filter_jit
    def derivative(m, lmt, vmt, act, ft):
        return m.norm_tendon_force_derivative(lmt, vmt, act, ft)

    def module(c):
        p = msk.MuscleParameters(*(jnp.asarray(c[k], dtype)
                                   for k in ("fmax", "lopt", "lts", "alpha")))
        return msk.DeGrooteFregly2016Muscle(p)

    # OpenSim on the same kind of cases; jaxmsk solves the very same ones for agreement.
    ref_cases = _random_cases(args.opensim_n, seed=1)
    osim_per_muscle, osim_forces = _opensim_equilibria(ref_cases, args.opensim_n,
                                                       args.opensim_batch)
    check = eqx.filter_jit(lambda m, lmt, act: m.equilibrium(lmt, act).tendon_force)  # own cache
    ours = np.asarray(check(module(ref_cases), jnp.asarray(ref_cases["lmt"], dtype),
                                  jnp.asarray(ref_cases["act"], dtype)))
    agree = float(np.max(np.abs(ours - osim_forces)
                         / np.maximum(osim_forces, 1e-3 * ref_cases["fmax"])))
    print(f"OpenSim {osim_per_muscle * 1e6:.1f} µs per muscle equilibrium over "
          f"{args.opensim_n} muscles; "
          f"jaxmsk agrees to max relative error {agree:.2e} on those muscles")

    rows = []
    n = 100
    while n <= args.max_n:
        c = _random_cases(n)
        m = module(c)
        lmt, act = jnp.asarray(c["lmt"], dtype), jnp.asarray(c["act"], dtype)
        vmt, ft = jnp.asarray(c["vmt"], dtype), jnp.asarray(c["ft"], dtype)
        eq_compile, eq_time = _time(equilibrium, m, lmt, act, repeats=args.repeats)
        d_compile, d_time = _time(derivative, m, lmt, vmt, act, ft, repeats=args.repeats)
        row = dict(
            n=n,
            equilibrium_compile_s=eq_compile,
            equilibrium_s=eq_time,
            equilibria_per_s=n / eq_time,
            derivative_compile_s=d_compile,
            derivative_s=d_time,
            derivatives_per_s=n / d_time,
            opensim_equilibrium_s=n * osim_per_muscle,
            speedup_vs_opensim=n * osim_per_muscle / eq_time,
        )
        rows.append(row)
        print(f"  N={n:>8d}: equilibrium {eq_time * 1e3:9.3f} ms, "
              f"derivative {d_time * 1e3:9.3f} ms", file=sys.stderr)
        n *= 10

    lines = [
        f"Device: {device_name} ({dtype.__name__}); OpenSim {osim_per_muscle * 1e6:.1f} µs per "
        f"muscle equilibrium (measured on {args.opensim_n} muscles in this run, scaled linearly "
        "to N: OpenSim equilibrates muscles one after another on one core).",
        "",
        "| N muscles | equilibria/s (jaxmsk) | compile (s) | equilibria/s (OpenSim) | ratio | "
        "compliant derivatives/s | compile (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['equilibria_per_s']:.3g} | {r['equilibrium_compile_s']:.2f} | "
            f"{1 / osim_per_muscle:.3g} | {r['speedup_vs_opensim']:.0f}× | "
            f"{r['derivatives_per_s']:.3g} | {r['derivative_compile_s']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(device=device_name, dtype=dtype.__name__, jax=jax.__version__,
                   opensim_seconds_per_equilibrium=osim_per_muscle,
                   opensim_agreement_max_rel_error=agree, rows=rows, table=table)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
