"""`jaxmsk train` and `jaxmsk personalise`: physics-informed transfer learning on a user's
recordings in the biomechanists' folder layout (`jaxmsk.io.load_recordings`).

- `run_train`: load the source subjects' recordings, check them against the model, process
  raw sEMG as `jaxmsk demo` does (band-pass, notch, envelope, MVC, labels' rate), train the
  generic network (data + λ·physics, `jaxmsk.train`), write `generic.eqx` (+ its JSON
  sidecar), `results.json` and `results.md` (per-output metrics on the training and
  validation segments: angles in rad, forces in N).
- `run_personalise`: load one held-out subject and the generic checkpoint, give every
  requested method (`jaxmsk.METHODS`; none needs the source subjects once the generic
  network exists) the subject's share, evaluate on the rest, write `results.json` (the
  demo's schema: {"methods": {name: {"angle_rmse", "force_rmse", ...}}}), `results.md`,
  `traces.png` and `personalised.eqx` (pi_transfer's network and physical parameters).

Columns are matched to the model by name (extra columns, e.g. the other coordinates of a
full-body inverse kinematics file, are ignored); columns that do not name the model's
muscles or coordinates are taken in file order when their number matches, and said so.
Muscle force labels (`<trial>_muscle_forces.sto`) are required by `jaxmsk train` (the
generic network learns forces from them). `jaxmsk personalise` works without them for the
new subject (muscle forces cannot be measured in vivo): if none of its trials has a force
file, every method personalises on the joint angles alone, the forces learning from the
physics loss only, and no force metric is reported.

A checkpoint holds `(Predictor, SubjectAdjustment)`; its metadata names the network, its
sizes and dtype, the model's muscles and coordinates, the sampling rate, the sEMG units and
the training subjects, so `load_predictor` (`jaxmsk._learn.checkpoint`) rebuilds the
structure and refuses a mismatching model, rate or subject.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import models
from .._learn import checkpoint
from .._learn.checkpoint import GENERIC_FILE, PERSONALISED_FILE, load_predictor, save_predictor
from .._learn.recordings import load_data
from .._learn.train import evaluate_segments, predict, recorded_residual_rms
from .._learn.transfer import METHODS, MODEL_METHODS, TransferConfig, compare_methods, train
from ..data._dataset import Dataset, Trial
from .report import config_json, device_name, pyplot, save_figure, write_results

UNITS = {"angle": "rad", "force": "N", "eom_residual_rms": "dimensionless"}


# ---------------------------------------------------------------------------------------------
# Reports.


def _force_labels_or_placeholders(dataset: Dataset, model, root: Path, subject: str,
                                  progress) -> tuple[Dataset, bool]:
    """(dataset, True) if every trial has force labels; if none has, the trials with zero
    placeholders (never read: `compare_methods(force_labels=False)`) and False."""
    missing = [t.name for t in dataset.trials if t.forces is None]
    if not missing:
        return dataset, True
    if len(missing) < len(dataset.trials):
        files = ", ".join(str(root / subject / f"{n}_muscle_forces.sto") for n in missing)
        raise ValueError(f"{files} missing while subject {subject}'s other trials have force "
                         "labels; give every trial its muscle-force file, or none (then the "
                         "methods personalise on the joint angles alone).")
    progress(f"note: subject {subject} has no muscle-force files: every method personalises "
             "on the joint angles alone (the forces learn from the physics loss only), and "
             "no force metric is reported.")
    return Dataset(tuple(dataclasses.replace(t, forces=np.zeros((t.n_samples, model.n_muscles)),
                                             force_labels=tuple(model.muscle_names))
                         for t in dataset.trials)), False


def _without_forces(m: dict, model) -> dict:
    """`_labelled` for a subject without force labels: every force metric is None."""
    by_motion = {k: {n: (None if n.startswith("force") else x) for n, x in v.items()}
                 for k, v in m.get("by_motion", {}).items()}
    return {**{k: (None if k.startswith("force") else v) for k, v in m.items()},
            "angle": {"labels": list(model.coordinate_names), **m["angle"]}, "force": None,
            "by_motion": by_motion}


def _labelled(m: dict, model) -> dict:
    """`evaluate`'s dictionary with the output names beside the per-output lists."""
    return {**m, "angle": {"labels": list(model.coordinate_names), **m["angle"]},
            "force": {"labels": list(model.muscle_names), **m["force"]}}


def _train_markdown(r: dict) -> str:
    tr, va = r["training"], r["validation"]
    lines = ["# jaxmsk train: generic network", "",
             f"Model {r['model']}, network {r['network']}, subjects {', '.join(r['subjects'])} "
             f"({r['trials']} trials at {r['fs_hz']:g} Hz); {r['segments']['train']} training "
             f"and {r['segments']['validation']} validation segments (chosen at random); best "
             f"validation loss at step {r['best_step']} of {r['steps']}.", "",
             "| output | unit | train RMSE | val RMSE | val NRMSE | val R² | val Pearson r |",
             "|---|---|---|---|---|---|---|"]
    for kind, unit in (("angle", "rad"), ("force", "N")):
        for j, name in enumerate(va[kind]["labels"]):
            lines.append(f"| {name} ({kind}) | {unit} | {tr[kind]['rmse'][j]:.4g} | "
                         f"{va[kind]['rmse'][j]:.4g} | {va[kind]['nrmse'][j]:.3f} | "
                         f"{va[kind]['r2'][j]:.3f} | {va[kind]['pearson_r'][j]:.3f} |")
    lines += ["", f"Equation-of-motion residual RMS (dimensionless): training "
              f"{tr['eom_residual_rms']:.3g}, validation {va['eom_residual_rms']:.3g}; of the "
              f"recorded angles and forces themselves {_floor(r)}.", "",
              f"{r['seconds']:.0f} s on {r['device']}, {r['dtype']}."]
    return "\n".join(lines) + "\n"


def _floor(r: dict) -> str:
    x = r.get("recorded_eom_residual_rms")
    return "not known (no force labels)" if x is None else f"{x:.3g}"


def _personalise_markdown(r: dict) -> str:
    tr = r["share"]["trials"]
    share = (f"the first {100 * r['share']['fraction']:.0f} % of every trial" if tr is None
             else f"{tr} whole trial(s)" if isinstance(tr, int) else "the whole trials")
    lines = [f"# jaxmsk personalise: subject {r['subject']}", "",
             f"Generic network {r['generic']}; each method got {share} "
             f"({', '.join(r['share_trials'])}) and is evaluated on the rest "
             f"({', '.join(r['test_trials'])}).", "",
             "| method | angle RMSE (rad) | force RMSE (N) | angle R² | force R² "
             "| EoM residual RMS |",
             "|---|---|---|---|---|---|"]
    for m, v in r["methods"].items():
        f_rmse, f_r2 = ((f"{v['force_rmse']:.3f}", f"{v['force_r2']:.3f}")
                        if r.get("force_scored", r["force_labels"]) else ("—", "—"))
        lines.append(f"| {m} | {v['angle_rmse']:.4f} | {f_rmse} | {v['angle_r2']:.3f} | "
                     f"{f_r2} | {v['eom_residual_rms']:.2e} |")
    lines += ["", "EoM residual: RMS over the test samples of the predictions (dimensionless, "
              "÷ muscle moment capacity); of the subject's recorded angles and forces "
              f"{_floor(r)}. "
              "Predicted samples outside the model's joint limits (where the limit moment "
              "dominates the residual): " + ", ".join(
                  f"{m} {100 * v['angle_outside_limits']:.1f} %" for m, v in r["methods"].items())
              + "."]
    kinds = next(iter(r["methods"].values())).get("by_motion") or {}
    if len(kinds) > 1:
        lines += ["", "Angle RMSE (rad) by motion type of the test trials:", "",
                  "| method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        for m, v in r["methods"].items():
            lines.append(f"| {m} | " + " | ".join(
                f"{v['by_motion'][k]['angle_rmse']:.4f}" for k in kinds) + " |")
    if not r.get("force_scored", r["force_labels"]):
        lines += ["", "The subject has no muscle-force files: the methods personalised on the "
                  "joint angles alone, and force errors cannot be scored."]
    elif not r["force_labels"]:
        lines += ["", "`--labels angle`: the methods personalised on the share's joint angles "
                  "alone; the recorded muscle forces of the test part score them."]
    if r["strength_scales"]:
        lines += ["", "Personalised F_max scales (× the model's):", ""]
        for m, scales in r["strength_scales"].items():
            lines.append(f"- {m}: " + ", ".join(f"{k} {v:.3f}" for k, v in scales.items()))
    lines += ["", f"{r['seconds']:.0f} s on {r['device']}."]
    return "\n".join(lines) + "\n"


def _traces(path: Path, trial: Trial, predictors: dict, overwrite: bool,
            force_truth: bool = True, simulated: dict | None = None, rf: int = 1) -> str:
    """Every output of one test trial: measured against each method's prediction (forces
    without a measured line when the subject has no force labels). `simulated`: the model
    methods ({name: CalibratedMSK or HybridMSK}), simulated open loop over the whole trial
    and drawn over the networks' span."""
    plt = pyplot()
    if predictors:
        rf = next(iter(predictors.values())).net.receptive_field
    t = trial.time()[rf - 1:]
    truth = np.concatenate([trial.q, trial.forces], axis=1)[rf - 1:]
    names = ([f"{c} (rad)" for c in trial.coordinate_labels]
             + [f"{m} force (N)" for m in trial.force_labels])
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.6 * len(names) + 1), sharex=True,
                             constrained_layout=True, squeeze=False)
    outputs = {}
    for method, pred in predictors.items():
        q_hat, f_hat = predict(pred, jnp.asarray(trial.emg))
        outputs[method] = np.concatenate([np.asarray(q_hat), np.asarray(f_hat)], axis=1)
    for method, sim in (simulated or {}).items():
        q_hat, f_hat = sim.predict(trial)
        outputs[method] = np.concatenate([q_hat, f_hat], axis=1)[rf - 1:]
    for i, (method, y) in enumerate(outputs.items()):
        for j, ax in enumerate(axes[:, 0]):
            ax.plot(t, y[:, j], color=f"C{i}", lw=1, label=method)
    for j, ax in enumerate(axes[:, 0]):
        if force_truth or j < trial.q.shape[1]:
            ax.plot(t, truth[:, j], "k", lw=1.5, label="measured")
        ax.set_ylabel(names[j], fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=len(outputs) + 1, loc="upper right")
    axes[-1, 0].set_xlabel("time (s) from the start of the evaluated part")
    fig.suptitle(f"subject {trial.subject}, trial {trial.name}: predictions vs measurements")
    return save_figure(fig, path, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# The commands.


def _budget(config: TransferConfig, **changes) -> TransferConfig:
    """`config` with the options given (not None) replaced; ValueError if not positive."""
    flags = {"generic_steps": "--steps", "personal_steps": "--steps",
             "batch_size": "--batch-size", "segment_length": "--segment-length"}
    changes = {k: v for k, v in changes.items() if v is not None}
    for k, v in changes.items():
        if v < 1:
            raise ValueError(f"{flags[k]} {v}: give a positive number.")
    return dataclasses.replace(config, **changes)


def run_train(out: Path, *, data, model: str = "wrist", subjects=None, steps: int | None = None,
              seed: int = 0, network: str = "cnn", batch_size: int | None = None,
              segment_length: int | None = None, overwrite: bool = False,
              progress: Callable[[str], None] = print) -> dict:
    """`jaxmsk train` (see the module docstring); budgets default to `TransferConfig()`'s."""
    started = time.perf_counter()
    config = _budget(TransferConfig(network=checkpoint.network_builder(network)),
                     generic_steps=steps, batch_size=batch_size, segment_length=segment_length)
    mdl = models.load(model, argument="--model")
    progress(f"jaxmsk train on {device_name()}, {jnp.result_type(float)}")
    dataset = load_data(data, mdl, subjects, progress)
    progress(f"training the generic {network} on {', '.join(dataset.subjects)} "
             f"({len(dataset)} trials), {config.generic_steps} steps ...")
    fit = train(dataset, mdl, config, key=jax.random.key(seed), progress=progress)
    pred = fit.predictor
    results = {
        "command": "train", "data": str(data), "model": model, "network": network,
        "subjects": list(dataset.subjects), "trials": len(dataset), "fs_hz": dataset.trials[0].fs,
        "segments": {"train": len(fit.train), "validation": len(fit.val),
                     "length": config.segment_length},
        "training": _labelled(evaluate_segments(pred, fit.train, mdl), mdl),
        "validation": _labelled(evaluate_segments(pred, fit.val, mdl), mdl),
        "recorded_eom_residual_rms": recorded_residual_rms(dataset, mdl),
        "best_step": fit.best_step, "steps": config.generic_steps, "history": fit.history,
        "config": config_json(config), "seed": seed, "device": device_name(),
        "dtype": str(jnp.result_type(float)), "units": UNITS}
    out.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "generic", "network": network, "n_inputs": pred.net.n_inputs,
            "n_outputs": pred.net.n_outputs, "n_dofs": pred.n_dofs, "model": model,
            "muscles": list(mdl.muscle_names), "coordinates": list(mdl.coordinate_names),
            "fs": dataset.trials[0].fs, "emg_units": dataset.trials[0].emg_units,
            "subjects": list(dataset.subjects), "segment_length": config.segment_length,
            "best_step": fit.best_step, "seed": seed}
    files = [save_predictor(out / GENERIC_FILE, pred, fit.adjustment, meta, overwrite=overwrite)]
    return write_results(out, results, files, _train_markdown, started, overwrite, progress)


def parse_methods(text: str) -> tuple[str, ...]:
    """"all" or a comma-separated subset of `METHODS`."""
    if text.strip() == "all":
        return METHODS
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise ValueError(f"--methods {text!r}: give 'all' or a comma-separated list of "
                         f"{', '.join(METHODS)}.")
    return methods


def parse_trials(text) -> int | list[str] | None:
    """--trials: None, a number of whole trials, or comma-separated trial names."""
    if text is None or isinstance(text, int):
        return text
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--trials {text!r}: give a number of trials or trial names, e.g. "
                         "slow_1,slow_2.")
    return names


def run_personalise(out: Path, *, data, subject: str, generic, model: str | None = None,
                    share: float | None = None, trials: int | str | list | None = None,
                    labels: str = "all", steps: int | None = None,
                    batch_size: int | None = None, methods: str = "all", seed: int = 0,
                    overwrite: bool = False, progress: Callable[[str], None] = print) -> dict:
    """`jaxmsk personalise` (see the module docstring). The share is the first `share` of
    every trial (default 0.2), or whole `trials` (a number chosen at random, or names).
    `labels="angle"`: the methods see only the share's joint angles; forces still score them
    on the test part where force files exist. `model` defaults to the generic checkpoint's."""
    started = time.perf_counter()
    chosen = parse_methods(methods)
    trials = parse_trials(trials)
    if labels not in ("all", "angle"):
        raise ValueError(f"--labels {labels!r}: give 'all' or 'angle'.")
    if share is None and trials is None:
        share = 0.2
    if share is not None and not 0 < share < 1:
        raise ValueError(f"--share {share}: give the fraction of every trial to personalise "
                         "on, between 0 and 1 (e.g. 0.2), or --trials.")
    if model is None:
        model = checkpoint.predictor_metadata(generic)[1].get("model", "wrist")
        if model not in models.BUILTIN and not Path(model).exists():
            raise ValueError(f"--generic {generic} was trained with the model {model}, which "
                             "is not found from here; pass it as --model.")
        progress(f"model {model} (the generic network's, from its checkpoint)")
    mdl = models.load(model, argument="--model")
    predictor, _, meta = load_predictor(generic, mdl)
    config = _budget(TransferConfig(network=checkpoint.network_builder(meta["network"]),
                                    segment_length=meta["segment_length"]),
                     personal_steps=steps, batch_size=batch_size)
    if steps is not None:  # pi_hybrid's optimiser steps too
        config = dataclasses.replace(config, hybrid=dataclasses.replace(
            config.hybrid_config(), steps=steps, eval_every=min(10, steps)))
    generic_folder = Path(generic) if Path(generic).is_dir() else Path(generic).parent
    if out.resolve() == generic_folder.resolve():
        raise ValueError(f"--out {out} is the generic network's folder; choose another --out "
                         "(its results.json would be replaced).")
    if subject in meta["subjects"]:
        raise ValueError(f"--subject {subject}: the generic network {generic} was trained on "
                         f"{', '.join(meta['subjects'])}, this subject included, so its "
                         "evaluation would not be held out; train it without this subject "
                         "(jaxmsk train --subjects ...).")
    progress(f"jaxmsk personalise {subject} on {device_name()}, {jnp.result_type(float)}")
    dataset = load_data(data, mdl, [subject], progress, require_forces=False)
    dataset, has_forces = _force_labels_or_placeholders(dataset, mdl, Path(data), subject,
                                                        progress)
    force_labels = has_forces and labels == "all"
    t0 = dataset.trials[0]
    if abs(t0.fs - meta["fs"]) > 1e-6 * meta["fs"] or t0.emg_units != meta["emg_units"]:
        raise ValueError(f"subject {subject}'s recordings give sEMG in {t0.emg_units!r} at "
                         f"{t0.fs:g} Hz, the generic network was trained on {meta['emg_units']!r} "
                         f"at {meta['fs']:g} Hz; record or resample to the same rate, and give "
                         "both an mvc_emg.sto (or neither).")
    k_share, k_methods = jax.random.split(jax.random.key(seed))
    if trials is not None:
        part, test = dataset.share(k_share, trials=trials)
    else:
        part, test = dataset.share(k_share, fraction=share)
    if not part.trials or not test.trials:
        raise ValueError(f"--trials {trials}: the share has {len(part.trials)} and the test "
                         f"part {len(test.trials)} trials; both need at least one.")
    fold = compare_methods(predictor, part, test, mdl, config, k_methods, methods=chosen,
                           force_labels=force_labels, progress=progress, label=f"{subject} ")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "pi_transfer" in fold["adjustments"]:
        personal = {**meta, "kind": "personalised", "subject": subject, "generic": str(generic),
                    "strength_scales": fold["strength_scales"]["pi_transfer"]}
        files.append(save_predictor(out / PERSONALISED_FILE, fold["predictors"]["pi_transfer"],
                                    fold["adjustments"]["pi_transfer"], personal,
                                    overwrite=overwrite))
    simulated = {m: fold["calibrated"][m] for m in MODEL_METHODS
                 if m in chosen and m in fold["calibrated"]}
    files.append(_traces(out / "traces.png", test.trials[0], fold["predictors"], overwrite,
                         force_truth=has_forces, simulated=simulated,
                         rf=predictor.net.receptive_field))
    scored = {m: _labelled(v, mdl) if has_forces else _without_forces(v, mdl)
              for m, v in fold["methods"].items()}
    results = {
        "command": "personalise", "subject": subject, "generic": str(generic), "model": model,
        "share": {"fraction": share if trials is None else None, "trials": trials},
        "share_trials": [t.name for t in part.trials], "test_trials": [t.name for t in test.trials],
        "labels": labels, "force_labels": force_labels, "force_scored": has_forces,
        "methods": scored,
        "recorded_eom_residual_rms": recorded_residual_rms(dataset, mdl) if has_forces else None,
        "strength_scales": {m: dict(zip(mdl.muscle_names, s))
                            for m, s in fold["strength_scales"].items()},
        "config": config_json(config), "seed": seed, "device": device_name(),
        "dtype": str(jnp.result_type(float)), "units": UNITS}
    return write_results(out, results, files, _personalise_markdown, started, overwrite, progress)
