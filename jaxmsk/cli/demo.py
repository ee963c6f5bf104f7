"""`jaxmsk demo`: the physics-informed transfer-learning experiment, reduced to run on a
laptop in minutes.

1. A synthetic cohort of the built-in wrist (`models.wrist()`, five muscles) is generated on
   the fly: `n_subjects` subjects × 4 protocols × `repetitions` trials, with raw sEMG.
2. sEMG is processed (band-pass, notch, envelope, MVC normalisation, 100 Hz).
3. For each of the last `folds` subjects (leave-one-subject-out): a generic CNN is trained
   on the others with the equation of motion as a soft constraint; then every method of
   `jaxmsk.DEFAULT_METHODS` gets the first 20 % of each of the held-out subject's trials
   after their first second, and is evaluated on the remaining 80 %. The first second (the
   protocols' fade-in from rest, `jaxmsk.cohort._protocols.FADE_IN_S`) is used by no method: it is a
   transient the test data do not have, and fine-tuning on it taught the networks a phase
   lead (experiments/transfer/README.md).
4. `results.json`, `results.md` and PNG plots are written to `out`.

The full study (8 subjects, every fold, a sweep of the target's data share) is
`experiments/transfer/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from .. import models
from .._learn.transfer import DEFAULT_METHODS, METHODS, TransferConfig, run_fold
from ..cohort import synthetic_cohort
from ..cohort._protocols import FADE_IN_S
from ..io._atomic import atomic_write_text

DEMO_CONFIG = TransferConfig(generic_steps=1000, personal_steps=300, eval_every=100)
# The network methods and pi_hybrid, the subject's model in the loop (about 40 s per fold on
# 2 CPU cores); calibrated_msk (minutes per fold) only in the study.
DEMO_METHODS = (*DEFAULT_METHODS, "pi_hybrid")
METRICS = ("angle_rmse", "force_rmse", "angle_nrmse", "force_nrmse", "angle_r2", "force_r2",
           "angle_pearson_r", "force_pearson_r", "eom_residual_rms")


def aggregate(folds: list[dict]) -> dict:
    out = {}
    for m in METHODS:
        rows = [f["methods"][m] for f in folds if m in f["methods"]]
        if not rows:
            continue
        out[m] = {}
        for k in METRICS:
            v = np.array([r[k] for r in rows])
            out[m][k] = float(v.mean())
            out[m][k + "_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


def _strength(cohort, folds: list[dict]) -> dict:
    """Personalised F_max scales against the held-out subjects' true ones: mean |log error|
    of the personalised scales and of the generic model's (all ones)."""
    out = {}
    for f in folds:
        i = cohort.subject_ids.index(f["target"])
        true = np.asarray(cohort.subjects.max_isometric_force_scale[i])
        for m, est in f["strength_scales"].items():
            d = out.setdefault(m, {"true": [], "estimated": []})
            d["true"].append(true.tolist())
            d["estimated"].append(list(est))
    for d in out.values():
        t, e = np.log(np.array(d["true"])), np.log(np.array(d["estimated"]))
        d["mean_abs_log_error_personalised"] = float(np.mean(np.abs(e - t)))
        d["mean_abs_log_error_generic"] = float(np.mean(np.abs(t)))
    return out


def _markdown(results: dict) -> str:
    lines = ["# jaxmsk demo: physics-informed transfer learning", "",
             f"Wrist cohort: {results['cohort']['subjects']} subjects × "
             f"{results['cohort']['trials_per_subject']} trials; folds (held-out subjects): "
             f"{', '.join(f['target'] for f in results['folds'])}; each method gets "
             f"the first {100 * results['share_fraction']:.0f} % of each of the held-out "
             f"subject's trials after their first {results.get('share_start_s', 0):g} s "
             "(the protocols' fade-in from rest, used by no method); the metrics are over "
             "the rest of them. "
             + ("The methods saw only the joint angles of that share (no force labels, as "
                "for a real new subject); the test forces score them."
                if results.get("labels") == "angle" else
                "The methods saw the share's joint angles and muscle forces."), "",
             "| method | angle RMSE (rad) | force RMSE (N) | angle R² | force R² "
             "| EoM residual RMS |",
             "|---|---|---|---|---|---|"]
    for m, r in results["methods"].items():
        lines.append(f"| {m} | {r['angle_rmse']:.4f} ± {r['angle_rmse_sd']:.4f} | "
                     f"{r['force_rmse']:.3f} ± {r['force_rmse_sd']:.3f} | {r['angle_r2']:.3f} | "
                     f"{r['force_r2']:.3f} | {r['eom_residual_rms']:.2e} |")
    best_angle = min(results["methods"], key=lambda m: results["methods"][m]["angle_rmse"])
    best_force = min(results["methods"], key=lambda m: results["methods"][m]["force_rmse"])
    lines += ["", f"Lowest angle RMSE: **{best_angle}**; lowest force RMSE: **{best_force}**.",
              "", "Personalised F_max scales (mean |log error| against the held-out subjects' "
              "true scales; the generic model's error is that of scale 1):", ""]
    for m, d in results["strength"].items():
        lines.append(f"- {m}: {d['mean_abs_log_error_personalised']:.3f} "
                     f"(generic {d['mean_abs_log_error_generic']:.3f})")
    lines += ["", f"Total time {results['seconds']:.0f} s on {results['device']}."]
    return "\n".join(lines) + "\n"


def _plots(out: Path, cohort, dataset, fold: dict, results: dict, overwrite: bool) -> list[str]:
    from .report import pyplot, save_figure

    plt = pyplot()
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    names = list(results["methods"])
    for ax, k, unit in ((axes[0], "angle_rmse", "rad"), (axes[1], "force_rmse", "N")):
        v = [results["methods"][m][k] for m in names]
        e = [results["methods"][m][k + "_sd"] for m in names]
        ax.bar(range(len(names)), v, yerr=e, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=25)
        ax.set_ylabel(f"{k.replace('_', ' ')} ({unit})")
    fig.suptitle("held-out subjects: error per method (mean ± sd over folds)")
    written.append(save_figure(fig, out / "errors.png", overwrite=overwrite))

    target = fold["target"]
    trial = fold["test"].trials[0]
    rf = fold["predictors"]["generic"].net.receptive_field
    t = trial.time()[rf - 1:]
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True, constrained_layout=True)
    axes[0].plot(t, trial.q[rf - 1:, 0], "k", lw=2, label="true")
    flexor = int(np.argmax(np.ptp(trial.forces, axis=0)))
    axes[1].plot(t, trial.forces[rf - 1:, flexor], "k", lw=2, label="true")
    for i, m in enumerate(("pi_transfer", "generic", "target_only", "transfer_no_physics",
                           "pi_hybrid")):
        if m in fold["predictors"]:
            q_hat, f_hat = fold["predictors"][m](jax.numpy.asarray(trial.emg))
        elif m in fold.get("models", {}):  # simulated over the whole trial
            q_hat, f_hat = (x[rf - 1:] for x in fold["models"][m].predict(trial))
        else:
            continue
        axes[0].plot(t, np.asarray(q_hat)[:, 0], color=f"C{i}", lw=1, label=m)
        axes[1].plot(t, np.asarray(f_hat)[:, flexor], color=f"C{i}", lw=1, label=m)
    axes[0].set_ylabel("wrist angle (rad)")
    axes[1].set_ylabel(f"{trial.force_labels[flexor]} force (N)")
    for j, name in enumerate(trial.emg_labels):
        axes[2].plot(t, trial.emg[rf - 1:, j], lw=1, label=name)
    axes[2].set_ylabel("sEMG envelope (MVC)")
    axes[2].set_xlabel("time (s)")
    for ax in axes:
        ax.legend(fontsize=8, ncol=5, loc="upper right")
    part = " (the part after the share; time from its start)" if "#rest" in trial.name else ""
    fig.suptitle(f"held-out subject {target}, trial {trial.name.split('#')[0]}{part}: "
                 "predictions vs truth")
    written.append(save_figure(fig, out / "traces.png", overwrite=overwrite))
    return written


def run_demo(out: Path, *, n_subjects: int = 5, folds: int = 1, repetitions: int = 2,
             duration: float = 10.0, seed: int = 0, share_fraction: float = 0.2,
             share_start: float = FADE_IN_S, config: TransferConfig = DEMO_CONFIG,
             labels: str = "angle", methods=DEMO_METHODS,
             overwrite: bool = False, progress: Callable[[str], None] = print) -> dict:
    """Run the reduced experiment and write `results.json`, `results.md`, `errors.png` and
    `traces.png` into `out`. Returns the results dictionary. `labels="angle"` (default):
    the methods see only the share's joint angles, as for a new subject whose muscle forces
    cannot be measured (the test part's forces still score them); "all": angles and
    forces."""
    if not 1 <= folds <= n_subjects - 1:
        raise ValueError(f"folds={folds}: between 1 and n_subjects - 1 = {n_subjects - 1}.")
    if labels not in ("all", "angle"):
        raise ValueError(f"--labels {labels!r}: give 'all' or 'angle'.")
    started = time.perf_counter()
    key = jax.random.key(seed)
    k_cohort, k_folds = jax.random.split(key)
    wrist = models.wrist()
    progress(f"jaxmsk demo on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
             f"{'float64' if jax.config.jax_enable_x64 else 'float32'}")
    cohort = synthetic_cohort(wrist, n_subjects, k_cohort, repetitions=repetitions,
                              duration=duration, progress=progress)
    progress("processing sEMG (band-pass, notch, envelope, MVC, 100 Hz) ...")
    dataset = cohort.to_dataset().process()
    fold_results = []
    for i, target in enumerate(cohort.subject_ids[-folds:]):
        progress(f"fold {i + 1}/{folds}: held-out subject {target}")
        fold_results.append(run_fold(dataset, target, wrist, config,
                                     jax.random.fold_in(k_folds, i),
                                     share_fraction=share_fraction, share_start=share_start,
                                     methods=methods, force_labels=labels == "all",
                                     progress=progress))
    results = {
        "methods": aggregate(fold_results),
        "strength": _strength(cohort, fold_results),
        "folds": [{k: v for k, v in f.items()
                   if k not in ("predictors", "generic_predictor", "models", "test")}
                  for f in fold_results],
        "share_fraction": share_fraction,
        "share_start_s": share_start,
        "labels": labels,
        "cohort": {"subjects": n_subjects, "trials_per_subject": cohort.n_trials,
                   "duration_s": duration, "seed": seed, "checks": cohort.metadata["checks"]},
        "config": {k: (v if isinstance(v, (int, float, str)) else repr(v))
                   for k, v in config.__dict__.items()},
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "units": {"angle": "rad", "force": "N", "eom_residual_rms": "dimensionless"},
    }
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(out, cohort, dataset, fold_results[-1], results, overwrite)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["files"] = [str(out / "results.json"), str(out / "results.md")] + plots
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n",
                      overwrite=overwrite)
    atomic_write_text(out / "results.md", _markdown(results), overwrite=overwrite)
    progress("\n" + _markdown(results))
    progress(f"wrote {', '.join(results['files'])}")
    return results
