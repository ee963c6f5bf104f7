"""simulate(): forward dynamics vs OpenSim's Manager, transformations, gradients, errors."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SIM_ABS_X, opensim_block_simulation
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxmsk as msk

TS = np.linspace(0.0, 1.0, 101)
EXCITATIONS = {
    "constant": np.full(101, 0.4),
    "varying": 0.3 + 0.3 * np.sin(2 * np.pi * 2 * TS),
}


def block_model(tendon="compliant", fmax=1000.0):
    muscles = msk.DeGrooteFregly2016Muscle(msk.MuscleParameters(fmax, 0.1, 0.2, 0.1), tendon=tendon)
    path = msk.PolynomialPath(coefficients=jnp.array([[0.0, 1.0]]), centre=jnp.zeros(1),
                              scale=jnp.ones(1), exponents=((0,), (1,)))  # l_MT = x
    return msk.Model(muscles, msk.DeGrooteActivation(), msk.Slider(20.0, 9.80665), path,
                     muscle_names=("muscle",), coordinate_names=("x",))


@eqx.filter_jit
def _simulate_block(model, excitation):
    return msk.simulate(model, excitation, jnp.asarray(TS), q0=jnp.array([0.31]), rtol=1e-9,
                        atol=1e-11)


@pytest.mark.parametrize("tendon", ["compliant", "rigid"])
@pytest.mark.parametrize("kind", ["constant", "varying"])
def test_block_on_slider_matches_opensim(tendon, kind):
    exc = EXCITATIONS[kind]
    ref = opensim_block_simulation(TS, exc, rigid=(tendon == "rigid"))
    traj = _simulate_block(block_model(tendon), jnp.asarray(exc)[:, None])
    assert traj.result == diffrax.RESULTS.successful
    err = float(np.max(np.abs(np.asarray(traj.q[:, 0]) - ref)))
    print(f"block {tendon} {kind}: max |x - x_OpenSim| = {err:.2e} m")
    assert err < SIM_ABS_X
    # The block moves (the comparison is not trivially of two constants).
    assert np.ptp(ref) > 1e-3


def test_trajectory_fields_and_consistency():
    traj = _simulate_block(block_model(), jnp.asarray(EXCITATIONS["varying"])[:, None])
    n = len(TS)
    for name in ("q", "qdot", "moments"):
        assert getattr(traj, name).shape == (n, 1)
    for name in ("activation", "norm_tendon_force", "tendon_force", "fiber_length", "mtu_length"):
        assert getattr(traj, name).shape == (n, 1)
    np.testing.assert_allclose(traj.tendon_force, 1000.0 * traj.norm_tendon_force, rtol=1e-12)
    np.testing.assert_allclose(traj.mtu_length[:, 0], traj.q[:, 0], rtol=1e-12)
    # Moment arm of l = x is −1: the muscle pulls the block back.
    np.testing.assert_allclose(traj.moments, -traj.tendon_force, rtol=1e-12)
    # Starts in static equilibrium with activation = first excitation sample.
    assert float(traj.activation[0, 0]) == pytest.approx(0.3)


def test_vmap_over_trials_and_parameter_sets_matches_loop():
    model = block_model()
    ts = jnp.linspace(0.0, 0.3, 31)
    excs = jnp.stack([jnp.full((31, 1), e) for e in (0.2, 0.5, 0.8)])
    sim = lambda m, e: msk.simulate(m, e, ts, q0=jnp.array([0.31]), rtol=1e-8, atol=1e-10,
                                    solver=diffrax.Tsit5()).q
    batched = eqx.filter_jit(jax.vmap(sim, in_axes=(None, 0)))(model, excs)
    looped = jnp.stack([eqx.filter_jit(sim)(model, e) for e in excs])
    np.testing.assert_allclose(batched, looped, rtol=1e-9, atol=1e-12)
    # Parameter sets: vmap over F_max.
    fmaxes = jnp.array([800.0, 1000.0, 1200.0])
    by_param = eqx.filter_jit(jax.vmap(lambda f: sim(eqx.tree_at(
        lambda m: m.muscles.params.max_isometric_force, model, jnp.full(1, f)), excs[1])))(fmaxes)
    np.testing.assert_allclose(by_param[1], looped[1], rtol=1e-9, atol=1e-12)
    assert not np.allclose(by_param[0], by_param[2])


def test_gradients_wrt_excitation_and_parameters_match_finite_differences():
    model = block_model()
    ts = jnp.linspace(0.0, 0.2, 21)
    exc0 = jnp.full((21, 1), 0.4)

    def loss(fmax, exc):
        m = eqx.tree_at(lambda m: m.muscles.params.max_isometric_force, model, fmax)
        q = msk.simulate(m, exc, ts, q0=jnp.array([0.31]), rtol=1e-10, atol=1e-12,
                         solver=diffrax.Tsit5()).q
        return jnp.sum(q[:, 0] ** 2)

    f0 = jnp.full(1, 1000.0)
    g_f, g_e = eqx.filter_jit(jax.grad(loss, argnums=(0, 1)))(f0, exc0)
    lf = eqx.filter_jit(loss)
    h = 1e-3
    fd_f = (lf(f0 + h, exc0) - lf(f0 - h, exc0)) / (2 * h)
    assert float(g_f[0]) == pytest.approx(float(fd_f), rel=1e-4)
    k = 10
    he = 1e-5
    fd_e = (lf(f0, exc0.at[k, 0].add(he)) - lf(f0, exc0.at[k, 0].add(-he))) / (2 * he)
    assert float(g_e[k, 0]) == pytest.approx(float(fd_e), rel=1e-4, abs=1e-12)
    assert np.all(np.isfinite(np.asarray(g_e)))


def test_backsolve_adjoint_gives_the_checkpointed_gradient():
    """`simulate(adjoint=BacksolveAdjoint())`: the gradient w.r.t. every model array and the
    excitations agrees with the default checkpointed adjoint's to the solver tolerance."""
    model = block_model()  # (diffrax 0.7.2 alone fails on it: the model sits in the term)
    ts = jnp.linspace(0.0, 0.2, 21)
    exc = 0.3 + 0.2 * jnp.sin(2 * jnp.pi * 3.0 * ts[:, None])

    def gradient(adjoint):
        def loss(both):
            m, e = both
            q = msk.simulate(m, e, ts, q0=jnp.array([0.31]), solver="explicit", rtol=1e-9,
                             atol=1e-11, adjoint=adjoint).q
            return jnp.sum((q[:, 0] - 0.3) ** 2)
        return eqx.filter_jit(eqx.filter_grad(loss))((model, exc))

    ref = eqx.filter(gradient(None), eqx.is_array)
    back = eqx.filter(gradient(diffrax.BacksolveAdjoint()), eqx.is_array)
    ref_leaves, back_leaves = jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(back)
    assert len(ref_leaves) == len(back_leaves) > 2
    moved = 0
    for a, b in zip(ref_leaves, back_leaves):
        a, b = np.asarray(a), np.asarray(b)
        assert np.all(np.isfinite(b))
        scale = np.max(np.abs(a))
        moved += scale > 0
        assert np.max(np.abs(a - b)) <= 1e-5 * scale + 1e-12, (scale, np.max(np.abs(a - b)))
    assert moved >= 2  # the excitations and at least one parameter array have gradients


def test_bad_inputs():
    model = block_model()
    ts = jnp.linspace(0, 1, 11)
    with pytest.raises(ValueError, match=r"excitation has shape \(11, 2\)"):
        msk.simulate(model, jnp.zeros((11, 2)), ts, q0=jnp.array([0.3]))
    with pytest.raises(ValueError, match=r"q0 has shape \(2,\)"):
        msk.simulate(model, jnp.zeros((11, 1)), ts, q0=jnp.zeros(2))
    with pytest.raises(ValueError, match="excitation contains NaN"):
        msk.simulate(model, jnp.full((11, 1), jnp.nan), ts, q0=jnp.array([0.3]))
    with pytest.raises(ValueError, match="ts must be a 1-D array"):
        msk.simulate(model, jnp.zeros((1, 1)), jnp.zeros(1), q0=jnp.array([0.3]))
    with pytest.raises(ValueError, match="needs a jaxmsk.Model"):
        msk.simulate("wrist", jnp.zeros((11, 1)), ts, q0=jnp.array([0.3]))
    with pytest.raises(ValueError, match="use 'stiff'"):
        msk.simulate(model, jnp.zeros((11, 1)), ts, q0=jnp.array([0.3]), solver="rk4")
    with pytest.raises(ValueError, match="diffrax solver"):
        msk.simulate(model, jnp.zeros((11, 1)), ts, q0=jnp.array([0.3]), solver=3)


def test_model_takes_only_jaxmsk_parts():
    good = block_model()
    with pytest.raises(ValueError, match="Model.skeleton must be a jaxmsk AbstractSkeleton"):
        msk.Model(good.muscles, good.activation, "slider", good.path)
    with pytest.raises(ValueError, match="Model.muscles must be a jaxmsk AbstractMuscle"):
        msk.Model(good.muscles.params, good.activation, good.skeleton, good.path)
    with pytest.raises(ValueError, match="Model.passive must be a tuple"):
        msk.Model(good.muscles, good.activation, good.skeleton, good.path,
                  passive=(lambda q, qdot: q,))
    for cls in (msk.muscle.AbstractMuscle, msk.muscle.AbstractActivation,
                msk.skeleton.AbstractSkeleton, msk.skeleton.AbstractPassive):
        with pytest.raises(TypeError):
            cls()  # abstract: a family implements it

def test_explicit_and_stiff_solvers_agree():
    model = block_model()
    exc = jnp.asarray(EXCITATIONS["varying"])[:, None]
    stiff = msk.simulate(model, exc, jnp.asarray(TS), q0=jnp.array([0.31]), solver="stiff")
    explicit = msk.simulate(model, exc, jnp.asarray(TS), q0=jnp.array([0.31]), solver="explicit")
    assert float(jnp.max(jnp.abs(stiff.q - explicit.q))) < 1e-5


def test_pi_controller_keeps_accuracy_and_stops_rejections_on_arm26():
    """`pcoeff`/`icoeff` reach the step-size controller. arm26's explicit step size is
    limited by its stiff tendons; there the I controller cycles between accepting and
    rejecting (measured: 200 rejections in 636 steps with Bosh3 at rtol 1e-4), and a PI
    controller stops that (35) at the same accuracy against a 1e-10 solution."""
    model = msk.models.arm26()
    ts = jnp.linspace(0.0, 1.0, 101)
    rng = np.random.default_rng(0)
    exc = jnp.asarray(0.2 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2, 6)
                                          * np.asarray(ts)[:, None] + rng.uniform(0, 6, 6)))
    q0 = jnp.array([0.3, 0.8])
    ref = msk.simulate(model, exc, ts, q0=q0, solver="explicit", rtol=1e-10, atol=1e-12)
    runs = {name: msk.simulate(model, exc, ts, q0=q0, solver=diffrax.Bosh3(), rtol=1e-4,
                               atol=1e-6, **kw)
            for name, kw in (("I", {}), ("PI", dict(pcoeff=0.4, icoeff=0.3)))}
    for name, tr in runs.items():
        assert float(jnp.max(jnp.abs(tr.q - ref.q))) < 1e-5, name
    rejected = {k: int(tr.stats["num_rejected_steps"]) for k, tr in runs.items()}
    assert rejected["PI"] < 0.5 * rejected["I"], rejected


def test_leaving_the_paths_box_is_reported_and_staying_inside_is_not():
    """arm26's paths were fitted over its coordinates' ranges (the built-in file predates
    `PolynomialPath.domain`: the box is read back from the fit's normalisation). Triceps on
    from a flexed elbow extends the elbow below its range within 0.85 s: `simulate` says so
    (warning and `path_domain_excursion`); a gentle trial inside the box is silent."""
    model = msk.models.arm26()
    np.testing.assert_allclose(model.path.domain, [(-np.pi / 2, np.pi), (0.0, 2.268928)],
                               atol=1e-6)
    ts = jnp.linspace(0.0, 0.85, 86)
    exc = np.full((86, 6), 0.05)
    exc[:, :3] = 0.6
    with pytest.warns(RuntimeWarning, match=r"leaves the box .* by \{'r_elbow_flex': \d"):
        tr = msk.simulate(model, exc, ts, q0=jnp.array([0.0, 1.0]), solver="stabilized",
                          rtol=1e-4)
    assert float(tr.q[:, 1].min()) < -0.4
    assert tr.result == diffrax.RESULTS.successful
    np.testing.assert_allclose(tr.path_domain_excursion, [0.0, -float(tr.q[:, 1].min())])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        inside = msk.simulate(model, np.full((86, 6), 0.1), ts, q0=jnp.array([0.3, 1.0]),
                              solver="stabilized", rtol=1e-4)
    np.testing.assert_array_equal(inside.path_domain_excursion, [0.0, 0.0])
    # under jit the flag is still there (no warning can be issued from inside)
    jitted = jax.jit(lambda e: msk.simulate(model, e, ts, q0=jnp.array([0.0, 1.0]),
                                            solver="stabilized", rtol=1e-4))(jnp.asarray(exc))
    np.testing.assert_allclose(jitted.path_domain_excursion, tr.path_domain_excursion,
                               rtol=1e-6)


def _random_batch(model, seed, n, ts):
    """n piecewise-linear excitation patterns anywhere in [0.01, 1] (6 knots per muscle) and
    initial angles in the middle 60 % of the paths' box."""
    rng = np.random.default_rng(seed)
    knots = rng.uniform(0.01, 1.0, (n, 6, model.n_muscles))
    exc = [np.stack([np.interp(ts, np.linspace(ts[0], ts[-1], 6), k[:, j])
                     for j in range(model.n_muscles)], 1) for k in knots]
    box = np.asarray(model.path.domain)
    q0 = rng.uniform(box[:, 0] + 0.2 * np.ptp(box, 1), box[:, 1] - 0.2 * np.ptp(box, 1),
                     (n, model.n_dofs))
    return np.stack(exc), q0


# One example of a batch: the batch runs until its slowest member ends (the sinusoids), so
# more members cost little and more examples cost a whole run each.
@settings(max_examples=1, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_arm26_random_excitations_finish_with_the_default_solver(seed):
    """arm26, 1 s, excitations anywhere in [0.01, 1] (random piecewise-linear patterns, and
    six sinusoids between 0.05 and 0.65 at 0.4–2.5 Hz that stopped at diffrax's 100,000-step
    limit before the paths continued linearly beyond their box): every run finishes with the
    default settings, and the runs that leave the paths' box are named."""
    from jaxmsk.distributed import simulate_batch

    model = msk.models.arm26()
    ts = np.linspace(0.0, 1.0, 101)
    exc, q0 = _random_batch(model, seed, 5, ts)
    sines = np.random.default_rng(0)
    f, phase = sines.uniform(0.4, 2.5, 6), sines.uniform(0, 2 * np.pi, 6)
    exc = np.concatenate([exc, (0.35 + 0.3 * np.sin(2 * np.pi * f * ts[:, None] + phase))[None]])
    q0 = np.concatenate([q0, [[0.0, 1.0]]])
    with pytest.warns(RuntimeWarning, match="trajectories leave the box"):
        tr = simulate_batch(model, exc, ts, q0=q0, throw=False)
    assert np.all(np.asarray(tr.result) == 0), np.asarray(tr.result)
    assert np.all(np.isfinite(np.asarray(tr.q)))
    assert float(np.asarray(tr.path_domain_excursion)[-1, 1]) > 0.1  # the sinusoids' elbow


@settings(max_examples=1, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_wrist_random_excitations_finish_with_the_default_solver(seed):
    from jaxmsk.distributed import simulate_batch

    model = msk.models.wrist()
    ts = np.linspace(0.0, 1.0, 101)
    exc, q0 = _random_batch(model, seed, 8, ts)
    tr = simulate_batch(model, exc, ts, q0=q0, throw=False)
    assert np.all(np.asarray(tr.result) == 0), np.asarray(tr.result)
    assert np.all(np.isfinite(np.asarray(tr.q)))


def test_a_solver_that_stops_says_why_and_where_instead_of_raising():
    """max_steps too small: the result code and the time reached are in the Trajectory, the
    states up to it are finite (and equal a full run's), and the call warns."""
    model = msk.models.wrist()
    ts = jnp.linspace(0.0, 0.5, 51)
    exc = jnp.full((51, 5), 0.2)
    with pytest.warns(RuntimeWarning, match=r"stopped at t = 0\.\d+ s of 0\.5 s: The maximum"):
        short = msk.simulate(model, exc, ts, q0=jnp.zeros(1), solver="explicit", max_steps=20)
    assert short.result == diffrax.RESULTS.max_steps_reached
    reached = float(short.time_reached)
    assert 0.0 < reached < 0.5
    kept = np.asarray(ts) <= reached
    assert np.isfinite(np.asarray(short.q)[kept]).all()
    assert not np.isfinite(np.asarray(short.q)[~kept]).any()
    assert float(short.path_domain_excursion[0]) == 0.0  # the unreached states do not count
    full = msk.simulate(model, exc, ts, q0=jnp.zeros(1), solver="explicit")
    assert float(full.time_reached) == 0.5 and full.result == diffrax.RESULTS.successful
    assert np.abs(np.asarray(full.q)[kept] - np.asarray(short.q)[kept]).max() < 1e-6
