"""arm26 with De Groote–Fregly muscles: jaxmsk's forward simulation vs OpenSim's (issue #3).

OpenSim simulates arm26 with its muscles replaced by DeGrooteFregly2016Muscle; jaxmsk loads
the same file with `load_osim`. To compare the dynamics at solver precision, OpenSim is
given exactly the geometry jaxmsk simulates: `write_osim_polynomial_paths` puts the fitted
polynomial paths into the .osim as FunctionBasedPaths. (How far the polynomial surrogate
is from OpenSim's wrapping paths is a separate, reported number: `load_osim` reports the
held-out length and moment-arm errors, and benchmarks/parity.py measures the resulting
trajectory difference.)
"""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmsk as msk
from helpers import SIM_ABS_Q, arm26_dgf_osim, import_opensim, opensim_model_simulation

osim = import_opensim()
TS = np.linspace(0.0, 1.0, 101)
Q0 = np.array([0.2, 1.0])  # rad: shoulder elevation, elbow flexion (a non-zero pose)
# Time-varying excitations, one phase and frequency per muscle (file order).
EXC = np.stack([0.2 + 0.05 * np.sin(2 * np.pi * (1 + 0.3 * k) * TS + k) for k in range(6)], 1)


@pytest.fixture(scope="module")
def arm26_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arm26")
    dgf = arm26_dgf_osim(folder / "arm26_dgf.osim")
    model = msk.load_osim(dgf, ranges={"r_shoulder_elev": (-1.2, 0.7)})
    poly = msk.io.write_osim_polynomial_paths(model, dgf, folder / "arm26_dgf_poly.osim")
    return model, dgf, poly


def test_load_osim_carries_curve_constants_and_fits_moment_arms(arm26_files):
    model, dgf, _ = arm26_files
    # replaceMuscles carries Thelen's FmaxTendonStrain (0.033 in arm26) over.
    assert abs(model.muscles.curves.tendon_strain - 0.033) < 1e-12
    assert len(model.path.fit_moment_arm_rms) == 6
    # In the task range the surrogate follows OpenSim's moment arms to a fraction of a mm.
    assert max(model.path.fit_moment_arm_rms) < 5e-4, model.path.fit_moment_arm_rms


def test_arm26_forward_simulation_matches_opensim(arm26_files):
    model, _, poly = arm26_files
    ref = opensim_model_simulation(poly, model.coordinate_names, TS, EXC, Q0)
    # The explicit solver: it compiles in a quarter of the implicit one's time (the default
    # implicit solver is held to OpenSim on the slider block in test_simulate.py).
    traj = eqx.filter_jit(msk.simulate)(
        model, jnp.asarray(EXC), jnp.asarray(TS), q0=jnp.asarray(Q0), solver="explicit",
        rtol=1e-8, atol=1e-10)
    assert traj.result == diffrax.RESULTS.successful
    err = np.max(np.abs(np.asarray(traj.q) - ref), axis=0)
    print(f"arm26 vs OpenSim (same geometry): max |q - q_OpenSim| = {err} rad, "
          f"motion range {np.ptp(ref, axis=0)} rad")
    assert np.all(err < SIM_ABS_Q)
    assert np.all(np.ptp(ref, axis=0) > 0.5)  # the arm really moves, both joints
