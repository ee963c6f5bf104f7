"""A one-DoF translational joint: a point mass on a slider (for tests and simple rigs)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .._checks import finite, positive
from ._base import AbstractSkeleton


class Slider(AbstractSkeleton):
    """A body of `mass` (kg) translating along one axis, coordinate x (m).

    `gravity` (m/s²) is the component of gravitational acceleration along +x. Equation of
    motion, in the form every jaxmsk skeleton uses: M·ẍ + bias = τ, with M = mass and
    bias = −mass·gravity; τ is the generalised force (N).
    """

    mass: Array = eqx.field(converter=positive("Slider.mass"))
    gravity: Array = eqx.field(default=0.0, converter=finite("Slider.gravity"))

    @property
    def n_dofs(self) -> int:
        return 1

    def mass_matrix(self, q: ArrayLike) -> Array:
        return jnp.reshape(self.mass, (1, 1)) + 0.0 * jnp.sum(jnp.asarray(q))

    def bias_forces(self, q: ArrayLike, qdot: ArrayLike) -> Array:
        return jnp.reshape(-self.mass * self.gravity, (1,)) + 0.0 * jnp.asarray(q)

    def acceleration(self, q: ArrayLike, qdot: ArrayLike, tau: ArrayLike) -> Array:
        return (jnp.asarray(tau) - self.bias_forces(q, qdot)) / self.mass
