"""Recordings in the folder layout biosignal researchers keep: `load_recordings` and
`export_recordings`.

One folder per subject under a root, one set of files per trial:

    root/
      S01/
        slow_1_emg.sto            sEMG, one column per muscle: raw (mV) or a processed envelope
        slow_1_kinematics.mot     joint angles from inverse kinematics (inDegrees=yes or no)
        slow_1_muscle_forces.sto  optional: muscle force labels (N), one column per muscle
        mvc_emg.sto               optional: the subject's MVC trial, raw, same channels
      S02/ ...

Every file is an OpenSim storage file (`read_sto` / `write_sto`), time column first, so the
same folder opens in OpenSim (`TimeSeriesTable`), in the NMSM Pipeline and in CEINMS-style
scripts. The EMG header may say `emg=raw` or `emg=processed` and `units=...`; jaxmsk writes
both. The name `mvc_emg.sto` is reserved for the MVC trial, so no trial may be called "mvc".

Departures and limits, on purpose:
- `Trial` has no start time: samples are kept, the time offset of the files is dropped (EMG
  and kinematics must start within one sample of each other). Exported files start at 0 s.
- Only the layout's series travel: a `Trial`'s `extra` series (qdot, activation, ...) and a
  `Cohort`'s true subject parameters are not written (use `save_cohort` for a whole cohort).
- Subjects and trials load in sorted name order (a folder has no other order).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from ..data._dataset import Dataset, Trial
from ._atomic import current_umask, swap_in_folder
from ._sto import Table, read_sto, write_sto

EMG_SUFFIX = "_emg.sto"
KINEMATICS_SUFFIX = "_kinematics.mot"
FORCES_SUFFIX = "_muscle_forces.sto"
MVC_FILE = "mvc_emg.sto"
# Raw sEMG carries content up to ~450 Hz, so it is sampled at 1–2 kHz; envelopes are stored
# at the kinematics' rate (50–200 Hz). 500 Hz separates the two when the header does not say.
RAW_MIN_RATE = 500.0
_REL_RATE_TOL = 1e-6  # relative difference of two sampling rates accepted as equal

_LAYOUT = ("one folder per subject under the root, e.g. root/S01/ holding <trial>_emg.sto "
           "(sEMG, one column per muscle), <trial>_kinematics.mot (joint angles), optionally "
           "<trial>_muscle_forces.sto (N) and mvc_emg.sto (the subject's raw MVC trial)")


# ---------------------------------------------------------------------------------------------
# Loading.


def load_recordings(root, *, subjects=None, muscles=None, coordinates=None,
                    emg: str = "auto") -> Dataset:
    """Load a folder of recordings (see the module docstring for the layout) as a `Dataset`.

    Args:
        root: the folder holding one folder per subject (hidden entries and plain files in it
            are ignored).
        subjects: subject folder names to load, in this order; default all, sorted.
        muscles: EMG (and force, and MVC) columns to keep, in this order; default all columns
            of the EMG file, and then a forces file must hold the same muscles (its columns
            are put in the EMG's order) and an MVC file the same channels.
        coordinates: kinematics columns to keep, in this order; default all.
        emg: "auto" (raw when the EMG header says `emg=raw`, processed when it says
            `emg=processed`; without either, raw when sampled at >= 500 Hz), "raw" or
            "processed" to decide for every file.

    Returns:
        A `Dataset`, one `Trial` per `<trial>_emg.sto`: `emg` (time_emg, channels) at
        `fs_emg`, `q` (time, dofs) in rad at `fs`, `forces` (time, muscles) in N at `fs` or
        None, `mvc_emg` or None. Sampling rates come from the files' time columns.
        `emg_units` is the header's `units` entry, else "mV" for raw and "1" for processed.
        Kinematics in degrees (`inDegrees=yes`) are converted to radians, every column:
        translational coordinates (m) are not supported here — pass `coordinates=` with
        the rotational ones, or convert the file yourself.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: naming the file and the fix, for a folder not in the layout (no subject
            folders, a subject without trials, a missing kinematics file), non-uniform time,
            EMG and kinematics spanning different times (by more than one sample of the
            slower rate), forces off the kinematics' time base, unknown `muscles` or
            `coordinates`, EMG, force and MVC channels that disagree.
        TableFormatError: a malformed file (a `ValueError` naming the file and line).
    """
    root = os.fspath(root)
    if emg not in ("auto", "raw", "processed"):
        raise ValueError(f"load_recordings: emg={emg!r}; pass 'auto', 'raw' or 'processed'.")
    muscles = _label_arg(muscles, "muscles")
    coordinates = _label_arg(coordinates, "coordinates")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"load_recordings: {root} is not a folder; pass the folder that "
                                f"holds the subject folders ({_LAYOUT}).")
    found = sorted(n for n in os.listdir(root)
                   if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))
    if not found:
        raise ValueError(f"load_recordings: {root} holds no subject folders. Expected {_LAYOUT}.")
    if subjects is None:
        chosen = found
    else:
        chosen = _label_arg(subjects, "subjects")
        unknown = [s for s in chosen if s not in found]
        if unknown:
            raise ValueError(f"load_recordings: no subject folder {', '.join(map(repr, unknown))} "
                             f"in {root}; subject folders: {', '.join(found)}.")
    trials = []
    for subject in chosen:
        trials.extend(_load_subject(os.path.join(root, subject), subject, muscles, coordinates,
                                    emg))
    return Dataset(tuple(trials))


def _label_arg(labels, name):
    if labels is None:
        return None
    labels = (labels,) if isinstance(labels, str) else tuple(labels)
    if not labels or not all(isinstance(x, str) and x for x in labels):
        raise ValueError(f"load_recordings: {name}={labels!r}; pass a non-empty sequence of "
                         "labels (strings), or None for all.")
    if len(set(labels)) != len(labels):
        raise ValueError(f"load_recordings: {name}={labels!r} names a label twice; name each "
                         "once.")
    return labels


def _load_subject(folder, subject, muscles, coordinates, emg):
    files = sorted(n for n in os.listdir(folder)
                   if not n.startswith(".") and os.path.isfile(os.path.join(folder, n)))
    names = [n[:-len(EMG_SUFFIX)] for n in files if n.endswith(EMG_SUFFIX) and n != MVC_FILE]
    if "" in names:
        raise ValueError(f"load_recordings: {os.path.join(folder, EMG_SUFFIX)} has no trial "
                         f"name; rename it <trial>{EMG_SUFFIX} (e.g. slow_1{EMG_SUFFIX}).")
    if not names:
        raise ValueError(f"load_recordings: subject folder {folder} holds no <trial>{EMG_SUFFIX} "
                         f"file. Expected {_LAYOUT}; pass subjects= to load only the subject "
                         "folders.")
    for n in files:
        for suffix in (KINEMATICS_SUFFIX, FORCES_SUFFIX):
            if n.endswith(suffix) and n[:-len(suffix)] not in names:
                raise ValueError(f"load_recordings: {os.path.join(folder, n)} has no EMG: "
                                 f"{os.path.join(folder, n[:-len(suffix)] + EMG_SUFFIX)} is "
                                 "missing; add it, or move the trial's files out of the folder.")
    mvc_path = os.path.join(folder, MVC_FILE)
    mvc = _read_mvc(mvc_path) if os.path.isfile(mvc_path) else None
    return [_load_trial(folder, subject, name, muscles, coordinates, emg, mvc)
            for name in names]


def _rate(table: Table) -> float:
    try:
        return table.rate
    except ValueError as e:
        raise ValueError(f"load_recordings: {e}") from None


def _select(table: Table, labels, arg: str) -> Table:
    missing = [x for x in labels if x not in table.labels]
    if missing:
        raise ValueError(f"load_recordings: {table.path} has no column "
                         f"{', '.join(map(repr, missing))} (asked for by {arg}=); available "
                         f"columns: {', '.join(table.labels)}. Pass {arg}= with labels the "
                         "file has, or add the columns to the file.")
    return table.select(labels)


def _same_channels(table: Table, reference: Table, what: str) -> Table:
    """`table`'s columns in `reference`'s order; ValueError unless they are the same set."""
    if set(table.labels) != set(reference.labels):
        only_t = [x for x in table.labels if x not in reference.labels]
        only_r = [x for x in reference.labels if x not in table.labels]
        raise ValueError(f"load_recordings: {table.path} and {reference.path} disagree on the "
                         f"{what}: only in the first {only_t}, only in the second {only_r}. "
                         "Pass muscles= with the labels both files have, or make them agree.")
    return table.select(reference.labels)


def _read_mvc(path) -> Table:
    table = read_sto(path)
    flag = table.metadata.get("emg", "raw").strip().lower()
    if flag != "raw":
        raise ValueError(f"load_recordings: {path} says emg={table.metadata['emg']}, but the "
                         "MVC trial must be raw sEMG (its peak envelope normalises the trials); "
                         "store the raw MVC recording.")
    _rate(table)
    return table


def _is_processed(table: Table, rate: float, emg: str) -> bool:
    if emg != "auto":
        return emg == "processed"
    flag = table.metadata.get("emg")
    if flag is None:
        return rate < RAW_MIN_RATE
    value = flag.strip().lower()
    if value not in ("raw", "processed"):
        raise ValueError(f"load_recordings: {table.path} says emg={flag}; write emg=raw or "
                         "emg=processed in its header, or pass emg='raw' or emg='processed'.")
    return value == "processed"


def _span_problem(emg_where, e0, e1, fs_emg, kin_where, k0, k1, fs) -> str | None:
    """A message when the two spans differ by more than one sample of the slower rate."""
    tol = 1.0 / min(fs_emg, fs)
    if abs(e0 - k0) <= tol * (1 + 1e-9) and abs(e1 - k1) <= tol * (1 + 1e-9):
        return None
    return (f"{emg_where} spans {e0:g}–{e1:g} s ({fs_emg:g} Hz) but {kin_where} spans "
            f"{k0:g}–{k1:g} s ({fs:g} Hz); they must cover the same time within one sample of "
            f"the slower rate ({tol:g} s). Cut both recordings to the same interval.")


def _load_trial(folder, subject, name, muscles, coordinates, emg, mvc) -> Trial:
    emg_path = os.path.join(folder, name + EMG_SUFFIX)
    kin_path = os.path.join(folder, name + KINEMATICS_SUFFIX)
    force_path = os.path.join(folder, name + FORCES_SUFFIX)
    if not os.path.isfile(kin_path):
        raise ValueError(f"load_recordings: trial {subject}/{name} has no kinematics: {kin_path} "
                         f"is missing. Every {emg_path} needs {name}{KINEMATICS_SUFFIX} (joint "
                         "angles from inverse kinematics) beside it; add it, or move the "
                         "trial's EMG out of the folder.")
    emg_table = read_sto(emg_path)
    fs_emg = _rate(emg_table)
    kin = read_sto(kin_path)
    fs = _rate(kin)
    problem = _span_problem(emg_path, emg_table.time[0], emg_table.time[-1], fs_emg,
                            kin_path, kin.time[0], kin.time[-1], fs)
    if problem:
        raise ValueError(f"load_recordings: {problem}")
    if kin.in_degrees is None:
        raise ValueError(f"load_recordings: {kin_path} has no inDegrees line in its header, so "
                         "the angles' units are unknown; add `inDegrees=yes` (degrees) or "
                         "`inDegrees=no` (radians) before `endheader`.")
    kin = kin.to_radians()  # every column: rotational coordinates only (see the docstring)
    if coordinates is not None:
        kin = _select(kin, coordinates, "coordinates")
    if muscles is not None:
        emg_table = _select(emg_table, muscles, "muscles")
    processed = _is_processed(emg_table, fs_emg, emg)
    units = emg_table.metadata.get("units", "1" if processed else "mV").strip()

    forces, force_labels = None, ()
    if os.path.isfile(force_path):
        ft = read_sto(force_path)
        fs_f = _rate(ft)
        if (len(ft.time) != len(kin.time) or abs(fs_f - fs) > _REL_RATE_TOL * fs
                or abs(ft.time[0] - kin.time[0]) > 0.5 / fs):
            raise ValueError(f"load_recordings: {force_path} has {len(ft.time)} samples at "
                             f"{fs_f:g} Hz from {ft.time[0]:g} s, but {kin_path} has "
                             f"{len(kin.time)} at {fs:g} Hz from {kin.time[0]:g} s; write the "
                             "forces on the kinematics' time base (e.g. np.interp).")
        ft = _select(ft, muscles, "muscles") if muscles is not None else _same_channels(
            ft, emg_table, "muscles")
        forces, force_labels = np.array(ft.values), ft.labels

    mvc_emg = None
    if mvc is not None:
        fs_mvc = _rate(mvc)
        if abs(fs_mvc - fs_emg) > _REL_RATE_TOL * fs_emg:
            raise ValueError(f"load_recordings: {mvc.path} is sampled at {fs_mvc:g} Hz but "
                             f"{emg_path} at {fs_emg:g} Hz; the MVC trial must share the EMG's "
                             "rate (resample it, or remove it).")
        sel = _select(mvc, muscles, "muscles") if muscles is not None else _same_channels(
            mvc, emg_table, "EMG channels")
        mvc_emg = np.array(sel.values)

    return Trial(subject=subject, name=name, emg=np.array(emg_table.values), fs_emg=fs_emg,
                 emg_labels=emg_table.labels, emg_units=units, processed=processed, fs=fs,
                 q=np.array(kin.values), coordinate_labels=kin.labels, forces=forces,
                 force_labels=force_labels, mvc_emg=mvc_emg)


# ---------------------------------------------------------------------------------------------
# Export.


def export_recordings(root, cohort_or_dataset, *, overwrite: bool = False) -> str:
    """Write a `Cohort` (via `to_dataset()`) or a `Dataset` in the recordings layout.

    Per trial: `<trial>_emg.sto` (header `emg=raw|processed` and `units=<emg_units>`),
    `<trial>_kinematics.mot` (rad, `inDegrees=no`), `<trial>_muscle_forces.sto` when the
    trial has forces; per subject `mvc_emg.sto` when its trials carry an MVC recording. Time
    columns are `arange(n) / rate` (s); values are written exactly (`write_sto`), so
    `load_recordings` gives the arrays back bit for bit. `extra` series are not written.

    The folder is written whole or not at all: into a hidden temporary sibling folder that
    is renamed into place. An existing non-empty `root` is replaced only with
    `overwrite=True`, and only when it holds nothing but this layout's files, so a mistyped
    path cannot delete other data.

    Returns:
        The root written.

    Raises:
        FileExistsError: `root` exists, is not empty and `overwrite` is False (or it holds
            other files).
        ValueError: a trial the layout cannot hold (no kinematics, EMG and kinematics of
            different durations, a trial named "mvc", names that are not folder or file
            names, trials of one subject with different MVC recordings); nothing is written.
    """
    dataset = _as_dataset(cohort_or_dataset)
    files = _files(dataset)  # every check on content happens here, before writing
    root = os.path.normpath(os.fspath(root))
    parent = os.path.dirname(os.path.abspath(root))
    base = os.path.basename(os.path.abspath(root))
    if os.path.lexists(root):
        if not os.path.isdir(root) or os.path.islink(root):
            raise FileExistsError(f"export_recordings: {root} exists and is not a folder; "
                                  "choose another path.")
        if os.listdir(root):
            if not overwrite:
                raise FileExistsError(f"export_recordings: {root} exists and is not empty; "
                                      "pass overwrite=True to replace it, or choose another "
                                      "path.")
            _check_replaceable(root)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{base}.tmp-")
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        for subject, filename, (time, values, labels, in_degrees, metadata) in files:
            folder = os.path.join(tmp, subject)
            if not os.path.isdir(folder):
                os.mkdir(folder)
            try:
                write_sto(os.path.join(folder, filename), time, values, labels,
                          in_degrees=in_degrees, metadata=metadata)
            except ValueError as e:
                raise ValueError(f"export_recordings: {subject}/{filename}: {e}") from None
        swap_in_folder(tmp, root, overwrite=overwrite, what="export_recordings")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _as_dataset(obj) -> Dataset:
    if isinstance(obj, Dataset):
        return obj
    to_dataset = getattr(obj, "to_dataset", None)
    if callable(to_dataset):
        dataset = to_dataset()
        if isinstance(dataset, Dataset):
            return dataset
    raise ValueError(f"export_recordings: got a {type(obj).__name__}; pass a jaxmsk.cohort.Cohort "
                     "or a jaxmsk.data.Dataset.")


def _check_name(name, what: str) -> None:
    if (not isinstance(name, str) or not name or name in (".", "..") or name.startswith(".")
            or any(c in name for c in "/\\\0") or (os.altsep and os.altsep in name)):
        raise ValueError(f"export_recordings: {what} {name!r} cannot be a folder or file name; "
                         "use letters, digits, '_' or '-' (not starting with '.').")


def _files(dataset: Dataset):
    """[(subject, file name, (time, values, labels, in_degrees, metadata))] for every file."""
    if not len(dataset):
        raise ValueError("export_recordings: the dataset has no trials; nothing to write.")
    out, mvcs = [], {}
    for t in dataset.trials:
        where = f"export_recordings: trial {t.subject}/{t.name}"
        _check_name(t.subject, "subject")
        _check_name(t.name, "trial name")
        if t.name + EMG_SUFFIX == MVC_FILE:
            raise ValueError(f"{where}: the name 'mvc' is reserved for the MVC file "
                             f"{MVC_FILE}; rename the trial.")
        if t.q is None or t.fs is None:
            raise ValueError(f"{where} has no kinematics (q and fs); the layout needs "
                             f"{t.name}{KINEMATICS_SUFFIX} for every trial.")
        for label, n in (("emg", len(t.emg)), ("q", len(t.q))):
            if n < 2:
                raise ValueError(f"{where}: {label} has {n} sample(s); a sampling rate needs 2.")
        problem = _span_problem("its emg", 0.0, (len(t.emg) - 1) / t.fs_emg, t.fs_emg,
                                "its q", 0.0, (len(t.q) - 1) / t.fs, t.fs)
        if problem:
            raise ValueError(f"{where}: {problem}")
        emg_meta = {"emg": "processed" if t.processed else "raw", "units": t.emg_units}
        t_emg = np.arange(len(t.emg)) / t.fs_emg
        t_kin = np.arange(len(t.q)) / t.fs
        out.append((t.subject, t.name + EMG_SUFFIX,
                    (t_emg, t.emg, t.emg_labels, False, emg_meta)))
        out.append((t.subject, t.name + KINEMATICS_SUFFIX,
                    (t_kin, t.q, t.coordinate_labels, False, None)))
        if t.forces is not None:
            out.append((t.subject, t.name + FORCES_SUFFIX,
                        (t_kin, t.forces, t.force_labels, False, None)))
        if t.mvc_emg is not None:
            if len(t.mvc_emg) < 2:
                raise ValueError(f"{where}: mvc_emg has {len(t.mvc_emg)} sample(s); a sampling "
                                 "rate needs 2.")
            key = (t.fs_emg, t.emg_labels)
            first = mvcs.setdefault(t.subject, (key, t.mvc_emg, t.name))
            if first[0] != key or not np.array_equal(first[1], t.mvc_emg):
                raise ValueError(f"{where}: its MVC recording (or EMG rate or channels) differs "
                                 f"from trial {t.subject}/{first[2]}'s, but the layout holds one "
                                 f"{MVC_FILE} per subject; give the subject's trials one MVC.")
    for subject, ((fs_emg, labels), mvc, _) in mvcs.items():
        # The MVC is raw: its units are those of the subject's raw trials (mV when none is raw).
        units = next((t.emg_units for t in dataset.trials
                      if t.subject == subject and not t.processed), "mV")
        out.append((subject, MVC_FILE, (np.arange(len(mvc)) / fs_emg, mvc, labels, False,
                                        {"emg": "raw", "units": units})))
    return out


def _check_replaceable(root: str) -> None:
    """FileExistsError unless `root` holds only subject folders of this layout's files."""
    for entry in os.listdir(root):
        folder = os.path.join(root, entry)
        ok = os.path.isdir(folder) and not os.path.islink(folder) and all(
            os.path.isfile(os.path.join(folder, n)) and (
                n == MVC_FILE or n.endswith((EMG_SUFFIX, KINEMATICS_SUFFIX, FORCES_SUFFIX)))
            for n in os.listdir(folder))
        if not ok:
            raise FileExistsError(f"export_recordings: {root} holds {folder}, which is not a "
                                  "subject folder of the recordings layout; overwrite=True only "
                                  "replaces a folder of recordings. Choose another path or move "
                                  "it away yourself.")


__all__ = ["load_recordings", "export_recordings"]
