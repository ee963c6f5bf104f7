"""jaxmsk.io._recordings: the per-subject folder layout of recordings, in and out."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from helpers import assert_foreign_folder_kept, fake_cohort, hidden_entries, import_opensim

from jaxmsk.cohort import Cohort
from jaxmsk.data import Dataset, Trial
from jaxmsk.io._recordings import export_recordings, load_recordings
from jaxmsk.io._sto import read_sto, write_sto

N_SUBJECTS, N_TIME, N_EMG, N_MVC = 2, 11, 101, 40
FS, FS_EMG = 100.0, 1000.0  # both series span 0–0.1 s
TRIALS = ("slow_1", "fast_1")
MUSCLES = ("FCR", "FCU", "ECU", "ECRB", "ECRL")


def _cohort(seed: int = 0) -> Cohort:
    """A small cohort of random data with consistent spans (no simulation)."""
    return fake_cohort(seed, trial_names=TRIALS, n_time=N_TIME, fs=FS, n_emg=N_EMG,
                       fs_emg=FS_EMG, n_mvc=N_MVC, n_subjects=N_SUBJECTS, force_scale=500.0)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return _cohort(0)


@pytest.fixture()
def exported(tmp_path, cohort) -> str:
    return export_recordings(tmp_path / "rec", cohort)


def _trials(dataset: Dataset) -> dict:
    return {(t.subject, t.name): t for t in dataset.trials}


def _snapshot(root) -> dict[str, bytes]:
    out = {}
    for folder, _, files in os.walk(root):
        for n in files:
            p = os.path.join(folder, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def _write(path, time, values, labels, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_sto(path, time, values, labels, **kwargs)


def _hand_subject(root, *, fs_emg=FS_EMG, n_emg=N_EMG, emg_meta=None, kin_degrees=False,
                  kin_time=None, seed=1):
    """root/S01/t_emg.sto and t_kinematics.mot written by hand; returns (emg, q)."""
    rng = np.random.default_rng(seed)
    emg = rng.standard_normal((n_emg, 2))
    q = rng.standard_normal((N_TIME, 2))
    _write(os.path.join(root, "S01", "t_emg.sto"), np.arange(n_emg) / fs_emg, emg, ("A", "B"),
           metadata=emg_meta)
    _write(os.path.join(root, "S01", "t_kinematics.mot"),
           np.arange(N_TIME) / FS if kin_time is None else kin_time, q, ("hip", "knee"),
           in_degrees=kin_degrees)
    return emg, q


# 1. Round trips.

def test_cohort_round_trip_is_exact(tmp_path, cohort):
    root = tmp_path / "rec"
    assert export_recordings(root, cohort) == os.fspath(root)
    assert sorted(os.listdir(root)) == ["S01", "S02"]
    assert sorted(os.listdir(root / "S01")) == sorted(
        ["mvc_emg.sto"] + [f"{t}_{s}" for t in TRIALS for s in
                           ("emg.sto", "kinematics.mot", "muscle_forces.sto")])
    assert hidden_entries(tmp_path) == []
    header = read_sto(root / "S01" / "slow_1_emg.sto").metadata
    assert header["emg"] == "raw" and header["units"] == "mV"
    assert read_sto(root / "S01" / "slow_1_kinematics.mot").in_degrees is False

    expected = _trials(cohort.to_dataset())
    loaded = load_recordings(root)
    assert loaded.subjects == ("S01", "S02")
    got = _trials(loaded)
    assert set(got) == set(expected)
    for key, t in got.items():
        e = expected[key]
        np.testing.assert_array_equal(t.emg, e.emg)  # float32 values come back exactly
        np.testing.assert_array_equal(t.q, e.q)
        np.testing.assert_array_equal(t.forces, e.forces)
        np.testing.assert_array_equal(t.mvc_emg, e.mvc_emg)
        assert t.emg.shape == (N_EMG, 5) and t.q.shape == (N_TIME, 1)
        assert t.emg_labels == e.emg_labels == MUSCLES
        assert t.force_labels == MUSCLES and t.coordinate_labels == ("flexion",)
        assert t.fs == pytest.approx(FS, rel=1e-12)
        assert t.fs_emg == pytest.approx(FS_EMG, rel=1e-12)
        assert (t.processed, t.emg_units, t.extra) == (False, "mV", {})


def test_processed_dataset_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    trials = tuple(Trial(subject=s, name=n, emg=rng.random((N_TIME, 2)), fs_emg=FS,
                         emg_labels=("A", "B"), emg_units="1", processed=True, fs=FS,
                         q=rng.standard_normal((N_TIME, 1)), coordinate_labels=("elbow",))
                   for s in ("P1", "P2") for n in ("a", "b"))
    root = export_recordings(tmp_path / "rec", Dataset(trials))
    assert read_sto(os.path.join(root, "P1", "a_emg.sto")).metadata["units"] == "1"
    got = _trials(load_recordings(root))
    for t in trials:
        g = got[(t.subject, t.name)]
        np.testing.assert_array_equal(g.emg, t.emg)
        np.testing.assert_array_equal(g.q, t.q)
        assert (g.processed, g.emg_units, g.forces, g.mvc_emg) == (True, "1", None, None)
    # The header's emg=processed wins over the rate in "auto"; "raw" forces it.
    forced = load_recordings(root, emg="raw").trials[0]
    assert forced.processed is False and forced.emg_units == "1"  # units from the header


@pytest.mark.parametrize("fs_emg, processed", [(FS, True), (499.0, True), (FS_EMG, False)])
def test_auto_uses_the_rate_when_the_header_is_silent(tmp_path, fs_emg, processed):
    n_emg = int(round(0.1 * fs_emg)) + 1 if fs_emg != 499.0 else 51
    _hand_subject(tmp_path, fs_emg=fs_emg, n_emg=n_emg)
    t = load_recordings(tmp_path).trials[0]
    assert t.processed is processed
    assert t.emg_units == ("1" if processed else "mV")
    assert t.fs_emg == pytest.approx(fs_emg, rel=1e-12)


def test_header_units_are_kept(tmp_path):
    _hand_subject(tmp_path, emg_meta={"emg": "raw", "units": "uV"})
    assert load_recordings(tmp_path).trials[0].emg_units == "uV"


def test_kinematics_in_degrees_come_back_in_radians(tmp_path):
    _, q_deg = _hand_subject(tmp_path, kin_degrees=True)
    t = load_recordings(tmp_path).trials[0]
    np.testing.assert_array_equal(t.q, np.deg2rad(q_deg))
    assert not np.array_equal(t.q, q_deg)


def test_selects_and_orders_muscles_and_coordinates(exported, cohort):
    picked = ("ECRL", "FCR")
    loaded = load_recordings(exported, muscles=picked, coordinates=["flexion"], subjects=["S02"])
    assert loaded.subjects == ("S02",)
    e = _trials(cohort.to_dataset())
    idx = [MUSCLES.index(m) for m in picked]
    for t in loaded.trials:
        ref = e[(t.subject, t.name)]
        assert t.emg_labels == t.force_labels == picked
        np.testing.assert_array_equal(t.emg, ref.emg[:, idx])
        np.testing.assert_array_equal(t.forces, ref.forces[:, idx])
        np.testing.assert_array_equal(t.mvc_emg, ref.mvc_emg[:, idx])


def test_force_columns_follow_the_emg_order(tmp_path):
    emg, q = _hand_subject(tmp_path)
    f = np.random.default_rng(4).random((N_TIME, 2))
    _write(tmp_path / "S01" / "t_muscle_forces.sto", np.arange(N_TIME) / FS, f, ("B", "A"))
    t = load_recordings(tmp_path).trials[0]
    assert t.force_labels == ("A", "B")
    np.testing.assert_array_equal(t.forces, f[:, ::-1])


# 2. Errors name the file and the fix.

def test_missing_kinematics_names_the_file(exported):
    path = os.path.join(exported, "S02", "fast_1_kinematics.mot")
    os.remove(path)
    with pytest.raises(ValueError, match=r"fast_1_kinematics\.mot is missing") as err:
        load_recordings(exported)
    assert path in str(err.value) and "inverse kinematics" in str(err.value)


def test_mismatched_spans_name_both_files(tmp_path):
    _hand_subject(tmp_path, kin_time=np.arange(N_TIME) / FS + 0.02)  # 2 samples late
    with pytest.raises(ValueError, match="same time within one sample") as err:
        load_recordings(tmp_path)
    msg = str(err.value)
    assert "t_emg.sto spans 0–0.1 s" in msg and "t_kinematics.mot spans 0.02–0.12 s" in msg


def test_one_sample_of_the_slower_rate_is_tolerated(tmp_path):
    _hand_subject(tmp_path, n_emg=N_EMG + 10)  # EMG ends 10 ms (one kinematics sample) later
    assert load_recordings(tmp_path).trials[0].emg.shape == (N_EMG + 10, 2)


def test_unknown_muscles_name_file_missing_and_available(exported):
    with pytest.raises(ValueError, match=r"S01/fast_1_emg\.sto has no column 'BIC'") as err:
        load_recordings(exported, muscles=["FCR", "BIC"])
    assert "available columns: FCR, FCU, ECU, ECRB, ECRL" in str(err.value)
    with pytest.raises(ValueError, match=r"kinematics\.mot has no column 'wrist_dev'"):
        load_recordings(exported, coordinates=["wrist_dev"])
    with pytest.raises(ValueError, match=r"no subject folder 'S09'.*S01, S02"):
        load_recordings(exported, subjects=["S09"])


def test_non_uniform_time_names_the_file(tmp_path):
    t = np.arange(N_TIME) / FS
    t[5] += 0.003
    _hand_subject(tmp_path, kin_time=t)
    with pytest.raises(ValueError, match=r"t_kinematics\.mot: time is not uniformly sampled"):
        load_recordings(tmp_path)


def test_kinematics_without_in_degrees_is_refused(tmp_path):
    _hand_subject(tmp_path)
    path = tmp_path / "S01" / "t_kinematics.mot"
    path.write_text(path.read_text().replace("inDegrees=no\n", ""))
    with pytest.raises(ValueError, match=r"t_kinematics\.mot has no inDegrees line"):
        load_recordings(tmp_path)


def test_empty_root_and_subject_without_trials(tmp_path):
    with pytest.raises(ValueError, match="holds no subject folders. Expected one folder per "
                                         "subject") as err:
        load_recordings(tmp_path)
    assert "<trial>_kinematics.mot" in str(err.value)
    (tmp_path / "notes.txt").write_text("a file at the root is not a subject")
    with pytest.raises(ValueError, match="holds no subject folders"):
        load_recordings(tmp_path)
    (tmp_path / "S01").mkdir()
    with pytest.raises(ValueError, match=r"S01 holds no <trial>_emg\.sto file.*subjects="):
        load_recordings(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_recordings(tmp_path / "nowhere")


def test_emg_and_force_labels_must_agree_by_default(tmp_path):
    _hand_subject(tmp_path)
    _write(tmp_path / "S01" / "t_muscle_forces.sto", np.arange(N_TIME) / FS,
           np.ones((N_TIME, 2)), ("A", "C"))
    with pytest.raises(ValueError, match=r"t_muscle_forces\.sto and .*t_emg\.sto disagree on "
                                         r"the muscles: only in the first \['C'\]"):
        load_recordings(tmp_path)
    t = load_recordings(tmp_path, muscles=["A"]).trials[0]
    assert t.emg_labels == t.force_labels == ("A",)


def test_forces_off_the_kinematics_time_base(tmp_path):
    _hand_subject(tmp_path)
    _write(tmp_path / "S01" / "t_muscle_forces.sto", np.arange(N_TIME - 1) / FS,
           np.ones((N_TIME - 1, 2)), ("A", "B"))
    with pytest.raises(ValueError, match=r"t_muscle_forces\.sto has 10 samples .*"
                                         r"t_kinematics\.mot has 11"):
        load_recordings(tmp_path)


def test_mvc_channels_and_rate_must_match(tmp_path):
    _hand_subject(tmp_path)
    mvc = tmp_path / "S01" / "mvc_emg.sto"
    write_sto(mvc, np.arange(20) / FS_EMG, np.ones((20, 2)), ("A", "Z"))
    with pytest.raises(ValueError, match=r"mvc_emg\.sto and .*t_emg\.sto disagree on the EMG "
                                         r"channels: only in the first \['Z'\]"):
        load_recordings(tmp_path)
    write_sto(mvc, np.arange(20) / 2000.0, np.ones((20, 2)), ("B", "A"), overwrite=True)
    with pytest.raises(ValueError, match=r"mvc_emg\.sto is sampled at 2000 Hz but .*t_emg\.sto "
                                         "at 1000 Hz"):
        load_recordings(tmp_path)
    values = np.random.default_rng(5).random((20, 2))
    write_sto(mvc, np.arange(20) / FS_EMG, values, ("B", "A"), overwrite=True)
    np.testing.assert_array_equal(load_recordings(tmp_path).trials[0].mvc_emg, values[:, ::-1])


def test_orphan_kinematics_and_bad_arguments(tmp_path):
    _hand_subject(tmp_path)
    _write(tmp_path / "S01" / "u_kinematics.mot", np.arange(3) / FS, np.ones((3, 1)), ("x",))
    with pytest.raises(ValueError, match=r"u_kinematics\.mot has no EMG: .*u_emg\.sto is "
                                         "missing"):
        load_recordings(tmp_path)
    with pytest.raises(ValueError, match="emg='envelope'; pass 'auto', 'raw' or 'processed'"):
        load_recordings(tmp_path, emg="envelope")


# 3. Export: never overwrite what the user saved; refuse what the layout cannot hold.

def test_refuses_to_overwrite_and_leaves_folder_untouched(exported, cohort, tmp_path):
    before = _snapshot(exported)
    with pytest.raises(FileExistsError, match="exists and is not empty; pass overwrite=True"):
        export_recordings(exported, _cohort(1))
    assert _snapshot(exported) == before
    assert hidden_entries(tmp_path) == []


def test_overwrite_replaces(exported, tmp_path):
    other = _cohort(1)
    export_recordings(exported, other, overwrite=True)
    got = _trials(load_recordings(exported))
    for key, e in _trials(other.to_dataset()).items():
        np.testing.assert_array_equal(got[key].q, e.q)
    assert hidden_entries(tmp_path) == []


def test_overwrite_never_deletes_other_data(tmp_path, cohort):
    assert_foreign_folder_kept(tmp_path,
                               lambda path: export_recordings(path, cohort, overwrite=True),
                               "not a subject folder of the recordings layout")


def test_export_into_an_existing_empty_folder(tmp_path, cohort):
    (tmp_path / "rec").mkdir()
    export_recordings(tmp_path / "rec", cohort)
    assert sorted(os.listdir(tmp_path / "rec")) == ["S01", "S02"]


def test_failure_while_writing_leaves_nothing_behind(tmp_path, cohort):
    bad = Dataset(tuple(dataclasses.replace(t, coordinate_labels=("wrist flexion",))
                        for t in cohort.to_dataset().trials))
    with pytest.raises(ValueError, match=r"S01/slow_1_kinematics\.mot: label 'wrist flexion'"):
        export_recordings(tmp_path / "rec", bad)
    assert os.listdir(tmp_path) == []


def test_export_refuses_what_the_layout_cannot_hold(tmp_path, cohort):
    trials = cohort.to_dataset().trials
    t = trials[0]
    cases = [
        (dataclasses.replace(t, name="mvc"), "the name 'mvc' is reserved"),
        (dataclasses.replace(t, q=None, forces=None), "has no kinematics"),
        (dataclasses.replace(t, emg=t.emg[:50]), "same time within one sample"),
        (dataclasses.replace(t, subject="../S01"), "cannot be a folder or file name"),
    ]
    for trial, message in cases:
        with pytest.raises(ValueError, match=message):
            export_recordings(tmp_path / "rec", Dataset((trial,)))
    two_mvcs = Dataset((t, dataclasses.replace(trials[1], mvc_emg=t.mvc_emg + 1.0)))
    with pytest.raises(ValueError, match=r"one mvc_emg\.sto per subject"):
        export_recordings(tmp_path / "rec", two_mvcs)
    with pytest.raises(ValueError, match="pass a jaxmsk.cohort.Cohort or a jaxmsk.data.Dataset"):
        export_recordings(tmp_path / "rec", {"emg": t.emg})
    assert os.listdir(tmp_path) == []


# 4. OpenSim reads the files.

def test_opensim_reads_exported_files(exported, cohort):
    osim = import_opensim()
    for name, labels, rows in (("slow_1_emg.sto", MUSCLES, N_EMG),
                               ("slow_1_kinematics.mot", ("flexion",), N_TIME),
                               ("slow_1_muscle_forces.sto", MUSCLES, N_TIME),
                               ("mvc_emg.sto", MUSCLES, N_MVC)):
        table = osim.TimeSeriesTable(os.path.join(exported, "S01", name))
        assert tuple(table.getColumnLabels()) == labels, name
        assert table.getNumRows() == rows, name
    table = osim.TimeSeriesTable(os.path.join(exported, "S01", "slow_1_emg.sto"))
    assert table.getTableMetaDataAsString("emg") == "raw"
    col = table.getDependentColumn("ECU").to_numpy()
    np.testing.assert_array_equal(col, cohort.emg[0, 0, :, 2])
