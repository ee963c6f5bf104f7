"""Data: sEMG processing and datasets for learning.

The sEMG functions are pure JAX, jit-able with sampling rates static, and batch over trials
with `vmap`. Arrays are (time, channels), time along the first axis. Files are read and
written only by `jaxmsk.io`; synthetic cohorts are `jaxmsk.cohort`.

- `_filters.py`, `_emg.py`: Butterworth/notch zero-phase filtering and the sEMG chain.
- `_dataset.py`: `Trial`, `Dataset`, sliding windows, splits.
- `_segments.py`: `Segments`, `make_segments`: what the sequence networks train on.
"""

import warnings as _warnings

from ._dataset import Dataset as Dataset
from ._dataset import Trial as Trial
from ._dataset import Windows as Windows
from ._dataset import sliding_windows as sliding_windows
from ._emg import bandpass as bandpass
from ._emg import delay as delay
from ._emg import emg_envelope as emg_envelope
from ._emg import envelope as envelope
from ._emg import highpass as highpass
from ._emg import lowpass as lowpass
from ._emg import mvc_peak as mvc_peak
from ._emg import normalise_mvc as normalise_mvc
from ._emg import notch as notch
from ._emg import rectify as rectify
from ._emg import resample as resample
from ._filters import butterworth_sos as butterworth_sos
from ._filters import notch_sos as notch_sos
from ._filters import sosfiltfilt as sosfiltfilt
from ._segments import Segments as Segments
from ._segments import make_segments as make_segments

# Synthetic cohorts lived here before 0.2.0; they are `jaxmsk.cohort` now. The old names
# still resolve, with a DeprecationWarning, until 0.3.0.
_MOVED_TO_COHORT = frozenset({
    "Cohort", "UNITS", "synthetic_cohort", "PROTOCOLS", "Controller", "default_ranges",
    "mvc_drive", "neighbour_crosstalk", "semg_power_spectrum", "synthetic_semg",
    "CohortDistributions", "SubjectParameters", "sample_subject", "subject_model",
})


def __getattr__(name):
    if name in _MOVED_TO_COHORT:
        from .. import cohort

        _warnings.warn(f"jaxmsk.data.{name} moved to jaxmsk.cohort.{name} in 0.2.0; the old "
                       "name goes in 0.3.0.", DeprecationWarning, stacklevel=2)
        return getattr(cohort, name)
    raise AttributeError(f"module 'jaxmsk.data' has no attribute {name!r}")
