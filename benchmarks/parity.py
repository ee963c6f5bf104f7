"""How closely does jaxmsk reproduce OpenSim 4.x and MuJoCo? Measured, not asserted.

Prints the maximum errors behind README's parity table (the tests assert the thresholds):
every De Groote–Fregly curve on dense grids vs `opensim.DeGrooteFregly2016Muscle`; static
equilibria (compliant and rigid) on random physiological muscles vs `equilibrateMuscles`;
the compliant-tendon state derivative vs OpenSim's; MuJoCo's muscle gain, bias and
activation dynamics vs `mujoco.mju_muscle*`; forward simulations vs OpenSim's Manager: the
block on a slider, and arm26 with De Groote–Fregly muscles (1 s from a non-zero pose with
time-varying excitations, as in tests/test_arm26_parity.py) both with the same polynomial
geometry in OpenSim (`write_osim_polynomial_paths`) and with OpenSim's own wrapped paths.

    python -m benchmarks.parity [--cases 1000] [--skip-simulations]
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--skip-simulations", action="store_true")
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import mujoco

    import jaxmsk as msk
    from tests.helpers import (
        import_opensim,
        opensim_equilibrium,
        opensim_slider_muscle,
        random_physiological_cases,
    )

    osim = import_opensim()
    rows = []
    c, o = msk.DeGrooteCurves.opensim(), osim.DeGrooteFregly2016Muscle()
    grids = {
        "active force–length": (c.active_force_length, o.calcActiveForceLengthMultiplier,
                                (0.0, 2.0)),
        "passive force–length": (c.passive_force_length, o.calcPassiveForceMultiplier,
                                 (0.0, 2.0)),
        "force–velocity": (c.force_velocity, o.calcForceVelocityMultiplier, (-1.0, 1.0)),
        "force–velocity inverse": (c.force_velocity_inverse, o.calcForceVelocityInverseCurve,
                                   (0.0, 1.7943)),
        "tendon force–length": (c.tendon_force_length, o.calcTendonForceMultiplier,
                                (0.95, 1.08)),
        "tendon force–length inverse": (c.tendon_force_length_inverse,
                                        o.calcTendonForceLengthInverseCurve, (0.0, 5.0)),
    }
    for name, (ours, theirs, (lo, hi)) in grids.items():
        x = np.linspace(lo, hi, 10_001)
        err = np.max(np.abs(np.asarray(ours(jnp.asarray(x)))
                            - np.array([theirs(float(v)) for v in x])))
        rows.append((f"curve: {name} (10,001 points)", "max abs error", err))

    cases = random_physiological_cases(np.random.default_rng(0), args.cases)
    for tendon in ("compliant", "rigid"):
        m = msk.DeGrooteFregly2016Muscle(
            msk.MuscleParameters(cases["fmax"], cases["lopt"], cases["lts"], cases["alpha"]),
            tendon=tendon)
        e = m.equilibrium(cases["lmt"], cases["act"])
        ref = np.array([opensim_equilibrium(cases["fmax"][i], cases["lopt"][i], cases["lts"][i],
                                            cases["alpha"][i], cases["lmt"][i], cases["act"][i],
                                            rigid=tendon == "rigid")
                        for i in range(args.cases)])
        floor = 1e-3 * cases["fmax"]
        rows.append((f"equilibrium, {tendon} tendon ({args.cases} muscles): tendon force",
                     "max rel error",
                     np.max(np.abs(np.asarray(e.tendon_force) - ref[:, 2])
                            / np.maximum(np.abs(ref[:, 2]), floor))))
        rows.append((f"equilibrium, {tendon} tendon ({args.cases} muscles): fibre length",
                     "max rel error",
                     np.max(np.abs(np.asarray(e.fiber_length) - ref[:, 0]) / ref[:, 0])))

    # Compliant-tendon derivative at the OpenSim equilibrium states, perturbed.
    rng = np.random.default_rng(1)
    n = min(200, args.cases)
    errs = []
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(cases["fmax"][:n], cases["lopt"][:n],
                                                          cases["lts"][:n], cases["alpha"][:n]))
    act = np.maximum(cases["act"][:n], 0.1)
    ft = (np.asarray(m.equilibrium(cases["lmt"][:n], act).norm_tendon_force)
          * rng.uniform(0.9, 1.1, n))
    vmt = rng.uniform(-0.05, 0.05, n)
    ours = np.asarray(m.norm_tendon_force_derivative(cases["lmt"][:n], vmt, act, ft))
    for i in range(n):
        model, s, mus, coord = opensim_slider_muscle(cases["fmax"][i], cases["lopt"][i],
                                                     cases["lts"][i], cases["alpha"][i])
        coord.setValue(s, cases["lmt"][i])
        coord.setSpeedValue(s, vmt[i])
        mus.setActivation(s, act[i])
        mus.setNormalizedTendonForce(s, ft[i])
        model.realizeAcceleration(s)
        ref = mus.getStateVariableDerivativeValue(s, "normalized_tendon_force")
        # Only states whose fibre velocity lies in the force–velocity domain |ṽ| ≤ 1
        # (beyond ±10 v_max jaxmsk saturates where OpenSim does not).
        if abs(mus.getNormalizedFiberVelocity(s)) <= 1.0:
            errs.append(abs(ours[i] - ref) / max(abs(ref), 1e-6))
    rows.append((f"compliant-tendon d f̃T/dt ({len(errs)} states with |ṽM| ≤ 1)", "max rel error",
                 max(errs)))

    # MuJoCo muscle.
    mj = msk.MuJoCoMuscle.from_prm(np.array([0.75, 1.05, -1, 200, 0.5, 1.6, 1.5, 1.3, 1.2]),
                                   np.array([0.1, 0.3]), 10.0)
    lengths = rng.uniform(0.05, 0.35, 2000)
    vels = rng.uniform(-0.5, 0.5, 2000)
    prm = np.array([0.75, 1.05, -1, 200, 0.5, 1.6, 1.5, 1.3, 1.2])
    lr = np.array([0.1, 0.3])
    gain = np.array([mujoco.mju_muscleGain(l, v, lr, 10.0, prm) for l, v in zip(lengths, vels)])
    bias = np.array([mujoco.mju_muscleBias(l, lr, 10.0, prm) for l in lengths])
    rows.append(("MuJoCo mju_muscleGain (2,000 points)", "max abs error",
                 np.max(np.abs(np.asarray(jax.vmap(mj.gain)(lengths, vels)).ravel() - gain))))
    rows.append(("MuJoCo mju_muscleBias (2,000 points)", "max abs error",
                 np.max(np.abs(np.asarray(jax.vmap(mj.bias)(lengths)).ravel() - bias))))
    dyn = msk.MuJoCoActivation(0.01, 0.04, 0.0)
    ctrl, act = rng.uniform(-0.1, 1.1, 2000), rng.uniform(0, 1, 2000)
    ref = np.array([mujoco.mju_muscleDynamics(u, a, np.array([0.01, 0.04, 0.0]))
                    for u, a in zip(ctrl, act)])
    rows.append(("MuJoCo mju_muscleDynamics (2,000 points)", "max abs error",
                 np.max(np.abs(np.asarray(dyn.derivative(ctrl, act)) - ref))))

    if not args.skip_simulations:
        rows += _simulation_rows()

    print("| quantity | measure | jaxmsk vs oracle |")
    print("|---|---|---:|")
    for name, measure, err in rows:
        print(f"| {name} | {measure} | {err:.1e} |")
    return 0


def _simulation_rows():
    import tempfile

    import jax.numpy as jnp
    from test_arm26_parity import EXC, Q0, TASK_RANGES, TS
    from test_simulate import EXCITATIONS, block_model

    import jaxmsk as msk
    from tests.helpers import arm26_dgf_osim, opensim_block_simulation, opensim_model_simulation

    rows = []
    ts = np.linspace(0.0, 1.0, 101)
    for tendon in ("compliant", "rigid"):
        for kind, exc in EXCITATIONS.items():
            ref = opensim_block_simulation(ts, exc, rigid=tendon == "rigid")
            tr = msk.simulate(block_model(tendon), jnp.asarray(exc)[:, None], jnp.asarray(ts),
                              q0=jnp.array([0.31]), rtol=1e-9, atol=1e-11, throw=True)
            rows.append((f"block on a slider, {tendon} tendon, {kind} excitation, 1 s: position",
                         "max abs error (m)", float(np.max(np.abs(np.asarray(tr.q[:, 0]) - ref)))))
    with tempfile.TemporaryDirectory() as tmp:
        dgf = arm26_dgf_osim(f"{tmp}/arm26_dgf.osim")
        fits = {  # paths fitted over the task's range (as the test) and over the full ranges
            "task-range paths": msk.load_osim(dgf, ranges=TASK_RANGES, n_samples=2400,
                                              max_degree=14),
            "full-range paths": msk.load_osim(dgf),
        }
        for fit, model in fits.items():
            tr = msk.simulate(model, jnp.asarray(EXC), jnp.asarray(TS), q0=jnp.asarray(Q0),
                              solver="explicit", rtol=1e-8, atol=1e-10, throw=True)
            q = np.asarray(tr.q)
            targets = [("OpenSim's wrapped paths", dgf)]
            if fit == "task-range paths":
                poly = msk.io.write_osim_polynomial_paths(model, dgf, f"{tmp}/arm26_poly.osim")
                targets.insert(0, ("the same polynomial paths in OpenSim", poly))
            for label, path in targets:
                ref = opensim_model_simulation(path, model.coordinate_names, TS, EXC, Q0)
                err = np.max(np.abs(q - ref), axis=0)
                for name, e in zip(model.coordinate_names, err):
                    rows.append((f"arm26 DGF 1 s, jaxmsk {fit} vs {label}: {name}",
                                 "max abs error (rad)", float(e)))
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
