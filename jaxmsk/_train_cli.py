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
the training subjects, so `load_predictor` rebuilds the structure and refuses a mismatching
model, rate or subject.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._train import Predictor, SubjectAdjustment, evaluate_segments, predict
from ._transfer import METHODS, TransferConfig, compare_methods, train
from .data._dataset import Dataset, Trial
from .io._atomic import atomic_write_text
from .io._checkpoint import _read_sidecar, load_checkpoint, save_checkpoint

GENERIC_FILE = "generic.eqx"
PERSONALISED_FILE = "personalised.eqx"
NETWORKS = ("cnn", "tcn", "gru", "mlp")
UNITS = {"angle": "rad", "force": "N", "eom_residual_rms": "dimensionless"}
_META_KEYS = ("network", "n_inputs", "n_outputs", "n_dofs", "dtype", "muscles", "coordinates",
              "fs", "emg_units", "subjects", "segment_length")


def network_builder(name: str) -> Callable:
    """`(n_inputs, n_outputs, key) -> network` for a `--network` name (default sizes)."""
    from . import nn

    classes = {"cnn": nn.CNN, "tcn": nn.TCN, "gru": nn.GRU, "mlp": nn.MLP}
    if name not in classes:
        raise ValueError(f"--network {name!r}: choose one of {', '.join(NETWORKS)}.")
    cls = classes[name]
    return lambda n_inputs, n_outputs, key: cls(n_inputs, n_outputs, key=key)


def load_model(name: str):
    """A built-in model ("wrist", "arm26"), a jaxmsk model .json, or an OpenSim .osim file
    (through `jaxmsk.load_osim`, which needs the `opensim` package)."""
    from ._cohort_cli import load_model_argument
    from .models import BUILTIN

    path = Path(name)
    if name not in BUILTIN and path.suffix.lower() in (".osim", ".json") and not path.is_file():
        raise ValueError(f"--model {name}: no such file.")
    if path.suffix.lower() == ".osim":
        from .io import load_osim

        try:
            return load_osim(path)
        except ImportError as e:
            raise ValueError(f"--model {name}: {e}") from None
    if name not in BUILTIN and path.suffix.lower() != ".json":
        raise ValueError(f"--model {name!r}: use one of {BUILTIN}, an OpenSim .osim file or a "
                         "model .json saved with jaxmsk.models.save_model_json.")
    return load_model_argument(name)


# ---------------------------------------------------------------------------------------------
# Recordings → a processed dataset in the model's muscle and coordinate order.


def _columns(labels, names, n: int, file: str, what: str, notes: dict) -> list[int]:
    if names and all(x in labels for x in names):
        return [labels.index(x) for x in names]
    if len(labels) == n:
        if names:
            key = (f"columns {', '.join(labels)} do not name the model's {what} "
                   f"({', '.join(names)}); they are taken in file order, e.g. in {file}")
            notes[key] = notes.get(key, 0) + 1
        return list(range(n))
    raise ValueError(
        f"{file} has {len(labels)} column(s) ({', '.join(labels)}) but the model has "
        f"{n} {what} ({', '.join(names)}); jaxmsk needs one column per model {what[:-1]}. Name "
        f"the columns after the model's {what} (other columns are then ignored), or pass the "
        "model the recordings belong to with --model.")


def _conform(t: Trial, model, root: Path, notes: dict, require_forces: bool = True) -> Trial:
    where = root / t.subject / t.name
    if t.forces is None and require_forces:
        raise ValueError(
            f"{where}_muscle_forces.sto is missing: training and evaluation need muscle force "
            "labels (N, one column per muscle, on the kinematics' time base), e.g. from OpenSim "
            "static optimisation or CEINMS; add the file for every trial.")
    mus = _columns(t.emg_labels, model.muscle_names, model.n_muscles, f"{where}_emg.sto",
                   "muscles", notes)
    dofs = _columns(t.coordinate_labels, model.coordinate_names, model.n_dofs,
                    f"{where}_kinematics.mot", "coordinates", notes)
    muscles = tuple(model.muscle_names) or tuple(t.emg_labels[i] for i in mus)
    return dataclasses.replace(
        t, emg=t.emg[:, mus], emg_labels=muscles,
        forces=None if t.forces is None else t.forces[:, mus],
        force_labels=muscles if t.forces is not None else (),
        q=t.q[:, dofs], coordinate_labels=tuple(t.coordinate_labels[i] for i in dofs),
        mvc_emg=None if t.mvc_emg is None else t.mvc_emg[:, mus])


def _processed(t: Trial, root: Path) -> Trial:
    if not t.processed:
        return t.process()
    if abs(t.fs_emg - t.fs) > 1e-6 * t.fs:
        raise ValueError(f"{root / t.subject / t.name}_emg.sto holds processed sEMG at "
                         f"{t.fs_emg:g} Hz but its kinematics are at {t.fs:g} Hz; resample the "
                         "envelope to the kinematics' rate, or store raw sEMG.")
    n = min(len(t.emg), t.n_samples)
    return dataclasses.replace(t, emg=t.emg[:n], q=t.q[:n],
                               forces=None if t.forces is None else t.forces[:n])


def load_data(root, model, subjects=None, progress: Callable[[str], None] = print, *,
              require_forces: bool = True) -> Dataset:
    """Load `root` (`jaxmsk.io.load_recordings`), conform every trial to `model` (muscles
    and coordinates by name, or in file order when the number matches) and process raw sEMG
    (`Trial.process`: envelope, MVC-normalised when mvc_emg.sto is there, at the labels'
    rate). `require_forces=False` accepts trials without muscle-force files (identification
    needs none). Raises ValueError naming the file and the fix."""
    from .io import load_recordings

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: no such folder; pass the folder holding one folder "
                         "per subject (S01/<trial>_emg.sto, <trial>_kinematics.mot, "
                         "<trial>_muscle_forces.sto, mvc_emg.sto).")
    dataset = load_recordings(root, subjects=subjects)
    notes: dict = {}
    trials = [_processed(_conform(t, model, root, notes, require_forces), root)
              for t in dataset.trials]
    for note, count in notes.items():
        progress(f"note: {note} ({count} file(s)).")
    units = {}
    for t in trials:
        units.setdefault(t.emg_units, f"{t.subject}/{t.name}")
    if len(units) > 1:
        raise ValueError(f"the sEMG envelopes have different units ({units}): give every "
                         "subject an mvc_emg.sto (MVC-normalised, units 1) or none.")
    return Dataset(tuple(trials))


# ---------------------------------------------------------------------------------------------
# Checkpoints.


def save_predictor(path, predictor: Predictor, adjustment: SubjectAdjustment, metadata: dict,
                   *, overwrite: bool) -> str:
    """`save_checkpoint` of `(predictor, adjustment)`; `metadata` needs `_META_KEYS` except
    dtype, which is added."""
    dtype = str(jnp.result_type(*jax.tree.leaves(eqx.filter(predictor, eqx.is_inexact_array))))
    return save_checkpoint(path, (predictor, adjustment), metadata={**metadata, "dtype": dtype},
                           overwrite=overwrite)


def load_predictor(path, model) -> tuple[Predictor, SubjectAdjustment, dict]:
    """A checkpoint written by `jaxmsk train` or `personalise` (the file, or a folder holding
    generic.eqx), in the current float dtype. ValueError if it does not fit `model`."""
    path = Path(path)
    if path.is_dir():
        path = path / GENERIC_FILE
    if not path.is_file():
        raise ValueError(f"--generic {path}: no such checkpoint; pass the --out folder of "
                         f"`jaxmsk train` (holding {GENERIC_FILE}) or the .eqx file itself.")
    meta = _read_sidecar(str(path))["metadata"]
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"--generic {path}: not a checkpoint of `jaxmsk train` (its metadata "
                         f"lacks {missing}).")
    for what, names in (("muscles", model.muscle_names), ("coordinates", model.coordinate_names)):
        if len(meta[what]) != len(names) or (names and tuple(meta[what]) != tuple(names)):
            raise ValueError(f"--generic {path} was trained with a model whose {what} are "
                             f"{meta[what]}, but --model has {list(names)}; pass the model it "
                             "was trained with.")
    net = network_builder(meta["network"])(meta["n_inputs"], meta["n_outputs"], jax.random.key(0))
    like = (Predictor(net, jnp.zeros(meta["n_outputs"]), jnp.ones(meta["n_outputs"]),
                      meta["n_dofs"]), SubjectAdjustment.identity(model.n_muscles))
    stored = np.dtype(meta["dtype"])  # loaded through NumPy: any dtype, whatever x64 is
    like = jax.tree.map(lambda x: np.zeros(x.shape, stored) if eqx.is_inexact_array(x) else x,
                        like)
    (predictor, adjustment), _ = load_checkpoint(path, like)
    here = jnp.result_type(float)
    predictor, adjustment = jax.tree.map(
        lambda x: jnp.asarray(x, here) if isinstance(x, np.ndarray) else x, (predictor, adjustment))
    return predictor, adjustment, meta


# ---------------------------------------------------------------------------------------------
# Reports.


def _device() -> str:
    return f"{jax.devices()[0].device_kind} ({jax.default_backend()})"


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
    return {**{k: (None if k.startswith("force") else v) for k, v in m.items()},
            "angle": {"labels": list(model.coordinate_names), **m["angle"]}, "force": None}


def _labelled(m: dict, model) -> dict:
    """`evaluate`'s dictionary with the output names beside the per-output lists."""
    return {**m, "angle": {"labels": list(model.coordinate_names), **m["angle"]},
            "force": {"labels": list(model.muscle_names), **m["force"]}}


def _config_json(config: TransferConfig) -> dict:
    return {k: (v if isinstance(v, (int, float, str)) else repr(v))
            for k, v in config.__dict__.items() if k != "network"}


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
              f"{tr['eom_residual_rms']:.3g}, validation {va['eom_residual_rms']:.3g}.", "",
              f"{r['seconds']:.0f} s on {r['device']}, {r['dtype']}."]
    return "\n".join(lines) + "\n"


def _personalise_markdown(r: dict) -> str:
    share = (f"{r['share']['trials']} whole trial(s)" if r["share"]["trials"] is not None else
             f"the first {100 * r['share']['fraction']:.0f} % of every trial")
    lines = [f"# jaxmsk personalise: subject {r['subject']}", "",
             f"Generic network {r['generic']}; each method got {share} "
             f"({', '.join(r['share_trials'])}) and is evaluated on the rest "
             f"({', '.join(r['test_trials'])}).", "",
             "| method | angle RMSE (rad) | force RMSE (N) | angle R² | force R² | EoM residual RMS |",
             "|---|---|---|---|---|---|"]
    for m, v in r["methods"].items():
        f_rmse, f_r2 = ((f"{v['force_rmse']:.3f}", f"{v['force_r2']:.3f}") if r["force_labels"]
                        else ("—", "—"))
        lines.append(f"| {m} | {v['angle_rmse']:.4f} | {f_rmse} | {v['angle_r2']:.3f} | "
                     f"{f_r2} | {v['eom_residual_rms']:.2e} |")
    if not r["force_labels"]:
        lines += ["", "The subject has no muscle-force files: the methods personalised on the "
                  "joint angles alone, and force errors cannot be scored."]
    if r["strength_scales"]:
        lines += ["", "Personalised F_max scales (× the model's):", ""]
        for m, scales in r["strength_scales"].items():
            lines.append(f"- {m}: " + ", ".join(f"{k} {v:.3f}" for k, v in scales.items()))
    lines += ["", f"{r['seconds']:.0f} s on {r['device']}."]
    return "\n".join(lines) + "\n"


def _traces(path: Path, trial: Trial, predictors: dict, overwrite: bool,
            force_truth: bool = True) -> str:
    """Every output of one test trial: measured against each method's prediction (forces
    without a measured line when the subject has no force labels)."""
    from ._plots import _pyplot, save_figure

    plt = _pyplot()
    rf = next(iter(predictors.values())).net.receptive_field
    t = trial.time()[rf - 1:]
    truth = np.concatenate([trial.q, trial.forces], axis=1)[rf - 1:]
    names = ([f"{c} (rad)" for c in trial.coordinate_labels]
             + [f"{m} force (N)" for m in trial.force_labels])
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.6 * len(names) + 1), sharex=True,
                             constrained_layout=True, squeeze=False)
    for i, (method, pred) in enumerate(predictors.items()):
        q_hat, f_hat = predict(pred, jnp.asarray(trial.emg))
        y = np.concatenate([np.asarray(q_hat), np.asarray(f_hat)], axis=1)
        for j, ax in enumerate(axes[:, 0]):
            ax.plot(t, y[:, j], color=f"C{i}", lw=1, label=method)
    for j, ax in enumerate(axes[:, 0]):
        if force_truth or j < trial.q.shape[1]:
            ax.plot(t, truth[:, j], "k", lw=1.5, label="measured")
        ax.set_ylabel(names[j], fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=len(predictors) + 1, loc="upper right")
    axes[-1, 0].set_xlabel("time (s) from the start of the evaluated part")
    fig.suptitle(f"subject {trial.subject}, trial {trial.name}: predictions vs measurements")
    return save_figure(fig, path, overwrite=overwrite)


def _report(out: Path, results: dict, files: list[str], markdown: Callable[[dict], str],
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
    config = _budget(TransferConfig(network=network_builder(network)), generic_steps=steps,
                     batch_size=batch_size, segment_length=segment_length)
    mdl = load_model(model)
    progress(f"jaxmsk train on {_device()}, {jnp.result_type(float)}")
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
        "best_step": fit.best_step, "steps": config.generic_steps, "history": fit.history,
        "config": _config_json(config), "seed": seed, "device": _device(),
        "dtype": str(jnp.result_type(float)), "units": UNITS}
    out.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "generic", "network": network, "n_inputs": pred.net.n_inputs,
            "n_outputs": pred.net.n_outputs, "n_dofs": pred.n_dofs, "model": model,
            "muscles": list(mdl.muscle_names), "coordinates": list(mdl.coordinate_names),
            "fs": dataset.trials[0].fs, "emg_units": dataset.trials[0].emg_units,
            "subjects": list(dataset.subjects), "segment_length": config.segment_length,
            "best_step": fit.best_step, "seed": seed}
    files = [save_predictor(out / GENERIC_FILE, pred, fit.adjustment, meta, overwrite=overwrite)]
    return _report(out, results, files, _train_markdown, started, overwrite, progress)


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


def run_personalise(out: Path, *, data, subject: str, generic, model: str = "wrist",
                    share: float | None = None, trials: int | None = None,
                    steps: int | None = None, batch_size: int | None = None,
                    methods: str = "all", seed: int = 0, overwrite: bool = False,
                    progress: Callable[[str], None] = print) -> dict:
    """`jaxmsk personalise` (see the module docstring). The share is the first `share` of
    every trial (default 0.2), or `trials` whole trials chosen at random."""
    started = time.perf_counter()
    chosen = parse_methods(methods)
    if share is None and trials is None:
        share = 0.2
    if share is not None and not 0 < share < 1:
        raise ValueError(f"--share {share}: give the fraction of every trial to personalise "
                         "on, between 0 and 1 (e.g. 0.2), or --trials.")
    mdl = load_model(model)
    predictor, _, meta = load_predictor(generic, mdl)
    config = _budget(TransferConfig(network=network_builder(meta["network"]),
                                    segment_length=meta["segment_length"]),
                     personal_steps=steps, batch_size=batch_size)
    generic_folder = Path(generic) if Path(generic).is_dir() else Path(generic).parent
    if out.resolve() == generic_folder.resolve():
        raise ValueError(f"--out {out} is the generic network's folder; choose another --out "
                         "(its results.json would be replaced).")
    if subject in meta["subjects"]:
        raise ValueError(f"--subject {subject}: the generic network {generic} was trained on "
                         f"{', '.join(meta['subjects'])}, this subject included, so its "
                         "evaluation would not be held out; train it without this subject "
                         "(jaxmsk train --subjects ...).")
    progress(f"jaxmsk personalise {subject} on {_device()}, {jnp.result_type(float)}")
    dataset = load_data(data, mdl, [subject], progress, require_forces=False)
    dataset, force_labels = _force_labels_or_placeholders(dataset, mdl, Path(data), subject,
                                                          progress)
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
    files.append(_traces(out / "traces.png", test.trials[0], fold["predictors"], overwrite,
                         force_truth=force_labels))
    scored = {m: _labelled(v, mdl) if force_labels else _without_forces(v, mdl)
              for m, v in fold["methods"].items()}
    results = {
        "command": "personalise", "subject": subject, "generic": str(generic), "model": model,
        "share": {"fraction": share if trials is None else None, "trials": trials},
        "share_trials": [t.name for t in part.trials], "test_trials": [t.name for t in test.trials],
        "force_labels": force_labels, "methods": scored,
        "strength_scales": {m: dict(zip(mdl.muscle_names, s))
                            for m, s in fold["strength_scales"].items()},
        "config": _config_json(config), "seed": seed, "device": _device(),
        "dtype": str(jnp.result_type(float)), "units": UNITS}
    return _report(out, results, files, _personalise_markdown, started, overwrite, progress)
