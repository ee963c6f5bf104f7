"""The objective of `identify`: trials, fittable parameters and the residual problem.

- `IdentificationTrial` and `as_trial`: a trial's inputs, checked, with its start velocity;
- `EMGExcitation`: the CEINMS-style EMG → excitation model whose parameters can be fitted;
- `parameters_to_fit`, `apply_parameters`: the fittable parameters, their bounds
  (x = lo + (hi − lo)·sigmoid(θ)) and how θ becomes a model;
- `shooting_units`, `Problem`: trials cut into shooting segments, simulated together under `vmap`,
  and the weighted residuals (kinematics, moments, continuity defects).

Split from `identify.py` (the optimisers are in `optim.py`); the public names are
re-exported from `jaxmsk`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._model import Model
from .._scale import SCALABLE, scale_parameters
from .._simulate import integrate
from ..muscle._ceinms import activation_nonlinearity
from ..skeleton import JointPassive

ALIASES = {"F_max": "max_isometric_force", "l_opt": "optimal_fiber_length",
           "l_ts": "tendon_slack_length", "alpha_opt": "pennation_angle",
           "v_max": "max_contraction_velocity"}
ACTIVATION = ("tau_act", "tau_deact")
EMG = ("shape_factor", "c1", "c2", "emg_delay")
JOINT = ("joint_damping", "joint_stiffness")
# One scale for every muscle's F_max (a subject's overall strength; with max_isometric_force
# also fitted the two multiply).
SHARED = ("strength",)
FITTABLE = SCALABLE + SHARED + ACTIVATION + EMG + JOINT

# Bounds: scale factors relative to the given model for muscle and activation parameters;
# absolute values for the EMG model (dimensionless, delay in s) and the joint (N·m·s/rad,
# N·m/rad).
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "max_isometric_force": (0.2, 5.0),
    "optimal_fiber_length": (0.5, 2.0),
    "tendon_slack_length": (0.7, 1.4),
    "pennation_angle": (0.2, 3.0),
    "max_contraction_velocity": (0.3, 3.0),
    "strength": (0.2, 5.0),
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
            quadratic least-squares fit to the first 0.1 s of q (`start_velocity`). It
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


def start_velocity(ts: np.ndarray, q: np.ndarray, window: float = 0.1) -> np.ndarray:
    """q̇ at ts[0]: the linear coefficient of a quadratic least-squares fit to the samples in
    the first `window` s (at least 3). A three-point difference amplifies angle noise by
    ~2.5/dt: 0.25° of noise at 100 Hz gives 1.15 rad/s of error (sd), against 0.16 rad/s here
    (11 samples)."""
    k = max(3, int(np.searchsorted(ts, ts[0] + window * (1 + 1e-9), side="right")))
    tau = ts[:k] - ts[0]
    basis = np.stack([np.ones_like(tau), tau, tau**2], axis=1)
    coef, *_ = np.linalg.lstsq(basis, q[:k], rcond=None)
    return coef[1]


def as_trial(i: int, trial, model: Model) -> IdentificationTrial:
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
                             f"(time, "
                             f"{'dofs' if label in ('q', 'moments', 'qdot0') else 'muscles'}) with "
                             f"len(ts) = {shape[0]} rows and one column per "
                             f"{'coordinate' if label in ('q', 'moments', 'qdot0') else 'muscle'}"
                             " in model order.")
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
        qdot0 = start_velocity(ts, q)
    else:
        qdot0 = arr("qdot0", np.reshape(t.qdot0, (1, -1)), (1, d))[0]
    return IdentificationTrial(ts=ts, q=q, excitation=u if drive == "excitation" else None,
                               emg=u if drive == "emg" else None, moments=moments, name=name,
                               qdot0=qdot0)


# -- parameters --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Parameter:
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


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in FITTABLE:
        raise ValueError(f"identify: cannot fit {name!r}; fittable parameters are "
                         f"{list(FITTABLE)} (aliases {sorted(ALIASES)}).")
    return name


def with_joint_passive(model: Model) -> tuple[Model, int]:
    """The model and the index of its `JointPassive` element (one is appended if absent)."""
    for i, p in enumerate(model.passive):
        if isinstance(p, JointPassive):
            return model, i
    zeros = jnp.zeros(model.n_dofs, model.muscles.params.max_isometric_force.dtype)
    extra = JointPassive(damping=zeros, stiffness=zeros)
    return eqx.tree_at(lambda m: m.passive, model, model.passive + (extra,)), len(model.passive)


def parameters_to_fit(model: Model, emg_model: EMGExcitation, fit: Sequence[str],
            bounds: Mapping[str, tuple[float, float]], joint_index: int) -> list[Parameter]:
    muscles = model.muscle_names or tuple(f"muscle{i}" for i in range(model.n_muscles))
    dofs = model.coordinate_names or tuple(f"q{i}" for i in range(model.n_dofs))
    out = []
    for raw in fit:
        name = canonical_name(raw)
        if name in (p.name for p in out):
            raise ValueError(f"identify: {name!r} is named twice in fit.")
        lo, hi = (float(v) for v in bounds.get(name, DEFAULT_BOUNDS[name]))
        if not lo < hi:
            raise ValueError(f"identify: bounds for {name} must satisfy lo < hi, got ({lo}, {hi}).")
        if name in SCALABLE:
            nominal = np.asarray(getattr(model.muscles.params, name), float)
            labels = tuple(f"{name}[{m}]" for m in muscles)
            kind = "scale"
        elif name in SHARED:
            nominal = np.ones(1)
            labels = (name,)
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
        out.append(Parameter(name, kind, lo, hi, labels,
                             tuple(float(v) for v in np.ravel(nominal))))
    return out


def to_theta(p: Parameter, x: np.ndarray) -> np.ndarray:
    """θ for physical value x (or scale, for scale kinds), nudged inside the bounds."""
    z = (np.asarray(x, float) - p.lo) / (p.hi - p.lo)
    z = np.clip(z, 1e-3, 1 - 1e-3)
    return np.log(z) - np.log1p(-z)


def from_theta(p: Parameter, theta: Array) -> Array:
    """Scale factor (scale kinds) or value (value kinds) for θ."""
    return p.lo + (p.hi - p.lo) * jax.nn.sigmoid(theta)


def apply_parameters(model: Model, emg_model: EMGExcitation, params: Sequence[Parameter],
                     phys: dict, joint_index: int) -> tuple[Model, EMGExcitation]:
    scales, gain = {}, None
    for p in params:
        v = from_theta(p, phys[p.name])
        if p.name in SCALABLE:
            scales[p.name] = v
        elif p.name in SHARED:
            gain = v
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
    if gain is not None:
        each = scales.get("max_isometric_force", jnp.ones(model.n_muscles, gain.dtype))
        scales["max_isometric_force"] = each * gain
    if scales:
        model = scale_parameters(model, check=False, **scales)  # sigmoid: > 0 by construction
    return model, emg_model


# -- the problem -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShootingUnit:
    trial: int
    start: int
    stop: int  # inclusive sample index
    segment: int  # 0 for a trial's first segment
    free: int  # index into the free shooting states (segment > 0), else -1


def shooting_units(trials: Sequence[IdentificationTrial],
                   interval: float | None) -> list[ShootingUnit]:
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
            units.append(ShootingUnit(i, cuts[k], cuts[k + 1], k, free))
    return units


class Problem(eqx.Module):
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
    # Forward-mode derivatives of the integration by unit (see `_unit_jacobians`): each unit
    # is differentiated only with respect to the parameters and its own initial state.
    structured: bool = eqx.field(static=True, default=True)
    # Units of a group split over the devices of this mesh (axis `BATCH_AXIS`), or None.
    mesh: Any = eqx.field(static=True, default=None)

    def excitations(self, emg_model: EMGExcitation) -> list:
        return [emg_model(ts, u) if emg else u
                for ts, u, emg in zip(self.ts, self.drive, self.uses_emg)]

    def simulate_units(self, theta: dict, adjoint) -> tuple[list, list, list, Model]:
        """Per group: states at the unit samples, the solver's success flags and excitations."""
        model, emg_model = apply_parameters(self.model, self.emg_model, self.params, theta["phys"],
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
                y_free = jax.tree_util.tree_map(lambda a, i=free_idx: a[i], theta["shoot"])
                y0 = jax.tree_util.tree_map(
                    lambda a, b, first=first: jnp.where(
                        first.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                    y_first, y_free)

            if self.structured and isinstance(adjoint, diffrax.ForwardMode):
                ys, ok = self._structured_group(theta, start, us, first, trial_idx, free_idx,
                                                ts, exc, y_first)
            else:
                def one(model_, y0_, ts_, exc_):
                    sol = integrate(model_, y0_, ts_, exc_, solver=self.solver, rtol=self.rtol,
                                    atol=self.atol, max_steps=self.max_steps, adjoint=adjoint,
                                    throw=False)
                    return sol.ys, sol.result == diffrax.RESULTS.successful

                ys, ok = _map_units(one, model, (y0, ts, exc), self.mesh, self.solver)
            out_states.append(ys)
            out_ok.append(ok)
        return out_states, out_ok, u_trials, model

    def _structured_group(self, theta, start, us, first, trial_idx, free_idx, ts, exc,
                          y_first):
        """The group's simulation as a function of (parameters, each unit's own initial
        state) with a custom forward-mode rule (`_unit_jacobians`)."""
        d = self.model.n_dofs
        p, unravel_p = jax.flatten_util.ravel_pytree(theta["phys"])
        _, unravel_y = jax.flatten_util.ravel_pytree(
            jax.tree_util.tree_map(lambda a: a[0], y_first))
        if first.all():  # a trial's first segment starts from (q0, qdot0) at equilibrium
            z = jnp.concatenate([start["q0"][trial_idx], start["qdot0"][trial_idx]], axis=1)
        elif not first.any():  # a later segment from its free shooting state
            z = jax.vmap(lambda y: jax.flatten_util.ravel_pytree(y)[0])(
                jax.tree_util.tree_map(lambda a: a[free_idx], theta["shoot"]))
        else:  # pragma: no cover - build_problem groups first and later segments apart
            raise AssertionError("a group mixes first and later shooting segments")
        n_t = ts.shape[1]
        flat, ok = _unit_simulation(p, z, ts=ts, exc=exc, problem=self,
                                    spec=(bool(first[0]), d, unravel_p, unravel_y, n_t))
        ys = jax.vmap(jax.vmap(unravel_y))(flat.reshape(len(us), n_t, -1))
        return ys, ok

    def residual_parts(self, theta: dict, adjoint=None) -> tuple[Array, Array, Array]:
        """(kinematic, moment, continuity) residual vectors, each possibly empty. Entries
        masked out (a later segment's first sample, trials without moments) are zeros."""
        adjoint = diffrax.ForwardMode() if adjoint is None else adjoint
        states, oks, _, model = self.simulate_units(theta, adjoint)
        rq, rm, ends, end_ok = [], [], [], []
        for group, ys, ok in zip(self.groups, states, oks):
            us = [self.units[j] for j in group]
            q_meas = jnp.stack([self.q[u.trial][u.start:u.stop + 1] for u in us])
            keep = segment_weights(us, q_meas.shape[1])
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
                lambda a, ok=ok: jnp.where(ok.reshape((-1,) + (1,) * (a.ndim - 2)), a[:, -1], 0.0),
                ys))
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


def _map_units(fn, shared, units: tuple, mesh, solver):
    """`vmap` of fn(shared, *unit_arguments) over the units' leading axis; with a mesh, the
    units are split over its devices and the result is replicated on every device.

    Explicit solvers run under `shard_map`, each device its own solver loop over its units.
    Implicit ones cannot (lineax rejects shard_map's manual axes, lineax issue #185): XLA
    partitions the vmapped loop instead, whose devices then step together with a
    collective per step (slower; on 2 CPU devices slower than one)."""
    if mesh is None:
        return jax.vmap(lambda *u: fn(shared, *u))(*units)
    from ..distributed import BATCH_AXIS, _is_implicit

    n = jax.tree_util.tree_leaves(units)[0].shape[0]
    k = mesh.devices.size
    pad = -n % k
    if pad:  # repeat the last unit; dropped below
        units = jax.tree_util.tree_map(
            lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), units)
    spec = jax.sharding.PartitionSpec(BATCH_AXIS)
    if _is_implicit(solver):
        sharding = jax.sharding.NamedSharding(mesh, spec)
        units = jax.tree_util.tree_map(
            lambda a: jax.lax.with_sharding_constraint(a, sharding), units)
        out = jax.vmap(lambda *u: fn(shared, *u))(*units)
    else:
        dynamic, static = eqx.partition(shared, eqx.is_array)

        def local(dynamic, *u):
            sh = eqx.combine(dynamic, static)
            return jax.vmap(lambda *v: fn(sh, *v))(*u)

        out = jax.shard_map(local, mesh=mesh,
                            in_specs=(jax.sharding.PartitionSpec(),) + (spec,) * len(units),
                            out_specs=spec, check_vma=False)(dynamic, *units)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.tree_util.tree_map(
        lambda a: jax.lax.with_sharding_constraint(a[:n], replicated), out)


def _unit_run(p, z, ts, exc, problem, spec):
    """One unit: its states at its samples, flattened (time·state,), and success."""
    first, d, unravel_p, unravel_y, _ = spec
    model, _ = apply_parameters(problem.model, problem.emg_model, problem.params, unravel_p(p),
                                problem.joint_index)
    y0 = model.initial_state(z[:d], z[d:], exc[0]) if first else unravel_y(z)
    sol = integrate(model, y0, ts, exc, solver=problem.solver, rtol=problem.rtol,
                    atol=problem.atol, max_steps=problem.max_steps,
                    adjoint=diffrax.ForwardMode(), throw=False)
    flat = jax.vmap(lambda y: jax.flatten_util.ravel_pytree(y)[0])(sol.ys).reshape(-1)
    return flat, sol.result == diffrax.RESULTS.successful


@eqx.filter_custom_jvp
def _unit_simulation(p, z, *, ts, exc, problem, spec):
    """Units of one group: (parameters p, initial states z (units, nz)) -> flattened states
    (units, time·state) and success flags."""
    return _map_units(lambda sh, z_, t_, e_: _unit_run(sh[0], z_, t_, e_, sh[1], spec),
                      (p, problem), (z, ts, exc), problem.mesh, problem.solver)


@_unit_simulation.def_jvp
def _unit_jacobians(primals, tangents, *, ts, exc, problem, spec):
    """Forward mode by unit. A unit's states depend on the parameters and on its own initial
    state only, so each unit is differentiated in n_p + n_z directions (its Jacobian blocks,
    `jacfwd`), not in every direction of θ: a dense `jacfwd` would push all of θ's
    directions (every trial's and segment's initial state) through every unit. The tangent
    is then the blocks applied to the tangents of p and of the unit's z."""
    p, z = primals
    tp, tz = tangents

    def blocks(shared, z_, t_, e_):
        p_, pr = shared

        def f(pz):
            flat, ok = _unit_run(pz[0], pz[1], t_, e_, pr, spec)
            return flat, (flat, ok)

        (jp, jz), (flat, ok) = jax.jacfwd(f, has_aux=True)((p_, z_))
        return flat, ok, jp, jz

    flat, ok, jp, jz = _map_units(blocks, (p, problem), (z, ts, exc), problem.mesh,
                                  problem.solver)
    t_out = jnp.zeros_like(flat)
    if tp is not None:
        t_out = t_out + jnp.einsum("uop,p->uo", jp, tp)
    if tz is not None:
        t_out = t_out + jnp.einsum("uoz,uz->uo", jz, tz)
    return (flat, ok), (t_out, None)


def segment_weights(us, n: int) -> np.ndarray:
    """(units, n) weights: the first sample of a later segment is the previous segment's
    last, so it is counted once."""
    keep = np.ones((len(us), n))
    keep[[k for k, u in enumerate(us) if u.segment > 0], 0] = 0.0
    return keep


# -- results -----------------------------------------------------------------------------------
