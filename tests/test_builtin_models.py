"""Built-in models: stored data, reproducible from the OpenSim files, usable without OpenSim."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from helpers import import_opensim

import jaxmsk as msk

osim = import_opensim()


def test_builtin_models_load_without_opensim():
    code = ("import sys; sys.modules['opensim'] = None\n"
            "import jax.numpy as jnp, jaxmsk as msk\n"
            "w, a = msk.models.wrist(), msk.models.arm26()\n"
            "assert w.n_dofs == 1 and w.n_muscles == 5 and a.n_dofs == 2 and a.n_muscles == 6\n"
            "tr = msk.simulate(w, jnp.full((11, 5), 0.2), jnp.linspace(0, 0.1, 11), "
            "q0=jnp.zeros(1), solver='explicit')\n"
            "assert bool(jnp.all(jnp.isfinite(tr.q)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_wrist_parameters_are_reference_table():
    w = msk.models.wrist()
    assert w.muscle_names == ("FCR", "FCU", "ECU", "ECRB", "ECRL")
    assert w.coordinate_names == ("flexion",)
    p = w.muscles.params
    table = np.array([[59.7, 0.0628, 0.2185, 0.054], [102.6, 0.0509, 0.2420, 0.211],
                      [117.0, 0.0622, 0.2310, 0.061], [122.9, 0.0585, 0.2205, 0.155],
                      [65.7, 0.0936, 0.2026, 0.044]])  # the OpenSim wrist model's
    got = np.stack([p.max_isometric_force, p.optimal_fiber_length, p.tendon_slack_length,
                    p.pennation_angle], 1)
    np.testing.assert_allclose(got, table, rtol=1e-6)
    np.testing.assert_allclose(p.max_contraction_velocity, 10 * table[:, 1], rtol=1e-6)
    assert w.muscles.tendon == "compliant"
    meta = msk.models.builtin_metadata("wrist")
    assert max(meta["fit_moment_arm_rms_m"]) < 2e-4 and "MoBL" in meta["source"]


def test_wrist_moment_arms_and_inertia_match_mobl_live():
    """Against OpenSim's MoBL-ARMS at elbow 90°, forearm neutral, the flexion coupler enforced:
    moment arms = −dl/dθ (central differences of OpenSim's lengths) and the hand's inertia."""
    from jaxmsk.models import _build

    w = msk.models.wrist()
    thetas, _, arms, inertias, *_ = _build.mobl_wrist_samples(n_samples=13)
    ours = np.asarray(jax.vmap(w.path.moment_arms)(jnp.asarray(thetas)[:, None]))[:, :, 0]
    assert np.max(np.abs(ours - arms)) < 5e-4, np.max(np.abs(ours - arms), axis=0)
    # Flexors flex, extensors extend (FCR, FCU > 0 > ECRB, ECRL over the whole range).
    assert np.all(ours[:, :2] > 0) and np.all(ours[:, 3:] < 0)
    assert abs(float(w.skeleton.inertia) - inertias[0]) < 1e-12


def test_builtin_data_regenerate_exactly():
    from jaxmsk.models import _build

    for name in ("wrist", "arm26"):
        rebuilt, _ = _build.BUILDERS[name]()
        stored = msk.models.load_model_json(_build.os.path.join(_build.DATA, f"{name}.json"))
        for a, b in zip(jax.tree_util.tree_leaves(rebuilt), jax.tree_util.tree_leaves(stored)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
        assert rebuilt.muscle_names == stored.muscle_names
