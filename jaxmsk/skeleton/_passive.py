"""Passive joint moments: damping, elasticity and joint-range limits.

Every element here has `moment(q, qdot) -> (n,)`: the generalised force (N·m for rotational
coordinates) on each coordinate, positive accelerating q, so that elements add up and enter
the equation of motion as M·q̈ + bias = τ_muscles + Σ moment(q, q̇).

- `JointPassive`: jaxmsk's smooth per-DoF model (C∞, finite gradients everywhere).
- `CoordinateLimitForce`, `SpringGeneralizedForce`: OpenSim 4.x elements reproduced
  exactly, with OpenSim's parameters and units, so that `.osim` files map onto them.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import (
    as_float_array,
    check_finite,
    check_nonnegative,
    check_positive,
    finite,
    index,
    is_concrete,
    nonnegative,
    positive,
)
from .._numerics import smoothstep5
from ._base import AbstractPassive

_DEG = math.pi / 180.0  # SimTK_DEGREE_TO_RADIAN


def _vector(owner: str, q: ArrayLike, name: str) -> Array:
    q = as_float_array(q)
    if q.ndim != 1:
        raise ValueError(f"{owner}: {name} has shape {q.shape}; pass one sample of shape "
                         "(n_dofs,) and batch with jax.vmap.")
    return q


class JointPassive(AbstractPassive):
    """Per-DoF passive moments: viscous damping, a linear spring and smooth range limits.

        moment = −damping·q̇ − stiffness·(q − rest_angle)
                 − limit_stiffness·w·softplus((q − upper_limit)/w)
                 + limit_stiffness·w·softplus((lower_limit − q)/w),   w = limit_transition.

    The limit terms are ≈ 0 well inside the range (below k·w·e^(−Δ/w) at a distance Δ from a
    limit; k·w·ln 2 exactly at it), grow linearly with slope limit_stiffness past it, and
    are C∞. Infinite limits mean none, with exactly zero moment and finite gradients.

    Args (each scalar or per DoF (n,); all-scalar arguments make one DoF):
        damping: B >= 0 (N·m·s/rad).
        stiffness: K >= 0 (N·m/rad) about rest_angle (rad).
        lower_limit, upper_limit: joint range (rad), lower < upper; ±inf for none.
        limit_stiffness: >= 0 (N·m/rad), slope of the limit moment beyond a limit.
        limit_transition: w > 0 (rad), width of the smooth onset.
    """

    damping: Float[Array, " dofs"]
    stiffness: Float[Array, " dofs"]
    rest_angle: Float[Array, " dofs"]
    lower_limit: Float[Array, " dofs"]
    upper_limit: Float[Array, " dofs"]
    limit_stiffness: Float[Array, " dofs"]
    limit_transition: Float[Array, " dofs"]

    def __init__(self, damping: ArrayLike = 0.0, stiffness: ArrayLike = 0.0,
                 rest_angle: ArrayLike = 0.0, lower_limit: ArrayLike = -jnp.inf,
                 upper_limit: ArrayLike = jnp.inf, limit_stiffness: ArrayLike = 0.0,
                 limit_transition: ArrayLike = 0.1):
        names = ("damping", "stiffness", "rest_angle", "lower_limit", "upper_limit",
                 "limit_stiffness", "limit_transition")
        values = [as_float_array(v) for v in (damping, stiffness, rest_angle, lower_limit,
                                               upper_limit, limit_stiffness, limit_transition)]
        for name, v in zip(names, values):
            if v.ndim > 1:
                raise ValueError(f"JointPassive.{name} has shape {v.shape}; give a scalar or "
                                 "one value per DoF (1-D).")
        try:
            shape = jnp.broadcast_shapes(*(v.shape for v in values))
        except ValueError:
            shapes = ", ".join(f"{n}={v.shape}" for n, v in zip(names, values))
            raise ValueError(
                f"JointPassive fields disagree on the number of DoFs ({shapes}).") from None
        shape = shape if shape != () else (1,)
        dtype = jnp.result_type(*values)
        v = {n: jnp.broadcast_to(x.astype(dtype), shape) for n, x in zip(names, values)}
        for n in ("damping", "stiffness", "limit_stiffness"):
            v[n] = check_nonnegative(f"JointPassive.{n}", v[n])
        v["rest_angle"] = check_finite("JointPassive.rest_angle", v["rest_angle"])
        v["limit_transition"] = check_positive("JointPassive.limit_transition",
                                               v["limit_transition"])
        lo, hi = v["lower_limit"], v["upper_limit"]
        msg = ("JointPassive limits must satisfy lower_limit < upper_limit (rad), neither NaN, "
               "lower_limit < +inf and upper_limit > -inf; use ±inf for no limit.")
        bad = lambda lo, hi: ~(lo < hi) | (lo == jnp.inf) | (hi == -jnp.inf)  # noqa: E731
        if is_concrete(lo) and is_concrete(hi):
            if np.asarray(bad(lo, hi)).any():
                raise ValueError(f"{msg} Got lower={np.asarray(lo).tolist()}, "
                                 f"upper={np.asarray(hi).tolist()}.")
        else:
            lo = eqx.error_if(lo, bad(lo, hi), msg)
        v["lower_limit"] = lo
        for n in names:
            setattr(self, n, v[n])

    @classmethod
    def none(cls, n: int) -> "JointPassive":
        """No passive moment on any of `n` DoFs (zero coefficients, infinite limits)."""
        return cls(damping=jnp.zeros(n))

    @property
    def n_dofs(self) -> int:
        return self.damping.shape[-1]

    def moment(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        """Passive generalised force on each DoF (N·m) at angles q (rad) and speeds q̇ (rad/s)."""
        q = _vector("JointPassive.moment", q, "q")
        qdot = _vector("JointPassive.moment", qdot, "qdot")
        if q.shape != (self.n_dofs,) or qdot.shape != (self.n_dofs,):
            raise ValueError(f"JointPassive.moment: q and qdot must have shape ({self.n_dofs},), "
                             f"got {q.shape} and {qdot.shape}.")
        w = self.limit_transition
        upper = self._limit(q - self.upper_limit, self.upper_limit)
        lower = self._limit(self.lower_limit - q, self.lower_limit)
        return (-self.damping * qdot - self.stiffness * (q - self.rest_angle)
                + self.limit_stiffness * w * (lower - upper))

    def _limit(self, past: Array, limit: Array) -> Array:
        """softplus(past / w) with the double-where guard for an infinite limit (→ 0)."""
        finite = jnp.isfinite(limit)
        x = jnp.where(finite, past, 0.0) / self.limit_transition
        return jnp.where(finite, jax.nn.softplus(x), 0.0)


class CoordinateLimitForce(AbstractPassive):
    """OpenSim's `CoordinateLimitForce` on one coordinate, reproduced exactly.

    With q in rad, w = π/180 (rotational; 1 for a translational coordinate), stiffnesses
    K_up = upper_stiffness/w, K_lo = lower_stiffness/w, limits q_up = w·upper_limit,
    q_lo = w·lower_limit, Δ = w·transition and S(x) Simbody's quintic step
    10x³ − 15x⁴ + 6x⁵ clamped to [0, 1]:

        s_up = S((q − q_up)/Δ),   s_lo = 1 − S((q − q_lo + Δ)/Δ)
        force = −K_up·s_up·(q − q_up) + K_lo·s_lo·(q_lo − q) − (damping/w)·(s_up + s_lo)·q̇

    Departure: OpenSim computes the damping switch as stiffness(q)/stiffness and so returns
    NaN for a zero stiffness; jaxmsk uses the switch directly (finite for any stiffness).

    Args (OpenSim's properties and units):
        coordinate: index of the coordinate in q (static).
        upper_stiffness, lower_stiffness: N·m/deg (N/m if translational), >= 0.
        upper_limit, lower_limit: deg (m if translational), lower < upper.
        damping: N·m·s/deg (N·s/m if translational), >= 0.
        transition: deg (m), > 0: width over which stiffness and damping switch on.
        rotational: True (default) for a rotational coordinate (static).
    """

    coordinate: int = eqx.field(static=True, converter=index("CoordinateLimitForce.coordinate"))
    upper_stiffness: Float[Array, ""] = eqx.field(
        converter=nonnegative("CoordinateLimitForce.upper_stiffness", scalar=True))
    upper_limit: Float[Array, ""] = eqx.field(
        converter=finite("CoordinateLimitForce.upper_limit", scalar=True))
    lower_stiffness: Float[Array, ""] = eqx.field(
        converter=nonnegative("CoordinateLimitForce.lower_stiffness", scalar=True))
    lower_limit: Float[Array, ""] = eqx.field(
        converter=finite("CoordinateLimitForce.lower_limit", scalar=True))
    damping: Float[Array, ""] = eqx.field(
        default=0.001, converter=nonnegative("CoordinateLimitForce.damping", scalar=True))
    transition: Float[Array, ""] = eqx.field(
        default=0.1, converter=positive("CoordinateLimitForce.transition", scalar=True))
    rotational: bool = eqx.field(default=True, static=True, converter=bool)

    def limit_force(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, ""]:
        """OpenSim's `calcLimitForce` at this coordinate's value q and speed q̇ (SI)."""
        w = _DEG if self.rotational else 1.0
        q_up, q_lo, delta = w * self.upper_limit, w * self.lower_limit, w * self.transition
        s_up = smoothstep5((q - q_up) / delta)
        s_lo = 1.0 - smoothstep5((q - (q_lo - delta)) / delta)
        f_up = -(self.upper_stiffness / w) * s_up * (q - q_up)
        f_lo = (self.lower_stiffness / w) * s_lo * (q_lo - q)
        return f_up + f_lo - (self.damping / w) * (s_up + s_lo) * qdot

    def moment(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        """Generalised force on every coordinate (zero except at `coordinate`)."""
        q, qdot = _pick("CoordinateLimitForce", self.coordinate, q, qdot)
        f = self.limit_force(q[self.coordinate], qdot[self.coordinate])
        return jnp.zeros_like(q * f).at[self.coordinate].set(f)


class SpringGeneralizedForce(AbstractPassive):
    """OpenSim's `SpringGeneralizedForce`: force = −stiffness·(q − rest_length) − viscosity·q̇.

    Args (OpenSim's properties; SI units of the coordinate, no degree conversion):
        coordinate: index of the coordinate in q (static).
        stiffness: N·m/rad (N/m if translational).
        rest_length: rad (m).
        viscosity: N·m·s/rad (N·s/m).
    Any sign is accepted, as in OpenSim (negative values add energy).
    """

    coordinate: int = eqx.field(static=True, converter=index("SpringGeneralizedForce.coordinate"))
    stiffness: Float[Array, ""] = eqx.field(
        default=0.0, converter=finite("SpringGeneralizedForce.stiffness", scalar=True))
    rest_length: Float[Array, ""] = eqx.field(
        default=0.0, converter=finite("SpringGeneralizedForce.rest_length", scalar=True))
    viscosity: Float[Array, ""] = eqx.field(
        default=0.0, converter=finite("SpringGeneralizedForce.viscosity", scalar=True))

    def moment(self, q: ArrayLike, qdot: ArrayLike) -> Float[Array, " dofs"]:
        """Generalised force on every coordinate (zero except at `coordinate`)."""
        q, qdot = _pick("SpringGeneralizedForce", self.coordinate, q, qdot)
        i = self.coordinate
        f = -self.stiffness * (q[i] - self.rest_length) - self.viscosity * qdot[i]
        return jnp.zeros_like(q * f).at[i].set(f)


def _pick(owner: str, index: int, q: ArrayLike, qdot: ArrayLike) -> tuple[Array, Array]:
    q = _vector(f"{owner}.moment", q, "q")
    qdot = _vector(f"{owner}.moment", qdot, "qdot")
    if q.shape != qdot.shape or index >= q.shape[0]:
        raise ValueError(f"{owner}.moment: q {q.shape} and qdot {qdot.shape} must be equal 1-D "
                         f"shapes that include coordinate index {index}.")
    return q, qdot
