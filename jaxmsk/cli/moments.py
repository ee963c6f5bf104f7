"""`jaxmsk moments`: EMG-driven joint moments along measured kinematics, calibrated against
inverse dynamics on part of a recording and tested on the rest."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def motion_ranges(kinematics, margin: float) -> dict:
    """{coordinate: (min − margin, max + margin)} (rad) of the angles a kinematics file
    records (degrees converted where its header says so): the box fitted paths need."""
    from ..io import read_sto
    from ..io._sto import read_csv
    from ..moments._recording import kinematics_coordinates

    try:
        table = read_csv(kinematics) if str(kinematics).lower().endswith(".csv") else read_sto(
            kinematics)
    except FileNotFoundError:
        raise FileNotFoundError(f"--kinematics: no such file {kinematics!r}.") from None
    names = kinematics_coordinates(table)
    labels = [lab for lab in table.labels if lab.endswith("/value") or "/" not in lab]
    values = table.values[:, [table.labels.index(lab) for lab in labels]]
    if table.in_degrees:
        values = np.deg2rad(values)  # translations too, but only rotations are kept below
    return {c: (float(v.min()) - margin, float(v.max()) + margin)
            for c, v in zip(names, values.T)}


def _windows(text: str, recording, width: float):
    """The calibration windows `--calibrate` names, and a label for them."""
    t0, t1 = float(recording.time[0]), float(recording.time[-1])
    if text == "alternate":
        return recording.alternating_windows(width), f"alternate {width:g}-s windows"
    if text == "first-half":
        return ((t0, t0 + 0.5 * (t1 - t0)),), "first half"
    out = []
    for part in text.split(","):
        try:
            a, b = (float(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"--calibrate {text!r}: give 'alternate', 'first-half' or windows "
                             "START:STOP[,START:STOP...] in s.") from None
        out.append((a, b))
    return tuple(out), "windows " + text


def _plot(out: Path, recording, tau_nominal, tau, mask, names, overwrite: bool) -> str:
    from .report import pyplot, save_figure

    plt = pyplot()
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n + 0.6), sharex=True, squeeze=False)
    t = recording.time
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    for j, (ax, name) in enumerate(zip(axes[:, 0], names)):
        for a, b in zip(edges[::2], edges[1::2]):
            ax.axvspan(t[a], t[min(b, len(t) - 1)], color="0.9", lw=0)
        ax.plot(t, recording.moments[:, j], "k", lw=1.4, label="inverse dynamics")
        ax.plot(t, tau[:, j], "C1", lw=1.2, label="EMG-driven, calibrated")
        ax.plot(t, tau_nominal[:, j], "C0:", lw=0.9, label="EMG-driven, nominal")
        lo, hi = np.percentile(recording.moments[:, j], [0, 100])
        pad = 0.6 * (hi - lo) + 1.0
        ax.set_ylim(lo - pad, hi + pad)  # nominal curves may run far off; keep ID readable
        ax.set_ylabel(f"{name}\n(N·m)", fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[0, 0].set_title("grey: calibration windows; white: test", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return save_figure(fig, out / "moments.png", overwrite=overwrite)


def _markdown(r: dict) -> str:
    lines = [f"# jaxmsk moments: {Path(r['model']).name}", "",
             f"{r['samples']} samples at {r['rate_hz']:g} Hz ({r['time_s'][0]:g}–"
             f"{r['time_s'][1]:g} s); {len(r['muscles'])} muscles, {r['driven_muscles']} driven "
             f"by {len(r['channel_map'])} EMG channels. Calibrated on {r['calibration']} "
             f"({r['calibration_samples']} samples), tested on the other "
             f"{r['test_samples']}. Levenberg–Marquardt: {r['steps']} steps, "
             f"{'converged' if r['converged'] else 'NOT converged'}, {r['fit_s']:.1f} s "
             f"(+ {r['compile_s']:.1f} s compile); device {r['device']}.", "",
             "| coordinate | R² test | RMSE test (N·m) | R² calibration | R² nominal (test) "
             "| RMSE nominal (test) |", "|---|---|---|---|---|---|"]
    for j, c in enumerate(r["coordinates"]):
        lines.append(f"| {c} | {r['test']['r2'][j]:.3f} | {r['test']['rmse'][j]:.2f} | "
                     f"{r['calibration_fit']['r2'][j]:.3f} | {r['nominal_test']['r2'][j]:.3f} | "
                     f"{r['nominal_test']['rmse'][j]:.2f} |")
    lines += ["", "EMG channels → muscles:", ""]
    lines += [f"- {ch}: {', '.join(ms)}" for ch, ms in r["channel_map"].items()]
    lines += ["", f"Muscles without EMG (passive force only): {', '.join(r['without_emg'])}."
              if r["without_emg"] else "Every muscle is driven by EMG."]
    if r["at_bounds"]:
        lines += ["", f"At a bound of their box (the box, not the data, set them): "
                  f"{', '.join(r['at_bounds'])}."]
    if r["outside_path_domain"]:
        lines += ["", f"WARNING: the kinematics leave the paths' domain: "
                  f"{r['outside_path_domain']} (rad beyond the box)."]
    return "\n".join(lines) + "\n"


def run_moments(out: Path, *, model: str, emg: str, kinematics: str, moments: str,
                paths: str | None = None, side: str | None = None, mapping: str | None = None,
                coordinates=None, calibrate: str = "alternate", window: float = 0.1,
                margin: float = 0.2,
                fit: str | None = None, max_steps: int = 200, overwrite: bool = False,
                progress: Callable[[str], None] = print) -> dict:
    """Load, calibrate on the `calibrate` windows, test on the rest; write results.json,
    results.md, parameters.csv and moments.png into `out`."""
    import jax

    from ..io import read_sto
    from ..io._atomic import atomic_write_text
    from ..io._sto import read_csv
    from ..moments import (
        FITTABLE,
        MomentParameters,
        calibrate_moments,
        load_emg_driven_model,
        metrics,
        read_moment_recording,
    )
    from .report import device_name, write_results

    started = time.perf_counter()
    mapping_dict = None
    if mapping is not None:
        try:
            with open(mapping, encoding="utf-8") as f:
                mapping_dict = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"--mapping: no such file {mapping!r}.") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"--mapping {mapping}: not JSON ({err}); give "
                             "{\"channel\": [\"muscle\", ...]}.") from None
        if not isinstance(mapping_dict, dict):
            raise ValueError(f"--mapping {mapping}: give an object {{\"channel\": [muscles]}}.")
    try:
        channels = (read_csv(emg) if str(emg).lower().endswith(".csv") else read_sto(emg)).labels
    except FileNotFoundError:
        raise FileNotFoundError(f"--emg: no such file {emg!r}.") from None
    progress(f"moments: loading {model} for EMG channels {', '.join(channels)}")
    emg_model, info = load_emg_driven_model(model, channels, side=side, mapping=mapping_dict,
                                            coordinates=coordinates, paths=paths,
                                            ranges=motion_ranges(kinematics, margin))
    recording = read_moment_recording(emg, kinematics, moments, emg_model.coordinate_names)
    windows, label = _windows(calibrate, recording, window)
    mask = recording.windows(windows)
    if mask.sum() < 10 or (~mask).sum() < 10:
        raise ValueError(f"--calibrate {calibrate}: {int(mask.sum())} calibration and "
                         f"{int((~mask).sum())} test samples; both need at least 10.")
    fields = FITTABLE if fit is None else tuple(f for f in fit.split(",") if f)
    progress(f"moments: {len(emg_model.muscle_names)} muscles over "
             f"{', '.join(emg_model.coordinate_names)}; calibrating {', '.join(fields)} on "
             f"{label} ({int(mask.sum())} samples)")
    excursion = np.asarray(emg_model.path.domain_excursion(recording.q))
    outside = {c: round(float(e), 4) for c, e in zip(emg_model.coordinate_names, excursion)
               if e > 1e-6}
    # calibrate_moments warns when the kinematics leave the paths' domain
    cal = calibrate_moments(emg_model, recording, windows, fit=fields, max_steps=max_steps)
    args = (recording.emg, recording.q, recording.qdot, recording.rate, recording.lead)
    tau = np.asarray(emg_model.moments(cal.params, *args))
    nominal = MomentParameters.nominal(len(emg_model.muscle_names), len(channels))
    tau_nominal = np.asarray(emg_model.moments(nominal, *args))
    if jax.process_index() != 0:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    names = list(emg_model.coordinate_names)
    files = [_plot(out, recording, tau_nominal, tau, mask, names, overwrite)]
    rows = ["parameter,name,nominal,calibrated"]
    for field in fields:
        values = np.atleast_1d(np.asarray(getattr(cal.params, field)))
        start = np.atleast_1d(np.asarray(getattr(nominal, field)))
        labels = (emg_model.muscle_names if values.size == len(emg_model.muscle_names) else
                  channels if values.size == len(channels) else
                  [str(i) for i in range(values.size)])
        rows += [f"{field},{n},{float(a)!r},{float(b)!r}" for n, a, b in
                 zip(labels, start, values)]
    files.append(atomic_write_text(out / "parameters.csv", "\n".join(rows) + "\n",
                                   overwrite=overwrite))
    results = {
        "model": str(model), "paths": paths, "emg": str(emg), "kinematics": str(kinematics),
        "moments": str(moments), "device": device_name(), "coordinates": names,
        "muscles": list(emg_model.muscle_names), "driven_muscles": int(emg_model.driven.sum()),
        "channel_map": info["channel_map"], "without_emg": info["without_emg"],
        "path_sources": dict(zip(emg_model.muscle_names, emg_model.path_sources)),
        "rate_hz": recording.rate, "samples": int(recording.time.size),
        "time_s": [float(recording.time[0]), float(recording.time[-1])],
        "calibration": label, "calibration_windows": [list(w) for w in windows],
        "calibration_samples": int(mask.sum()), "test_samples": int((~mask).sum()),
        "fitted": list(fields), "converged": cal.converged, "steps": cal.steps,
        "loss_start": cal.loss_start, "loss": cal.loss, "compile_s": round(cal.compile_s, 2),
        "fit_s": round(cal.fit_s, 2), "at_bounds": list(cal.at_bounds),
        "outside_path_domain": outside,
        "test": metrics(tau[~mask], recording.moments[~mask]),
        "calibration_fit": metrics(tau[mask], recording.moments[mask]),
        "nominal_test": metrics(tau_nominal[~mask], recording.moments[~mask]),
    }
    return write_results(out, results, files, _markdown, started, overwrite, progress)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "moments", help="EMG-driven joint moments along measured kinematics, calibrated "
        "against inverse dynamics (CEINMS-style, gradient-based)")
    p.add_argument("--model", required=True, help="the OpenSim .osim model")
    p.add_argument("--emg", required=True, help="processed EMG (.sto/.csv): envelopes in [0, 1], "
                   "one column per channel")
    p.add_argument("--kinematics", required=True, help="joint angles (.sto/.mot), e.g. inverse "
                   "kinematics")
    p.add_argument("--moments", required=True, help="inverse-dynamics moments (.sto) on the "
                   "kinematics' time grid")
    p.add_argument("--out", required=True, help="output folder: results.json, results.md, "
                   "parameters.csv, moments.png")
    p.add_argument("--paths", default=None, help="a FunctionBasedPathSet .xml to replace the "
                   "model's paths (otherwise its own paths, fitted where not polynomial)")
    p.add_argument("--side", choices=("r", "l"), default=None,
                   help="side the EMG was recorded on, for models with both")
    p.add_argument("--mapping", default=None, help="JSON {channel: [muscles]} for channels whose "
                   "names do not match the model's muscles")
    p.add_argument("--coordinates", default=None, help="comma-separated coordinates (default: "
                   "every free rotational coordinate a driven muscle crosses)")
    p.add_argument("--calibrate", default="alternate",
                   help="calibration samples: 'alternate' (every second --window, from the "
                   "first; default), 'first-half', or START:STOP[,START:STOP...] in s; the test "
                   "is the rest")
    p.add_argument("--window", type=float, default=0.1, help="window width for 'alternate' (s)")
    p.add_argument("--margin", type=float, default=0.2,
                   help="paths that are not polynomials are fitted over the recorded range of "
                   "each coordinate widened by this much (rad; default 0.2)")
    p.add_argument("--fit", default=None, help="comma-separated parameters (default all: "
                   "strength, optimal_fiber_length_scale, tendon_slack_length_scale, emg_gain, "
                   "shape_factor, delay, time_constants)")
    p.add_argument("--max-steps", type=int, default=200, help="Levenberg–Marquardt iterations")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out")
    p.set_defaults(func=_main)


def _main(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # moments of several 100 N·m; set by the app
    from .report import run_command

    coordinates = ([c.strip() for c in args.coordinates.split(",") if c.strip()]
                   if args.coordinates else None)
    return run_command("moments", args, run_moments, model=args.model, emg=args.emg,
                       kinematics=args.kinematics, moments=args.moments, paths=args.paths,
                       side=args.side, mapping=args.mapping, coordinates=coordinates,
                       calibrate=args.calibrate, window=args.window, margin=args.margin,
                       fit=args.fit,
                       max_steps=args.max_steps, overwrite=args.overwrite)
