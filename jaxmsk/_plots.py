"""Figures a researcher checks first (matplotlib, Agg backend, PNG written atomically)."""

from __future__ import annotations

import os

import numpy as np

from .io._atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, overwrite: bool = False) -> str:
    """Write `fig` as PNG at `path` atomically and close it."""
    plt = _pyplot()
    with atomic_path(path, overwrite=overwrite, what="plot") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return os.fspath(path)


def plot_trial(cohort, envelope: np.ndarray, subject: int, trial: int):
    """Raw sEMG, processed envelope vs excitation, activation, tendon forces and joint
    angle vs target for one trial of a `Cohort`. `envelope` is the processed sEMG at the
    cohort's `fs`, (time, muscles), MVC-normalised."""
    plt = _pyplot()
    names = cohort.muscle_names
    m = len(names)
    colours = plt.get_cmap("tab10")(np.arange(m) % 10)
    fig, axes = plt.subplots(5, 1, figsize=(10, 12), sharex=True, constrained_layout=True)
    raw = cohort.emg[subject, trial]
    t_emg = cohort.time_emg
    step = 4 * float(np.max(np.std(raw, axis=0)))
    for j in range(m):
        axes[0].plot(t_emg, raw[:, j] - j * step, lw=0.3, color=colours[j])
    axes[0].set_yticks([-j * step for j in range(m)], names)
    axes[0].set_title(f"raw sEMG ({cohort.fs_emg:g} Hz, mV, channels offset by {step:.2f} mV)")
    t = cohort.time
    n = min(len(t), len(envelope))
    delay = float(cohort.subjects.delay[subject])
    for j in range(m):
        axes[1].plot(t[:n], envelope[:n, j], color=colours[j], lw=1, label=names[j])
        axes[1].plot(t - delay, cohort.excitation[subject, trial, :, j], color=colours[j],
                     lw=1, ls="--")
    axes[1].set_title(f"sEMG envelope, MVC-normalised (solid), and excitation moved "
                      f"{1e3 * delay:.0f} ms earlier, the electromechanical delay (dashed)")
    axes[1].legend(ncol=m, fontsize=8, loc="upper right")
    for j in range(m):
        axes[2].plot(t, cohort.activation[subject, trial, :, j], color=colours[j])
        axes[3].plot(t, cohort.tendon_force[subject, trial, :, j], color=colours[j])
    axes[2].set_title("activation")
    axes[3].set_title("muscle (tendon) force (N)")
    for d, c in enumerate(cohort.coordinate_names):
        axes[4].plot(t, cohort.q[subject, trial, :, d], label=f"{c} (simulated)")
        axes[4].plot(t, cohort.target[subject, trial, :, d], ls="--", label=f"{c} (protocol target)")
    lo = cohort.metadata["checks"]["range_low_rad"]
    hi = cohort.metadata["checks"]["range_high_rad"]
    for v in (*lo, *hi):
        axes[4].axhline(v, color="grey", lw=0.5, ls=":")
    axes[4].set_title("joint angle (rad); dotted: the protocol's range")
    axes[4].legend(fontsize=8, loc="upper right")
    axes[4].set_xlabel("time (s)")
    fig.suptitle(f"subject {cohort.subject_ids[subject]}, trial {cohort.trial_names[trial]}")
    return fig


def plot_subject_parameters(cohort):
    """True per-subject scales (F_max, l_opt, l_ts, moment arm) per muscle, and the scalar
    parameters, across the cohort."""
    plt = _pyplot()
    p = cohort.subjects.as_dict()
    per_muscle = ("max_isometric_force_scale", "optimal_fiber_length_scale",
                  "tendon_slack_length_scale", "moment_arm_scale", "emg_gain")
    scalars = ("size_scale", "segment_mass_scale", "damping_scale", "tau_act", "tau_deact",
               "delay")
    fig, axes = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    names = cohort.muscle_names
    width = 0.8 / len(per_muscle)
    x = np.arange(len(names))
    for k, field in enumerate(per_muscle):
        v = np.asarray(p[field])
        for s in range(v.shape[0]):
            axes[0].scatter(x + k * width, v[s], s=12, color=f"C{k}",
                            label=field if s == 0 else None)
    axes[0].axhline(1.0, color="grey", lw=0.5)
    axes[0].set_xticks(x + 0.4 - width / 2, names)
    axes[0].set_title("per-muscle true values across subjects (scales relative to the generic "
                      "model; EMG gain in mV)")
    axes[0].legend(fontsize=8)
    for k, field in enumerate(scalars):
        v = np.asarray(p[field])
        axes[1].scatter(np.full(v.shape, k), v, s=14)
    axes[1].set_xticks(range(len(scalars)), scalars, rotation=15)
    axes[1].set_title("per-subject values (scales; time constants and delay in s)")
    return fig
