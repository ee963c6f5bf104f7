"""jaxmsk.physics: residuals checked against a simulated ground truth (the equation of motion
of Zhang et al. 2022).

One simulation of the built-in wrist (1 s, smooth excitation, Tsit5 at rtol 1e-10) is
saved every 1 ms and subsampled to 2 and 4 ms, so that all three rates see the same
trajectory and residuals can be compared at common times (multiples of 4 ms).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmsk as msk
from jaxmsk import physics as ph

# One xdist worker for the whole file: the module-scoped simulation is built once.
pytestmark = pytest.mark.xdist_group("physics")

DT = 1e-3  # s, finest output interval of the ground truth
STRIDES = (4, 2, 1)  # dt = 4, 2, 1 ms
# Measured on the truth below (x64): EoM max |r| 3.0e-4, 7.6e-5, 1.9e-5 at 4, 2, 1 ms;
# compliant consistency 6.4e-4, 1.6e-4, 4.0e-5; rigid-tendon consistency max 0.243,
# RMS 0.078 (the approximation, not discretisation). Bounds keep ~2x margin (1.2x for the
# rigid-tendon bounds, which measure a fixed model error rather than a discretisation).
EOM_MAX_1MS = 4e-5
COMPLIANT_MAX_1MS = 1e-4
RIGID_EXACT_MAX_1MS = 4e-4  # rigid-tendon forces at exact velocities: measured 1.7e-4
RIGID_MAX, RIGID_RMS = 0.3, 0.1
GRAD_RTOL = 1e-6  # central differences; measured agreement 1e-8 to 1e-10 with the steps used


@pytest.fixture(scope="module")
def model():
    return msk.models.wrist()


@pytest.fixture(scope="module")
def truth(model):
    ts = jnp.linspace(0.0, 1.0, 1001)
    w = 2 * jnp.pi * 1.5
    flex = 0.2 + 0.15 * jnp.sin(w * ts)
    ext = 0.15 + 0.1 * jnp.cos(w * ts)
    excitation = jnp.stack([flex, flex, ext, ext, ext], axis=1)  # FCR FCU | ECU ECRB ECRL
    traj = msk.simulate(model, excitation, ts, q0=jnp.array([-0.3]), solver="explicit",
                        rtol=1e-10, atol=1e-12)
    return dict(excitation=excitation, q=traj.q, qdot=traj.qdot, activation=traj.activation,
                forces=traj.tendon_force)


@pytest.fixture(scope="module")
def capacity(model):
    return jax.jit(ph.muscle_moment_capacity)(model)


@pytest.fixture(scope="module")
def eom():
    return jax.jit(ph.equation_of_motion_residual)


@pytest.fixture(scope="module")
def consistency():
    return jax.jit(ph.muscle_consistency_residual, static_argnames="tendon")


@pytest.fixture(scope="module")
def local():
    """Residuals at the common times from 3-sample stencils, one compilation for all rates.

    `local[name](model, *series, stride)` evaluates the residual at samples 4, 8, ..., 996
    (every 4 ms) from the samples stride ms before and after each (stride in 1, 2, 4):
    exactly the rows of the full-sequence residual at dt = stride ms that fall on those times.
    """
    centres = np.arange(4, 1000, 4)

    def stencils(x, stride):
        return jnp.stack([x[centres - stride], x[centres], x[centres + stride]], axis=1)

    def wrap(fn):
        batched = jax.jit(jax.vmap(fn, in_axes=(None, *([0] * (fn.__code__.co_argcount - 2)),
                                                None)))

        def call(model, *series, stride):
            r = batched(model, *(stencils(x, stride) for x in series), stride * DT)
            return r[:, 0]  # one interior row per stencil

        return call

    return dict(
        eom=wrap(lambda m, q, f, dt: ph.equation_of_motion_residual(m, q, f, dt)),
        rigid=wrap(lambda m, a, q, f, dt: ph.muscle_consistency_residual(m, a, q, f, dt)),
        compliant=wrap(lambda m, a, q, f, dt: ph.muscle_consistency_residual(
            m, a, q, f, dt, tendon="compliant")),
    )


def _order(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def _max_abs(r):
    return float(np.abs(r).max())


# -- finite differences --------------------------------------------------------------------
def test_finite_differences_exact_on_quadratic_and_aligned():
    dt = 0.01
    t = jnp.arange(7) * dt
    c0, c1, c2 = jnp.array([0.3, -1.0]), jnp.array([2.0, 0.5]), jnp.array([-4.0, 7.0])
    q = c0 + c1 * t[:, None] + c2 * t[:, None] ** 2
    fd = jax.jit(ph.finite_differences)
    qdot, qddot = fd(q, dt)
    assert qdot.shape == qddot.shape == (5, 2)
    np.testing.assert_allclose(qdot, c1 + 2 * c2 * t[1:-1, None], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(qddot, jnp.broadcast_to(2 * c2, (5, 2)), rtol=1e-9)
    # Misalignment would show here: central q̈ is exact for a cubic (6t at the centre
    # sample), and a quartic exposes the leading error term dt²·q⁗/12 = 2·dt².
    _, cubic_dd = fd(t[:, None] ** 3, dt)
    np.testing.assert_allclose(cubic_dd[:, 0], 6 * t[1:-1], rtol=1e-9)
    _, quartic_dd = fd(t[:, None] ** 4, dt)
    np.testing.assert_allclose(quartic_dd[:, 0] - 12 * t[1:-1] ** 2, 2 * dt**2, rtol=1e-6)


# -- equation of motion --------------------------------------------------------------------
def test_eom_residual_small_and_second_order(model, truth, eom, local):
    q, forces = truth["q"], truth["forces"]
    rs = [local["eom"](model, q, forces, stride=s) for s in STRIDES]
    errors = [_max_abs(r) for r in rs]
    orders = _order(errors)
    assert np.all((orders > 1.8) & (orders < 2.2)), (errors, orders)
    assert errors[-1] < EOM_MAX_1MS, errors
    # The full-sequence residual has T − 2 rows, row j at sample j + 1: its rows at the
    # common times are the stencil values.
    full = eom(model, q[200:241], forces[200:241], DT)  # samples 200..240
    assert full.shape == (39, 1)
    # rows 3, 7, ..., 35 are samples 204, ..., 236: stencil centres 50..58
    np.testing.assert_allclose(full[3::4], rs[-1][50:59], rtol=1e-10, atol=1e-15)


def test_eom_residual_linear_in_forces(model, truth, local, capacity):
    q, forces = truth["q"], truth["forces"]
    j = 3  # ECRB
    df = jnp.zeros_like(forces).at[:, j].set(0.1 * forces[:, j])
    delta = (local["eom"](model, q, forces + df, stride=1)
             - local["eom"](model, q, forces, stride=1))
    centres = np.arange(4, 1000, 4)
    _, r = jax.jit(jax.vmap(model.path.length_and_moment_arms))(q[centres])
    expected = -r[:, j, :] * df[centres, j:j + 1] / capacity
    assert _max_abs(expected) > 1e-3  # a visible change (50x the residual of the truth)
    np.testing.assert_allclose(delta, expected, rtol=1e-9, atol=1e-13)


def test_eom_scale(model, truth, eom, capacity):
    q, forces = truth["q"][:41], truth["forces"][:41]
    cap = capacity
    centre = model.path.centre.at[0].add(0.3)  # not the centre: the check must distinguish
    r = {c: np.asarray(model.path.moment_arms(x)) for c, x in (("centre", model.path.centre),
                                                               ("off", centre))}
    fmax = np.asarray(model.muscles.params.max_isometric_force)
    np.testing.assert_allclose(cap, np.abs(r["centre"]).T @ fmax, rtol=1e-12)
    assert abs(float(cap[0]) - float((np.abs(r["off"]).T @ fmax)[0])) > 1e-3
    np.testing.assert_allclose(eom(model, q, forces, DT, scale=2.0) * 2.0,
                               eom(model, q, forces, DT) * cap, rtol=1e-12)


# -- muscle-model consistency --------------------------------------------------------------
def test_consistency_rigid_tendon_on_compliant_truth(model, truth, local):
    r = local["rigid"](model, truth["activation"], truth["q"], truth["forces"], stride=1)
    assert r.shape == (249, 5)
    assert _max_abs(r) < RIGID_MAX
    assert float(np.sqrt(np.mean(r**2))) < RIGID_RMS
    assert _max_abs(r) > 0.05  # the approximation is visible: not a vacuous bound


def test_consistency_rigid_tendon_exact_for_rigid_forces(model, truth, local):
    """Forces of the rigid-tendon Hill model at the exact velocities: residual O(dt²), and the
    sign of v_MT = −R·q̇ matters."""
    q, qdot, a = truth["q"], truth["qdot"], truth["activation"]

    def rigid(qk, qdotk, ak):
        lmt, r = model.path.length_and_moment_arms(qk)
        return model.muscles.rigid_tendon_state(lmt, -r @ qdotk, ak).tendon_force

    forces = jax.vmap(rigid)(q, qdot, a)
    errors = [_max_abs(local["rigid"](model, a, q, forces, stride=s)) for s in STRIDES]
    orders = _order(errors)
    assert errors[-1] < RIGID_EXACT_MAX_1MS, errors
    assert np.all((orders > 1.8) & (orders < 2.2)), (errors, orders)
    wrong_sign = jax.vmap(rigid)(q, -qdot, a)
    assert _max_abs(local["rigid"](model, a, q, wrong_sign, stride=1)) > 1e2 * errors[-1]


def test_consistency_compliant_exact_and_detects_wrong_forces(model, truth, local):
    a, q, forces = truth["activation"], truth["q"], truth["forces"]
    errors = [_max_abs(local["compliant"](model, a, q, forces, stride=s)) for s in STRIDES]
    orders = _order(errors)
    assert errors[-1] < COMPLIANT_MAX_1MS, errors
    assert np.all((orders > 1.8) & (orders < 2.2)), (errors, orders)
    shuffled = forces[:, jnp.array([1, 2, 3, 4, 0])]  # a wrong muscle ordering
    wrong = _max_abs(local["compliant"](model, a, q, shuffled, stride=1))
    assert errors[-1] < 1e-3 * wrong, (errors[-1], wrong)
    # The rigid-tendon residual of the truth is below that of the wrong ordering, but not by
    # much on this long-tendon model (documented in the function's docstring).
    rigid_true = _max_abs(local["rigid"](model, a, q, forces, stride=1))
    rigid_wrong = _max_abs(local["rigid"](model, a, q, shuffled, stride=1))
    assert rigid_true < rigid_wrong, (rigid_true, rigid_wrong)


# -- EMG → activation ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def emg():
    return jax.jit(ph.emg_to_activation, static_argnames="substeps")


def test_emg_to_activation_matches_simulate(truth, emg):
    a = emg(truth["excitation"], 1.0 / DT)
    assert a.shape == truth["activation"].shape
    # simulate integrates the same dynamics (wrist: τ 15/60 ms, b = 0.1) with the same
    # linearly interpolated excitation, at rtol 1e-10; measured difference 3e-11.
    np.testing.assert_allclose(a, truth["activation"], atol=1e-9)


def test_emg_to_activation_converges_and_rises_faster_than_it_falls(emg):
    up = jnp.ones((1001, 5)).at[0].set(0.0)  # the shape of the truth: compiled already
    rise = np.asarray(emg(0.5 * up, 1000.0))[:, 0]
    fall = np.asarray(emg(0.5 * (1.0 - up), 1000.0))[:, 0]
    assert rise[0] == 0.0 and fall[0] == 0.5
    assert abs(rise[-1] - 0.5) < 1e-6 and abs(fall[-1]) < 1e-6
    assert np.all(np.diff(rise) >= 0) and np.all(np.diff(fall) <= 0)
    half_rise = int(np.argmax(rise >= 0.25))
    half_fall = int(np.argmax(fall <= 0.25))
    assert 0 < half_rise < half_fall  # τ_act < τ_deact
    # RK4 sub-steps: converged at the default 4 per sample even at 100 Hz on a step input
    # (measured 8e-6), and the error falls at about fourth order (measured 20x from 2 to 4;
    # the reference with 8 sub-steps is itself off by 5e-7).
    ref = emg(0.5 * up, 100.0, substeps=8)
    err = [float(np.abs(emg(0.5 * up, 100.0, substeps=k) - ref).max()) for k in (2, 4)]
    assert err[1] < 2e-5 and err[0] / err[1] > 10, err


# -- transformations -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def window(truth):
    sl = slice(200, 241)  # 41 samples
    return truth["activation"][sl], truth["q"][sl], truth["forces"][sl]


def _set(model, fmax=None, inertia=None):
    if fmax is not None:
        model = eqx.tree_at(lambda m: m.muscles.params.max_isometric_force, model, fmax)
    if inertia is not None:
        model = eqx.tree_at(lambda m: m.skeleton.inertia, model, inertia)
    return model


def _check_against_central_differences(value_and_grad, args, cases):
    value, grads = value_and_grad(*args)
    for g in grads:
        assert np.all(np.isfinite(g))
    for argnum, index, h in cases:
        x = args[argnum]
        plus = list(args); plus[argnum] = x.at[index].add(h)  # noqa: E702
        minus = list(args); minus[argnum] = x.at[index].add(-h)  # noqa: E702
        fd = (value_and_grad(*plus)[0] - value_and_grad(*minus)[0]) / (2 * h)
        assert abs(float(grads[argnum][index])) > 0
        np.testing.assert_allclose(grads[argnum][index], fd, rtol=GRAD_RTOL)
    return grads


def test_gradients_match_finite_differences(model, window):
    a, q, forces = window

    def consistency_loss(q, forces, fmax):
        m = _set(model, fmax=fmax)
        r2 = ph.muscle_consistency_residual(m, a, q, forces, DT)
        r3 = ph.muscle_consistency_residual(m, a, q, forces, DT, tendon="compliant")
        return jnp.sum(r2**2) + jnp.sum(r3**2)

    def eom_loss(q, forces, fmax, inertia):
        r1 = ph.equation_of_motion_residual(_set(model, fmax, inertia), q, forces, DT)
        return jnp.sum(r1**2)

    fmax0, inertia0 = model.muscles.params.max_isometric_force, model.skeleton.inertia
    # Steps: the loss is strongly curved in q (q̇ and q̈ carry 1/dt, 1/dt²), so q's step is
    # small; truncation (h²) and rounding (eps/h) then both stay below 1e-7 relative.
    _check_against_central_differences(
        jax.jit(jax.value_and_grad(consistency_loss, argnums=(0, 1, 2))),
        (q, forces, fmax0), [(0, (20, 0), 1e-8), (1, (10, 2), 1e-5), (2, (3,), 1e-4)])
    grads = _check_against_central_differences(
        jax.jit(jax.value_and_grad(eom_loss, argnums=(0, 1, 2, 3))),
        (q, forces, fmax0, inertia0),
        [(0, (20, 0), 1e-8), (1, (10, 2), 1e-4), (3, (), 1e-9)])
    # The default EoM scale is a constant: F_max cannot shrink the EoM residual.
    assert np.all(grads[2] == 0)


def test_jit_equals_eager_and_vmap(model, truth, window, eom, consistency, emg):
    a, q, forces = window
    tol = dict(rtol=1e-10, atol=1e-15)  # fusion reorders sums of opposite-sign terms
    # Eager (op-by-op) evaluation of the residuals compiles every primitive separately, ~5 s
    # each on the 2-core test machine; jit == eager is checked on the scan-based
    # emg_to_activation and on finite_differences, and the residuals' jitted, vmapped and
    # stencil forms are compared with each other here and above.
    np.testing.assert_allclose(jax.jit(ph.finite_differences)(q, DT)[1],
                               ph.finite_differences(q, DT)[1], **tol)
    starts = (0, 300, 600)
    qs = jnp.stack([truth["q"][s:s + 41] for s in starts])
    fs = jnp.stack([truth["forces"][s:s + 41] for s in starts])
    as_ = jnp.stack([truth["activation"][s:s + 41] for s in starts])
    batched = jax.jit(jax.vmap(lambda q, f: ph.equation_of_motion_residual(model, q, f, DT)))(
        qs, fs)
    batched_c = jax.jit(jax.vmap(
        lambda a, q, f: ph.muscle_consistency_residual(model, a, q, f, DT)))(as_, qs, fs)
    batched_a = jax.vmap(lambda e: emg(e, 1000.0))(as_)
    np.testing.assert_allclose(emg(as_[0], 1000.0), ph.emg_to_activation(as_[0], 1000.0), **tol)
    for i in range(len(starts)):
        np.testing.assert_allclose(batched[i], eom(model, qs[i], fs[i], DT), **tol)
        np.testing.assert_allclose(batched_c[i], consistency(model, as_[i], qs[i], fs[i], DT),
                                   **tol)
        np.testing.assert_allclose(batched_a[i], emg(as_[i], 1000.0), **tol)


# -- bad input ----------------------------------------------------------------------------
def test_shape_errors_name_the_argument(model):
    q, f, a = jnp.zeros((10, 1)), jnp.zeros((10, 5)), jnp.zeros((10, 5))
    cases = [
        (lambda: ph.equation_of_motion_residual(model, jnp.zeros(10), f, DT), "q has shape"),
        (lambda: ph.equation_of_motion_residual(model, q, jnp.zeros((10, 4)), DT), "forces"),
        (lambda: ph.equation_of_motion_residual(model, q[:2], f[:2], DT), "T >= 3"),
        (lambda: ph.equation_of_motion_residual(model, q, f[:9], DT), "different lengths"),
        (lambda: ph.equation_of_motion_residual(model, jnp.zeros((2, 10, 1)), f, DT), "vmap"),
        (lambda: ph.equation_of_motion_residual(model, q, f, jnp.ones(2)), "dt has shape"),
        (lambda: ph.equation_of_motion_residual(model, q, f, -1.0), "dt"),
        (lambda: ph.equation_of_motion_residual(model, q, f, DT, scale=jnp.ones(3)), "scale"),
        (lambda: ph.muscle_consistency_residual(model, a[:, :2], q, f, DT), "activation"),
        (lambda: ph.muscle_consistency_residual(model, a, q, f, DT, tendon="elastic"), "tendon"),
        (lambda: ph.finite_differences(jnp.zeros(2), DT), "T >= 3"),
        (lambda: ph.emg_to_activation(jnp.zeros(10), 1000.0), "envelope"),
        (lambda: ph.emg_to_activation(a, 1000.0, tau_act=jnp.ones(3)), "tau_act"),
        (lambda: ph.emg_to_activation(a.at[3, 1].set(jnp.nan), 1000.0), "envelope"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
