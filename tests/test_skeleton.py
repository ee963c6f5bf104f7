"""Skeletons: SerialChain, Hinge, passive elements and the OpenSim importer, against OpenSim live.

Every reference value is computed here by OpenSim 4.6 (mass matrix by `calcM`, accelerations
by `realizeAcceleration`, passive forces by the elements' own `calcLimitForce` and record
values); the models are arm26 (from the osim-rl package) and models built here.
"""

from __future__ import annotations

import os
import warnings

import diffrax
import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import import_opensim
from hypothesis import given, settings
from jax.test_util import check_grads

from jaxmsk.io import chain_from_opensim
from jaxmsk.skeleton import (
    CoordinateLimitForce,
    Hinge,
    JointPassive,
    SerialChain,
    SpringGeneralizedForce,
)

# Tolerances (relative unless named otherwise). OpenSim's O(n) articulated-body recursion
# and jaxmsk's autodiff of the Lagrangian agree to rounding; 1e-10 leaves ~10⁵ ulps.
DYNAMICS_REL = 1e-10
POSE_ABS = 1e-12  # body poses (m, rotation entries)
PASSIVE_ABS = 1e-10  # N·m, passive forces of O(1–100) N·m
ENERGY_DRIFT_REL = 1e-8  # Tsit5 at rtol = atol = 1e-12 over 1 s, relative to max T
N_STATES = 24

osim = import_opensim()


# -- OpenSim helpers --------------------------------------------------------------------
def arm26_path() -> str:
    """arm26.osim from the osim-rl sdist (pip install --no-deps osim-rl==3.0.11)."""
    import importlib.util

    spec = importlib.util.find_spec("osim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("arm26.osim comes from osim-rl: pip install --no-deps osim-rl==3.0.11")
    return os.path.join(list(spec.submodule_search_locations)[0], "models", "arm26.osim")


def _v3(x):
    return osim.Vec3(*(float(v) for v in x))


def pose(x):
    """(R, p) of a SimTK Transform as NumPy arrays."""
    r = x.R()
    return (np.array([[r.get(i, j) for j in range(3)] for i in range(3)]),
            np.array([x.p().get(i) for i in range(3)]))


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def random_body(rng, name):
    """A body with random mass, COM and a full (off-diagonal) physical inertia."""
    mass = rng.uniform(0.5, 3.0)
    a, b, c = rng.uniform(0.05, 0.5, 3)
    principal = mass / 12 * np.array([b * b + c * c, a * a + c * c, a * a + b * b])
    r = random_rotation(rng)
    i = r @ np.diag(principal) @ r.T
    inertia = osim.Inertia(i[0, 0], i[1, 1], i[2, 2], i[0, 1], i[0, 2], i[1, 2])
    return osim.Body(name, mass, _v3(rng.normal(scale=0.2, size=3)), inertia)


def pin_chain_model(rng, n=3):
    """n links on PinJoints at random offsets and orientations, gravity tilted."""
    model = osim.Model()
    model.setGravity(_v3(9.81 * np.array([0.2, -0.95, 0.24]) / np.linalg.norm([0.2, -0.95, 0.24])))
    parent = model.getGround()
    for i in range(n):
        body = random_body(rng, f"link{i}")
        model.addBody(body)
        joint = osim.PinJoint(f"pin{i}", parent, _v3(rng.normal(scale=0.3, size=3)),
                              _v3(rng.uniform(-np.pi, np.pi, 3)), body,
                              _v3(rng.normal(scale=0.3, size=3)),
                              _v3(rng.uniform(-np.pi, np.pi, 3)))
        joint.updCoordinate().setName(f"q{i}")
        model.addJoint(joint)
        parent = body
    return model


def custom_axis_joint(name, parent, child, rng, moving_axis, slope, coord, loc, tilt_before=False):
    """A CustomJoint whose rotation `moving_axis` is slope·q + 0.3, other axes constant.

    Constant rotations before the moving one are 0 unless `tilt_before` (see
    `test_custom_joint_velocity_quirk_warns`); those after it and the translations (along
    random non-unit axes) are not."""
    st_ = osim.SpatialTransform()
    slots = ["rotation1", "rotation2", "rotation3", "translation1", "translation2", "translation3"]
    for k, slot in enumerate(slots):
        ta = getattr(st_, "upd_" + slot)()
        ta.set_axis(_v3(rng.normal(size=3) * (1.0 if k < 3 else rng.uniform(0.5, 2.0))))
        if k == moving_axis:
            ta.append_coordinates(coord)
            ta.set_function(osim.LinearFunction(slope, 0.3))
        else:
            value = rng.uniform(-0.6, 0.6) if k < 3 else rng.normal(scale=0.1)
            ta.set_function(osim.Constant(float(value if k > moving_axis or tilt_before else 0.0)))
    return osim.CustomJoint(name, parent, _v3(loc), _v3(rng.uniform(-1, 1, 3)), child,
                            _v3(rng.normal(scale=0.1, size=3)), _v3(rng.uniform(-1, 1, 3)), st_)


def custom_tree_model(rng):
    """CustomJoints (moving axis 1, 2, 3; slope ±1) with folded parts: a body welded to
    ground, a locked PinJoint, a welded tool and a locked side branch."""
    model = osim.Model()
    ground = model.getGround()
    stand = random_body(rng, "stand")
    model.addBody(stand)
    model.addJoint(osim.WeldJoint("weld_stand", ground, _v3([0, 1, 0]), _v3([0.1, 0.2, 0.3]),
                                  stand, _v3([0, 0, 0]), _v3([0, 0, 0])))
    upper = random_body(rng, "upper")
    model.addBody(upper)
    model.addJoint(custom_axis_joint("shoulder", stand, upper, rng, 0, 1.0, "a", [0.1, 0, 0.2]))
    elbow_link = random_body(rng, "elbow_link")
    model.addBody(elbow_link)
    locked = osim.PinJoint("locked_pin", upper, _v3([0, -0.3, 0]), _v3([0.3, 0, 0]), elbow_link,
                           _v3([0, 0, 0]), _v3([0, 0, 0]))
    locked.updCoordinate().setName("locked_q")
    locked.updCoordinate().setDefaultValue(0.5)
    locked.updCoordinate().setDefaultLocked(True)
    model.addJoint(locked)
    side = random_body(rng, "side")
    model.addBody(side)
    side_joint = osim.PinJoint("side_pin", upper, _v3([0.05, -0.1, 0]), _v3([0, 0.4, 0]), side,
                               _v3([0, 0.1, 0]), _v3([0, 0, 0]))
    side_joint.updCoordinate().setName("side_q")
    side_joint.updCoordinate().setDefaultValue(-0.7)
    side_joint.updCoordinate().setDefaultLocked(True)
    model.addJoint(side_joint)
    fore = random_body(rng, "fore")
    model.addBody(fore)
    model.addJoint(custom_axis_joint("elbow", elbow_link, fore, rng, 1, -1.0, "b", [0, -0.2, 0]))
    hand = random_body(rng, "hand")
    model.addBody(hand)
    model.addJoint(custom_axis_joint("wrist", fore, hand, rng, 2, 1.0, "c", [0, -0.25, 0.02]))
    tool = random_body(rng, "tool")
    model.addBody(tool)
    model.addJoint(osim.WeldJoint("weld_tool", hand, _v3([0, -0.1, 0]), _v3([0.5, 0, 0]), tool,
                                  _v3([0.02, 0, 0]), _v3([0, 0.2, 0])))
    return model


class Oracle:
    """OpenSim's M, q̈ and bias = −M·q̈ (τ = 0) in the order of `names`."""

    def __init__(self, model, names):
        self.model = model
        self.state = model.initSystem()
        self.coords = [model.getCoordinateSet().get(n) for n in names]
        s = self.state
        self.u_index = []
        for c in self.coords:  # mobility index of each coordinate
            for other in model.getCoordinateSet():
                other.setSpeedValue(s, 0.0)
            c.setSpeedValue(s, 1.0)
            self.u_index.append(int(np.argmax(np.abs(s.getU().to_numpy()))))

    def set(self, q, qdot):
        for c, v, w in zip(self.coords, q, qdot):
            c.setValue(self.state, float(v), False)
            c.setSpeedValue(self.state, float(w))

    def dynamics(self, q, qdot):
        self.set(q, qdot)
        self.model.realizePosition(self.state)
        m = osim.Matrix()
        self.model.getMatterSubsystem().calcM(self.state, m)
        m = m.to_numpy()[np.ix_(self.u_index, self.u_index)]
        self.model.realizeAcceleration(self.state)
        qdd = np.array([c.getAccelerationValue(self.state) for c in self.coords])
        return m, qdd, -m @ qdd


def rel_err(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


# -- compiled functions shared by every test ---------------------------------------------
@eqx.filter_jit
def batched_dynamics(chain, q, qdot):
    tau = jnp.zeros_like(q)
    return (jax.vmap(chain.mass_matrix)(q), jax.vmap(chain.acceleration)(q, qdot, tau),
            jax.vmap(chain.bias_forces)(q, qdot))


@eqx.filter_jit
def batched_poses(chain, q):
    return jax.vmap(chain.body_transforms)(q)


def compare_with_opensim(chain, names, model, rng, q_range=(-1.5, 1.5)):
    oracle = Oracle(model, names)
    n = chain.n_dofs
    q = rng.uniform(*q_range, (N_STATES, n))
    qdot = rng.uniform(-3.0, 3.0, (N_STATES, n))
    m, qdd, bias = (np.asarray(x) for x in batched_dynamics(chain, q, qdot))
    errs = np.zeros((N_STATES, 3))
    for k in range(N_STATES):
        m_ref, qdd_ref, bias_ref = oracle.dynamics(q[k], qdot[k])
        errs[k] = rel_err(m[k], m_ref), rel_err(qdd[k], qdd_ref), rel_err(bias[k], bias_ref)
    return errs.max(axis=0)


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arm26():
    model = osim.Model(arm26_path())
    for force in model.getForceSet():
        force.set_appliesForce(False)  # skeleton only
    model.initSystem()
    chain, names, passive, messages = chain_from_opensim(model)
    return model, chain, names, passive, messages


@pytest.fixture(scope="module")
def pin_chain():
    model = pin_chain_model(np.random.default_rng(3))
    model.initSystem()
    chain, names, _, _ = chain_from_opensim(model)
    return model, chain, names


# -- (a) arm26 ------------------------------------------------------------------------------
def test_arm26_import(arm26):
    _, chain, names, passive, messages = arm26
    assert names == ["r_shoulder_elev", "r_elbow_flex"]
    assert passive == [] and messages == []
    np.testing.assert_allclose(chain.mass, [1.864572, 1.534315], rtol=1e-15)
    np.testing.assert_allclose(chain.gravity, [0.0, -9.8066, 0.0], rtol=1e-15)


def test_arm26_dynamics_match_opensim(arm26):
    model, chain, names, _, _ = arm26
    errs = compare_with_opensim(chain, names, model, np.random.default_rng(0), (-1.5, 2.5))
    assert errs.max() <= DYNAMICS_REL, errs


def test_arm26_body_poses_match_opensim(arm26):
    model, chain, names, _, _ = arm26
    oracle = Oracle(model, names)
    q = np.random.default_rng(1).uniform(-1.5, 2.5, (5, 2))
    rotations, origins = batched_poses(chain, q)
    bodies = ["r_humerus", "r_ulna_radius_hand"]
    for k in range(5):
        oracle.set(q[k], np.zeros(2))
        model.realizePosition(oracle.state)
        for i, body in enumerate(bodies):
            r, p = pose(model.getBodySet().get(body).getTransformInGround(oracle.state))
            np.testing.assert_allclose(rotations[k, i], r, atol=POSE_ABS)
            np.testing.assert_allclose(origins[k, i], p, atol=POSE_ABS)


# -- (b) programmatic chains --------------------------------------------------------------
def test_pin_chain_matches_opensim(pin_chain):
    model, chain, names = pin_chain
    assert names == ["q0", "q1", "q2"]
    errs = compare_with_opensim(chain, names, model, np.random.default_rng(4), (-np.pi, np.pi))
    assert errs.max() <= DYNAMICS_REL, errs


def test_custom_joints_welds_and_locked_joints_match_opensim():
    model = custom_tree_model(np.random.default_rng(5))
    model.initSystem()
    chain, names, _, _ = chain_from_opensim(model)
    assert names == ["a", "b", "c"]  # locked coordinates are folded
    errs = compare_with_opensim(chain, names, model, np.random.default_rng(6), (-np.pi, np.pi))
    assert errs.max() <= DYNAMICS_REL, errs


def test_recursive_dynamics_equal_the_lagrangian(pin_chain):
    """`acceleration` uses rigid-body recursions; they equal the Lagrangian's M and bias."""
    model = custom_tree_model(np.random.default_rng(5))
    model.initSystem()
    tree, _, _, _ = chain_from_opensim(model)
    rng = np.random.default_rng(8)
    for chain in (pin_chain[1], tree):
        for _ in range(5):
            q = jnp.asarray(rng.uniform(-np.pi, np.pi, chain.n_dofs))
            qdot = jnp.asarray(rng.uniform(-3.0, 3.0, chain.n_dofs))
            m, bias = chain._recursive_terms(q, qdot)
            assert rel_err(m, np.asarray(chain.mass_matrix(q))) < 1e-13
            assert rel_err(bias, np.asarray(chain.bias_forces(q, qdot))) < 1e-13


def test_custom_joint_velocity_quirk_warns():
    """OpenSim's angular velocity ignores a constant rotation preceding the moving axis."""
    rng = np.random.default_rng(12)
    model = osim.Model()
    body = random_body(rng, "body")
    model.addBody(body)
    model.addJoint(custom_axis_joint("tilted", model.getGround(), body, rng, 1, 1.0, "q",
                                     [0, 0, 0], tilt_before=True))
    model.initSystem()
    with pytest.warns(UserWarning, match="CustomJoint 'tilted'"):
        chain, names, _, messages = chain_from_opensim(model)  # poses agree (self-check)
    assert len(messages) == 1
    m_ref, _, _ = Oracle(model, names).dynamics([0.4], [0.0])
    assert rel_err(chain.mass_matrix(jnp.array([0.4])), m_ref) > 1e-3  # the documented quirk


def test_unselected_coordinates_are_locked_at_default():
    model = pin_chain_model(np.random.default_rng(7))
    model.getCoordinateSet().get("q1").setDefaultValue(0.4)
    model.initSystem()
    chain, names, _, _ = chain_from_opensim(model, coordinates=["q0", "q2"])
    assert names == ["q0", "q2"] and chain.n_dofs == 2
    model.getCoordinateSet().get("q1").setDefaultLocked(True)  # the reference: q1 locked
    errs = compare_with_opensim(chain, names, model, np.random.default_rng(8))
    assert errs.max() <= DYNAMICS_REL, errs


# -- (c) Hinge ---------------------------------------------------------------------------------
def pendulum_model(mass, com, izz, forces=()):
    model = osim.Model()
    body = osim.Body("bob", mass, _v3(com),
                     osim.Inertia(0.7 * izz, 0.6 * izz, izz, 0.1 * izz, 0.0, 0.0))
    model.addBody(body)
    joint = osim.PinJoint("pin", model.getGround(), _v3([0, 0, 0]), _v3([0, 0, 0]), body,
                          _v3([0, 0, 0]), _v3([0, 0, 0]))
    joint.updCoordinate().setName("theta")
    model.addJoint(joint)
    for f in forces:
        model.addForce(f)
    return model


def test_hinge_matches_opensim_pendulum():
    mass, com, izz = 2.5, np.array([0.12, -0.3, 0.05]), 0.04
    model = pendulum_model(mass, com, izz)
    model.initSystem()
    d = np.hypot(com[0], com[1])
    g = 9.80665
    hinge = Hinge(inertia=izz + mass * d**2, gravity_moment=mass * g * d,
                  gravity_angle=np.arctan2(-com[0], -com[1]))
    chain, names, _, _ = chain_from_opensim(model)
    from_chain = Hinge.from_chain(chain)
    np.testing.assert_allclose(
        [from_chain.inertia, from_chain.gravity_moment, from_chain.gravity_angle],
        [hinge.inertia, hinge.gravity_moment, hinge.gravity_angle], rtol=1e-12)
    oracle = Oracle(model, names)
    rng = np.random.default_rng(9)
    accel = jax.jit(lambda q, w, t: hinge.acceleration(q, w, t))
    for theta, omega in rng.uniform(-np.pi, np.pi, (N_STATES, 2)):
        m_ref, qdd_ref, bias_ref = oracle.dynamics([theta], [omega])
        q, w = jnp.array([theta]), jnp.array([omega])
        assert rel_err(hinge.mass_matrix(q), m_ref) <= DYNAMICS_REL
        assert rel_err(hinge.bias_forces(q, w), bias_ref) <= DYNAMICS_REL
        assert rel_err(accel(q, w, jnp.zeros(1)), qdd_ref) <= DYNAMICS_REL


def test_hinge_and_chain_are_interchangeable(pin_chain):
    _, chain, _ = pin_chain
    hinge = Hinge(0.5, 3.0, 0.2)
    for skeleton, n in ((hinge, 1), (chain, 3)):
        q = jnp.linspace(0.1, 0.3, n)
        assert skeleton.n_dofs == n
        assert jax.eval_shape(skeleton.mass_matrix, q).shape == (n, n)
        assert jax.eval_shape(skeleton.bias_forces, q, q).shape == (n,)
        assert jax.eval_shape(skeleton.acceleration, q, q, q).shape == (n,)


# -- (d) energy conservation -------------------------------------------------------------------
def test_energy_is_conserved(pin_chain):
    _, chain, _ = pin_chain

    def field(t, y, args):
        q, qdot = y
        return qdot, chain.acceleration(q, qdot, jnp.zeros_like(q))

    y0 = (jnp.array([0.3, -0.5, 1.0]), jnp.array([2.0, -1.0, 1.5]))
    ts = jnp.linspace(0.0, 1.0, 21)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, 1.0, 1e-3, y0,
        saveat=diffrax.SaveAt(ts=ts), max_steps=100_000,
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12))
    q, qdot = sol.ys
    kinetic = jax.vmap(chain.kinetic_energy)(q, qdot)
    energy = kinetic + jax.vmap(chain.potential_energy)(q)
    drift = np.abs(energy - energy[0]).max() / np.abs(kinetic).max()
    assert drift < ENERGY_DRIFT_REL, drift
    assert np.ptp(np.asarray(kinetic)) > 0.1 * np.abs(kinetic).max()  # energy was exchanged


# -- (e) gradients, jit, vmap --------------------------------------------------------------------
def test_acceleration_gradients(arm26):
    _, chain, _, _, _ = arm26

    def accel(q, qdot, tau, mass):
        return eqx.tree_at(lambda c: c.mass, chain, mass).acceleration(q, qdot, tau)

    args = (jnp.array([0.3, 1.0]), jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0]), chain.mass)
    check_grads(jax.jit(accel), args, order=1, modes=("fwd", "rev"))


def test_jit_vmap_parity(pin_chain):
    _, chain, _ = pin_chain
    rng = np.random.default_rng(10)
    q, qdot = rng.normal(size=(N_STATES, 3)), rng.normal(size=(N_STATES, 3))
    m, qdd, bias = batched_dynamics(chain, q, qdot)  # jit of vmap (compiled once, shared)
    for k in range(3):  # eager single samples
        np.testing.assert_allclose(qdd[k], chain.acceleration(q[k], qdot[k], np.zeros(3)),
                                   rtol=1e-12)
        np.testing.assert_allclose(bias[k], chain.bias_forces(q[k], qdot[k]), rtol=1e-12)
        np.testing.assert_allclose(m[k], chain.mass_matrix(q[k]), rtol=1e-12)


def test_vmap_over_chains():
    """Batches of skeletons (e.g. simulated subjects) are one vmap over the module."""
    mass, com, izz = 1.5, np.array([0.05, -0.3, 0.0]), 0.02
    model = pendulum_model(mass, com, izz)
    model.initSystem()
    chain, _, _, _ = chain_from_opensim(model)
    scales = jnp.linspace(0.5, 2.0, 4)
    chains = jax.vmap(lambda s: eqx.tree_at(lambda c: c.mass, chain, chain.mass * s))(scales)
    q, w, t = jnp.array([0.4]), jnp.array([1.0]), jnp.array([0.3])
    batched = eqx.filter_jit(eqx.filter_vmap(lambda c: c.acceleration(q, w, t)))(chains)
    d = np.hypot(com[0], com[1])
    for k in range(4):  # the exact one-DoF equivalent of each scaled pendulum
        m = mass * float(scales[k])
        hinge = Hinge(izz + m * d**2, m * 9.80665 * d, np.arctan2(-com[0], -com[1]))
        np.testing.assert_allclose(batched[k], hinge.acceleration(q, w, t), rtol=1e-12)


def test_hinge_jit_grad():
    hinge = Hinge(0.5, 3.0, 0.2)
    f = lambda q, w, t: hinge.acceleration(q, w, t)  # noqa: E731
    args = (jnp.array([0.4]), jnp.array([1.0]), jnp.array([0.3]))
    check_grads(f, args, order=2, modes=("fwd", "rev"))
    np.testing.assert_allclose(jax.jit(f)(*args), f(*args), rtol=1e-15)


# -- (f) passive elements ----------------------------------------------------------------------
@eqx.filter_jit
def passive_value_and_grads(passive, q, qdot):
    def total(p, q, qdot):
        return jnp.sum(p.moment(q, qdot))

    return (total(passive, q, qdot), eqx.filter_grad(total)(passive, q, qdot),
            jax.grad(total, (1, 2))(passive, q, qdot))


finite_or_inf = st.one_of(st.just(np.inf), st.floats(0.0, 3.0))


@settings(max_examples=60, deadline=None)
@given(q=st.floats(-1e3, 1e3), qdot=st.floats(-1e3, 1e3), lo=finite_or_inf, hi=finite_or_inf,
       k=st.floats(0.0, 1e4), w=st.floats(1e-3, 1.0))
def test_joint_passive_finite_everywhere(q, qdot, lo, hi, k, w):
    passive = JointPassive(damping=[0.1, 2.0], stiffness=[0.0, 5.0], rest_angle=[0.0, 0.3],
                           lower_limit=[-lo - 1e-3, -np.inf], upper_limit=[hi, np.inf],
                           limit_stiffness=k, limit_transition=w)
    value, grads, (dq, dqdot) = passive_value_and_grads(passive, jnp.array([q, -q]),
                                                        jnp.array([qdot, qdot]))
    leaves = [value, dq, dqdot, *jax.tree_util.tree_leaves(grads)]
    assert all(np.isfinite(np.asarray(x)).all() for x in leaves)


def test_joint_passive_limits():
    p = JointPassive(lower_limit=-1.0, upper_limit=1.0, limit_stiffness=100.0,
                     limit_transition=0.01)
    zero = jnp.zeros(1)
    inside = p.moment(jnp.array([0.9]), zero)[0]
    assert abs(inside) < 100.0 * 0.01 * np.exp(-9.0)  # ≈ 0 well inside the range
    assert p.moment(jnp.array([1.5]), zero)[0] == pytest.approx(-100.0 * 0.5, rel=1e-3)
    assert p.moment(jnp.array([-1.5]), zero)[0] == pytest.approx(100.0 * 0.5, rel=1e-3)
    slope = jax.grad(lambda x: p.moment(x, zero)[0])(jnp.array([2.0]))[0]
    assert slope == pytest.approx(-100.0, rel=1e-12)  # linear past the limit
    none = JointPassive.none(3)
    assert none.n_dofs == 3
    np.testing.assert_array_equal(none.moment(jnp.array([5.0, -5.0, 0.0]), jnp.ones(3)), 0.0)
    spring = JointPassive(damping=2.0, stiffness=3.0, rest_angle=0.5)
    assert spring.moment(jnp.array([1.0]), jnp.array([2.0]))[0] == pytest.approx(-4.0 - 1.5)


@pytest.fixture(scope="module")
def passive_pendulum():
    clf = osim.CoordinateLimitForce("theta", 30.0, 2.0, -40.0, 3.0, 0.05, 5.0)
    clf.setName("limit")
    sgf = osim.SpringGeneralizedForce("theta")
    sgf.setName("spring")
    sgf.setStiffness(4.0)
    sgf.setRestLength(0.3)
    sgf.setViscosity(0.7)
    model = pendulum_model(2.0, [0.1, -0.3, 0.0], 0.05, forces=(clf, sgf))
    model.initSystem()
    return model, clf, sgf


def test_opensim_passive_elements_match(passive_pendulum):
    model, clf, sgf = passive_pendulum
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both elements are imported, nothing to warn about
        chain, names, passive, messages = chain_from_opensim(model)
    assert messages == []
    limit, spring = sorted(passive, key=lambda e: type(e).__name__)
    assert isinstance(limit, CoordinateLimitForce) and isinstance(spring, SpringGeneralizedForce)
    oracle = Oracle(model, names)
    rng = np.random.default_rng(11)
    # Angles covering both transition zones (30°..35°, −45°..−40°) and beyond.
    thetas = np.deg2rad(np.concatenate([rng.uniform(-50, 45, 30), [31, 34, -41, -44, 0]]))
    passive_fn = jax.jit(lambda q, w: (limit.moment(q, w), spring.moment(q, w)))
    hinge = Hinge.from_chain(chain)  # exact for one DoF (chain dynamics: other tests)
    for theta in thetas:
        omega = rng.uniform(-3, 3)
        oracle.set([theta], [omega])
        model.realizeDynamics(oracle.state)
        f_limit, f_spring = passive_fn(jnp.array([theta]), jnp.array([omega]))
        assert abs(f_limit[0] - clf.calcLimitForce(oracle.state)) <= PASSIVE_ABS
        assert abs(f_spring[0] - sgf.getRecordValues(oracle.state).get(0)) <= PASSIVE_ABS
        _, qdd_ref, _ = oracle.dynamics([theta], [omega])
        qdd = hinge.acceleration(jnp.array([theta]), jnp.array([omega]), f_limit + f_spring)
        assert rel_err(qdd, qdd_ref) <= DYNAMICS_REL


def test_coordinate_limit_force_gradients_finite():
    clf = CoordinateLimitForce(0, 2.0, 30.0, 3.0, -40.0, 0.05, 5.0)
    grad = jax.jit(jax.grad(lambda q, w: clf.limit_force(q, w), (0, 1)))
    for deg in (-60.0, -45.0, -42.0, -40.0, 0.0, 30.0, 33.0, 35.0, 90.0):
        assert np.isfinite(np.asarray(grad(np.deg2rad(deg), 1.0))).all()


# -- (g) clear errors ------------------------------------------------------------------------
def one_joint_model(make_joint):
    model = osim.Model()
    body = osim.Body("body", 1.0, _v3([0, -0.1, 0]), osim.Inertia(0.1))
    model.addBody(body)
    model.addJoint(make_joint(model.getGround(), body))
    model.initSystem()
    return model


def two_coordinate_custom(parent, child):
    st_ = osim.SpatialTransform()
    for slot, coord in (("rotation1", "c1"), ("rotation2", "c2")):
        ta = getattr(st_, "upd_" + slot)()
        ta.append_coordinates(coord)
        ta.set_function(osim.LinearFunction(1.0, 0.0))
    return osim.CustomJoint("twoaxis", parent, _v3([0, 0, 0]), _v3([0, 0, 0]), child,
                            _v3([0, 0, 0]), _v3([0, 0, 0]), st_)


def scaled_custom(parent, child):
    st_ = osim.SpatialTransform()
    ta = st_.upd_rotation1()
    ta.append_coordinates("c")
    ta.set_function(osim.LinearFunction(2.0, 0.0))
    return osim.CustomJoint("geared", parent, _v3([0, 0, 0]), _v3([0, 0, 0]), child,
                            _v3([0, 0, 0]), _v3([0, 0, 0]), st_)


@pytest.mark.parametrize("make_joint, name", [
    (lambda p, c: osim.SliderJoint("slide", p, _v3([0, 0, 0]), _v3([0, 0, 0]), c, _v3([0, 0, 0]),
                                   _v3([0, 0, 0])), "slide"),
    (lambda p, c: osim.BallJoint("ball", p, _v3([0, 0, 0]), _v3([0, 0, 0]), c, _v3([0, 0, 0]),
                                 _v3([0, 0, 0])), "ball"),
    (two_coordinate_custom, "twoaxis"),
    (scaled_custom, "geared"),
])
def test_unsupported_joints_are_named(make_joint, name):
    model = one_joint_model(make_joint)
    with pytest.raises(ValueError, match=f"'{name}'"):
        chain_from_opensim(model)


def test_branching_and_selection_errors(pin_chain):
    model = osim.Model()
    for i in range(2):  # two pendulums hanging from ground
        body = osim.Body(f"b{i}", 1.0, _v3([0, -0.1, 0]), osim.Inertia(0.1))
        model.addBody(body)
        model.addJoint(osim.PinJoint(f"pin{i}", model.getGround(), _v3([i, 0, 0]), _v3([0, 0, 0]),
                                     body, _v3([0, 0, 0]), _v3([0, 0, 0])))
    model.initSystem()
    with pytest.raises(ValueError, match="branch"):
        chain_from_opensim(model)
    pin_model, _, _ = pin_chain
    with pytest.raises(ValueError, match="nope"):
        chain_from_opensim(pin_model, coordinates=["q0", "nope"])
    with pytest.raises(ValueError, match="chain order"):
        chain_from_opensim(pin_model, coordinates=["q1", "q0"])


def test_unimported_force_warns(passive_pendulum):
    model = pendulum_model(1.0, [0, -0.2, 0], 0.01)
    force = osim.ExpressionBasedCoordinateForce("theta", "-2*q")
    force.setName("ebcf")
    model.addForce(force)
    model.initSystem()
    with pytest.warns(UserWarning, match="ExpressionBasedCoordinateForce 'ebcf'"):
        _, _, passive, messages = chain_from_opensim(model)
    assert passive == [] and any("ebcf" in m for m in messages)


def test_uninitialised_model_error():
    with pytest.raises(ValueError, match="initSystem"):
        chain_from_opensim(pendulum_model(1.0, [0, -0.2, 0], 0.01))


def test_serial_chain_input_errors():
    good = dict(parent_offset=np.zeros((2, 3)), axis=[[0, 0, 1], [0, 0, 2.0]], mass=[1.0, 1.0],
                com=np.zeros((2, 3)), inertia=np.broadcast_to(np.eye(3) * 0.1, (2, 3, 3)))
    chain = SerialChain(**good)
    np.testing.assert_allclose(chain.axis[1], [0, 0, 1])  # normalised
    cases = [
        (dict(axis=[[0, 0, 1], [0, 0, 0]]), "axis"),
        (dict(mass=[1.0, -1.0]), "mass"),
        (dict(com=np.zeros((3, 3))), "com"),
        (dict(inertia=np.broadcast_to(np.triu(np.ones((3, 3))), (2, 3, 3))), "inertia"),
        (dict(inertia=np.broadcast_to(-np.eye(3), (2, 3, 3))), "inertia"),
        (dict(parent_rotation=np.broadcast_to(2 * np.eye(3), (2, 3, 3))), "parent_rotation"),
        (dict(gravity=[0.0, -9.8]), "gravity"),
        (dict(parent_offset=np.full((2, 3), np.nan)), "parent_offset"),
    ]
    for change, field in cases:
        with pytest.raises(ValueError, match=field):
            SerialChain(**{**good, **change})
    with pytest.raises(ValueError, match=r"\(2,\)"):
        chain.acceleration(jnp.zeros(3), jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="limit"):
        JointPassive(lower_limit=1.0, upper_limit=0.0)
    with pytest.raises(ValueError, match="inertia"):
        Hinge(inertia=0.0)
    with pytest.raises(ValueError, match=r"Hinge.inertia has shape \(2,\)"):
        Hinge(inertia=[1.0, 2.0])
    with pytest.raises(ValueError, match="Hinge.gravity_moment"):
        Hinge(inertia=1.0, gravity_moment=-1.0)


def test_opensim_passive_elements_check_their_fields():
    """Field converters: OpenSim's argument order, scalar shapes, values checked by name."""
    clf = CoordinateLimitForce(1, 2.0, 30.0, 3.0, -40.0)
    assert clf.coordinate == 1 and clf.rotational is True
    assert clf.upper_limit.shape == () and float(clf.damping) == pytest.approx(0.001)
    assert float(clf.transition) == pytest.approx(0.1)
    bad = [
        (dict(coordinate=-1), "CoordinateLimitForce.coordinate"),
        (dict(coordinate=0.5), "CoordinateLimitForce.coordinate"),
        (dict(transition=0.0), "CoordinateLimitForce.transition"),
        (dict(upper_stiffness=-1.0), "CoordinateLimitForce.upper_stiffness"),
        (dict(lower_limit=np.nan), "CoordinateLimitForce.lower_limit"),
        (dict(damping=[0.1, 0.2]), "CoordinateLimitForce.damping"),
    ]
    args = dict(coordinate=0, upper_stiffness=2.0, upper_limit=30.0, lower_stiffness=3.0,
                lower_limit=-40.0)
    for change, name in bad:
        with pytest.raises(ValueError, match=name):
            CoordinateLimitForce(**{**args, **change})
    spring = SpringGeneralizedForce(0, stiffness=-2.0)  # any sign, as in OpenSim
    assert float(spring.moment(jnp.ones(1), jnp.zeros(1))[0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="SpringGeneralizedForce.viscosity"):
        SpringGeneralizedForce(0, viscosity=np.inf)
    with pytest.raises(ValueError, match="SpringGeneralizedForce.coordinate"):
        SpringGeneralizedForce(True)
