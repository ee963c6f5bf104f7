"""Shared test helpers: tolerances (in one place) and OpenSim oracles computed live."""

from __future__ import annotations

import numpy as np

# Tolerances. Each loosening is explained next to it.
CURVE_ABS = 1e-9  # issue #2: every curve vs OpenSim, absolute
EQUILIBRIUM_REL = 1e-6  # issue #2: static equilibrium vs OpenSim, relative
# OpenSim's equilibrium is a bisection stopped at a 1e-10 tolerance; its own result is
# accurate to about that, so derivatives evaluated at a common state agree far tighter.
DERIVATIVE_REL = 1e-9
MUJOCO_ABS = 1e-9


def import_opensim():
    """`opensim`, or a hard failure: the oracle must be installed (never a skip)."""
    try:
        import opensim
    except ImportError as err:  # pragma: no cover - CI installs it through the test extra
        raise RuntimeError(
            "The OpenSim oracle is missing: pip install 'opensim==4.6.*' (part of jaxmsk[test])."
        ) from err
    opensim.Logger.setLevelString("error")
    return opensim


def opensim_slider_muscle(fmax, lopt, lts, alpha, vmax=10.0, *, rigid=False, damping=0.0):
    """A body on a slider joint pulled by one DeGrooteFregly2016Muscle along x.

    The path runs from the ground origin to the body origin, so the MTU length equals the
    slider coordinate and the lengthening speed equals its speed. Returns
    (model, state, muscle, coordinate).
    """
    osim = import_opensim()
    model = osim.Model()
    model.setGravity(osim.Vec3(0))
    body = osim.Body("body", 1.0, osim.Vec3(0), osim.Inertia(1))
    model.addBody(body)
    joint = osim.SliderJoint("slider", model.getGround(), osim.Vec3(0), osim.Vec3(0),
                             body, osim.Vec3(0), osim.Vec3(0))
    joint.updCoordinate().setName("x")
    model.addJoint(joint)
    mus = osim.DeGrooteFregly2016Muscle()
    mus.setName("muscle")
    mus.set_max_isometric_force(float(fmax))
    mus.set_optimal_fiber_length(float(lopt))
    mus.set_tendon_slack_length(float(lts))
    mus.set_pennation_angle_at_optimal(float(alpha))
    mus.set_max_contraction_velocity(float(vmax))
    mus.set_ignore_tendon_compliance(bool(rigid))
    mus.set_fiber_damping(float(damping))
    mus.addNewPathPoint("origin", model.getGround(), osim.Vec3(0))
    mus.addNewPathPoint("insertion", body, osim.Vec3(0))
    model.addForce(mus)
    state = model.initSystem()
    return model, state, mus, joint.getCoordinate()


def opensim_equilibrium(fmax, lopt, lts, alpha, lmt, act, vmt=0.0, *, vmax=10.0, rigid=False,
                        damping=0.0):
    """OpenSim's `equilibrateMuscles` result: (fiber_length, pennation, tendon_force, f̃T)."""
    model, s, mus, coord = opensim_slider_muscle(fmax, lopt, lts, alpha, vmax, rigid=rigid,
                                                 damping=damping)
    coord.setValue(s, float(lmt))
    coord.setSpeedValue(s, float(vmt))
    mus.setActivation(s, float(act))
    model.equilibrateMuscles(s)
    model.realizeDynamics(s)
    return (mus.getFiberLength(s), mus.getPennationAngle(s), mus.getTendonForce(s),
            mus.getTendonForce(s) / fmax)


def random_physiological_cases(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random muscles and MTU lengths with a root inside OpenSim's equilibrium bracket.

    Parameters span human muscles (F_max 20–5000 N, l_opt 2–30 cm, l_ts/l_opt 0.2–6,
    α_opt 0–0.6 rad); the MTU length is built from a target fibre length l̃M ∈ [0.5, 1.6]
    and tendon strain ∈ [0, 0.045], so that the equilibrium lies inside [0, 5].
    """
    fmax = rng.uniform(20.0, 5000.0, n)
    lopt = rng.uniform(0.02, 0.30, n)
    lts = lopt * rng.uniform(0.2, 6.0, n)
    alpha = rng.uniform(0.0, 0.6, n)
    act = rng.uniform(0.0, 1.0, n)
    act[: n // 10] = 0.0  # zero activation is part of the domain
    width = lopt * np.sin(alpha)
    lm = lopt * rng.uniform(0.5, 1.6, n)
    lm = np.maximum(lm, 1.05 * width)
    lmt = lts * (1.0 + rng.uniform(0.0, 0.045, n)) + np.sqrt(lm**2 - width**2)
    return dict(fmax=fmax, lopt=lopt, lts=lts, alpha=alpha, act=act, lmt=lmt)


SIM_ABS_Q = 1e-3  # issue #3: joint angles vs OpenSim forward simulation (rad)
SIM_ABS_X = 1e-4  # issue #3: slider block position vs OpenSim (m)


def opensim_block_simulation(ts, excitation, *, rigid, mass=20.0, x0=0.31, gravity=9.80665,
                             params=(1000.0, 0.1, 0.2, 0.1), accuracy=1e-9):
    """A block on a slider pulled by one DeGrooteFregly2016Muscle, gravity along +x, driven
    by a piecewise-linear excitation; OpenSim's Manager integrates it. Returns x at ts."""
    osim = import_opensim()
    model = osim.Model()
    model.setGravity(osim.Vec3(gravity, 0, 0))
    body = osim.Body("block", mass, osim.Vec3(0), osim.Inertia(1))
    model.addBody(body)
    joint = osim.SliderJoint("slider", model.getGround(), osim.Vec3(0), osim.Vec3(0), body,
                             osim.Vec3(0), osim.Vec3(0))
    joint.updCoordinate().setName("x")
    model.addJoint(joint)
    mus = osim.DeGrooteFregly2016Muscle()
    mus.setName("muscle")
    fmax, lopt, lts, alpha = params
    mus.set_max_isometric_force(fmax)
    mus.set_optimal_fiber_length(lopt)
    mus.set_tendon_slack_length(lts)
    mus.set_pennation_angle_at_optimal(alpha)
    mus.set_ignore_tendon_compliance(bool(rigid))
    mus.addNewPathPoint("origin", model.getGround(), osim.Vec3(0))
    mus.addNewPathPoint("insertion", body, osim.Vec3(0))
    model.addForce(mus)
    controller = osim.PrescribedController()
    controller.addActuator(mus)
    fn = osim.PiecewiseLinearFunction()
    for t, e in zip(ts, excitation):
        fn.addPoint(float(t), float(e))
    controller.prescribeControlForActuator("muscle", fn)
    model.addController(controller)
    state = model.initSystem()
    joint.getCoordinate().setValue(state, x0)
    mus.setActivation(state, float(excitation[0]))
    model.equilibrateMuscles(state)
    manager = osim.Manager(model)
    manager.setIntegratorAccuracy(accuracy)
    manager.initialize(state)
    xs = [x0]
    for t in ts[1:]:
        state = manager.integrate(float(t))
        xs.append(joint.getCoordinate().getValue(state))
    return np.array(xs)


def arm26_osim_path() -> str:
    """arm26.osim from osim-rl (Apache-2.0); the tests never skip when it is missing."""
    import os
    from importlib.util import find_spec

    spec = find_spec("osim")
    if spec is None:
        raise RuntimeError("arm26.osim comes from osim-rl: pip install --no-deps osim-rl==3.0.11")
    return os.path.join(spec.submodule_search_locations[0], "models", "arm26.osim")


def arm26_dgf_osim(out_path) -> str:
    """arm26 with every muscle replaced by OpenSim's DeGrooteFregly2016Muscle (what Moco's
    `ModOpReplaceMusclesWithDeGrooteFregly2016` does), written to `out_path`.

    OpenSim keeps DeGroote activation time constants in function-static variables (the
    first muscle evaluated fixes them for the process), so every muscle gets the defaults
    0.015/0.060 s, which then also hold for any other DeGroote muscle in the test process.
    """
    osim = import_opensim()
    model = osim.Model(arm26_osim_path())
    osim.DeGrooteFregly2016Muscle.replaceMuscles(model)
    for i in range(model.getMuscles().getSize()):
        mus = osim.DeGrooteFregly2016Muscle.safeDownCast(model.getMuscles().get(i))
        mus.set_activation_time_constant(0.015)
        mus.set_deactivation_time_constant(0.060)
    model.finalizeFromProperties()
    model.printToXML(str(out_path))
    return str(out_path)


def opensim_prescribed_model(osim_file, coordinates, ts, excitation, q0):
    """A fresh OpenSim model from an .osim whose muscles follow piecewise-linear excitations
    (columns in the model's muscle order), muscles equilibrated at q0 with activation equal
    to the first excitation. Returns (model, state, the `coordinates` objects)."""
    osim = import_opensim()
    model = osim.Model(str(osim_file))
    muscles = model.getMuscles()
    names = [muscles.get(i).getName() for i in range(muscles.getSize())]
    controller = osim.PrescribedController()
    for k, name in enumerate(names):
        controller.addActuator(muscles.get(name))
        fn = osim.PiecewiseLinearFunction()
        for t, e in zip(ts, excitation[:, k]):
            fn.addPoint(float(t), float(e))
        controller.prescribeControlForActuator(name, fn)
    model.addController(controller)
    state = model.initSystem()
    coords = [model.getCoordinateSet().get(c) for c in coordinates]
    for c, v in zip(coords, q0):
        c.setValue(state, float(v))
    for k, name in enumerate(names):
        model.getMuscles().get(name).setActivation(state, float(excitation[0, k]))
    model.equilibrateMuscles(state)
    return model, state, coords


def opensim_model_simulation(osim_file, coordinates, ts, excitation, q0, *, accuracy=1e-9):
    """OpenSim's Manager on `opensim_prescribed_model`, integrated from output time to output
    time. Returns q at ts, (len(ts), len(coordinates))."""
    osim = import_opensim()
    model, state, coords = opensim_prescribed_model(osim_file, coordinates, ts, excitation, q0)
    manager = osim.Manager(model)
    manager.setIntegratorAccuracy(accuracy)
    manager.initialize(state)
    qs = [list(q0)]
    for t in ts[1:]:
        state = manager.integrate(float(t))
        qs.append([c.getValue(state) for c in coords])
    return np.array(qs)


# The small synthetic cohort shared (session fixture `small_cohort` in conftest.py) by the
# cohort and dataset tests (xdist group "cohort") and the transfer and demo tests (group
# "transfer"); each group runs on one worker, so each worker builds it at most once.
SMALL_COHORT = {"n_subjects": 3, "duration": 3.0, "repetitions": 1, "seed": 0}


def hidden_entries(parent) -> list[str]:
    """Names of hidden entries (temporary files or folders a writer left) in `parent`."""
    import os

    return [n for n in os.listdir(parent) if n.startswith(".")]


def assert_foreign_folder_kept(tmp_path, write, match: str) -> None:
    """`write(path)` with overwrite=True on a folder holding someone's files must refuse
    (FileExistsError matching `match`) and leave the folder and its parent as they were."""
    import os

    import pytest

    path = tmp_path / "results"
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match=match):
        write(path)
    assert os.listdir(path) == ["thesis.tex"]
    assert (path / "thesis.tex").read_text() == "years of work"
    assert hidden_entries(tmp_path) == []


def fake_cohort(seed: int, *, trial_names, n_time: int, fs: float, n_emg: int, fs_emg: float,
                n_mvc: int, n_subjects: int = 2, force_scale: float = 1.0, metadata=None):
    """A `jaxmsk.cohort.Cohort` of random data with consistent shapes, without simulating
    (for file I/O tests). Subject parameters take `sample_subject`'s shapes from
    `jax.eval_shape` (eager sampling takes seconds); emg is float32, the rest float64."""
    import functools

    import jax
    import numpy as np

    import jaxmsk
    from jaxmsk.cohort import Cohort

    model = jaxmsk.models.wrist()
    m, d = model.n_muscles, model.n_dofs
    rng = np.random.default_rng(seed)
    one = jax.eval_shape(functools.partial(jaxmsk.cohort.sample_subject, n_muscles=m),
                         jax.random.key(seed))
    subjects = jax.tree.map(lambda s: rng.random((n_subjects, *s.shape)).astype(s.dtype), one)
    shape = (n_subjects, len(trial_names), n_time)
    dofs = {k: rng.standard_normal((*shape, d))
            for k in ("q", "qdot", "qddot", "target", "moments")}
    muscles = {k: rng.random((*shape, m)) * force_scale
               for k in ("excitation", "activation", "tendon_force", "fiber_length")}
    return Cohort(
        model=model, subjects=subjects,
        subject_ids=tuple(f"S{i + 1:02d}" for i in range(n_subjects)),
        trial_names=tuple(trial_names), protocols=tuple(t.split("_")[0] for t in trial_names),
        fs=fs, fs_emg=fs_emg, time=np.arange(n_time) / fs, time_emg=np.arange(n_emg) / fs_emg,
        **dofs, **muscles,
        emg=rng.standard_normal((n_subjects, len(trial_names), n_emg, m)).astype(np.float32),
        mvc_emg=rng.standard_normal((n_subjects, n_mvc, m)),
        metadata={"generator": "test"} if metadata is None else metadata)


def small_cnn(n_in, n_out, key):
    """The tests' tiny CNN (receptive field 7): machinery checks, not the method."""
    import jaxmsk as msk

    return msk.nn.CNN(n_in, n_out, channels=(8, 8), kernel_sizes=(4, 4), head_width=16, key=key)
