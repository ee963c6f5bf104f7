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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ._model import Model, ModelState
from ._scale import SCALABLE, scale_parameters
from ._simulate import _solve
from .muscle._emg_activation import activation_nonlinearity
from .skeleton import JointPassive

ALIASES = {"F_max": "max_isometric_force", "l_opt": "optimal_fiber_length",
           "l_ts": "tendon_slack_length", "alpha_opt": "pennation_angle",
           "v_max": "max_contraction_velocity"}
ACTIVATION = ("tau_act", "tau_deact")
EMG = ("shape_factor", "c1", "c2", "emg_delay")
JOINT = ("joint_damping", "joint_stiffness")
FITTABLE = SCALABLE + ACTIVATION + EMG + JOINT

# Bounds: scale factors relative to the given model for muscle and activation parameters;
# absolute values for the EMG model (dimensionless, delay in s) and the joint (N·m·s/rad,
# N·m/rad).
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "max_isometric_force": (0.2, 5.0),
    "optimal_fiber_length": (0.5, 2.0),
    "tendon_slack_length": (0.7, 1.4),
    "pennation_angle": (0.2, 3.0),
    "max_contraction_velocity": (0.3, 3.0),
    "tau_act": (0.25, 4.0),
    "tau_deact": (0.25, 4.0),
    "shape_factor": (-2.999, -1e-3),
    "c1": (-0.999, 0.999),
    "c2": (-0.999, 0.999),
    "emg_delay": (0.0, 0.2),
    "joint_damping": (0.0, 10.0),
    "joint_stiffness": (0.0, 50.0),
}


# -- inputs ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class IdentificationTrial:
    """One measured trial.

    Attributes:
        ts: (time,) s, increasing.
        q: (time, dofs) measured joint angles (rad).
        excitation: (time, muscles) muscle excitations in [0, 1]; or None when `emg` is given.
        emg: (time, muscles) processed, MVC-normalised EMG envelopes sampled at `ts`; mapped
            to excitation by `EMGExcitation` (whose parameters can be fitted).
        moments: optional (time, dofs) measured net joint moments (N·m, e.g. inverse
            dynamics), compared with the model's muscle + passive moments.
        name: a label for reports.
        qdot0: the initial joint velocities (dofs,) in rad/s if known (e.g. zeros for a
            trial that starts at rest); default: the slope at the first sample of a
            quadratic least-squares fit to the first 0.1 s of q (`_start_velocity`). It
            only starts the fit when initial states are fitted (`fit_initial_state`).
    """

    ts: Any
    q: Any
    excitation: Any = None
    emg: Any = None
    moments: Any = None
    name: str = ""
    qdot0: Any = None


class EMGExcitation(eqx.Module):
    """EMG → excitation map of CEINMS (Lloyd & Besier 2003), with a continuous delay.

        e_d(t) = emg(t − delay)                         (linear interpolation, first sample held)
        u[n] = α·e_d[n] − β1·u[n−1] − β2·u[n−2],  β1 = c1 + c2, β2 = c1·c2, α = 1 + β1 + β2
        excitation = clip((exp(A·u) − 1)/(exp(A) − 1), minimum, 1)

    The recursion runs at the samples of `ts` (its coefficients depend on that rate, as in
    CEINMS). The result drives the model's first-order activation dynamics (τ_act, τ_deact).
    The defaults (A → 0, c1 = c2 = 0, no delay) pass the EMG through unchanged, raised to
    `minimum` (0.01, OpenSim's usual minimum activation): a compliant-tendon muscle at zero
    activation is stiff (its fibre velocity is set by the small fibre damping alone) and an
    explicit solver then needs ~40,000 steps per second of wrist motion instead of ~240.
    Per-muscle fields (scalars broadcast); all are differentiable, the delay included.
    """

    shape_factor: Array
    c1: Array
    c2: Array
    delay: Array
    minimum: float = eqx.field(static=True)

    def __init__(self, shape_factor: ArrayLike = -1e-3, c1: ArrayLike = 0.0,
                 c2: ArrayLike = 0.0, delay: ArrayLike = 0.0, minimum: float = 0.01):
        self.shape_factor = jnp.asarray(shape_factor, dtype=float)
        self.c1 = jnp.asarray(c1, dtype=float)
        self.c2 = jnp.asarray(c2, dtype=float)
        self.delay = jnp.asarray(delay, dtype=float)
        if not 0.0 <= minimum < 1.0:
            raise ValueError(f"EMGExcitation: minimum must lie in [0, 1), got {minimum}.")
        self.minimum = float(minimum)

    def __call__(self, ts: Array, emg: Array) -> Array:
        n_muscles = emg.shape[1]
        per = lambda x: jnp.broadcast_to(x, (n_muscles,)).astype(emg.dtype)  # noqa: E731
        delay, c1, c2, A = per(self.delay), per(self.c1), per(self.c2), per(self.shape_factor)
        delayed = jax.vmap(lambda d, e: jnp.interp(ts - d, ts, e), in_axes=(0, 1),
                           out_axes=1)(delay, emg)
        beta1, beta2 = c1 + c2, c1 * c2
        alpha = 1.0 + beta1 + beta2

        def step(carry, e):
            u1, u2 = carry
            u = alpha * e - beta1 * u1 - beta2 * u2
            return (u, u1), u

        zeros = jnp.zeros((n_muscles,), emg.dtype)
        _, u = jax.lax.scan(step, (zeros, zeros), delayed)
        return jnp.clip(activation_nonlinearity(u, A), self.minimum, 1.0)


def _start_velocity(ts: np.ndarray, q: np.ndarray, window: float = 0.1) -> np.ndarray:
    """q̇ at ts[0]: the linear coefficient of a quadratic least-squares fit to the samples in
    the first `window` s (at least 3). A three-point difference amplifies angle noise by
    ~2.5/dt: 0.25° of noise at 100 Hz gives 1.15 rad/s of error (sd), against 0.16 rad/s here
    (11 samples)."""
    k = max(3, int(np.searchsorted(ts, ts[0] + window * (1 + 1e-9), side="right")))
    tau = ts[:k] - ts[0]
    basis = np.stack([np.ones_like(tau), tau, tau**2], axis=1)
    coef, *_ = np.linalg.lstsq(basis, q[:k], rcond=None)
    return coef[1]


def _trial(i: int, trial, model: Model) -> IdentificationTrial:
    """Validate one trial (tuple `(ts, excitation, q)`, mapping or IdentificationTrial)."""
    if isinstance(trial, IdentificationTrial):
        t = trial
    elif isinstance(trial, Mapping):
        unknown = set(trial) - {f.name for f in dataclasses.fields(IdentificationTrial)}
        if unknown:
            raise ValueError(f"identify: trial {i} has unknown key(s) {sorted(unknown)}; use ts, "
                             "q, excitation or emg, moments, name.")
        t = IdentificationTrial(**trial)
    elif isinstance(trial, Sequence) and len(trial) == 3:
        t = IdentificationTrial(ts=trial[0], excitation=trial[1], q=trial[2])
    else:
        raise ValueError(f"identify: trial {i} must be a tuple (ts, excitation, q), a mapping or "
                         f"an IdentificationTrial; got {type(trial).__name__}.")
    name = t.name or f"trial {i}"

    def arr(label, x, shape):
        a = np.asarray(x, dtype=float)
        if a.ndim == 1 and len(shape) == 2 and shape[1] == 1:
            a = a[:, None]
        if a.shape != shape:
            raise ValueError(f"identify: {name}: {label} has shape {a.shape}; expected {shape} "
                             f"(time, {'dofs' if label in ('q', 'moments', 'qdot0') else 'muscles'}) with "
                             f"len(ts) = {shape[0]} rows and one column per "
                             f"{'coordinate' if label in ('q', 'moments', 'qdot0') else 'muscle'} in "
                             "model order.")
        if not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"identify: {name}: {label} contains NaN or inf (first at row "
                             f"{bad[0]}); drop or interpolate those samples before fitting.")
        return a

    ts = np.asarray(t.ts, dtype=float)
    if ts.ndim != 1 or ts.shape[0] < 3:
        raise ValueError(f"identify: {name}: ts must be 1-D with at least 3 samples, got shape "
                         f"{ts.shape}.")
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
        raise ValueError(f"identify: {name}: ts must be finite and strictly increasing.")
    n, m, d = ts.shape[0], model.n_muscles, model.n_dofs
    if (t.excitation is None) == (t.emg is None):
        raise ValueError(f"identify: {name}: give exactly one of excitation and emg.")
    drive = "excitation" if t.excitation is not None else "emg"
    u = arr(drive, t.excitation if t.excitation is not None else t.emg, (n, m))
    if drive == "excitation" and (u.min() < 0 or u.max() > 1):
        raise ValueError(f"identify: {name}: excitation must lie in [0, 1], got "
                         f"[{u.min():.3g}, {u.max():.3g}].")
    q = arr("q", t.q, (n, d))
    moments = None if t.moments is None else arr("moments", t.moments, (n, d))
    if t.qdot0 is None:
        qdot0 = _start_velocity(ts, q)
    else:
        qdot0 = arr("qdot0", np.reshape(t.qdot0, (1, -1)), (1, d))[0]
    return IdentificationTrial(ts=ts, q=q, excitation=u if drive == "excitation" else None,
                               emg=u if drive == "emg" else None, moments=moments, name=name,
                               qdot0=qdot0)


# -- parameters --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Param:
    name: str
    kind: str  # "scale" (x = nominal·s, fitted s) or "value" (fitted x)
    lo: float
    hi: float
    labels: tuple[str, ...]
    # The starting model's values. Left out of comparisons and hashing so that the compiled
    # objective is reused for any model of the same structure (traced code reads values from
    # the model, never from here).
    nominal_values: tuple[float, ...] = dataclasses.field(compare=False)

    @property
    def nominal(self) -> np.ndarray:
        return np.asarray(self.nominal_values)

    @property
    def size(self) -> int:
        return len(self.nominal_values)


def _canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in FITTABLE:
        raise ValueError(f"identify: cannot fit {name!r}; fittable parameters are "
                         f"{list(FITTABLE)} (aliases {sorted(ALIASES)}).")
    return name


def _with_joint_passive(model: Model) -> tuple[Model, int]:
    """The model and the index of its `JointPassive` element (one is appended if absent)."""
    for i, p in enumerate(model.passive):
        if isinstance(p, JointPassive):
            return model, i
    zeros = jnp.zeros(model.n_dofs, model.muscles.params.max_isometric_force.dtype)
    extra = JointPassive(damping=zeros, stiffness=zeros)
    return eqx.tree_at(lambda m: m.passive, model, model.passive + (extra,)), len(model.passive)


def _params(model: Model, emg_model: EMGExcitation, fit: Sequence[str],
            bounds: Mapping[str, tuple[float, float]], joint_index: int) -> list[_Param]:
    muscles = model.muscle_names or tuple(f"muscle{i}" for i in range(model.n_muscles))
    dofs = model.coordinate_names or tuple(f"q{i}" for i in range(model.n_dofs))
    out = []
    for raw in fit:
        name = _canonical(raw)
        if name in (p.name for p in out):
            raise ValueError(f"identify: {name!r} is named twice in fit.")
        lo, hi = (float(v) for v in bounds.get(name, DEFAULT_BOUNDS[name]))
        if not lo < hi:
            raise ValueError(f"identify: bounds for {name} must satisfy lo < hi, got ({lo}, {hi}).")
        if name in SCALABLE:
            nominal = np.asarray(getattr(model.muscles.params, name), float)
            labels = tuple(f"{name}[{m}]" for m in muscles)
            kind = "scale"
        elif name in ACTIVATION:
            nominal = np.atleast_1d(np.asarray(getattr(model.activation, name), float))
            labels = (name,) if nominal.size == 1 else tuple(f"{name}[{m}]" for m in muscles)
            kind = "scale"
        elif name in EMG:
            field = "delay" if name == "emg_delay" else name
            nominal = np.broadcast_to(np.asarray(getattr(emg_model, field), float),
                                      (model.n_muscles,)).copy()
            labels = tuple(f"{name}[{m}]" for m in muscles)
            kind = "value"
        else:
            field = name.removeprefix("joint_")
            nominal = np.asarray(getattr(model.passive[joint_index], field), float)
            labels = tuple(f"{name}[{c}]" for c in dofs)
            kind = "value"
        if kind == "scale" and not (lo < 1 < hi):
            raise ValueError(f"identify: bounds for {name} are scale factors relative to the "
                             f"given model and must contain 1, got ({lo}, {hi}).")
        out.append(_Param(name, kind, lo, hi, labels, tuple(float(v) for v in np.ravel(nominal))))
    return out


def _to_theta(p: _Param, x: np.ndarray) -> np.ndarray:
    """θ for physical value x (or scale, for scale kinds), nudged inside the bounds."""
    z = (np.asarray(x, float) - p.lo) / (p.hi - p.lo)
    z = np.clip(z, 1e-3, 1 - 1e-3)
    return np.log(z) - np.log1p(-z)


def _from_theta(p: _Param, theta: Array) -> Array:
    """Scale factor (scale kinds) or value (value kinds) for θ."""
    return p.lo + (p.hi - p.lo) * jax.nn.sigmoid(theta)


def _apply(model: Model, emg_model: EMGExcitation, params: Sequence[_Param], phys: dict,
           joint_index: int) -> tuple[Model, EMGExcitation]:
    scales = {}
    for p in params:
        v = _from_theta(p, phys[p.name])
        if p.name in SCALABLE:
            scales[p.name] = v
        elif p.name in ACTIVATION:
            nominal = getattr(model.activation, p.name)
            value = nominal * v.reshape(jnp.shape(nominal))
            model = eqx.tree_at(lambda m, n=p.name: getattr(m.activation, n), model, value)
        elif p.name in EMG:
            field = "delay" if p.name == "emg_delay" else p.name
            emg_model = eqx.tree_at(lambda e, f=field: getattr(e, f), emg_model, v)
        else:
            field = p.name.removeprefix("joint_")
            model = eqx.tree_at(lambda m, f=field: getattr(m.passive[joint_index], f), model, v)
    if scales:
        model = _scale_traced(model, scales)
    return model, emg_model


def _scale_traced(model: Model, scales: dict) -> Model:
    """scale_parameters without its concrete-value checks (the sigmoid keeps scales > 0)."""
    params = model.muscles.params
    names = list(scales)
    values = [getattr(params, k) * scales[k] for k in names]
    return eqx.tree_at(lambda m: [getattr(m.muscles.params, k) for k in names], model, values)


# -- the problem -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Unit:
    trial: int
    start: int
    stop: int  # inclusive sample index
    segment: int  # 0 for a trial's first segment
    free: int  # index into the free shooting states (segment > 0), else -1


def _units(trials: Sequence[IdentificationTrial], interval: float | None) -> list[_Unit]:
    units, n_free = [], 0
    for i, t in enumerate(trials):
        n = t.ts.shape[0]
        if interval is None:
            cuts = [0, n - 1]
        else:
            dt = float(np.median(np.diff(t.ts)))
            step = max(2, int(round(interval / dt)))
            cuts = list(range(0, n - 1, step)) + [n - 1]
            if cuts[-1] - cuts[-2] < 2:  # never a segment of fewer than 3 samples
                cuts.pop(-2)
        for k in range(len(cuts) - 1):
            free = -1 if k == 0 else n_free
            n_free += k > 0
            units.append(_Unit(i, cuts[k], cuts[k + 1], k, free))
    return units


class _Problem(eqx.Module):
    """Arrays of the measured data (leaves) and the static layout of the residual vector."""

    model: Model
    emg_model: EMGExcitation
    ts: list  # per trial (time,)
    drive: list  # per trial (time, muscles): excitation or emg
    q: list
    moments: list
    q0: Array  # (trials, dofs) initial states used when they are not fitted
    qdot0: Array
    params: tuple = eqx.field(static=True)
    units: tuple = eqx.field(static=True)
    groups: tuple = eqx.field(static=True)  # tuples of unit indices with equal length
    uses_emg: tuple = eqx.field(static=True)
    joint_index: int = eqx.field(static=True)
    q_sigma: float = eqx.field(static=True)
    moment_sigma: float = eqx.field(static=True)
    defect_weight: float = eqx.field(static=True)
    solver: Any = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def excitations(self, emg_model: EMGExcitation) -> list:
        return [emg_model(ts, u) if emg else u
                for ts, u, emg in zip(self.ts, self.drive, self.uses_emg)]

    def simulate_units(self, theta: dict, adjoint) -> tuple[list, list, list, Model]:
        """Per group: states at the unit samples, the solver's success flags and excitations."""
        model, emg_model = _apply(self.model, self.emg_model, self.params, theta["phys"],
                                  self.joint_index)
        u_trials = self.excitations(emg_model)
        out_states, out_ok = [], []
        for group in self.groups:
            us = [self.units[j] for j in group]
            ts = jnp.stack([self.ts[u.trial][u.start:u.stop + 1] for u in us])
            exc = jnp.stack([u_trials[u.trial][u.start:u.stop + 1] for u in us])
            first = np.array([u.segment == 0 for u in us])
            trial_idx = np.array([u.trial for u in us])
            free_idx = np.array([max(u.free, 0) for u in us])
            start = theta if "q0" in theta else {"q0": self.q0, "qdot0": self.qdot0}
            q0 = start["q0"][trial_idx]
            qdot0 = start["qdot0"][trial_idx]
            y_first = jax.vmap(model.initial_state)(q0, qdot0, exc[:, 0])
            if first.all():
                y0 = y_first
            else:
                y_free = jax.tree_util.tree_map(lambda a: a[free_idx], theta["shoot"])
                y0 = jax.tree_util.tree_map(
                    lambda a, b: jnp.where(first.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                    y_first, y_free)

            def one(y0_, ts_, exc_):
                sol = _solve(model, y0_, ts_, exc_, solver=self.solver, rtol=self.rtol,
                             atol=self.atol, max_steps=self.max_steps, adjoint=adjoint,
                             throw=False)
                return sol.ys, sol.result == diffrax.RESULTS.successful

            ys, ok = jax.vmap(one)(y0, ts, exc)
            out_states.append(ys)
            out_ok.append(ok)
        return out_states, out_ok, u_trials, model

    def residual_parts(self, theta: dict, adjoint=None) -> tuple[Array, Array, Array]:
        """(kinematic, moment, continuity) residual vectors, each possibly empty. Entries
        masked out (a later segment's first sample, trials without moments) are zeros."""
        adjoint = diffrax.ForwardMode() if adjoint is None else adjoint
        states, oks, _, model = self.simulate_units(theta, adjoint)
        rq, rm, ends, end_ok = [], [], [], []
        for group, ys, ok in zip(self.groups, states, oks):
            us = [self.units[j] for j in group]
            q_meas = jnp.stack([self.q[u.trial][u.start:u.stop + 1] for u in us])
            keep = _keep(us, q_meas.shape[1])
            r = (ys.q - q_meas) / self.q_sigma * keep[..., None]
            rq.append(jnp.where(ok[:, None, None], r, 1e3).reshape(-1))
            if any(self.moments[u.trial] is not None for u in us):
                outs = jax.vmap(jax.vmap(model.outputs))(ys)
                total = outs.muscle_moments + outs.passive_moments
                m_meas = jnp.stack([
                    self.moments[u.trial][u.start:u.stop + 1] if self.moments[u.trial] is not None
                    else jnp.zeros_like(self.q[u.trial][u.start:u.stop + 1]) for u in us])
                has = np.array([self.moments[u.trial] is not None for u in us], float)
                r = (total - m_meas) / self.moment_sigma * (keep * has[:, None])[..., None]
                rm.append(jnp.where(ok[:, None, None], r, 1e3).reshape(-1))
            ends.append(jax.tree_util.tree_map(
                lambda a: jnp.where(ok.reshape((-1,) + (1,) * (a.ndim - 2)), a[:, -1], 0.0), ys))
            end_ok.append(ok)
        defects = []
        if theta["shoot"] is not None:
            order = [j for group in self.groups for j in group]
            end_of = {j: k for k, j in enumerate(order)}
            end_all = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *ends)
            # Predecessor of each free state: the same trial's previous segment.
            index = {(u.trial, u.segment): j for j, u in enumerate(self.units)}
            prev = np.array([end_of[index[(u.trial, u.segment - 1)]]
                             for u in sorted(self.units, key=lambda u: u.free) if u.free >= 0])
            s = theta["shoot"]
            w = self.defect_weight
            defects = [w * (end_all.q[prev] - s.q) / self.q_sigma,
                       w * (end_all.qdot[prev] - s.qdot) / (10.0 * self.q_sigma),
                       w * (end_all.activation[prev] - s.activation) / 0.01]
            if s.norm_tendon_force is not None:
                defects.append(w * (end_all.norm_tendon_force[prev] - s.norm_tendon_force) / 0.01)
            # A failed predecessor has no end state: a large constant makes the step rejected.
            prev_ok = jnp.concatenate(end_ok)[prev][:, None]
            defects = [jnp.where(prev_ok, d, 1e3) for d in defects]
        cat = lambda xs: jnp.concatenate([x.reshape(-1) for x in xs]) if xs \
            else jnp.zeros((0,), self.q[0].dtype)  # noqa: E731
        return cat(rq), cat(rm), cat(defects)

    def residuals(self, theta: dict, adjoint=None) -> Array:
        """Every residual, dimensionless: kinematics, moments, continuity."""
        return jnp.concatenate(self.residual_parts(theta, adjoint))

    def counts(self) -> tuple[int, int, int]:
        """Effective (unmasked) numbers of kinematic and moment residuals, and of
        continuity residuals."""
        d = self.model.n_dofs
        nq = sum((u.stop - u.start + (u.segment == 0)) * d for u in self.units)
        nm = sum((u.stop - u.start + (u.segment == 0)) * d for u in self.units
                 if self.moments[u.trial] is not None)
        n_free = sum(u.free >= 0 for u in self.units)
        per_state = 2 * d + self.model.n_muscles * (2 if self.model.compliant else 1)
        return nq, nm, n_free * per_state


def _keep(us, n: int) -> np.ndarray:
    """(units, n) weights: the first sample of a later segment is the previous segment's
    last, so it is counted once."""
    keep = np.ones((len(us), n))
    keep[[k for k, u in enumerate(us) if u.segment > 0], 0] = 0.0
    return keep


# -- results -----------------------------------------------------------------------------------
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


# -- optimisers --------------------------------------------------------------------------------
def _make_solver(method, tol: float):
    import optimistix as optx

    if method in ("levenberg_marquardt", "lm"):
        return "least_squares", optx.LevenbergMarquardt(rtol=tol, atol=tol)
    if method == "bfgs":
        return "minimise", optx.BFGS(rtol=tol, atol=tol)
    if method == "dual_annealing":
        return "annealing", None
    try:
        import optax
    except ImportError:  # pragma: no cover - optax is a dependency
        optax = None
    if optax is not None and isinstance(method, optax.GradientTransformation):
        return "optax", method
    raise ValueError(f"identify: method={method!r}: use 'levenberg_marquardt' (default), 'bfgs', "
                     "'dual_annealing' (gradient-free) or an optax GradientTransformation (e.g. optax.adam(1e-2)).")


def _loss_fwd(theta, problem: _Problem):
    """½·Σ r² (shares the compiled `_parts` used for the final report)."""
    return 0.5 * sum(jnp.sum(p**2) for p in _parts(theta, problem))


@eqx.filter_jit
def _loss_and_grad(theta, problem: _Problem):
    def loss(th):
        r = problem.residuals(th, adjoint=diffrax.RecursiveCheckpointAdjoint())
        return 0.5 * jnp.sum(r**2)
    return eqx.filter_value_and_grad(loss)(theta)


@eqx.filter_jit
def _parts(theta, problem: _Problem):
    return problem.residual_parts(theta)


def _lsq_fn(theta, problem):
    return problem.residuals(theta), None


def _min_fn(theta, args):
    """BFGS's objective: ½·Σ r² times a constant `scale` (see `_bfgs_scale`)."""
    problem, scale = args
    r = problem.residuals(theta, adjoint=diffrax.RecursiveCheckpointAdjoint())
    return scale * 0.5 * jnp.sum(r**2), None


# BFGS starts from an identity Hessian, so its first trial step is the raw gradient. The
# objective's units make that step arbitrary (a gradient of 10³ in the unconstrained
# coordinates means a first step of 10³, and Armijo backtracking halves it one evaluation at a
# time). The objective is therefore multiplied by a constant that makes the first trial step
# this long (max norm, unconstrained coordinates). BFGS's later steps do not depend on the
# constant (its inverse-Hessian update scales as 1/constant), and the reported losses are
# divided by it again.
_BFGS_FIRST_STEP = 0.1


def _bfgs_scale(grad) -> float:
    g = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree_util.tree_leaves(grad))
    return _BFGS_FIRST_STEP / g if np.isfinite(g) and g > 0 else 1.0


@eqx.filter_jit
def _optx_init(solver, fn, theta, problem, f_struct):
    return solver.init(fn, theta, problem, {}, f_struct, None, frozenset())


@eqx.filter_jit
def _optx_step(solver, fn, theta, problem, state):
    theta, state, _ = solver.step(fn, theta, problem, {}, state, frozenset())
    done, result = solver.terminate(fn, theta, problem, {}, state, frozenset())
    jac = None
    if fn is _lsq_fn:
        # The Jacobian at the accepted iterate (for the covariance). XLA shares it with the
        # solver's own materialisation inside this step, so it costs little here, whereas a
        # separate jacfwd would compile the whole simulation once more.
        import lineax as lx

        jac = lx.materialise(state.f_info.jac).as_matrix()
    return theta, state, done, result, jac


# Levenberg–Marquardt steps without a relative improvement > tol that end a run: each
# rejected step shrinks the trust region (by 4×), so ten in a row mean the optimiser is stuck
# at the objective's noise floor (e.g. a noiseless fit at the integration accuracy).
_STALL = 10


def _anneal(theta0, problem: _Problem, max_evaluations, say, label, seed):
    """scipy's dual_annealing (generalised simulated annealing, the family CEINMS uses) on the
    physical parameters within their bounds, without its gradient-based local search: a
    gradient-free baseline on exactly the same objective."""
    from scipy.optimize import dual_annealing

    params = problem.params
    sizes = [p.size for p in params]
    lows = np.concatenate([np.full(p.size, p.lo) for p in params])
    highs = np.concatenate([np.full(p.size, p.hi) for p in params])
    # Keep the search strictly inside the bounds, where θ is finite.
    pad = 1e-3 * (highs - lows)
    bounds = list(zip(lows + pad, highs - pad))
    x0 = np.concatenate([np.asarray(_from_theta(p, theta0["phys"][p.name])) for p in params])

    def theta_of(x):
        parts = np.split(np.asarray(x, float), np.cumsum(sizes)[:-1])
        phys = {p.name: jnp.asarray(_to_theta(p, v), theta0["phys"][p.name].dtype)
                for p, v in zip(params, parts)}
        return {**theta0, "phys": phys}

    t_start = time.perf_counter()
    loss0 = float(_loss_fwd(theta0, problem))
    compile_s = time.perf_counter() - t_start
    history = [(0.0, loss0)]
    best = [loss0, theta0]
    t0 = time.perf_counter()

    def objective(x):
        th = theta_of(x)
        loss = float(_loss_fwd(th, problem))
        loss = loss if np.isfinite(loss) else 1e30
        if loss < best[0]:
            best[:] = [loss, th]
        history.append((time.perf_counter() - t0, best[0]))
        if len(history) % 500 == 0:
            say(f"{label} evaluation {len(history)}: best loss {best[0]:.4g} "
                f"({history[-1][0]:.1f} s)")
        return loss

    dual_annealing(objective, bounds, x0=np.clip(x0, lows + pad, highs - pad),
                   maxfun=max_evaluations, maxiter=10**9, no_local_search=True, seed=seed)
    return (best[1], history, len(history) - 1, False,
            f"dual_annealing: {len(history) - 1} evaluations", compile_s, None)


def _run(kind, solver, theta0, problem, max_steps, say, label, seed=0, tol=1e-6):
    """One optimisation from theta0; returns (theta, history, steps, converged, message,
    compile seconds)."""
    history = []
    t_start = time.perf_counter()
    if kind == "optax":
        import optax

        opt_state = solver.init(eqx.filter(theta0, eqx.is_inexact_array))
        theta = theta0
        loss, grad = _loss_and_grad(theta, problem)
        loss = float(loss)
        compile_s = time.perf_counter() - t_start
        t0 = time.perf_counter()
        history.append((0.0, loss))
        best = (loss, theta)
        converged = False
        for step in range(1, max_steps + 1):
            updates, opt_state = solver.update(grad, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            loss, grad = _loss_and_grad(theta, problem)
            loss = float(loss)
            history.append((time.perf_counter() - t0, loss))
            if loss < best[0]:
                best = (loss, theta)
            if step % 25 == 0:
                say(f"{label} step {step}: loss {loss:.4g}")
        return (best[1], history, max_steps, converged, "optax: fixed number of steps", compile_s,
                None)
    if kind == "annealing":
        return _anneal(theta0, problem, max_steps, say, label, seed)
    if kind == "least_squares":
        fn, args = _lsq_fn, problem
    else:
        fn, args = _min_fn, (problem, jnp.asarray(1.0, jax.tree_util.tree_leaves(theta0)[0].dtype))
    f_struct = jax.eval_shape(lambda th: fn(th, args)[0], theta0)
    # Compile the initialisation, one step and the forward pass, then start the timed run
    # from scratch with the compiled functions.
    state = _optx_init(solver, fn, theta0, args, f_struct)
    first = _optx_step(solver, fn, theta0, args, state)
    jax.block_until_ready(first[0])
    loss0 = float(_loss_fwd(theta0, problem))
    compile_s = time.perf_counter() - t_start
    scale = 1.0
    if kind == "minimise":
        # BFGS's first step evaluated the gradient at theta0 (it is in the accepted state);
        # the timed run starts over with the scaled objective (`_bfgs_scale`), a traced
        # argument, so nothing recompiles.
        scale = _bfgs_scale(first[1].f_info.grad)
        say(f"{label}: BFGS objective scaled by {scale:.3g} (first trial step "
            f"{_BFGS_FIRST_STEP} in the unconstrained coordinates)")
        args = (problem, jnp.asarray(scale, args[1].dtype))
    t0 = time.perf_counter()
    history.append((0.0, loss0))
    state = _optx_init(solver, fn, theta0, args, f_struct)
    theta, steps, stalled = theta0, 0, False
    while True:
        theta, state, done, result, jac = _optx_step(solver, fn, theta, args, state)
        steps += 1
        loss = float(0.5 * jnp.sum(state.f_info.residual**2)) if kind == "least_squares" \
            else float(state.f_info.f) / scale
        history.append((time.perf_counter() - t0, loss))
        if steps % 5 == 0:
            say(f"{label} step {steps}: loss {loss:.4g} ({history[-1][0]:.1f} s)")
        if bool(done) or steps >= max_steps:
            break
        if (kind == "least_squares" and len(history) > _STALL
                and history[-_STALL - 1][1] - loss <= tol * abs(loss)):
            # Steps keep being rejected once the loss sits at the simulation's own accuracy.
            stalled = True
            break
    import optimistix as optx

    converged = bool((bool(done) and bool(result == optx.RESULTS.successful)) or stalled)
    message = (f"converged (loss changed by < tol over {_STALL} steps)" if stalled
               else "converged" if converged
               else optx.RESULTS[result] if bool(done) else f"stopped at max_steps={max_steps}")
    # LM's state holds the linearised residual at the accepted iterate; `_result` reuses it
    # for the covariance instead of compiling a separate Jacobian.
    return theta, history, steps, converged, message, compile_s, jac


# -- identify ----------------------------------------------------------------------------------
def identify(
    model: Model,
    trials: Sequence,
    fit: Sequence[str] = ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length"),
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    initial: Mapping[str, ArrayLike] | None = None,
    emg_model: EMGExcitation | None = None,
    method: Any = "levenberg_marquardt",
    starts: int = 1,
    key: Array | None = None,
    start_spread: float = 0.5,
    shooting_interval: float | None = None,
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
            final loss wins; all are in `diagnostics["starts"]`.
        shooting_interval: seconds per multiple-shooting segment (None: single shooting
            over each whole trial). Use ≈ 0.5–2 s for trials longer than a few seconds.
        fit_initial_state: also estimate each trial's initial angles and velocities
            (nuisance unknowns, started from the first samples and the trial's `qdot0` or a
            second-order difference); False holds them at those values.
        q_sigma, moment_sigma: the measurement scales (rad, N·m) that make residuals
            dimensionless; they weight kinematics against moments but do not change the
            covariance, whose noise level is estimated from the fit.
        defect_weight: weight of the multiple-shooting continuity residuals.
        solver, rtol, atol, max_sim_steps: the forward simulation ("explicit" Tsit5 by
            default; "stiff" or a diffrax solver). Use float64 (`jax_enable_x64`) for
            tolerances below ~1e-5.
        max_steps, tol: optimiser iterations and its relative/absolute tolerance on the
            step and the loss. Tighter than the simulation's own accuracy (`rtol`) it only
            adds iterations that move within integration noise.
        identifiability_rtol: eigenvalues of the relative information matrix below this
            fraction of the largest mark unidentifiable combinations.
        progress: True prints progress lines to stderr; a callable receives them; False is
            silent.

    Returns:
        An `IdentificationResult`.
    """
    if not isinstance(model, Model):
        raise ValueError(f"identify needs a jaxmsk.Model, got {type(model).__name__}.")
    if isinstance(trials, (IdentificationTrial, Mapping)) or not isinstance(trials, Sequence) \
            or len(trials) == 0:
        raise ValueError("identify: trials must be a non-empty sequence of trials, e.g. "
                         "[(ts, excitation, q), ...].")
    if isinstance(fit, str):
        fit = tuple(s for s in fit.split(",") if s)
    if not fit:
        raise ValueError("identify: fit names no parameter.")
    if starts < 1:
        raise ValueError(f"identify: starts must be >= 1, got {starts}.")
    if shooting_interval is not None and not shooting_interval > 0:
        raise ValueError(f"identify: shooting_interval must be > 0 s or None, got "
                         f"{shooting_interval}.")
    say = (lambda s: print(f"identify: {s}", file=sys.stderr, flush=True)) if progress is True \
        else (progress or (lambda s: None))
    kind, opt = _make_solver(method, tol)
    problem, theta0 = _build(model, trials, fit, bounds=bounds, initial=initial,
                             emg_model=emg_model, shooting_interval=shooting_interval,
                             fit_initial_state=fit_initial_state, q_sigma=q_sigma,
                             moment_sigma=moment_sigma, defect_weight=defect_weight,
                             solver=solver, rtol=rtol, atol=atol, max_sim_steps=max_sim_steps)
    params, units, fit = problem.params, problem.units, tuple(p.name for p in problem.params)
    checked = problem.ts
    if kind == "annealing" and (fit_initial_state or shooting_interval is not None):
        raise ValueError("identify: method='dual_annealing' searches the physical parameters "
                         "only: pass fit_initial_state=False and shooting_interval=None.")
    n_res = sum(p.size for p in params)
    say(f"{len(checked)} trial(s), {len(units)} segment(s), {n_res} parameter(s) "
        f"({', '.join(fit)}); method {method if isinstance(method, str) else 'optax'}")
    keys = jax.random.split(jax.random.key(0) if key is None else key, starts)
    runs = []
    for s in range(starts):
        th0 = theta0
        if s > 0:
            th0 = dict(theta0)
            th0["phys"] = {k: v + start_spread * jax.random.normal(jax.random.fold_in(keys[s], i),
                                                                   v.shape, v.dtype)
                           for i, (k, v) in enumerate(theta0["phys"].items())}
        t_run = time.perf_counter()
        theta, history, steps, converged, message, compile_s, jac = _run(
            kind, opt, th0, problem, max_steps, say, f"start {s + 1}/{starts}", seed=s, tol=tol)
        loss = float(_loss_fwd(theta, problem))
        runs.append(dict(theta=theta, loss=loss, history=history, steps=steps, jac=jac,
                         converged=converged, message=message, compile_s=compile_s,
                         wall_s=time.perf_counter() - t_run))
        say(f"start {s + 1}/{starts}: loss {loss:.6g} after {steps} step(s), {message} "
            f"({runs[-1]['wall_s']:.1f} s incl. {compile_s:.1f} s compile)")
    best = min(runs, key=lambda r: r["loss"])
    return _result(problem, params, best, runs, method, identifiability_rtol)


def _build(model, trials, fit, *, bounds, initial, emg_model, shooting_interval,
           fit_initial_state, q_sigma, moment_sigma, defect_weight, solver, rtol, atol,
           max_sim_steps) -> tuple[_Problem, dict]:
    """Check the inputs and set up the objective and its starting θ."""
    checked = [_trial(i, t, model) for i, t in enumerate(trials)]
    uses_emg = tuple(t.emg is not None for t in checked)
    fit = tuple(_canonical(f) for f in fit)
    if any(f in EMG for f in fit) and not any(uses_emg):
        raise ValueError("identify: EMG-model parameters (shape_factor, c1, c2, emg_delay) can "
                         "only be fitted from trials that give `emg` instead of `excitation`.")
    emg_model = EMGExcitation() if emg_model is None else emg_model
    joint_index = -1
    if any(f in JOINT for f in fit):
        model, joint_index = _with_joint_passive(model)
    bounds = {_canonical(k): v for k, v in dict(bounds or {}).items()}
    for k in bounds:
        if k not in fit:
            raise ValueError(f"identify: bounds given for {k!r}, which is not in fit.")
    params = _params(model, emg_model, fit, bounds, joint_index)
    initial = {_canonical(k): v for k, v in dict(initial or {}).items()}
    for k in initial:
        if k not in fit:
            raise ValueError(f"identify: initial value for {k!r}, which is not in fit.")

    dtype = jnp.result_type(float)
    units = _units(checked, shooting_interval)
    by_len: dict[int, list[int]] = {}
    for j, u in enumerate(units):
        by_len.setdefault(u.stop - u.start, []).append(j)
    problem = _Problem(
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
        rtol=rtol, atol=atol, max_steps=max_sim_steps)

    theta0 = _initial_theta(problem, checked, params, initial, dtype, fit_initial_state)
    return problem, theta0


def _initial_theta(problem: _Problem, trials, params, initial, dtype,
                   fit_initial_state: bool) -> dict:
    phys = {}
    for p in params:
        start = np.ones(p.size) if p.kind == "scale" else p.nominal.ravel()
        if p.name in initial:
            start = np.broadcast_to(np.asarray(initial[p.name], float), (p.size,))
        phys[p.name] = jnp.asarray(_to_theta(p, start), dtype)
    theta = {"phys": phys, "shoot": None}
    if fit_initial_state:
        theta["q0"], theta["qdot0"] = problem.q0, problem.qdot0
    free = sorted((u for u in problem.units if u.free >= 0), key=lambda u: u.free)
    if free:
        model, emg_model = _apply(problem.model, problem.emg_model, params, phys,
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


def _result(problem: _Problem, params, best, runs, method, rtol_ident) -> IdentificationResult:
    theta = best["theta"]
    model, emg_model = _apply(problem.model, problem.emg_model, params, theta["phys"],
                              problem.joint_index)
    flat, unravel = jax.flatten_util.ravel_pytree(theta)
    rq, rm, rd = (np.asarray(a) for a in _parts(theta, problem))
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


def _fitted_q(problem: _Problem, rq: np.ndarray) -> list[np.ndarray]:
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
        keep = _keep(us, n).astype(bool)
        for u, r, kp in zip(us, block, keep):
            seg = out[u.trial][u.start:u.stop + 1]
            meas = np.asarray(problem.q[u.trial][u.start:u.stop + 1])
            seg[kp] = meas[kp] + problem.q_sigma * r[kp]
    return out


__all__ = ["identify", "synthetic_trials", "IdentificationResult", "IdentificationTrial", "EMGExcitation",
           "DEFAULT_BOUNDS", "FITTABLE"]


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
    controller (`data.Controller`) following a random target of that protocol within
    `ranges` ((dofs, 2) rad; default `data.default_ranges(model)`), starting at rest at the
    target's centre (`q0` is ignored).
    Open-loop pulses can swing a lightly damped model (arm26's shoulder) through its whole
    range; closed-loop excitations keep the motion physiological. The trial is then the
    open-loop replay of the recorded excitation, so `simulate` reproduces it exactly.
    """
    from ._simulate import simulate

    ts = np.arange(int(round(duration * fs)) + 1) / fs
    q0 = np.zeros(model.n_dofs) if q0 is None else np.asarray(q0, float)
    m = model.n_muscles
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    trials = []
    if protocol is not None:
        from .data._cohort import _closed_loop
        from .data._protocols import PROTOCOLS, Controller, default_ranges, plan_trial

        names = [protocol] if isinstance(protocol, str) else list(protocol)
        bad = [p for p in names if p not in PROTOCOLS]
        if bad or not names:
            raise ValueError(f"synthetic_trials: unknown protocol(s) {bad or names!r}; choose "
                             f"from {PROTOCOLS}.")
        ranges = default_ranges(model) if ranges is None else jnp.asarray(ranges, float)
        if ranges.shape != (model.n_dofs, 2) or not bool(jnp.all(ranges[:, 0] < ranges[:, 1])):
            raise ValueError(f"synthetic_trials: ranges must be (n_dofs={model.n_dofs}, 2) "
                             f"with low < high (rad), got {np.asarray(ranges).tolist()}.")
        closed = eqx.filter_jit(lambda mdl, plan, t: _closed_loop(mdl, plan, Controller(), t,
                                                                   rtol, atol))
        for i in range(n_trials):
            name = names[i % len(names)]
            plan = plan_trial(jax.random.fold_in(key, i), name, ranges.astype(jnp.asarray(ts).dtype),
                              m, duration)
            _, u, ok = closed(model, plan, jnp.asarray(ts))
            if not bool(ok):
                raise RuntimeError(f"synthetic_trials: the closed loop failed on trial {i + 1}.")
            u = np.asarray(u)
            start = np.asarray(plan.target(jnp.asarray(ts[0])))
            traj = simulate(model, jnp.asarray(u), jnp.asarray(ts), q0=jnp.asarray(start),
                            solver=solver, rtol=rtol, atol=atol)
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
                        solver=solver, rtol=rtol, atol=atol)
        q = np.asarray(traj.q)
        if noise:
            q = q + rng.normal(0.0, noise, q.shape)
        trials.append(IdentificationTrial(ts=ts, q=q, excitation=u, name=f"trial {i + 1}",
                                          qdot0=np.zeros(model.n_dofs)))
    return trials
