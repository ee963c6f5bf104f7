"""Input/output: the only code that touches files or OpenSim.

- `_osim_skeleton.py`: `chain_from_opensim`, a `SerialChain` and passive elements from a
  loaded `opensim.Model`.
- `_osim.py`: `load_osim` (an .osim file as a `Model`, paths fitted to OpenSim's) and
  `write_osim_polynomial_paths` (an .osim whose muscles follow a model's polynomial paths).
"""

from ._osim_skeleton import chain_from_opensim as chain_from_opensim
from ._osim import load_osim as load_osim
from ._osim import write_osim_polynomial_paths as write_osim_polynomial_paths
