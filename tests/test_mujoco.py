"""MuJoCo muscle: live parity with the `mujoco` bindings, gradients, transforms, bad input."""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

from jaxmsk.muscle._mujoco import (
    MuJoCoActivation,
    MuJoCoMuscle,
    mujoco_active_force_length,
    mujoco_force_velocity,
    mujoco_passive_force_length,
)

# Tolerances, all in one place.
# Parity with MuJoCo's C code in float64. Gain matches bit for bit; bias and the smooth
# activation switch differ by a few ulps of values up to ~1e3 (multiplication order, and the
# quintic smoothstep evaluated as x³(x(6x − 15) + 10) here vs x³(3x(2x − 5) + 10) in MuJoCo,
# amplified by the cancellation in τ_d + (τ_a − τ_d)·S); measured max ≈ 4e-12. 1e-9 leaves room.
PARITY_ATOL = 1e-9
# Whole-model parity: actuator length/velocity come from mj_forward itself, so same bound.
MODEL_ATOL = 1e-9
# Finite-difference gradient checks (check_grads default eps) at interior points.
GRAD_ATOL = GRAD_RTOL = 1e-6
# Step for those finite differences: parameters such as tau_act = 0.01 s need a step far
# below their size (the default 1e-4 would be a 1 % perturbation).
GRAD_EPS = 1e-6

DEFAULT_PRM = np.array([0.75, 1.05, -1.0, 200.0, 0.5, 1.6, 1.5, 1.3, 1.2])


def _random_prm(rng, n):
    """Random valid gainprm around MuJoCo's defaults, half with force < 0 (F0 = scale/acc0)."""
    prm = np.tile(DEFAULT_PRM, (n, 1))
    prm[:, 0] = rng.uniform(0.5, 0.9, n)
    prm[:, 1] = prm[:, 0] + rng.uniform(0.1, 0.5, n)
    prm[:, 2] = np.where(rng.uniform(size=n) < 0.5, -1.0, rng.uniform(10.0, 1000.0, n))
    prm[:, 3] = rng.uniform(50.0, 500.0, n)
    prm[:, 4] = rng.uniform(0.2, 0.9, n)
    prm[:, 5] = rng.uniform(1.1, 2.0, n)
    prm[:, 6] = rng.uniform(0.5, 3.0, n)
    prm[:, 7] = rng.uniform(0.0, 2.0, n)
    prm[:, 8] = rng.uniform(1.05, 2.0, n)
    lr0 = rng.uniform(0.1, 0.3, n)
    lengthrange = np.stack([lr0, lr0 + rng.uniform(0.05, 0.3, n)], axis=1)
    acc0 = rng.uniform(0.1, 10.0, n)
    return prm, lengthrange, acc0


def _random_state(rng, prm, lengthrange):
    """Lengths with L from below lmin to above lmax; velocities from V < −1 to V > fvmax − 1."""
    n = prm.shape[0]
    L0 = (lengthrange[:, 1] - lengthrange[:, 0]) / (prm[:, 1] - prm[:, 0])
    L = rng.uniform(prm[:, 4] - 0.3, prm[:, 5] + 0.4)
    V = rng.uniform(-1.5, prm[:, 8] - 1.0 + 0.5)
    length = lengthrange[:, 0] + (L - prm[:, 0]) * L0
    velocity = V * L0 * prm[:, 6]
    return length, velocity, rng.uniform(0.0, 1.0, n)


# ----------------------------------------------------------------------------- live parity


def test_gain_bias_parity_random():
    rng = np.random.default_rng(0)
    n = 400
    prm, lengthrange, acc0 = _random_prm(rng, n)
    length, velocity, _ = _random_state(rng, prm, lengthrange)
    muscle = MuJoCoMuscle.from_prm(prm, lengthrange, acc0)
    gain_ref = [mujoco.mju_muscleGain(length[i], velocity[i], lengthrange[i], acc0[i], prm[i])
                for i in range(n)]  # fmt: skip
    bias_ref = [mujoco.mju_muscleBias(length[i], lengthrange[i], acc0[i], prm[i])
                for i in range(n)]  # fmt: skip
    gain = eqx.filter_jit(lambda m, x, v: m.gain(x, v))(muscle, length, velocity)
    bias = eqx.filter_jit(lambda m, x: m.bias(x))(muscle, length)
    gain_err, bias_err = np.abs(gain - np.asarray(gain_ref)), np.abs(bias - np.asarray(bias_ref))
    assert np.max(gain_err) < PARITY_ATOL
    assert np.max(bias_err) < PARITY_ATOL
    # the random draw really covers every branch
    L = np.asarray(muscle.normalised_length(length))
    V = np.asarray(muscle.normalised_velocity(velocity))
    assert np.any(L < prm[:, 4]) and np.any(L > prm[:, 5]) and np.any((L > 1) & (L < prm[:, 5]))
    assert np.any(V < -1) and np.any(V > prm[:, 8] - 1) and np.any((V > 0) & (V < prm[:, 8] - 1))
    assert np.any(np.asarray(gain_ref) != 0) and np.any(np.asarray(bias_ref) != 0)


def test_breakpoints_exact():
    """At every breakpoint of the curves the value is MuJoCo's, to the last bit for the gain."""
    lmin, lmax, fvmax, fpmax = 0.6, 1.4, 1.5, 1.3
    prm = np.array([0.0, 1.0, 1.0, 200.0, lmin, lmax, 1.0, fpmax, fvmax])  # L = len, V = vel
    lengthrange = np.array([0.0, 1.0])
    muscle = MuJoCoMuscle.from_prm(prm, lengthrange, 1.0)
    a, b, y = 0.5 * (lmin + 1), 0.5 * (1 + lmax), fvmax - 1
    lengths = np.array(
        [0.0, lmin, np.nextafter(lmin, 0), a, 1.0, b, lmax, np.nextafter(lmax, 2), 2.0]
    )
    velocities = np.array([-2.0, -1.0, np.nextafter(-1.0, 0), 0.0, y, np.nextafter(y, 1), 1.0])
    ll, vv = (g.ravel() for g in np.meshgrid(lengths, velocities))
    gain_ref = [mujoco.mju_muscleGain(x, v, lengthrange, 1.0, prm) for x, v in zip(ll, vv)]
    gain_bias = eqx.filter_jit(lambda m, x, v: (m.gain(x, v), m.bias(x)))
    gain, _ = gain_bias(muscle, ll, vv)
    np.testing.assert_array_equal(gain, gain_ref)
    bias_ref = [mujoco.mju_muscleBias(x, lengthrange, 1.0, prm) for x in ll]
    np.testing.assert_allclose(gain_bias(muscle, ll, vv)[1], bias_ref, rtol=0, atol=1e-15)
    # the curves themselves, at their defining points
    fl = jax.jit(mujoco_active_force_length)(jnp.array([1.0, a, b, lmax + 1e-9]), lmin, lmax)
    np.testing.assert_array_equal(fl, [1.0, 0.5, 0.5, 0.0])
    fv = jax.jit(mujoco_force_velocity)(jnp.array([0.0, -1.0, 10.0]), fvmax)
    np.testing.assert_array_equal(fv, [1.0, 0.0, fvmax])
    fp = jax.jit(mujoco_passive_force_length)(jnp.array([1.0, b, lmax]), lmax, fpmax)
    np.testing.assert_allclose(fp, [0.0, 0.5 * fpmax, 1.5 * fpmax], rtol=1e-15)


def test_dynamics_parity_random():
    rng = np.random.default_rng(1)
    n = 600
    ctrl = rng.uniform(-0.3, 1.3, n)
    act = rng.uniform(-0.3, 1.3, n)
    ctrl[:50] = act[:50]  # ctrl == act exactly
    ctrl[50:75], act[50:75] = 1.0, 1.0  # both at the clamp edge
    tausmooth = np.where(rng.uniform(size=n) < 0.5, 0.0, rng.uniform(0.01, 0.5, n))
    dynprm = np.stack(
        [rng.uniform(0.005, 0.05, n), rng.uniform(0.02, 0.1, n), tausmooth], axis=1
    )
    ref = np.array([mujoco.mju_muscleDynamics(ctrl[i], act[i], dynprm[i]) for i in range(n)])
    model = MuJoCoActivation(dynprm[:, 0], dynprm[:, 1], dynprm[:, 2])
    out = np.asarray(model.derivative(ctrl, act))
    assert np.max(np.abs(out - ref)) < PARITY_ATOL
    # both switching modes and both signs are exercised
    blended = (tausmooth > 0) & (np.abs(np.clip(ctrl, 0, 1) - act) < 0.5 * tausmooth)
    assert blended.sum() > 20 and np.any(ref > 0) and np.any(ref < 0)


def test_dynamics_defaults():
    model = MuJoCoActivation()
    for ctrl, act in [(0.3, 0.1), (0.1, 0.3), (1.5, 0.5), (-0.5, 0.5), (0.5, 1.3), (0.5, -0.2)]:
        ref = mujoco.mju_muscleDynamics(ctrl, act, np.array([0.01, 0.04, 0.0]))
        assert float(model.derivative(ctrl, act)) == pytest.approx(ref, rel=1e-14)


MJCF = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <site name="anchor" pos="0 0 1"/>
    <body name="mass" pos="0 0 0.7">
      <joint name="slide" type="slide" axis="0 0 1"/>
      <geom type="sphere" size="0.05" mass="2"/>
      <site name="insertion"/>
    </body>
  </worldbody>
  <tendon>
    <spatial name="t"><site site="anchor"/><site site="insertion"/></spatial>
  </tendon>
  <actuator>
    <muscle name="m0" tendon="t" lengthrange="0.2 0.4"/>
    <muscle name="m1" tendon="t" lengthrange="0.15 0.45" force="80" lmin="0.6" lmax="1.4"
            vmax="2" fpmax="0.8" fvmax="1.5" tausmooth="0.2" timeconst="0.02 0.05"/>
    <muscle name="m2" tendon="t" lengthrange="0.25 0.35" range="0.7 1.2" scale="300"/>
  </actuator>
</mujoco>
"""


def test_mjcf_model_parity():
    m = mujoco.MjModel.from_xml_string(MJCF)
    d = mujoco.MjData(m)
    muscle = MuJoCoMuscle.from_mjmodel(m)
    activation = MuJoCoActivation.from_mjmodel(m)
    assert muscle.acc0.shape == (3,) and np.all(np.asarray(muscle.acc0) > 0)
    force_fn = eqx.filter_jit(lambda mus, *x: (mus.force(*x), mus.bias(x[0])))
    act_dot_fn = eqx.filter_jit(lambda a, *x: a.derivative(*x))
    rng = np.random.default_rng(2)
    checked_passive = False
    for qpos in [-0.25, -0.1, 0.0, 0.05, 0.12]:
        for qvel in [-1.0, 0.0, 0.4]:
            d.qpos[:] = qpos
            d.qvel[:] = qvel
            d.act[:] = rng.uniform(0.0, 1.0, 3)
            d.ctrl[:] = rng.uniform(0.0, 1.0, 3)
            mujoco.mj_forward(m, d)
            force, bias = force_fn(muscle, d.actuator_length, d.actuator_velocity, d.act)
            np.testing.assert_allclose(force, d.actuator_force, rtol=0, atol=MODEL_ATOL)
            act_dot = act_dot_fn(activation, d.ctrl, d.act)
            np.testing.assert_allclose(act_dot, d.act_dot, rtol=0, atol=MODEL_ATOL)
            checked_passive |= bool(np.any(np.asarray(bias) < 0))
    assert checked_passive


def test_myosuite_elbow_muscles_reproduced():
    """MyoSuite's myoelbow (6 muscles, `myo_sim` package): forces and act_dot over its range."""
    import myo_sim

    m = mujoco.MjModel.from_xml_path(str(myo_sim.get_xml_path("myoelbow")))
    d = mujoco.MjData(m)
    muscle = MuJoCoMuscle.from_mjmodel(m)
    activation = MuJoCoActivation.from_mjmodel(m)
    assert muscle.acc0.shape == (6,)
    force_fn = eqx.filter_jit(lambda mus, *x: mus.force(*x))
    act_dot_fn = eqx.filter_jit(lambda a, *x: a.derivative(*x))
    rng = np.random.default_rng(4)
    lo, hi = m.jnt_range[:, 0], m.jnt_range[:, 1]
    for _ in range(20):
        d.qpos[:] = rng.uniform(lo, hi)
        d.qvel[:] = rng.uniform(-3.0, 3.0, m.nv)
        d.act[:] = rng.uniform(0.0, 1.0, m.na)
        d.ctrl[:] = rng.uniform(0.0, 1.0, m.nu)
        mujoco.mj_forward(m, d)
        force = force_fn(muscle, d.actuator_length, d.actuator_velocity, d.act)
        np.testing.assert_allclose(force, d.actuator_force, rtol=1e-12, atol=MODEL_ATOL)
        np.testing.assert_allclose(act_dot_fn(activation, d.ctrl, d.act), d.act_dot, rtol=0,
                                   atol=MODEL_ATOL)


def test_from_mjmodel_rejects_models_without_muscles():
    m = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><joint name='j'/><geom size='0.1'/></body></worldbody>"
        "<actuator><motor joint='j'/></actuator></mujoco>"
    )
    with pytest.raises(ValueError, match="no muscle actuators"):
        MuJoCoMuscle.from_mjmodel(m)
    with pytest.raises(ValueError, match="no actuators with muscle"):
        MuJoCoActivation.from_mjmodel(m)


# ----------------------------------------------------------------------------- gradients


def test_check_grads_force():
    """Gradients w.r.t. state and all nine parameters, one muscle per branch of each curve."""
    # L = (0.6, 0.9, 1.1, 1.5) covers the four FL pieces and both FP pieces; V both FV pieces.
    L = jnp.array([0.6, 0.9, 1.1, 1.5])
    V = jnp.array([-0.5, -0.1, 0.1, 0.15])
    state = (0.2 + (L - 0.75) * 1.0, V * 1.5, jnp.array([0.3, 0.8, 0.5, 0.9]))
    params = jnp.array([0.75, 1.05, -1.0, 200.0, 0.5, 1.6, 1.5, 1.3, 1.2, 0.2, 0.5, 2.0])

    @jax.jit
    def force(length, velocity, act, p):  # built from traced values: value checks skipped
        m = MuJoCoMuscle.from_prm(p[:9], p[9:11], p[11])
        return m.force(length, velocity, act)

    check_grads(force, (*state, params), order=1, modes=("fwd", "rev"),
                atol=GRAD_ATOL, rtol=GRAD_RTOL, eps=GRAD_EPS)  # fmt: skip
    fixed = params.at[2].set(500.0)  # a fixed peak force instead of scale/acc0
    check_grads(force, (*state, fixed), order=1, modes=("rev",),
                atol=GRAD_ATOL, rtol=GRAD_RTOL, eps=GRAD_EPS)  # fmt: skip


def test_check_grads_derivative():
    """Both switching modes; ctrl on both sides of act; gradients w.r.t. the time constants."""

    @jax.jit
    def derivative(ctrl, act, p):
        return MuJoCoActivation(p[0], p[1], p[2]).derivative(ctrl, act)

    params = jnp.array([[0.01, 0.04, 0.0], [0.01, 0.04, 0.0], [0.02, 0.05, 0.3], [0.02, 0.05, 0.3]])
    args = (jnp.array([0.2, 0.7, 0.45, 0.3]), jnp.array([0.5, 0.3, 0.4, 0.4]), params.T)
    check_grads(derivative, args, order=1, modes=("fwd", "rev"),
                atol=GRAD_ATOL, rtol=GRAD_RTOL, eps=GRAD_EPS)  # fmt: skip


@eqx.filter_jit
def _all_grads(muscle, activation, x):
    length, velocity, act, ctrl = x
    g_m, g_x = eqx.filter_grad(lambda mx: mx[0].force(mx[1][0], mx[1][1], mx[1][2]))(
        (muscle, (length, velocity, act))
    )
    g_a, g_y = eqx.filter_grad(lambda ay: ay[0].derivative(ay[1][0], ay[1][1]))(
        (activation, (ctrl, act))
    )
    return g_m, g_x, g_a, g_y


def _edgy_floats(lo, hi, specials):
    return st.one_of(st.floats(lo, hi, allow_nan=False), st.sampled_from(specials))


@settings(max_examples=100, deadline=None)
@given(
    L=_edgy_floats(-1.0, 4.0, [0.5, 0.75, 1.0, 1.3, 1.6]),
    V=_edgy_floats(-3.0, 3.0, [-1.0, 0.0, 0.2]),
    act=_edgy_floats(-0.5, 1.5, [0.0, 1.0]),
    ctrl=_edgy_floats(-0.5, 1.5, [0.0, 1.0]),
    same=st.booleans(),
    tausmooth=st.sampled_from([0.0, 0.1, 0.5]),
    force_param=st.sampled_from([-1.0, 0.0, 300.0]),
)
def test_no_nan_gradients_anywhere(L, V, act, ctrl, same, tausmooth, force_param):
    muscle = MuJoCoMuscle(lengthrange0=0.2, lengthrange1=0.5, acc0=1.5, range0=0.75,
                          range1=1.05, force_param=force_param)  # fmt: skip
    L0 = 0.3 / 0.3
    length = 0.2 + (L - 0.75) * L0  # normalised length L exactly-ish
    velocity = V * L0 * 1.5
    activation = MuJoCoActivation(tausmooth=tausmooth)
    ctrl = act if same else ctrl
    x = tuple(jnp.asarray(v, dtype=jnp.float64) for v in (length, velocity, act, ctrl))
    for leaf in jax.tree_util.tree_leaves(_all_grads(muscle, activation, x)):
        assert np.all(np.isfinite(np.asarray(leaf)))


# ----------------------------------------------------------------------------- transforms


def test_jit_vmap_parity():
    rng = np.random.default_rng(3)
    prm, lengthrange, acc0 = _random_prm(rng, 4)
    muscle = MuJoCoMuscle.from_prm(prm, lengthrange, acc0)
    states = [_random_state(rng, prm, lengthrange) for _ in range(6)]  # (time, muscles)
    length, velocity, act = (np.stack(s) for s in zip(*states))
    eager = muscle.force(length, velocity, act)  # broadcasting over time
    jitted = eqx.filter_jit(lambda m, *x: m.force(*x))(muscle, length, velocity, act)
    vmapped = eqx.filter_jit(lambda m, *x: jax.vmap(m.force)(*x))(muscle, length, velocity, act)
    np.testing.assert_allclose(jitted, eager, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-14, atol=1e-12)
    # vmap over the muscle axis of the module itself (one muscle per call)
    per_muscle = eqx.filter_jit(
        lambda *x: eqx.filter_vmap(lambda m, l, v, a: m.force(l, v, a))(*x)
    )(muscle, length.T, velocity.T, act.T)
    np.testing.assert_allclose(per_muscle.T, eager, rtol=1e-14, atol=1e-12)

    activation = MuJoCoActivation(tau_act=jnp.array([0.01, 0.02, 0.015, 0.01]), tausmooth=0.2)
    ctrl = rng.uniform(0, 1, (6, 4))
    eager = activation.derivative(ctrl, act)
    jitted = eqx.filter_jit(activation.derivative)(ctrl, act)
    np.testing.assert_allclose(jitted, eager, rtol=1e-14)
    vmapped = eqx.filter_jit(lambda m, *x: jax.vmap(m.derivative)(*x))(activation, ctrl, act)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-14)


def test_float32_stays_float32():
    """Float32 inputs and parameters give float32 results (the library never forces x64)."""
    f32 = jnp.float32
    muscle = MuJoCoMuscle(f32(0.2), f32(0.4), f32(1.0))
    out = eqx.filter_jit(lambda m, x: m.force(x, x - x, x / x))(muscle, jnp.full(2, 0.3, f32))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, MuJoCoMuscle(0.2, 0.4, 1.0).force(0.3, 0.0, 1.0), rtol=1e-5)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lmin=1.2), "lmin"),
        (dict(lmax=0.9), "lmax"),
        (dict(range0=1.1, range1=1.0), "range0 < range1"),
        (dict(lengthrange0=0.5, lengthrange1=0.2), "lengthrange0 < lengthrange1"),
        (dict(fvmax=0.9), "fvmax"),
        (dict(vmax=0.0), "vmax"),
        (dict(fpmax=-1.0), "fpmax"),
        (dict(acc0=0.0), "acc0"),
        (dict(lmin=np.nan), "lmin must be finite"),
        (dict(lmin=np.array([0.5, 0.6, 0.7])), "broadcast"),
    ],
)
def test_bad_muscle_parameters(kwargs, match):
    base = dict(lengthrange0=jnp.array([0.2, 0.3]), lengthrange1=0.4, acc0=1.0)
    with pytest.raises(ValueError, match=match):
        MuJoCoMuscle(**{**base, **kwargs})


def test_bad_prm_shapes_and_activation():
    with pytest.raises(ValueError, match="gainprm"):
        MuJoCoMuscle.from_prm(np.zeros(8), np.array([0.1, 0.2]), 1.0)
    with pytest.raises(ValueError, match="lengthrange"):
        MuJoCoMuscle.from_prm(DEFAULT_PRM, np.array([0.1, 0.2, 0.3]), 1.0)
    with pytest.raises(ValueError, match="tau_act"):
        MuJoCoActivation(tau_act=-0.01)
    with pytest.raises(ValueError, match="tausmooth"):
        MuJoCoActivation(tausmooth=-0.1)
    # a positive force needs no acc0
    MuJoCoMuscle(lengthrange0=0.2, lengthrange1=0.4, acc0=0.0, force_param=100.0)
    # traced values are not checked (they cannot be): no error under jit
    f = jax.jit(lambda lmin: MuJoCoMuscle(0.2, 0.4, 1.0, lmin=lmin).force(0.3, 0.0, 1.0))
    assert np.isfinite(f(1.2))


def test_mujoco_muscles_drive_a_model_as_mujoco_does():
    """MuJoCo's muscle in a `jaxmsk.Model` (any `AbstractMuscle` goes in): the slider of
    `MJCF` under gravity, three muscles on one tendon of length 0.3 − q, simulated by
    `jaxmsk.simulate` (Tsit5, rtol 1e-10) and by MuJoCo (RK4, dt 1e-4 s) from rest."""
    import jaxmsk

    xml = MJCF.replace('timestep="0.002"', 'timestep="0.0001" integrator="RK4"')
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    muscle, activation = MuJoCoMuscle.from_mjmodel(m), MuJoCoActivation.from_mjmodel(m)
    path = jaxmsk.PolynomialPath(jnp.array([[0.3, -1.0]] * 3), jnp.zeros(1), jnp.ones(1),
                                 ((0,), (1,)))
    model = jaxmsk.Model(muscle, activation, jaxmsk.Slider(2.0, gravity=-9.81), path)
    assert model.n_muscles == 3 and not model.compliant
    ctrl = np.array([0.9, 0.4, 0.7])
    duration, every = 0.3, 100
    q, act = [], []
    d.ctrl[:] = ctrl
    for step in range(int(round(duration / m.opt.timestep))):
        mujoco.mj_step(m, d)
        if (step + 1) % every == 0:
            q.append(d.qpos[0])
            act.append(d.act.copy())
    ts = np.arange(0, len(q) + 1) * every * m.opt.timestep
    traj = jaxmsk.simulate(model, np.tile(ctrl, (len(ts), 1)), ts, q0=np.zeros(1),
                           activation0=np.zeros(3), solver="explicit", rtol=1e-10, atol=1e-12)
    assert np.ptp(np.asarray(q)) > 0.01  # it moved
    # Measured: 2.8e-10 m in q, 2.4e-9 in activation (MuJoCo RK4 at 1e-4 s vs Tsit5).
    np.testing.assert_allclose(traj.q[1:, 0], q, rtol=0, atol=1e-8)
    np.testing.assert_allclose(traj.activation[1:], act, rtol=0, atol=1e-7)
    np.testing.assert_allclose(traj.tendon_force[-1], -d.actuator_force, rtol=1e-5)
    # What needs MuscleParameters says so instead of failing deep inside.
    with pytest.raises(ValueError, match="needs a Model of DeGrooteFregly2016Muscle"):
        jaxmsk.scale_parameters(model, max_isometric_force=2.0)
    with pytest.raises(ValueError, match="needs a Model of DeGrooteFregly2016Muscle"):
        jaxmsk.identify(model, [(ts, np.tile(ctrl, (len(ts), 1)), traj.q)])


def test_load_mujoco_reads_myoelbow_and_rolls_out_like_mujoco(tmp_path):
    """MyoSuite's myoelbow (myo_sim) through `load_mujoco`: the skeleton's mass matrix and
    gravity/Coriolis terms equal MuJoCo's (armature included), the fitted paths follow
    MuJoCo's wrapped actuator lengths, and 1 s under constant excitations from 1 rad tracks
    MuJoCo's own rollout (RK4 at 1e-4 s). Measured: 3.7e-4 rad; the surrogate of the wrapped
    tendons' lengths is what differs (1.7e-3 rad at degree 10, 2.1e-4 at 20)."""
    import myo_sim

    import jaxmsk

    xml = str(myo_sim.get_xml_path("myoelbow"))
    with pytest.warns(UserWarning, match=r"range limits of joints \['r_elbow_flex'\]"):
        model = jaxmsk.load_mujoco(xml)
    assert model.coordinate_names == ("r_elbow_flex",) and len(model.muscle_names) == 6
    m = mujoco.MjModel.from_xml_path(xml)
    d = mujoco.MjData(m)
    for q, qd in ((0.3, 0.0), (1.2, 2.0), (2.0, -1.5)):
        d.qpos[:], d.qvel[:] = q, qd
        mujoco.mj_forward(m, d)
        full = np.zeros((1, 1))
        mujoco.mj_fullM(m, d, full)
        np.testing.assert_allclose(model.skeleton.mass_matrix(np.array([q])), full, rtol=1e-12)
        np.testing.assert_allclose(model.skeleton.bias_forces(np.array([q]), np.array([qd])),
                                   d.qfrc_bias, rtol=1e-10, atol=1e-12)
        passive = sum(p.moment(np.array([q]), np.array([qd])) for p in model.passive)
        np.testing.assert_allclose(passive, d.qfrc_passive, atol=1e-12)
        np.testing.assert_allclose(model.path.length(np.array([q])), d.actuator_length,
                                   atol=3e-5)
    m.opt.timestep, m.opt.integrator = 1e-4, mujoco.mjtIntegrator.mjINT_RK4
    d = mujoco.MjData(m)
    d.qpos[:] = 1.0
    ctrl = np.array([0.2, 0.1, 0.15, 0.5, 0.4, 0.3])
    d.ctrl[:] = ctrl
    q = []
    for step in range(10_000):
        mujoco.mj_step(m, d)
        if (step + 1) % 100 == 0:
            q.append(d.qpos[0])
    ts = np.arange(len(q) + 1) * 0.01
    traj = jaxmsk.simulate(model, np.tile(ctrl, (len(ts), 1)), ts, q0=np.array([1.0]),
                           activation0=np.zeros(6), solver="explicit", rtol=1e-10, atol=1e-12)
    assert np.ptp(q) > 0.5  # the elbow flexes through 1.0–2.08 rad
    np.testing.assert_allclose(traj.q[1:, 0], q, rtol=0, atol=1e-3)
    # A slider is not a serial chain of hinges: said, with the joint named.
    (tmp_path / "slider.xml").write_text(MJCF)
    with pytest.raises(ValueError, match="joint '.*' is a slide joint"):
        jaxmsk.load_mujoco(tmp_path / "slider.xml")
