"""De Groote–Fregly 2016 muscle–tendon curves (OpenSim 4.x variant and the published one).

Reference: De Groote F., Kinney A.L., Rao A.V., Fregly B.J. (2016) "Evaluation of direct
collocation optimal control problem formulations for solving the muscle redundancy
problem", Ann. Biomed. Eng. 44:2922–2936 (supplementary material), and OpenSim 4.x
`OpenSim/Actuators/DeGrooteFregly2016Muscle.h`, whose constants are the default here.

Notation: l̃M normalised fibre length (÷ l_opt), ṽM normalised fibre velocity
(÷ v_max·l_opt, negative = shortening), l̃T normalised tendon length (÷ l_ts),
f̃T normalised tendon force (÷ F_max). All curves are dimensionless and elementwise.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

# Gaussian-like denominators closer to zero than this are treated as zero: the term's
# value there is exactly 0 and its gradient is guarded (double-where), never NaN.
_GAUSS_DEN_EPS = 1e-12
# The tendon curve's inverse is a logarithm; its argument is floored here (domain edge).
LOG_FLOOR = 1e-300


def _gaussian_like(x: Array, b1: float, b2: float, b3: float, b4: float) -> Array:
    """b1·exp(−½(x − b2)² / (b3 + b4·x)²), exactly 0 where the denominator vanishes."""
    den = b3 + b4 * x
    ok = jnp.abs(den) > _GAUSS_DEN_EPS
    safe_den = jnp.where(ok, den, 1.0)
    return jnp.where(ok, b1 * jnp.exp(-0.5 * ((x - b2) / safe_den) ** 2), 0.0)


@dataclasses.dataclass(frozen=True)
class DeGrooteCurves:
    """Constants of the De Groote–Fregly 2016 curves; a frozen, hashable, non-pytree record.

    Use `DeGrooteCurves.opensim()` (the default everywhere in jaxmsk: identical to OpenSim
    4.x `DeGrooteFregly2016Muscle`) or `DeGrooteCurves.published()` (the constants printed
    in the paper's supplement). Defining properties are checked on construction, to
    `property_tolerance`: f_act(1) = 1, f_v(0) = 1, f_v(−1) = 0, f_pas(passive_zero) = 0,
    f_T(1 + tendon_strain) = 1, plus the signs that make f_v, f_pas and f_T increasing.

    Attributes:
        active_fl: the 12 constants (b11, b21, b31, b41, b12, ..., b43) of the three
            Gaussian-like terms of the active force–length curve.
        active_force_width_scale: s ≥ 1 widens the active curve about l̃M = 1
            (OpenSim's `active_force_width_scale`): x = (l̃M − 1)/s + 1.
        kpe: passive exponential shape factor.
        passive_strain: e0, the fibre strain at one normalised passive force.
        passive_zero: l̃M at which the passive curve crosses zero (0.2 in OpenSim, where
            the curve is shifted so that it is never negative within [0.2, 1.8]; 1.0 in
            the paper).
        c1, c2, c3: tendon curve constants, f_T = c1·exp(kT·(l̃T − c2)) − c3.
        kt: tendon stiffness factor kT.
        d1, d2, d3, d4: force–velocity constants, f_v = d1·asinh(d2·ṽ + d3) + d4.
        property_tolerance: how exactly the defining properties must hold.
        name: a label used in reprs and reports.
    """

    active_fl: tuple[float, ...]
    active_force_width_scale: float
    kpe: float
    passive_strain: float
    passive_zero: float
    c1: float
    c2: float
    c3: float
    kt: float
    d1: float
    d2: float
    d3: float
    d4: float
    property_tolerance: float = 1e-12
    name: str = "custom"

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def opensim(
        cls,
        *,
        active_force_width_scale: float = 1.0,
        passive_fiber_strain_at_one_norm_force: float = 0.6,
        tendon_strain_at_one_norm_force: float = 0.049,
    ) -> "DeGrooteCurves":
        """OpenSim 4.x constants (opensim-core `DeGrooteFregly2016Muscle.h`).

        OpenSim departs from the paper in three documented ways, all kept here: b11 and
        d1, d4 are re-solved so that f_act(1) = 1, f_v(−1) = 0 and f_v(0) = 1 exactly;
        the passive curve is shifted to cross zero at l̃M = 0.2; the tendon curve uses
        c2 = 1, c3 = 0.2 (f_T(1) = 0) and kT = ln((1 + c3)/c1)/(1 + εT − c2) with εT the
        tendon strain at one normalised force (0.049 → kT ≈ 36.5665).
        """
        c1, c2, c3 = 0.2, 1.0, 0.2
        kt = math.log((1.0 + c3) / c1) / (1.0 + tendon_strain_at_one_norm_force - c2)
        return cls(
            active_fl=(
                0.8150671134243542, 1.055033428970575, 0.162384573599574, 0.063303448465465,
                0.433004984392647, 0.716775413397760, -0.029947116970696, 0.200356847296188,
                0.1, 1.0, 0.353553390593274, 0.0,
            ),
            active_force_width_scale=active_force_width_scale,
            kpe=4.0,
            passive_strain=passive_fiber_strain_at_one_norm_force,
            passive_zero=0.2,
            c1=c1, c2=c2, c3=c3, kt=kt,
            d1=-0.3211346127989808, d2=-8.149, d3=-0.374, d4=0.8825327733249912,
            property_tolerance=1e-12,
            name="opensim",
        )

    @classmethod
    def published(cls, *, active_force_width_scale: float = 1.0) -> "DeGrooteCurves":
        """The constants printed in De Groote et al. (2016), supplementary material.

        They are rounded, so the defining properties hold only approximately (checked to
        0.1: f_v(0) ≈ 1.0023, f_v(−1) ≈ 0.0121, f_act(1) ≈ 0.9993, f_T(1.049) ≈ 1.074,
        i.e. the tendon reaches one normalised force at 4.74 % strain); the passive
        curve crosses zero at l̃M = 1 and is negative below; tendon c2 = 0.995,
        c3 = 0.25, kT = 35 (so f_T(1) < 0).
        """
        return cls(
            active_fl=(
                0.815, 1.055, 0.162, 0.063,
                0.433, 0.717, -0.030, 0.200,
                0.100, 1.000, 0.354, 0.000,
            ),
            active_force_width_scale=active_force_width_scale,
            kpe=4.0,
            passive_strain=0.6,
            passive_zero=1.0,
            c1=0.2, c2=0.995, c3=0.25, kt=35.0,
            d1=-0.318, d2=-8.149, d3=-0.374, d4=0.886,
            property_tolerance=0.1,
            name="published",
        )

    # -- validation ---------------------------------------------------------------------
    def __post_init__(self):
        if len(self.active_fl) != 12:
            raise ValueError(
                "DeGrooteCurves.active_fl needs 12 constants (b11..b43), got "
                f"{len(self.active_fl)}."
            )
        if not self.active_force_width_scale >= 1.0:
            raise ValueError(
                "DeGrooteCurves.active_force_width_scale must be >= 1 (OpenSim's limit), got "
                f"{self.active_force_width_scale}; use 1.0 for the standard curve."
            )
        for field, value in (("kpe", self.kpe), ("passive_strain", self.passive_strain),
                             ("c1", self.c1), ("kt", self.kt)):
            if not value > 0:
                raise ValueError(f"DeGrooteCurves.{field} must be positive, got {value}.")
        if not self.d1 * self.d2 > 0:
            raise ValueError("DeGrooteCurves: d1·d2 must be positive so that f_v increases.")
        tol = self.property_tolerance
        checks = {
            "f_act(1) = 1": (math.exp(0.0), self._py_active(1.0)),
            "f_v(0) = 1": (1.0, self._py_fv(0.0)),
            "f_v(-1) = 0": (0.0, self._py_fv(-1.0)),
            "f_pas(passive_zero) = 0": (0.0, self._py_passive(self.passive_zero)),
            "f_T(1 + strain at one norm force) ~ 1": (
                1.0, self._py_tendon(1.0 + self.tendon_strain)),
        }
        if self.name == "published":
            # The paper's tendon strain is defined through kT = 35 with c2 = 0.995.
            checks.pop("f_T(1 + strain at one norm force) ~ 1")
            checks["f_T(1.049) ~ 1"] = (1.0, self._py_tendon(1.049))
        for label, (want, got) in checks.items():
            if not abs(want - got) <= tol:
                raise ValueError(
                    f"DeGrooteCurves({self.name}) violates its defining property {label}: "
                    f"got {got!r} (tolerance {tol})."
                )

    # Plain-float versions used only to check the constants.
    def _py_active(self, l: float) -> float:
        b = self.active_fl
        x = (l - 1.0) / self.active_force_width_scale + 1.0
        return sum(
            b[i] * math.exp(-0.5 * (x - b[i + 1]) ** 2 / (b[i + 2] + b[i + 3] * x) ** 2)
            for i in (0, 4, 8)
        )

    def _py_fv(self, v: float) -> float:
        return self.d1 * math.asinh(self.d2 * v + self.d3) + self.d4

    def _py_passive(self, l: float) -> float:
        offset = math.exp(self.kpe * (self.passive_zero - 1.0) / self.passive_strain)
        return ((math.exp(self.kpe * (l - 1.0) / self.passive_strain) - offset)
                / (math.exp(self.kpe) - offset))

    def _py_tendon(self, l: float) -> float:
        return self.c1 * math.exp(self.kt * (l - self.c2)) - self.c3

    @property
    def tendon_strain(self) -> float:
        """Tendon strain at one normalised force, (ln((1 + c3)/c1))/kT + c2 − 1."""
        return math.log((1.0 + self.c3) / self.c1) / self.kt + self.c2 - 1.0

    # -- curves -------------------------------------------------------------------------
    def active_force_length(self, norm_fiber_length: ArrayLike) -> Array:
        """Active force–length multiplier f_act(l̃M), dimensionless.

        Domain l̃M ∈ [0.2, 1.8] (OpenSim's fibre-length bounds; defined for all reals).
        Range [0, 1], f_act(1) = 1. Sum of three Gaussian-like terms in
        x = (l̃M − 1)/s + 1 with s the width scale. Where a term's denominator b3 + b4·x
        vanishes (x ≈ 0.149 for the second term) the term is 0 with a finite gradient.
        """
        l = jnp.asarray(norm_fiber_length)
        x = (l - 1.0) / self.active_force_width_scale + 1.0
        b = self.active_fl
        return (
            _gaussian_like(x, *b[0:4]) + _gaussian_like(x, *b[4:8]) + _gaussian_like(x, *b[8:12])
        )

    def passive_force_length(self, norm_fiber_length: ArrayLike) -> Array:
        """Passive fibre force multiplier f_pas(l̃M), dimensionless.

        f_pas = (exp(kPE·(l̃M − 1)/e0) − o)/(exp(kPE) − o), o = exp(kPE·(z − 1)/e0) with z
        the zero crossing (0.2 OpenSim, 1.0 paper). Domain all reals (negative below z);
        f_pas(1 + e0) = 1.
        """
        l = jnp.asarray(norm_fiber_length)
        offset = math.exp(self.kpe * (self.passive_zero - 1.0) / self.passive_strain)
        return (jnp.exp(self.kpe * (l - 1.0) / self.passive_strain) - offset) / (
            math.exp(self.kpe) - offset
        )

    def force_velocity(self, norm_fiber_velocity: ArrayLike) -> Array:
        """Force–velocity multiplier f_v(ṽM) = d1·asinh(d2·ṽM + d3) + d4, dimensionless.

        Domain ṽM ∈ [−1, 1] (defined for all reals), range [0, 1.7943] on that domain;
        f_v(−1) = 0, f_v(0) = 1. Negative velocity is shortening.
        """
        v = jnp.asarray(norm_fiber_velocity)
        return self.d1 * jnp.arcsinh(self.d2 * v + self.d3) + self.d4

    def force_velocity_inverse(self, force_velocity_multiplier: ArrayLike) -> Array:
        """ṽM = (sinh((f_v − d4)/d1) − d3)/d2, the inverse of `force_velocity`.

        Domain f_v ∈ [0, 1.7943] ↔ ṽM ∈ [−1, 1]; finite for |f_v − d4| < 700·|d1|.
        """
        f = jnp.asarray(force_velocity_multiplier)
        return (jnp.sinh((f - self.d4) / self.d1) - self.d3) / self.d2

    def tendon_force_length(self, norm_tendon_length: ArrayLike) -> Array:
        """Tendon force multiplier f_T(l̃T) = c1·exp(kT·(l̃T − c2)) − c3, dimensionless.

        Domain l̃T around [0.95, 1.1]; f_T(1) = 0 (OpenSim), f_T → −c3 as l̃T → −∞.
        """
        l = jnp.asarray(norm_tendon_length)
        return self.c1 * jnp.exp(self.kt * (l - self.c2)) - self.c3

    def tendon_force_length_derivative(self, norm_tendon_length: ArrayLike) -> Array:
        """d f_T / d l̃T = c1·kT·exp(kT·(l̃T − c2)) (normalised tendon stiffness)."""
        l = jnp.asarray(norm_tendon_length)
        return self.c1 * self.kt * jnp.exp(self.kt * (l - self.c2))

    def tendon_force_length_inverse(self, norm_tendon_force: ArrayLike) -> Array:
        """l̃T = ln((f̃T + c3)/c1)/kT + c2, the inverse of `tendon_force_length`.

        Domain f̃T > −c3 (OpenSim's state bounds are [0, 5]); at or below −c3 the
        logarithm's argument is floored at 1e-300 so the value stays finite.
        """
        f = jnp.asarray(norm_tendon_force)
        arg = (f + self.c3) / self.c1
        ok = arg > LOG_FLOOR
        log = jnp.where(ok, jnp.log(jnp.where(ok, arg, 1.0)), math.log(LOG_FLOOR))
        return log / self.kt + self.c2


__all__ = ["DeGrooteCurves"]
