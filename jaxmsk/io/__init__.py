"""Input/output: the only code that touches files or OpenSim.

- `_osim_skeleton.py`: `chain_from_opensim`, a `SerialChain` and passive elements from a
  loaded `opensim.Model`.
"""

from ._osim_skeleton import chain_from_opensim as chain_from_opensim
from ._osim import load_osim as load_osim
