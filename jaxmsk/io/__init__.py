"""Input/output: the only code that touches files or OpenSim.

- `_osim_skeleton.py`: `chain_from_opensim`, a `SerialChain` and passive elements from a
  loaded `opensim.Model`.
- `_osim_tree.py`: `tree_from_opensim`, a `JointTree` (CustomJoints with spline and
  polynomial functions, couplers eliminated, branches) from a loaded `opensim.Model`.
- `_osim.py`: `load_osim` (an .osim file as a `Model`, paths fitted to OpenSim's),
  `path_discontinuities` (where OpenSim's own path lengths jump) and
  `write_osim_polynomial_paths` (an .osim whose muscles follow a model's polynomial paths).
- `_mjcf.py`: `load_mujoco` (a MuJoCo/MyoSuite MJCF file as a `Model`, paths fitted to
  MuJoCo's actuator lengths).
- `_osim_pose.py`: the `opensim` import and `set_pose` (coordinates set, couplers satisfied).
- `_osim_paths.py`: muscle paths as one polynomial (OpenSim FunctionBasedPaths read, other
  paths fitted per muscle over the coordinates it crosses).
- `_sto.py`: OpenSim .sto/.mot and CSV tables (`read_sto`, `write_sto`, `read_csv`,
  `write_csv`, `Table`).
- `_cohort_files.py`: `save_cohort` / `load_cohort` (a folder of npz + JSON).
- `_checkpoint.py`: `save_checkpoint` / `load_checkpoint` / `latest_checkpoint` (Equinox
  serialisation with a JSON sidecar and a structure fingerprint).
- `_recordings.py`: `load_recordings` / `export_recordings`, the folder layout of real
  recordings (one folder per subject; `<trial>_emg.sto`, `<trial>_kinematics.mot`,
  `<trial>_muscle_forces.sto`, `mvc_emg.sto`).
- `_atomic.py`: every write goes to a temporary file renamed into place; nothing is
  overwritten unless the caller asks.
"""

from ._checkpoint import latest_checkpoint as latest_checkpoint
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._cohort_files import load_cohort as load_cohort
from ._cohort_files import save_cohort as save_cohort
from ._mjcf import load_mujoco as load_mujoco
from ._osim import load_osim as load_osim
from ._osim import path_discontinuities as path_discontinuities
from ._osim import write_osim_polynomial_paths as write_osim_polynomial_paths
from ._osim_skeleton import chain_from_opensim as chain_from_opensim
from ._osim_tree import tree_from_opensim as tree_from_opensim
from ._recordings import export_recordings as export_recordings
from ._recordings import load_recordings as load_recordings
from ._sto import Table as Table
from ._sto import TableFormatError as TableFormatError
from ._sto import read_csv as read_csv
from ._sto import read_sto as read_sto
from ._sto import write_csv as write_csv
from ._sto import write_sto as write_sto
