"""The interfaces every skeleton and every passive joint element implement.

A skeleton gives the equation of motion M(q)·q̈ + bias(q, q̇) = τ of its generalised
coordinates; a passive element adds a generalised force τ_passive(q, q̇). `Hinge`,
`SerialChain` and `Slider` are skeletons; `JointPassive`, `CoordinateLimitForce` and
`SpringGeneralizedForce` are passive elements. Concrete classes are final.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


class AbstractSkeleton(eqx.Module):
    """Generalised coordinates q (rad for rotations, m for translations) and their dynamics.

    Subclasses implement `n_dofs` (property), `mass_matrix(q)` and `bias_forces(q, q̇)`
    (Coriolis, centrifugal and gravity terms on the left-hand side); `acceleration` solves
    M·q̈ = τ − bias, and subclasses may override it with a cheaper form.
    """

    @property
    @abc.abstractmethod
    def n_dofs(self) -> int:
        ...

    @abc.abstractmethod
    def mass_matrix(self, q: ArrayLike) -> Float[Array, "dofs dofs"]:
        ...

    @abc.abstractmethod
    def bias_forces(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        ...

    def acceleration(self, q: ArrayLike, qdot: ArrayLike, tau: ArrayLike) -> Float[Array, " dofs"]:
        """q̈ = M(q)⁻¹·(τ − bias(q, q̇))."""
        return jnp.linalg.solve(self.mass_matrix(q), jnp.asarray(tau) - self.bias_forces(q, qdot))


class AbstractPassive(eqx.Module):
    """A passive joint element: `moment(q, q̇)` is its generalised force (n_dofs,) (N·m for
    rotations, N for translations), added to the muscles' on the right-hand side."""

    @abc.abstractmethod
    def moment(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        ...


__all__ = ["AbstractSkeleton", "AbstractPassive"]
