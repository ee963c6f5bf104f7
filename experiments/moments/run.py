"""EMG-driven joint moments on the real walking recording (data/opensim-walking).

    python -m experiments.moments.run --out experiments/moments/results

The right leg of the Rajagopal-based 80-muscle model (40 muscles over hip flexion,
adduction and rotation, knee and ankle), 10 EMG channels, inverse-kinematics angles and
inverse-dynamics moments of one stride (0.45–1.8 s at 1 kHz). For each configuration:
calibrate on some samples (`jaxmsk.moments.calibrate_moments`, Levenberg–Marquardt), predict
the rest, and score R² and RMSE per coordinate against inverse dynamics.

Configurations:
  - split: "alternate" (every second 0.1-s window calibrates, the others test) or
    "first-half" (calibrate on 0.45–1.12 s, test on 1.12–1.8 s: another phase of gait);
  - fit: "all" (strength, l_opt, l_ts per driven muscle; gain, A per channel; delay; two
    time constants) or "emg" (gain, A, delay, time constants: the muscles as the file has
    them);
  - paths: "function-based" (OpenSim's own polynomial paths, read exactly) or "fitted"
    (the model's GeometryPaths, sampled with OpenSim and fitted by jaxmsk over the recorded
    range of each coordinate ± 0.2 rad, as `jaxmsk moments` does).
Writes results.json and results.md (atomically); prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import jax
import numpy as np

DATA = Path(__file__).resolve().parents[2] / "data" / "opensim-walking"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--max-steps", type=int, default=300)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    from jaxmsk.cli.moments import motion_ranges
    from jaxmsk.cli.report import device_name
    from jaxmsk.io import read_sto
    from jaxmsk.io._atomic import atomic_write_text
    from jaxmsk.moments import (
        MomentParameters,
        calibrate_moments,
        load_emg_driven_model,
        metrics,
        read_moment_recording,
    )

    warnings.filterwarnings("ignore", message=".*nColumns=40.*")
    emg, ik, idm = (DATA / n for n in ("electromyography.sto", "coordinates.sto",
                                       "id_walk.sto"))
    channels = read_sto(emg).labels
    fits = {"all": None, "emg": ("emg_gain", "shape_factor", "delay", "time_constants")}
    rows, models = [], {}
    for paths in ("function-based", "fitted"):
        t0 = time.perf_counter()
        model, info = load_emg_driven_model(
            DATA / "subject_walk_scaled.osim", channels, side="r",
            paths=DATA / "subject_walk_scaled_FunctionBasedPathSet.xml"
            if paths == "function-based" else None,
            ranges=None if paths == "function-based" else motion_ranges(ik, 0.2))
        load_s = time.perf_counter() - t0
        models[paths] = (model, info, load_s)
        rec = read_moment_recording(emg, ik, idm, model.coordinate_names)
        t = rec.time
        splits = {"alternate": rec.alternating_windows(0.1),
                  "first-half": ((t[0], t[0] + 0.5 * (t[-1] - t[0])),)}
        nominal = MomentParameters.nominal(len(model.muscle_names), len(channels))
        tau0 = np.asarray(model.moments(nominal, rec.emg, rec.q, rec.qdot, rec.rate, rec.lead))
        for split, windows in splits.items():
            mask = rec.windows(windows)
            for fit_name, fit in fits.items():
                if paths == "fitted" and fit_name != "all":
                    continue
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    cal = calibrate_moments(model, rec, windows, max_steps=args.max_steps,
                                            **({} if fit is None else {"fit": fit}))
                tau = np.asarray(model.moments(cal.params, rec.emg, rec.q, rec.qdot, rec.rate,
                                               rec.lead))
                row = {"paths": paths, "split": split, "fit": fit_name,
                       "test": metrics(tau[~mask], rec.moments[~mask]),
                       "calibration": metrics(tau[mask], rec.moments[mask]),
                       "nominal_test": metrics(tau0[~mask], rec.moments[~mask]),
                       "steps": cal.steps, "converged": cal.converged,
                       "loss_start": cal.loss_start, "loss": cal.loss,
                       "compile_s": round(cal.compile_s, 2), "fit_s": round(cal.fit_s, 2),
                       "n_parameters": int(sum(np.size(getattr(cal.params, f))
                                               for f in cal.fitted)),
                       "at_bounds": list(cal.at_bounds),
                       "warnings": [str(w.message) for w in caught]}
                rows.append(row)
                print(f"{paths:15s} {split:10s} {fit_name:4s} test R² "
                      + " ".join(f"{v:.3f}" for v in row["test"]["r2"])
                      + f"  steps {cal.steps} fit {cal.fit_s:.1f} s", flush=True)
    model, info, _ = models["function-based"]
    fitted_model, fitted_info, fitted_load = models["fitted"]
    results = {
        "device": device_name(), "coordinates": list(model.coordinate_names),
        "muscles": len(model.muscle_names), "driven": int(model.driven.sum()),
        "channel_map": info["channel_map"], "without_emg": info["without_emg"],
        "load_s": {"function-based": round(models["function-based"][2], 2),
                   "fitted": round(fitted_load, 2)},
        "fitted_path_errors_mm": {
            m: {"rms": round(1e3 * d["fit_rms_m"], 3), "max": round(1e3 * d["fit_max_m"], 3),
                "coordinates": d["coordinates"]} for m, d in fitted_info["paths"].items()},
        "rows": rows,
    }
    text = _markdown(results)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n",
                          overwrite=True)
        atomic_write_text(args.out / "results.md", text, overwrite=True)
    return 0


def _markdown(r: dict) -> str:
    names = [c.removesuffix("_r") for c in r["coordinates"]]
    lines = [f"Device: {r['device']}. {r['muscles']} muscles, {r['driven']} driven by EMG.", "",
             "| paths | split | fit | params | " + " | ".join(f"R² {n}" for n in names)
             + " | " + " | ".join(f"RMSE {n} (N·m)" for n in names)
             + " | steps | fit s | compile s |",
             "|" + "---|" * (7 + 2 * len(names))]
    for row in r["rows"]:
        lines.append(
            f"| {row['paths']} | {row['split']} | {row['fit']} | {row['n_parameters']} | "
            + " | ".join(f"{v:.3f}" for v in row["test"]["r2"]) + " | "
            + " | ".join(f"{v:.1f}" for v in row["test"]["rmse"])
            + f" | {row['steps']}{'' if row['converged'] else '*'} | {row['fit_s']:.1f} | "
            f"{row['compile_s']:.1f} |")
    nominal = r["rows"][0]["nominal_test"]
    lines += ["", "Test R² with the nominal parameters (alternate split): "
              + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, nominal["r2"])),
              "", "`*`: stopped at the step limit (not converged).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
