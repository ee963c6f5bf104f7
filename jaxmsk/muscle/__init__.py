"""Muscle families: curves, activation dynamics and muscle–tendon units.

Files (private; the names below are the public surface):
- `_curves.py`: De Groote–Fregly 2016 curves (`DeGrooteCurves`, OpenSim and published).
- `_activation.py`: De Groote tanh-smoothed first-order activation.
- `_hill.py`: `MuscleParameters`, `DeGrooteFregly2016Muscle` (rigid/compliant tendon,
  pennation, static equilibrium with implicit-function-theorem gradients).
- `_mujoco.py`: MuJoCo's muscle (curves from gainprm/biasprm, activation dynamics). Kept
  apart from `_curves.py` because MuJoCo's parameters are per-actuator arrays, not
  published constants.
- `_emg_activation.py`: CEINMS EMG→activation (discrete recursion, continuous two-pole form).
"""

from ._activation import DeGrooteActivation as DeGrooteActivation
from ._curves import DeGrooteCurves as DeGrooteCurves
from ._hill import DeGrooteFregly2016Muscle as DeGrooteFregly2016Muscle
from ._hill import Equilibrium as Equilibrium
from ._hill import MuscleParameters as MuscleParameters
from ._hill import MuscleState as MuscleState

from ._emg_activation import CEINMSActivation as CEINMSActivation
from ._emg_activation import TwoPoleActivation as TwoPoleActivation
from ._emg_activation import TwoPoleState as TwoPoleState
from ._emg_activation import activation_nonlinearity as activation_nonlinearity
from ._mujoco import MuJoCoActivation as MuJoCoActivation
from ._mujoco import MuJoCoMuscle as MuJoCoMuscle
from ._mujoco import mujoco_active_force_length as mujoco_active_force_length
from ._mujoco import mujoco_force_velocity as mujoco_force_velocity
from ._mujoco import mujoco_passive_force_length as mujoco_passive_force_length
