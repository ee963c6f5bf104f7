"""DeGrooteFregly2016 muscle–tendon units: live OpenSim parity, gradients, edge cases."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    DERIVATIVE_REL,
    EQUILIBRIUM_REL,
    import_opensim,
    opensim_equilibrium,
    opensim_slider_muscle,
    random_physiological_cases,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxmsk as msk

osim = import_opensim()
N_CASES = 200


def _muscle(c, tendon="compliant", damping=0.0):
    params = msk.MuscleParameters(c["fmax"], c["lopt"], c["lts"], c["alpha"], 10.0)
    return msk.DeGrooteFregly2016Muscle(params, tendon=tendon, fiber_damping=damping)


@eqx.filter_jit
def _equilibrium(muscle, lmt, act, vmt):
    return muscle.equilibrium(lmt, act, vmt)


@pytest.fixture(scope="module")
def cases():
    return random_physiological_cases(np.random.default_rng(20221), N_CASES)


def _rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(b)), 1e-12)


@pytest.mark.parametrize("tendon", ["compliant", "rigid"])
def test_static_equilibrium_matches_opensim(cases, tendon):
    """≥ 200 random (F_max, l_opt, l_ts, α_opt, l_MT, a), one stacked module, vs OpenSim."""
    c = cases
    ours = _equilibrium(_muscle(c, tendon), jnp.asarray(c["lmt"]), jnp.asarray(c["act"]), 0.0)
    ref = np.array([
        opensim_equilibrium(c["fmax"][i], c["lopt"][i], c["lts"][i], c["alpha"][i], c["lmt"][i],
                            c["act"][i], rigid=(tendon == "rigid"))
        for i in range(N_CASES)
    ])
    assert bool(jnp.all(ours.bracketed))
    errors = {
        "fiber_length": _rel(ours.fiber_length, ref[:, 0]).max(),
        "pennation_angle": np.abs(np.asarray(ours.pennation_angle) - ref[:, 1]).max(),
        "tendon_force": (np.abs(np.asarray(ours.tendon_force) - ref[:, 2])
                         / np.maximum(np.abs(ref[:, 2]), 1e-3 * c["fmax"])).max(),
    }
    print(f"{tendon} equilibrium max errors vs OpenSim:", errors)
    assert all(e < EQUILIBRIUM_REL for e in errors.values()), errors


def test_equilibrium_satisfies_opensims_own_residual(cases):
    """OpenSim's `calcEquilibriumResidual` (N) at jaxmsk's root: below 1e-11 N, tighter than
    OpenSim's bisection (stopped at a 1e-10 tolerance) reaches."""
    c = {k: v[:50] for k, v in cases.items()}
    ours = _equilibrium(_muscle(c), jnp.asarray(c["lmt"]), jnp.asarray(c["act"]), 0.0)
    worst = 0.0
    for i in range(50):
        model, _, mus, _ = opensim_slider_muscle(c["fmax"][i], c["lopt"][i], c["lts"][i],
                                                 c["alpha"][i])
        residual = mus.calcEquilibriumResidual(float(c["lmt"][i]), 0.0, float(c["act"][i]),
                                               float(ours.norm_tendon_force[i]), 0.0)
        worst = max(worst, abs(residual))
    assert worst < 1e-11, worst


def test_equilibrium_with_mtu_velocity_and_damping_matches_opensim(cases):
    c = {k: v[:40] for k, v in cases.items()}
    c["act"] = np.maximum(c["act"], 0.3)  # active fibres, so that a root exists in [0, 5]
    rng = np.random.default_rng(7)
    vmt = rng.uniform(-0.2, 0.2, 40) * c["lopt"] * 10.0  # ±0.2 v_max
    for damping in (0.0, 0.05):
        ours = _equilibrium(_muscle(c, damping=damping), jnp.asarray(c["lmt"]),
                            jnp.asarray(c["act"]), jnp.asarray(vmt))
        ref = np.array([
            opensim_equilibrium(c["fmax"][i], c["lopt"][i], c["lts"][i], c["alpha"][i],
                                c["lmt"][i], c["act"][i], vmt[i], damping=damping)
            for i in range(40)
        ])
        err = (np.abs(np.asarray(ours.tendon_force) - ref[:, 2])
               / np.maximum(ref[:, 2], 1e-3 * c["fmax"]))
        assert err.max() < EQUILIBRIUM_REL, err.max()


def test_reference_equilibria():
    """The reference muscle: F_max 1000 N, l_opt 0.1 m, l_ts 0.2 m, α_opt 0.1 rad."""
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(jnp.full(2, 1000.0), 0.1, 0.2, 0.1, 10.0))
    e = m.equilibrium(jnp.array([0.28, 0.30]), jnp.array([0.1, 1.0]))
    np.testing.assert_allclose(e.fiber_length, [0.0786817, 0.0909800], atol=5e-8)
    np.testing.assert_allclose(e.tendon_force, [85.88947, 950.45470], atol=5e-5)


def test_compliant_tendon_derivative_matches_opensim():
    rng = np.random.default_rng(3)
    n = 60
    fmax, lopt = rng.uniform(100, 3000, n), rng.uniform(0.03, 0.2, n)
    lts, alpha = lopt * rng.uniform(0.5, 5.0, n), rng.uniform(0.0, 0.5, n)
    act, ft = rng.uniform(0.05, 1.0, n), rng.uniform(0.02, 1.5, n)
    lm = lopt * rng.uniform(0.6, 1.5, n)
    lm = np.maximum(lm, 1.05 * lopt * np.sin(alpha))
    lmt = lts * (1.0 + rng.uniform(0.0, 0.04, n)) + np.sqrt(lm**2 - (lopt * np.sin(alpha)) ** 2)
    vmt = rng.uniform(-0.5, 0.5, n)
    ref = []
    for i in range(n):
        model, s, mus, coord = opensim_slider_muscle(fmax[i], lopt[i], lts[i], alpha[i])
        coord.setValue(s, lmt[i])
        coord.setSpeedValue(s, vmt[i])
        mus.setActivation(s, act[i])
        mus.setNormalizedTendonForce(s, ft[i])
        model.realizeAcceleration(s)
        ref.append((mus.getStateVariableDerivativeValue(s, "normalized_tendon_force"),
                    mus.getFiberLength(s), mus.getFiberVelocity(s), mus.getTendonVelocity(s),
                    mus.getNormalizedFiberVelocity(s)))
    ref = np.array(ref)
    # Random states imply any fibre velocity; compare where OpenSim's own fibre velocity lies
    # in the force–velocity curve's domain ṽ ∈ [−1, 1] (outside it jaxmsk saturates at ±10).
    keep = np.abs(ref[:, 4]) <= 1.0
    assert keep.sum() >= 25
    ref, lmt, vmt, act, ft = ref[keep], lmt[keep], vmt[keep], act[keep], ft[keep]
    fmax, lopt, lts, alpha = fmax[keep], lopt[keep], lts[keep], alpha[keep]
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(fmax, lopt, lts, alpha))
    ours = m.norm_tendon_force_derivative(lmt, vmt, act, ft)
    state = m.compliant_tendon_state(lmt, vmt, act, ft)
    np.testing.assert_allclose(ours, ref[:, 0], rtol=DERIVATIVE_REL, atol=1e-9)
    np.testing.assert_allclose(state.fiber_length, ref[:, 1], rtol=DERIVATIVE_REL)
    np.testing.assert_allclose(state.fiber_velocity, ref[:, 2], rtol=DERIVATIVE_REL, atol=1e-12)
    np.testing.assert_allclose(state.tendon_velocity, ref[:, 3], rtol=DERIVATIVE_REL, atol=1e-12)


def test_activation_derivative_matches_opensim():
    model, s, mus, coord = opensim_slider_muscle(1000, 0.1, 0.2, 0.0)
    coord.setValue(s, 0.3)
    act = msk.DeGrooteActivation()
    rng = np.random.default_rng(11)
    for e, a in rng.uniform(0.0, 1.0, (40, 2)):
        mus.setActivation(s, a)
        model.realizeVelocity(s)
        model.setControls(s, osim.Vector(1, float(e)))
        model.realizeAcceleration(s)
        ref = mus.getStateVariableDerivativeValue(s, "activation")
        assert float(act.derivative(e, a)) == pytest.approx(ref, rel=1e-12, abs=1e-12)


def test_rigid_tendon_kinematics_and_force():
    c = random_physiological_cases(np.random.default_rng(5), 20)
    rng = np.random.default_rng(6)
    vmt = rng.uniform(-0.5, 0.5, 20)
    m = _muscle(c, "rigid", damping=0.02)
    ours = m.rigid_tendon_state(c["lmt"], vmt, c["act"])
    for i in range(20):
        model, s, mus, coord = opensim_slider_muscle(c["fmax"][i], c["lopt"][i], c["lts"][i],
                                                     c["alpha"][i], rigid=True)
        mus.set_fiber_damping(0.02)
        s = model.initSystem()
        coord.setValue(s, c["lmt"][i])
        coord.setSpeedValue(s, vmt[i])
        mus.setActivation(s, c["act"][i])
        model.realizeDynamics(s)
        assert float(ours.fiber_length[i]) == pytest.approx(mus.getFiberLength(s), rel=1e-12)
        assert float(ours.fiber_velocity[i]) == pytest.approx(mus.getFiberVelocity(s), rel=1e-10,
                                                              abs=1e-12)
        assert float(ours.tendon_force[i]) == pytest.approx(mus.getTendonForce(s), rel=1e-10,
                                                            abs=1e-9)


# -- gradients ----------------------------------------------------------------------------
def _scalar_equilibrium(theta, tendon="compliant"):
    fmax, lopt, lts, alpha, lmt, act = theta
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(fmax, lopt, lts, alpha), tendon=tendon)
    e = m.equilibrium(lmt, act)
    return jnp.stack([e.tendon_force[0] / 1000.0, e.fiber_length[0] * 10.0, e.pennation_angle[0]])


@pytest.mark.parametrize("tendon", ["compliant", "rigid"])
def test_equilibrium_check_grads(tendon):
    theta = (jnp.float64(1000.0), jnp.float64(0.1), jnp.float64(0.2), jnp.float64(0.15),
             jnp.float64(0.302), jnp.float64(0.6))
    check_grads(lambda *t: _scalar_equilibrium(t, tendon), theta, order=1, modes=("fwd", "rev"),
                eps=1e-6)


def test_equilibrium_gradient_matches_finite_differences_of_opensim():
    """∂F_T/∂l_MT from the implicit function theorem vs central differences of OpenSim."""
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(800.0, 0.08, 0.25, 0.2))
    g = jax.grad(lambda l: m.equilibrium(l, 0.7).tendon_force[0])(0.33)
    h = 1e-5
    fd = (opensim_equilibrium(800, 0.08, 0.25, 0.2, 0.33 + h, 0.7)[2]
          - opensim_equilibrium(800, 0.08, 0.25, 0.2, 0.33 - h, 0.7)[2]) / (2 * h)
    assert float(g) == pytest.approx(fd, rel=1e-4)


def test_derivative_check_grads():
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters([900.0, 300.0], [0.09, 0.05],
                                                          [0.2, 0.25], [0.1, 0.3]))
    args = (jnp.array([0.29, 0.30]), jnp.array([0.05, -0.1]), jnp.array([0.4, 0.8]),
            jnp.array([0.3, 0.6]))
    check_grads(m.norm_tendon_force_derivative, args, order=1, modes=("fwd", "rev"), eps=1e-7)
    check_grads(lambda fmax: msk.DeGrooteFregly2016Muscle(
        msk.MuscleParameters(fmax, 0.09, 0.2, 0.1)).norm_tendon_force_derivative(
            0.29, 0.0, 0.5, 0.4),
        (jnp.array([900.0]),), order=1, modes=("fwd", "rev"))


# -- the whole physiological domain: finite values and gradients ---------------------------
@pytest.fixture(scope="module")
def value_and_grads():
    def outputs(theta):
        fmax, lopt, lts, alpha, lmt, vmt, act, ft = theta
        p = msk.MuscleParameters(fmax, lopt, lts, alpha)
        comp = msk.DeGrooteFregly2016Muscle(p)
        rigid = msk.DeGrooteFregly2016Muscle(p, tendon="rigid")
        e = comp.equilibrium(lmt, act, vmt)
        r = rigid.equilibrium(lmt, act, vmt)
        d = comp.norm_tendon_force_derivative(lmt, vmt, act, ft)
        s = comp.compliant_tendon_state(lmt, vmt, act, ft)
        return jnp.concatenate([e.tendon_force, e.fiber_length, e.pennation_angle, r.tendon_force,
                                r.fiber_length, d, s.fiber_velocity, s.fiber_force])

    return jax.jit(lambda th: (outputs(th), jax.jacrev(outputs)(th)))


@settings(max_examples=150, deadline=None)
@given(
    fmax=st.floats(10.0, 5000.0), lopt=st.floats(0.01, 0.3), ratio=st.floats(0.1, 8.0),
    alpha=st.floats(0.0, 1.2), act=st.sampled_from([0.0, 1e-6, 0.01, 0.5, 1.0]),
    edge=st.sampled_from(["slack", "lmin", "lmax", "interior", "overstretched"]),
    vmt=st.floats(-1.0, 1.0), ft=st.floats(0.0, 5.0),
)
def test_no_nan_or_inf_anywhere_in_the_physiological_domain(value_and_grads, fmax, lopt, ratio,
                                                            alpha, act, edge, vmt, ft):
    lts = lopt * ratio
    width = lopt * np.sin(alpha)
    lm = {"lmin": 0.2, "lmax": 1.8, "interior": 1.0, "slack": 0.5,
          "overstretched": 2.5}[edge] * lopt
    lm = max(lm, width * 1.0001)
    lmt = lts + np.sqrt(lm**2 - width**2)
    if edge == "slack":
        lmt = 0.9 * lts  # MTU shorter than the tendon slack length
    theta = tuple(jnp.float64(x) for x in (fmax, lopt, lts, alpha, lmt, vmt, act, ft))
    values, grads = value_and_grads(theta)
    assert np.all(np.isfinite(values)), values
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_slack_tendon_equilibrium_has_zero_force_and_flags_it():
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(1000.0, 0.1, 0.2, 0.0))
    e = m.equilibrium(jnp.array([0.15]), jnp.array([0.5]))
    assert float(e.tendon_force[0]) == 0.0 and not bool(e.bracketed[0])
    g = jax.grad(lambda l: m.equilibrium(l, 0.5).tendon_force[0])(0.15)
    assert np.isfinite(g)
    with pytest.raises(RuntimeError, match="same sign"):  # OpenSim raises here
        opensim_equilibrium(1000, 0.1, 0.2, 0.0, 0.15, 0.5)


# -- transformations, retracing, errors -----------------------------------------------------
def test_jit_vmap_grad_parity(cases):
    c = {k: v[:8] for k, v in cases.items()}
    m = _muscle(c)
    lmt, act = jnp.asarray(c["lmt"]), jnp.asarray(c["act"])
    eager = m.equilibrium(lmt, act).tendon_force
    jitted = eqx.filter_jit(lambda m, l, a: m.equilibrium(l, a).tendon_force)(m, lmt, act)
    np.testing.assert_allclose(jitted, eager, rtol=1e-13)
    # vmap over a batch of MTU lengths (e.g. time samples) and over parameter sets.
    batch = jnp.stack([lmt, lmt * 1.01, lmt * 0.99])
    vm = jax.vmap(lambda l: m.equilibrium(l, act).tendon_force)(batch)
    loop = jnp.stack([m.equilibrium(l, act).tendon_force for l in batch])
    np.testing.assert_allclose(vm, loop, rtol=1e-13)
    scales = jnp.array([0.8, 1.0, 1.2])
    vp = jax.vmap(lambda s: eqx.tree_at(lambda mm: mm.params.max_isometric_force, m,
                                        m.params.max_isometric_force * s)
                  .equilibrium(lmt, act).tendon_force)(scales)
    np.testing.assert_allclose(vp[1], eager, rtol=1e-13)
    # grad with respect to every parameter at once, eager vs jit.
    loss = lambda m: jnp.sum(m.equilibrium(lmt, act).tendon_force ** 2)
    g1 = eqx.filter_grad(loss)(m)
    g2 = eqx.filter_jit(eqx.filter_grad(loss))(m)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_no_retracing():
    traces = []

    @eqx.filter_jit
    def f(m, l, a):
        traces.append(1)
        return m.equilibrium(l, a).tendon_force

    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(np.full(3, 500.0), 0.1, 0.2, 0.1))
    for k in range(4):
        f(m, np.full(3, 0.29 + 0.005 * k), np.full(3, 0.1 * k))
        m = eqx.tree_at(lambda mm: mm.params.max_isometric_force, m,
                        jnp.asarray(np.full(3, 500.0 + k)))
    assert len(traces) == 1


def test_bad_input_errors():
    with pytest.raises(ValueError, match="max_isometric_force must be positive"):
        msk.MuscleParameters(-1.0, 0.1, 0.2)
    with pytest.raises(ValueError, match="optimal_fiber_length contains NaN"):
        msk.MuscleParameters(100.0, np.nan, 0.2)
    with pytest.raises(ValueError, match="pennation_angle must lie in"):
        msk.MuscleParameters(100.0, 0.1, 0.2, 2.0)
    with pytest.raises(ValueError, match="disagree on the number of muscles"):
        msk.MuscleParameters([100.0, 200.0], [0.1, 0.1, 0.1], 0.2)
    with pytest.raises(ValueError, match="1-D array over muscles"):
        msk.MuscleParameters(np.ones((2, 2)), 0.1, 0.2)
    m = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters([100.0, 200.0], 0.1, 0.2))
    with pytest.raises(ValueError, match=r"mtu_length has shape \(3,\).*2 muscle"):
        m.equilibrium(jnp.ones(3), 0.5)
    with pytest.raises(ValueError, match="activation contains NaN"):
        m.equilibrium(0.3, np.nan)
    with pytest.raises(ValueError, match='tendon must be "compliant" or "rigid"'):
        msk.DeGrooteFregly2016Muscle(m.params, tendon="elastic")
    with pytest.raises(ValueError, match="fiber_damping must be >= 0"):
        msk.DeGrooteFregly2016Muscle(m.params, fiber_damping=-1.0)
    with pytest.raises(ValueError, match="needs norm_tendon_force"):
        m.tendon_force(0.3, 0.0, 0.5)
    # Inside jit, values are checked by eqx.error_if.
    with pytest.raises(Exception, match="mtu_length contains NaN"):
        jax.jit(lambda l: m.equilibrium(l, 0.5).tendon_force)(jnp.array([0.3, jnp.nan]))
    with pytest.raises(Exception, match="max_isometric_force must be positive"):
        jax.jit(lambda f: msk.MuscleParameters(f, 0.1, 0.2).max_isometric_force)(jnp.array([-1.0]))
