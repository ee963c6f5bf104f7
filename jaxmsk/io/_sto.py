"""Time-series tables: OpenSim .sto/.mot and CSV files as a `Table` (NumPy only).

`read_sto` reads OpenSim storage files (.sto, .mot): the version-1 header that OpenSim 4.x
writes (`key=value` lines and a first free-text name line, ended by `endheader`), files
written by `STOFileAdapter` (version=3) and old-style .mot files without a version line.
`write_sto` writes files that OpenSim 4.6 reads with `TimeSeriesTable` and `Storage`, with
every float64 written in its shortest exact form (`repr`), so values survive bit for bit.
`read_csv`/`write_csv` do the same for comma-separated files with a time column.

Every malformed file raises `TableFormatError` (a `ValueError`) naming the file, the 1-based
line and the fix; every write is atomic and never replaces an existing file unless asked.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import warnings

import numpy as np

from ._atomic import atomic_path, atomic_write_text

_RESERVED = ("version", "nRows", "nColumns", "inDegrees", "endheader", "name")
_REL_RATE_TOL = 1e-6  # relative spread of time steps accepted as uniform sampling


class TableFormatError(ValueError):
    """A malformed .sto/.mot/.csv file; the message names the file, the line and the fix."""


def _fail(path, line: int, problem: str, fix: str):
    raise TableFormatError(f"{path}, line {line}: {problem}. {fix}")


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """A sampled time series with labelled columns.

    Attributes:
        time: (n,) float64 sample times, s, strictly increasing.
        labels: column labels, excluding the time column.
        values: (n, len(labels)) float64 samples, in the file's units (OpenSim: m and rad,
            or degrees for rotational coordinates when `in_degrees` is True).
        metadata: header `key -> value` strings as in the file ("version", "nRows",
            "nColumns", "inDegrees", "DataType", "OpenSimVersion", ...), plus "name": the
            header's first line when it is not `key=value`. Empty for CSV files.
        path: the file this table was read from, or None.
    """

    time: np.ndarray
    labels: tuple[str, ...]
    values: np.ndarray
    metadata: dict = dataclasses.field(default_factory=dict)
    path: str | None = None

    def __post_init__(self):
        time = np.array(self.time, dtype=np.float64)
        values = np.array(self.values, dtype=np.float64)
        labels = tuple(str(label) for label in self.labels)
        if time.ndim != 1 or values.shape != (time.shape[0], len(labels)):
            raise ValueError(f"Table: time must be (n,) and values (n, len(labels)) = "
                             f"({time.shape[0] if time.ndim == 1 else 'n'}, {len(labels)}); got "
                             f"time {time.shape} and values {values.shape}.")
        time.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "metadata", dict(self.metadata))

    def _where(self) -> str:
        return f"table from {self.path}" if self.path else "table"

    @property
    def in_degrees(self) -> bool | None:
        """True/False from the header's `inDegrees=yes|no`; None when the header has none."""
        flag = self.metadata.get("inDegrees")
        if flag is None:
            return None
        return flag.strip().lower() in ("yes", "true", "1")

    @property
    def rate(self) -> float:
        """Sampling rate, Hz. ValueError unless time steps agree within a relative 1e-6."""
        if self.time.shape[0] < 2:
            raise ValueError(f"{self._where()}: a sampling rate needs at least 2 samples; "
                             f"it has {self.time.shape[0]}.")
        steps = np.diff(self.time)
        mean = (self.time[-1] - self.time[0]) / (self.time.shape[0] - 1)
        spread = np.max(np.abs(steps - mean))
        if spread > _REL_RATE_TOL * mean:
            raise ValueError(f"{self._where()}: time is not uniformly sampled (steps from "
                             f"{steps.min():g} s to {steps.max():g} s); resample it (e.g. "
                             "np.interp onto a uniform grid) before asking for a rate.")
        return float(1.0 / mean)

    def _indices(self, labels) -> list[int]:
        if isinstance(labels, str):
            labels = (labels,)
        labels = list(labels)
        index = {label: i for i, label in enumerate(self.labels)}
        missing = _missing(labels, self.labels)
        if missing:
            raise ValueError(f"{self._where()}: {missing}.")
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self._where()}: columns requested more than once in {labels}; "
                             "name each column once.")
        return [index[label] for label in labels]

    def column(self, name: str) -> np.ndarray:
        """The (n,) samples of column `name` (read-only view)."""
        return self.values[:, self._indices([name])[0]]

    def select(self, labels) -> Table:
        """A table with only the columns `labels`, in the order given."""
        idx = self._indices(labels)
        return dataclasses.replace(self, labels=tuple(self.labels[i] for i in idx),
                                   values=self.values[:, idx])

    def to_radians(self, labels=None) -> Table:
        """This table with angles converted from degrees to radians and `inDegrees=no`.

        OpenSim's `inDegrees` applies to rotational coordinates only: translational
        coordinates (m) and other quantities are stored unconverted even when it is "yes".
        By default every column is multiplied by π/180, which is right for tables holding
        only angles; pass `labels=` (the rotational columns) to convert just those.
        Returns the table unchanged when `inDegrees=no`; raises ValueError when the header
        does not say (e.g. CSV) — set `metadata["inDegrees"]` with `dataclasses.replace`.
        """
        if self.in_degrees is None:
            raise ValueError(f"{self._where()}: the header has no inDegrees entry, so its units "
                             "are unknown; if the angles are in degrees, use dataclasses.replace("
                             "table, metadata={**table.metadata, 'inDegrees': 'yes'}) first.")
        if not self.in_degrees:
            return self
        idx = list(range(len(self.labels))) if labels is None else self._indices(labels)
        values = np.array(self.values)
        values[:, idx] = np.deg2rad(values[:, idx])
        metadata = {**self.metadata, "inDegrees": "no"}
        return dataclasses.replace(self, values=values, metadata=metadata)


def _parse_rows(path, rows, labels, label_line, time_label):
    """rows: list of (line number, list of strings) -> (time, values) with all checks."""
    if not rows:
        _fail(path, label_line, "no data rows after the column labels",
              "Add at least one row of numbers (time first) below the labels.")
    m = len(labels) + 1
    data = np.empty((len(rows), m))
    for r, (line, parts) in enumerate(rows):
        if len(parts) != m:
            _fail(path, line, f"row has {len(parts)} values but the header has {m} columns "
                  f"({time_label} and {len(labels)} labels)",
                  "Make every row hold one value per column.")
        try:
            data[r] = [float(part) for part in parts]
        except ValueError:
            bad = next(i for i, p in enumerate(parts) if not _is_float(p))
            name = time_label if bad == 0 else labels[bad - 1]
            _fail(path, line, f"non-numeric entry {parts[bad]!r} in column {name!r}",
                  "Every entry must be a number.")
    finite = np.isfinite(data)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        name = time_label if c == 0 else labels[c - 1]
        _fail(path, rows[r][0], f"non-finite value {data[r, c]} in column {name!r}",
              "Fill or interpolate missing samples before reading (NaN and inf are refused).")
    steps = np.diff(data[:, 0])
    if (steps <= 0).any():
        r = int(np.argmax(steps <= 0)) + 1
        _fail(path, rows[r][0], f"time {data[r, 0]!r} does not increase (previous row has "
              f"{data[r - 1, 0]!r})", "Sort the rows by time and drop duplicate times.")
    return data[:, 0], data[:, 1:]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _missing(requested, available) -> str:
    """'' when every requested label is available, else a message listing both."""
    missing = [label for label in requested if label not in available]
    if not missing:
        return ""
    return (f"no column {', '.join(map(repr, missing))}; available columns: "
            f"{', '.join(available)}")


def _columns(path, table: Table, columns, line: int) -> Table:
    if columns is None:
        return table
    columns = (columns,) if isinstance(columns, str) else tuple(columns)
    missing = _missing(columns, table.labels)
    if missing:
        _fail(path, line, missing, "Request only columns the file has.")
    return table.select(columns)


def _check_unique(path, labels, line):
    seen = set()
    for label in labels:
        if label in seen:
            _fail(path, line, f"column label {label!r} appears more than once",
                  "Give every column a distinct label.")
        seen.add(label)


def read_sto(path, columns=None) -> Table:
    """Read an OpenSim .sto or .mot file.

    Args:
        path: the file. Header lines (`key=value`, plus an optional first free-text name
            line) end with a line `endheader`; then a label line whose first label is `time`
            (tab-separated; other whitespace accepted when there is no tab); then rows.
        columns: labels to keep, in this order; None keeps all.

    Returns:
        A `Table` (time in s; values as in the file — see `Table.in_degrees`).

    Raises:
        TableFormatError: a malformed file or an unknown entry in `columns`.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    metadata, counts, end = {}, {}, None
    for i, raw in enumerate(lines):
        text = raw.strip()
        if text.lower() == "endheader":
            end = i
            break
        if not text:
            continue
        if "=" in text:
            key, value = (part.strip() for part in text.split("=", 1))
            metadata[key] = value
            if key in ("nRows", "nColumns"):
                counts[key] = (i + 1, value)
        elif not metadata:
            metadata["name"] = text
        else:  # old-style SIMM header lines such as "datacolumns 3"
            key, *value = text.split(None, 1)
            metadata[key] = value[0] if value else ""
    if end is None:
        _fail(path, max(len(lines), 1), "no line `endheader` before the end of the file",
              "An OpenSim .sto/.mot file must have a header ending in a line `endheader`, "
              "followed by the column labels and the rows.")
    label_line = end + 1
    while label_line < len(lines) and not lines[label_line].strip():
        label_line += 1
    if label_line >= len(lines):
        _fail(path, end + 1, "no column labels after `endheader`",
              "Put a line of labels, starting with `time`, after `endheader`.")
    text = lines[label_line].strip()
    parts = [p.strip() for p in text.split("\t")] if "\t" in text else text.split()
    line_no = label_line + 1
    if parts[0].lower() != "time":
        _fail(path, line_no, f"the first column label is {parts[0]!r}, not 'time'",
              "The label line after `endheader` must start with `time`.")
    labels = tuple(parts[1:])
    if "" in labels:
        _fail(path, line_no, "an empty column label", "Remove doubled tabs from the label line.")
    _check_unique(path, labels, line_no)
    rows = [(k + 1, lines[k].split()) for k in range(label_line + 1, len(lines))
            if lines[k].strip()]
    time, values = _parse_rows(path, rows, labels, line_no, parts[0])
    expected = {"nRows": len(rows), "nColumns": len(labels) + 1}
    for key, (header_line, value) in counts.items():
        if value.strip() == str(expected[key]):
            continue
        if key == "nColumns" and value.strip().isdigit():
            # Every row has as many values as the label line, so nothing is lost; OpenSim
            # writes and reads such files (its example3DWalking coordinates.sto says
            # nColumns=40 over 32 columns), so this is a warning, not an error.
            warnings.warn(f"{path}, line {header_line}: the header says nColumns={value} but "
                          f"the label line and every row have {expected[key]} columns (time "
                          "included); the columns as labelled are read.", stacklevel=2)
            continue
        what = "rows" if key == "nRows" else "columns (time included)"
        _fail(path, header_line, f"the header says {key}={value} but the file has "
              f"{expected[key]} {what}", f"Correct {key} (or delete the line).")
    return _columns(path, Table(time, labels, values, metadata, path), columns, line_no)


def _validated(time, values, labels, *, forbidden_label: str, reject: str, rejected: str):
    """Checked (time, values, labels) for the writers; errors name the argument and fix."""
    time = np.asarray(time, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if isinstance(labels, str):
        raise ValueError(f"labels must be a sequence of strings, got the string {labels!r}; "
                         "wrap it in a list.")
    labels = tuple(labels)
    if time.ndim != 1 or time.shape[0] == 0:
        raise ValueError(f"time must have shape (n,) with n >= 1; got {time.shape}.")
    if values.ndim != 2 or values.shape[0] != time.shape[0]:
        raise ValueError(f"values must have shape (n, k) = ({time.shape[0]}, k) to match time; "
                         f"got {values.shape} (reshape a single column with values[:, None]).")
    if len(labels) != values.shape[1]:
        raise ValueError(f"labels has {len(labels)} entries but values has {values.shape[1]} "
                         "columns; give one label per column.")
    for label in labels:
        if not isinstance(label, str) or not label or label != label.strip() or any(
                c in label for c in reject):
            raise ValueError(f"label {label!r} is not usable: labels must be non-empty strings "
                             f"without {rejected} (use underscores instead).")
        if label.lower() == forbidden_label.lower():
            raise ValueError(f"label {label!r} clashes with the time column; rename it.")
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise ValueError(f"label {dup!r} appears more than once in labels; labels must be unique.")
    if not np.isfinite(time).all() or (np.diff(time) <= 0).any():
        raise ValueError("time must be finite and strictly increasing; sort the samples and "
                         "drop duplicate times.")
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"values[{r}, {c}] (column {labels[c]!r}) is {values[r, c]}; values "
                         "must be finite — fill or interpolate missing samples first.")
    return time, values, labels


def _rows_text(time, values, sep: str) -> str:
    data = np.column_stack([time, values]).tolist()
    return "".join(sep.join(map(repr, row)) + "\n" for row in data)


def write_sto(path, time, values, labels, *, in_degrees=False, name=None, metadata=None,
              overwrite=False) -> str:
    """Write an OpenSim version-1 .sto/.mot file (atomically) that OpenSim 4.6 reads.

    Args:
        path: destination (.sto or .mot).
        time: (n,) sample times, s, strictly increasing.
        values: (n, k) finite samples (OpenSim units: m, rad — or degrees, see in_degrees).
        labels: k unique column labels without whitespace (OpenSim's Storage splits at it).
        in_degrees: written as `inDegrees=yes|no` (whether rotational columns are degrees).
        name: the header's first line; defaults to the file name without its suffix.
        metadata: extra header `key=value` entries (e.g. {"DataType": "double"}).
        overwrite: replace an existing file; otherwise FileExistsError.

    Returns:
        The path written. Values are written with `repr`, so float64 survives exactly.
    """
    # OpenSim's Storage (used for .mot files) splits labels at any whitespace.
    time, values, labels = _validated(time, values, labels, forbidden_label="time",
                                      reject=" \t\n\r\v\f", rejected="whitespace")
    if name is None:
        name = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "table"
    name = str(name)
    if not name.strip() or any(c in name for c in "=\n\r") or name.strip().lower() == "endheader":
        raise ValueError(f"name {name!r} cannot be a header's first line: give a non-empty "
                         "name without '=' or newlines, other than 'endheader'.")
    extra = []
    for key, value in (metadata or {}).items():
        key, value = str(key), str(value)
        if key in _RESERVED:
            raise ValueError(f"metadata key {key!r} is written by write_sto itself; remove it "
                             "(use name= and in_degrees= for those).")
        if not key.strip() or key != key.strip() or any(c in key for c in "=\n\r") or any(
                c in value for c in "\n\r"):
            raise ValueError(f"metadata entry {key!r}: {value!r} cannot be a header line: keys "
                             "need no '=', spaces at the ends or newlines; values no newlines.")
        extra.append(f"{key}={value}\n")
    header = (f"{name}\nversion=1\nnRows={time.shape[0]}\nnColumns={len(labels) + 1}\n"
              f"inDegrees={'yes' if in_degrees else 'no'}\n" + "".join(extra) + "endheader\n")
    text = header + "\t".join(("time",) + labels) + "\n" + _rows_text(time, values, "\t")
    return atomic_write_text(path, text, overwrite=overwrite, what="write_sto")


def read_csv(path, *, time_column="time", columns=None) -> Table:
    """Read a comma-separated file: a header row of labels, then rows of numbers.

    Args:
        path: the file.
        time_column: the label of the time column (s); matched exactly, else ignoring case.
        columns: labels to keep, in this order; None keeps all but the time column.

    Returns:
        A `Table` with empty metadata (so `in_degrees` is None).

    Raises:
        TableFormatError: a malformed file, a missing time column or unknown `columns`.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, [p.strip() for p in row]) for row in reader
                if any(p.strip() for p in row)]
    if not rows:
        _fail(path, 1, "the file has no header row", "Put a row of column labels first.")
    header_line, header = rows[0]
    _check_unique(path, header, header_line)
    matches = [i for i, h in enumerate(header) if h == time_column] or [
        i for i, h in enumerate(header) if h.lower() == time_column.lower()]
    if len(matches) != 1:
        _fail(path, header_line, f"no single time column {time_column!r}; available columns: "
              f"{', '.join(header)}", "Pass time_column= naming the column that holds time (s).")
    t = matches[0]
    order = [t] + [i for i in range(len(header)) if i != t]
    body = []
    for line, parts in rows[1:]:
        if len(parts) != len(header):
            _fail(path, line, f"row has {len(parts)} values but the header has {len(header)} "
                  "columns", "Make every row hold one value per column.")
        body.append((line, [parts[i] for i in order]))
    labels = tuple(header[i] for i in order[1:])
    time, values = _parse_rows(path, body, labels, header_line, header[t])
    return _columns(path, Table(time, labels, values, {}, path), columns, header_line)


def write_csv(path, time, values, labels, *, time_column="time", overwrite=False) -> str:
    """Write a CSV file (atomically): a header `time_column,labels...`, then rows.

    Args: as `write_sto` (labels may hold commas; they are quoted), plus `time_column`, the
    time column's label. Values are written with `repr`, so float64 survives exactly.
    Returns the path written.
    """
    time, values, labels = _validated(time, values, labels, forbidden_label=time_column,
                                      reject="\n\r", rejected="newlines or spaces at the ends")
    with atomic_path(path, overwrite=overwrite, what="write_csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow((time_column,) + labels)
            f.write(_rows_text(time, values, ","))
    return os.fspath(path)
