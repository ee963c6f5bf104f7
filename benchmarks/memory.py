"""Memory of gradients through long simulations: 10 s at 1 kHz output (10,001 samples).

For the built-in wrist and arm26 (and `leg`: the walking model's right leg, 40 muscles over
5 coordinates, its FunctionBasedPaths), the gradient of a tracking loss with respect to all
excitations (10,001 × n_muscles) and every model parameter is taken through `simulate`
with each of diffrax's reverse-mode adjoints:

- `recursive`: `RecursiveCheckpointAdjoint()` (simulate's default; diffrax picks the number
  of checkpoints from `max_steps`, binomial checkpointing);
- `recursive-K`: `RecursiveCheckpointAdjoint(checkpoints=K)`, K chosen;
- `backsolve`: `BacksolveAdjoint()` (the continuous adjoint ODE solved backwards: memory
  independent of the number of steps, gradients only as accurate as that backward solve).

Each case runs in a fresh subprocess; the figure reported is the process's peak resident
memory (ru_maxrss) minus its peak just before the call (after imports, model loading and
compilation), for 10 s and for 1 s at 1 kHz to show how memory grows with duration. The
gradients of the other adjoints are compared with `recursive`'s (largest relative
difference over the excitation gradient).

    python -m benchmarks.memory [--solver explicit|stabilized|stiff] [--models wrist,arm26,leg]
                                [--adjoints recursive,recursive-100,backsolve]

Prints a table naming the device and writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import equinox as eqx, jax.numpy as jnp, numpy as np
import jaxmsk as msk

import diffrax

name, seconds, solver, adjoint_name = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
max_steps = int(sys.argv[7])
if adjoint_name == "recursive":
    adjoint = diffrax.RecursiveCheckpointAdjoint()
elif adjoint_name.startswith("recursive-"):
    adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=int(adjoint_name.split("-")[1]))
elif adjoint_name == "backsolve":
    adjoint = diffrax.BacksolveAdjoint()
else:
    raise SystemExit(f"unknown adjoint {adjoint_name!r}")
if name == "leg":  # the walking model's right leg (data/opensim-walking), 40 muscles
    from pathlib import Path
    data = Path(sys.argv[6]) / "data" / "opensim-walking"
    model = msk.load_osim(data / "subject_walk_scaled.osim",
                          ["hip_flexion_r", "hip_adduction_r", "hip_rotation_r",
                           "knee_angle_r", "ankle_angle_r"],
                          paths=data / "subject_walk_scaled_FunctionBasedPathSet.xml")
else:
    model = getattr(msk.models, name)()
n = int(round(seconds * 1000)) + 1
ts = jnp.linspace(0.0, seconds, n)
rng = np.random.default_rng(0)
phase = rng.uniform(0, 2 * np.pi, model.n_muscles)
exc = jnp.asarray(0.2 + 0.1 * np.sin(2 * np.pi * 0.7 * np.asarray(ts)[:, None] + phase))
q0 = jnp.array([0.3, 0.8]) if name == "arm26" else jnp.zeros(model.n_dofs)
target = jnp.zeros((n, model.n_dofs))

def loss(both):  # (filter_grad differentiates its first argument: both together)
    model, exc = both
    q = msk.simulate(model, exc, ts, q0=q0, solver=solver, rtol=1e-5, atol=1e-7,
                     max_steps=max_steps, adjoint=adjoint, throw=True).q
    return jnp.mean((q - target) ** 2)

grad = eqx.filter_jit(eqx.filter_grad(loss))
grad.lower((model, exc)).compile()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
try:
    g = grad((model, exc))
    jax.block_until_ready(g)
except Exception:  # (the solver stopped: say where and why, not equinox's traceback)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = msk.simulate(model, exc, ts, q0=q0, solver=solver, rtol=1e-5, atol=1e-7,
                             max_steps=max_steps)
    if probe.result == diffrax.RESULTS.successful:
        raise
    from jaxmsk._simulate import _reason
    raise SystemExit(f"RuntimeError: the simulation stopped at t = "
                     f"{float(probe.time_reached):.4g} s of {seconds:g} s: "
                     f"{_reason(probe.result)} (max_steps={max_steps})") from None
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
finite = all(bool(jnp.all(jnp.isfinite(x)))
             for x in jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_array)))
np.save(sys.argv[5], np.asarray(g[1]))
print(json.dumps(dict(model=name, seconds=seconds, samples=n, peak_rss_bytes=peak,
                      rss_before_bytes=before, grad_s=elapsed, adjoint=adjoint_name,
                      finite=finite)))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solver", choices=("explicit", "stabilized", "stiff"), default="explicit")
    ap.add_argument("--models", default="wrist,arm26",
                    help="comma-separated: wrist, arm26, leg (the right leg of "
                         "data/opensim-walking's 80-muscle model: 5 coordinates, 40 muscles, "
                         "its FunctionBasedPaths; needs opensim to load)")
    ap.add_argument("--adjoints", default="recursive,recursive-100,backsolve")
    ap.add_argument("--durations", default="1,10", help="seconds at 1 kHz")
    ap.add_argument("--max-steps", type=int, default=200_000,
                    help="solver steps allowed per simulation (default 200000)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = ap.parse_args(argv)
    import jax

    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    import tempfile

    import numpy as np

    rows = []
    adjoints = [a for a in args.adjoints.split(",") if a]
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in args.models.split(",") if m]:
            for seconds in [float(x) for x in args.durations.split(",")]:
                ref = None
                for adjoint in adjoints:
                    grad_file = os.path.join(tmp, f"{name}_{seconds}_{adjoint}.npy")
                    out = subprocess.run([sys.executable, "-c", CHILD, name, str(seconds),
                                          args.solver, adjoint, grad_file,
                                          str(Path(__file__).resolve().parents[1]),
                                          str(args.max_steps)],
                                         capture_output=True, text=True)
                    if out.returncode != 0:
                        error = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
                        error = error[-2] if len(error) > 1 and error[-1].startswith(
                            "For simplicity") else (error[-1] if error else "failed")
                        for ln in out.stderr.splitlines():
                            if ln.startswith(("TypeError", "ValueError", "RuntimeError")):
                                error = ln
                        print(f"  {name} {seconds:4g} s {adjoint}: FAILED: {error}",
                              flush=True)
                        rows.append(dict(model=name, seconds=seconds, adjoint=adjoint,
                                         error=error))
                        continue
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    g = np.load(grad_file)
                    if ref is None:
                        ref = g
                    row["max_rel_diff_vs_first"] = float(
                        np.max(np.abs(g - ref)) / max(np.max(np.abs(ref)), 1e-300))
                    rows.append(row)
                    print(f"  {name} {seconds:4g} s {adjoint}: peak RSS "
                          f"{row['peak_rss_bytes'] / 2**20:.0f} MiB (+"
                          f"{(row['peak_rss_bytes'] - row['rss_before_bytes']) / 2**20:.0f} MiB "
                          f"during the gradient), {row['grad_s']:.1f} s, finite: "
                          f"{row['finite']}, gradient vs {adjoints[0]}: "
                          f"{row['max_rel_diff_vs_first']:.1e}", flush=True)
    lines = [f"Device {device_name}, float64, solver {args.solver}, rtol 1e-5, gradient of a "
             "tracking loss w.r.t. all excitations and parameters.", "",
             "| model | duration | adjoint | peak RSS (MiB) | RSS growth during grad (MiB) "
             f"| grad time (s) | excitation gradient vs {adjoints[0]} (max rel) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['seconds']:g} s | {r['adjoint']} | failed: "
                         f"{r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['seconds']:g} s | {r['adjoint']} | "
                     f"{r['peak_rss_bytes'] / 2**20:.0f} | "
                     f"{(r['peak_rss_bytes'] - r['rss_before_bytes']) / 2**20:.0f} | "
                     f"{r['grad_s']:.1f} | {r['max_rel_diff_vs_first']:.1e} |")
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(device=device_name, solver=args.solver, rows=rows,
                                   table=table), indent=2))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
