"""Synthetic cohorts on disk: `save_cohort` and `load_cohort`.

A cohort is one folder, e.g. `cohort_S8/`, holding three files:
- `arrays.npz`: every array, uncompressed NumPy (`time`, `time_emg`, the ground truth
  `q, qdot, qddot, target, excitation, activation, tendon_force, fiber_length, moments`,
  `emg`, `mvc_emg`, and each subject parameter as `subject/<field>`);
- `cohort.json`: the format tag, subject ids, trial names, protocols, sampling rates, every
  array's shape, dtype and units, the cohort's metadata, the jaxmsk version, and a table of
  each subject's true parameters for people to read (the exact values are in arrays.npz);
- `model.json`: the generic model (`jaxmsk.models.model_to_json`).

The folder is written whole or not at all: everything goes into a hidden temporary sibling
folder that is renamed into place. With `overwrite=True` the old folder is first renamed
aside, the new one renamed into place, and then the old one deleted; if the second rename
fails, the old folder is put back. `overwrite=True` only ever deletes a folder that holds a
jaxmsk cohort (or nothing), so a mistyped path cannot delete other data.

Load round-trips exactly: arrays bit for bit, the model's leaves (in JAX's default float
dtype, as `model_from_json` gives), the subjects. Metadata goes through JSON, so tuples in it
come back as lists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np

from .._model import Model
from ..cohort._cohort import TRUTH_FIELDS, UNITS, Cohort
from ..cohort._subjects import SubjectParameters
from ._atomic import check_writable, current_umask, swap_in_folder
from ._checkpoint import dumps, jaxmsk_version
from ._model_json import model_from_json, model_to_json

_FORMAT = "jaxmsk-cohort/1"
_FILES = ("arrays.npz", "cohort.json", "model.json")
_SUBJECT_UNITS = {
    "max_isometric_force_scale": "1", "optimal_fiber_length_scale": "1",
    "tendon_slack_length_scale": "1", "moment_arm_scale": "1", "size_scale": "1",
    "segment_mass_scale": "1", "damping_scale": "1", "tau_act": "s", "tau_deact": "s",
    "delay": "s", "emg_gain": "mV", "crosstalk": "1", "noise_rms": "mV", "powerline": "mV"}


def _subject_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SubjectParameters))


def _arrays(cohort: Cohort) -> dict[str, np.ndarray]:
    out = {"time": cohort.time, "time_emg": cohort.time_emg}
    out.update({k: getattr(cohort, k) for k in TRUTH_FIELDS})
    out.update(emg=cohort.emg, mvc_emg=cohort.mvc_emg)
    out.update({f"subject/{k}": v for k, v in cohort.subjects.as_dict().items()})
    return {k: np.asarray(v) for k, v in out.items()}


def _units(name: str) -> str:
    if name in ("time", "time_emg"):
        return "s"
    if name.startswith("subject/"):
        return _SUBJECT_UNITS.get(name[len("subject/"):], "")
    return UNITS.get(name, "")


def _check_shapes(shapes: dict[str, tuple], n_subjects: int, n_trials: int, n_muscles: int,
                  n_dofs: int, where: str) -> None:
    """ValueError naming `where` unless the arrays' shapes fit together."""
    expected = {"time", "time_emg", "emg", "mvc_emg", *TRUTH_FIELDS,
                *(f"subject/{k}" for k in _subject_fields())}
    missing, extra = sorted(expected - set(shapes)), sorted(set(shapes) - expected)
    if missing or extra:
        raise ValueError(f"{where}: arrays missing {missing}, unexpected {extra}.")
    n, n_emg = shapes["time"], shapes["time_emg"]
    if len(n) != 1 or len(n_emg) != 1:
        raise ValueError(f"{where}: time and time_emg must be 1-D, got shapes {n} and {n_emg}.")
    want = {k: (n_subjects, n_trials, n[0], n_dofs) for k in ("q", "qdot", "qddot", "target",
                                                              "moments")}
    want.update({k: (n_subjects, n_trials, n[0], n_muscles)
                 for k in ("excitation", "activation", "tendon_force", "fiber_length")})
    want["emg"] = (n_subjects, n_trials, n_emg[0], n_muscles)
    for name, shape in want.items():
        if tuple(shapes[name]) != shape:
            raise ValueError(f"{where}: {name} has shape {tuple(shapes[name])}, expected {shape} "
                             "(subjects, trials, time, dofs or muscles).")
    mvc = tuple(shapes["mvc_emg"])
    if len(mvc) != 3 or mvc[0] != n_subjects or mvc[2] != n_muscles:
        raise ValueError(f"{where}: mvc_emg has shape {mvc}, expected ({n_subjects}, time_mvc, "
                         f"{n_muscles}).")
    for k in _subject_fields():
        shape = tuple(shapes[f"subject/{k}"])
        if not shape or shape[0] != n_subjects:
            raise ValueError(f"{where}: subject/{k} has shape {shape}; its first axis must be "
                             f"the {n_subjects} subjects.")


def _subject_table(cohort: Cohort, arrays: dict[str, np.ndarray]) -> list[str]:
    """Each subject's true parameters as lines of a fixed-width table (one row per value)."""
    muscles = cohort.muscle_names
    rows = []
    for k in _subject_fields():
        a = arrays[f"subject/{k}"]
        unit = _SUBJECT_UNITS.get(k, "")
        label = f"{k} [{unit}]" if unit and unit != "1" else k
        if a.ndim == 1:
            rows.append((label, a))
        else:
            flat = a.reshape(a.shape[0], -1)
            for j in range(flat.shape[1]):
                if k == "crosstalk" and a.ndim == 2 and j + 1 < len(muscles):
                    name = f"{muscles[j]}-{muscles[j + 1]}"
                else:
                    name = muscles[j] if a.ndim == 2 and j < len(muscles) else str(j)
                rows.append((f"{label} {name}", flat[:, j]))
    width = max([len(r[0]) for r in rows] + [9])
    lines = [" ".join([f"{'parameter':<{width}}"] + [f"{s:>10}" for s in cohort.subject_ids])]
    lines += [" ".join([f"{label:<{width}}"] + [f"{float(v):>10.4g}" for v in values])
              for label, values in rows]
    return lines


def _description(cohort: Cohort, arrays: dict[str, np.ndarray]) -> dict:
    return {
        "format": _FORMAT,
        "jaxmsk_version": jaxmsk_version(),
        "subject_ids": list(cohort.subject_ids),
        "trial_names": list(cohort.trial_names),
        "protocols": list(cohort.protocols),
        "fs": float(cohort.fs),
        "fs_emg": float(cohort.fs_emg),
        "muscle_names": list(cohort.muscle_names),
        "coordinate_names": list(cohort.coordinate_names),
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str, "units": _units(k)}
                   for k, v in arrays.items()},
        "metadata": cohort.metadata,
        "true_parameters": _subject_table(cohort, arrays),
    }


def save_cohort(path, cohort: Cohort, *, overwrite: bool = False) -> str:
    """Save `cohort` as the folder `path` (see the module docstring for its contents).

    Args:
        path: the folder to create, e.g. "cohort_S8"; its parent must exist.
        cohort: a `jaxmsk.cohort.Cohort`.
        overwrite: replace an existing cohort folder at `path`. Without it an existing `path`
            raises `FileExistsError` and nothing is touched. Even with it, a folder that is
            not a jaxmsk cohort (no valid cohort.json) and not empty is refused.

    Returns the folder's path. Nothing is visible at `path` until every file is written.
    """
    if not isinstance(cohort, Cohort):
        raise ValueError(f"save_cohort needs a jaxmsk.cohort.Cohort, got {type(cohort).__name__}.")
    path = os.path.normpath(os.fspath(path))
    check_writable(path, overwrite=overwrite, what="save_cohort")
    if overwrite and os.path.lexists(path):
        _check_replaceable(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"save_cohort: folder {parent} does not exist; create it first.")
    arrays = _arrays(cohort)
    if any(a.dtype == object for a in arrays.values()):
        raise ValueError("save_cohort: the cohort holds object arrays; convert them to numbers.")
    _check_shapes({k: v.shape for k, v in arrays.items()}, len(cohort.subject_ids),
                  len(cohort.trial_names), cohort.model.n_muscles, cohort.model.n_dofs,
                  "save_cohort: cohort")
    if len(cohort.protocols) != len(cohort.trial_names):
        raise ValueError(f"save_cohort: {len(cohort.protocols)} protocols for "
                         f"{len(cohort.trial_names)} trials; give one protocol per trial.")
    # Everything that can fail on content fails here, before anything is written.
    cohort_json = dumps(_description(cohort, arrays), "save_cohort: cohort.metadata")
    model_json = model_to_json(cohort.model, source="jaxmsk.io.save_cohort")

    base = os.path.basename(path)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{base}.tmp-")
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        with open(os.path.join(tmp, "arrays.npz"), "wb") as f:
            np.savez(f, **arrays)
        for name, text in (("cohort.json", cohort_json), ("model.json", model_json)):
            with open(os.path.join(tmp, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        for name in _FILES:
            with open(os.path.join(tmp, name), "rb") as f:
                os.fsync(f.fileno())
        swap_in_folder(tmp, path, overwrite=overwrite, what="save_cohort")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _check_replaceable(path: str) -> None:
    """FileExistsError unless `path` is a jaxmsk cohort folder or an empty folder."""
    if os.path.isdir(path) and not os.path.islink(path):
        if not os.listdir(path):
            return
        try:
            with open(os.path.join(path, "cohort.json"), encoding="utf-8") as f:
                tag = json.load(f).get("format", "")
            if isinstance(tag, str) and tag.startswith("jaxmsk-cohort/"):
                return
        except (OSError, ValueError, AttributeError):
            pass
    raise FileExistsError(f"save_cohort: {path} exists and is not a jaxmsk cohort folder; "
                          "overwrite=True only replaces a cohort saved by save_cohort. Choose "
                          "another path or move it away yourself.")


def _read_json(folder: str, name: str) -> dict:
    file = os.path.join(folder, name)
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load_cohort: {file} is not valid JSON ({e}); the file is damaged.") \
            from None
    if not isinstance(data, dict):
        raise ValueError(f"load_cohort: {file} should hold a JSON object.")
    return data


def load_cohort(path) -> Cohort:
    """Load a cohort folder written by `save_cohort`.

    Raises `FileNotFoundError` if `path` is not a folder, and `ValueError` naming the file and
    the problem if a file is missing or damaged, the format tag is not "jaxmsk-cohort/1", or
    an array's shape or dtype disagrees with cohort.json or with the other arrays.
    """
    path = os.path.normpath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"load_cohort: {path} is not a folder; pass the folder written "
                                "by save_cohort.")
    missing = [n for n in _FILES if not os.path.isfile(os.path.join(path, n))]
    if missing:
        raise ValueError(f"load_cohort: {path} lacks {', '.join(missing)}; it is not a complete "
                         f"jaxmsk cohort folder (expected {', '.join(_FILES)}).")
    desc_file = os.path.join(path, "cohort.json")
    desc = _read_json(path, "cohort.json")
    if desc.get("format") != _FORMAT:
        raise ValueError(f"load_cohort: {desc_file} has format {desc.get('format')!r}, expected "
                         f"{_FORMAT!r} (not a jaxmsk cohort, or one from a newer jaxmsk: it says "
                         f"version {desc.get('jaxmsk_version')!r}).")
    keys = ("subject_ids", "trial_names", "protocols", "fs", "fs_emg", "arrays", "metadata")
    lacking = [k for k in keys if k not in desc]
    if lacking:
        raise ValueError(f"load_cohort: {desc_file} lacks {lacking}; the file is damaged.")

    npz_file = os.path.join(path, "arrays.npz")
    try:
        with np.load(npz_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, OSError, ValueError from np.load
        raise ValueError(f"load_cohort: {npz_file} is unreadable ({type(e).__name__}: {e}); "
                         "the file is damaged.") from None
    listed = desc["arrays"]
    missing, extra = sorted(set(listed) - set(arrays)), sorted(set(arrays) - set(listed))
    if missing or extra:
        raise ValueError(f"load_cohort: {npz_file} and {desc_file} disagree: arrays listed but "
                         f"absent {missing}, present but unlisted {extra}.")
    for name, a in arrays.items():
        shape, dtype = tuple(listed[name].get("shape", ())), listed[name].get("dtype")
        if a.shape != shape or a.dtype.str != dtype:
            raise ValueError(f"load_cohort: {npz_file}[{name!r}] has shape {a.shape} and dtype "
                             f"{a.dtype.str}, but {desc_file} says {shape} and {dtype}.")

    model_file = os.path.join(path, "model.json")
    try:
        with open(model_file, encoding="utf-8") as f:
            model = model_from_json(f.read())
    except (UnicodeDecodeError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"load_cohort: {model_file} is not a valid model file ({e}).") from None
    if not isinstance(model, Model):
        raise ValueError(f"load_cohort: {model_file} holds a {type(model).__name__}, not a "
                         "jaxmsk.Model.")

    subject_ids = tuple(desc["subject_ids"])
    trial_names = tuple(desc["trial_names"])
    protocols = tuple(desc["protocols"])
    if len(protocols) != len(trial_names):
        raise ValueError(f"load_cohort: {desc_file} lists {len(protocols)} protocols for "
                         f"{len(trial_names)} trials.")
    _check_shapes({k: v.shape for k, v in arrays.items()}, len(subject_ids), len(trial_names),
                  model.n_muscles, model.n_dofs, f"load_cohort: {npz_file}")
    subjects = SubjectParameters(**{k: arrays[f"subject/{k}"] for k in _subject_fields()})
    return Cohort(
        model=model, subjects=subjects, subject_ids=subject_ids, trial_names=trial_names,
        protocols=protocols, fs=float(desc["fs"]), fs_emg=float(desc["fs_emg"]),
        time=arrays["time"], time_emg=arrays["time_emg"],
        **{k: arrays[k] for k in TRUTH_FIELDS}, emg=arrays["emg"], mvc_emg=arrays["mvc_emg"],
        metadata=desc["metadata"])


__all__ = ["save_cohort", "load_cohort"]
