"""`jaxmsk cohort`: generate a synthetic cohort, save it, export it as OpenSim files and plot
one subject (the pictures a researcher checks first)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from .. import models
from ..cohort import synthetic_cohort
from ..io._atomic import atomic_write_text
from ..io._cohort_files import save_cohort
from .report import plot_subject_parameters, plot_trial, save_figure


def _summary(cohort, envelope_r: list[float]) -> str:
    checks = cohort.metadata["checks"]
    lines = [
        "# jaxmsk synthetic cohort", "",
        f"{cohort.n_subjects} subjects × {cohort.n_trials} trials "
        f"({', '.join(cohort.trial_names)}), {cohort.metadata['duration_s']:g} s each; "
        f"kinematics and forces at {cohort.fs:g} Hz, raw sEMG at {cohort.fs_emg:g} Hz.", "",
        "| check | value |", "|---|---|",
        f"| protocol range (rad) | {np.round(checks['range_low_rad'], 3).tolist()} … "
        f"{np.round(checks['range_high_rad'], 3).tolist()} |",
        f"| joint angle reached (rad) | {np.round(checks['q_min_rad'], 3).tolist()} … "
        f"{np.round(checks['q_max_rad'], 3).tolist()} |",
        f"| max abs(q − protocol target) (rad) | {checks['max_tracking_error_rad']:.3f} |",
        f"| max abs(ground truth − closed loop) (rad) | "
        f"{checks['max_replay_vs_closed_loop_rad']:.2e} |",
        f"| envelope vs excitation, Pearson r (subject 1, per channel) | "
        f"{', '.join(f'{r:.3f}' for r in envelope_r)} |",
        f"| generation time (s) | {checks['seconds']} |", "",
        "## True subject parameters", "",
        "| subject | " + " | ".join(cohort.subject_ids) + " |",
        "|---|" + "---|" * cohort.n_subjects,
    ]
    for field, values in cohort.subjects.as_dict().items():
        v = np.asarray(values)
        if v.ndim == 1:
            lines.append(f"| {field} | " + " | ".join(f"{x:.4g}" for x in v) + " |")
        else:
            for j in range(v.shape[1]):
                label = (cohort.muscle_names[j] if v.shape[1] == len(cohort.muscle_names)
                         else f"{j}-{j + 1}")
                lines.append(f"| {field} [{label}] | "
                             + " | ".join(f"{x:.4g}" for x in v[:, j]) + " |")
    return "\n".join(lines) + "\n"


def run_cohort(out: Path, *, model: str = "wrist", subjects: int = 8, repetitions: int = 2,
               duration: float = 10.0, fs: float = 100.0, fs_emg: float = 2000.0, seed: int = 0,
               overwrite: bool = False, progress: Callable[[str], None] = print) -> dict:
    """Generate, save, export and plot a cohort into `out` (see `jaxmsk cohort --help`)."""
    from ..data._dataset import Dataset

    started = time.perf_counter()
    mdl = models.load(model, argument="--model")
    cohort = synthetic_cohort(mdl, subjects, jax.random.key(seed), repetitions=repetitions,
                              duration=duration, fs=fs, fs_emg=fs_emg, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    save_cohort(out / "cohort", cohort, overwrite=overwrite)
    progress(f"saved {out / 'cohort'} (arrays.npz, cohort.json, model.json)")
    written = [str(out / "cohort")]
    try:
        from ..io._recordings import export_recordings
    except ImportError:  # pragma: no cover - the recordings layout ships with the same release
        export_recordings = None
    if export_recordings is not None:
        export_recordings(out / "recordings", cohort, overwrite=overwrite)
        progress(f"exported {out / 'recordings'} (per subject: <trial>_emg.sto, "
                 "<trial>_kinematics.mot, <trial>_muscle_forces.sto, mvc_emg.sto)")
        written.append(str(out / "recordings"))

    first = Dataset.from_cohort(cohort).subject(cohort.subject_ids[0]).process()
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    delay = float(cohort.subjects.delay[0])
    rs = []
    from ..data import delay as shift
    env_all = np.concatenate([np.asarray(shift(t.emg, t.fs_emg, delay)) for t in first.trials])
    exc_all = np.concatenate([t.extra["excitation"] for t in first.trials])
    rs = [float(np.corrcoef(env_all[:, j], exc_all[:, j])[0, 1]) for j in range(exc_all.shape[1])]
    for r, t in enumerate(first.trials):
        path = plots / f"{cohort.subject_ids[0]}_{t.name}.png"
        save_figure(plot_trial(cohort, t.emg, 0, r), path, overwrite=overwrite)
        written.append(str(path))
    path = plots / "subject_parameters.png"
    save_figure(plot_subject_parameters(cohort), path, overwrite=overwrite)
    written.append(str(path))
    progress(f"wrote {len(first.trials) + 1} plots to {plots}")
    summary = _summary(cohort, rs)
    atomic_write_text(out / "summary.md", summary, overwrite=overwrite)
    result = {"checks": cohort.metadata["checks"], "envelope_r_subject1": rs,
              "files": written + [str(out / "summary.md")],
              "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "cohort_summary.json", json.dumps(result, indent=2) + "\n",
                      overwrite=overwrite)
    progress(f"done in {result['seconds']} s; see {out / 'summary.md'}")
    return result
