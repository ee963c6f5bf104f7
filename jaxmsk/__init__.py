"""jaxmsk: differentiable, personalised musculoskeletal modelling in JAX.

Importing jaxmsk changes no JAX configuration (x64 stays the user's choice).
"""

from . import muscle as muscle
from .muscle import CEINMSActivation as CEINMSActivation
from .muscle import DeGrooteActivation as DeGrooteActivation
from .muscle import DeGrooteCurves as DeGrooteCurves
from .muscle import DeGrooteFregly2016Muscle as DeGrooteFregly2016Muscle
from .muscle import Equilibrium as Equilibrium
from .muscle import MuJoCoActivation as MuJoCoActivation
from .muscle import MuJoCoMuscle as MuJoCoMuscle
from .muscle import MuscleParameters as MuscleParameters
from .muscle import MuscleState as MuscleState
from .muscle import TwoPoleActivation as TwoPoleActivation
from .muscle import TwoPoleState as TwoPoleState

__version__ = "0.1.0"
