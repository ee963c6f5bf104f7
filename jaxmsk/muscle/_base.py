"""The interfaces every muscle family and every activation model implement.

A `jaxmsk.Model` holds one `AbstractMuscle` (all its muscles stacked along a leading axis)
and one `AbstractActivation`; any family that implements these goes into a Model: the
De Groote–Fregly 2016 muscle of OpenSim (`DeGrooteFregly2016Muscle`, compliant or rigid
tendon) and MuJoCo's muscle (`MuJoCoMuscle`, rigid). Concrete classes are final: extend a
family by writing a new subclass of the abstract one, not of a concrete class.
"""

from __future__ import annotations

import abc

import equinox as eqx
from jaxtyping import Array, ArrayLike


class MTUForces(eqx.Module):
    """What a Model needs from its muscles at one instant (every field (n_muscles,)).

    Attributes:
        tendon_force: force the muscle–tendon unit pulls with (N, ≥ 0 for pulling).
        fiber_length: fibre length (m); for MuJoCo's muscle, the normalised length times
            the optimal length L0.
        norm_tendon_force: tendon force ÷ the muscle's peak isometric force.
        norm_tendon_force_dot: d(norm_tendon_force)/dt (1/s) for compliant tendons, whose
            state it is; None for rigid tendons.
    """

    tendon_force: Array
    fiber_length: Array
    norm_tendon_force: Array
    norm_tendon_force_dot: Array | None = None


class AbstractMuscle(eqx.Module):
    """Muscle–tendon units of one family, stacked along a leading muscle axis.

    Attributes (provided by every subclass):
        tendon: "compliant" (the model's state then holds each muscle's normalised tendon
            force) or "rigid" (static).

    Methods every subclass implements:
        n_muscles: number of muscles (property).
        mtu_forces(mtu_length, mtu_velocity, activation, norm_tendon_force): `MTUForces`.
        initial_norm_tendon_force(mtu_length, activation, mtu_velocity): the tendon state
            in static equilibrium (compliant families only).
    """

    tendon: eqx.AbstractVar[str]

    @property
    @abc.abstractmethod
    def n_muscles(self) -> int:
        ...

    @abc.abstractmethod
    def mtu_forces(self, mtu_length: Array, mtu_velocity: Array, activation: Array,
                   norm_tendon_force: Array | None = None) -> MTUForces:
        """Forces at MTU length (m), lengthening velocity (m/s) and activation, and for
        compliant tendons the normalised tendon force of the state."""

    def initial_norm_tendon_force(self, mtu_length: Array, activation: Array,
                                  mtu_velocity: Array) -> Array:
        """The normalised tendon force in static equilibrium (compliant tendons)."""
        raise NotImplementedError(
            f"{type(self).__name__} has {self.tendon} tendons: it has no tendon state to "
            "equilibrate.")


class AbstractActivation(eqx.Module):
    """First-order activation dynamics: da/dt from excitation and activation.

    `derivative(excitation, activation)` takes arrays that broadcast with the fields
    (a leading muscle axis) and returns da/dt (1/s).
    """

    @abc.abstractmethod
    def derivative(self, excitation: ArrayLike, activation: ArrayLike) -> Array:
        ...


__all__ = ["AbstractMuscle", "AbstractActivation", "MTUForces"]
