"""A recording for EMG-driven joint moments: processed EMG, kinematics and inverse-dynamics
moments on one time grid, read from OpenSim .sto/.mot files (or CSV) and checked."""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from ..io._sto import Table, read_csv, read_sto

_RATE_TOL = 1e-6  # relative
MAX_LEAD_S = 1.0
"""EMG kept before the kinematics start (s), to run the activation filter in."""


@dataclasses.dataclass(frozen=True)
class MomentRecording:
    """Processed EMG, joint angles and inverse-dynamics moments sampled together.

    Attributes:
        time: (n,) s, uniform, the kinematics' samples inside the span all three files cover.
        rate: Hz, the kinematics' (and moments') sampling rate.
        emg: (lead + n, channels) processed EMG (envelopes in [0, 1]) linearly interpolated
            from `emg_rate` onto `time`, preceded by `lead` samples of the same grid before
            time[0] where the EMG file has them (up to `MAX_LEAD_S`), so the activation
            filter and the delay start from the recorded past, not from zero.
        lead: the number of EMG samples before time[0].
        emg_rate: Hz, the EMG file's rate.
        channel_names: the EMG columns.
        q, qdot: (n, coordinates) rad and rad/s; q̇ from the file's `/speed` columns where it
            has them, else second-order central differences of q.
        moments: (n, coordinates) N·m, inverse dynamics.
        coordinate_names: the coordinates, in the column order of q and moments.
    """

    time: np.ndarray
    rate: float
    emg: np.ndarray
    lead: int
    emg_rate: float
    channel_names: tuple[str, ...]
    q: np.ndarray
    qdot: np.ndarray
    moments: np.ndarray
    coordinate_names: tuple[str, ...]

    def span(self, start: float, stop: float) -> np.ndarray:
        """Boolean mask of the samples with start <= t < stop (s)."""
        return (self.time >= start - 1e-9) & (self.time < stop - 1e-9)

    def windows(self, windows) -> np.ndarray:
        """Boolean mask of the samples inside any of the (start, stop) windows."""
        mask = np.zeros(self.time.shape, bool)
        for start, stop in windows:
            mask |= self.span(start, stop)
        return mask

    def alternating_windows(self, width: float, offset: int = 0):
        """Windows of `width` s tiling the recording, every second one from the `offset`-th
        (0 or 1): the calibration windows of an interleaved split, the others its test."""
        edges = self.time[0] + width * np.arange(int(np.ceil(
            (self.time[-1] - self.time[0] + 1.0 / self.rate) / width)) + 1)
        return tuple((float(a), float(b)) for a, b in zip(edges[offset::2], edges[offset + 1::2]))


def _read(path, what: str) -> Table:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}.")
    if path.lower().endswith(".csv"):
        return read_csv(path)
    return read_sto(path)


def _rate(table: Table, what: str) -> float:
    try:
        return table.rate
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def _kinematics_column(labels, coordinate: str, kind: str = "value") -> int | None:
    """Index of `coordinate`'s column: the plain name (.mot) or an OpenSim state path
    ending in /<coordinate>/value (or /speed)."""
    for i, label in enumerate(labels):
        if kind == "value" and label == coordinate:
            return i
        if label.endswith(f"/{coordinate}/{kind}"):
            return i
    return None


def kinematics_coordinates(table: Table) -> list[str]:
    """The coordinate names a kinematics table holds values of."""
    out = []
    for label in table.labels:
        m = re.match(r".*/([^/]+)/value$", label)
        if m:
            out.append(m.group(1))
        elif "/" not in label:
            out.append(label)
    return out


def _moment_column(labels, coordinate: str) -> int | None:
    for suffix in ("_moment", "_force", ""):
        if coordinate + suffix in labels:
            return labels.index(coordinate + suffix)
    return None


def moment_coordinates(table: Table) -> list[str]:
    """The coordinate names an inverse-dynamics table holds generalised forces of."""
    return [re.sub(r"_(moment|force)$", "", label) for label in table.labels]


def read_moment_recording(emg, kinematics, moments, coordinates, *,
                          rotational: list[str] | None = None) -> MomentRecording:
    """Read and align the three files of an EMG-driven moments study.

    Args:
        emg: processed EMG (.sto or .csv): envelopes normalised to [0, 1] (MVC or peak),
            one column per channel, any rate at least the kinematics'. Undershoots below 0
            of up to a tenth of the peak (filter ringing) are clipped to 0.
        kinematics: joint angles (.sto/.mot/.csv; OpenSim state paths such as
            `/jointset/hip_r/hip_flexion_r/value`, or plain coordinate names); `inDegrees`
            is honoured.
        moments: inverse-dynamics generalised forces (`<coordinate>_moment` columns, as
            OpenSim's InverseDynamicsTool writes), on the kinematics' time grid.
        coordinates: the coordinates to read (each must be in both the kinematics and the
            moments).
        rotational: the coordinates converted when the kinematics are in degrees (default:
            all of `coordinates`).

    Raises ValueError naming the file and the fix: a coordinate missing from a file, rates
    that disagree (kinematics vs moments), EMG slower than the kinematics, spans that do not
    overlap, EMG outside [0, 1] (raw EMG or not normalised).
    """
    e_tab = _read(emg, "emg")
    k_tab = _read(kinematics, "kinematics")
    m_tab = _read(moments, "moments")
    coordinates = list(coordinates)
    k_rate, m_rate, e_rate = (_rate(k_tab, "kinematics"), _rate(m_tab, "moments"),
                              _rate(e_tab, "emg"))
    if abs(k_rate - m_rate) > _RATE_TOL * k_rate:
        raise ValueError(f"moments: sampled at {m_rate:g} Hz but the kinematics at {k_rate:g} Hz; "
                         "inverse dynamics must be on the kinematics' time grid (run the "
                         "InverseDynamicsTool on these kinematics, or resample one file).")
    if e_rate < k_rate * (1 - _RATE_TOL):
        raise ValueError(f"emg: sampled at {e_rate:g} Hz, slower than the kinematics "
                         f"({k_rate:g} Hz); give the envelopes at the kinematics' rate or faster.")
    start = max(k_tab.time[0], m_tab.time[0], e_tab.time[0])
    stop = min(k_tab.time[-1], m_tab.time[-1], e_tab.time[-1])
    spans = (f"emg {e_tab.time[0]:g}–{e_tab.time[-1]:g} s, kinematics {k_tab.time[0]:g}–"
             f"{k_tab.time[-1]:g} s, moments {m_tab.time[0]:g}–{m_tab.time[-1]:g} s")
    keep = (k_tab.time >= start - 1e-9) & (k_tab.time <= stop + 1e-9)
    if stop <= start or keep.sum() < 10:
        raise ValueError(f"the files' time spans do not overlap (by at least 10 samples): "
                         f"{spans}. Give the recordings of one trial, on one clock.")
    missing_k = [c for c in coordinates if _kinematics_column(k_tab.labels, c) is None]
    missing_m = [c for c in coordinates if _moment_column(list(m_tab.labels), c) is None]
    if missing_k:
        raise ValueError(f"kinematics: no column for {missing_k}; it has "
                         f"{kinematics_coordinates(k_tab)}.")
    if missing_m:
        raise ValueError(f"moments: no column for {missing_m} (looked for <coordinate>_moment, "
                         f"_force or the plain name); it has {list(m_tab.labels)}.")
    if k_tab.in_degrees:
        rot = coordinates if rotational is None else rotational
        cols = [k_tab.labels[_kinematics_column(k_tab.labels, c)] for c in rot]
        speeds = [k_tab.labels[i] for c in rot
                  if (i := _kinematics_column(k_tab.labels, c, "speed")) is not None]
        k_tab = k_tab.to_radians(labels=cols + speeds)
    time = k_tab.time[keep]
    q = np.stack([k_tab.values[:, _kinematics_column(k_tab.labels, c)] for c in coordinates], 1)
    speed_cols = [_kinematics_column(k_tab.labels, c, "speed") for c in coordinates]
    if all(i is not None for i in speed_cols):
        qdot = np.stack([k_tab.values[:, i] for i in speed_cols], 1)
    else:
        qdot = np.gradient(q, k_tab.time, axis=0, edge_order=2)
    q, qdot = q[keep], qdot[keep]
    m_idx = [_moment_column(list(m_tab.labels), c) for c in coordinates]
    moments = np.stack([np.interp(time, m_tab.time, m_tab.values[:, i]) for i in m_idx], 1)
    lead = int(np.floor(min(time[0] - e_tab.time[0], MAX_LEAD_S) * k_rate + 1e-9))
    emg_time = time[0] + np.arange(-lead, len(time)) / k_rate
    e = np.stack([np.interp(emg_time, e_tab.time, e_tab.values[:, j])
                  for j in range(len(e_tab.labels))], 1)
    lo, hi = float(e_tab.values.min()), float(e_tab.values.max())
    # Filtered envelopes undershoot zero a little (the walking example's reach −0.027);
    # raw EMG swings about as far below zero as above. Small undershoots are clipped to 0.
    if lo < -0.1 * max(hi, 1e-12) or hi > 1.0 + 1e-6:
        raise ValueError(f"emg: values span {lo:.4g}…{hi:.4g}; EMG-driven moments need processed "
                         "envelopes in [0, 1] (band-pass, rectify, low-pass, normalise to MVC or "
                         "to each channel's peak; jaxmsk.data.emg_envelope does this).")
    return MomentRecording(time=time, rate=k_rate, emg=np.clip(e, 0.0, 1.0), lead=lead,
                           emg_rate=e_rate,
                           channel_names=tuple(e_tab.labels), q=q, qdot=qdot, moments=moments,
                           coordinate_names=tuple(coordinates))
