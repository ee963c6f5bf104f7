"""identify(): gradient-based calibration of subject-specific muscle and joint parameters.

The objective compares simulated and measured joint kinematics (and, where given, joint
moments) through the model's forward dynamics, the same `diffrax` integration as
`jaxmsk.simulate`. Long trials are cut into shooting segments whose initial states are extra
unknowns tied to the previous segment's end by continuity residuals (multiple shooting, Bock &
Plitt 1984), which keeps the fit from drowning in the sensitivity of long horizons.

Parameters are reparameterised so the optimiser works on an unbounded vector θ:
x = lo + (hi − lo)·sigmoid(θ) keeps every parameter strictly inside its bounds. The
default solver is Levenberg–Marquardt (optimistix) with a forward-mode Jacobian, the natural
choice when there are far more residuals than unknowns; BFGS (optimistix) and any optax
optimiser are alternatives on the same objective.

Uncertainty is the Gauss–Newton approximation at the optimum: Cov = σ²·(JᵀJ)⁻¹ with
σ² = SSR/(N − p), nuisance unknowns (initial and shooting states) eliminated by the Schur
complement. Directions of parameter space the data cannot see (tiny eigenvalues of the
reduced, relative information matrix) are reported as unidentifiable combinations and the
standard errors of the parameters they involve are set to inf rather than printed as
meaningless numbers.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._model import Model

# The objective is problem.py, the optimisers optim.py.
from .optim import loss_parts, loss_value, make_solver, run_solver
from .problem import (
    DEFAULT_BOUNDS,
    EMG,
    FITTABLE,
    JOINT,
    EMGExcitation,
    IdentificationTrial,
    Problem,
    apply_parameters,
    as_trial,
    canonical_name,
    parameters_to_fit,
    segment_weights,
    shooting_units,
    to_theta,
    with_joint_passive,
)


@dataclasses.dataclass
class IdentificationResult:
    """What `identify` found.

    Attributes:
        model: the fitted model (with a `JointPassive` appended if joint damping or stiffness
            was fitted and the model had none).
        emg_model: the fitted `EMGExcitation` (None for excitation-driven trials).
        scales: name -> fitted scale factors relative to the given model (muscle and
            activation parameters), one per muscle (or one, for a shared time constant).
        values: name -> fitted values in physical units (N, m, s, N·m·s/rad, ...).
        standard_errors: name -> standard errors of the entries of `scales` (scale kinds) or
            `values` (value kinds); inf where a parameter is part of an unidentifiable
            combination; 0 for noiseless data fitted exactly.
        labels: one label per fitted entry, e.g. "max_isometric_force[FCR]", the order of
            `covariance` and `correlation`.
        covariance: (p, p) Gauss–Newton covariance of the fitted entries (scale units for
            scale kinds), nuisance states eliminated.
        correlation: (p, p) the matching correlation matrix.
        unidentifiable: human-readable combinations the data cannot determine (empty when
            every parameter is identifiable at `identifiability_rtol`).
        information_eigenvalues: eigenvalues of the reduced relative information matrix,
            largest first (their spread is the conditioning of the fit).
        loss: final ½·Σ r² over data and continuity residuals (r = error / sigma).
        rms: {"q": rad} (and {"moments": N·m}) RMS errors of the final fit.
        noise_sigma: residual standard deviation estimate (rad) used for the covariance.
        diagnostics: method, steps, converged, solver result, wall times (compile apart),
            every start's final loss and the loss history [(seconds, loss), ...].
        fitted_q: per trial, the fitted model's simulated angles (time, dofs) in rad (with
            multiple shooting: each segment from its fitted initial state).
    """

    model: Model
    emg_model: EMGExcitation | None
    scales: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    standard_errors: dict[str, np.ndarray]
    labels: tuple[str, ...]
    covariance: np.ndarray
    correlation: np.ndarray
    unidentifiable: list[str]
    information_eigenvalues: np.ndarray
    loss: float
    rms: dict[str, float]
    noise_sigma: float
    diagnostics: dict
    fitted_q: list

    def table(self) -> str:
        """A Markdown table: parameter, fitted scale/value, standard error."""
        rows = ["| parameter | fitted | standard error |", "|---|---:|---:|"]
        for name, fitted in {**self.values, **self.scales}.items():
            se = self.standard_errors[name]
            labels = [lab for lab in self.labels if lab == name or lab.startswith(name + "[")]
            for lab, v, s in zip(labels, np.ravel(fitted), np.ravel(se)):
                rows.append(f"| {lab} | {v:.4g} | {s:.2g} |")
        return "\n".join(rows)


# A fit whose RMS angle error exceeds STALL_FACTOR × the noise floor has stalled; the floor is
# at least Q_ACCURACY rad (the simulation's own accuracy at identify's default tolerances).
STALL_FACTOR = 3.0
Q_ACCURACY = 1e-4
AUTO_EXTRA_STARTS = 3
# shooting_interval="auto": segments of this length (s). Single shooting over 2-s wrist trials
# stalls far from the truth (the sensitivity of a long horizon); 0.5-s segments recover it.
AUTO_SHOOTING_S = 0.5


class IdentificationWarning(UserWarning):
    """`identify` stopped far above the noise floor of the data (see its diagnostics)."""


def noise_floor(qs: Sequence[ArrayLike]) -> float:
    """Measurement noise of sampled angles (rad), estimated from the data alone.

    White noise of σ gives second differences Δ²q of standard deviation √6·σ, while a smooth
    motion's Δ²q ≈ q̈·dt² is small at the usual sampling rates; so σ̂ = 1.4826·MAD(Δ²q)/√6
    (the median absolute deviation, robust to the motion's few large accelerations), pooled
    over trials and coordinates, and at least `Q_ACCURACY`. An upper bound of the noise for
    smooth motions, which is what a stall test needs (no false alarm on noisy data)."""
    d2 = np.concatenate([np.ravel(np.diff(np.asarray(q, float), 2, axis=0)) for q in qs
                         if len(q) >= 3] or [np.zeros(1)])
    mad = np.median(np.abs(d2 - np.median(d2)))
    return float(max(1.4826 * mad / math.sqrt(6.0), Q_ACCURACY))


def _rms_q(theta, problem: Problem) -> float:
    rq = np.asarray(loss_parts(theta, problem)[0])
    nq = problem.counts()[0]
    return float(np.sqrt(np.sum(rq**2) / max(nq, 1))) * problem.q_sigma


# -- optimisers --------------------------------------------------------------------------------


def identify(
    model: Model,
    trials: Sequence,
    fit: Sequence[str] = ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length"),
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    initial: Mapping[str, ArrayLike] | None = None,
    emg_model: EMGExcitation | None = None,
    method: Any = "levenberg_marquardt",
    starts: int | str = "auto",
    key: Array | None = None,
    start_spread: float = 0.5,
    shooting_interval: float | str | None = "auto",
    fit_initial_state: bool = True,
    q_sigma: float = math.radians(1.0),
    moment_sigma: float = 0.1,
    defect_weight: float = 10.0,
    solver: Any = "explicit",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_sim_steps: int = 20_000,
    max_steps: int = 100,
    tol: float = 1e-6,
    identifiability_rtol: float = 1e-8,
    progress: bool | Callable[[str], None] = True,
    mesh: jax.sharding.Mesh | None = None,
) -> IdentificationResult:
    """Fit subject-specific parameters of `model` to measured kinematics by gradient descent
    through the forward simulation.

    Args:
        model: the generic (starting) `jaxmsk.Model`.
        trials: a sequence of trials, each `(ts, excitation, q)` or an
            `IdentificationTrial` / mapping with `ts`, `q`, `excitation` or `emg`, and
            optionally `moments` (see `IdentificationTrial` for shapes and units). Trials may
            differ in length; trials (and shooting segments) of equal length are simulated
            together under `vmap`.
        fit: names of the parameters to estimate: per-muscle scales of
            `max_isometric_force` (alias F_max), `optimal_fiber_length` (l_opt),
            `tendon_slack_length` (l_ts), `pennation_angle`, `max_contraction_velocity`;
            `strength`, one scale of every muscle's F_max (multiplying the per-muscle ones
            if both are fitted);
            scales of the activation time constants `tau_act`, `tau_deact`; for EMG-driven
            trials the `EMGExcitation` parameters `shape_factor` (A), `c1`, `c2`,
            `emg_delay` (s); joint `joint_damping` (N·m·s/rad) and `joint_stiffness`
            (N·m/rad) per coordinate (a `JointPassive` is appended if the model has none).
        bounds: name -> (lo, hi) overriding `DEFAULT_BOUNDS` (scales for scale kinds, values
            otherwise). Parameters stay strictly inside (sigmoid reparameterisation).
        initial: name -> starting scale (scale kinds) or value; default 1 / the model's value.
        emg_model: starting `EMGExcitation` for EMG-driven trials (default: pass-through).
        method: "levenberg_marquardt" (optimistix, forward-mode Jacobian; default), "bfgs"
            (optimistix, reverse-mode gradient; the objective is scaled so that its first
            trial step is 0.1 in θ, and each optimiser step is one evaluation, accepted or
            not, so it needs many more `max_steps` than LM), an optax GradientTransformation, or
            "dual_annealing" (scipy's simulated annealing without local search: the
            gradient-free baseline; needs single shooting and `fit_initial_state=False`, and
            `max_steps` is then its number of objective evaluations).
        starts: number of starting points; the first is `initial`, the others perturb it by
            N(0, start_spread²) in θ (the unbounded coordinates), drawn from `key`. The best
            final loss wins; all are in `diagnostics["starts"]`. "auto" (default): one start,
            and for Levenberg–Marquardt and BFGS up to `AUTO_EXTRA_STARTS` more while the best
            one stalls above the noise floor (see Returns).
        shooting_interval: seconds per multiple-shooting segment, None for single shooting
            over each whole trial, or "auto" (default): `AUTO_SHOOTING_S` (0.5 s) segments,
            single shooting for "dual_annealing". Single shooting over trials of a few
            seconds can stall far from the truth (the loss of a long horizon is very
            nonlinear in the parameters); short segments whose initial states are fitted too
            keep it nearly quadratic.
        fit_initial_state: also estimate each trial's initial angles and velocities
            (nuisance unknowns, started from the first samples and the trial's `qdot0` or a
            second-order difference); False holds them at those values.
        q_sigma, moment_sigma: the measurement scales (rad, N·m) that make residuals
            dimensionless; they weight kinematics against moments but do not change the
            covariance, whose noise level is estimated from the fit.
        defect_weight: weight of the multiple-shooting continuity residuals.
        solver, rtol, atol, max_sim_steps: the forward simulation ("explicit" Tsit5 by
            default; "stabilized" for compliant tendons such as arm26's: one Jacobian of
            arm26's 18-scale fit 2.2 s against 3.8 s with "stiff", compilation 8.5 against
            28 s, `benchmarks/identify.py --levers`; "stiff" or a diffrax solver). Use
            float64 (`jax_enable_x64`) for tolerances below ~1e-5.
        max_steps, tol: optimiser iterations and its relative/absolute tolerance on the
            step and the loss. Tighter than the simulation's own accuracy (`rtol`) it only
            adds iterations that move within integration noise.
        identifiability_rtol: eigenvalues of the relative information matrix below this
            fraction of the largest mark unidentifiable combinations.
        progress: True prints progress lines to stderr; a callable receives them; False is
            silent.
        mesh: split the trials and shooting segments simulated together over the devices
            of this mesh (`jaxmsk.distributed.batch_mesh()`: every device of every process;
            call `jaxmsk.distributed.initialize()` first on a cluster). Each device
            integrates its units and their Jacobian blocks; the residuals and the Jacobian
            are assembled on every device, where the optimiser runs replicated. Every
            process must call `identify` with the same arguments. Default None: one device.

    Returns:
        An `IdentificationResult`. Its `diagnostics` report the convergence: "converged",
        "message", "steps", "gradient_norm" (‖Jᵀr‖ in θ at the result), "loss", every start's
        final loss ("starts"), "noise_floor_q" (rad: the measurement noise estimated from the
        data's own second differences, a robust σ of Δ²q/√6) and "stalled" (True when the
        fitted RMS angle error exceeds `STALL_FACTOR` × that floor, the floor at least
        `Q_ACCURACY` rad for the simulation's accuracy). A stalled fit is never reported as
        converged, and `identify` warns (`IdentificationWarning`) with the figures and the
        remedies: more starts, multiple shooting (`shooting_interval`), more `max_steps`.
    """
    if not isinstance(model, Model):
        raise ValueError(f"identify needs a jaxmsk.Model, got {type(model).__name__}.")
    if not hasattr(model.muscles, "params"):
        raise ValueError(f"identify fits MuscleParameters, which a {type(model.muscles).__name__}"
                         " does not have; it needs a Model of DeGrooteFregly2016Muscle muscles.")
    if isinstance(trials, (IdentificationTrial, Mapping)) or not isinstance(trials, Sequence) \
            or len(trials) == 0:
        raise ValueError("identify: trials must be a non-empty sequence of trials, e.g. "
                         "[(ts, excitation, q), ...].")
    if isinstance(fit, str):
        fit = tuple(s for s in fit.split(",") if s)
    if not fit:
        raise ValueError("identify: fit names no parameter.")
    auto = starts == "auto"
    if not auto and (isinstance(starts, (str, bool)) or int(starts) != starts or starts < 1):
        raise ValueError(f"identify: starts must be an integer >= 1 or 'auto', got {starts!r}.")
    n_starts = int(starts) if not auto else 1
    kind, opt = make_solver(method, tol)
    if isinstance(shooting_interval, str) and shooting_interval == "auto":
        shooting_interval = None if kind == "annealing" else AUTO_SHOOTING_S
    elif shooting_interval is not None and (isinstance(shooting_interval, (str, bool))
                                            or not shooting_interval > 0):
        raise ValueError(f"identify: shooting_interval must be > 0 s, None (single shooting) "
                         f"or 'auto', got {shooting_interval!r}.")
    say = (lambda s: print(f"identify: {s}", file=sys.stderr, flush=True)) if progress is True \
        else (progress or (lambda s: None))
    if auto and kind in ("least_squares", "minimise"):  # local optimisers: restart if stalled
        n_starts = 1 + AUTO_EXTRA_STARTS
    problem, theta0 = build_problem(model, trials, fit, bounds=bounds, initial=initial,
                             emg_model=emg_model, shooting_interval=shooting_interval,
                             fit_initial_state=fit_initial_state, q_sigma=q_sigma,
                             moment_sigma=moment_sigma, defect_weight=defect_weight,
                             solver=solver, rtol=rtol, atol=atol, max_sim_steps=max_sim_steps,
                             mesh=mesh)
    if mesh is not None:
        # Global arrays replicated over the mesh (in several processes each holds the same
        # whole value), so that every compiled step spans the mesh's devices.
        from ..distributed import _replicated

        def on_mesh(tree):
            return jax.tree_util.tree_map(
                lambda a: _replicated(a, mesh) if isinstance(a, jax.Array) else a, tree)

        problem = on_mesh(problem)
    else:
        def on_mesh(tree):
            return tree
    params, units, fit = problem.params, problem.units, tuple(p.name for p in problem.params)
    checked = problem.ts
    if kind == "annealing" and (fit_initial_state or shooting_interval is not None):
        raise ValueError("identify: method='dual_annealing' searches the physical parameters "
                         "only: pass fit_initial_state=False and shooting_interval=None.")
    n_res = sum(p.size for p in params)
    say(f"{len(checked)} trial(s), {len(units)} segment(s), {n_res} parameter(s) "
        f"({', '.join(fit)}); method {method if isinstance(method, str) else 'optax'}")
    keys = jax.random.split(jax.random.key(0) if key is None else key, n_starts)
    floor = noise_floor(problem.q)
    runs = []
    for s in range(n_starts):
        th0 = theta0
        if s > 0:
            th0 = dict(theta0)
            th0["phys"] = {k: v + start_spread * jax.random.normal(jax.random.fold_in(keys[s], i),
                                                                   v.shape, v.dtype)
                           for i, (k, v) in enumerate(theta0["phys"].items())}
        th0 = on_mesh(th0)
        t_run = time.perf_counter()
        theta, history, steps, converged, message, compile_s, jac = run_solver(
            kind, opt, th0, problem, max_steps, say, f"start {s + 1}/{n_starts}", seed=s,
            tol=tol)
        loss = float(loss_value(theta, problem))
        runs.append(dict(theta=theta, loss=loss, history=history, steps=steps, jac=jac,
                         converged=converged, message=message, compile_s=compile_s,
                         wall_s=time.perf_counter() - t_run))
        say(f"start {s + 1}/{n_starts}: loss {loss:.6g} after {steps} step(s), {message} "
            f"({runs[-1]['wall_s']:.1f} s incl. {compile_s:.1f} s compile)")
        if auto:
            best = min(runs, key=lambda r: r["loss"])
            rms_q = _rms_q(best["theta"], problem)
            if rms_q <= STALL_FACTOR * floor:
                break
            if s + 1 < n_starts:
                say(f"fitted RMS angle error {rms_q:.3g} rad is {rms_q / floor:.0f}× the noise "
                    f"floor {floor:.2g} rad: trying another start")
    best = min(runs, key=lambda r: r["loss"])
    result = _result(problem, params, best, runs, method, identifiability_rtol)
    d = result.diagnostics
    d["noise_floor_q"] = floor
    d["stalled"] = bool(result.rms["q"] > STALL_FACTOR * floor)
    if d["stalled"]:
        d["converged"] = False
        d["message"] = (f"stalled: fitted RMS angle error {result.rms['q']:.3g} rad is "
                        f"{result.rms['q'] / floor:.0f}× the noise floor {floor:.2g} rad "
                        f"({d['message']})")
        losses = ", ".join(f"{r_['loss']:.4g}" for r_ in runs)
        warnings.warn(
            f"identify stopped at loss {result.loss:.4g} with a fitted RMS angle error of "
            f"{result.rms['q']:.3g} rad, {result.rms['q'] / floor:.0f}× the noise floor "
            f"{floor:.2g} rad estimated from the data, after {len(runs)} start(s) (losses "
            f"{losses}); the parameters are not the best fit. Try starts=N with a larger N, "
            "multiple shooting (shooting_interval=0.25–0.5 s), or more max_steps.",
            IdentificationWarning, stacklevel=2)
    return result


def _warn_outside_path_domain(model, trials) -> None:
    """Warn when measured angles leave the box the model's paths were fitted over: the
    fit would then calibrate muscles against extrapolated lengths and moment arms."""
    measure = getattr(model.path, "domain_excursion", None)
    if measure is None or not model.path.domain:
        return
    beyond = {}
    for t in trials:
        excursion = np.asarray(measure(np.asarray(t.q)))
        for i, e in enumerate(excursion):
            if e > 1e-6:
                name = model.coordinate_names[i] if model.coordinate_names else f"q[{i}]"
                beyond[name] = max(beyond.get(name, 0.0), round(float(e), 4))
    if beyond:
        warnings.warn(f"identify: the measured angles leave the box the muscle paths were fitted "
                      f"over ({[tuple(round(v, 3) for v in b) for b in model.path.domain]}) by "
                      f"{beyond} rad; the fit uses extrapolated paths there. Refit the paths "
                      "over the task's range (load_osim(..., ranges=...)).",
                      IdentificationWarning, stacklevel=4)


def build_problem(model, trials, fit, *, bounds, initial, emg_model, shooting_interval,
           fit_initial_state, q_sigma, moment_sigma, defect_weight, solver, rtol, atol,
           max_sim_steps, mesh=None) -> tuple[Problem, dict]:
    """Check the inputs and set up the objective and its starting θ."""
    checked = [as_trial(i, t, model) for i, t in enumerate(trials)]
    _warn_outside_path_domain(model, checked)
    uses_emg = tuple(t.emg is not None for t in checked)
    fit = tuple(canonical_name(f) for f in fit)
    if any(f in EMG for f in fit) and not any(uses_emg):
        raise ValueError("identify: EMG-model parameters (shape_factor, c1, c2, emg_delay) can "
                         "only be fitted from trials that give `emg` instead of `excitation`.")
    emg_model = EMGExcitation() if emg_model is None else emg_model
    joint_index = -1
    if any(f in JOINT for f in fit):
        model, joint_index = with_joint_passive(model)
    bounds = {canonical_name(k): v for k, v in dict(bounds or {}).items()}
    for k in bounds:
        if k not in fit:
            raise ValueError(f"identify: bounds given for {k!r}, which is not in fit.")
    params = parameters_to_fit(model, emg_model, fit, bounds, joint_index)
    initial = {canonical_name(k): v for k, v in dict(initial or {}).items()}
    for k in initial:
        if k not in fit:
            raise ValueError(f"identify: initial value for {k!r}, which is not in fit.")

    dtype = jnp.result_type(float)
    units = shooting_units(checked, shooting_interval)
    # Units simulated together: equal length, and first segments (which start from q0,
    # qdot0 at equilibrium) apart from later ones (from free shooting states).
    by_len: dict[tuple[int, bool], list[int]] = {}
    for j, u in enumerate(units):
        by_len.setdefault((u.stop - u.start, u.segment == 0), []).append(j)
    problem = Problem(
        model=model, emg_model=emg_model,
        ts=[jnp.asarray(t.ts, dtype) for t in checked],
        drive=[jnp.asarray(t.emg if t.emg is not None else t.excitation, dtype) for t in checked],
        q=[jnp.asarray(t.q, dtype) for t in checked],
        moments=[None if t.moments is None else jnp.asarray(t.moments, dtype) for t in checked],
        q0=jnp.asarray(np.stack([t.q[0] for t in checked]), dtype),
        qdot0=jnp.asarray(np.stack([t.qdot0 for t in checked]), dtype),
        params=tuple(params), units=tuple(units), groups=tuple(tuple(g) for g in by_len.values()),
        uses_emg=uses_emg, joint_index=joint_index, q_sigma=float(q_sigma),
        moment_sigma=float(moment_sigma), defect_weight=float(defect_weight), solver=solver,
        rtol=rtol, atol=atol, max_steps=max_sim_steps,
        # The EMG model's parameters change the excitations, which the unit Jacobians take
        # as data: fitted EMG parameters need the dense forward mode.
        structured=not any(p.name in EMG for p in params), mesh=mesh)

    theta0 = _initial_theta(problem, checked, params, initial, dtype, fit_initial_state)
    return problem, theta0


def _initial_theta(problem: Problem, trials, params, initial, dtype,
                   fit_initial_state: bool) -> dict:
    phys = {}
    for p in params:
        start = np.ones(p.size) if p.kind == "scale" else p.nominal.ravel()
        if p.name in initial:
            start = np.broadcast_to(np.asarray(initial[p.name], float), (p.size,))
        phys[p.name] = jnp.asarray(to_theta(p, start), dtype)
    theta = {"phys": phys, "shoot": None}
    if fit_initial_state:
        theta["q0"], theta["qdot0"] = problem.q0, problem.qdot0
    free = sorted((u for u in problem.units if u.free >= 0), key=lambda u: u.free)
    if free:
        model, emg_model = apply_parameters(problem.model, problem.emg_model, params, phys,
                                  problem.joint_index)
        u_trials = problem.excitations(emg_model)
        states = []
        for u in free:
            t = trials[u.trial]
            i = u.start
            lo, hi = max(i - 1, 0), min(i + 1, len(t.ts) - 1)
            qdot = (t.q[hi] - t.q[lo]) / (t.ts[hi] - t.ts[lo])
            states.append(model.initial_state(jnp.asarray(t.q[i], dtype), jnp.asarray(qdot, dtype),
                                              u_trials[u.trial][i]))
        theta["shoot"] = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    return theta


def _result(problem: Problem, params, best, runs, method, rtol_ident) -> IdentificationResult:
    theta = best["theta"]
    model, emg_model = apply_parameters(problem.model, problem.emg_model, params, theta["phys"],
                              problem.joint_index)
    flat, unravel = jax.flatten_util.ravel_pytree(theta)
    rq, rm, rd = (np.asarray(a) for a in loss_parts(theta, problem))
    r = np.concatenate([rq, rm, rd])
    if best["jac"] is not None:
        jac = np.asarray(best["jac"])
    else:
        jac = np.asarray(eqx.filter_jit(
            lambda f, pr: jax.jacfwd(lambda g: pr.residuals(unravel(g)))(f))(flat, problem))
    nq, nm, n_defect = problem.counts()
    n_data = nq + nm
    n_phys = sum(p.size for p in params)
    # The physical parameters come first in the flattened θ (dict keys are sorted: "phys"
    # precedes "q0", "qdot0", "shoot"); check rather than trust.
    probe = jax.flatten_util.ravel_pytree(
        {**jax.tree_util.tree_map(jnp.zeros_like, theta),
         "phys": jax.tree_util.tree_map(jnp.ones_like, theta["phys"])})[0]
    assert np.all(np.asarray(probe[:n_phys]) == 1) and np.all(np.asarray(probe[n_phys:]) == 0)
    # dx/dθ for every physical entry (scale kinds in scale units).
    grads, xs, kinds = [], [], []
    for p in params:
        th = np.asarray(theta["phys"][p.name], float).ravel()
        sig = 1 / (1 + np.exp(-th))
        grads.append((p.hi - p.lo) * sig * (1 - sig))
        xs.append(p.lo + (p.hi - p.lo) * sig)
        kinds += [p.kind] * p.size
    g = np.concatenate(grads)
    x = np.concatenate(xs)
    J = jac.copy()
    J[:, :n_phys] = J[:, :n_phys] / g  # columns per unit of the physical parameter
    H = J.T @ J
    Hpp, Hpn, Hnn = H[:n_phys, :n_phys], H[:n_phys, n_phys:], H[n_phys:, n_phys:]
    if Hnn.size:
        reduced = Hpp - Hpn @ np.linalg.pinv(Hnn, rcond=1e-12, hermitian=True) @ Hpn.T
    else:
        reduced = Hpp
    reduced = 0.5 * (reduced + reduced.T)
    ssr_data = float(np.sum(rq**2) + np.sum(rm**2))
    dof = max(n_data - (jac.shape[1] - n_defect), 1)
    sigma2 = ssr_data / dof
    # Relative information (scale kinds are already relative; value kinds per bound width).
    widths = np.array([1.0 if k == "scale" else p.hi - p.lo
                       for p in params for k in [p.kind] * p.size])
    D = np.where(np.array(kinds) == "scale", np.maximum(np.abs(x), 1e-12), widths)
    rel = D[:, None] * reduced * D[None, :]
    evals, evecs = np.linalg.eigh(rel)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    labels = tuple(lab for p in params for lab in p.labels)
    top = max(evals[0], 1e-300)
    unident, weak = [], np.zeros(n_phys, bool)
    for lam, vec in zip(evals, evecs.T):
        if lam < rtol_ident * top:
            loads = np.argsort(-np.abs(vec))
            terms = [f"{vec[i]:+.2f}·{labels[i]}" for i in loads if abs(vec[i]) >= 0.1][:6]
            unident.append(f"{' '.join(terms)} (relative eigenvalue {lam / top:.1e})")
            weak |= np.abs(vec) >= 0.1
    cov = sigma2 * np.linalg.pinv(reduced, rcond=rtol_ident, hermitian=True)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    se = np.where(weak, np.inf, se)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(np.sqrt(np.diag(cov)), np.sqrt(np.diag(cov)))
    scales, values, ses = {}, {}, {}
    k = 0
    for p in params:
        xv = x[k:k + p.size]
        sv = se[k:k + p.size]
        if p.kind == "scale":
            scales[p.name] = xv.copy()
            values[p.name] = p.nominal.ravel() * xv
        else:
            values[p.name] = xv.copy()
        ses[p.name] = sv.copy()
        k += p.size
    rms = {"q": float(np.sqrt(np.sum(rq**2) / nq)) * problem.q_sigma}
    if nm:
        rms["moments"] = float(np.sqrt(np.sum(rm**2) / nm)) * problem.moment_sigma
    fitted_q = _fitted_q(problem, rq)
    diag = dict(method=method if isinstance(method, str) else type(method).__name__,
                loss=best["loss"], gradient_norm=float(np.linalg.norm(jac.T @ r)),
                steps=best["steps"], converged=best["converged"], message=best["message"],
                compile_s=best["compile_s"], wall_s=best["wall_s"], history=best["history"],
                starts=[r_["loss"] for r_ in runs], n_residuals=int(r.size),
                n_data_residuals=n_data, n_unknowns=int(flat.size))
    return IdentificationResult(
        model=model, emg_model=emg_model if any(problem.uses_emg) else None, scales=scales,
        values=values, standard_errors=ses, labels=labels, covariance=cov, correlation=corr,
        unidentifiable=unident, information_eigenvalues=evals, loss=best["loss"], rms=rms,
        noise_sigma=float(np.sqrt(sigma2)) * problem.q_sigma, diagnostics=diag,
        fitted_q=fitted_q)


def _fitted_q(problem: Problem, rq: np.ndarray) -> list[np.ndarray]:
    """The fitted model's angles per trial (time, dofs), rebuilt from the kinematic residuals
    (simulated = measured + σ·r on every counted sample; a later segment's first sample is
    its predecessor's last)."""
    out = [np.array(q, float) for q in problem.q]
    k = 0
    d = problem.model.n_dofs
    for group in problem.groups:
        us = [problem.units[j] for j in group]
        n = us[0].stop - us[0].start + 1
        block = rq[k:k + len(us) * n * d].reshape(len(us), n, d)
        k += block.size
        keep = segment_weights(us, n).astype(bool)
        for u, r, kp in zip(us, block, keep):
            seg = out[u.trial][u.start:u.stop + 1]
            meas = np.asarray(problem.q[u.trial][u.start:u.stop + 1])
            seg[kp] = meas[kp] + problem.q_sigma * r[kp]
    return out


__all__ = ["identify", "synthetic_trials", "IdentificationResult", "IdentificationTrial",
           "EMGExcitation", "DEFAULT_BOUNDS", "FITTABLE"]


def synthetic_trials(model: Model, key: Array, *, n_trials: int = 4, duration: float = 2.0,
                     fs: float = 100.0, q0: ArrayLike | None = None, noise: float = 0.0,
                     baseline: tuple[float, float] = (0.02, 0.1),
                     pulses: int = 3, amplitude: tuple[float, float] = (0.15, 0.6),
                     width: tuple[float, float] = (0.15, 0.5),
                     protocol: str | Sequence[str] | None = None,
                     ranges: ArrayLike | None = None, solver: Any = "explicit",
                     rtol: float = 1e-8, atol: float = 1e-10) -> list[IdentificationTrial]:
    """Trials for identification experiments: distinct excitation patterns simulated with
    `model`, optionally with Gaussian noise of sd `noise` (rad) on the measured angles.

    Each muscle gets a constant baseline excitation drawn from `baseline` plus `pulses`
    raised-cosine pulses at random times with amplitudes from `amplitude` and widths (s)
    from `width`, different in every trial and muscle (excitations clipped to [0, 1]).
    `q0` defaults to zeros. Returns `IdentificationTrial`s with the true excitation and the
    true initial velocity (zero: every trial starts at rest).

    With `protocol` (one of `jaxmsk.data` protocols "slow", "medium", "fast", "free", or a
    sequence cycled over the trials) the excitations come instead from the cohort's tracking
    controller (`cohort.Controller`) following a random target of that protocol within
    `ranges` ((dofs, 2) rad; default `cohort.default_ranges(model)`), starting at rest at the
    target's centre (`q0` is ignored).
    Open-loop pulses can swing a lightly damped model (arm26's shoulder) through its whole
    range; closed-loop excitations keep the motion physiological. The trial is then the
    open-loop replay of the recorded excitation, so `simulate` reproduces it exactly.
    """
    from .._simulate import simulate

    ts = np.arange(int(round(duration * fs)) + 1) / fs
    q0 = np.zeros(model.n_dofs) if q0 is None else np.asarray(q0, float)
    m = model.n_muscles
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    trials = []
    if protocol is not None:
        from ..cohort._cohort import closed_loop
        from ..cohort._protocols import PROTOCOLS, Controller, default_ranges, plan_trial

        names = [protocol] if isinstance(protocol, str) else list(protocol)
        bad = [p for p in names if p not in PROTOCOLS]
        if bad or not names:
            raise ValueError(f"synthetic_trials: unknown protocol(s) {bad or names!r}; choose "
                             f"from {PROTOCOLS}.")
        ranges = default_ranges(model) if ranges is None else jnp.asarray(ranges, float)
        if ranges.shape != (model.n_dofs, 2) or not bool(jnp.all(ranges[:, 0] < ranges[:, 1])):
            raise ValueError(f"synthetic_trials: ranges must be (n_dofs={model.n_dofs}, 2) "
                             f"with low < high (rad), got {np.asarray(ranges).tolist()}.")
        closed = eqx.filter_jit(lambda mdl, plan, t: closed_loop(mdl, plan, Controller(), t,
                                                                   rtol, atol))
        for i in range(n_trials):
            name = names[i % len(names)]
            plan = plan_trial(jax.random.fold_in(key, i), name,
                              ranges.astype(jnp.asarray(ts).dtype), m, duration)
            _, u, ok = closed(model, plan, jnp.asarray(ts))
            if not bool(ok):
                raise RuntimeError(f"synthetic_trials: the closed loop failed on trial {i + 1}.")
            u = np.asarray(u)
            start = np.asarray(plan.target(jnp.asarray(ts[0])))
            traj = simulate(model, jnp.asarray(u), jnp.asarray(ts), q0=jnp.asarray(start),
                            solver=solver, rtol=rtol, atol=atol, throw=True)
            q = np.asarray(traj.q)
            if noise:
                q = q + rng.normal(0.0, noise, q.shape)
            trials.append(IdentificationTrial(ts=ts, q=q, excitation=u,
                                              name=f"trial {i + 1} ({name})",
                                              qdot0=np.zeros(model.n_dofs)))
        return trials
    for i in range(n_trials):
        u = rng.uniform(*baseline, size=(1, m)) * np.ones((ts.size, 1))
        for j in range(m):
            for _ in range(pulses):
                c = rng.uniform(0.1, duration - 0.1)
                w = rng.uniform(*width)
                a = rng.uniform(*amplitude)
                x = np.clip((ts - c) / w, -0.5, 0.5)
                u[:, j] += a * 0.5 * (1 + np.cos(2 * np.pi * x))
        u = np.clip(u, 0.0, 1.0)
        traj = simulate(model, jnp.asarray(u), jnp.asarray(ts), q0=jnp.asarray(q0),
                        solver=solver, rtol=rtol, atol=atol, throw=True)
        q = np.asarray(traj.q)
        if noise:
            q = q + rng.normal(0.0, noise, q.shape)
        trials.append(IdentificationTrial(ts=ts, q=q, excitation=u, name=f"trial {i + 1}",
                                          qdot0=np.zeros(model.n_dofs)))
    return trials
