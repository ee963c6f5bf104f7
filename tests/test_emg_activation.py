"""EMG → activation: CEINMS recursion, its continuous two-pole counterpart, gradients."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxmsk.muscle._ceinms import (
    CEINMSActivation,
    TwoPoleActivation,
    TwoPoleState,
    activation_nonlinearity,
)

# Tolerances, all in one place.
EXACT_RTOL = 1e-13  # same arithmetic as a NumPy loop, up to operation order
# diffrax Tsit5 with rtol = atol = 1e-12 stepping to every input jump; measured error ≈ 1e-12.
ODE_ATOL = 1e-9
SERIES_ATOL = 1e-13  # the A ≈ 0 series vs expm1 ratio, |A| ≤ 1e-4: error O(A³)
GRAD_ATOL = GRAD_RTOL = 1e-6  # central finite differences in float64

FS = 1000.0  # Hz


def _random_model(rng, n, *, delay_samples=None, fs=FS):
    delay = rng.integers(0, 6, n) if delay_samples is None else np.asarray(delay_samples)
    return CEINMSActivation(
        shape_factor=rng.uniform(-2.9, -0.1, n),
        c1=rng.uniform(-0.95, 0.5, n),
        c2=rng.uniform(-0.95, 0.5, n),
        delay=delay / fs,
        sample_rate=fs,
    )


def _numpy_ceinms(emg, A, c1, c2, d):
    """The published recursion, written out sample by sample."""
    n_time, n_mus = emg.shape
    u = np.zeros((n_time, n_mus))
    for j in range(n_mus):
        b1, b2 = c1[j] + c2[j], c1[j] * c2[j]
        alpha = 1 + b1 + b2
        u1 = u2 = 0.0
        for n in range(n_time):
            e = emg[n - d[j], j] if n - d[j] >= 0 else 0.0
            u[n, j] = alpha * e - b1 * u1 - b2 * u2
            u2, u1 = u1, u[n, j]
    a = np.expm1(A * u) / np.expm1(A)
    return u, a


def test_recursion_matches_numpy_loop():
    rng = np.random.default_rng(0)
    model = _random_model(rng, 5, delay_samples=[0, 1, 2, 5, 13])
    emg = rng.uniform(0.0, 1.0, (120, 5))
    params = (np.asarray(x) for x in (model.shape_factor, model.c1, model.c2))
    u_ref, a_ref = _numpy_ceinms(emg, *params, d=[0, 1, 2, 5, 13])
    u, a = eqx.filter_jit(lambda m, e: (m.neural_activation(e), m(e)))(model, emg)
    np.testing.assert_allclose(u, u_ref, rtol=EXACT_RTOL, atol=1e-15)
    np.testing.assert_allclose(a, a_ref, rtol=EXACT_RTOL, atol=1e-15)
    np.testing.assert_array_equal(model.delay_samples(), [0, 1, 2, 5, 13])


def test_unit_dc_gain():
    """Constant EMG: u → the constant, a → the non-linear map of the constant."""
    rng = np.random.default_rng(1)
    model = CEINMSActivation(
        shape_factor=np.array([-2.5, -1.0, -0.01, 0.0]),
        c1=np.array([-0.9, -0.5, 0.3, -0.2]),
        c2=np.array([-0.8, 0.4, -0.6, -0.2]),
        delay=0.02,
        sample_rate=FS,
    )
    level = rng.uniform(0.1, 0.9, 4)
    a = eqx.filter_jit(lambda m, e: m(e))(model, np.tile(level, (400, 1)))
    expected = np.expm1(np.array([-2.5, -1.0, -0.01, 1.0]) * level) / np.expm1(
        np.array([-2.5, -1.0, -0.01, 1.0])
    )
    expected[3] = level[3]  # A = 0: linear
    np.testing.assert_allclose(a[-1], expected, rtol=1e-12)
    # and the activation is 0 during the delay (20 samples)
    np.testing.assert_array_equal(a[:20], 0.0)


def test_delay_shifts_output_exactly():
    rng = np.random.default_rng(2)
    emg = rng.uniform(0.0, 1.0, (80, 3))
    base = _random_model(rng, 3, delay_samples=[0, 0, 0])
    run = eqx.filter_jit(lambda m, e: m.neural_activation(e))
    u0 = np.asarray(run(base, emg))
    for d in (1, 4, 17):
        shifted = eqx.tree_at(lambda m: m.delay, base, jnp.full(3, d / FS))
        u = np.asarray(run(shifted, emg))
        np.testing.assert_array_equal(u[:d], 0.0)
        np.testing.assert_array_equal(u[d:], u0[:-d])


def test_traced_delay_and_zero_delay_gradient():
    rng = np.random.default_rng(3)
    emg = rng.uniform(0.0, 1.0, (40, 2))
    model = _random_model(rng, 2, delay_samples=[0, 0])

    def total(delay):
        return jnp.sum(eqx.tree_at(lambda m: m.delay, model, delay)(emg))

    delay = jnp.array([0.003, 0.0071])  # 3 and 7 samples
    ref = eqx.tree_at(lambda m: m.delay, model, delay)
    np.testing.assert_allclose(jax.jit(total)(delay), jnp.sum(ref(emg)), rtol=1e-14)
    grad = jax.grad(total)(delay)  # documented: piecewise constant in the delay
    np.testing.assert_array_equal(grad, 0.0)


def test_linear_limit():
    u = np.linspace(0.0, 1.0, 11)
    np.testing.assert_array_equal(activation_nonlinearity(u, 0.0), u)
    for A in (-1e-8, -1e-6, -9.9e-5, -1.01e-4, -1e-3, 1e-6):
        exact = np.expm1(A * u) / np.expm1(A)
        np.testing.assert_allclose(activation_nonlinearity(u, A), exact, rtol=0, atol=SERIES_ATOL)
    # the derivative in A is continuous across the series/expm1 switch and equals u(u − 1)/2 at 0
    dA = jax.vmap(jax.grad(activation_nonlinearity, argnums=1), in_axes=(0, None))
    for A in (-0.999e-4, -1.001e-4):
        exact = (u * np.exp(A * u) * np.expm1(A) - np.expm1(A * u) * np.exp(A)) / np.expm1(A) ** 2
        np.testing.assert_allclose(dA(u, A), exact, atol=1e-8)
    np.testing.assert_allclose(dA(u, 0.0), u * (u - 1) / 2, atol=1e-15)


# ----------------------------------------------------------------------------- continuous


def _taps(two_pole, fs):
    """w of the exact relation u(n·h) = w·u_C[n − 1] + (1 − w)·u_C[n − 2] (see docstring)."""
    h = 1.0 / fs
    t1, t2 = np.asarray(two_pole.tau1), np.asarray(two_pole.tau2)
    p1, p2 = np.exp(-h / t1), np.exp(-h / t2)
    same = np.isclose(t1, t2, rtol=1e-12)
    t2_safe = np.where(same, t2 * 2, t2)
    step = np.where(same, 1 - (1 + h / t1) * p1,
                    1 - (t1 * p1 - t2_safe * np.exp(-h / t2_safe)) / (t1 - t2_safe))  # fmt: skip
    return step / ((1 - p1) * (1 - p2))


def test_from_ceinms_poles():
    model = CEINMSActivation(-1.0, np.array([-0.5, -0.9]), np.array([-0.1, -0.9]), 0.0123, FS)
    two_pole = TwoPoleActivation.from_ceinms(model)
    pole = lambda tau: np.exp(-1 / (FS * np.asarray(tau)))  # noqa: E731
    np.testing.assert_allclose(pole(two_pole.tau1), [0.5, 0.9], rtol=1e-14)
    np.testing.assert_allclose(pole(two_pole.tau2), [0.1, 0.9], rtol=1e-14)
    np.testing.assert_allclose(two_pole.delay, 0.012, rtol=1e-15)  # whole samples
    # steady state: the derivative vanishes at u1 = u = e, and the activation is a(e)
    state = TwoPoleState(filtered=jnp.full(2, 0.4), neural=jnp.full(2, 0.4))
    deriv = two_pole.derivative(0.0, state, 0.4)
    np.testing.assert_allclose(deriv.filtered, 0.0, atol=1e-15)
    np.testing.assert_allclose(deriv.neural, 0.0, atol=1e-15)
    np.testing.assert_allclose(two_pole.activation(state), np.expm1(-0.4) / np.expm1(-1.0))


def test_from_ceinms_rejects_oscillating_poles():
    for c1 in (0.3, 0.0):
        model = CEINMSActivation(-1.0, np.array([-0.5, c1]), -0.5, 0.0, FS)
        with pytest.raises(ValueError, match=r"c1 must be in \(-1, 0\)"):
            TwoPoleActivation.from_ceinms(model)


def test_continuous_matches_discrete_through_two_tap_relation():
    """diffrax on the held EMG reproduces CEINMS's samples via the documented relation."""
    rng = np.random.default_rng(4)
    n_time, n_mus = 60, 4
    c1 = np.array([-0.6, -0.3, -0.85, -0.5])
    c2 = np.array([-0.3, -0.3, -0.7, -0.95])  # muscle 1: equal time constants
    d = np.array([3, 0, 1, 5])
    ceinms = CEINMSActivation(rng.uniform(-2.5, -0.5, n_mus), c1, c2, d / FS, FS)
    two_pole = TwoPoleActivation.from_ceinms(ceinms)
    emg = jnp.asarray(rng.uniform(0.0, 1.0, (n_time, n_mus)))
    sample_ts = jnp.arange(n_time + 1) / FS

    def held_delayed_emg(t):
        # e(t − d) for the zero-order hold e(t) = e[k] on [k/fs, (k+1)/fs). Steps end just
        # before and start just after each jump, so `searchsorted` picks the right interval.
        k = jnp.searchsorted(sample_ts, t, side="right") - 1 - two_pole_d
        gathered = emg[jnp.clip(k, 0, n_time - 1), jnp.arange(n_mus)]
        return jnp.where(k >= 0, gathered, 0.0)

    two_pole_d = jnp.round(two_pole.delay * FS).astype(int)

    @jax.jit
    def solve(model):
        term = diffrax.ODETerm(lambda t, y, args: model.derivative(t, y, held_delayed_emg(t)))
        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(rtol=1e-12, atol=1e-12), jump_ts=sample_ts
        )
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), t0=0.0, t1=sample_ts[-2], dt0=1e-4, y0=model.init_state(),
            saveat=diffrax.SaveAt(ts=sample_ts[:-1]), stepsize_controller=controller,
            max_steps=100_000,
        )  # fmt: skip
        return sol.ys.neural, model.activation(sol.ys)

    u_ode, a_ode = solve(two_pole)
    u_c = np.asarray(ceinms.neural_activation(emg))
    w = _taps(two_pole, FS)
    padded = np.concatenate([np.zeros((2, n_mus)), u_c])
    predicted = w * padded[1:-1] + (1 - w) * padded[:-2]
    err = np.max(np.abs(np.asarray(u_ode) - predicted))
    print("max |u_ode - two-tap prediction| =", err)
    assert err < ODE_ATOL, err
    np.testing.assert_allclose(
        a_ode, activation_nonlinearity(predicted, ceinms.shape_factor), rtol=0, atol=10 * ODE_ATOL
    )
    # …and it is *not* a pure shift by two samples (the naive claim), by a wide margin
    assert np.max(np.abs(np.asarray(u_ode)[2:] - u_c[:-2])) > 1e-2


# ----------------------------------------------------------------------------- gradients


def test_check_grads_parameters():
    rng = np.random.default_rng(5)
    emg = jnp.asarray(rng.uniform(0.0, 1.0, (30, 2)))

    @jax.jit
    def activation(shape_factor, c1, c2):  # built from traced values: checks skipped
        return CEINMSActivation(shape_factor, c1, c2, jnp.array([0.0, 0.002]), FS)(emg)

    for A in (jnp.array([-1.5, -0.3]), jnp.array([-2e-5, -5e-5])):  # incl. the series branch
        args = (A, jnp.array([-0.6, 0.2]), jnp.array([-0.4, -0.8]))
        check_grads(activation, args, order=1, modes=("fwd", "rev"),
                    atol=GRAD_ATOL, rtol=GRAD_RTOL, eps=1e-6)  # fmt: skip

    @jax.jit
    def two_pole_rate(shape_factor, tau1, tau2):
        model = TwoPoleActivation(shape_factor, tau1, tau2)
        state = TwoPoleState(filtered=jnp.array([0.3, 0.6]), neural=jnp.array([0.2, 0.5]))
        d = model.derivative(0.0, state, jnp.array([0.7, 0.1]))
        return d.filtered + d.neural + model.activation(state)

    args = (jnp.array([-1.0, -2.0]), jnp.array([0.02, 0.05]), jnp.array([0.03, 0.01]))
    check_grads(two_pole_rate, args, order=1, modes=("fwd", "rev"),
                atol=GRAD_ATOL, rtol=GRAD_RTOL, eps=1e-7)  # fmt: skip


def test_jit_vmap_parity():
    rng = np.random.default_rng(6)
    model = _random_model(rng, 3)
    trials = rng.uniform(0.0, 1.0, (4, 50, 3))  # (trial, time, muscles)
    eager = np.asarray(model(trials[0]))  # op by op, no jit
    jitted = eqx.filter_jit(lambda m, e: m(e))
    np.testing.assert_allclose(jitted(model, trials[0]), eager, rtol=1e-14, atol=1e-15)
    looped = np.stack([np.asarray(jitted(model, trial)) for trial in trials])
    vmapped = eqx.filter_jit(lambda m, e: jax.vmap(m)(e))(model, trials)
    np.testing.assert_allclose(vmapped, looped, rtol=1e-14, atol=1e-15)
    # vmap over muscles: one single-muscle module per call on (time,) EMG
    per_muscle = eqx.filter_jit(lambda m, e: eqx.filter_vmap(lambda mm, ee: mm(ee))(m, e))(
        model, trials[0].T
    )
    np.testing.assert_allclose(per_muscle.T, eager, rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape_factor=-3.0), "shape_factor"),
        (dict(shape_factor=0.5), "shape_factor"),
        (dict(c1=1.0), "c1"),
        (dict(c2=-1.2), "c2"),
        (dict(delay=-0.01), "delay"),
        (dict(sample_rate=0.0), "sample_rate"),
        (dict(c2=np.full(3, -0.5)), "broadcast"),
    ],
)
def test_bad_ceinms_parameters(kwargs, match):
    base = dict(shape_factor=-1.0, c1=np.array([-0.5, -0.5]), c2=-0.5, delay=0.0, sample_rate=FS)
    with pytest.raises(ValueError, match=match):
        CEINMSActivation(**{**base, **kwargs})


def test_bad_emg_and_two_pole():
    model = CEINMSActivation(-1.0, np.array([-0.5, -0.5]), -0.5, 0.0, FS)
    with pytest.raises(ValueError, match="one column per muscle"):
        model(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="time"):
        model(np.zeros(()))
    with pytest.raises(Exception, match="NaN or inf"):
        bad = np.zeros((10, 2))
        bad[4, 1] = np.nan
        jax.block_until_ready(model(bad))
    with pytest.raises(ValueError, match="tau1"):
        TwoPoleActivation(-1.0, 0.0, 0.01)
    with pytest.raises(ValueError, match="delay"):
        TwoPoleActivation(-1.0, 0.01, 0.01, delay=-1.0)
