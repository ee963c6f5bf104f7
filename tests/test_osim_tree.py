"""OpenSim models as people have them: `JointTree` skeletons (CustomJoints with spline and
polynomial functions, three-axis hips, the patella's coupler eliminated, planar pelvis) read
by `tree_from_opensim` / `load_osim`, with OpenSim live as the oracle."""

from __future__ import annotations

import os
import warnings
from importlib.util import find_spec
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import opensim as osim  # the oracle: imported unconditionally, so a missing OpenSim fails
import pytest
from jax.test_util import check_grads

import jaxmsk as msk
from jaxmsk.io import tree_from_opensim
from jaxmsk.skeleton import JointFunction

osim.Logger.setLevelString("error")
DATA = Path(__file__).resolve().parents[1] / "data" / "opensim-walking"
WALKING = DATA / "subject_walk_scaled.osim"  # Rajagopal-based, 80 muscles
WALKING_PATHS = DATA / "subject_walk_scaled_FunctionBasedPathSet.xml"
RIGHT_LEG = ["hip_flexion_r", "hip_adduction_r", "hip_rotation_r", "knee_angle_r",
             "ankle_angle_r"]
GAIT_LEG = ["hip_flexion_r", "knee_angle_r", "ankle_angle_r"]
GAIT_RANGES = {"hip_flexion_r": (-0.6, 1.2), "knee_angle_r": (-1.4, 0.0),
               "ankle_angle_r": (-0.6, 0.5)}  # rad, a walking stride's box with a margin


def _osim_models_dir() -> str:
    spec = find_spec("osim")
    if spec is None:
        raise RuntimeError("the gait models come from osim-rl: pip install --no-deps "
                           "osim-rl==3.0.11")
    return os.path.join(spec.submodule_search_locations[0], "models")


GAIT = os.path.join(_osim_models_dir(), "gait9dof18musc.osim")  # 18 muscles, planar pelvis


def _opensim(path, paths=None):
    if paths is None:
        m = osim.Model(str(path))
    else:
        proc = osim.ModelProcessor(str(path))
        proc.append(osim.ModOpReplacePathsWithFunctionBasedPaths(str(paths)))
        m = proc.process()
    return m, m.initSystem()


def _set(m, s, names, q, qd=None):
    """Set coordinates (and speeds), the couplers' dependent ones from their functions."""
    cs = m.getCoordinateSet()
    for k, n in enumerate(names):
        cs.get(n).setValue(s, float(q[k]), False)
        if qd is not None:
            cs.get(n).setSpeedValue(s, float(qd[k]))
    for con in m.getConstraintSet():
        cc = osim.CoordinateCouplerConstraint.safeDownCast(con)
        if cc is None:
            continue
        ind = cs.get(cc.getIndependentCoordinateNames().get(0))
        dep = cs.get(cc.getDependentCoordinateName())
        x = osim.Vector(1, ind.getValue(s))
        dep.setValue(s, cc.getFunction().calcValue(x), False)
        if qd is not None:
            slope = cc.getFunction().calcDerivative(osim.StdVectorInt([0]), x)
            dep.setSpeedValue(s, slope * ind.getSpeedValue(s))
    m.realizeVelocity(s)


def _opensim_accelerations(path, names, q, qd):
    """OpenSim's q̈ with every force off and every other coordinate locked."""
    m = osim.Model(str(path))
    for f in m.getForceSet():
        f.set_appliesForce(False)
    s = m.initSystem()
    dependent = {osim.CoordinateCouplerConstraint.safeDownCast(c).getDependentCoordinateName()
                 for c in m.getConstraintSet()}
    for c in m.getCoordinateSet():
        if c.getName() not in names and c.getName() not in dependent:
            c.setLocked(s, True)
    _set(m, s, names, q, qd)
    m.realizeAcceleration(s)
    return np.array([m.getCoordinateSet().get(n).getAccelerationValue(s) for n in names])


@pytest.fixture(scope="module")
def walking_leg():
    m, _ = _opensim(WALKING)
    with pytest.warns(UserWarning, match="walker_knee_r' turns about several axes"):
        tree, names, passive, messages = tree_from_opensim(m, RIGHT_LEG)
    assert len(messages) == 1  # that note, and nothing about the hip or the gait model's knee
    return tree, names


@pytest.fixture(scope="module")
def gait_full():
    m, _ = _opensim(GAIT)
    with pytest.warns(UserWarning, match="HuntCrossleyForce"):
        tree, names, _, _ = tree_from_opensim(m)
    return tree, names


# -- JointFunction --------------------------------------------------------------------------
def test_joint_function_reproduces_opensim_splines_and_is_smooth_to_differentiate():
    """A SimmSpline through unevenly spaced knots: values equal OpenSim's to rounding inside,
    at the knots and beyond them (linear), slopes equal OpenSim's, and gradients are finite
    everywhere, knots included. (MultiplierFunctions of splines are read in the walking
    model's patella, whose poses are checked below.)"""
    xs = [-1.0, -0.3, 0.2, 0.9, 1.7, 2.0]
    ys = [0.05, -0.02, 0.04, 0.11, 0.03, -0.01]
    spline = osim.SimmSpline()
    for x, y in zip(xs, ys):
        spline.addPoint(x, y)
    from jaxmsk.io._osim_tree import joint_function

    for fn in (spline,):
        jf = joint_function(osim, fn, "test spline")
        probe = np.concatenate([np.linspace(-2.5, 3.5, 97), xs])
        theirs = np.array([fn.calcValue(osim.Vector(1, float(x))) for x in probe])
        ours = np.asarray(jax.vmap(jf)(jnp.asarray(probe)))
        assert np.abs(ours - theirs).max() < 1e-12
        slopes = np.asarray(jax.vmap(jax.grad(jf))(jnp.asarray(probe)))
        theirs_d = np.array([fn.calcDerivative(osim.StdVectorInt([0]), osim.Vector(1, float(x)))
                             for x in probe])
        inside = (probe > xs[0]) & (probe < xs[-1]) & ~np.isin(probe, xs)
        assert np.abs(slopes - theirs_d)[inside].max() < 1e-9
        assert np.isfinite(slopes).all()
    check_grads(jf, (jnp.asarray(0.37),), order=2, modes=["fwd", "rev"])
    poly = JointFunction.polynomial([0.1, -0.2, 0.3])
    assert float(poly(2.0)) == pytest.approx(0.1 - 0.4 + 1.2)
    with pytest.raises(ValueError, match="increase strictly"):
        JointFunction(jnp.asarray([0.0, 0.0]), jnp.asarray([[1.0]]))


# -- kinematics and dynamics against OpenSim ----------------------------------------------
def test_walking_right_leg_poses_match_opensim(walking_leg):
    """Hip (3 rotations), walker knee (rotations and translations polynomials of the knee
    angle), patella (SimmSplines of its coupled coordinate), ankle: every body's pose equals
    OpenSim's at random poses of the coordinates' ranges."""
    tree, names = walking_leg
    assert names == RIGHT_LEG and tree.n_dofs == 5
    m, s = _opensim(WALKING)
    bodies = ["femur_r", "tibia_r", "patella_r", "talus_r", "calcn_r", "toes_r"]
    assert len(tree.parents) == len(bodies)
    coords = [m.getCoordinateSet().get(n) for n in names]
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = rng.uniform([c.getRangeMin() for c in coords], [c.getRangeMax() for c in coords])
        _set(m, s, names, q)
        rot, org = (np.asarray(x) for x in tree.body_transforms(jnp.asarray(q)))
        for b in bodies:
            x = m.getBodySet().get(b).getTransformInGround(s)
            r = np.array([[x.R().get(i, j) for j in range(3)] for i in range(3)])
            p = np.array([x.p().get(i) for i in range(3)])
            i = [str(n) for n in bodies].index(b)
            assert np.abs(r - rot[i]).max() < 1e-10 and np.abs(p - org[i]).max() < 1e-10, b


def test_gait_model_dynamics_match_opensim(gait_full):
    """gait9dof18musc whole (planar pelvis with two translations, both legs with spline
    knees, lumbar): q̈ equals OpenSim's with all forces off at random states."""
    tree, names = gait_full
    assert len(names) == 9 and names[:3] == ["pelvis_tilt", "pelvis_tx", "pelvis_ty"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = rng.uniform(-0.5, 0.5, 9)
        q[[4, 7]] = -np.abs(q[[4, 7]])  # knees flex negative in this model
        qd = rng.uniform(-2.0, 2.0, 9)
        ours = np.asarray(tree.acceleration(jnp.asarray(q), jnp.asarray(qd), jnp.zeros(9)))
        theirs = _opensim_accelerations(GAIT, names, q, qd)
        assert np.abs(ours - theirs).max() < 1e-8 * (1 + np.abs(theirs).max()), (ours, theirs)


def test_walking_hip_and_ankle_dynamics_match_opensim_and_knee_at_rest(walking_leg):
    """The 80-muscle model's right leg with the patella coupled: q̈ equals OpenSim's with the
    hip and ankle moving and the walker knee at rest (mass matrix, gravity and every velocity
    term but the knee's), while OpenSim's velocity terms for a CustomJoint whose three rotations all
    follow one coordinate break the power balance of its own energy (docs/models.md) and
    ours keep it."""
    tree, names = walking_leg
    rng = np.random.default_rng(1)
    q = rng.uniform(-0.5, 0.5, 5)
    q[3] = 0.8
    qd = rng.uniform(-2.0, 2.0, 5)
    qd[3] = 0.0  # the knee at rest, hip and ankle moving: OpenSim's q̈ is ours
    ours = np.asarray(tree.acceleration(jnp.asarray(q), jnp.asarray(qd), jnp.zeros(5)))
    assert np.abs(ours - _opensim_accelerations(WALKING, names, q, qd)).max() < 1e-9
    # Power balance with no forces: dE/dt = ∂E/∂q·q̇ + ∂E/∂q̇·q̈ = 0 for E = T + V. Ours holds
    # to rounding; OpenSim's q̈ about the walker knee does not (measured: docs/models.md).
    def power(qdd):
        return jax.jvp(lambda x, v: tree.kinetic_energy(x, v) + tree.potential_energy(x),
                       (jnp.asarray(q), jnp.asarray(qd)), (jnp.asarray(qd), jnp.asarray(qdd)))[1]

    q = np.array([0.2, -0.1, 0.1, 0.8, 0.1])
    qd = np.array([0.5, 0.0, 0.0, 3.0, 1.0])
    ours = tree.acceleration(jnp.asarray(q), jnp.asarray(qd), jnp.zeros(5))
    theirs = _opensim_accelerations(WALKING, names, q, qd)
    kinetic = float(tree.kinetic_energy(jnp.asarray(q), jnp.asarray(qd)))
    assert abs(float(power(ours))) < 1e-9 * kinetic
    assert abs(float(power(theirs))) > 1e-4 * kinetic  # OpenSim's: 3.6e-4 W per J of T


def test_tree_errors_name_the_problem():
    m, _ = _opensim(WALKING)
    with pytest.raises(ValueError, match="knee_angle_r_beta.*follows.*knee_angle_r"):
        tree_from_opensim(m, ["knee_angle_r_beta"])
    with pytest.raises(ValueError, match="unknown"):
        tree_from_opensim(m, ["knee_angle_x"])


# -- load_osim: the right legs as Models ----------------------------------------------------
def _lengths_and_arms(path, names, muscles, q, paths=None):
    m, s = _opensim(path, paths)
    cs = [m.getCoordinateSet().get(n) for n in names]
    ms = [m.getMuscles().get(n) for n in muscles]
    lengths, arms = [], []
    for qi in q:
        _set(m, s, names, qi)
        lengths.append([x.getLength(s) for x in ms])
        arms.append([[x.computeMomentArm(s, c) for c in cs] for x in ms])
    return np.array(lengths), np.array(arms)


def test_opensim_paths_that_jump_are_found_and_are_jumps():
    """The walking model's own GeometryPaths: glmax1_r's length jumps (a wrapping
    discontinuity), which the search finds and which OpenSim, set directly at either side of
    the reported pose, confirms; smooth paths (semimem_r, soleus_r) report none."""
    from jaxmsk.io import path_discontinuities

    muscles = ["glmax1_r", "semimem_r", "soleus_r"]
    found = path_discontinuities(WALKING, RIGHT_LEG, muscles)
    assert {d["muscle"] for d in found} == {"glmax1_r"}, found
    for d in found[:2]:
        j = RIGHT_LEG.index(d["coordinate"])
        q = np.tile(np.asarray(d["at"]), (4, 1))
        q[:, j] += [-1e-3, -1e-5, 1e-5, 1e-3]
        lengths, _ = _lengths_and_arms(WALKING, RIGHT_LEG, ["glmax1_r"], q)
        across = lengths[2, 0] - lengths[1, 0]  # over 2e-5 rad
        assert abs(across) > 1e-3 and np.sign(across) == np.sign(d["jump"]), (d, lengths)
        # a step, not a slope: the 2e-3 rad around it change by little more than the jump
        assert abs(lengths[3, 0] - lengths[0, 0] - across) < 0.2 * abs(across), (d, lengths)
    with pytest.raises(ValueError, match="NOPE"):
        path_discontinuities(WALKING, RIGHT_LEG, ["NOPE"])
    with pytest.raises(ValueError, match="knee_nope"):
        path_discontinuities(WALKING, ["knee_nope"])
    with pytest.raises(ValueError, match="min < max"):
        path_discontinuities(WALKING, RIGHT_LEG, ["soleus_r"], ranges={"knee_angle_r": (1, 0)})


def test_gait_right_leg_loads_as_model_within_a_millimetre():
    """The 18-muscle gait model's right leg (hip, spline knee, ankle; 9 muscles): lengths and
    moment arms within 1 mm of OpenSim's at random poses of the walking box, and a model that
    simulates."""
    with pytest.warns(UserWarning, match="HuntCrossleyForce"):
        model = msk.load_osim(GAIT, GAIT_LEG, ranges=GAIT_RANGES)
    assert isinstance(model.skeleton, msk.JointTree)
    assert len(model.muscle_names) == 9 and all(n.endswith("_r") for n in model.muscle_names)
    rng = np.random.default_rng(7)
    box = np.array([GAIT_RANGES[c] for c in GAIT_LEG])
    q = rng.uniform(box[:, 0], box[:, 1], size=(40, 3))
    lengths, arms = _lengths_and_arms(GAIT, GAIT_LEG, model.muscle_names, q)
    ours_l, ours_r = jax.vmap(model.path.length_and_moment_arms)(jnp.asarray(q))
    assert np.abs(np.asarray(ours_l) - lengths).max() < 1e-3
    assert np.abs(np.asarray(ours_r) - arms).max() < 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # stays in the paths' box
        traj = msk.simulate(model, jnp.full((9, 9), 0.1), jnp.linspace(0.0, 0.04, 9),
                            q0=jnp.asarray([0.3, -0.6, 0.1]), solver="explicit")
    assert traj.result == diffrax.RESULTS.successful and np.isfinite(np.asarray(traj.q)).all()


def test_walking_right_leg_loads_as_model_with_opensims_polynomial_paths(tmp_path):
    """The 80-muscle model's right leg with the FunctionBasedPaths its authors ship: the
    skeleton a JointTree with the patella coupled, the 40 right-leg muscles' lengths and
    moment arms equal OpenSim's."""
    model = msk.load_osim(WALKING, RIGHT_LEG, paths=WALKING_PATHS)
    assert isinstance(model.skeleton, msk.JointTree) and model.coordinate_names == tuple(
        RIGHT_LEG)
    assert len(model.muscle_names) == 40 and max(model.path.fit_max) == 0.0
    m, _ = _opensim(WALKING)
    box = np.array([[m.getCoordinateSet().get(c).getRangeMin(),
                     m.getCoordinateSet().get(c).getRangeMax()] for c in RIGHT_LEG])
    q = np.random.default_rng(5).uniform(box[:, 0], box[:, 1], size=(8, 5))
    lengths, arms = _lengths_and_arms(WALKING, RIGHT_LEG, model.muscle_names, q, WALKING_PATHS)
    ours_l, ours_r = jax.vmap(model.path.length_and_moment_arms)(jnp.asarray(q))
    assert np.abs(np.asarray(ours_l) - lengths).max() < 1e-9
    assert np.abs(np.asarray(ours_r) - arms).max() < 1e-6
    # and a JointTree model survives a model file
    msk.models.save_model_json(tmp_path / "leg.json", model)
    again = msk.models.load(tmp_path / "leg.json")
    x = jnp.asarray(q[0])
    assert np.array_equal(np.asarray(again.skeleton.acceleration(x, x, x)),
                          np.asarray(model.skeleton.acceleration(x, x, x)))


def _one_joint(make_joint):
    model = osim.Model()
    body = osim.Body("body", 1.0, osim.Vec3(0.02, -0.1, 0.01), osim.Inertia(0.1, 0.08, 0.05))
    model.addBody(body)
    model.addJoint(make_joint(model.getGround(), body))
    model.initSystem()
    return model


def _custom(name, *axes):
    def make(parent, child):
        st = osim.SpatialTransform()
        for slot, coord, fn in axes:
            ta = getattr(st, "upd_" + slot)()
            ta.append_coordinates(coord)
            ta.set_function(fn)
        z = osim.Vec3(0.0)
        return osim.CustomJoint(name, parent, osim.Vec3(0.1, 0.2, 0.0), osim.Vec3(0.3, 0.0, 0.0),
                                child, z, z, st)
    return make


@pytest.mark.parametrize("make_joint, n", [
    (lambda p, c: osim.SliderJoint("slide", p, osim.Vec3(0.0), osim.Vec3(0.0, 0.0, 0.4), c,
                                   osim.Vec3(0.0), osim.Vec3(0.0)), 1),
    (_custom("twoaxis", ("rotation1", "c1", osim.LinearFunction(1.0, 0.0)),
             ("rotation2", "c2", osim.LinearFunction(1.0, 0.0))), 2),
    (_custom("geared", ("rotation1", "c", osim.LinearFunction(2.0, 0.1)),
             ("translation2", "c", osim.LinearFunction(0.05, 0.0))), 1),
])
def test_joints_a_serial_chain_refuses_are_trees_with_opensims_dynamics(make_joint, n):
    """A slider, a two-axis CustomJoint and a geared one (rotation 2q + 0.1 and a translation
    following q): the tree loads (its self-check compares poses) and q̈ equals OpenSim's."""
    model = _one_joint(make_joint)
    tree, names, _, _ = tree_from_opensim(model)
    assert len(names) == n
    q, qd = np.full(n, 0.3), np.full(n, -1.2)
    m = model
    s = m.initSystem()
    for k, c in enumerate(names):
        m.getCoordinateSet().get(c).setValue(s, q[k])
        m.getCoordinateSet().get(c).setSpeedValue(s, qd[k])
    m.realizeAcceleration(s)
    theirs = np.array([m.getCoordinateSet().get(c).getAccelerationValue(s) for c in names])
    ours = np.asarray(tree.acceleration(jnp.asarray(q), jnp.asarray(qd), jnp.zeros(n)))
    assert np.abs(ours - theirs).max() < 1e-9 * (1 + np.abs(theirs).max()), (ours, theirs)


def test_unsupported_moving_joint_is_named():
    model = _one_joint(lambda p, c: osim.BallJoint("ball", p, osim.Vec3(0.0), osim.Vec3(0.0), c,
                                                   osim.Vec3(0.0), osim.Vec3(0.0)))
    with pytest.raises(ValueError, match="'ball' is a BallJoint"):
        tree_from_opensim(model)
