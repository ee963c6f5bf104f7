"""Single against multiple shooting on long trials: does `identify` recover the truth?

    python -m experiments.identify.shooting --out experiments/identify/results

The built-in wrist, four 2-s trials at 100 Hz from rest, noiseless; each muscle's excitation
a sinusoid 0.25 ± 0.22 (0.03–0.47) of random frequency (0.3–1.5 Hz) and phase; hidden
F_max, l_opt and l_ts scales drawn uniformly from (0.6, 1.8), (0.85, 1.2), (0.95, 1.05).
Fitted from all scales 1 with Levenberg–Marquardt (100 steps at most, one start) by single
shooting (shooting_interval=None) and by the default (shooting_interval="auto": 0.5-s
segments). Prints and writes shooting.json / shooting.md: final loss, RMS angle error,
steps, whether identify called it converged or stalled, and the largest relative error of
each kind of scale.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import jax
import numpy as np

FIT = ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length")


def case(seed: int):
    import jaxmsk as msk
    from jaxmsk._identify.identify import IdentificationTrial

    wrist = msk.models.wrist()
    rng = np.random.default_rng(seed)
    m = wrist.n_muscles
    true = {"max_isometric_force": rng.uniform(0.6, 1.8, m),
            "optimal_fiber_length": rng.uniform(0.85, 1.2, m),
            "tendon_slack_length": rng.uniform(0.95, 1.05, m)}
    truth = msk.scale_parameters(wrist, **true)
    ts = np.arange(201) / 100.0
    trials = []
    for _ in range(4):
        f, ph = rng.uniform(0.3, 1.5, m), rng.uniform(0, 2 * np.pi, m)
        u = 0.25 + 0.22 * np.sin(2 * np.pi * f[None] * ts[:, None] + ph[None])
        sim = msk.simulate(truth, u, ts, q0=np.zeros(1), solver="explicit", rtol=1e-10,
                           atol=1e-12)
        trials.append(IdentificationTrial(ts=ts, excitation=u, q=np.asarray(sim.q),
                                          qdot0=np.zeros(1)))
    return wrist, trials, true


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    import jaxmsk as msk
    from jaxmsk.io._atomic import atomic_write_text

    wrist, trials, true = case(args.seed)
    rows = {}
    for label, shooting in (("single shooting", None), ("auto (0.5-s segments)", "auto")):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = msk.identify(wrist, trials, FIT, shooting_interval=shooting, starts=1,
                               max_steps=args.max_steps,
                               progress=lambda s, lab=label: print(f"[{lab}] {s}", flush=True))
        d = res.diagnostics
        rows[label] = {
            "loss": res.loss, "rms_q_rad": res.rms["q"], "steps": d["steps"],
            "converged": d["converged"], "stalled": d["stalled"], "message": d["message"],
            "warned": any(issubclass(w.category, msk.IdentificationWarning) for w in caught),
            "seconds": time.perf_counter() - t0,
            "max_rel_error": {k: float(np.max(np.abs(res.scales[k] / true[k] - 1)))
                              for k in FIT}}
    lines = ["| fit | loss | RMS q (rad) | steps | converged | stalled, warned | "
             "max rel. error F_max / l_opt / l_ts | s |", "|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        e = r["max_rel_error"]
        lines.append(f"| {label} | {r['loss']:.3g} | {r['rms_q_rad']:.2g} | {r['steps']} | "
                     f"{r['converged']} | {r['stalled']}, {r['warned']} | "
                     f"{e['max_isometric_force']:.2g} / {e['optimal_fiber_length']:.2g} / "
                     f"{e['tendon_slack_length']:.2g} | {r['seconds']:.0f} |")
    text = "\n".join(lines)
    print(text)
    print(f"on {jax.devices()[0].device_kind}, float64")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "shooting.json", json.dumps(
            {"seed": args.seed, "max_steps": args.max_steps, "truth": {
                k: v.tolist() for k, v in true.items()}, "fits": rows}, indent=1), overwrite=True)
        atomic_write_text(args.out / "shooting.md", text + "\n", overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
