"""Data: synthetic cohorts, synthetic raw sEMG, sEMG processing and datasets for learning.

Everything here is pure and keyed (same key, same data); the processing functions are pure
JAX, jit-able with sampling rates static, and batch over trials with `vmap`. Arrays are
(time, channels), time along the first axis. Files are read and written only by `jaxmsk.io`.

- `_subjects.py`: per-subject physiology and electrode effects (`CohortDistributions`).
- `_protocols.py`: movement protocols and the excitation controller.
- `_semg.py`: synthetic raw sEMG.
- `_cohort.py`: `synthetic_cohort`, the `Cohort` container.
- `_filters.py`, `_emg.py`: Butterworth/notch zero-phase filtering and the sEMG chain.
- `_dataset.py`: `Trial`, `Dataset`, sliding windows, splits.
"""

from ._cohort import Cohort as Cohort
from ._cohort import UNITS as UNITS
from ._cohort import synthetic_cohort as synthetic_cohort
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
from ._protocols import PROTOCOLS as PROTOCOLS
from ._protocols import Controller as Controller
from ._protocols import default_ranges as default_ranges
from ._semg import mvc_drive as mvc_drive
from ._semg import neighbour_crosstalk as neighbour_crosstalk
from ._semg import semg_power_spectrum as semg_power_spectrum
from ._semg import synthetic_semg as synthetic_semg
from ._subjects import CohortDistributions as CohortDistributions
from ._subjects import SubjectParameters as SubjectParameters
from ._subjects import sample_subject as sample_subject
from ._subjects import subject_model as subject_model
from ._dataset import Dataset as Dataset
from ._dataset import Trial as Trial
from ._dataset import Windows as Windows
from ._dataset import sliding_windows as sliding_windows
