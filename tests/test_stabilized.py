"""StabilizedRK3: order conditions, stability interval, observed order, and use in simulate."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

import jaxmsk as msk
from jaxmsk._solvers import STABILITY_COEFFICIENTS

TABLEAU = msk.StabilizedRK3.tableau
A = np.zeros((5, 5))
for i, row in enumerate(TABLEAU.a_lower):
    A[i + 1, : i + 1] = row
B = np.asarray(TABLEAU.b_sol)
B_HAT = B - np.asarray(TABLEAU.b_error)
C = A.sum(axis=1)


def _stability_polynomial(b):
    return np.array([1.0] + [b @ np.linalg.matrix_power(A, k) @ np.ones(5) for k in range(5)])


def _stable_up_to(coeffs, grid=np.linspace(0.0, -20.0, 200_001)):  # noqa: B008
    """The largest β with |R(x)| ≤ 1 on [−β, 0] (on a 1e-4 grid)."""
    bad = np.nonzero(np.abs(np.polyval(coeffs[::-1], grid)) > 1 + 1e-12)[0]
    return -grid[bad[0] - 1]


def test_order_conditions():
    np.testing.assert_allclose(np.asarray(TABLEAU.c), C[1:], atol=1e-15)
    # Order 3 for the solution...
    for got, want in ((B.sum(), 1.0), (B @ C, 1 / 2), (B @ C**2, 1 / 3), (B @ A @ C, 1 / 6)):
        assert abs(got - want) < 1e-12
    # ... order 2 (and not 3) for the embedded one, so the error estimate is O(h³).
    assert abs(B_HAT.sum() - 1) < 1e-12 and abs(B_HAT @ C - 0.5) < 1e-12
    assert abs(B_HAT @ A @ C - 1 / 6) > 0.05
    assert np.all(A >= 0) and np.all(B > 0)


def test_stability_interval():
    poly = _stability_polynomial(B)
    np.testing.assert_allclose(poly[:4], [1, 1, 1 / 2, 1 / 6], atol=1e-12)
    np.testing.assert_allclose(poly[4:], STABILITY_COEFFICIENTS, atol=1e-12)
    beta = _stable_up_to(poly)
    assert 10.05 < beta < 10.2, beta
    # Damped beyond z = −2 (|R| ≤ 0.9), and the embedded method is stable further out.
    x = np.linspace(-10.05, -2.0, 10_000)
    assert np.max(np.abs(np.polyval(poly[::-1], x))) <= 0.9 + 1e-3
    assert _stable_up_to(_stability_polynomial(B_HAT)) > 14.0
    # Bosh3's interval, for scale: 4× shorter for 3 evaluations against 5.
    assert abs(_stable_up_to(np.array([1, 1, 1 / 2, 1 / 6])) - 2.51) < 0.01


def _fixed_step(vf, y0, t1, n):
    return diffrax.diffeqsolve(diffrax.ODETerm(vf), msk.StabilizedRK3(), 0.0, t1, t1 / n, y0,
                               stepsize_controller=diffrax.ConstantStepSize(),
                               max_steps=n + 1).ys


def test_observed_order_three_on_a_nonlinear_nonautonomous_ode():
    def vf(t, y, args):
        x, z = y["x"], y["z"]
        return {"x": -3 * x + jnp.sin(z) + jnp.cos(2 * t),
                "z": -0.5 * z + 0.3 * x * z + jnp.sin(3 * t) - 0.2 * z**2}

    y0 = {"x": jnp.array([1.0]), "z": jnp.array([0.5])}
    ref = diffrax.diffeqsolve(diffrax.ODETerm(vf), diffrax.Dopri8(), 0.0, 1.0, 1e-3, y0,
                              stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13),
                              max_steps=None).ys
    errs = [max(float(jnp.max(jnp.abs(_fixed_step(vf, y0, 1.0, n)[k] - ref[k]))) for k in "xz")
            for n in (10, 20, 40, 80)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    print("errors", errs, "observed orders", orders)
    assert np.all((orders > 2.8) & (orders < 3.4)), orders


@pytest.mark.parametrize("h, stable", [(9.5e-3, True), (10.5e-3, False)])
def test_linear_stability_boundary_in_diffrax(h, stable):
    # y' = −1000 y with hλ = −9.5 (inside [−10.08, 0]) decays; at −10.5 it grows.
    y = _fixed_step(lambda t, y, args: -1000.0 * y, jnp.array([1.0]), 200 * h, 200)
    assert (float(jnp.abs(y[-1, 0])) < 1e-3) == stable


@eqx.filter_jit
def _arm26(model, excitation, ts, solver, rtol):
    return msk.simulate(model, excitation, ts, q0=jnp.array([0.3, 0.8]), solver=solver,
                        rtol=rtol, atol=rtol * 1e-2)


@pytest.fixture(scope="module")
def arm26_case():
    """The built-in arm26 (compliant tendons, stiff tendon-force modes) over 1 s, with the
    benchmark's kind of excitation: co-contraction around 0.2."""
    model = msk.models.arm26()
    ts = jnp.linspace(0.0, 1.0, 101)
    excitation = 0.2 + 0.05 * jnp.sin(2 * jnp.pi * ts[:, None] * jnp.arange(1.0, 7.0) / 3
                                      + jnp.arange(6.0))
    ref = _arm26(model, excitation, ts, "explicit", 1e-10)
    return model, excitation, ts, ref


def test_simulate_stabilized_accuracy_and_steps(arm26_case):
    model, excitation, ts, ref = arm26_case
    traj = _arm26(model, excitation, ts, "stabilized", 1e-3)
    bosh = _arm26(model, excitation, ts, diffrax.Bosh3(), 1e-3)
    assert traj.result == diffrax.RESULTS.successful
    err = float(jnp.max(jnp.abs(traj.q - ref.q)))
    steps, bosh_steps = int(traj.stats["num_steps"]), int(bosh.stats["num_steps"])
    print(f"arm26, rtol 1e-3: stabilized {err:.2e} rad in {steps} steps; Bosh3 "
          f"{float(jnp.max(jnp.abs(bosh.q - ref.q))):.2e} rad in {bosh_steps} steps")
    assert err < 1e-4
    assert float(jnp.min(jnp.ptp(ref.q, axis=0))) > 0.1  # both joints move
    # Fewer steps than Bosh3 by more than the 5/3 ratio of evaluations per step.
    assert steps * 5 < bosh_steps * 3


def test_simulate_stabilized_gradient(arm26_case):
    model, excitation, ts, _ = arm26_case
    excitation, ts = excitation[:11], ts[:11]  # 0.1 s keeps the reference gradient cheap

    def loss(exc, solver, rtol):
        return jnp.sum(_arm26(model, exc, ts, solver, rtol).q ** 2)

    g = jax.grad(loss)(excitation, "stabilized", 1e-6)
    g_ref = jax.grad(loss)(excitation, "explicit", 1e-8)
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(g, g_ref, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(g_ref))))


def test_fixed_step_solve_gradients_check():
    # Reverse-mode derivatives (diffrax's default checkpointed adjoint) of a StabilizedRK3
    # solve against finite differences, on a nonlinear ODE with a stiff (hλ = −8) and a slow
    # component.
    def solve(y0, rate):
        def vf(t, y, args):
            return jnp.stack([-rate * (y[0] - jnp.sin(y[1])), -0.5 * y[1] + 0.3 * y[0] * y[1]])

        return _fixed_step(vf, y0, 0.2, 25)[-1]

    jax.test_util.check_grads(solve, (jnp.array([1.0, 0.5]), 1000.0), order=1,
                              modes=("rev",), eps=1e-6)
