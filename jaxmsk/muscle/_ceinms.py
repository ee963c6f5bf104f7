"""EMG → muscle activation: CEINMS's discrete filter and its continuous two-pole counterpart.

Lloyd & Besier (2003), "An EMG-driven musculoskeletal model to estimate muscle forces and knee
joint moments in vivo", J. Biomech. 36:765–776; the model CEINMS implements. Processed EMG
`e` (high-passed, rectified, low-passed, normalised to MVC, so in [0, 1]) is delayed by the
electromechanical delay `d` and passed through a second-order recursive filter with real poles
and unit DC gain, giving the *neural activation* `u`; the muscle activation is then the exponential
non-linearity `a = (exp(A·u) − 1)/(exp(A) − 1)`, −3 < A < 0 (A → 0: `a = u`).

Two forms are offered:

- `CEINMSActivation`: the published discrete recursion on sampled EMG, run with `lax.scan`.
- `TwoPoleActivation`: two cascaded first-order ODEs in diffrax's `(t, y, args)` style, for
  forward simulation with continuous time. `TwoPoleActivation.from_ceinms` maps the poles; the
  exact sample-level relation between the two is stated (and tested) in its docstring.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_float_array as _as_float
from .._checks import check_broadcast as _check_broadcast
from .._checks import concrete_fields as _concrete_fields
from .._checks import require as _require
from .._custom_types import PerMuscle, PerMuscleLike

_LINEAR_LIMIT = 1e-4
"""|A| below which the non-linearity uses its Taylor series in A (error O(A³) ≲ 1e-14)."""


def activation_nonlinearity(neural_activation: ArrayLike, shape_factor: ArrayLike) -> Array:
    """Lloyd & Besier's neural → muscle activation map `(exp(A·u) − 1)/(exp(A) − 1)`.

    Evaluated as `expm1(A·u)/expm1(A)`; for `|A| < 1e-4` the second-order series
    `u·(1 + A(u − 1)/2 + A²(2u − 1)(u − 1)/12)` is used instead (double-`where`, so values and
    gradients are smooth through A = 0, where the map is the identity).

    Args:
        neural_activation: u (dimensionless), normally in [0, 1].
        shape_factor: A (dimensionless), −3 < A ≤ 0 (CEINMS's range is −3 < A < 0; A = 0 is the
            linear limit). More negative A bends the curve up (more activation at low u).

    Returns:
        Muscle activation a (dimensionless); maps [0, 1] onto [0, 1], with a(0) = 0, a(1) = 1.
    """
    u = jnp.asarray(neural_activation)
    A = jnp.asarray(shape_factor)
    small = jnp.abs(A) < _LINEAR_LIMIT
    A_safe = jnp.where(small, -1.0, A)
    exact = jnp.expm1(A_safe * u) / jnp.expm1(A_safe)
    series = u * (1.0 + A * (u - 1.0) / 2.0 + A * A * (2.0 * u - 1.0) * (u - 1.0) / 12.0)
    return jnp.where(small, series, exact)


def _check_shape_factor(owner: str, A: np.ndarray) -> None:
    _require(owner, np.isfinite(A) & (A > -3) & (A <= 0),
             f"shape_factor A must satisfy -3 < A <= 0 (Lloyd & Besier 2003; A = 0 is linear), "
             f"got {A}.")  # fmt: skip


class CEINMSActivation(eqx.Module):
    """CEINMS's discrete EMG → activation model (Lloyd & Besier 2003), per muscle.

    For sampled EMG `e[n]` at `sample_rate` fs (Hz) and a delay of `d = round(delay·fs)`
    samples:

        β1 = C1 + C2,   β2 = C1·C2,   α = 1 + β1 + β2        (unit DC gain)
        u[n] = α·e[n − d] − β1·u[n − 1] − β2·u[n − 2]         (e[k < 0] = 0, u[−1] = u[−2] = 0)
        a[n] = (exp(A·u[n]) − 1)/(exp(A) − 1)

    The recursion's poles are −C1 and −C2, so |C| < 1 is stable; C < 0 gives a decaying
    (non-oscillating) pole with time constant −1/(fs·ln(−C)) s.

    Fields (per muscle, leading muscle axis; scalars broadcast):
        shape_factor: A, −3 < A ≤ 0 (dimensionless).
        c1, c2: recursive coefficients, −1 < C < 1 (dimensionless; depend on `sample_rate`).
        delay: electromechanical delay (s), ≥ 0; rounded to whole samples (round half to
            even). Because of that rounding the output is piecewise constant in `delay`, so
            its gradient w.r.t. `delay` is zero: fit a delay by search, or use
            `TwoPoleActivation` with a continuously interpolated input.
        sample_rate: EMG sampling rate fs (Hz), static.

    Departures from CEINMS: A = 0 is allowed (the linear limit). CEINMS works sample by sample;
    here a whole (time, muscles) record is filtered by `jax.lax.scan`.
    """

    shape_factor: PerMuscle = eqx.field(converter=_as_float)
    c1: PerMuscle = eqx.field(converter=_as_float)
    c2: PerMuscle = eqx.field(converter=_as_float)
    delay: PerMuscle = eqx.field(converter=_as_float)
    sample_rate: float = eqx.field(static=True, converter=float)

    def __check_init__(self):
        owner = type(self).__name__
        if not (np.isfinite(self.sample_rate) and self.sample_rate > 0):
            raise ValueError(
                f"{owner}: sample_rate must be a positive number of Hz, got {self.sample_rate}."
            )
        fields = {k: getattr(self, k) for k in ("shape_factor", "c1", "c2", "delay")}
        v = _concrete_fields(fields, _check_broadcast(owner, fields))
        if v is None:
            return
        _check_shape_factor(owner, v["shape_factor"])
        for k in ("c1", "c2"):
            _require(owner, np.isfinite(v[k]) & (np.abs(v[k]) < 1),
                     f"{k} must satisfy -1 < {k} < 1 for a stable filter, got {v[k]}.")
        _require(owner, np.isfinite(v["delay"]) & (v["delay"] >= 0),
                 f"delay must be >= 0 seconds, got {v['delay']}.")  # fmt: skip

    def delay_samples(self) -> Array:
        """The delay in whole samples, `round(delay·sample_rate)` (int32, per muscle)."""
        return jnp.round(self.delay * self.sample_rate).astype(jnp.int32)

    def _delayed(self, emg: Array) -> Array:
        """`e[n − d]` per channel, 0 before the first sample; works for a traced delay."""
        n_time = emg.shape[0]
        channel_ndim = emg.ndim - 1
        index = jnp.arange(n_time).reshape((n_time,) + (1,) * channel_ndim) - self.delay_samples()
        index = jnp.broadcast_to(index, emg.shape)
        gathered = jnp.take_along_axis(emg, jnp.clip(index, 0, n_time - 1), axis=0)
        return jnp.where(index >= 0, gathered, 0.0)

    def _prepare(self, emg: ArrayLike) -> Array:
        emg = _as_float(emg)
        owner = type(self).__name__
        if emg.ndim < 1 or emg.shape[0] < 1:
            raise ValueError(
                f"{owner}: emg must have shape (time, muscles) with at least one sample, got "
                f"{emg.shape}."
            )
        params = (self.shape_factor, self.c1, self.c2, self.delay)
        try:
            channels = jnp.broadcast_shapes(emg.shape[1:], *(jnp.shape(p) for p in params))
        except ValueError:
            raise ValueError(
                f"{owner}: emg of shape {emg.shape} (time, muscles) does not match the "
                f"per-muscle parameters of shape {jnp.shape(self.c1)}; give emg one column "
                "per muscle."
            ) from None
        emg = jnp.broadcast_to(emg, (emg.shape[0],) + tuple(channels))
        return eqx.error_if(
            emg, ~jnp.all(jnp.isfinite(emg)), "CEINMSActivation: emg contains NaN or inf."
        )

    def neural_activation(self, emg: Float[ArrayLike, "time *muscles"]) -> Array:  # noqa: F821
        """Neural activation u[n] (dimensionless) from sampled EMG.

        Args:
            emg: processed EMG, shape (time, muscles) (or (time,) with scalar parameters),
                sampled at `sample_rate`; normally in [0, 1]. NaN/inf raise (`eqx.error_if`).

        Returns:
            u, same shape as `emg` broadcast against the parameters.
        """
        emg = self._prepare(emg)
        e = self._delayed(emg)
        beta1 = self.c1 + self.c2
        beta2 = self.c1 * self.c2
        alpha = 1.0 + beta1 + beta2

        def step(carry, e_n):
            u1, u2 = carry  # u[n − 1], u[n − 2]
            u = alpha * e_n - beta1 * u1 - beta2 * u2
            return (u, u1), u

        zeros = jnp.zeros(e.shape[1:], e.dtype)
        _, u = jax.lax.scan(step, (zeros, zeros), e)
        return u

    def __call__(self, emg: Float[ArrayLike, "time *muscles"]) -> Array:  # noqa: F821
        """Muscle activation a[n] (dimensionless, in [0, 1] for EMG in [0, 1]).

        Args:
            emg: processed EMG, shape (time, muscles), sampled at `sample_rate`.
        """
        return activation_nonlinearity(self.neural_activation(emg), self.shape_factor)


class TwoPoleState(eqx.Module):
    """State of `TwoPoleActivation`: the first filter's output and the neural activation u."""

    filtered: PerMuscle
    neural: PerMuscle


class TwoPoleActivation(eqx.Module):
    """Continuous two-pole EMG → activation model, for diffrax.

        τ1·du1/dt = e(t − d) − u1,    τ2·du/dt = u1 − u,    a = (exp(A·u) − 1)/(exp(A) − 1)

    Unit DC gain, never overshoots (two real poles −1/τ1, −1/τ2). The state is a
    `TwoPoleState(filtered=u1, neural=u)`; `derivative` has diffrax's `(t, y, args)` shape with
    the already delayed excitation `e(t − d)` as `args`, e.g.

        f = lambda t, y, args: model.derivative(t, y, emg_at(t - model.delay))
        term = diffrax.ODETerm(f)

    Fields (per muscle; scalars broadcast):
        shape_factor: A, −3 < A ≤ 0 (dimensionless).
        tau1, tau2: time constants (s), > 0.
        delay: electromechanical delay d (s), ≥ 0. The module does not read it: the caller
            builds `e(t − d)` (so any interpolation of the EMG can be used, and d is then
            differentiable through that interpolation).

    Relation to `CEINMSActivation` (exact; `tests/test_emg_activation.py` integrates it with
    diffrax, Tsit5 at rtol = atol = 1e-12, and finds agreement to ~3e-13). Let h = 1/fs,
    `from_ceinms` give τi = −h/ln(−Ci), and drive this model from zero state at t = 0 with the
    zero-order-hold input e(t) = e[k] on [k·h, (k+1)·h), delayed by the same d·h. Both share
    the poles p_i = −C_i = exp(−h/τi), but CEINMS's recursion uses e[n] at step n (numerator
    α) while the held input gives the numerator b1·z⁻¹ + b2·z⁻², so the continuous samples are
    a two-tap average of CEINMS's u:

        u(n·h) = w·u_C[n − 1] + (1 − w)·u_C[n − 2],      u_C[k < 0] = 0,
        w = s(h)/α,  α = (1 − p1)(1 − p2),  s(h) = 1 − (τ1·p1 − τ2·p2)/(τ1 − τ2)
        (s(h) = 1 − (1 + h/τ)·p when τ1 = τ2 = τ),

    s being the model's unit step response after one sample. No whole-sample shift of the
    input makes the two equal (in particular not "delay − 2/fs"): the continuous model lags
    CEINMS by 2 − w samples at low frequency, tending to 1.5 samples when h ≪ τ1, τ2.
    """

    shape_factor: PerMuscle = eqx.field(converter=_as_float)
    tau1: PerMuscle = eqx.field(converter=_as_float)
    tau2: PerMuscle = eqx.field(converter=_as_float)
    delay: PerMuscle = eqx.field(default=0.0, converter=_as_float)

    def __check_init__(self):
        owner = type(self).__name__
        fields = {k: getattr(self, k) for k in ("shape_factor", "tau1", "tau2", "delay")}
        v = _concrete_fields(fields, _check_broadcast(owner, fields))
        if v is None:
            return
        _check_shape_factor(owner, v["shape_factor"])
        for k in ("tau1", "tau2"):
            _require(owner, np.isfinite(v[k]) & (v[k] > 0),
                     f"{k} must be a positive time constant in seconds, got {v[k]}.")
        _require(owner, np.isfinite(v["delay"]) & (v["delay"] >= 0),
                 f"delay must be >= 0 seconds, got {v['delay']}.")  # fmt: skip

    @classmethod
    def from_ceinms(cls, ceinms: CEINMSActivation) -> "TwoPoleActivation":
        """The continuous model with CEINMS's poles: τi = −1/(fs·ln(−Ci)) s.

        The delay becomes CEINMS's effective delay `round(delay·fs)/fs`; A is kept. See the
        class docstring for the exact sample-level relation.

        Raises:
            ValueError: if some C is not in (−1, 0) (checked when the values are concrete).
                C > 0 puts the recursion's pole at −C < 0, a mode alternating in sign every
                sample, which no continuous first-order filter has; C = 0 is an instantaneous
                stage (τ = 0).
        """
        fs = ceinms.sample_rate
        v = _concrete_fields({"c1": ceinms.c1, "c2": ceinms.c2}, jnp.shape(ceinms.c1 * ceinms.c2))
        if v is not None:
            for k, c in v.items():
                _require(
                    "TwoPoleActivation.from_ceinms",
                    (c > -1) & (c < 0),
                    f"{k} must be in (-1, 0) to have a continuous equivalent, got {c}: a "
                    "positive coefficient puts the recursion's pole at -C < 0 (a mode that "
                    "alternates sign every sample), and 0 is an instantaneous stage. Fit "
                    "TwoPoleActivation directly, or constrain C to (-1, 0).",
                )
        tau1 = -1.0 / (fs * jnp.log(-ceinms.c1))
        tau2 = -1.0 / (fs * jnp.log(-ceinms.c2))
        delay = ceinms.delay_samples().astype(tau1.dtype) / fs
        return cls(shape_factor=ceinms.shape_factor, tau1=tau1, tau2=tau2, delay=delay)

    def init_state(self, shape: tuple[int, ...] | None = None) -> TwoPoleState:
        """Zero state (rest), shaped like the parameters unless `shape` is given."""
        if shape is None:
            params = (self.shape_factor, self.tau1, self.tau2)
            shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in params))
        zeros = jnp.zeros(shape, jnp.result_type(self.tau1, self.tau2))
        return TwoPoleState(filtered=zeros, neural=zeros)

    def derivative(
        self, t: ArrayLike, state: TwoPoleState, delayed_excitation: PerMuscleLike
    ) -> TwoPoleState:
        """Time derivative of the state (1/s), diffrax style.

        Args:
            t: time (s); unused (the model is time-invariant), kept for diffrax.
            state: `TwoPoleState`.
            delayed_excitation: e(t − d), processed EMG (dimensionless, normally in [0, 1]).
        """
        del t
        e = jnp.asarray(delayed_excitation)
        return TwoPoleState(
            filtered=(e - state.filtered) / self.tau1,
            neural=(state.filtered - state.neural) / self.tau2,
        )

    def activation(self, state: TwoPoleState) -> PerMuscle:
        """Muscle activation (dimensionless) from the state's neural activation."""
        return activation_nonlinearity(state.neural, self.shape_factor)


__all__ = [
    "CEINMSActivation",
    "TwoPoleActivation",
    "TwoPoleState",
    "activation_nonlinearity",
]
