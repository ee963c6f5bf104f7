"""Physics residuals for physics-informed learning: pure, element-wise and unreduced.

A network that maps EMG to joint angles q(t) and muscle forces F(t) is trained with the
equation of motion as a soft constraint (Zhang et al., IEEE TIM 72:2500811, 2022;
see docs/learning.md). The functions here return the residual of every equation at every
interior sample, made dimensionless; the caller squares, weights and reduces them,
e.g. ``jnp.mean(equation_of_motion_residual(...) ** 2)``.

Time series have time along axis 0 and are sampled uniformly every ``dt`` seconds. Velocities
and accelerations come from second-order central differences, so residuals exist at the
interior samples only: row k of every residual belongs to sample k + 1 of the input
(time ``t[1:-1]``), and a sequence of T samples gives T − 2 rows. The residuals of the exact
solution of the model therefore shrink as O(dt²), which the tests check.

Write for one sequence and `jax.vmap` over a batch of sequences.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_float_array, check_finite, check_positive
from .._model import Model
from ..muscle._degroote_activation import DeGrooteActivation


# ---------------------------------------------------------------------------------------
# Input checks (shapes raise at trace time; values use the two-tier checks of jaxmsk._checks)
# ---------------------------------------------------------------------------------------
def _series(name: str, x: ArrayLike, n: int, what: str, fn: str) -> Array:
    """`x` as a float (T, n) array with T >= 3, else a ValueError naming it and the fix."""
    x = as_float_array(x)
    if x.ndim != 2 or x.shape[1] != n:
        hint = (" For a batch of sequences, write for one sequence and use jax.vmap."
                if x.ndim == 3 else "")
        raise ValueError(
            f"{fn}: {name} has shape {x.shape}; expected (time, {what}) = (T, {n}), time "
            f"along axis 0 and one column per {what[:-1]} in model order.{hint}"
        )
    if x.shape[0] < 3:
        raise ValueError(
            f"{fn}: {name} has {x.shape[0]} sample(s); central differences need at least 3 "
            "(T >= 3), and the residual has T − 2 rows. Pass a longer sequence."
        )
    return x


def _same_length(fn: str, **series: Array) -> None:
    lengths = {k: v.shape[0] for k, v in series.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"{fn}: the time series have different lengths {lengths}; sample them on the same "
            "time grid (same dt, same start) before calling."
        )


def _step(dt: ArrayLike) -> Array:
    dt = as_float_array(dt)
    if dt.shape != ():
        raise ValueError(
            f"dt has shape {dt.shape}; pass the sampling interval as one scalar in seconds "
            "(e.g. 1 / sampling_rate). Resample non-uniform data first."
        )
    return check_positive("dt", dt)


# ---------------------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------------------
def finite_differences(
    q: Float[ArrayLike, "time *dims"], dt: float | Float[ArrayLike, ""]  # noqa: F821, UP037
) -> tuple[Float[Array, "time-2 *dims"], Float[Array, "time-2 *dims"]]:  # noqa: F821, UP037
    """Velocity and acceleration by second-order central differences along axis 0.

        q̇_k = (q_{k+1} − q_{k−1}) / (2·dt),   q̈_k = (q_{k+1} − 2·q_k + q_{k−1}) / dt²

    Both are exact for polynomials of degree ≤ 2 and have errors dt²·q⃛/6 and dt²·q⁗/12.

    Args:
        q: (T, ...) samples along axis 0 (typically (T, n_dofs) in rad), T >= 3.
        dt: sampling interval (s), > 0.
    Returns:
        (q̇, q̈), each of shape (T − 2, ...) and **aligned with q[1:-1]**: row k belongs to
        sample k + 1. Units: those of q per s and per s².
    """
    q = as_float_array(q)
    if q.ndim < 1 or q.shape[0] < 3:
        raise ValueError(
            f"finite_differences: q has shape {q.shape}; pass at least 3 samples along axis 0 "
            "(T >= 3): central differences lose the first and the last sample."
        )
    dt = _step(dt)
    qdot = (q[2:] - q[:-2]) / (2.0 * dt)
    qddot = (q[2:] - 2.0 * q[1:-1] + q[:-2]) / dt**2
    return qdot, qddot


# ---------------------------------------------------------------------------------------
# Equation of motion
# ---------------------------------------------------------------------------------------
def muscle_moment_capacity(model: Model) -> Float[Array, " dofs"]:
    """Each DoF's muscle moment capacity Σ_j |R_jd(q_c)|·F_max,j (N·m) at the path's centre
    q_c = `model.path.centre`: the default scale of `equation_of_motion_residual`.

    A DoF that no muscle crosses (capacity 0) gets 1 N·m, so that its residual stays in N·m
    rather than dividing by zero.
    """
    _, r = model.path.length_and_moment_arms(model.path.centre)
    capacity = jnp.abs(r).T @ model.muscles.params.max_isometric_force
    return jnp.where(capacity > 0, capacity, jnp.ones_like(capacity))


def equation_of_motion_residual(
    model: Model,
    q: Float[ArrayLike, "time dofs"],
    forces: Float[ArrayLike, "time muscles"],
    dt: float | Float[ArrayLike, ""],
    *,
    scale: Float[ArrayLike, "*dofs"] | None = None,
) -> Float[Array, "time-2 dofs"]:
    """Residual of the joint equation of motion on predicted angles and muscle forces.

        r_k = [M(q_k)·q̈_k + bias(q_k, q̇_k) − Σ passive(q_k, q̇_k) − R(q_k)ᵀ·F_k] / scale

    at every interior sample k, with q̇, q̈ from `finite_differences`
    and R the moment arms of `model.path` (r = −∂l_MT/∂q). Zero for the exact motion of the
    model driven by the forces F, up to the O(dt²) error of the differences. Linear in F.

    Args:
        model: a `jaxmsk.Model` (skeleton, path and passive elements are used).
        q: (T, n_dofs) predicted coordinates (rad; m for sliders), T >= 3, sampled every dt.
        forces: (T, n_muscles) predicted tendon forces (N), in model muscle order.
        dt: sampling interval (s).
        scale: generalised-force scale (N·m), scalar or (n_dofs,), > 0. Default: each
            DoF's muscle moment capacity (`muscle_moment_capacity`). The default is treated
            as a constant: its gradient is stopped, so a loss on this residual cannot be
            lowered by inflating F_max. Pass a scale explicitly to differentiate through it.
    Returns:
        (T − 2, n_dofs) dimensionless residuals, aligned with q[1:-1] (row k ↔ sample k + 1),
        unreduced and unweighted.

    Pure; works under `jit`, `vmap` (over sequences or models) and `grad` with respect to q,
    forces and every model parameter (inertia, damping, moment-arm coefficients, ...).
    """
    fn = "equation_of_motion_residual"
    if not isinstance(model, Model):
        raise ValueError(f"{fn} needs a jaxmsk.Model, got {type(model).__name__}.")
    q = _series("q", q, model.n_dofs, "dofs", fn)
    forces = _series("forces", forces, model.n_muscles, "muscles", fn)
    _same_length(fn, q=q, forces=forces)
    if scale is None:
        scale = jax.lax.stop_gradient(muscle_moment_capacity(model))
    else:
        scale = as_float_array(scale)
        if scale.shape not in ((), (model.n_dofs,)):
            raise ValueError(
                f"{fn}: scale has shape {scale.shape}; pass a scalar or one value per DoF, "
                f"shape ({model.n_dofs},), in N·m (N for sliders)."
            )
        scale = check_positive("scale", scale)
    qdot, qddot = finite_differences(q, dt)

    def one(qk, qdotk, qddotk, fk):
        _, r = model.path.length_and_moment_arms(qk)
        passive = sum((p.moment(qk, qdotk) for p in model.passive), jnp.zeros_like(qk))
        inertial = model.skeleton.mass_matrix(qk) @ qddotk + model.skeleton.bias_forces(qk, qdotk)
        return inertial - passive - r.T @ fk

    return jax.vmap(one)(q[1:-1], qdot, qddot, forces[1:-1]) / scale


# ---------------------------------------------------------------------------------------
# Muscle-model consistency
# ---------------------------------------------------------------------------------------
def muscle_consistency_residual(
    model: Model,
    activation: Float[ArrayLike, "time muscles"],
    q: Float[ArrayLike, "time dofs"],
    forces: Float[ArrayLike, "time muscles"],
    dt: float | Float[ArrayLike, ""],
    *,
    tendon: Literal["rigid", "compliant"] = "rigid",
) -> Float[Array, "time-2 muscles"]:
    """Hill force implied by activation and kinematics, minus the predicted force, ÷ F_max.

        r_kj = [F_Hill,j(a_kj, l_MT,j(q_k), v_MT,j) − F_kj] / F_max,j,   v_MT = −R(q_k)·q̇_k

    at every interior sample k, with q̇ from `finite_differences`, and F_Hill the De
    Groote–Fregly 2016 tendon force of `model.muscles` (pennation and fibre damping
    included). Two ways to close the tendon:

    - ``tendon="rigid"`` (default): the tendon is held at its slack length, fibre velocity
      v_MT·cos α, whatever the model's tendon setting. F_Hill is then an algebraic function
      of (a, q, q̇), and only q is differenced in time, so noise in predicted forces is not
      amplified. For a compliant-tendon model this is an approximation whose error grows
      with tendon compliance, with the ratio l_ts/l_opt (the stretched tendon shortens the
      fibre; the tendon takes up part of the MTU velocity) and with how fast the force
      changes: on the true solution of the built-in wrist (l_ts/l_opt 2.2–4.8, forces
      0.05–0.3 F_max varying at 1.5 Hz) it reaches 0.24 (RMS 0.08), see tests/test_physics.py.
    - ``tendon="compliant"``: the tendon length follows from the predicted force through the
      inverse tendon force–length curve, l_T = l_ts·f_T⁻¹(F/F_max); the fibre length from
      the constant-width geometry; the fibre velocity from central differences of that
      fibre length. On the true solution of a compliant-tendon model this residual is zero
      up to the O(dt²) difference error. It differences the predicted forces in time
      (through l_T), so it amplifies their noise by ~1/(dt·v_max); predicted forces below
      −c3·F_max (−0.2·F_max for OpenSim's curve) are outside the curve's domain (the
      inverse is floored there, finite but meaningless).

    Args:
        model: a `jaxmsk.Model` (muscles and path are used).
        activation: (T, n_muscles) muscle activations in [0, 1] (e.g. `emg_to_activation`).
        q: (T, n_dofs) coordinates (rad), sampled every dt; T >= 3.
        forces: (T, n_muscles) predicted tendon forces (N), in model muscle order.
        dt: sampling interval (s).
        tendon: "rigid" or "compliant" (static), see above.
    Returns:
        (T − 2, n_muscles) dimensionless residuals, aligned with the inputs' rows 1..T−2
        (row k ↔ sample k + 1), unreduced. Differentiable in every argument and in the
        muscle parameters (including F_max, which enters both the Hill force and the
        normalisation).
    """
    fn = "muscle_consistency_residual"
    if not isinstance(model, Model):
        raise ValueError(f"{fn} needs a jaxmsk.Model, got {type(model).__name__}.")
    activation = _series("activation", activation, model.n_muscles, "muscles", fn)
    q = _series("q", q, model.n_dofs, "dofs", fn)
    forces = _series("forces", forces, model.n_muscles, "muscles", fn)
    _same_length(fn, activation=activation, q=q, forces=forces)
    if tendon not in ("rigid", "compliant"):
        raise ValueError(f'{fn}: tendon must be "rigid" or "compliant", got {tendon!r}.')
    qdot, _ = finite_differences(q, dt)
    muscles = model.muscles
    p = muscles.params
    fmax = p.max_isometric_force
    lmt_all, r_all = jax.vmap(model.path.length_and_moment_arms)(q)
    lmt = lmt_all[1:-1]
    vmt = jnp.einsum("tmd,td->tm", -r_all[1:-1], qdot)
    a = activation[1:-1]
    if tendon == "rigid":
        hill = jax.vmap(muscles._rigid_state)(lmt, vmt, a).tendon_force
    else:
        norm_tendon_length = muscles.curves.tendon_force_length_inverse(forces / fmax)
        tendon_length = p.tendon_slack_length * norm_tendon_length
        fiber_length, _ = jax.vmap(muscles._fiber_geometry)(lmt_all, tendon_length)
        tendon_velocity, _ = finite_differences(tendon_length, dt)
        fiber_velocity, _ = finite_differences(fiber_length, dt)
        # `_state` recomputes the fibre length and pennation from (l_MT, l̃T) and, with no
        # tendon force given, returns the Hill force F_fibre·cos α along the tendon.
        hill = jax.vmap(muscles._state)(lmt, vmt, a, norm_tendon_length[1:-1],
                                        fiber_velocity, tendon_velocity).tendon_force
    return (hill - forces[1:-1]) / fmax


# ---------------------------------------------------------------------------------------
# EMG → activation
# ---------------------------------------------------------------------------------------
def emg_to_activation(
    envelope: Float[ArrayLike, "time muscles"],
    fs: float | Float[ArrayLike, ""],
    *,
    tau_act: float | Float[ArrayLike, "*muscles"] = 0.015,
    tau_deact: float | Float[ArrayLike, "*muscles"] = 0.060,
    smoothing: float | Float[ArrayLike, "*muscles"] = 0.1,
    activation0: Float[ArrayLike, "*muscles"] | None = None,
    substeps: int = 4,
) -> Float[Array, "time muscles"]:
    """Muscle activation from a processed EMG envelope by De Groote's activation dynamics.

    The envelope e(t) (high-passed, rectified, low-passed, normalised to MVC, so ≈ [0, 1])
    is the excitation of the first-order dynamics of `jaxmsk.DeGrooteActivation`
    (De Groote et al. 2016, as in OpenSim):

        da/dt = [(f + ½)/(τ_act·z) + (½ − f)·z/τ_deact]·(e − a),
        f = ½·tanh(b·(e − a)),  z = ½ + 3/2·a,

    integrated with `lax.scan` over samples. Between samples e is interpolated linearly (as
    `jaxmsk.simulate` does with excitations); each sample interval is integrated with
    `substeps` steps of the classical fourth-order Runge–Kutta method, so the result
    matches `simulate`'s activation for the same excitation (global error
    O((dt/substeps)⁴): after a step 0 → 0.5, the worst case, 3e-8 at 1 kHz and 8e-6 at
    100 Hz with the default 4 substeps; 1e-11 on a smooth 1 kHz envelope). The fastest rate of
    the dynamics is ≈ 1.1/(τ_act·z_min) = 2.2/τ_act (a = 0, rising), so RK4 is stable while
    dt/substeps < 2.78·τ_act/2.2, i.e. above ≈ 26 Hz with the defaults.

    An alternative with a different model is `jaxmsk.CEINMSActivation` (Lloyd & Besier's
    second-order recursive filter with electromechanical delay and the exponential
    non-linearity), the EMG→activation model of CEINMS.

    Args:
        envelope: (T, n_muscles) processed EMG envelope (T >= 1), finite. Values are used as
            given (clip to [0, 1] beforehand if the MVC normalisation overshoots).
        fs: sampling rate of the envelope (Hz), > 0.
        tau_act, tau_deact: activation and deactivation time constants (s), scalars or per
            muscle (n_muscles,); τ_act < τ_deact makes activation rise faster than it falls.
        smoothing: b, steepness of the tanh switch between them (0.1 in OpenSim).
        activation0: activation at the first sample, scalar or (n_muscles,); default
            envelope[0] (steady state, as `simulate` starts).
        substeps: RK4 steps per sample interval (static int >= 1).
    Returns:
        (T, n_muscles) activations; row 0 is `activation0`. Differentiable with respect to
        the envelope, the time constants and the initial activation; jit/vmap-able.
    """
    fn = "emg_to_activation"
    envelope = as_float_array(envelope)
    if envelope.ndim != 2 or envelope.shape[0] < 1:
        raise ValueError(
            f"{fn}: envelope has shape {envelope.shape}; expected (time, muscles) with time "
            "along axis 0 and one column per muscle. For a batch of trials use jax.vmap."
        )
    if not isinstance(substeps, int) or isinstance(substeps, bool) or substeps < 1:
        raise ValueError(f"{fn}: substeps must be a Python int >= 1, got {substeps!r}.")
    envelope = check_finite("envelope", envelope)
    fs = as_float_array(fs)
    if fs.shape != ():
        raise ValueError(f"{fn}: fs has shape {fs.shape}; pass the sampling rate as one scalar "
                         "(Hz).")
    fs = check_positive("fs", fs)
    n = envelope.shape[1]
    dyn = DeGrooteActivation(tau_act=tau_act, tau_deact=tau_deact, smoothing=smoothing)
    for name, v in (("tau_act", dyn.tau_act), ("tau_deact", dyn.tau_deact),
                    ("smoothing", dyn.smoothing)):
        if v.shape not in ((), (n,)):
            raise ValueError(f"{fn}: {name} has shape {v.shape}; pass a scalar or one value per "
                             f"muscle, shape ({n},).")
    if activation0 is None:
        a0 = envelope[0]
    else:
        a0 = as_float_array(activation0)
        if a0.shape not in ((), (n,)):
            raise ValueError(f"{fn}: activation0 has shape {a0.shape}; pass a scalar or shape "
                             f"({n},).")
        a0 = jnp.broadcast_to(check_finite("activation0", a0), (n,))
    dtype = jnp.result_type(envelope, a0, fs, dyn.tau_act)
    envelope, a0 = envelope.astype(dtype), a0.astype(dtype)
    h = (1.0 / fs).astype(dtype) / substeps

    def interval(a, ends):
        e0, e1 = ends
        de = (e1 - e0) / substeps

        def rk4(i, a):
            lo = e0 + i * de
            mid, hi = lo + 0.5 * de, lo + de
            k1 = dyn.derivative(lo, a)
            k2 = dyn.derivative(mid, a + 0.5 * h * k1)
            k3 = dyn.derivative(mid, a + 0.5 * h * k2)
            k4 = dyn.derivative(hi, a + h * k3)
            return a + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

        a = jax.lax.fori_loop(0, substeps, rk4, a, unroll=True)
        return a, a

    _, rest = jax.lax.scan(interval, a0, (envelope[:-1], envelope[1:]))
    return jnp.concatenate([a0[None], rest], axis=0)


__all__ = [
    "finite_differences",
    "equation_of_motion_residual",
    "muscle_consistency_residual",
    "muscle_moment_capacity",
    "emg_to_activation",
]
