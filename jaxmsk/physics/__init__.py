"""Physics residuals for physics-informed learning (pure, element-wise, unreduced).

Files (private; the names below are the public surface):
- `_residuals.py`: central finite differences, the joint equation-of-motion residual
  (Zhang et al. 2022), the muscle-model consistency residual, and EMG envelope → activation
  by De Groote's first-order activation dynamics.

Every residual returns one dimensionless value per interior sample and per equation; the
caller squares, weights and reduces.
"""

from ._residuals import emg_to_activation as emg_to_activation
from ._residuals import equation_of_motion_residual as equation_of_motion_residual
from ._residuals import finite_differences as finite_differences
from ._residuals import muscle_consistency_residual as muscle_consistency_residual
from ._residuals import muscle_moment_capacity as muscle_moment_capacity

