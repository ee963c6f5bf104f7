"""EMG-driven joint moments (jaxmsk.moments, `jaxmsk moments`) on the real walking recording
in data/opensim-walking (Rajagopal-based 80-muscle model, OpenSim live as the oracle)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import opensim as osim  # the oracle: imported unconditionally, so a missing OpenSim fails
import pytest

from jaxmsk.io import read_sto, write_sto
from jaxmsk.moments import (
    MomentParameters,
    calibrate_moments,
    load_emg_driven_model,
    map_channels,
    metrics,
    read_moment_recording,
)
from jaxmsk.moments._load import opensim_model_with_paths

DATA = Path(__file__).resolve().parents[1] / "data" / "opensim-walking"
MODEL = DATA / "subject_walk_scaled.osim"
PATHS = DATA / "subject_walk_scaled_FunctionBasedPathSet.xml"
EMG, IK, ID = (DATA / n for n in ("electromyography.sto", "coordinates.sto", "id_walk.sto"))
CHANNELS = read_sto(EMG).labels


@pytest.fixture(scope="module")
def walking():
    with pytest.warns(UserWarning, match="nColumns=40"):  # OpenSim's own file says so
        model, info = load_emg_driven_model(MODEL, CHANNELS, side="r", paths=PATHS)
        recording = read_moment_recording(EMG, IK, ID, model.coordinate_names)
    return model, info, recording


def _opensim_poses(model_file, paths, muscles, coordinates, q, with_arms=True):
    """OpenSim's lengths and moment arms at the poses q (constraints assembled)."""
    m, s = opensim_model_with_paths(osim, model_file, paths)
    cs = [m.getCoordinateSet().get(c) for c in coordinates]
    ms = [m.getMuscles().get(n) for n in muscles]
    lengths, arms = [], []
    for qi in q:
        for c, v in zip(cs, qi):
            c.setValue(s, float(v), False)
        m.assemble(s)
        m.realizePosition(s)
        lengths.append([x.getLength(s) for x in ms])
        if with_arms:
            arms.append([[x.computeMomentArm(s, c) for c in cs] for x in ms])
    return np.array(lengths), np.array(arms)


def test_function_based_paths_are_read_exactly(walking):
    """OpenSim's own MultivariatePolynomialFunction paths, written in one polynomial over
    the right leg's five coordinates: lengths and moment arms equal OpenSim's."""
    model, info, _ = walking
    assert model.coordinate_names == ("hip_flexion_r", "hip_adduction_r", "hip_rotation_r",
                                      "knee_angle_r", "ankle_angle_r")
    assert len(model.muscle_names) == 40 and set(model.path_sources) == {"FunctionBasedPath"}
    box = np.asarray(model.path.domain)
    q = np.random.default_rng(3).uniform(box[:, 0], box[:, 1], size=(6, 5))
    lengths, arms = _opensim_poses(MODEL, PATHS, model.muscle_names, model.coordinate_names, q)
    mine = jax.vmap(model.path.length_and_moment_arms)(jnp.asarray(q))
    np.testing.assert_allclose(mine[0], lengths, atol=1e-10)
    np.testing.assert_allclose(mine[1], arms, atol=1e-6)  # OpenSim's numerical moment arms


def test_geometry_paths_are_fitted_with_the_patella_coupled_and_report_their_error():
    """Without the path set the model's GeometryPaths are sampled (the knee's coupled
    patella coordinate assembled) and fitted over the coordinates each muscle crosses. At
    random poses of the box the error is at most what each fit reports, and ≤ 1 mm for
    the muscles whose paths are smooth there (the vasti over the patella included)."""
    model, info = load_emg_driven_model(MODEL, ["vastus_lateralis", "soleus"], side="r",
                                        coordinates=["knee_angle_r", "ankle_angle_r"],
                                        samples_per_dof=200)
    assert set(model.path_sources) == {"fitted"}
    assert info["paths"]["vaslat_r"]["coordinates"] == ["knee_angle_r"]
    assert info["paths"]["gaslat_r"]["coordinates"] == ["knee_angle_r", "ankle_angle_r"]
    box = np.asarray(model.path.domain)
    q = np.random.default_rng(4).uniform(box[:, 0], box[:, 1], size=(40, 2))
    lengths, _ = _opensim_poses(MODEL, None, model.muscle_names, model.coordinate_names, q,
                                with_arms=False)
    err = np.abs(np.asarray(jax.vmap(model.path.length)(jnp.asarray(q))) - lengths).max(0)
    reported = np.array([info["paths"][m]["fit_max_m"] for m in model.muscle_names])
    assert np.all(err <= 1.5 * reported + 2e-4), dict(zip(model.muscle_names, err))
    for m in ("vaslat_r", "vasmed_r", "vasint_r", "soleus_r", "tibant_r", "semiten_r", "bflh_r"):
        assert err[model.muscle_names.index(m)] <= 1e-3, (m, err[model.muscle_names.index(m)])


def test_channels_map_to_muscles_by_name_and_say_what_they_cannot_match(walking):
    model, info, _ = walking
    assert info["channel_map"]["gastrocnemius"] == ["gaslat_r", "gasmed_r"]
    # vastus intermedius has no surface EMG: the mean of the lateral and medial vasti
    row = np.asarray(model.mapping)[model.muscle_names.index("vasint_r")]
    assert row[CHANNELS.index("vastus_lateralis")] == row[CHANNELS.index("vastus_medius")] == 0.5
    assert "psoas_r" in info["without_emg"] and not model.driven[model.muscle_names.index(
        "psoas_r")]
    muscles = ["soleus_r", "soleus_l", "tibant_r"]
    with pytest.raises(ValueError, match="matches muscles on both sides"):
        map_channels(["soleus"], muscles)
    with pytest.raises(ValueError, match=r"'vastus_lat' matches no muscle.*--mapping"):
        map_channels(["vastus_lat"], muscles, side="r")
    with pytest.raises(ValueError, match=r"mapping\['ta'\] names muscles \['tibant'\]"):
        map_channels(["ta"], muscles, mapping={"ta": ["tibant"]})
    assert map_channels(["ta"], muscles, mapping={"ta": "tibant_r"}) == {"ta": ["tibant_r"]}
    assert map_channels(["ta", "noise"], muscles, mapping={"ta": "tibant_r", "noise": []}) == {
        "ta": ["tibant_r"], "noise": []}  # [] leaves a channel out


def test_recording_errors_name_the_file_and_the_fix(tmp_path):
    t = np.arange(0, 1, 0.01)
    ik = write_sto(tmp_path / "ik.sto", t, np.zeros((t.size, 1)), ["knee_angle_r"])
    idm = write_sto(tmp_path / "id.sto", t, np.zeros((t.size, 1)), ["knee_angle_r_moment"])
    id50 = write_sto(tmp_path / "id50.sto", t[::2], np.zeros((t[::2].size, 1)),
                     ["knee_angle_r_moment"])
    te = np.arange(0, 1, 0.001)
    emg = write_sto(tmp_path / "emg.sto", te, np.full((te.size, 1), 0.2), ["soleus"])
    late = write_sto(tmp_path / "late.sto", te + 5, np.full((te.size, 1), 0.2), ["soleus"])
    raw = write_sto(tmp_path / "raw.sto", te, np.sin(300 * te)[:, None], ["soleus"])
    rec = read_moment_recording(emg, ik, idm, ["knee_angle_r"])
    assert rec.q.shape == (100, 1) and rec.emg.shape == (100, 1) and rec.lead == 0
    with pytest.raises(ValueError, match="moments: sampled at 50 Hz but the kinematics at 100"):
        read_moment_recording(emg, ik, id50, ["knee_angle_r"])
    with pytest.raises(ValueError, match="do not overlap.*emg 5–5.999 s"):
        read_moment_recording(late, ik, idm, ["knee_angle_r"])
    with pytest.raises(ValueError, match="envelopes in \\[0, 1\\]"):
        read_moment_recording(raw, ik, idm, ["knee_angle_r"])
    with pytest.raises(ValueError, match=r"kinematics: no column for \['ankle_angle_r'\]"):
        read_moment_recording(emg, ik, idm, ["knee_angle_r", "ankle_angle_r"])
    with pytest.raises(FileNotFoundError, match="emg: no such file"):
        read_moment_recording(tmp_path / "none.sto", ik, idm, ["knee_angle_r"])


def test_walking_recording_is_aligned_with_emg_lead_in(walking):
    _, _, rec = walking
    assert rec.rate == pytest.approx(1000.0) and rec.emg_rate == pytest.approx(2000.0)
    assert rec.time[0] == pytest.approx(0.45) and rec.q.shape == (1350, 5)
    assert rec.lead == 450  # the EMG starts at 0 s: 0.45 s of it runs the filter in
    # the interpolated EMG equals the file's samples where the grids coincide
    table = read_sto(EMG)
    k = np.searchsorted(table.time, 0.5)
    np.testing.assert_allclose(rec.emg[rec.lead + 50], np.clip(table.values[k], 0, 1), atol=1e-12)


def test_calibration_recovers_hidden_emg_parameters(walking):
    """Moments made by the model itself with hidden EMG gains and delay (the real EMG and
    kinematics): the calibration on alternate windows finds them and predicts the other
    windows exactly."""
    model, _, rec = walking
    n_m, n_c = len(model.muscle_names), len(CHANNELS)
    truth = MomentParameters.nominal(n_m, n_c)
    gains = jnp.asarray(np.random.default_rng(5).uniform(0.2, 0.6, n_c))
    truth = MomentParameters(**{**truth.__dict__, "emg_gain": gains, "delay": jnp.asarray(0.06)})
    tau = np.asarray(model.moments(truth, rec.emg, rec.q, rec.qdot, rec.rate, rec.lead))
    made = type(rec)(**{**rec.__dict__, "moments": tau})
    windows = made.alternating_windows(0.1)
    cal = calibrate_moments(model, made, windows, fit=("emg_gain", "delay"),
                            regularisation=0.0, max_steps=25)
    np.testing.assert_allclose(cal.params.emg_gain, gains, rtol=1e-4)
    assert abs(float(cal.params.delay) - 0.06) < 1e-5
    test = ~made.windows(windows)
    pred = np.asarray(model.moments(cal.params, rec.emg, rec.q, rec.qdot, rec.rate, rec.lead))
    assert min(metrics(pred[test], tau[test])["r2"]) > 0.99999
    assert cal.loss < 1e-8 * cal.loss_start


def test_moments_gradients_are_finite_at_zero_activation_and_slack(walking):
    """Zero EMG (passive only) and tendon slack lengths scaled up (slack fibres): the loss
    gradient w.r.t. every parameter is finite."""
    model, _, rec = walking
    nominal = MomentParameters.nominal(len(model.muscle_names), len(CHANNELS))
    slack = MomentParameters(**{**nominal.__dict__,
                                "tendon_slack_length_scale": nominal.strength * 1.1})
    sl = slice(0, 200)

    def loss(p, emg):
        tau = model.moments(p, emg, rec.q[sl], rec.qdot[sl], rec.rate, rec.lead)
        return jnp.sum((tau - rec.moments[sl]) ** 2)

    grad = jax.jit(jax.grad(loss))
    for emg in (np.zeros_like(rec.emg[: rec.lead + 200]), rec.emg[: rec.lead + 200]):
        for p in (nominal, slack):
            grads = grad(p, emg)
            assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_moments_cli_on_the_walking_recording(tmp_path, capsys):
    from jaxmsk.cli import main

    out = tmp_path / "out"
    args = ["moments", "--model", str(MODEL), "--paths", str(PATHS), "--emg", str(EMG),
            "--kinematics", str(IK), "--moments", str(ID), "--out", str(out),
            "--max-steps", "8", "--fit", "emg_gain,delay"]
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"soleus": ["soleus"]}))
    assert main(args + ["--side", "r", "--mapping", str(bad)]) == 2
    assert "mapping['soleus'] names muscles ['soleus']" in capsys.readouterr().err
    assert main(args) == 2  # no --side: the channels match both legs
    assert "--side" in capsys.readouterr().err
    assert not out.exists()
    with pytest.warns(RuntimeWarning, match="stopped after 8 steps"):
        assert main(args + ["--side", "r"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "moments.png",
                                               "parameters.csv"}
    assert results["coordinates"][3] == "knee_angle_r" and results["steps"] == 8
    assert results["test_samples"] + results["calibration_samples"] == 1350
    assert results["test"]["r2"][4] > results["nominal_test"]["r2"][4]  # ankle improves
    assert main(args + ["--side", "r"]) == 2  # --out holds files: nothing is replaced
    assert "--overwrite" in capsys.readouterr().err
    assert main(args[:-4] + ["--side", "r", "--calibrate", "9:10", "--overwrite"]) == 2
    assert "0 calibration" in capsys.readouterr().err


def test_calibration_says_when_the_kinematics_leave_the_paths_domain(walking):
    """The knee taken 3 rad past its range: the calibration warns, naming the coordinate."""
    model, _, rec = walking
    q = np.array(rec.q)
    q[:, 3] += 3.0
    far = type(rec)(**{**rec.__dict__, "q": q})
    with pytest.warns(RuntimeWarning, match=r"leave the muscle paths' domain by \{'knee_angle_r'"):
        calibrate_moments(model, far, far.alternating_windows(0.1), fit=("delay",), max_steps=1)
