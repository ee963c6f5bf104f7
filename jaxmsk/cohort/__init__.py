"""Synthetic cohorts: subjects with known physiology, their movements and their raw sEMG.

- `_subjects.py`: per-subject physiology and electrode effects (`CohortDistributions`,
  `sample_subject`, `subject_model`).
- `_protocols.py`: movement protocols and the excitation controller (`Controller`).
- `_semg.py`: synthetic raw sEMG (`synthetic_semg`, `mvc_drive`, `neighbour_crosstalk`).
- `_cohort.py`: `synthetic_cohort` and the `Cohort` container.

Everything is pure and keyed: the same key gives the same cohort. Processing the sEMG into
envelopes and cutting trials into windows is `jaxmsk.data`; files are `jaxmsk.io`.
"""

from ._cohort import UNITS as UNITS
from ._cohort import Cohort as Cohort
from ._cohort import synthetic_cohort as synthetic_cohort
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
