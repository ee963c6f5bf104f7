"""Datasets for learning: trials with their sampling rates, labels and units; sEMG
processing per trial; sliding windows; splits by trial, by share and leave-one-subject-out.

Host-side containers (NumPy): they hold recordings, not traced values. Every random split
takes a JAX key and is deterministic for that key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import jax
import numpy as np

from ._emg import emg_envelope, mvc_peak, normalise_mvc, resample


@dataclasses.dataclass(frozen=True, eq=False)
class Trial:
    """One trial of one subject.

    Attributes:
        subject, name: identifiers.
        emg: (time_emg, channels) sEMG: raw (mV) or, if `processed`, an envelope
            (MVC-normalised if `emg_units == "1"`).
        fs_emg: sampling rate of `emg` (Hz).
        emg_labels: channel names (usually the muscles).
        emg_units: "mV" for raw, "1" for MVC-normalised envelopes, or what the file said.
        processed: whether `emg` is already an envelope.
        fs: sampling rate of the kinematics and labels (Hz).
        q: (time, dofs) joint angles (rad), or None.
        coordinate_labels: names of q's columns.
        forces: (time, muscles) muscle (tendon) forces (N), or None when not measured.
        force_labels: names of forces' columns.
        extra: other labelled series at `fs` (e.g. "qdot", "activation", "excitation").
        mvc_emg: (time, channels) raw sEMG of the subject's MVC trial at `fs_emg`, or None.
    """

    subject: str
    name: str
    emg: np.ndarray
    fs_emg: float
    emg_labels: tuple[str, ...]
    emg_units: str = "mV"
    processed: bool = False
    fs: float | None = None
    q: np.ndarray | None = None
    coordinate_labels: tuple[str, ...] = ()
    forces: np.ndarray | None = None
    force_labels: tuple[str, ...] = ()
    extra: dict = dataclasses.field(default_factory=dict)
    mvc_emg: np.ndarray | None = None

    def __post_init__(self):
        where = f"trial {self.subject}/{self.name}"
        if self.emg.ndim != 2 or self.emg.shape[1] != len(self.emg_labels):
            raise ValueError(f"{where}: emg has shape {self.emg.shape} for "
                             f"{len(self.emg_labels)} labels; pass (time, channels).")
        if not np.all(np.isfinite(self.emg)):
            raise ValueError(f"{where}: emg contains NaN or inf; interpolate or cut the gaps.")
        for label, arr, names in (("q", self.q, self.coordinate_labels),
                                  ("forces", self.forces, self.force_labels)):
            if arr is None:
                continue
            if self.fs is None:
                raise ValueError(f"{where}: {label} is given without its sampling rate fs.")
            if arr.ndim != 2 or arr.shape[1] != len(names):
                raise ValueError(f"{where}: {label} has shape {arr.shape} for {len(names)} labels.")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{where}: {label} contains NaN or inf.")
        if self.q is not None and self.forces is not None and len(self.q) != len(self.forces):
            raise ValueError(f"{where}: q has {len(self.q)} samples but forces {len(self.forces)}; "
                             "give labels on one time base.")

    @property
    def n_samples(self) -> int:
        return len(self.q) if self.q is not None else len(self.emg)

    def time(self) -> np.ndarray:
        """Times (s) of the labels (at `fs`)."""
        return np.arange(self.n_samples) / self.fs

    def process(self, *, mvc: np.ndarray | None = None, fs: float | None = None,
                **envelope_options) -> Trial:
        """sEMG envelope (`jaxmsk.data.emg_envelope`) normalised to the MVC and resampled to
        the labels' rate, cut to the labels' length.

        Args:
            mvc: per-channel MVC peak; default: from this trial's `mvc_emg` (via `mvc_peak`
                with the same options); without either the envelope stays in mV.
            fs: output rate (default: the labels' rate `fs`).
            **envelope_options: passed to `emg_envelope` (band, notch_freq, cutoff, order).
        """
        if self.processed:
            raise ValueError(f"trial {self.subject}/{self.name} is already processed.")
        fs = fs or self.fs or self.fs_emg
        if mvc is None and self.mvc_emg is not None:
            mvc = np.asarray(mvc_peak(self.mvc_emg, self.fs_emg, **envelope_options))
        env = emg_envelope(self.emg, self.fs_emg, **envelope_options)
        if mvc is not None:
            env = normalise_mvc(env, mvc)
        env = np.asarray(resample(env, self.fs_emg, fs))
        n = min(len(env), self.n_samples) if self.q is not None else len(env)
        trimmed = {}
        if self.q is not None:
            trimmed["q"] = self.q[:n]
        if self.forces is not None:
            trimmed["forces"] = self.forces[:n]
        return dataclasses.replace(self, emg=env[:n], fs_emg=fs, processed=True,
                                   emg_units="1" if mvc is not None else self.emg_units,
                                   extra={k: v[:n] for k, v in self.extra.items()}, **trimmed)


@dataclasses.dataclass(frozen=True)
class Windows:
    """Sliding windows of processed sEMG with the labels at each window's last sample.

    emg: (n, width, channels); q: (n, dofs) or None; forces: (n, muscles) or None;
    subject, trial: (n,) integer indices into `Dataset.subjects` / `Dataset.trials`;
    index: (n,) sample index of the window's last sample within its trial.
    """

    emg: np.ndarray
    q: np.ndarray | None
    forces: np.ndarray | None
    subject: np.ndarray
    trial: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.emg)


def sliding_windows(x: np.ndarray, width: int, stride: int = 1) -> np.ndarray:
    """(n_windows, width, ...) windows of `x` along axis 0; window k ends at k·stride+width−1."""
    x = np.asarray(x)
    if width < 1 or stride < 1:
        raise ValueError(f"sliding_windows: width={width} and stride={stride} must be >= 1.")
    if len(x) < width:
        raise ValueError(f"sliding_windows: {len(x)} samples are fewer than width={width}.")
    view = np.lib.stride_tricks.sliding_window_view(x, width, axis=0)[::stride]
    return np.moveaxis(view, -1, 1).copy()


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Trials of several subjects; splits return new datasets (nothing is mutated)."""

    trials: tuple[Trial, ...]

    def __post_init__(self):
        object.__setattr__(self, "trials", tuple(self.trials))
        keys = [(t.subject, t.name) for t in self.trials]
        if len(set(keys)) != len(keys):
            raise ValueError("Dataset: two trials share a (subject, name); names must be unique "
                             "per subject.")

    def __len__(self) -> int:
        return len(self.trials)

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.subject for t in self.trials))

    @classmethod
    def from_cohort(cls, cohort) -> Dataset:
        """Raw-sEMG trials with ground truth from a `jaxmsk.cohort.Cohort`."""
        trials = []
        muscles = cohort.muscle_names
        for i, s in enumerate(cohort.subject_ids):
            for r, name in enumerate(cohort.trial_names):
                trials.append(Trial(
                    subject=s, name=name, emg=cohort.emg[i, r], fs_emg=cohort.fs_emg,
                    emg_labels=muscles, fs=cohort.fs, q=cohort.q[i, r],
                    coordinate_labels=cohort.coordinate_names, forces=cohort.tendon_force[i, r],
                    force_labels=muscles, mvc_emg=cohort.mvc_emg[i],
                    extra={k: getattr(cohort, k)[i, r] for k in
                           ("qdot", "qddot", "activation", "excitation", "moments", "target")}))
        return cls(tuple(trials))

    def subject(self, subject: str) -> Dataset:
        """The trials of one subject."""
        if subject not in self.subjects:
            raise ValueError(f"no subject {subject!r}; subjects are {self.subjects}.")
        return Dataset(tuple(t for t in self.trials if t.subject == subject))

    def select(self, names: Sequence[str]) -> Dataset:
        """The trials with these names (every subject)."""
        names = tuple(names)
        unknown = sorted(set(names) - {t.name for t in self.trials})
        if unknown:
            raise ValueError(f"no trial named {unknown}; trials are "
                             f"{sorted({t.name for t in self.trials})}.")
        return Dataset(tuple(t for t in self.trials if t.name in names))

    def process(self, **options) -> Dataset:
        """Every trial's sEMG processed (see `Trial.process`)."""
        return Dataset(tuple(t.process(**options) for t in self.trials))

    def leave_one_subject_out(self, subject: str) -> tuple[Dataset, Dataset]:
        """(the other subjects, this subject)."""
        test = self.subject(subject)
        return Dataset(tuple(t for t in self.trials if t.subject != subject)), test

    def folds(self) -> Iterator[tuple[str, Dataset, Dataset]]:
        """Leave-one-subject-out folds: (held-out subject, train, test), in subject order."""
        for s in self.subjects:
            yield (s, *self.leave_one_subject_out(s))

    def split_trials(self, key, test_fraction: float = 0.25) -> tuple[Dataset, Dataset]:
        """Per subject, a random `test_fraction` of its trials (at least one, and at least
        one left for training) held out. Deterministic per key."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction={test_fraction} must be in (0, 1).")
        train, test = [], []
        for k, s in zip(jax.random.split(key, len(self.subjects)), self.subjects):
            trials = [t for t in self.trials if t.subject == s]
            if len(trials) < 2:
                raise ValueError(f"subject {s} has {len(trials)} trial(s); a split by trial "
                                 "needs two or more.")
            order = np.asarray(jax.random.permutation(k, len(trials)))
            n_test = min(max(1, round(test_fraction * len(trials))), len(trials) - 1)
            held = set(order[:n_test].tolist())
            for j, t in enumerate(trials):
                (test if j in held else train).append(t)
        return Dataset(tuple(train)), Dataset(tuple(test))

    def share(self, key, fraction: float | None = None, *,
              trials: int | Sequence[str] | None = None) -> tuple[Dataset, Dataset]:
        """A small share of each subject's data and the rest: either whole `trials` (a
        number, e.g. 1, chosen at random per subject; or trial names, e.g. ["slow_1"], the
        same for every subject), or the first `fraction` of every trial's samples (the rest of
        each trial goes to the second dataset). Deterministic per key."""
        if (fraction is None) == (trials is None):
            raise ValueError("share: give exactly one of fraction= (0–1 of every trial) or "
                             "trials= (a number of whole trials, or trial names).")
        if trials is not None and not isinstance(trials, (int, np.integer)):
            names = [trials] if isinstance(trials, str) else list(trials)
            if not names:
                raise ValueError("share: trials= names no trial.")
            for s in self.subjects:
                have = [t.name for t in self.trials if t.subject == s]
                missing = [n for n in names if n not in have]
                if missing or len(set(names)) >= len(have):
                    raise ValueError(
                        f"share: subject {s} has trials {', '.join(have)}; trials={names} "
                        + (f"names {', '.join(missing)}, which it does not have."
                           if missing else "must leave at least one."))
            first = tuple(t for t in self.trials if t.name in names)
            rest = tuple(t for t in self.trials if t.name not in names)
            return Dataset(first), Dataset(rest)
        if trials is not None:
            parts = []
            for k, s in zip(jax.random.split(key, len(self.subjects)), self.subjects):
                ts = [t for t in self.trials if t.subject == s]
                if not 1 <= trials < len(ts):
                    raise ValueError(f"share: subject {s} has {len(ts)} trials; trials={trials} "
                                     "must leave at least one.")
                order = np.asarray(jax.random.permutation(k, len(ts)))[:trials]
                parts.append(({ts[j].name for j in order.tolist()}, s))
            chosen = {(s, n) for names, s in parts for n in names}
            first = tuple(t for t in self.trials if (t.subject, t.name) in chosen)
            rest = tuple(t for t in self.trials if (t.subject, t.name) not in chosen)
            return Dataset(first), Dataset(rest)
        if not 0 < fraction < 1:
            raise ValueError(f"share: fraction={fraction} must be in (0, 1).")
        first, rest = [], []
        for t in self.trials:
            if not t.processed:
                raise ValueError("share(fraction=...) cuts trials in time; process the sEMG "
                                 "first (Dataset.process) so that it shares the labels' rate.")
            n = int(round(fraction * t.n_samples))
            first.append(cut(t, 0, n, "a"))
            rest.append(cut(t, n, t.n_samples, "b"))
        return Dataset(tuple(first)), Dataset(tuple(rest))

    def windows(self, width: int, stride: int = 1) -> Windows:
        """Sliding windows over every processed trial (see `Windows`)."""
        parts = []
        subjects = self.subjects
        for ti, t in enumerate(self.trials):
            if not t.processed:
                raise ValueError(f"trial {t.subject}/{t.name}: windows need processed sEMG at "
                                 "the labels' rate; call Dataset.process() first.")
            x = sliding_windows(t.emg, width, stride)
            end = np.arange(len(x)) * stride + width - 1
            parts.append(dict(
                emg=x, q=None if t.q is None else t.q[end],
                forces=None if t.forces is None else t.forces[end],
                subject=np.full(len(x), subjects.index(t.subject)), trial=np.full(len(x), ti),
                index=end))

        def cat(k):
            vals = [p[k] for p in parts]
            if any(v is None for v in vals):
                return None
            return np.concatenate(vals)

        return Windows(**{k: cat(k) for k in ("emg", "q", "forces", "subject", "trial", "index")})


def cut(t: Trial, a: int, b: int, tag: str) -> Trial:
    fields = {"emg": t.emg[a:b], "extra": {k: v[a:b] for k, v in t.extra.items()},
              "name": t.name if tag == "a" else f"{t.name}#rest"}
    if t.q is not None:
        fields["q"] = t.q[a:b]
    if t.forces is not None:
        fields["forces"] = t.forces[a:b]
    return dataclasses.replace(t, **fields)


__all__ = ["Trial", "Dataset", "Windows", "sliding_windows"]
