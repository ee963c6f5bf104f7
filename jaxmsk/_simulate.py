"""simulate(): forward dynamics of a `Model` with diffrax, batched by `vmap`."""

from __future__ import annotations

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import as_float_array, check_finite, is_concrete
from ._model import Model, ModelState
from ._solvers import StabilizedRK3


class Trajectory(eqx.Module):
    """A simulated trajectory; time along the first axis of every array.

    Attributes:
        ts: (time,) s.
        q, qdot: (time, dofs) rad and rad/s (m, m/s for sliders).
        activation: (time, muscles).
        norm_tendon_force: (time, muscles) f̃T.
        tendon_force: (time, muscles) N.
        fiber_length: (time, muscles) m.
        mtu_length: (time, muscles) m.
        moments: (time, dofs) muscle joint moments Rᵀ·F_T (N·m).
        result: diffrax's result code (`diffrax.RESULTS.successful` when all went well;
            otherwise why the solver stopped, e.g. `max_steps_reached`).
        stats: solver statistics (number of steps, ...).
        time_reached: () s, the last output time whose state the solver reached (ts[-1]
            when it finished); after it the saved states are not finite.
        path_domain_excursion: (dofs,) rad (m for sliders) by which q went beyond the box the
            muscle paths were fitted over (`model.path.domain`), 0 where it stayed inside or
            the path records no domain. Outside the box the path polynomial extrapolates:
            lengths and moment arms, and so the whole trajectory, may be wrong. `simulate`
            warns when it is called outside `jit`; widen the box with
            `load_osim(..., ranges=...)`.
    """

    ts: Array
    q: Array
    qdot: Array
    activation: Array
    norm_tendon_force: Array
    tendon_force: Array
    fiber_length: Array
    mtu_length: Array
    moments: Array
    result: diffrax.RESULTS
    stats: dict
    path_domain_excursion: Array
    time_reached: Array | None = None


# Newton (chord) iterations of the implicit solver stop at this multiple of the step
# tolerances. With diffrax's default (the step tolerances themselves) the chord iteration
# is often judged divergent on muscle models and the step rejected: arm26 at rtol 1e-6 took
# 1816 steps (853 rejected) and 6.9 s; at 1000× it takes 323 steps (60 rejected) and 1.3 s,
# and the trajectory still agrees with a 1e-10-accurate one to 2e-6 rad (2-core CPU).
_ROOT_TOL_FACTOR = 1e3


def default_solver(rtol: float = 1e-6, atol: float = 1e-8) -> diffrax.AbstractSolver:
    """Kvaerno5 (an L-stable ESDIRK method, safe for stiff tendons and fast activation) with
    its chord iterations stopped at 1000× the step tolerances."""
    return diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=_ROOT_TOL_FACTOR * rtol,
                                                          atol=_ROOT_TOL_FACTOR * atol))


def _solver(solver, rtol, atol) -> diffrax.AbstractSolver:
    if solver is None or (isinstance(solver, str) and solver == "stiff"):
        return default_solver(rtol, atol)
    if isinstance(solver, str):
        if solver == "explicit":
            return diffrax.Tsit5()
        if solver in ("stabilized", "stabilised"):
            return StabilizedRK3()
        raise ValueError(f"solver={solver!r}: use 'stiff' (the default), 'explicit' (Tsit5), "
                         "'stabilized' (StabilizedRK3) or a diffrax solver instance.")
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be 'stiff', 'explicit', 'stabilized' or a diffrax "
                         f"solver, got {type(solver).__name__}.")
    return solver


def integrate(model: Model, y0: ModelState, ts: Array, excitation: Array, *, solver=None,
           rtol: float = 1e-6, atol: float = 1e-8, dt0: float | None = None,
           max_steps: int = 100_000, adjoint=None, throw: bool = True, pcoeff: float = 0.0,
           icoeff: float = 1.0) -> diffrax.Solution:
    """Integrate from a given state `y0` (no equilibrium, no input checks); states saved at
    `ts`. Shared by `simulate` and `identify` (whose multiple-shooting segments start from
    free states)."""
    interp = diffrax.LinearInterpolation(ts=ts, ys=excitation)
    span = ts[-1] - ts[0]
    term, args = diffrax.ODETerm(model.vector_field), interp
    if isinstance(adjoint, diffrax.BacksolveAdjoint):
        # BacksolveAdjoint (diffrax 0.7.2) fails on a term holding the model's pytree
        # (TypeError "_DistinctTuple is not a valid JAX type": its empty tuples), so the
        # model's arrays travel as a flat list in `args`, where the adjoint still
        # differentiates them, and the term rebuilds the model from them.
        arrays, static = eqx.partition(model, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(arrays)

        def field(t, y, a):
            m = eqx.combine(jax.tree_util.tree_unflatten(treedef, a[1]), static)
            return m.vector_field(t, y, a[0])

        term, args = diffrax.ODETerm(field), (interp, leaves)
    return diffrax.diffeqsolve(
        term, _solver(solver, rtol, atol), ts[0], ts[-1],
        dt0=span * 1e-3 if dt0 is None else dt0, y0=y0, args=args,
        saveat=diffrax.SaveAt(ts=ts),
        # Steps land on every excitation sample: the interpolated excitation has kinks there.
        stepsize_controller=diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=pcoeff, icoeff=icoeff),
            step_ts=ts),
        max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        throw=throw,
    )


def simulate(
    model: Model,
    excitation: Float[ArrayLike, "time muscles"],
    ts: Float[ArrayLike, " time"],
    *,
    q0: Float[ArrayLike, " dofs"],
    qdot0: Float[ArrayLike, " dofs"] | None = None,
    activation0: Float[ArrayLike, " muscles"] | None = None,
    solver: diffrax.AbstractSolver | str | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt0: float | None = None,
    max_steps: int = 100_000,
    adjoint: diffrax.AbstractAdjoint | None = None,
    throw: bool = False,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
) -> Trajectory:
    """Integrate a model's muscle and skeletal dynamics from static muscle equilibrium.

    Args:
        model: a `jaxmsk.Model`.
        excitation: (len(ts), n_muscles) excitations in [0, 1], linearly interpolated in time.
        ts: (time,) increasing output times (s); the simulation runs from ts[0] to ts[-1].
        q0: (n_dofs,) initial coordinates; qdot0 their velocities (default zeros).
        activation0: initial activations (default: the first excitation sample). Muscles
            start in static equilibrium at (q0, qdot0, activation0), as OpenSim's
            `equilibrateMuscles` computes it.
        solver: "stiff" (the default: `Kvaerno5`, implicit, see `default_solver`),
            "explicit" (`diffrax.Tsit5()`) or any diffrax solver. Muscle models at everyday
            tolerances are often not stiff enough to repay the implicit solve: arm26 over 1 s
            at rtol 1e-6 takes 0.21 s with Tsit5 against 1.3 s with Kvaerno5 (2-core CPU),
            and compiles in 11 s against 48 s. Stiffness grows with tendon stiffness and
            with looser tolerances; the explicit solver then takes many small steps.
            "stabilized" (`jaxmsk.StabilizedRK3`: explicit, order 3, 5 stages, stable on
            [−10.08, 0] of the real axis) suits compliant tendons, whose stiffness is real
            and moderate, at everyday tolerances (1e-3 … 1e-4). arm26 at rtol 1e-3 takes
            about 120 steps against Bosh3's 500 and is the fastest setting of the README's
            benchmark; where steps are not limited by stability (the wrist) it gains nothing.
        rtol, atol: step-size controller tolerances.
        pcoeff, icoeff: the step-size controller's proportional and integral coefficients
            (`diffrax.PIDController`'s). The default (0, 1) is the classical I controller.
            Where the step size is limited by stability rather than accuracy, as for
            arm26's stiff tendons under an explicit solver, a PI controller (pcoeff=0.4,
            icoeff=0.3) stops the accept/reject cycling: arm26 over 1 s with
            `diffrax.Bosh3()` at rtol 1e-4 took at most 499 steps against 694, and 28 %
            less time (batch 256, 2-core CPU).
        adjoint: diffrax adjoint for reverse-mode gradients; default
            `RecursiveCheckpointAdjoint()` (memory grows with the number of checkpoints, not
            with the steps taken). For long trials `RecursiveCheckpointAdjoint(checkpoints=
            100)`: 10 s of arm26 at 1 kHz in 9 MiB instead of 93, same time, same gradient
            (`benchmarks/memory.py`). `diffrax.BacksolveAdjoint()` solves the adjoint ODE
            backwards: memory independent of the length, 4–8× the time of the
            checkpointed adjoint on arm26 (1–10 s), and gradients that agree with it to the solver
            tolerance rather than exactly (the benchmark's table).
        throw: raise if the solver fails (an error raised inside the compiled solve). By
            default a solver that stops returns what it reached: `Trajectory.result` says
            why and `time_reached` how far, states after that are not finite, and a call
            outside `jit` warns (RuntimeWarning) with both.

    Returns a `Trajectory`. Works under `jit`, `vmap` (trials, subjects, parameter sets) and
    `grad` with respect to excitations and every model parameter.
    """
    if not isinstance(model, Model):
        raise ValueError(f"simulate needs a jaxmsk.Model, got {type(model).__name__}.")
    ts = check_finite("ts", as_float_array(ts))
    excitation = check_finite("excitation", as_float_array(excitation))
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least two times, got shape {ts.shape}.")
    if excitation.shape != (ts.shape[0], model.n_muscles):
        raise ValueError(
            f"excitation has shape {excitation.shape}; expected (len(ts), n_muscles) = "
            f"({ts.shape[0]}, {model.n_muscles}), one column per muscle in model order."
        )
    dtype = jnp.result_type(ts, excitation)
    ts, excitation = ts.astype(dtype), excitation.astype(dtype)
    a0 = excitation[0] if activation0 is None else activation0
    y0 = model.initial_state(jnp.asarray(q0, dtype), qdot0, a0)
    sol = integrate(model, y0, ts, excitation, solver=solver, rtol=rtol, atol=atol, dt0=dt0,
                 max_steps=max_steps, adjoint=adjoint, throw=throw, pcoeff=pcoeff, icoeff=icoeff)
    ys: ModelState = sol.ys
    out = jax.vmap(model.outputs)(ys)
    finite = jnp.all(jnp.isfinite(ys.q), axis=-1)
    excursion = path_domain_excursion(model, jnp.where(finite[:, None], ys.q, ys.q[0]))
    reached = jnp.max(jnp.where(finite, ts, ts[0]))
    if is_concrete(reached) and sol.result != diffrax.RESULTS.successful:
        warnings.warn(f"simulate: the solver stopped at t = {float(reached):.6g} s of "
                      f"{float(ts[-1]):.6g} s: {_reason(sol.result)}. The states after that "
                      "are not finite (Trajectory.result, Trajectory.time_reached). Raise "
                      "max_steps, loosen rtol/atol or try solver='stiff' / 'stabilized'.",
                      RuntimeWarning, stacklevel=2)
    if is_concrete(excursion) and bool(np.any(np.asarray(excursion) > 0)):
        beyond = {name: round(float(e), 4) for name, e in zip(
            model.coordinate_names or [f"q[{i}]" for i in range(model.n_dofs)],
            np.asarray(excursion)) if e > 0}
        box = [tuple(round(v, 3) for v in b) for b in model.path.domain]
        warnings.warn(f"simulate: the trajectory leaves the box the muscle paths were fitted "
                      f"over ({box}) by {beyond}; there the path polynomial extrapolates and "
                      "lengths, moment arms and the motion may be wrong. Fit the paths over a "
                      "wider box (load_osim(..., ranges=...)) or check the excitations "
                      "(Trajectory.path_domain_excursion).", RuntimeWarning, stacklevel=2)
    return Trajectory(
        ts=ts, q=ys.q, qdot=ys.qdot, activation=ys.activation,
        norm_tendon_force=out.norm_tendon_force, tendon_force=out.tendon_force,
        fiber_length=out.fiber_length, mtu_length=out.mtu_length, moments=out.muscle_moments,
        result=sol.result, stats=sol.stats, path_domain_excursion=excursion,
        time_reached=reached,
    )


def _reason(result) -> str:
    """The first line of diffrax's message for a result code."""
    text = str(result)
    text = text[text.find("<") + 1:text.rfind(">")] or text
    return text.splitlines()[0].rstrip(".") if text else "unknown"


def path_domain_excursion(model: Model, q: Array) -> Array:
    """(dofs,) how far the poses q (time, dofs) go beyond `model.path.domain` (0 inside or
    where the path records no domain). NaN poses (a failed solve) count as inside."""
    measure = getattr(model.path, "domain_excursion", None)
    if measure is None:
        return jnp.zeros(q.shape[-1], q.dtype)
    return measure(q)
