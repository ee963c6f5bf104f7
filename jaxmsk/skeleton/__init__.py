"""Skeletons (joints and their equations of motion) and passive joint elements.

Files (private; the names below are the public surface):
- `_chain.py`: `SerialChain`, n revolute joints; M, bias and q̈ from the Lagrangian by autodiff.
- `_hinge.py`: `Hinge`, one DoF with constant inertia and a sinusoidal gravity moment.
- `_base.py`: `AbstractSkeleton`, `AbstractPassive`, the interfaces a `Model` uses.
- `_slider.py`: `Slider`, one translational DoF.
- `_tree.py`: `JointTree`, bodies in a tree moved by function-based joints (OpenSim's
  CustomJoint, couplers eliminated), and `JointFunction`, the splines and polynomials.
- `_path.py`: `PolynomialPath`, MTU lengths and moment arms as polynomials of q.
- `_passive.py`: `JointPassive` (smooth damping/spring/limits), and OpenSim's
  `CoordinateLimitForce` and `SpringGeneralizedForce` reproduced exactly.
"""

from ._base import AbstractPassive as AbstractPassive
from ._base import AbstractSkeleton as AbstractSkeleton
from ._chain import SerialChain as SerialChain
from ._hinge import Hinge as Hinge
from ._passive import CoordinateLimitForce as CoordinateLimitForce
from ._passive import JointPassive as JointPassive
from ._passive import SpringGeneralizedForce as SpringGeneralizedForce
from ._path import PolynomialPath as PolynomialPath
from ._path import monomial_exponents as monomial_exponents
from ._slider import Slider as Slider
from ._tree import JointFunction as JointFunction
from ._tree import JointTree as JointTree
