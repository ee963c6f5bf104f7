"""jaxtyping aliases used in signatures across jaxmsk.

Axis names: `muscles` (leading muscle axis of stacked parameters), `dofs` (joint degrees of
freedom), `time` (samples along time, always the first axis of a time series).
"""

from jaxtyping import Array, ArrayLike, Float

Scalar = Float[Array, ""]
ScalarLike = float | Float[ArrayLike, ""]
PerMuscle = Float[Array, "*muscles"]
PerMuscleLike = Float[ArrayLike, "*muscles"]
PerJoint = Float[Array, "dofs"]
TimeSeries = Float[Array, "time channels"]

__all__ = ["Scalar", "ScalarLike", "PerMuscle", "PerMuscleLike", "PerJoint", "TimeSeries"]
