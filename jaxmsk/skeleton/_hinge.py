"""A one-DoF hinge: a rigid body rotating about a fixed axis under gravity.

The equation of motion of any single revolute joint whose axis is fixed in ground is

    I·θ̈ + G(θ) = τ,    G(θ) = gravity_moment·sin(θ − gravity_angle),

with I the moment of inertia about the axis (kg·m²), τ the generalised force (N·m) and
G = ∂V/∂θ the gravity load that τ must overcome. For a body of mass m whose centre of mass
lies at distance d from the axis, gravity_moment = m·g·d·sin β, where β is the angle between
gravity and the axis (so m·g·d for a horizontal axis), and `gravity_angle` is the angle at
which the centre of mass hangs straight "down" (the stable equilibrium): G > 0 (pulling θ
back) for θ slightly above it. No Coriolis term exists for one DoF.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_float_array, finite, is_concrete, nonnegative, positive
from ._base import AbstractSkeleton


class Hinge(AbstractSkeleton):
    """One revolute degree of freedom with a constant inertia and a sinusoidal gravity load.

    Interchangeable with a one-joint `SerialChain` (same methods; q, q̇, τ of shape (1,)).

    Args:
        inertia: I > 0, moment of inertia about the joint axis (kg·m²).
        gravity_moment: amplitude m·g·d of the gravity moment (N·m), >= 0 (use
            gravity_angle + π instead of a negative amplitude).
        gravity_angle: θ₀ (rad), the joint angle of the stable equilibrium; see the module
            docstring for the sign convention G(θ) = gravity_moment·sin(θ − θ₀).
    """

    inertia: Float[Array, ""] = eqx.field(converter=positive("Hinge.inertia", scalar=True))
    gravity_moment: Float[Array, ""] = eqx.field(
        default=0.0, converter=nonnegative("Hinge.gravity_moment", scalar=True))
    gravity_angle: Float[Array, ""] = eqx.field(
        default=0.0, converter=finite("Hinge.gravity_angle", scalar=True))

    @classmethod
    def from_chain(cls, chain) -> "Hinge":
        """The exact `Hinge` of a one-joint `SerialChain` (concrete fields only).

        For one revolute joint the inertia about the axis is constant and the potential is
        a·cos θ + b·sin θ + c, so I = M(0) and G(θ) is fixed by G(0) and G(π/2).
        """
        if chain.n_dofs != 1:
            raise ValueError(
                f"Hinge.from_chain needs a one-joint chain, got {chain.n_dofs} joints.")
        if not is_concrete(chain.mass):
            raise ValueError("Hinge.from_chain needs concrete chain fields (call it outside jit).")
        zero = jnp.zeros(1, dtype=chain.mass.dtype)
        g0 = float(chain.bias_forces(zero, zero)[0])  # = −A·sin θ₀
        g90 = float(chain.bias_forces(zero + np.pi / 2, zero)[0])  # = A·cos θ₀
        return cls(inertia=chain.mass_matrix(zero)[0, 0], gravity_moment=np.hypot(g0, g90),
                   gravity_angle=np.arctan2(-g0, g90))

    @property
    def n_dofs(self) -> int:
        return 1

    @staticmethod
    def _check(name: str, x: ArrayLike) -> Array:
        x = as_float_array(x)
        if x.shape != (1,):
            raise ValueError(f"{name} has shape {x.shape}, expected (1,) for a Hinge. "
                             "Pass one sample; batch with jax.vmap.")
        return x

    def kinetic_energy(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, ""]:
        """T = ½·I·θ̇² (J)."""
        self._check("q", q)
        qdot = self._check("qdot", qdot)
        return 0.5 * self.inertia * qdot[0] ** 2

    def potential_energy(self, q: ArrayLike) -> Float[Array, ""]:
        """V = gravity_moment·(1 − cos(θ − θ₀)) (J), zero at the stable equilibrium."""
        q = self._check("q", q)
        return self.gravity_moment * (1.0 - jnp.cos(q[0] - self.gravity_angle))

    def mass_matrix(self, q: ArrayLike) -> Float[Array, "1 1"]:
        """[[I]] (kg·m²)."""
        q = self._check("q", q)
        return jnp.reshape(self.inertia, (1, 1)).astype(jnp.result_type(q, self.inertia))

    def bias_forces(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, "1"]:
        """[G(θ)] (N·m): gravity only, a single DoF has no velocity-dependent term."""
        q = self._check("q", q)
        self._check("qdot", qdot)
        return self.gravity_moment * jnp.sin(q - self.gravity_angle)

    def acceleration(self, q: ArrayLike, qdot: ArrayLike, tau: ArrayLike) -> Float[Array, "1"]:
        """θ̈ = (τ − G(θ))/I (rad/s²); τ in N·m, shape (1,)."""
        tau = self._check("tau", tau)
        return (tau - self.bias_forces(q, qdot)) / self.inertia
