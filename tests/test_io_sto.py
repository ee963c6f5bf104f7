"""jaxmsk.io._sto: .sto/.mot/.csv tables, checked against OpenSim 4.6 reading and writing."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from helpers import import_opensim

from jaxmsk.io._sto import Table, TableFormatError, read_csv, read_sto, write_csv, write_sto


def _random(rng, n, k):
    """Float64 values over many decades, so any loss of precision shows."""
    values = rng.standard_normal((n, k)) * 10.0 ** rng.integers(-200, 200, (n, k))
    values[0, 0] = 5e-324  # a subnormal
    values[1, 0] = 0.1 + 0.2
    return values


def _time(rng, n):
    return np.cumsum(rng.random(n) + 1e-3) - 0.5


def _opensim_table(osim, path):
    table = osim.TimeSeriesTable(os.fspath(path))  # kept alive: to_numpy reads its memory
    return (np.array(table.getIndependentColumn()), tuple(table.getColumnLabels()),
            np.array(table.getMatrix().to_numpy(), copy=True), table)


def _opensim_write(osim, path, time, values, labels, metadata):
    table = osim.TimeSeriesTable()
    table.setColumnLabels(osim.StdVectorString(list(labels)))
    for t, row in zip(time, values):
        table.appendRow(float(t), osim.RowVector(row.tolist()))
    for key, value in metadata.items():
        table.addTableMetaDataString(key, value)
    osim.STOFileAdapter.write(table, os.fspath(path))


# 1. Files OpenSim writes, read exactly as OpenSim reads them.

@pytest.mark.parametrize("suffix, degrees", [(".sto", "no"), (".mot", "yes")])
def test_reads_opensim_files_exactly(tmp_path, suffix, degrees):
    osim = import_opensim()
    rng = np.random.default_rng(1)
    labels = ("hip_flexion_r", "knee_angle_r", "pelvis_tx", "force.fx")
    path = tmp_path / f"opensim{suffix}"
    _opensim_write(osim, path, _time(rng, 40), _random(rng, 40, 4), labels,
                   {"inDegrees": degrees, "subject": "S01 left"})
    table = read_sto(path)
    time, os_labels, values, _ = _opensim_table(osim, path)
    assert table.labels == os_labels == labels
    np.testing.assert_array_equal(table.time, time)
    np.testing.assert_array_equal(table.values, values)
    assert table.values.dtype == np.float64 and table.values.shape == (40, 4)
    assert table.metadata["inDegrees"] == degrees
    assert table.in_degrees is (degrees == "yes")
    assert table.metadata["subject"] == "S01 left"
    assert table.path == os.fspath(path)


def test_reads_old_style_mot_and_whitespace(tmp_path):
    path = tmp_path / "old.mot"
    path.write_text("Coordinates\nnRows=3\nnColumns=3\n\ndatacolumns 3\nendheader\n"
                    "time   q1 q2\n0 1 2\n0.5  3\t4\n1.0 5 6   \n\n")
    table = read_sto(path)
    assert table.metadata["name"] == "Coordinates" and table.metadata["datacolumns"] == "3"
    assert table.in_degrees is None and table.labels == ("q1", "q2")
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(table.time, [0, 0.5, 1])
    assert read_sto(path, columns=["q2", "q1"]).labels == ("q2", "q1")


# 2. Files write_sto writes, read exactly by OpenSim.

@pytest.mark.parametrize("suffix, in_degrees", [(".sto", False), (".mot", True)])
def test_opensim_reads_written_files_exactly(tmp_path, suffix, in_degrees):
    osim = import_opensim()
    rng = np.random.default_rng(2)
    time, values = _time(rng, 60), _random(rng, 60, 3)
    labels = ["a", "b_r", "c.x"]
    path = tmp_path / f"out{suffix}"
    assert write_sto(path, time, values, labels, in_degrees=in_degrees,
                     metadata={"DataType": "double"}) == os.fspath(path)
    os_time, os_labels, os_values, table = _opensim_table(osim, path)
    np.testing.assert_array_equal(os_time, time)
    np.testing.assert_array_equal(os_values, values)
    assert os_labels == tuple(labels)
    assert table.getNumRows() == 60
    assert table.getTableMetaDataAsString("nRows") == "60"
    assert table.getTableMetaDataAsString("inDegrees") == ("yes" if in_degrees else "no")
    assert table.getTableMetaDataAsString("header") == "out"
    if suffix == ".mot":
        storage = osim.Storage(os.fspath(path))
        assert storage.isInDegrees() is True
        assert storage.getSize() == 60
        got = [storage.getColumnLabels().get(i) for i in range(storage.getColumnLabels().getSize())]
        assert got == ["time"] + labels
        for j, label in enumerate(labels):
            column = osim.ArrayDouble()
            storage.getDataColumn(label, column)
            np.testing.assert_array_equal([column.get(i) for i in range(60)], values[:, j])


# 3. Round trips.

def test_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(3)
    time, values = _time(rng, 25), _random(rng, 25, 4)
    labels = ("a", "b", "c", "d")
    write_sto(tmp_path / "x.sto", time, values, labels, name="trial 1", metadata={"k": "v w"})
    table = read_sto(tmp_path / "x.sto")
    assert table.labels == labels and table.in_degrees is False
    assert table.metadata == {"name": "trial 1", "version": "1", "nRows": "25",
                              "nColumns": "5", "inDegrees": "no", "k": "v w"}
    np.testing.assert_array_equal(table.time, time)
    np.testing.assert_array_equal(table.values, values)

    csv_labels = ("a,b", 'q"1', "c d", "e")
    write_csv(tmp_path / "x.csv", time, values, csv_labels, time_column="Time")
    table = read_csv(tmp_path / "x.csv", time_column="Time")
    assert table.labels == csv_labels and table.metadata == {} and table.in_degrees is None
    np.testing.assert_array_equal(table.time, time)
    np.testing.assert_array_equal(table.values, values)
    assert read_csv(tmp_path / "x.csv", time_column="time", columns=["e"]).labels == ("e",)


def test_csv_time_column_anywhere(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a, time ,b\n1,0,2\n3,0.1,4\n")
    table = read_csv(path)
    assert table.labels == ("a", "b")
    np.testing.assert_array_equal(table.time, [0, 0.1])
    np.testing.assert_array_equal(table.values, [[1, 2], [3, 4]])


# 4. Malformed files.

_HEAD = "t\nversion=1\ninDegrees=no\nendheader\n"  # the labels are on line 5
_STO_CASES = {
    "no_endheader": ("t\nversion=1\ntime\ta\n0\t1\n", 4, "endheader"),
    "no_labels": ("t\nendheader\n\n", 2, "labels"),
    "first_label": (_HEAD + "frame\ta\n0\t1\n", 5, "'frame'"),
    "empty_label": (_HEAD + "time\ta\t\tb\n0\t1\t2\t3\n", 5, "empty column label"),
    "duplicate_label": (_HEAD + "time\ta\ta\n0\t1\t2\n", 5, "'a'"),
    "ragged": (_HEAD + "time\ta\tb\n0\t1\t2\n1\t2\n", 7, "row has 2 values but the header has 3"),
    "non_numeric": (_HEAD + "time\ta\tb\n0\t1\tx1\n", 6, "'x1' in column 'b'"),
    "nan": (_HEAD + "time\ta\tb\n0\t1\t2\n1\tNaN\t2\n", 7, "column 'a'"),
    "inf": (_HEAD + "time\ta\tb\n0\t1\t-inf\n", 6, "column 'b'"),
    "time_order": (_HEAD + "time\ta\n0\t1\n1\t2\n1\t3\n", 8, "does not increase"),
    "empty": (_HEAD + "time\ta\n\n", 5, "no data rows"),
    "nRows": ("t\nversion=1\nnRows=3\nnColumns=2\nendheader\ntime\ta\n0\t1\n1\t2\n", 3,
              "nRows=3 but the file has 2 rows"),
    "nColumns": ("t\nnRows=1\nnColumns=two\nendheader\ntime\ta\n0\t1\n", 3, "nColumns=two"),
    "bad_nRows": ("t\nnRows=two\nendheader\ntime\ta\n0\t1\n", 2, "nRows=two"),
}


def test_unknown_columns_sto(tmp_path):
    path = tmp_path / "u.sto"
    write_sto(path, [0.0, 1.0], np.ones((2, 2)), ["a", "b"])
    with pytest.raises(TableFormatError, match=r"u\.sto, line 7: no column 'z'; available "
                                               r"columns: a, b"):
        read_sto(path, columns=["a", "z"])


_CSV_CASES = {
    "no_time": ("a,b\n1,2\n", 1, "no single time column 'time'; available columns: a, b"),
    "ragged": ("time,a\n0,1\n1,2,3\n", 3, "row has 3 values but the header has 2"),
    "nan": ("time,a,b\n0,1,2\n1,2,nan\n", 3, "column 'b'"),
    "non_numeric": ("time,a\n0,one\n", 2, "'one' in column 'a'"),
    "empty": ("time,a\n", 1, "no data rows"),
    "unknown_column": ("time,a\n0,1\n", 1, "no column 'b'; available columns: a"),
}


_MALFORMED = [("sto", c) for c in sorted(_STO_CASES)] + [("csv", c) for c in sorted(_CSV_CASES)]


@pytest.mark.parametrize("kind,case", _MALFORMED)
def test_malformed_files(tmp_path, kind, case):
    text, line, detail = (_STO_CASES if kind == "sto" else _CSV_CASES)[case]
    path = tmp_path / f"bad_{case}.{kind}"
    path.write_text(text)
    with pytest.raises(TableFormatError) as info:
        if kind == "sto":
            read_sto(path)
        else:
            read_csv(path, columns=["b"] if case == "unknown_column" else None)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert os.fspath(path) in message and f"line {line}:" in message and detail in message


# 5. Writing is atomic and never overwrites unless asked.

@pytest.mark.parametrize("writer, name", [(write_sto, "f.sto"), (write_csv, "f.csv")])
def test_write_refuses_to_overwrite(tmp_path, writer, name):
    path = tmp_path / name
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        writer(path, [0.0], [[1.0]], ["a"])
    assert path.read_text() == "precious"
    writer(path, [0.0], [[1.0]], ["a"], overwrite=True)
    assert path.read_text() != "precious"
    reader = read_sto if name.endswith(".sto") else read_csv
    np.testing.assert_array_equal(reader(path).values, [[1.0]])
    assert sorted(os.listdir(tmp_path)) == [name]


_BAD_WRITES = [
    (dict(values=[[1.0], [np.nan]]), r"values\[1, 0\] \(column 'a'\) is nan"),
    (dict(values=[[1.0], [np.inf]]), "must be finite"),
    (dict(time=[1.0, 1.0]), "strictly increasing"),
    (dict(time=[[0.0, 1.0]]), r"time must have shape \(n,\)"),
    (dict(values=[1.0, 2.0]), r"values must have shape \(n, k\) = \(2, k\)"),
    (dict(labels=["a", "b"]), "labels has 2 entries but values has 1 columns"),
    (dict(labels="a"), "wrap it in a list"),
    (dict(values=[[1.0, 2.0], [3.0, 4.0]], labels=["a", "a"]), "'a' appears more than once"),
    (dict(labels=["a\nb"]), "not usable"),
    (dict(labels=[" a"]), "not usable"),
    (dict(labels=["time"]), "clashes with the time column"),
]


@pytest.mark.parametrize("writer, name", [(write_sto, "f.mot"), (write_csv, "f.csv")])
@pytest.mark.parametrize("bad, match", _BAD_WRITES)
def test_bad_write_leaves_nothing(tmp_path, writer, name, bad, match):
    args = dict(time=[0.0, 1.0], values=[[1.0], [2.0]], labels=["a"]) | bad
    with pytest.raises(ValueError, match=match):
        writer(tmp_path / name, args["time"], args["values"], args["labels"])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(metadata={"nRows": "3"}), "written by write_sto itself"),
    (dict(metadata={"a=b": "c"}), "cannot be a header line"),
    (dict(name="x=1"), "cannot be a header's first line"),
    (dict(name="endheader"), "cannot be a header's first line"),
])
def test_bad_sto_header_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_sto(tmp_path / "h.sto", [0.0], [[1.0]], ["a"], **kwargs)
    with pytest.raises(ValueError, match="whitespace"):
        write_sto(tmp_path / "h.sto", [0.0], [[1.0]], ["a b"])
    assert os.listdir(tmp_path) == []


def test_failed_write_inside_atomic_path_removes_temporary(tmp_path, monkeypatch):
    import jaxmsk.io._sto as sto

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sto, "_rows_text", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_csv(tmp_path / "x.csv", [0.0], [[1.0]], ["a"])
    assert os.listdir(tmp_path) == []


# 6. Table behaviour.

def _table(metadata=None, time=(0.0, 0.01, 0.02, 0.03)):
    values = np.arange(len(time) * 3, dtype=float).reshape(len(time), 3) * 30.0
    return Table(np.array(time), ("hip", "knee", "pelvis_tx"), values,
                 {"inDegrees": "yes"} if metadata is None else metadata, "trial.mot")


def test_to_radians():
    table = _table()
    rad = table.to_radians()
    np.testing.assert_allclose(rad.values, np.deg2rad(table.values), rtol=1e-15)
    assert rad.in_degrees is False and rad.metadata["inDegrees"] == "no"
    assert table.in_degrees is True  # the original is unchanged
    some = table.to_radians(labels=["knee", "hip"])
    np.testing.assert_array_equal(some.column("pelvis_tx"), table.column("pelvis_tx"))
    np.testing.assert_allclose(some.column("knee"), np.deg2rad(table.column("knee")), rtol=1e-15)
    assert rad.to_radians() is rad
    with pytest.raises(ValueError, match="no column 'ankle'"):
        table.to_radians(labels=["ankle"])
    with pytest.raises(ValueError, match="no inDegrees entry"):
        _table(metadata={}).to_radians()


def test_rate():
    assert _table().rate == pytest.approx(100.0, rel=1e-12)
    with pytest.raises(ValueError, match="trial.mot: time is not uniformly sampled"):
        _table(time=(0.0, 0.01, 0.02, 0.0301)).rate  # noqa: B018
    assert _table(time=(0.0, 0.01, 0.02, 0.03 + 1e-12)).rate == pytest.approx(100.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        _table(time=(0.0,)).rate  # noqa: B018


def test_select_and_column():
    table = _table()
    np.testing.assert_array_equal(table.column("knee"), table.values[:, 1])
    chosen = table.select(["pelvis_tx", "hip"])
    assert chosen.labels == ("pelvis_tx", "hip") and chosen.path == "trial.mot"
    np.testing.assert_array_equal(chosen.values, table.values[:, [2, 0]])
    np.testing.assert_array_equal(chosen.time, table.time)
    with pytest.raises(ValueError, match=r"trial\.mot: no column 'ankle'; available columns: "
                                         r"hip, knee, pelvis_tx"):
        table.column("ankle")
    with pytest.raises(ValueError, match="no column 'ankle'"):
        table.select(["hip", "ankle"])
    with pytest.raises(ValueError, match="more than once"):
        table.select(["hip", "hip"])
    with pytest.raises(ValueError):  # the arrays are read-only, like the frozen dataclass
        table.values[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.labels = ()
    with pytest.raises(ValueError, match="values"):
        Table(np.zeros(3), ("a",), np.zeros((3, 2)))


def test_a_wrong_column_count_in_the_header_warns_and_reads_the_labelled_columns(tmp_path):
    # OpenSim's own example3DWalking/coordinates.sto says nColumns=40 over 32 columns.
    path = tmp_path / "c.sto"
    path.write_text("t\nnRows=2\nnColumns=5\nendheader\ntime\ta\tb\n0\t1\t2\n1\t3\t4\n")
    with pytest.warns(UserWarning, match=r"nColumns=5 but the label line and every row have 3"):
        table = read_sto(path)
    assert table.labels == ("a", "b")
    np.testing.assert_array_equal(table.values, [[1.0, 2.0], [3.0, 4.0]])
