"""Training segments: what a sequence network learns from, cut from a `Dataset`.

A segment is the sEMG a network needs for `length` consecutive predictions
(receptive_field + length − 1 samples) with the labels of those `length` samples; the
physics residual differentiates along them. `Dataset.windows` is the special case of one
label per window (length 1) with each window's trial and sample index kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._dataset import Dataset


@dataclasses.dataclass(frozen=True)
class Segments:
    """Training segments: sEMG (n, receptive_field + length − 1, channels) and the labels of
    the `length` samples the network predicts from it: q (n, length, dofs) rad, forces
    (n, length, muscles) N; subject (n,) index into `subjects`."""

    emg: np.ndarray
    q: np.ndarray
    forces: np.ndarray
    subject: np.ndarray
    subjects: tuple[str, ...]
    fs: float

    def __len__(self) -> int:
        return len(self.emg)

    def take(self, idx) -> Segments:
        return dataclasses.replace(self, emg=self.emg[idx], q=self.q[idx],
                                   forces=self.forces[idx], subject=self.subject[idx])


def make_segments(dataset: Dataset, receptive_field: int, length: int = 64,
                  stride: int | None = None, *, cover_end: bool = False) -> Segments:
    """Cut every processed trial into segments that give `length` consecutive predictions.

    Args:
        dataset: processed trials (`Dataset.process()`), with q and force labels.
        receptive_field: the network's window (samples).
        length: predictions per segment (the physics residual differentiates along them).
        stride: step between segment starts (default `length`: no overlap).
        cover_end: add, where the stride misses them, a last segment ending on each trial's
            last sample, so that every sample after the first window is a label.
    """
    stride = stride or length
    span = receptive_field + length - 1
    emg, q, f, subj = [], [], [], []
    subjects = dataset.subjects
    fs = None
    for t in dataset.trials:
        if not t.processed or t.q is None or t.forces is None:
            raise ValueError(f"trial {t.subject}/{t.name}: training needs processed sEMG "
                             "(Dataset.process()) and both q and force labels.")
        if fs is not None and abs(t.fs - fs) > 1e-9 * fs:
            raise ValueError(f"trial {t.subject}/{t.name} is at {t.fs} Hz, others at {fs} Hz; "
                             "resample to one rate.")
        fs = t.fs
        starts = list(range(0, t.n_samples - span + 1, stride))
        if cover_end and starts and starts[-1] != t.n_samples - span:
            starts.append(t.n_samples - span)
        for s in starts:
            emg.append(t.emg[s:s + span])
            q.append(t.q[s + receptive_field - 1:s + span])
            f.append(t.forces[s + receptive_field - 1:s + span])
            subj.append(subjects.index(t.subject))
    if not emg:
        raise ValueError(f"no trial is long enough for one segment of {span} samples "
                         f"(receptive field {receptive_field} + length {length} − 1).")
    return Segments(np.stack(emg), np.stack(q), np.stack(f), np.asarray(subj), subjects, fs)


__all__ = ["Segments", "make_segments"]
