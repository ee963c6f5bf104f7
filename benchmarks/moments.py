"""Per-pose cost of muscle lengths, moment arms, forces and joint moments for the 80-muscle
walking model (data/opensim-walking), jaxmsk under vmap beside OpenSim's own loop.

jaxmsk: `load_emg_driven_model` on both legs' 80 muscles over their 10 coordinates (hip ×3,
knee, ankle per side), OpenSim's FunctionBasedPaths read as one polynomial. Timed under
`jax.jit(jax.vmap(...))` at each batch size, compilation apart, results blocked on:
  - `paths`: lengths and moment arms (80 × 10) per pose;
  - `moments`: the same plus rigid-tendon forces (De Groote–Fregly 2016) at given activations
    and joint moments rᵀF.
OpenSim 4.6, one pose at a time as a user's script does it: set the coordinates, realise
positions, `getLength` of every muscle and `computeMomentArm` of every muscle about every
coordinate it crosses, for the FunctionBasedPath model and the original GeometryPath model.

    python -m benchmarks.moments [--batches 1,100,10000] [--opensim-poses 20]

Prints the table naming the device and writes benchmarks/results/moments.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import jax
import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "opensim-walking"
COORDS = [f"{c}_{s}" for s in ("r", "l") for c in ("hip_flexion", "hip_adduction",
                                                     "hip_rotation", "knee_angle", "ankle_angle")]


def _best(fn, *args, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def _opensim(model_file, paths, muscles, q, crossed):
    import opensim as osim

    from jaxmsk.io._osim_pose import pose_constraints, set_pose
    from jaxmsk.moments._load import opensim_model_with_paths

    osim.Logger.setLevelString("error")
    m, s = opensim_model_with_paths(osim, model_file, paths)
    cs = {c: m.getCoordinateSet().get(c) for c in COORDS}
    ms = [m.getMuscles().get(n) for n in muscles]
    constraints = pose_constraints(m)
    t0 = time.perf_counter()
    for qi in q:
        set_pose(m, s, [cs[c] for c in COORDS], qi, constraints)
        [x.getLength(s) for x in ms]
        [[x.computeMomentArm(s, cs[c]) for c in crossed[n]] for x, n in zip(ms, muscles)]
    return (time.perf_counter() - t0) / len(q)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,100,10000")
    ap.add_argument("--opensim-poses", type=int, default=20)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    args = ap.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from jaxmsk.moments import MomentParameters, load_emg_driven_model

    warnings.filterwarnings("ignore", message=".*nColumns.*")
    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    t0 = time.perf_counter()
    # Every muscle is "driven" by one channel per muscle name: the model then keeps all 80.
    import opensim as osim

    osim.Logger.setLevelString("error")
    source = osim.Model(str(DATA / "subject_walk_scaled.osim"))  # kept alive while read
    muscle_set = source.getMuscles()
    names = [muscle_set.get(i).getName() for i in range(muscle_set.getSize())]
    model, info = load_emg_driven_model(
        DATA / "subject_walk_scaled.osim", names, mapping={n: [n] for n in names},
        coordinates=COORDS, paths=DATA / "subject_walk_scaled_FunctionBasedPathSet.xml")
    load_s = time.perf_counter() - t0
    n_m = len(model.muscle_names)
    params = MomentParameters.nominal(n_m, n_m)
    muscles = model.scaled_muscles(params)
    box = np.asarray(model.path.domain)
    rng = np.random.default_rng(0)
    f = jnp.result_type(float)

    def paths_fn(q):
        return jax.vmap(model.path.length_and_moment_arms)(q)

    def moments_fn(q, qdot, a):
        lengths, arms = jax.vmap(model.path.length_and_moment_arms)(q)
        v = -jnp.einsum("tmd,td->tm", arms, qdot)
        force = jax.vmap(lambda l, vv, aa: muscles._rigid_state(l, vv, aa).tendon_force)(
            lengths, v, a)
        return jnp.einsum("tmd,tm->td", arms, force)

    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        q = jnp.asarray(rng.uniform(box[:, 0], box[:, 1], (b, len(COORDS))), f)
        qdot = jnp.asarray(rng.normal(0, 2, (b, len(COORDS))), f)
        a = jnp.asarray(rng.uniform(0, 1, (b, n_m)), f)
        for label, fn, fargs in (("paths", paths_fn, (q,)), ("moments", moments_fn,
                                                           (q, qdot, a))):
            jitted = jax.jit(fn)
            t0 = time.perf_counter()
            compiled = jitted.lower(*fargs).compile()
            compile_s = time.perf_counter() - t0
            best = _best(compiled, *fargs)
            rows.append(dict(what=label, batch=b, compile_s=round(compile_s, 3),
                             us_per_pose=best / b * 1e6, ms_per_call=best * 1e3))
    crossed = {m: info["paths"][m]["coordinates"] for m in model.muscle_names}
    q = rng.uniform(box[:, 0], box[:, 1], (args.opensim_poses, len(COORDS)))
    osim_rows = []
    for label, paths in (("FunctionBasedPath", DATA / "subject_walk_scaled_FunctionBasedPathSet"
                          ".xml"), ("GeometryPath", None)):
        per_pose = _opensim(DATA / "subject_walk_scaled.osim", paths, model.muscle_names, q,
                            crossed)
        osim_rows.append(dict(paths=label, us_per_pose=per_pose * 1e6))
    n_arms = sum(len(v) for v in crossed.values())
    lines = [f"Device {device_name}, {args.dtype}; {n_m} muscles over {len(COORDS)} coordinates "
             f"({n_arms} muscle–coordinate moment arms), {len(model.path.exponents)} monomials; "
             f"model loaded in {load_s:.1f} s.", "",
             "| jaxmsk (vmap) | batch | compile (s) | per call (ms) | per pose (µs) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['batch']} | {r['compile_s']:.2f} | {r['ms_per_call']:.3f} | "
              f"{r['us_per_pose']:.2f} |" for r in rows]
    lines += ["", "| OpenSim 4.6 loop (lengths + computeMomentArm) | per pose (µs) |", "|---|---|"]
    lines += [f"| {r['paths']} | {r['us_per_pose']:.0f} |" for r in osim_rows]
    print("\n".join(lines))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    tmp = out / "moments.json.tmp"
    tmp.write_text(json.dumps(dict(device=device_name, dtype=args.dtype, jaxmsk=rows,
                                   opensim=osim_rows, load_s=load_s), indent=2))
    tmp.replace(out / "moments.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
