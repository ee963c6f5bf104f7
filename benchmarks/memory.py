"""Memory of gradients through long simulations: 10 s at 1 kHz output (10,001 samples).

For the built-in wrist and arm26, the gradient of a tracking loss with respect to all
excitations (10,001 × n_muscles) and every model parameter is taken through `simulate`
with its default checkpointed adjoint. Each case runs in a fresh subprocess; the figure
reported is the process's peak resident memory (ru_maxrss) minus its peak just before the
call (after imports, model loading and compilation), and the same for 1 s at 1 kHz to show
how memory grows with duration.

    python -m benchmarks.memory [--solver explicit|stiff]

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

name, seconds, solver = sys.argv[1], float(sys.argv[2]), sys.argv[3]
model = getattr(msk.models, name)()
n = int(round(seconds * 1000)) + 1
ts = jnp.linspace(0.0, seconds, n)
rng = np.random.default_rng(0)
phase = rng.uniform(0, 2 * np.pi, model.n_muscles)
exc = jnp.asarray(0.2 + 0.1 * np.sin(2 * np.pi * 0.7 * np.asarray(ts)[:, None] + phase))
q0 = jnp.zeros(model.n_dofs) if name == "wrist" else jnp.array([0.3, 0.8])
target = jnp.zeros((n, model.n_dofs))

def loss(model, exc):
    tr = msk.simulate(model, exc, ts, q0=q0, solver=solver, rtol=1e-5, atol=1e-7,
                      max_steps=200_000)
    return jnp.mean((tr.q - target) ** 2)

grad = eqx.filter_jit(eqx.filter_grad(loss))
grad.lower(model, exc).compile()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
g = grad(model, exc)
jax.block_until_ready(g)
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
finite = all(bool(jnp.all(jnp.isfinite(x)))
             for x in jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_array)))
print(json.dumps(dict(model=name, seconds=seconds, samples=n, peak_rss_bytes=peak,
                      rss_before_bytes=before, grad_s=elapsed,
                      finite=finite)))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solver", choices=("explicit", "stiff"), default="explicit")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = ap.parse_args(argv)
    import jax

    device = jax.devices()[0]
    device_name = f"{device.platform}: {getattr(device, 'device_kind', device)}"
    rows = []
    for name in ("wrist", "arm26"):
        for seconds in (1.0, 10.0):
            out = subprocess.run([sys.executable, "-c", CHILD, name, str(seconds), args.solver],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {name} {seconds:4.0f} s: peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB "
                  f"(+{(row['peak_rss_bytes'] - row['rss_before_bytes']) / 2**20:.0f} MiB during "
                  f"the gradient), "
                  f"{row['grad_s']:.1f} s, finite: {row['finite']}", flush=True)
    lines = [f"Device {device_name}, float64, solver {args.solver}, gradient of a tracking loss "
             "w.r.t. all excitations and parameters, RecursiveCheckpointAdjoint.", "",
             "| model | duration | samples (1 kHz) | peak RSS (MiB) | RSS growth during grad (MiB) "
             "| grad time (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['seconds']:.0f} s | {r['samples']} | "
                     f"{r['peak_rss_bytes'] / 2**20:.0f} | "
                     f"{(r['peak_rss_bytes'] - r['rss_before_bytes']) / 2**20:.0f} | "
                     f"{r['grad_s']:.1f} |")
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
