"""Recordings → a processed dataset in a model's muscle and coordinate order.

`load_data` reads a recordings folder (`jaxmsk.io.load_recordings`), matches its columns to
the model by name (or in file order when the number matches, and says so), and processes
raw sEMG (`Trial.process`). Used by `jaxmsk train`, `personalise` and `identify`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..data._dataset import Dataset, Trial


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
    from ..io import load_recordings

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
