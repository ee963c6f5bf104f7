"""Muscle families: curves, activation dynamics and muscle–tendon units.

Files (private; the names below are the public surface):
- `_base.py`: `AbstractMuscle`, `AbstractActivation`, `MTUForces`: what a `Model` uses, so
  any muscle family goes into one.
- `_curves.py`: De Groote–Fregly 2016 curves (`DeGrooteCurves`, OpenSim and published).
- `_degroote_activation.py`: De Groote tanh-smoothed first-order activation.
- `_degroote.py`: `MuscleParameters`, `DeGrooteFregly2016Muscle` (rigid/compliant tendon,
  pennation, static equilibrium with implicit-function-theorem gradients).
- `_mujoco.py`: MuJoCo's muscle (curves from gainprm/biasprm, activation dynamics). Kept
  apart from `_curves.py` because MuJoCo's parameters are per-actuator arrays, not
  published constants.
- `_ceinms.py`: CEINMS EMG→activation (discrete recursion, continuous two-pole form).
"""

from ._base import AbstractActivation as AbstractActivation
from ._base import AbstractMuscle as AbstractMuscle
from ._base import MTUForces as MTUForces
from ._ceinms import CEINMSActivation as CEINMSActivation
from ._ceinms import TwoPoleActivation as TwoPoleActivation
from ._ceinms import TwoPoleState as TwoPoleState
from ._ceinms import activation_nonlinearity as activation_nonlinearity
from ._curves import DeGrooteCurves as DeGrooteCurves
from ._degroote import DeGrooteFregly2016Muscle as DeGrooteFregly2016Muscle
from ._degroote import Equilibrium as Equilibrium
from ._degroote import MuscleParameters as MuscleParameters
from ._degroote import MuscleState as MuscleState
from ._degroote_activation import DeGrooteActivation as DeGrooteActivation
from ._mujoco import MuJoCoActivation as MuJoCoActivation
from ._mujoco import MuJoCoMuscle as MuJoCoMuscle
from ._mujoco import mujoco_active_force_length as mujoco_active_force_length
from ._mujoco import mujoco_force_velocity as mujoco_force_velocity
from ._mujoco import mujoco_passive_force_length as mujoco_passive_force_length
