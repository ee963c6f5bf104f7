"""The assembled musculoskeletal model and its ODE in diffrax's `(t, y, args)` form."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._checks import as_float_array, check_finite
from .muscle import AbstractActivation, AbstractMuscle
from .skeleton import AbstractPassive, AbstractSkeleton, PolynomialPath


class ModelState(eqx.Module):
    """The state of a `Model` (a small named pytree, never a packed vector).

    Attributes:
        activation: (n_muscles,) muscle activations.
        norm_tendon_force: (n_muscles,) normalised tendon forces f̃T, or None for rigid
            tendons.
        q: (n_dofs,) joint coordinates (rad; m for a slider).
        qdot: (n_dofs,) their velocities.
    """

    activation: Array
    norm_tendon_force: Array | None
    q: Array
    qdot: Array


class ModelOutputs(eqx.Module):
    """Quantities derived from a `ModelState` (one instant; vmap over time)."""

    mtu_length: Array  # (muscles,) m
    moment_arms: Array  # (muscles, dofs) m
    tendon_force: Array  # (muscles,) N
    fiber_length: Array  # (muscles,) m
    norm_tendon_force: Array  # (muscles,)
    muscle_moments: Array  # (dofs,) N·m, Rᵀ·F_T
    passive_moments: Array  # (dofs,) N·m from joint passive elements
    qddot: Array  # (dofs,)
    norm_tendon_force_dot: Array | None  # (muscles,) 1/s, compliant tendons only


class Model(eqx.Module):
    """Muscles + activation dynamics + skeleton + path geometry + joint passive elements.

    Args:
        muscles: one `AbstractMuscle` holding every muscle stacked: a
            `DeGrooteFregly2016Muscle` (compliant or rigid tendons) or a `MuJoCoMuscle`.
        activation: an `AbstractActivation` (`DeGrooteActivation`, `MuJoCoActivation`;
            per-muscle time constants broadcast).
        skeleton: an `AbstractSkeleton` (`Hinge`, `SerialChain`, `Slider`).
        path: `PolynomialPath` giving l_MT(q) and r(q) = −∂l_MT/∂q.
        passive: a tuple of `AbstractPassive` elements, each a generalised force
            `moment(q, q̇) -> (n_dofs,)` (joint damping, elasticity, limits).

    Muscle parameter identification, subject scaling and the physics-informed losses read
    `muscles.params` and work with `DeGrooteFregly2016Muscle`; simulation works with any.
        muscle_names, coordinate_names: labels (static), in file order for loaded models.

    The equation of motion is M(q)q̈ + bias(q, q̇) = R(q)ᵀF_T + Σ passive(q, q̇).
    """

    muscles: AbstractMuscle
    activation: AbstractActivation
    skeleton: AbstractSkeleton
    path: PolynomialPath
    passive: tuple[AbstractPassive, ...] = ()
    muscle_names: tuple[str, ...] = eqx.field(static=True, default=())
    coordinate_names: tuple[str, ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        for name, kind in (("muscles", AbstractMuscle), ("activation", AbstractActivation),
                           ("skeleton", AbstractSkeleton), ("path", PolynomialPath)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"Model.{name} must be a jaxmsk {kind.__name__}, got "
                                 f"{type(getattr(self, name)).__name__}.")
        if not isinstance(self.passive, tuple) or not all(
                isinstance(p, AbstractPassive) for p in self.passive):
            raise ValueError("Model.passive must be a tuple of jaxmsk passive elements "
                             "(JointPassive, CoordinateLimitForce, SpringGeneralizedForce), got "
                             f"{self.passive!r:.200}.")
        if self.path.n_muscles != self.muscles.n_muscles:
            raise ValueError(
                f"Model: the path describes {self.path.n_muscles} muscles but `muscles` has "
                f"{self.muscles.n_muscles}; give them the same muscles in the same order."
            )
        if self.path.n_dofs != self.skeleton.n_dofs:
            raise ValueError(
                f"Model: the path uses {self.path.n_dofs} coordinates but the skeleton has "
                f"{self.skeleton.n_dofs}."
            )
        for label, names, n in (("muscle_names", self.muscle_names, self.n_muscles),
                                ("coordinate_names", self.coordinate_names, self.n_dofs)):
            if names and len(names) != n:
                raise ValueError(f"Model.{label} has {len(names)} names for {n} entries.")

    @property
    def n_muscles(self) -> int:
        return self.muscles.n_muscles

    @property
    def n_dofs(self) -> int:
        return self.skeleton.n_dofs

    @property
    def compliant(self) -> bool:
        return self.muscles.tendon == "compliant"

    # -- state --------------------------------------------------------------------------
    def initial_state(self, q0: ArrayLike, qdot0: ArrayLike | None = None,
                      activation0: ArrayLike | None = None) -> ModelState:
        """A state with the muscles in static equilibrium (OpenSim's `equilibrateMuscles`).

        Args:
            q0: (n_dofs,) initial coordinates.
            qdot0: (n_dofs,) initial velocities (default zeros); the equilibrium uses the
                resulting MTU velocities, as OpenSim does.
            activation0: (n_muscles,) or scalar initial activation (default 0; `simulate`
                passes the first excitation sample).
        """
        q0 = check_finite("q0", as_float_array(q0))
        if q0.shape != (self.n_dofs,):
            raise ValueError(f"q0 has shape {q0.shape}; this model has {self.n_dofs} "
                             f"coordinate(s): pass shape ({self.n_dofs},).")
        qdot0 = (jnp.zeros_like(q0) if qdot0 is None
                 else check_finite("qdot0", as_float_array(qdot0)))
        if qdot0.shape != (self.n_dofs,):
            raise ValueError(f"qdot0 has shape {qdot0.shape}; expected ({self.n_dofs},).")
        a0 = jnp.broadcast_to(as_float_array(0.0 if activation0 is None else activation0),
                              (self.n_muscles,)).astype(q0.dtype)
        ft0 = None
        if self.compliant:
            lmt, r = self.path.length_and_moment_arms(q0)
            ft0 = self.muscles.initial_norm_tendon_force(lmt, a0, -r @ qdot0)
        return ModelState(activation=a0, norm_tendon_force=ft0, q=q0, qdot=qdot0)

    # -- dynamics -----------------------------------------------------------------------
    def outputs(self, y: ModelState) -> ModelOutputs:
        """Everything derived from the state (single instant)."""
        lmt, r = self.path.length_and_moment_arms(y.q)
        vmt = -r @ y.qdot
        s = self.muscles.mtu_forces(lmt, vmt, y.activation, y.norm_tendon_force)
        muscle_moments = r.T @ s.tendon_force
        passive = sum((p.moment(y.q, y.qdot) for p in self.passive), jnp.zeros_like(y.q))
        qddot = self.skeleton.acceleration(y.q, y.qdot, muscle_moments + passive)
        return ModelOutputs(mtu_length=lmt, moment_arms=r, tendon_force=s.tendon_force,
                            fiber_length=s.fiber_length, norm_tendon_force=s.norm_tendon_force,
                            muscle_moments=muscle_moments, passive_moments=passive, qddot=qddot,
                            norm_tendon_force_dot=s.norm_tendon_force_dot)

    def derivative(self, y: ModelState, excitation: Float[ArrayLike, " muscles"]) -> ModelState:
        """dy/dt for the given excitation (n_muscles,) at this instant."""
        out = self.outputs(y)
        return ModelState(activation=self.activation.derivative(excitation, y.activation),
                          norm_tendon_force=out.norm_tendon_force_dot, q=y.qdot, qdot=out.qddot)

    def vector_field(self, t, y: ModelState, args) -> ModelState:
        """diffrax `(t, y, args)` form; `args` has `evaluate(t)` -> excitation (n_muscles,), e.g. a
        `diffrax.LinearInterpolation`."""
        return self.derivative(y, args.evaluate(t))


__all__ = ["Model", "ModelState", "ModelOutputs"]
