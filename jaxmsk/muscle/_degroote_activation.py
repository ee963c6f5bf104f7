"""First-order activation dynamics of De Groote et al. (2016), as in OpenSim 4.x.

MuJoCo's activation dynamics live in `_mujoco.py` and CEINMS's EMG→activation model in
`_ceinms.py`; all three share the interface "excitation (or EMG) in, da/dt or a out".
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .._checks import positive
from ._base import AbstractActivation


class DeGrooteActivation(AbstractActivation):
    """tanh-smoothed first-order activation dynamics (De Groote et al. 2016, eq. 1–2).

        f = ½·tanh(b·(e − a)),  z = ½ + 3/2·a
        da/dt = [(f + ½)/(τ_a·z) + (½ − f)·z/τ_d]·(e − a)

    identical to OpenSim 4.x `DeGrooteFregly2016Muscle` (which fixes b = 0.1).

    Attributes:
        tau_act: activation time constant τ_a (s), default 0.015.
        tau_deact: deactivation time constant τ_d (s), default 0.060.
        smoothing: b, the tanh steepness of the switch between τ_a and τ_d (1/1),
            default 0.1 as in OpenSim; larger b gives a sharper switch.

    Fields broadcast against a leading muscle axis; all are differentiable.
    """

    tau_act: Array = eqx.field(default=0.015, converter=positive("DeGrooteActivation.tau_act"))
    tau_deact: Array = eqx.field(default=0.060,
                                 converter=positive("DeGrooteActivation.tau_deact"))
    smoothing: Array = eqx.field(default=0.1, converter=positive("DeGrooteActivation.smoothing"))

    def derivative(self, excitation: ArrayLike, activation: ArrayLike) -> Array:
        """da/dt (1/s) for excitation e ∈ [0, 1] and activation a ∈ [0, 1] (any shape that
        broadcasts with the fields). Smooth in both arguments; finite everywhere."""
        e = jnp.asarray(excitation)
        a = jnp.asarray(activation)
        f = 0.5 * jnp.tanh(self.smoothing * (e - a))
        z = 0.5 + 1.5 * a
        return ((f + 0.5) / (self.tau_act * z) + (0.5 - f) * z / self.tau_deact) * (e - a)

    def __call__(self, t, activation, excitation):
        """diffrax-style vector field `(t, y, args)` with `args` the excitation at t."""
        del t
        return self.derivative(excitation, activation)


__all__ = ["DeGrooteActivation"]
