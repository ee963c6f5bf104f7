"""How fast does `jaxmsk.identify` calibrate arm26, and against a gradient-free calibrator?

The case (the arm26 rows of `experiments/identify`): the built-in arm26 (2 DoFs, 6
compliant-tendon muscles), per-muscle scales of F_max (±30 %), l_opt (±7 %) and l_ts (±3 %)
hidden in the subject (seed 0), four noiseless 2-s trials at 100 Hz made in closed loop by the
cohort's tracking controller (protocols free, fast, medium, free) and replayed open loop at
rtol 1e-8. 18 scales are fitted from the generic model (all 1), initial angles and velocities
as nuisance unknowns, Levenberg–Marquardt, float64.

    python -m benchmarks.identify [--cpu-devices 2] [--solver stabilized|stiff|explicit]
                                  [--shooting 0.5|none] [--max-steps 60]
                                  [--evaluations 150] [--no-race]

prints the device, compilation apart from the fit, seconds per iteration (median), the time
to the target (the fitted RMS angle error within `identify`'s stall limit, 3 × its noise
floor), the final loss and the largest relative errors of the scales. `--cpu-devices N`
splits the trials (and shooting segments) over N XLA host devices (`identify(mesh=...)`).

The race (unless `--no-race`): scipy's `dual_annealing` (no local search, the family of
calibrators CEINMS uses) and Levenberg–Marquardt on exactly the same objective (the 18 scales
only, initial states held at the truth, single shooting, same solver): the time each needs to
reach the annealer's final loss after `--evaluations` objective evaluations.

Across processes (JAX's distributed runtime):

    python -m jaxmsk.launch -n 2 --devices-per-process 2 -- \\
        python -m benchmarks.identify --distributed --quick

fits the same case with the trials split over every device of every process, then again on
one device of this process, and prints on its last line
`distributed identify: processes=P devices=D max_abs_diff_scales=X`. `--quick` makes the case
small (two 0.5-s trials, 3 iterations) for tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def _case(quick: bool):
    import jax

    import jaxmsk
    from experiments.identify.run import ARM26_RANGES, FIT, true_scales
    from jaxmsk._identify.identify import synthetic_trials

    arm = jaxmsk.models.arm26()
    truth = true_scales(arm.n_muscles, 0)
    subject = jaxmsk.scale_parameters(arm, **truth)
    n, duration = (2, 0.5) if quick else (4, 2.0)
    trials = synthetic_trials(subject, jax.random.key(0), n_trials=n, duration=duration,
                              protocol=("free", "fast", "medium", "free")[:n],
                              ranges=ARM26_RANGES)
    return arm, truth, trials, FIT


def _errors(res, truth, fit) -> dict:
    return {p: float(np.max(np.abs(res.scales[p] / truth[p] - 1))) for p in fit}


def _fmt(err: dict) -> str:
    short = {"max_isometric_force": "F_max", "optimal_fiber_length": "l_opt",
             "tendon_slack_length": "l_ts"}
    return " / ".join(f"{short.get(k, k)} {100 * v:.3g} %" for k, v in err.items())


def _time_to(history, target: float) -> float | None:
    for t, loss in history:
        if loss <= target:
            return t
    return None


def levers(arm, trials, fit, mesh) -> int:
    """Seconds per Jacobian of the objective (what one Levenberg–Marquardt iteration costs),
    compilation apart, for the levers side by side."""
    import dataclasses

    import equinox as eqx
    import jax
    import jax.flatten_util

    from jaxmsk._identify.identify import build_problem

    rows = [("stiff", False, None), ("stabilized", False, None), ("stabilized", True, None)]
    if mesh is not None:
        rows.append(("stabilized", True, mesh))
    print("| solver | forward mode | devices | Jacobian (s) | compile (s) |")
    print("|---|---|---:|---:|---:|")
    for solver, structured, m in rows:
        problem, theta0 = build_problem(
            arm, trials, fit, bounds=None, initial=None, emg_model=None, shooting_interval=None,
            fit_initial_state=True, q_sigma=np.radians(1.0), moment_sigma=0.1,
            defect_weight=10.0, solver=solver, rtol=1e-6, atol=1e-8, max_sim_steps=20_000,
            mesh=m)
        problem = dataclasses.replace(problem, structured=structured)
        flat, unravel = jax.flatten_util.ravel_pytree(theta0)
        jac = eqx.filter_jit(lambda f, pr, un=unravel: jax.jacfwd(lambda g: pr.residuals(un(g)))(f))
        t0 = time.perf_counter()
        jax.block_until_ready(jac(flat, problem))
        first = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(jac(flat, problem))
            times.append(time.perf_counter() - t0)
        steady = statistics.median(times)
        print(f"| {solver} | {'per unit' if structured else 'dense'} | "
              f"{1 if m is None else m.devices.size} | {steady:.2f} | {first - steady:.1f} |",
              flush=True)
    return 0


def distributed(args) -> int:
    from jaxmsk import distributed as dist

    where = dist.initialize() if ("JAX_COORDINATOR_ADDRESS" in os.environ
                                  or "SLURM_JOB_ID" in os.environ) else None
    import jax

    jax.config.update("jax_enable_x64", True)
    from jax.experimental import multihost_utils

    from jaxmsk._identify.identify import identify

    where = where or dist.info()
    arm, truth, trials, fit = _case(args.quick)
    steps = 3 if args.quick else args.max_steps
    shooting = None if args.shooting == "none" else float(args.shooting)
    kw = dict(solver=args.solver, rtol=1e-6, atol=1e-8, max_steps=steps, starts=1,
              shooting_interval=shooting, progress=False)
    t0 = time.perf_counter()
    res = identify(arm, trials, fit, mesh=dist.batch_mesh(), **kw)
    wall = time.perf_counter() - t0
    ref = identify(arm, trials, fit, **kw)  # this process alone, one device
    diff = max(float(np.max(np.abs(res.scales[p] - ref.scales[p]))) for p in fit)
    worst = float(np.max(np.asarray(multihost_utils.process_allgather(np.array([diff])))
                         if where.process_count > 1 else diff))
    print(f"process {where.process_index}: {where.local_device_count} local device(s); "
          f"{len(trials)} trials over {where.device_count} devices: {wall:.1f} s "
          f"({res.diagnostics['compile_s']:.1f} s compile), {res.diagnostics['steps']} "
          f"steps, loss {res.loss:.4g}; max |Δscale| vs one device here {diff:.2e}",
          flush=True)
    if where.process_count > 1:
        multihost_utils.sync_global_devices("benchmarks.identify: printed")
    if where.process_index == 0:
        time.sleep(0.2)
        print(f"distributed identify: processes={where.process_count} "
              f"devices={where.device_count} max_abs_diff_scales={worst:.3g}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-devices", type=int, default=1,
                    help="on a CPU, split the trials over this many XLA host devices")
    ap.add_argument("--solver", choices=("stabilized", "stiff", "explicit"),
                    default="stabilized")
    ap.add_argument("--shooting", default="none",
                    help="multiple-shooting interval (s) or 'none' (single shooting)")
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--evaluations", type=int, default=150,
                    help="dual_annealing's objective evaluations in the race")
    ap.add_argument("--target-loss", type=float, default=4e-4,
                    help="report the time to this loss too")
    ap.add_argument("--no-race", action="store_true")
    ap.add_argument("--levers", action="store_true",
                    help="only time one Jacobian of the objective per configuration, side by "
                         "side: solver, dense or per-unit forward mode, devices")
    ap.add_argument("--distributed", action="store_true",
                    help="join the processes of `python -m jaxmsk.launch` or a cluster manager "
                         "and split the trials over all their devices")
    ap.add_argument("--quick", action="store_true", help="small case (tests)")
    ap.add_argument("--dense", action="store_true",
                    help="forward mode through every unit in every direction of θ (identify's "
                         "Jacobian before the per-unit blocks), for comparison")
    args = ap.parse_args(argv)
    if args.cpu_devices > 1:  # before JAX starts its CPU backend
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                                   f"_device_count={args.cpu_devices}").strip()
    if args.distributed:
        return distributed(args)
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxmsk import distributed as dist
    from jaxmsk._identify.identify import STALL_FACTOR, identify, noise_floor

    device = jax.devices()[0]
    name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    n_dev = len(jax.devices())
    mesh = dist.batch_mesh() if n_dev > 1 else None
    arm, truth, trials, fit = _case(args.quick)
    shooting = None if args.shooting == "none" else float(args.shooting)
    print(f"# identify: arm26, {len(trials)} noiseless trials × {trials[0].ts[-1]:.1f} s, "
          f"{3 * arm.n_muscles} scales; {name} × {n_dev}, {os.cpu_count()} CPUs, float64, "
          f"jax {jax.__version__}", flush=True)
    print(f"# solver {args.solver}, rtol 1e-6, shooting {args.shooting}, "
          f"Levenberg–Marquardt, initial states fitted, "
          f"{'dense' if args.dense else 'per-unit'} forward-mode Jacobian", flush=True)
    if args.levers:
        return levers(arm, trials, fit, mesh)
    if args.dense:
        import dataclasses

        import jaxmsk._identify.identify as ident

        build = ident.build_problem

        def dense_problem(*a, **k):
            problem, theta0 = build(*a, **k)
            return dataclasses.replace(problem, structured=False), theta0

        ident.build_problem = dense_problem
    steps = 4 if args.quick else args.max_steps
    t0 = time.perf_counter()
    res = identify(arm, trials, fit, solver=args.solver, rtol=1e-6, atol=1e-8, max_steps=steps,
                   starts=1, shooting_interval=shooting, mesh=mesh, progress=False)
    wall = time.perf_counter() - t0
    d = res.diagnostics
    hist = d["history"]
    per_step = statistics.median(np.diff([t for t, _ in hist])) if len(hist) > 2 else float("nan")
    nq = sum(t.q.size for t in trials)
    floor = noise_floor([t.q for t in trials])
    # The loss at which the fitted RMS angle error equals identify's stall limit.
    target = 0.5 * nq * (STALL_FACTOR * floor / np.radians(1.0)) ** 2
    t_target = _time_to(hist, target)
    print(f"Levenberg–Marquardt: compile {d['compile_s']:.1f} s; {d['steps']} iterations, "
          f"{per_step:.2f} s each (median); fit {hist[-1][0]:.1f} s without compilation "
          f"({wall:.1f} s in all); {d['message']}", flush=True)
    print(f"  to the target (RMS ≤ {STALL_FACTOR:g} × noise floor {floor:.2g} rad, loss ≤ "
          f"{target:.3g}): " + (f"{t_target:.1f} s" if t_target is not None else "not reached"),
          flush=True)
    t_prev = _time_to(hist, args.target_loss)
    it_prev = next((i for i, (_, lo) in enumerate(hist) if lo <= args.target_loss), None)
    print(f"  to loss ≤ {args.target_loss:g} (where the 40-iteration implicit-solver fit of "
          "experiments/identify stopped, 0.06 / 1.11 / 0.95 % off): "
          + (f"{t_prev:.1f} s (iteration {it_prev})" if t_prev is not None else "not reached"),
          flush=True)
    print(f"  final loss {res.loss:.3g}, RMS {np.degrees(res.rms['q']):.2g}°; max |rel error| "
          f"{_fmt(_errors(res, truth, fit))}", flush=True)
    if args.no_race or args.quick:
        return 0
    # The race: the same objective for both (scales only, initial states at the truth).
    common = dict(fit_initial_state=False, shooting_interval=None, solver=args.solver,
                  rtol=1e-6, atol=1e-8, mesh=mesh, progress=False, starts=1)
    sa = identify(arm, trials, fit, method="dual_annealing", max_steps=args.evaluations,
                  **common)
    lm = identify(arm, trials, fit, max_steps=args.max_steps, **common)
    sa_final = sa.loss
    t_sa = _time_to(sa.diagnostics["history"], sa_final)
    t_lm = _time_to(lm.diagnostics["history"], sa_final)
    print(f"dual_annealing ({args.evaluations} evaluations, compile "
          f"{sa.diagnostics['compile_s']:.1f} s): final loss {sa_final:.4g} reached at "
          f"{t_sa:.1f} s of {sa.diagnostics['history'][-1][0]:.1f} s; max |rel error| "
          f"{_fmt(_errors(sa, truth, fit))}", flush=True)
    print(f"Levenberg–Marquardt, same objective (compile {lm.diagnostics['compile_s']:.1f} s): "
          + (f"passed that loss at {t_lm:.1f} s" if t_lm is not None else "never reached it")
          + f"; final loss {lm.loss:.3g} after {lm.diagnostics['steps']} iterations, "
          f"{lm.diagnostics['history'][-1][0]:.1f} s; max |rel error| "
          f"{_fmt(_errors(lm, truth, fit))}", flush=True)
    if t_lm is not None and t_sa:
        print(f"speed-up to the annealer's final loss: {t_sa / max(t_lm, 1e-9):.0f}×", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
