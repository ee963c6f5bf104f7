"""What every command shares: its output folder, its error handling, the device it ran on,
and the figures a researcher checks first (matplotlib, Agg backend, PNG written atomically)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io._atomic import atomic_path, atomic_write_text


def output_folder(command: str, args) -> Path | None:
    """`--out` as a Path, or None (after saying why) if it holds files and --overwrite is
    not given: nothing a user saved is replaced without asking."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"jaxmsk {command}: {out} exists and is not empty; pass --overwrite to replace "
              "the files it writes there, or choose another --out.", file=sys.stderr)
        return None
    return out


def run_command(command: str, args, run, **kwargs) -> int:
    """Check `--out`, call `run(out, **kwargs)`; input errors become a message and exit code 2."""
    if getattr(args, "x64", False):
        import jax

        jax.config.update("jax_enable_x64", True)
    out = output_folder(command, args)
    if out is None:
        return 2
    try:
        run(out, **kwargs)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"jaxmsk {command}: {e}", file=sys.stderr)
        return 2
    return 0


def device_name() -> str:
    """The device JAX runs on, e.g. "cpu (cpu)" or "NVIDIA H100 80GB HBM3 (gpu)"."""
    import jax

    return f"{jax.devices()[0].device_kind} ({jax.default_backend()})"


def config_json(config) -> dict:
    """A `TransferConfig` as JSON-able values (callables as their repr; the network left out)."""
    return {k: (v if isinstance(v, (int, float, str)) else repr(v))
            for k, v in config.__dict__.items() if k != "network"}


def write_results(out: Path, results: dict, files: list[str], markdown: Callable[[dict], str],
                  started: float, overwrite: bool, progress: Callable[[str], None]) -> dict:
    """Add the time and the files to `results`; write results.json and results.md."""
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["files"] = files + [str(out / name) for name in ("results.json", "results.md")]
    text = markdown(results)
    for name, content in (("results.json", json.dumps(results, indent=2) + "\n"),
                          ("results.md", text)):
        atomic_write_text(out / name, content, overwrite=overwrite)
    progress("\n" + text + f"\nwrote {', '.join(results['files'])}")
    return results


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, overwrite: bool = False) -> str:
    """Write `fig` as PNG at `path` atomically and close it."""
    plt = pyplot()
    with atomic_path(path, overwrite=overwrite, what="plot") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return os.fspath(path)


def plot_trial(cohort, envelope: np.ndarray, subject: int, trial: int):
    """Raw sEMG, processed envelope vs excitation, activation, tendon forces and joint
    angle vs target for one trial of a `Cohort`. `envelope` is the processed sEMG at the
    cohort's `fs`, (time, muscles), MVC-normalised."""
    plt = pyplot()
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
        axes[4].plot(t, cohort.target[subject, trial, :, d], ls="--",
                     label=f"{c} (protocol target)")
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
    plt = pyplot()
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
