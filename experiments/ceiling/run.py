"""How well can the joint angle be predicted from sEMG on the built-in cohort at all?

    python -m experiments.ceiling.run --subjects 4 --out experiments/ceiling/results

For every subject and trial of `jaxmsk.cohort.synthetic_cohort(models.wrist(), ...)`, the
wrist angle is simulated open loop (`jaxmsk.simulate`, from the recorded initial angle and
velocity) by
  (a) the subject's TRUE model driven by the TRUE excitations (the cohort's own truth: the
      error is the integration's, a check of the pipeline),
  (b) the subject's true model driven by the PROCESSED sEMG envelopes (MVC-normalised,
      100 Hz, shifted back by the subject's true electromechanical delay) used as
      excitations: the error that sEMG processing alone leaves with a perfect model,
  (c) the NOMINAL (generic) model driven by the true excitations: model mismatch alone,
  (d) the nominal model driven by the envelopes (shifted by the nominal 0.05 s): what an
      uncalibrated EMG-driven model gives,
  (e) the true model driven by the envelopes divided by their per-muscle least-squares gain on
      the true excitation (an oracle gain correction, fitted on the trial itself): the best a
      constant per-muscle excitation correction can do.
Angle RMSE (rad) and R² per motion type (slow, medium, fast, free), as Zhao et al. (IEEE
TNSRE 28(12), 2020) report, and the envelope's correlation with (and least-squares gain
on) the true excitation; tendon-force RMSE (N, mean over muscles, as the transfer study
scores it) of each case against the cohort's true forces.
Writes results.json and results.md in --out (atomically); prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np


def _r2(pred, true):
    return 1 - np.sum((pred - true) ** 2) / max(np.sum((true - true.mean()) ** 2), 1e-300)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--duration", type=float, default=10.0, help="s per trial")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    import jaxmsk as msk
    from jaxmsk._learn.train import NOMINAL_DELAY
    from jaxmsk.data._emg import delay as shift_in_time
    from jaxmsk.io._atomic import atomic_write_text

    t0 = time.perf_counter()
    model = msk.models.wrist()
    c = msk.cohort.synthetic_cohort(model, args.subjects, jax.random.key(args.seed),
                                    repetitions=1, duration=args.duration)
    data = c.to_dataset().process()
    by_name = {(t.subject, t.name): t for t in data.trials}
    rows = {}
    corr, gain = {}, {}
    for i, sid in enumerate(c.subject_ids):
        true_model = c.subject_model(i)
        true_delay = float(np.asarray(c.subject_parameters(i)["delay"]))
        for j, name in enumerate(c.trial_names):
            t = by_name[(sid, name)]
            n = t.n_samples
            ts = c.time[:n]
            q, u = c.q[i, j, :n], c.excitation[i, j, :n]
            f_true = c.tendon_force[i, j, :n]
            env = np.clip(np.asarray(t.emg), 0.0, 1.0)
            env_true = np.clip(np.asarray(shift_in_time(env, c.fs, true_delay)), 0.0, 1.0)
            env_nom = np.clip(np.asarray(shift_in_time(env, c.fs, NOMINAL_DELAY)), 0.0, 1.0)
            qd0 = c.qdot[i, j, 0]
            g = np.array([np.dot(env_true[:, k], u[:, k]) / np.dot(u[:, k], u[:, k])
                          for k in range(u.shape[1])])
            env_gain = np.clip(env_true / np.maximum(g, 1e-6), 0.0, 1.0)
            cases = {"a_true_model_true_excitation": (true_model, u),
                     "b_true_model_envelope": (true_model, env_true),
                     "c_nominal_model_true_excitation": (model, u),
                     "d_nominal_model_envelope": (model, env_nom),
                     "e_true_model_envelope_oracle_gain": (true_model, env_gain)}
            kind = c.protocols[j]
            for case, (m, x) in cases.items():
                try:
                    out = msk.simulate(m, x, ts, q0=q[0], qdot0=qd0, solver="stiff",
                                       rtol=1e-6, atol=1e-8, throw=True)
                    sim, fsim = np.asarray(out.q), np.asarray(out.tendon_force)
                except Exception as e:  # a failed open-loop run is a result too
                    print(f"{sid} {name} {case}: simulation failed ({type(e).__name__})")
                    sim, fsim = np.full_like(q, np.nan), np.full_like(f_true, np.nan)
                rows.setdefault((case, kind), []).append(
                    (float(np.sqrt(np.mean((sim - q) ** 2))), float(_r2(sim[:, 0], q[:, 0])),
                     float(np.mean(np.sqrt(np.mean((fsim - f_true) ** 2, axis=0))))))
            corr.setdefault(kind, []).append(float(np.mean(
                [np.corrcoef(env_true[:, k], u[:, k])[0, 1] for k in range(u.shape[1])])))
            gain.setdefault(kind, []).append(float(np.mean(
                [np.dot(env_true[:, k], u[:, k]) / np.dot(u[:, k], u[:, k])
                 for k in range(u.shape[1])])))
            print(f"{sid} {name}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    kinds = list(dict.fromkeys(c.protocols))
    table = {case: {k: {"rmse_rad": float(np.mean([r[0] for r in rows[(case, k)]])),
                        "r2": float(np.mean([r[1] for r in rows[(case, k)]])),
                        "force_rmse_n": float(np.mean([r[2] for r in rows[(case, k)]]))}
                    for k in kinds}
             for case in dict.fromkeys(cs for cs, _ in rows)}
    lines = ["| case | " + " | ".join(f"{k} RMSE (rad) / R² / force RMSE (N)" for k in kinds)
             + " | all: force RMSE (N) |", "|---|" + "---|" * (len(kinds) + 1)]
    for case, per in table.items():
        allf = np.mean([r[2] for kk in kinds for r in rows[(case, kk)]])
        lines.append(f"| {case} | " + " | ".join(
            f"{per[k]['rmse_rad']:.3f} / {per[k]['r2']:.2f} / {per[k]['force_rmse_n']:.2f}"
            for k in kinds) + f" | {allf:.2f} |")
    lines.append("| envelope–excitation r (mean over muscles) | " + " | ".join(
        f"{np.mean(corr[k]):.2f}" for k in kinds) + " | – |")
    lines.append("| envelope / excitation gain (least squares, mean over muscles) | " + " | ".join(
        f"{np.mean(gain[k]):.2f}" for k in kinds) + " | – |")
    text = "\n".join(lines)
    print(text)
    print(f"{time.perf_counter() - t0:.0f} s on {jax.devices()[0].device_kind}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "results.json", overwrite=True, text=json.dumps(
            {"table": table, "envelope_excitation_r": {k: float(np.mean(v)) for k, v in
                                                       corr.items()},
             "envelope_excitation_gain": {k: float(np.mean(v)) for k, v in gain.items()},
             "subjects": args.subjects, "duration_s": args.duration, "seed": args.seed,
             "seconds": time.perf_counter() - t0}, indent=1))
        title = "# Ceiling of the angle (and force) from sEMG\n\n"
        atomic_write_text(args.out / "results.md", title + text
                          + "\n", overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
