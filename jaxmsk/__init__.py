"""jaxmsk: differentiable, personalised musculoskeletal modelling in JAX.

Importing jaxmsk changes no JAX configuration (x64 stays the user's choice).
"""

from . import cohort as cohort
from . import data as data
from . import io as io
from . import models as models
from . import moments as moments
from . import muscle as muscle
from . import nn as nn
from . import physics as physics
from . import skeleton as skeleton
from ._identify.identify import EMGExcitation as EMGExcitation
from ._identify.identify import IdentificationResult as IdentificationResult
from ._identify.identify import IdentificationTrial as IdentificationTrial
from ._identify.identify import IdentificationWarning as IdentificationWarning
from ._identify.identify import identify as identify
from ._identify.identify import synthetic_trials as synthetic_trials
from ._learn.folds import fit_stacked as fit_stacked
from ._learn.folds import train_generic_folds as train_generic_folds
from ._learn.train import FitResult as FitResult
from ._learn.train import LossWeights as LossWeights
from ._learn.train import Predictor as Predictor
from ._learn.train import SubjectAdjustment as SubjectAdjustment
from ._learn.train import evaluate as evaluate
from ._learn.transfer import DEFAULT_METHODS as DEFAULT_METHODS
from ._learn.transfer import METHODS as METHODS
from ._learn.transfer import TransferConfig as TransferConfig
from ._learn.transfer import personalise as personalise
from ._learn.transfer import run_fold as run_fold
from ._learn.transfer import train as train
from ._model import Model as Model
from ._model import ModelOutputs as ModelOutputs
from ._model import ModelState as ModelState
from ._scale import scale_parameters as scale_parameters
from ._simulate import Trajectory as Trajectory
from ._simulate import simulate as simulate
from ._solvers import StabilizedRK3 as StabilizedRK3
from .io import load_mujoco as load_mujoco
from .io import load_osim as load_osim
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
from .skeleton import CoordinateLimitForce as CoordinateLimitForce
from .skeleton import Hinge as Hinge
from .skeleton import JointPassive as JointPassive
from .skeleton import JointTree as JointTree
from .skeleton import PolynomialPath as PolynomialPath
from .skeleton import SerialChain as SerialChain
from .skeleton import Slider as Slider
from .skeleton import SpringGeneralizedForce as SpringGeneralizedForce

__version__ = "0.1.0"
