"""MuJoCo's muscle model: rigid tendon, no pennation, piecewise-quadratic curves.

A JAX port of the muscle functions in MuJoCo's `src/engine/engine_util_misc.c`
(`mju_muscleGainLength`, `mju_muscleGain`, `mju_muscleBias`, `mju_muscleDynamicsTimescale`,
`mju_muscleDynamics`), written from the published formulas and checked live against the
`mujoco` Python bindings in float64 (see `tests/test_mujoco.py`).

Conventions, as in MuJoCo:

- Lengths are actuator lengths (m), velocities actuator velocities (m/s); for a muscle on a
  tendon with gear 1 these are the tendon's length and velocity.
- `gainprm = biasprm = (range0, range1, force, scale, lmin, lmax, vmax, fpmax, fvmax)`.
- The optimal length is `L0 = (lengthrange1 − lengthrange0) / (range1 − range0)`; the
  normalised length is `L = range0 + (length − lengthrange0) / L0` and the normalised velocity
  `V = velocity / (L0 · vmax)` (negative = shortening).
- Forces are actuator forces in N, **negative when the muscle pulls** (shortens the tendon).
- Denominators are guarded with `max(mjMINVAL, ·)`, `mjMINVAL = 1e-15`, exactly as MuJoCo
  does, so even out-of-domain parameters give MuJoCo's (finite) numbers.

Every branch point of MuJoCo's curves uses the same comparison (`<=` vs `<`) as MuJoCo, so
values agree even exactly at a breakpoint. The curves are piecewise polynomials, so values and
gradients are finite everywhere; at a breakpoint the gradient is the one-sided derivative of
the branch that MuJoCo's comparison selects.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._checks import as_float_array as _as_float
from .._checks import check_broadcast as _check_broadcast
from .._checks import concrete_fields as _concrete_fields
from .._checks import require as _require
from .._custom_types import PerMuscle, PerMuscleLike
from .._numerics import safe_div, smoothstep5
from ._base import AbstractActivation, AbstractMuscle, MTUForces

MJMINVAL = 1e-15
"""MuJoCo's `mjMINVAL`: the floor applied to every denominator in its muscle functions."""


def _floor(x: ArrayLike) -> Array:
    """`max(mjMINVAL, x)`, MuJoCo's denominator guard (gradient 0 below the floor)."""
    return jnp.maximum(MJMINVAL, x)


# ----------------------------------------------------------------------------- curves


def mujoco_active_force_length(L: ArrayLike, lmin: ArrayLike, lmax: ArrayLike) -> Array:
    """MuJoCo's active force–length curve `FL(L)` (`mju_muscleGainLength`).

    Four quadratic pieces joined with matching slopes at `a = (lmin + 1)/2`, 1 and
    `b = (1 + lmax)/2`:

        lmin ≤ L ≤ a:  0.5·x²,      x = (L − lmin)/(a − lmin)
        a < L ≤ 1:     1 − 0.5·x²,  x = (1 − L)/(1 − a)
        1 < L ≤ b:     1 − 0.5·x²,  x = (L − 1)/(b − 1)
        b < L ≤ lmax:  0.5·x²,      x = (lmax − L)/(lmax − b)
        otherwise:     0

    Args:
        L: normalised muscle length (dimensionless, ÷ optimal length L0); any real.
        lmin: lower end of the operating range, `0 < lmin < 1` (MuJoCo default 0.5).
        lmax: upper end of the operating range, `lmax > 1` (MuJoCo default 1.6).

    Returns:
        Active force multiplier in [0, 1]: 1 at `L = 1`, 0.5 at `a` and `b`, 0 outside
        `[lmin, lmax]`. C¹ in `L`.
    """
    L, lmin, lmax = jnp.asarray(L), jnp.asarray(lmin), jnp.asarray(lmax)
    a = 0.5 * (lmin + 1.0)
    b = 0.5 * (1.0 + lmax)
    x1 = (L - lmin) / _floor(a - lmin)
    x2 = (1.0 - L) / _floor(1.0 - a)
    x3 = (L - 1.0) / _floor(b - 1.0)
    x4 = (lmax - L) / _floor(lmax - b)
    inside = (lmin <= L) & (L <= lmax)
    return jnp.select(
        [~inside, L <= a, L <= 1.0, L <= b],
        [jnp.zeros_like(x1), 0.5 * x1 * x1, 1.0 - 0.5 * x2 * x2, 1.0 - 0.5 * x3 * x3],
        0.5 * x4 * x4,
    )


def mujoco_force_velocity(V: ArrayLike, fvmax: ArrayLike) -> Array:
    """MuJoCo's force–velocity curve `FV(V)` (inside `mju_muscleGain`).

    With `y = fvmax − 1`:

        V ≤ −1:       0
        −1 < V ≤ 0:   (V + 1)²
        0 < V ≤ y:    fvmax − (y − V)²/y
        V > y:        fvmax

    Args:
        V: normalised velocity (dimensionless, ÷ L0·vmax; negative = shortening); any real.
        fvmax: force multiplier reached at lengthening velocity `V = fvmax − 1`, `fvmax > 1`
            (MuJoCo default 1.2).

    Returns:
        Force–velocity multiplier in [0, fvmax]: `FV(−1) = 0`, `FV(0) = 1`. C¹ everywhere
        (the second derivative jumps at −1, 0 and `fvmax − 1`).
    """
    V, fvmax = jnp.asarray(V), jnp.asarray(fvmax)
    y = fvmax - 1.0
    shape = jnp.broadcast_shapes(V.shape, fvmax.shape)
    return jnp.select(
        [V <= -1.0, V <= 0.0, V <= y],
        [
            jnp.zeros(shape, jnp.result_type(V, fvmax)),
            (V + 1.0) * (V + 1.0),
            fvmax - (y - V) * (y - V) / _floor(y),
        ],
        jnp.broadcast_to(fvmax, shape),
    )


def mujoco_passive_force_length(L: ArrayLike, lmax: ArrayLike, fpmax: ArrayLike) -> Array:
    """MuJoCo's passive force–length curve `FP(L)` (inside `mju_muscleBias`).

    Half-quadratic from 1 to `b = (1 + lmax)/2`, linear beyond:

        L ≤ 1:       0
        1 < L ≤ b:   fpmax · 0.5·x²,              x = (L − 1)/(b − 1)
        L > b:       fpmax · (0.5 + x),           x = (L − b)/(b − 1)

    Args:
        L: normalised muscle length (dimensionless, ÷ L0); any real.
        lmax: upper end of the operating range, `lmax > 1` (MuJoCo default 1.6).
        fpmax: passive force scale, `fpmax ≥ 0` (MuJoCo default 1.3):
            `FP((1 + lmax)/2) = fpmax/2` and `FP(lmax) = 1.5·fpmax`.

    Returns:
        Passive force multiplier ≥ 0 (÷ peak force F0), growing linearly for large L. C¹.
    """
    L, lmax, fpmax = jnp.asarray(L), jnp.asarray(lmax), jnp.asarray(fpmax)
    b = 0.5 * (1.0 + lmax)
    x_quad = (L - 1.0) / _floor(b - 1.0)
    x_lin = (L - b) / _floor(b - 1.0)
    return jnp.select(
        [L <= 1.0, L <= b],
        [jnp.zeros_like(x_quad * fpmax), fpmax * 0.5 * x_quad * x_quad],
        fpmax * (0.5 + x_lin),
    )


# ----------------------------------------------------------------------------- muscle


class MuJoCoMuscle(AbstractMuscle):
    """MuJoCo's muscle actuator force (rigid tendon, no pennation), for many muscles at once.

    Reproduces `mju_muscleGain`, `mju_muscleBias` and the actuator force `gain·act + bias`
    that `mj_fwdActuation` computes for a `<muscle>` actuator. All fields are per-muscle arrays
    with a leading muscle axis; scalars broadcast. Reference: MuJoCo
    `src/engine/engine_util_misc.c` and the "Muscles" section of MuJoCo's modelling docs.

    Fields (compiled quantities first because they have no default, then the nine
    `gainprm`/`biasprm` entries with MuJoCo's defaults):
        lengthrange0, lengthrange1: actuator length range (m) mapped onto `[range0, range1]`,
            `lengthrange0 < lengthrange1` (MuJoCo's `actuator_lengthrange`).
        acc0: joint-space acceleration norm produced by a unit actuator force in the reference
            configuration (MuJoCo's `actuator_acc0`, (m/s² or rad/s²) per N); must be > 0 when
            `force_param < 0`.
        range0, range1: normalised-length interval that `lengthrange` maps onto
            (dimensionless; default 0.75, 1.05), `range0 < range1`.
        force_param: MJCF `force` = `gainprm[2]`: the peak active force F0 (N) when ≥ 0; when
            negative (default −1) F0 = `scale/acc0`. Named `force_param` rather than `force`
            because `force(...)` is the method returning the actuator force.
        scale: acceleration scale (m/s² or rad/s²; default 200) giving F0 = `scale/acc0` when
            `force_param < 0`.
        lmin, lmax: ends of the active force–length curve, `0 < lmin < 1 < lmax`
            (default 0.5, 1.6).
        vmax: maximum shortening velocity in optimal lengths per second, > 0 (default 1.5).
        fpmax: passive force scale, ≥ 0 (default 1.3): the passive force is F0·fpmax/2 at
            `L = (1 + lmax)/2` and 1.5·F0·fpmax at `L = lmax`.
        fvmax: force–velocity multiplier for fast lengthening, > 1 (default 1.2).

    Departures from MuJoCo: none in the force. MuJoCo then clamps the force to `forcerange`
    when `forcelimited`; that clamp is not part of this module.
    """

    lengthrange0: PerMuscle = eqx.field(converter=_as_float)
    lengthrange1: PerMuscle = eqx.field(converter=_as_float)
    acc0: PerMuscle = eqx.field(converter=_as_float)
    range0: PerMuscle = eqx.field(default=0.75, converter=_as_float)
    range1: PerMuscle = eqx.field(default=1.05, converter=_as_float)
    force_param: PerMuscle = eqx.field(default=-1.0, converter=_as_float)
    scale: PerMuscle = eqx.field(default=200.0, converter=_as_float)
    lmin: PerMuscle = eqx.field(default=0.5, converter=_as_float)
    lmax: PerMuscle = eqx.field(default=1.6, converter=_as_float)
    vmax: PerMuscle = eqx.field(default=1.5, converter=_as_float)
    fpmax: PerMuscle = eqx.field(default=1.3, converter=_as_float)
    fvmax: PerMuscle = eqx.field(default=1.2, converter=_as_float)
    # MuJoCo's muscle has no tendon state (the AbstractMuscle interface asks which kind).
    tendon: str = eqx.field(static=True, default="rigid", kw_only=True)

    PRM_NAMES: ClassVar[tuple[str, ...]] = (
        "range0", "range1", "force_param", "scale", "lmin", "lmax", "vmax", "fpmax", "fvmax"
    )  # fmt: skip
    """Field names in MuJoCo's `gainprm` order."""

    def __check_init__(self):
        owner = type(self).__name__
        if self.tendon != "rigid":
            raise ValueError(f'{owner}: tendon must be "rigid" (MuJoCo\'s muscle has no tendon '
                             f"compliance), got {self.tendon!r}.")
        names = self.PRM_NAMES + ("lengthrange0", "lengthrange1", "acc0")
        fields = {k: getattr(self, k) for k in names}
        v = _concrete_fields(fields, _check_broadcast(owner, fields))
        if v is None:
            return  # traced values: only the shape check applies
        for k, x in v.items():
            _require(owner, np.isfinite(x), f"{k} must be finite, got {x}.")
        _require(owner, v["range0"] < v["range1"],
                 f"need range0 < range1 (the normalised-length interval that lengthrange maps "
                 f"onto), got range0={v['range0']}, range1={v['range1']}; MuJoCo's default "
                 "is (0.75, 1.05).")  # fmt: skip
        _require(owner, v["lengthrange0"] < v["lengthrange1"],
                 f"need lengthrange0 < lengthrange1 (m), got {v['lengthrange0']} and "
                 f"{v['lengthrange1']}; pass the actuator's length range "
                 "(mjModel.actuator_lengthrange).")  # fmt: skip
        _require(owner, (0 < v["lmin"]) & (v["lmin"] < 1),
                 f"need 0 < lmin < 1 (the force-length curve peaks at L = 1), got lmin="
                 f"{v['lmin']}; MuJoCo's default is 0.5.")  # fmt: skip
        _require(owner, v["lmax"] > 1,
                 f"need lmax > 1 (the force-length curve peaks at L = 1), got lmax="
                 f"{v['lmax']}; MuJoCo's default is 1.6.")  # fmt: skip
        _require(owner, v["vmax"] > 0,
                 f"need vmax > 0 (optimal lengths per second), got {v['vmax']}; MuJoCo's "
                 "default is 1.5.")  # fmt: skip
        _require(owner, v["fvmax"] > 1,
                 f"need fvmax > 1 (lengthening force multiplier), got {v['fvmax']}; "
                 "MuJoCo's default is 1.2.")  # fmt: skip
        _require(owner, v["fpmax"] >= 0,
                 f"need fpmax >= 0, got {v['fpmax']}; MuJoCo's default is 1.3.")
        auto = v["force_param"] < 0
        _require(owner, ~auto | ((v["acc0"] > 0) & (v["scale"] > 0)),
                 "force_param < 0 means F0 = scale/acc0, which needs scale > 0 and acc0 > 0; "
                 f"got scale={v['scale']}, acc0={v['acc0']}. Pass a positive force_param "
                 "(N) or the compiled acc0 (mjModel.actuator_acc0).")  # fmt: skip

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def from_prm(
        cls, gainprm: ArrayLike, lengthrange: ArrayLike, acc0: ArrayLike
    ) -> "MuJoCoMuscle":
        """Build from MuJoCo's parameter arrays.

        Args:
            gainprm: shape (n, 9) or (9,): `(range0, range1, force, scale, lmin, lmax, vmax,
                fpmax, fvmax)` per muscle (`mjModel.actuator_gainprm[:, :9]`).
            lengthrange: shape (n, 2) or (2,): actuator length range (m).
            acc0: shape (n,) or (): `mjModel.actuator_acc0` ((m/s² or rad/s²) per N).
        """
        gainprm = _as_float(gainprm)
        lengthrange = _as_float(lengthrange)
        if gainprm.ndim not in (1, 2) or gainprm.shape[-1] != 9:
            raise ValueError(
                f"MuJoCoMuscle.from_prm: gainprm must have shape (n, 9) or (9,), got "
                f"{gainprm.shape}; pass mjModel.actuator_gainprm[:, :9]."
            )
        if lengthrange.ndim not in (1, 2) or lengthrange.shape[-1] != 2:
            raise ValueError(
                f"MuJoCoMuscle.from_prm: lengthrange must have shape (n, 2) or (2,), got "
                f"{lengthrange.shape}; pass mjModel.actuator_lengthrange."
            )
        prm = {k: gainprm[..., i] for i, k in enumerate(cls.PRM_NAMES)}
        return cls(
            lengthrange0=lengthrange[..., 0], lengthrange1=lengthrange[..., 1], acc0=acc0, **prm
        )

    @classmethod
    def from_mjmodel(cls, m: Any) -> "MuJoCoMuscle":
        """Build from a compiled `mujoco.MjModel`, one entry per muscle actuator.

        Muscle actuators are those with `actuator_gaintype == mjGAIN_MUSCLE`, taken in actuator
        order (`numpy.flatnonzero(m.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE)` gives
        their ids). MuJoCo evaluates the bias with `biasprm`; this module uses one parameter
        set for both, so a muscle whose bias is not `mjBIAS_MUSCLE` with `biasprm[:9] ==
        gainprm[:9]` (always true for the MJCF `<muscle>` shortcut) raises ValueError.
        """
        import mujoco  # lazy: mujoco is only needed for this constructor

        ids = np.flatnonzero(np.asarray(m.actuator_gaintype) == mujoco.mjtGain.mjGAIN_MUSCLE)
        if ids.size == 0:
            raise ValueError(
                "MuJoCoMuscle.from_mjmodel: the model has no muscle actuators (gaintype "
                "mjGAIN_MUSCLE); add a <muscle> actuator to the MJCF."
            )
        gainprm = np.asarray(m.actuator_gainprm)[ids, :9]
        biasprm = np.asarray(m.actuator_biasprm)[ids, :9]
        biastype = np.asarray(m.actuator_biastype)[ids]
        bad = (biastype != mujoco.mjtBias.mjBIAS_MUSCLE) | np.any(biasprm != gainprm, axis=1)
        if np.any(bad):
            raise ValueError(
                f"MuJoCoMuscle.from_mjmodel: actuators {ids[bad].tolist()} have muscle gain "
                "but a bias that is not the muscle bias with the same 9 parameters; "
                "MuJoCoMuscle models gain and bias with one parameter set. Use the <muscle> "
                "shortcut, or biastype='muscle' with biasprm equal to gainprm."
            )
        return cls.from_prm(
            gainprm, np.asarray(m.actuator_lengthrange)[ids], np.asarray(m.actuator_acc0)[ids]
        )

    # -- the Model's interface (AbstractMuscle) ---------------------------------------

    @property
    def n_muscles(self) -> int:
        """Muscles described (1 when every field is a scalar)."""
        names = (*self.PRM_NAMES, "lengthrange0", "lengthrange1", "acc0")
        shape = np.broadcast_shapes(*(np.shape(getattr(self, f)) for f in names))
        return int(shape[0]) if shape else 1

    def mtu_forces(self, mtu_length, mtu_velocity, activation, norm_tendon_force=None):
        """`MTUForces` for a Model: the actuator length and velocity are the MTU's, the
        pulling force is −`force` (MuJoCo's actuator force is negative when it pulls)."""
        pull = -self.force(mtu_length, mtu_velocity, activation)
        fiber = self.normalised_length(mtu_length) * self.optimal_length()
        return MTUForces(tendon_force=pull, fiber_length=jnp.broadcast_to(fiber, pull.shape),
                         norm_tendon_force=pull / _floor(self.peak_force()))

    # -- physics ----------------------------------------------------------------------

    def peak_force(self) -> PerMuscle:
        """Peak active isometric force F0 (N): `force_param` if ≥ 0, else `scale/acc0`."""
        auto = self.scale / _floor(self.acc0)
        return jnp.where(self.force_param < 0, auto, self.force_param)

    def optimal_length(self) -> PerMuscle:
        """Optimal length L0 = (lengthrange1 − lengthrange0)/(range1 − range0) (m)."""
        return (self.lengthrange1 - self.lengthrange0) / _floor(self.range1 - self.range0)

    def normalised_length(self, length: PerMuscleLike) -> PerMuscle:
        """Normalised length `L = range0 + (length − lengthrange0)/L0` (dimensionless).

        Args:
            length: actuator length (m), per muscle; any real.
        """
        L0 = _floor(self.optimal_length())
        return self.range0 + (jnp.asarray(length) - self.lengthrange0) / L0

    def normalised_velocity(self, velocity: PerMuscleLike) -> PerMuscle:
        """Normalised velocity `V = velocity/(L0·vmax)` (dimensionless, negative = shortening).

        Args:
            velocity: actuator velocity (m/s), per muscle; any real.
        """
        return jnp.asarray(velocity) / _floor(self.optimal_length() * self.vmax)

    def gain(self, length: PerMuscleLike, velocity: PerMuscleLike) -> PerMuscle:
        """Active gain `−F0·FL(L)·FV(V)` (N per unit activation, ≤ 0) = `mju_muscleGain`.

        Args:
            length: actuator length (m).
            velocity: actuator velocity (m/s).
        """
        fl = mujoco_active_force_length(self.normalised_length(length), self.lmin, self.lmax)
        fv = mujoco_force_velocity(self.normalised_velocity(velocity), self.fvmax)
        return -self.peak_force() * fl * fv

    def bias(self, length: PerMuscleLike) -> PerMuscle:
        """Passive force `−F0·FP(L)` (N, ≤ 0) = `mju_muscleBias`.

        Args:
            length: actuator length (m).
        """
        L = self.normalised_length(length)
        return -self.peak_force() * mujoco_passive_force_length(L, self.lmax, self.fpmax)

    def force(
        self, length: PerMuscleLike, velocity: PerMuscleLike, activation: PerMuscleLike
    ) -> PerMuscle:
        """Actuator force `gain·activation + bias` (N; negative pulls), as `mj_fwdActuation`.

        Args:
            length: actuator length (m), `mjData.actuator_length`.
            velocity: actuator velocity (m/s), `mjData.actuator_velocity`.
            activation: activation (dimensionless, normally in [0, 1]), `mjData.act`; used as
                given (MuJoCo clamps `act` only when `actlimited`).

        Returns:
            `mjData.actuator_force` before any `forcerange` clamp (N).
        """
        return self.gain(length, velocity) * jnp.asarray(activation) + self.bias(length)


# ----------------------------------------------------------------------------- activation


class MuJoCoActivation(AbstractActivation):
    """MuJoCo's muscle activation dynamics (`mju_muscleDynamics`), per muscle.

    With `c = clip(ctrl, 0, 1)` and `ā = clip(act, 0, 1)`:

        τ_a = tau_act·(0.5 + 1.5·ā),   τ_d = tau_deact/(0.5 + 1.5·ā)   (Millard et al. 2013)
        τ   = τ_a if c − act > 0 else τ_d                               (tausmooth = 0)
        τ   = τ_d + (τ_a − τ_d)·S((c − act)/tausmooth + 0.5)            (tausmooth > 0)
        d act/dt = (c − act)/τ

    where S is the quintic smoothstep `6x⁵ − 15x⁴ + 10x³` clamped to [0, 1] (MuJoCo's
    `mju_sigmoid`), so the blend spans `|c − act| < tausmooth/2`. The difference `c − act`
    uses the *unclamped* activation, as MuJoCo does: an activation above 1 decays back.

    Fields (per muscle, scalars broadcast; MuJoCo's `dynprm[:3]`): `tau_act` (s, > 0,
    default 0.01), `tau_deact` (s, > 0, default 0.04), `tausmooth` (width of the smooth switch
    in units of activation, ≥ 0, default 0 = hard switch).
    Reference: MuJoCo `src/engine/engine_util_misc.c`.
    """

    tau_act: PerMuscle = eqx.field(default=0.01, converter=_as_float)
    tau_deact: PerMuscle = eqx.field(default=0.04, converter=_as_float)
    tausmooth: PerMuscle = eqx.field(default=0.0, converter=_as_float)

    def __check_init__(self):
        owner = type(self).__name__
        fields = {k: getattr(self, k) for k in ("tau_act", "tau_deact", "tausmooth")}
        v = _concrete_fields(fields, _check_broadcast(owner, fields))
        if v is None:
            return
        for k in ("tau_act", "tau_deact"):
            _require(owner, np.isfinite(v[k]) & (v[k] > 0),
                     f"{k} must be a positive time constant in seconds, got {v[k]}; MuJoCo's "
                     "defaults are tau_act=0.01, tau_deact=0.04.")  # fmt: skip
        _require(owner, np.isfinite(v["tausmooth"]) & (v["tausmooth"] >= 0),
                 f"tausmooth must be >= 0 (0 = hard switch), got {v['tausmooth']}.")

    @classmethod
    def from_mjmodel(cls, m: Any) -> "MuJoCoActivation":
        """Build from a compiled `mujoco.MjModel`: `dynprm[:3]` of every actuator whose
        `dyntype` is `mjDYN_MUSCLE`, in actuator order."""
        import mujoco  # lazy

        ids = np.flatnonzero(np.asarray(m.actuator_dyntype) == mujoco.mjtDyn.mjDYN_MUSCLE)
        if ids.size == 0:
            raise ValueError(
                "MuJoCoActivation.from_mjmodel: the model has no actuators with muscle "
                "activation dynamics (dyntype mjDYN_MUSCLE); add a <muscle> actuator."
            )
        prm = np.asarray(m.actuator_dynprm)[ids, :3]
        return cls(tau_act=prm[:, 0], tau_deact=prm[:, 1], tausmooth=prm[:, 2])

    def time_constant(self, excitation: PerMuscleLike, activation: PerMuscleLike) -> PerMuscle:
        """Time constant τ (s) of `derivative` (MuJoCo's `mju_muscleDynamicsTimescale`)."""
        excitation, activation = jnp.asarray(excitation), jnp.asarray(activation)
        act = jnp.clip(activation, 0.0, 1.0)
        tau_a = self.tau_act * (0.5 + 1.5 * act)
        tau_d = self.tau_deact / (0.5 + 1.5 * act)
        dctrl = jnp.clip(excitation, 0.0, 1.0) - activation
        hard = jnp.where(dctrl > 0, tau_a, tau_d)
        smooth_on = self.tausmooth >= MJMINVAL
        # Double where: the smooth branch never divides by a zero width.
        x = safe_div(dctrl, jnp.where(smooth_on, self.tausmooth, 1.0)) + 0.5
        smooth = tau_d + (tau_a - tau_d) * smoothstep5(x)
        return jnp.where(smooth_on, smooth, hard)

    def derivative(self, excitation: PerMuscleLike, activation: PerMuscleLike) -> PerMuscle:
        """d(activation)/dt (1/s) = `mju_muscleDynamics(ctrl, act, dynprm)`.

        Args:
            excitation: control `ctrl` (dimensionless), any real; clamped to [0, 1].
            activation: activation `act` (dimensionless), any real; clamped to [0, 1] inside
                the time constants only.

        Returns:
            `(clip(ctrl, 0, 1) − act)/τ`; finite, with finite gradients, for all real inputs.
        """
        excitation, activation = jnp.asarray(excitation), jnp.asarray(activation)
        dctrl = jnp.clip(excitation, 0.0, 1.0) - activation
        return dctrl / _floor(self.time_constant(excitation, activation))


__all__ = [
    "MJMINVAL",
    "MuJoCoActivation",
    "MuJoCoMuscle",
    "mujoco_active_force_length",
    "mujoco_force_velocity",
    "mujoco_passive_force_length",
]
