"""Hill-type muscle–tendon units: De Groote–Fregly 2016 with rigid or compliant tendon.

Follows OpenSim 4.x `DeGrooteFregly2016Muscle` (constant-width pennation, explicit
compliant-tendon dynamics with the normalised tendon force as state, static equilibrium as
`Model::equilibrateMuscles` computes it). Many muscles are one module whose parameters
carry a leading muscle axis; batches of anything else are made with `jax.vmap`.

Departures from OpenSim, all deliberate and documented where they occur:
- Singularities of the explicit compliant-tendon derivative (a·f_act → 0, cos α → 0) are
  guarded so that values and gradients stay finite (OpenSim divides by zero).
- Where the static equilibrium has no root in OpenSim's bracket f̃T ∈ [0, 5] (a slack
  muscle–tendon unit, or one stretched beyond five times its strength), OpenSim raises;
  jaxmsk returns the bracket end (0 for a slack unit: no force) and reports
  `bracketed=False`.
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._checks import (
    as_float_array,
    check_finite,
    check_nonnegative,
    check_per_muscle,
    check_positive,
    is_concrete,
)
from .._numerics import safe_sqrt
from ._base import AbstractMuscle, MTUForces
from ._curves import LOG_FLOOR, DeGrooteCurves

# OpenSim's bracket for the normalised tendon force (state bounds and equilibrium search).
MIN_NORM_TENDON_FORCE = 0.0
MAX_NORM_TENDON_FORCE = 5.0
# Guards of the explicit compliant-tendon derivative (see `DeGrooteFregly2016Muscle`).
_MIN_ACTIVE_FORCE = 1e-8  # floor of a·f_act, the denominator of f_v
_MIN_COS_PENNATION = 1e-6  # floor of cos α
_MAX_NORM_FIBER_VELOCITY = 10.0  # |ṽM| is clipped here (10 × v_max) before inverting f_v
_MAX_NEWTON_ITERATIONS = 64


class MuscleParameters(eqx.Module):
    """Per-muscle parameters of Hill-type muscle–tendon units, one array per field.

    Every field has shape (n_muscles,); scalars broadcast to the common length. Values are
    checked on construction: lengths and forces finite and positive, pennation in
    [0, π/2). Inside `jit` the checks become `eqx.error_if`.

    Attributes:
        max_isometric_force: F_max (N).
        optimal_fiber_length: l_opt (m).
        tendon_slack_length: l_ts (m).
        pennation_angle: α_opt, pennation at optimal fibre length (rad), in [0, π/2).
        max_contraction_velocity: v_max (optimal fibre lengths per second, l_opt/s),
            default 10.
    """

    max_isometric_force: Float[Array, " muscles"]
    optimal_fiber_length: Float[Array, " muscles"]
    tendon_slack_length: Float[Array, " muscles"]
    pennation_angle: Float[Array, " muscles"]
    max_contraction_velocity: Float[Array, " muscles"]

    def __init__(
        self,
        max_isometric_force: ArrayLike,
        optimal_fiber_length: ArrayLike,
        tendon_slack_length: ArrayLike,
        pennation_angle: ArrayLike = 0.0,
        max_contraction_velocity: ArrayLike = 10.0,
    ):
        names = ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length",
                 "pennation_angle", "max_contraction_velocity")
        values = [as_float_array(v) for v in (max_isometric_force, optimal_fiber_length,
                                               tendon_slack_length, pennation_angle,
                                               max_contraction_velocity)]
        for name, v in zip(names, values):
            if v.ndim > 1:
                raise ValueError(
                    f"MuscleParameters.{name} has shape {v.shape}; each field must be a scalar or "
                    "a 1-D array over muscles. Stack muscles along one axis and use jax.vmap for "
                    "batches of parameter sets."
                )
        try:
            shape = jnp.broadcast_shapes(*(v.shape for v in values))
        except ValueError:
            shapes = ", ".join(f"{n}={v.shape}" for n, v in zip(names, values))
            raise ValueError(
                f"MuscleParameters fields disagree on the number of muscles ({shapes}); give "
                "every per-muscle field the same length or a scalar."
            ) from None
        shape = shape if shape != () else (1,)
        dtype = jnp.result_type(*values)
        values = [jnp.broadcast_to(v.astype(dtype), shape) for v in values]
        for i in range(3):
            values[i] = check_positive(f"MuscleParameters.{names[i]}", values[i])
        values[4] = check_positive(f"MuscleParameters.{names[4]}", values[4])
        values[3] = check_finite("MuscleParameters.pennation_angle", values[3])
        pen = values[3]
        msg = ("MuscleParameters.pennation_angle must lie in [0, π/2) rad; convert degrees "
               "with numpy.deg2rad.")
        if is_concrete(pen):
            bad = ~((np.asarray(pen) >= 0) & (np.asarray(pen) < math.pi / 2))
            if bad.any():
                raise ValueError(f"{msg} Got {np.asarray(pen)[bad].tolist()[:5]}.")
        else:
            values[3] = eqx.error_if(pen, (pen < 0) | (pen >= math.pi / 2), msg)
        (self.max_isometric_force, self.optimal_fiber_length, self.tendon_slack_length,
         self.pennation_angle, self.max_contraction_velocity) = values

    @property
    def n_muscles(self) -> int:
        """Number of muscles (length of the leading axis)."""
        return self.max_isometric_force.shape[-1]

    @property
    def fiber_width(self) -> Array:
        """Constant fibre width w = l_opt·sin α_opt (m)."""
        return self.optimal_fiber_length * jnp.sin(self.pennation_angle)

    @property
    def max_fiber_velocity(self) -> Array:
        """Maximum contraction velocity in m/s, v_max·l_opt."""
        return self.max_contraction_velocity * self.optimal_fiber_length


class MuscleState(eqx.Module):
    """Everything a muscle–tendon unit computes at one instant, per muscle (SI units)."""

    fiber_length: Array  # m
    norm_fiber_length: Array  # ÷ l_opt
    fiber_velocity: Array  # m/s, negative = shortening
    norm_fiber_velocity: Array  # ÷ (v_max·l_opt)
    pennation_angle: Array  # rad
    cos_pennation: Array
    tendon_length: Array  # m
    norm_tendon_length: Array  # ÷ l_ts
    tendon_velocity: Array  # m/s
    active_force_length: Array  # f_act
    passive_force_length: Array  # f_pas
    force_velocity: Array  # f_v
    fiber_force: Array  # N, along the fibre
    active_fiber_force: Array  # N
    passive_fiber_force: Array  # N (elastic + damping)
    tendon_force: Array  # N
    norm_tendon_force: Array  # ÷ F_max


class Equilibrium(eqx.Module):
    """Static equilibrium of muscle–tendon units (`DeGrooteFregly2016Muscle.equilibrium`).

    Attributes (per muscle):
        fiber_length: l_M (m).
        pennation_angle: α (rad).
        tendon_force: F_T (N).
        norm_tendon_force: f̃T = F_T / F_max.
        fiber_velocity: fibre velocity (m/s) implied by the MTU velocity with a tendon of
            constant length (OpenSim's initialisation assumption).
        bracketed: False where no root lies in f̃T ∈ [0, 5] (OpenSim raises there); the
            returned force is then the bracket end nearest to a root (0 for slack units).
        iterations: Newton/bisection iterations the solve took (same for all muscles).
    """

    fiber_length: Array
    pennation_angle: Array
    tendon_force: Array
    norm_tendon_force: Array
    fiber_velocity: Array
    bracketed: Bool[Array, " muscles"]
    iterations: Int[Array, ""]


class DeGrooteFregly2016Muscle(AbstractMuscle):
    """De Groote–Fregly 2016 muscle–tendon units (OpenSim 4.x `DeGrooteFregly2016Muscle`).

    Forces: F_fibre = F_max·(a·f_act(l̃M)·f_v(ṽM) + f_pas(l̃M) + β·ṽM); F_T = F_fibre·cos α
    in equilibrium; constant-width pennation l_M·sin α = l_opt·sin α_opt.

    Args:
        params: `MuscleParameters` with a leading muscle axis.
        tendon: "compliant" (state: normalised tendon force f̃T, see
            `norm_tendon_force_derivative`) or "rigid" (tendon length ≡ l_ts).
        curves: `DeGrooteCurves` constants; `DeGrooteCurves.opensim()` by default.
        fiber_damping: β, normalised fibre damping (≥ 0, scalar or per muscle), default 0.
            As in OpenSim's explicit compliant mode, damping enters the fibre and
            rigid-tendon forces and the equilibrium, but not the explicit f̃T derivative.

    All methods take per-muscle arrays of shape () or (n_muscles,) (SI units), work under
    `jit`, `vmap` and `grad`, and give finite values and gradients over the physiological
    domain, including zero activation and slack tendons.
    """

    params: MuscleParameters
    fiber_damping: Float[Array, " muscles"]
    tendon: Literal["compliant", "rigid"] = eqx.field(static=True)
    curves: DeGrooteCurves = eqx.field(static=True)

    def __init__(
        self,
        params: MuscleParameters,
        tendon: Literal["compliant", "rigid"] = "compliant",
        curves: DeGrooteCurves | None = None,
        fiber_damping: ArrayLike = 0.0,
    ):
        if not isinstance(params, MuscleParameters):
            raise ValueError(
                f"params must be a jaxmsk.MuscleParameters, got {type(params).__name__}."
            )
        if tendon not in ("compliant", "rigid"):
            raise ValueError(f'tendon must be "compliant" or "rigid", got {tendon!r}.')
        if curves is None:
            curves = DeGrooteCurves.opensim()
        if not isinstance(curves, DeGrooteCurves):
            raise ValueError(
                "curves must be a jaxmsk.DeGrooteCurves (e.g. DeGrooteCurves.opensim()), got "
                f"{type(curves).__name__}."
            )
        self.params = params
        self.tendon = tendon
        self.curves = curves
        damping = check_per_muscle("fiber_damping", fiber_damping, params.n_muscles)
        damping = check_nonnegative("fiber_damping", damping)
        self.fiber_damping = jnp.broadcast_to(damping, (params.n_muscles,)).astype(
            params.max_isometric_force.dtype
        )

    @property
    def n_muscles(self) -> int:
        return self.params.n_muscles

    # -- input checks ---------------------------------------------------------------
    def _inputs(self, **kwargs) -> list[Array]:
        out = []
        for name, value in kwargs.items():
            x = check_per_muscle(name, value, self.n_muscles)
            out.append(check_finite(name, x))
        return out

    # -- geometry -------------------------------------------------------------------
    def _fiber_geometry(self, mtu_length, tendon_length):
        """Fibre length (m) and cos α from the MTU and tendon lengths (constant width)."""
        along = mtu_length - tendon_length
        w = self.params.fiber_width
        fiber_length = safe_sqrt(along**2 + w**2)
        ok = fiber_length > 0
        cos_pen = jnp.where(ok, along / jnp.where(ok, fiber_length, 1.0), 1.0)
        return fiber_length, cos_pen

    def _state(self, mtu_length, mtu_velocity, activation, norm_tendon_length,
               fiber_velocity, tendon_velocity, norm_tendon_force=None) -> MuscleState:
        p, c = self.params, self.curves
        tendon_length = p.tendon_slack_length * norm_tendon_length
        fiber_length, cos_pen = self._fiber_geometry(mtu_length, tendon_length)
        norm_fiber_length = fiber_length / p.optimal_fiber_length
        norm_fiber_velocity = fiber_velocity / p.max_fiber_velocity
        f_act = c.active_force_length(norm_fiber_length)
        f_pas = c.passive_force_length(norm_fiber_length)
        f_v = c.force_velocity(norm_fiber_velocity)
        active = p.max_isometric_force * activation * f_act * f_v
        passive = p.max_isometric_force * (f_pas + self.fiber_damping * norm_fiber_velocity)
        fiber_force = active + passive
        if norm_tendon_force is None:
            tendon_force = fiber_force * cos_pen
            norm_tendon_force = tendon_force / p.max_isometric_force
        else:
            tendon_force = p.max_isometric_force * norm_tendon_force
        sin_pen = jnp.clip(p.fiber_width / jnp.where(fiber_length > 0, fiber_length, 1.0),
                           -1.0, 1.0)
        pennation = jnp.arctan2(sin_pen, cos_pen)
        return MuscleState(
            fiber_length=fiber_length, norm_fiber_length=norm_fiber_length,
            fiber_velocity=fiber_velocity, norm_fiber_velocity=norm_fiber_velocity,
            pennation_angle=pennation, cos_pennation=cos_pen, tendon_length=tendon_length,
            norm_tendon_length=norm_tendon_length, tendon_velocity=tendon_velocity,
            active_force_length=f_act, passive_force_length=f_pas, force_velocity=f_v,
            fiber_force=fiber_force, active_fiber_force=active, passive_fiber_force=passive,
            tendon_force=tendon_force, norm_tendon_force=norm_tendon_force,
        )

    # -- rigid tendon ---------------------------------------------------------------
    def rigid_tendon_state(self, mtu_length: ArrayLike, mtu_velocity: ArrayLike,
                           activation: ArrayLike) -> MuscleState:
        """Fibre kinematics and forces with an inextensible tendon (l_T ≡ l_ts).

        Args:
            mtu_length: muscle–tendon length l_MT (m).
            mtu_velocity: lengthening velocity of the MTU (m/s).
            activation: a ∈ [0, 1].
        Returns a `MuscleState`; fibre velocity is v_MT·cos α (OpenSim).
        """
        lmt, vmt, a = self._inputs(mtu_length=mtu_length, mtu_velocity=mtu_velocity,
                                   activation=activation)
        return self._rigid_state(lmt, vmt, a)

    def _rigid_state(self, lmt, vmt, a):
        one = jnp.ones_like(self.params.tendon_slack_length)
        _, cos_pen = self._fiber_geometry(lmt, self.params.tendon_slack_length)
        return self._state(lmt, vmt, a, one, vmt * cos_pen, jnp.zeros_like(one) * vmt)

    # -- compliant tendon -----------------------------------------------------------
    def compliant_tendon_state(self, mtu_length: ArrayLike, mtu_velocity: ArrayLike,
                               activation: ArrayLike, norm_tendon_force: ArrayLike) -> MuscleState:
        """Fibre kinematics and forces of the explicit compliant-tendon model.

        Given the state f̃T: l̃T = f_T⁻¹(f̃T), fibre length from the geometry, then the
        force–velocity multiplier f_v = (f̃T/cos α − f_pas)/(a·f_act) is inverted for the
        fibre velocity, and v_T = v_MT − v_M/cos α.

        Guards (departures from OpenSim, which divides by zero): a·f_act is floored at
        1e-8, cos α at 1e-6, and f_v is clipped to the multipliers of ṽM = ±10 before
        inversion, so at zero activation the fibre velocity saturates at ±10·v_max
        instead of becoming infinite; values and gradients stay finite.
        """
        lmt, vmt, a, ft = self._inputs(mtu_length=mtu_length, mtu_velocity=mtu_velocity,
                                       activation=activation, norm_tendon_force=norm_tendon_force)
        return self._compliant_state(lmt, vmt, a, ft)

    def _compliant_state(self, lmt, vmt, a, ft):
        p, c = self.params, self.curves
        norm_tendon_length = c.tendon_force_length_inverse(ft)
        fiber_length, cos_pen = self._fiber_geometry(
            lmt, p.tendon_slack_length * norm_tendon_length)
        norm_fiber_length = fiber_length / p.optimal_fiber_length
        f_act = c.active_force_length(norm_fiber_length)
        f_pas = c.passive_force_length(norm_fiber_length)
        cos_safe = jnp.maximum(cos_pen, _MIN_COS_PENNATION)
        active = jnp.maximum(a * f_act, _MIN_ACTIVE_FORCE)
        f_v = (ft / cos_safe - f_pas) / active
        f_v_lo = c._py_fv(-_MAX_NORM_FIBER_VELOCITY)
        f_v_hi = c._py_fv(_MAX_NORM_FIBER_VELOCITY)
        norm_fiber_velocity = c.force_velocity_inverse(jnp.clip(f_v, f_v_lo, f_v_hi))
        fiber_velocity = norm_fiber_velocity * p.max_fiber_velocity
        tendon_velocity = vmt - fiber_velocity / cos_safe
        return self._state(lmt, vmt, a, norm_tendon_length, fiber_velocity, tendon_velocity,
                           norm_tendon_force=ft)

    def norm_tendon_force_derivative(self, mtu_length: ArrayLike, mtu_velocity: ArrayLike,
                                     activation: ArrayLike, norm_tendon_force: ArrayLike) -> Array:
        """d f̃T/dt (1/s) of the explicit compliant-tendon model (OpenSim's state derivative).

        d f̃T/dt = (v_T / l_ts)·f_T'(l̃T), with v_T from `compliant_tendon_state`.
        """
        lmt, vmt, a, ft = self._inputs(mtu_length=mtu_length, mtu_velocity=mtu_velocity,
                                       activation=activation, norm_tendon_force=norm_tendon_force)
        return self._norm_tendon_force_derivative(lmt, vmt, a, ft)

    def _norm_tendon_force_derivative(self, lmt, vmt, a, ft):
        return self._compliant_state_and_derivative(lmt, vmt, a, ft)[1]

    def _compliant_state_and_derivative(self, lmt, vmt, a, ft):
        """(`MuscleState`, d f̃T/dt) of the explicit compliant-tendon model, in one pass."""
        s = self._compliant_state(lmt, vmt, a, ft)
        # f_T'(l̃T) = c1·kT·exp(kT(l̃T − c2)) = kT·(f̃T + c3) at l̃T = f_T⁻¹(f̃T): the same
        # value without the exponential (floored where the inverse floors its logarithm).
        c = self.curves
        stiffness = c.kt * jnp.maximum(ft + c.c3, c.c1 * LOG_FLOOR)
        return s, s.tendon_velocity / self.params.tendon_slack_length * stiffness

    # -- the Model's interface (AbstractMuscle) -------------------------------------
    def mtu_forces(self, mtu_length, mtu_velocity, activation, norm_tendon_force=None):
        """`MTUForces` for a Model: the compliant state's forces and d f̃T/dt, or the
        rigid-tendon forces (`norm_tendon_force` ignored). Inputs are not re-checked."""
        if self.tendon == "compliant":
            s, ft_dot = self._compliant_state_and_derivative(mtu_length, mtu_velocity,
                                                             activation, norm_tendon_force)
        else:
            s, ft_dot = self._rigid_state(mtu_length, mtu_velocity, activation), None
        return MTUForces(tendon_force=s.tendon_force, fiber_length=s.fiber_length,
                         norm_tendon_force=s.norm_tendon_force, norm_tendon_force_dot=ft_dot)

    def initial_norm_tendon_force(self, mtu_length, activation, mtu_velocity):
        """f̃T in static equilibrium (`equilibrium`), for compliant tendons."""
        return self.equilibrium(mtu_length, activation, mtu_velocity).norm_tendon_force

    # -- either tendon --------------------------------------------------------------
    def tendon_force(self, mtu_length: ArrayLike, mtu_velocity: ArrayLike, activation: ArrayLike,
                     norm_tendon_force: ArrayLike | None = None) -> Array:
        """Tendon force F_T (N): F_max·f̃T (compliant, state given) or F_fibre·cos α (rigid)."""
        if self.tendon == "rigid":
            return self.rigid_tendon_state(mtu_length, mtu_velocity, activation).tendon_force
        if norm_tendon_force is None:
            raise ValueError(
                "tendon_force of a compliant-tendon muscle needs norm_tendon_force (the state); "
                "use equilibrium(...) to obtain it at rest."
            )
        ft = check_finite("norm_tendon_force",
                          check_per_muscle("norm_tendon_force", norm_tendon_force, self.n_muscles))
        return self.params.max_isometric_force * ft

    # -- static equilibrium ---------------------------------------------------------
    def equilibrium_residual(self, mtu_length: ArrayLike, activation: ArrayLike,
                             norm_tendon_force: ArrayLike, mtu_velocity: ArrayLike = 0.0) -> Array:
        """OpenSim's equilibrium residual, normalised: f̃T − F_fibre·cos α / F_max.

        Fibre velocity is v_MT·cos α (the tendon's length held constant), as in OpenSim's
        `computeInitialFiberEquilibrium`.
        """
        lmt, vmt, a, ft = self._inputs(mtu_length=mtu_length, mtu_velocity=mtu_velocity,
                                       activation=activation, norm_tendon_force=norm_tendon_force)
        return _residual(self, ft, lmt, vmt, a)

    def equilibrium(self, mtu_length: ArrayLike, activation: ArrayLike,
                    mtu_velocity: ArrayLike = 0.0) -> Equilibrium:
        """Static equilibrium as OpenSim's `Model::equilibrateMuscles` computes it.

        Compliant tendon: the root f̃T ∈ [0, 5] of `equilibrium_residual` (tendon velocity
        zero), found by a bracketed Newton iteration (bisection fallback) to machine
        precision. Its derivatives come from the implicit function theorem
        (∂f̃T/∂θ = −R_θ/R_f̃T), never from differentiating the iteration. Rigid tendon: the
        fibre length follows from the geometry and no solve is needed.

        Args:
            mtu_length: l_MT (m), shape () or (n_muscles,).
            activation: a ∈ [0, 1].
            mtu_velocity: MTU lengthening velocity (m/s), default 0.
        Returns:
            `Equilibrium` with fiber_length (m), pennation_angle (rad), tendon_force (N),
            norm_tendon_force, fiber_velocity (m/s), bracketed, iterations.
        """
        lmt, vmt, a = self._inputs(mtu_length=mtu_length, mtu_velocity=mtu_velocity,
                                   activation=activation)
        shape = (self.n_muscles,)
        lmt, vmt, a = (jnp.broadcast_to(x, shape) for x in (lmt, vmt, a))
        if self.tendon == "rigid":
            s = self._rigid_state(lmt, vmt, a)
            return Equilibrium(
                fiber_length=s.fiber_length, pennation_angle=s.pennation_angle,
                tendon_force=s.tendon_force, norm_tendon_force=s.norm_tendon_force,
                fiber_velocity=s.fiber_velocity, bracketed=jnp.ones(shape, bool),
                iterations=jnp.zeros((), jnp.int32),
            )
        return _compliant_equilibrium(self, lmt, vmt, a)


# ---------------------------------------------------------------------------------------
# Equilibrium solve: bracketed Newton + implicit-function-theorem derivatives.
# ---------------------------------------------------------------------------------------
def _residual(muscle: DeGrooteFregly2016Muscle, ft, lmt, vmt, a):
    """Normalised equilibrium residual f̃T − F_fibre·cos α/F_max (tendon velocity 0)."""
    p, c = muscle.params, muscle.curves
    norm_tendon_length = c.tendon_force_length_inverse(ft)
    fiber_length, cos_pen = muscle._fiber_geometry(lmt, p.tendon_slack_length * norm_tendon_length)
    norm_fiber_length = fiber_length / p.optimal_fiber_length
    norm_fiber_velocity = vmt * cos_pen / p.max_fiber_velocity
    fiber = (a * c.active_force_length(norm_fiber_length) * c.force_velocity(norm_fiber_velocity)
             + c.passive_force_length(norm_fiber_length)
             + muscle.fiber_damping * norm_fiber_velocity)
    return ft - fiber * cos_pen


def _residual_and_slope(muscle, ft, lmt, vmt, a):
    return jax.jvp(lambda x: _residual(muscle, x, lmt, vmt, a), (ft,), (jnp.ones_like(ft),))


def _bracketed_newton(muscle, lmt, vmt, a):
    """Elementwise safeguarded Newton (Numerical Recipes' rtsafe idea) on [0, 5].

    Keeps a sign-change bracket [lo, hi] with R(lo) ≤ 0 ≤ R(hi); a Newton step that leaves
    the bracket or fails to halve the step is replaced by bisection. Stops when every
    muscle's Newton step is below 64 ulps of f̃T (relative 1.4e-14 in float64; typically
    5–7 iterations), at most 64 iterations (bisection alone needs 56 in float64).
    """
    dtype = lmt.dtype
    eps = jnp.finfo(dtype).eps
    lo = jnp.full_like(lmt, MIN_NORM_TENDON_FORCE)
    hi = jnp.full_like(lmt, MAX_NORM_TENDON_FORCE)
    r_lo = _residual(muscle, lo, lmt, vmt, a)
    r_hi = _residual(muscle, hi, lmt, vmt, a)
    bracketed = (r_lo <= 0) & (r_hi >= 0)
    # Initial guess: the rigid-tendon force, clipped into the bracket.
    guess = jnp.clip(-_residual(muscle, jnp.zeros_like(lmt), lmt, vmt, a), lo, hi)
    x0 = jnp.where(bracketed, guess, jnp.where(r_lo > 0, lo, hi))
    r0, dr0 = _residual_and_slope(muscle, x0, lmt, vmt, a)
    step0 = hi - lo

    def cond(carry):
        i, _, _, _, _, _, _, done = carry
        return (i < _MAX_NEWTON_ITERATIONS) & ~jnp.all(done)

    def body(carry):
        i, x, r, dr, lo, hi, step_prev, done = carry
        lo = jnp.where(r < 0, x, lo)
        hi = jnp.where(r > 0, x, hi)
        newton_ok = dr > 0
        x_newton = x - r / jnp.where(newton_ok, dr, 1.0)
        inside = newton_ok & (x_newton > lo) & (x_newton < hi)
        fast = jnp.abs(x_newton - x) < 0.5 * step_prev
        use_newton = inside & fast
        x_new = jnp.where(use_newton, x_newton, 0.5 * (lo + hi))
        x_new = jnp.where(done, x, x_new)
        step = jnp.abs(x_new - x)
        r_new, dr_new = _residual_and_slope(muscle, x_new, lmt, vmt, a)
        # Converged when the next Newton step would be below 64 ulps of f̃T (residual
        # round-off is ~10 ulps), or the step or the bracket is that small already.
        tol = 64 * eps * jnp.maximum(1.0, jnp.abs(x_new))
        done_new = (done | (step <= tol) | (jnp.abs(r_new) <= tol * jnp.abs(dr_new))
                    | (hi - lo <= tol))
        return i + 1, x_new, r_new, dr_new, lo, hi, jnp.where(done, step_prev, step), done_new

    done0 = ~bracketed | (r0 == 0)
    carry = (jnp.zeros((), jnp.int32), x0, r0, dr0, lo, hi, step0, done0)
    i, x, *_ = jax.lax.while_loop(cond, body, carry)
    return x, bracketed, i


@jax.custom_jvp
def _solve_equilibrium(muscle, lmt, vmt, a):
    """(f̃T, bracketed, iterations); derivatives of f̃T by the implicit function theorem."""
    return _bracketed_newton(muscle, lmt, vmt, a)


@_solve_equilibrium.defjvp
def _solve_equilibrium_jvp(primals, tangents):
    muscle, lmt, vmt, a = primals
    x, bracketed, iters = _bracketed_newton(muscle, lmt, vmt, a)
    _, slope = _residual_and_slope(muscle, x, lmt, vmt, a)
    # R_θ·θ̇ at the root, then ẋ = −R_θ·θ̇ / R_x.
    _, dr = jax.jvp(lambda m, l, v, act: _residual(m, x, l, v, act), primals, tangents)
    ok = bracketed & (jnp.abs(slope) > 0)
    dx = jnp.where(ok, -dr / jnp.where(ok, slope, 1.0), 0.0)
    zero = lambda y: np.zeros(y.shape, dtype=jax.dtypes.float0)  # noqa: E731
    return (x, bracketed, iters), (dx, zero(bracketed), zero(iters))


@eqx.filter_jit  # compiled once per structure, also when called eagerly
def _compliant_equilibrium(muscle, lmt, vmt, a) -> Equilibrium:
    ft, bracketed, iters = _solve_equilibrium(muscle, lmt, vmt, a)
    p = muscle.params
    norm_tendon_length = muscle.curves.tendon_force_length_inverse(ft)
    fiber_length, cos_pen = muscle._fiber_geometry(lmt, p.tendon_slack_length * norm_tendon_length)
    sin_pen = p.fiber_width / jnp.where(fiber_length > 0, fiber_length, 1.0)
    return Equilibrium(
        fiber_length=fiber_length,
        pennation_angle=jnp.arctan2(jnp.clip(sin_pen, -1.0, 1.0), cos_pen),
        tendon_force=p.max_isometric_force * ft,
        norm_tendon_force=ft,
        fiber_velocity=vmt * cos_pen,
        bracketed=bracketed,
        iterations=iters,
    )


__all__ = ["MuscleParameters", "DeGrooteFregly2016Muscle", "Equilibrium", "MuscleState"]
