"""`jaxmsk identify`: calibrate a model's muscle parameters to one subject's recordings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._identify.identify import IdentificationTrial, identify


def _trials(dataset, subject: str, names, max_duration: float | None,
            say: Callable[[str], None]) -> list[IdentificationTrial]:
    if subject not in dataset.subjects:
        raise ValueError(f"--subject {subject!r}: not in the data; subjects: "
                         f"{', '.join(dataset.subjects)}.")
    trials = dataset.subject(subject).trials
    if names:
        known = [t.name for t in trials]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"--trials: {', '.join(unknown)} not recorded for {subject}; its "
                             f"trials: {', '.join(known)}.")
        trials = [t for t in trials if t.name in names]
    scale = None
    if trials[0].emg_units != "1":
        # Without an MVC trial the envelopes are in the recording's units: normalise each
        # channel by its peak over the subject's trials so excitations lie in [0, 1].
        scale = np.max([np.max(t.emg, axis=0) for t in trials], axis=0)
        say("note: no mvc_emg.sto: EMG envelopes normalised by each channel's peak over the "
            "subject's trials.")
    out = []
    for t in trials:
        if t.q is None:
            raise ValueError(f"{subject}/{t.name}: no kinematics; identify needs "
                             f"{t.name}_kinematics.mot.")
        emg = t.emg if scale is None else t.emg / np.where(scale > 0, scale, 1.0)
        n = len(t.q) if max_duration is None else min(len(t.q), int(max_duration * t.fs) + 1)
        out.append(IdentificationTrial(ts=t.time()[:n], q=t.q[:n],
                                       emg=np.clip(emg[:n], 0.0, 1.0), name=t.name))
    return out


def _plot(out: Path, result, trials, overwrite: bool) -> str:
    from .report import pyplot, save_figure

    plt = pyplot()
    shown = trials[:4]
    fig, axes = plt.subplots(len(shown) + 1, 1, figsize=(9, 2.2 * (len(shown) + 1)),
                             squeeze=False)
    for ax, t, q_fit in zip(axes[:, 0], shown, result.fitted_q):
        ax.plot(t.ts, np.degrees(t.q[:, 0]), "k", lw=1.2, label="measured")
        ax.plot(t.ts, np.degrees(q_fit[:, 0]), "C1--", lw=1.2, label="fitted model")
        ax.set_ylabel(f"{t.name}\nangle (deg)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[len(shown) - 1, 0].set_xlabel("time (s)")
    ax = axes[-1, 0]
    labels, values, errors = [], [], []
    for name, scales in result.scales.items():
        se = result.standard_errors[name]
        for lab, v, e in zip([x for x in result.labels if x.startswith(name)], scales, se):
            labels.append(lab.replace("max_isometric_force", "F_max")
                          .replace("optimal_fiber_length", "l_opt")
                          .replace("tendon_slack_length", "l_ts"))
            values.append(v)
            errors.append(e if np.isfinite(e) else 0.0)
    x = np.arange(len(values))
    weak = np.array([e == 0.0 for e in errors]) & ~np.isfinite(np.concatenate(
        [result.standard_errors[n] for n in result.scales]))
    ax.errorbar(x[~weak], np.asarray(values)[~weak], yerr=np.asarray(errors)[~weak], fmt="o",
                capsize=3, label="fitted ± SE")
    if weak.any():
        ax.plot(x[weak], np.asarray(values)[weak], "rx", label="unidentifiable (SE inf)")
    ax.legend(loc="upper right", fontsize=7)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(x, labels, rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("scale ± SE")
    fig.tight_layout()
    return save_figure(fig, out / "fit.png", overwrite=overwrite)


def run_identify(out: Path, *, data, subject: str, model: str = "wrist",
                 fit: str = "max_isometric_force,optimal_fiber_length,tendon_slack_length",
                 trials=None, shooting_interval: float | str | None = "auto",
                 max_duration: float | None = None, max_steps: int = 50,
                 solver: str = "explicit", overwrite: bool = False,
                 progress: Callable[[str], None] = print, mesh=None) -> dict:
    """Load `data` (the recordings layout), fit `fit` for `subject`, write
    parameters.csv, identify.json, summary.md, model.json (the fitted model) and fit.png.
    With `mesh` the trials are split over its devices (`identify(mesh=...)`); in several
    processes only process 0 writes the files."""
    import jax

    from .. import models
    from .._learn.recordings import load_data
    from ..io._atomic import atomic_write_text
    from ..models import save_model_json

    started = time.perf_counter()
    base = models.load(model, argument="--model")
    dataset = load_data(data, base, subjects=[subject], progress=progress, require_forces=False)
    id_trials = _trials(dataset, subject, trials, max_duration, progress)
    result = identify(base, id_trials, tuple(f for f in fit.split(",") if f),
                      shooting_interval=shooting_interval, max_steps=max_steps, solver=solver,
                      progress=lambda s: progress(f"identify: {s}"), mesh=mesh)
    if jax.process_index() != 0:  # the same fit in every process; process 0 writes it
        return {"loss": result.loss, "files": []}
    out.mkdir(parents=True, exist_ok=True)
    files = []
    rows = ["parameter,label,fitted,standard_error,kind"]
    table = {}
    k = 0
    for name, values in result.values.items():
        kind = "scale" if name in result.scales else "value"
        fitted = result.scales.get(name, values)
        labels = result.labels[k:k + len(fitted)]
        k += len(fitted)
        for lab, v, se in zip(labels, fitted, result.standard_errors[name]):
            rows.append(f"{name},{lab},{float(v)!r},{float(se)!r},{kind}")
        table[name] = {"fitted": np.asarray(fitted).tolist(),
                       "values": np.asarray(values).tolist(),
                       "standard_errors": [None if not np.isfinite(s) else float(s)
                                           for s in result.standard_errors[name]],
                       "kind": kind}
    files.append(atomic_write_text(out / "parameters.csv", "\n".join(rows) + "\n",
                                   overwrite=overwrite))
    save_model_json(out / "model.json", result.model, overwrite=overwrite,
                    source=f"jaxmsk identify: {model} fitted to {subject}")
    files.append(str(out / "model.json"))
    files.append(_plot(out, result, id_trials, overwrite))
    d = result.diagnostics
    summary = {
        "subject": subject, "model": model, "trials": [t.name for t in id_trials],
        "parameters": table, "loss": result.loss, "rms_q_rad": result.rms["q"],
        "noise_sigma_rad": result.noise_sigma, "unidentifiable": result.unidentifiable,
        "converged": d["converged"], "message": d["message"], "steps": d["steps"],
        "compile_s": round(d["compile_s"], 1), "fit_s": round(d["wall_s"], 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    files.append(atomic_write_text(out / "identify.json", json.dumps(summary, indent=2) + "\n",
                                   overwrite=overwrite))
    md = [f"# jaxmsk identify: {model} → {subject}", "",
          f"{len(id_trials)} trial(s); fitted RMS angle error {np.degrees(result.rms['q']):.3f}°;"
          f" {d['message']} after {d['steps']} step(s) ({d['wall_s']:.0f} s).", "",
          result.table(), ""]
    if result.unidentifiable:
        md += ["Unidentifiable combinations (standard errors inf):", ""]
        md += [f"- {c}" for c in result.unidentifiable] + [""]
    files.append(atomic_write_text(out / "summary.md", "\n".join(md), overwrite=overwrite))
    progress("\n".join(md) + f"\nwrote {', '.join(files)}")
    summary["files"] = files
    return summary


def add_parser(sub) -> None:
    p = sub.add_parser(
        "identify", help="fit a model's muscle parameters to one subject's recordings "
        "(EMG + kinematics), with standard errors")
    p.add_argument("--data", required=True, help="folder of recordings: one folder per subject "
                   "with <trial>_emg.sto and <trial>_kinematics.mot (mvc_emg.sto optional)")
    p.add_argument("--subject", required=True, help="subject folder name, e.g. S01")
    p.add_argument("--model", default="wrist", help="wrist, arm26, a model .json or an .osim")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fit", default="max_isometric_force,optimal_fiber_length,tendon_slack_length",
                   help="comma-separated parameters (also strength, tau_act, tau_deact, emg_delay, "
                   "shape_factor, c1, c2, joint_damping, joint_stiffness; aliases F_max, "
                   "l_opt, l_ts)")
    p.add_argument("--trials", default=None, help="comma-separated trial names (default all)")
    p.add_argument("--max-duration", type=float, default=None,
                   help="use only the first seconds of each trial")
    p.add_argument("--shooting-interval", type=float, default=None,
                   help="seconds per multiple-shooting segment (default 0.5; 0: single "
                   "shooting)")
    p.add_argument("--max-steps", type=int, default=50, help="optimiser iterations")
    p.add_argument("--solver", choices=("stiff", "explicit", "stabilized"), default="explicit",
                   help="forward-simulation solver: explicit (Tsit5, the default), stabilized "
                   "(StabilizedRK3: explicit, for compliant tendons such as arm26's; with "
                   "--distributed each device runs its own solver loop) or stiff "
                   "(Kvaerno5: slower to compile, for stiff tendons)")
    p.add_argument("--distributed", action="store_true",
                   help="join the processes of `python -m jaxmsk.launch` or a cluster manager "
                   "(jax.distributed) and split the trials and shooting segments over all "
                   "their devices; process 0 writes the files")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out")
    p.set_defaults(func=_main)


def _main(args) -> int:
    import sys

    import jax

    mesh = None
    if args.distributed:  # before JAX starts a backend
        from .. import distributed as dist

        dist.initialize()
        mesh = dist.batch_mesh()
    # Forward simulations at rtol 1e-6 need float64 (set by the application, never on import).
    jax.config.update("jax_enable_x64", True)
    from .report import output_folder

    out = output_folder("identify", args) if jax.process_index() == 0 else Path(args.out)
    if args.distributed and not dist.broadcast_flag(out is not None):  # all stop together
        return 2
    if out is None:
        return 2
    try:
        run_identify(out, data=args.data, subject=args.subject, model=args.model, fit=args.fit,
                     trials=args.trials.split(",") if args.trials else None,
                     shooting_interval=("auto" if args.shooting_interval is None
                                        else args.shooting_interval or None),
                     max_duration=args.max_duration, max_steps=args.max_steps,
                     solver=args.solver, overwrite=args.overwrite, mesh=mesh)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"jaxmsk identify: {e}", file=sys.stderr)
        return 2
    return 0
