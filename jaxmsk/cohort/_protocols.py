"""Movement protocols and the controller that turns them into muscle excitations.

A protocol is a target joint trajectory q_d(t): flexion/extension at a slow, medium or fast
pace (sinusoids at 0.25, 0.5 and 1 Hz, as paced by a metronome in wrist studies such as
Zhang et al. 2022) or free movement (a random sum of five sinusoids between 0.1 and 1.2 Hz).
Amplitudes and centres are drawn per trial inside the coordinate's range and the movement
fades in over the first second, so every trial starts at rest.

Excitations come from a feedback controller run inside the forward simulation (a crude
model of the nervous system, not an optimal controller): inverse dynamics of the target
plus PD feedback gives the wanted joint moments, which are shared among the muscles in
proportion to F_max·moment arm (least squares), on top of a per-trial co-contraction level
and slow physiological fluctuations. Agonists are excited when the wanted moment is on their
side, antagonists keep the co-contraction level: the agonist/antagonist patterns of
voluntary movement.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

PROTOCOLS = ("slow", "medium", "fast", "free")
PACE_HZ = {"slow": 0.25, "medium": 0.5, "fast": 1.0}
FREE_BAND_HZ = (0.1, 1.2)
FREE_COMPONENTS = 5
FADE_IN_S = 1.0
AMPLITUDE_FRACTION = (0.55, 0.85)  # of the half-range
CENTRE_JITTER = 0.1  # of the half-range
COCONTRACTION = (0.03, 0.15)
MUSCLE_WEIGHT = (0.7, 1.3)
FLUCTUATION = 0.02  # excitation amplitude of physiological fluctuations
FLUCTUATION_BAND_HZ = (0.5, 4.0)
MIN_EXCITATION = 0.01


class TrialPlan(eqx.Module):
    """Everything random about one trial (a leading trial axis when batched)."""

    centre: Array  # (dofs,) rad
    freqs: Array  # (dofs, K) Hz
    amps: Array  # (dofs, K) rad
    phases: Array  # (dofs, K) rad
    cocontraction: Array  # (muscles,) excitation
    weights: Array  # (muscles,)
    fluct_freqs: Array  # (muscles, 3) Hz
    fluct_phases: Array  # (muscles, 3)

    def _fade(self, t):
        s = jnp.clip(t / FADE_IN_S, 0.0, 1.0)
        return s**3 * (10 - 15 * s + 6 * s**2)

    def target(self, t) -> Array:
        """q_d(t) (dofs,)."""
        w = 2 * jnp.pi * self.freqs
        osc = jnp.sum(self.amps * (jnp.sin(w * t + self.phases) - jnp.sin(self.phases)), axis=-1)
        return self.centre + self._fade(t) * osc

    def target_derivatives(self, t):
        """(q_d, q̇_d, q̈_d) at t, by forward-mode autodiff."""
        def first(tt):
            return jax.jvp(self.target, (tt,), (jnp.ones_like(tt),))
        (q, qd), (_, qdd) = jax.jvp(first, (t,), (jnp.ones_like(t),))
        return q, qd, qdd

    def fluctuation(self, t) -> Array:
        return FLUCTUATION * jnp.mean(jnp.sin(2 * jnp.pi * self.fluct_freqs * t
                                              + self.fluct_phases), axis=-1) * jnp.sqrt(2.0)


def plan_trial(key: PRNGKeyArray, protocol: str, ranges: Array, n_muscles: int,
               duration: float) -> TrialPlan:
    """Draw one trial of `protocol` for coordinates with `ranges` (dofs, 2) rad."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}.")
    dtype = ranges.dtype
    n = ranges.shape[0]
    ks = jax.random.split(key, 9)
    mid = 0.5 * (ranges[:, 0] + ranges[:, 1])
    half = 0.5 * (ranges[:, 1] - ranges[:, 0])
    centre = mid + CENTRE_JITTER * half * jax.random.uniform(ks[0], (n,), dtype, -1.0, 1.0)
    room = half * (1.0 - CENTRE_JITTER)
    amp = room * jax.random.uniform(ks[1], (n,), dtype, *AMPLITUDE_FRACTION)
    if protocol == "free":
        lo, hi = FREE_BAND_HZ
        freqs = jax.random.uniform(ks[2], (n, FREE_COMPONENTS), dtype, lo, hi)
        phases = jax.random.uniform(ks[3], (n, FREE_COMPONENTS), dtype, 0.0, 2 * jnp.pi)
        raw = 1.0 / freqs
        # Scale so that the largest excursion over the trial is `amp` (checked on a grid).
        t = jnp.linspace(0.0, duration, int(duration * 200) + 1, dtype=dtype)
        sig = jnp.sum(raw[None] * (jnp.sin(2 * jnp.pi * freqs[None] * t[:, None, None]
                                          + phases[None]) - jnp.sin(phases[None])), axis=-1)
        amps = raw * (amp / jnp.max(jnp.abs(sig), axis=0))[:, None]
    else:
        # One component (the others have zero amplitude, so every protocol has the same
        # shapes and trials stack); φ ∈ {0, π}: symmetric about the centre, either way first.
        k = FREE_COMPONENTS
        freqs = jnp.full((n, k), PACE_HZ[protocol], dtype)
        phases = jnp.zeros((n, k), dtype).at[:, 0].set(
            jax.random.choice(ks[2], jnp.array([0.0, jnp.pi], dtype), (n,)))
        amps = jnp.zeros((n, k), dtype).at[:, 0].set(amp)
    m = n_muscles
    return TrialPlan(
        centre=centre, freqs=freqs, amps=amps, phases=phases,
        cocontraction=jax.random.uniform(ks[4], (), dtype, *COCONTRACTION)
        * jax.random.uniform(ks[5], (m,), dtype, *MUSCLE_WEIGHT),
        weights=jax.random.uniform(ks[6], (m,), dtype, *MUSCLE_WEIGHT),
        fluct_freqs=jax.random.uniform(ks[7], (m, 3), dtype, *FLUCTUATION_BAND_HZ),
        fluct_phases=jax.random.uniform(ks[8], (m, 3), dtype, 0.0, 2 * jnp.pi),
    )


class Controller(eqx.Module):
    """Excitation = co-contraction + fluctuation + least-squares share of the wanted moment.

    wanted moment τ = M(q)·q̈_d + bias(q, q̇) − passive(q, q̇) + K_p(q_d − q) + K_d(q̇_d − q̇),
    with K_p = `stiffness` × each DoF's muscle moment capacity Σ_j |r_j|F_max,j (N·m/rad)
    and K_d critically damping that stiffness on the DoF's inertia; the target is taken
    `lead` seconds ahead (anticipation), which offsets part of the activation lag.

    On the built-in wrist (inertia 1.5e-3 kg·m²) stiffness 2 made the loop ring at about
    9 Hz against the activation lag (high-pass RMS of the activations 0.015 over 3 subjects
    × 4 trials of 6 s); stiffness 1 brings that to 0.004 at the cost of tracking (RMS error
    of the slow trials 0.027 → 0.046 rad); a 60 ms lead wins back most of it (0.034 rad).
    """

    stiffness: float = eqx.field(static=True, default=1.0)  # capacity fraction per rad
    damping_ratio: float = eqx.field(static=True, default=1.0)
    regularisation: float = eqx.field(static=True, default=1e-6)
    lead: float = eqx.field(static=True, default=0.06)  # s, reference taken this far ahead

    def gains(self, model, q_ref):
        _, r = model.path.length_and_moment_arms(q_ref)
        fmax = model.muscles.params.max_isometric_force
        capacity = jnp.abs(r).T @ fmax  # (dofs,) N·m
        kp = self.stiffness * capacity
        inertia = jnp.diag(model.skeleton.mass_matrix(q_ref))
        kd = 2 * self.damping_ratio * jnp.sqrt(kp * inertia)
        return kp, kd

    def excitation(self, model, plan: TrialPlan, gains, t, q, qdot) -> Array:
        qd, qd_dot, qd_ddot = plan.target_derivatives(t + self.lead)
        kp, kd = gains
        passive = sum((p.moment(q, qdot) for p in model.passive), jnp.zeros_like(q))
        tau = (model.skeleton.mass_matrix(q) @ qd_ddot + model.skeleton.bias_forces(q, qdot)
               - passive + kp * (qd - q) + kd * (qd_dot - qdot))
        _, r = model.path.length_and_moment_arms(q)
        a = model.muscles.params.max_isometric_force[:, None] * r  # (muscles, dofs)
        base = plan.cocontraction + plan.fluctuation(t)
        tau_dev = tau - a.T @ base
        gram = (a.T @ a
                + self.regularisation * jnp.trace(a.T @ a) * jnp.eye(a.shape[1], dtype=a.dtype))
        share = a @ jnp.linalg.solve(gram, tau_dev)
        return jnp.clip(base + plan.weights * share, MIN_EXCITATION, 1.0)


@eqx.filter_jit
def _directional_moments(model, grid, i: int, cocontraction: float):
    """Static joint moment about coordinate i over `grid` with the muscles on one side fully
    excited (and the others at `cocontraction`): (towards +q, towards −q), both >= 0 where
    the muscles can move the joint that way."""
    c = model.path.centre

    def moment(qi, sign):
        q = c.at[i].set(qi)
        _, r = model.path.length_and_moment_arms(q)
        e = jnp.where(sign * r[:, i] > 0, 1.0, cocontraction)
        st = model.initial_state(q, None, e)
        passive = sum((p.moment(q, jnp.zeros_like(q)) for p in model.passive), jnp.zeros_like(q))
        return model.outputs(st).muscle_moments[i] + passive[i]

    return jax.vmap(lambda x: moment(x, 1.0))(grid), -jax.vmap(lambda x: moment(x, -1.0))(grid)


def default_ranges(model, *, capacity_fraction: float = 0.2, cocontraction: float = 0.05,
                   n_grid: int = 49) -> Array:
    """Coordinate ranges for protocols, (dofs, 2) rad: where the muscles can still move the
    joint both ways.

    For each coordinate (the others at the path's centre), over 90 % of the range its path
    was fitted on (centre ± scale), the static joint moment is computed with the muscles on
    one side fully excited and the rest at `cocontraction`, in muscle equilibrium. The range
    is the interval around the centre where both directions reach at least
    `capacity_fraction` of their best. On the built-in wrist, flexor force falls steeply
    with flexion (FCU at full activation gives 2.9 N at 0.8 rad), so this range is
    asymmetric: −1.08 to +0.36 rad.
    """
    c, s = model.path.centre, model.path.scale
    d = model.n_dofs
    lows, highs = [], []
    for i in range(d):
        grid = jnp.linspace(c[i] - 0.9 * s[i], c[i] + 0.9 * s[i], n_grid)
        up, down = _directional_moments(model, grid, i, cocontraction)
        ok = np.asarray((up >= capacity_fraction * up.max())
                        & (down >= capacity_fraction * down.max()))
        g = np.asarray(grid)
        centre_idx = int(np.argmin(np.abs(g - float(c[i]))))
        if not ok[centre_idx]:
            raise ValueError(f"default_ranges: at the centre of coordinate {i} the muscles cannot "
                             "move it both ways; pass `ranges=` explicitly.")
        lo = hi = centre_idx
        while lo > 0 and ok[lo - 1]:
            lo -= 1
        while hi < n_grid - 1 and ok[hi + 1]:
            hi += 1
        lows.append(g[lo])
        highs.append(g[hi])
    return jnp.stack([jnp.asarray(lows), jnp.asarray(highs)], axis=-1).astype(c.dtype)


__all__ = ["PROTOCOLS", "PACE_HZ", "TrialPlan", "plan_trial", "Controller", "default_ranges"]

