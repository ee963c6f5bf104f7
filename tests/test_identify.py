"""jaxmsk.identify: recovery of known parameters, gradients, uncertainty, identifiability and
clear errors.

Every fit here has the same structure (two 1-s wrist trials at 50 Hz, two shooting segments
each, F_max/l_opt/l_ts scales) so that they share one compiled objective (its Jacobian, its
forward pass and its gradient are each compiled once).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

import jaxmsk
from jaxmsk import EMGExcitation
from jaxmsk._identify import optim as id_optim
from jaxmsk._identify import problem as id_problem
from jaxmsk._identify.identify import IdentificationTrial, build_problem, identify, synthetic_trials

pytestmark = pytest.mark.xdist_group("identify")

FIT = ("max_isometric_force", "optimal_fiber_length", "tendon_slack_length")
TRUE = {
    "max_isometric_force": np.array([1.15, 0.85, 1.10, 0.90, 1.20]),
    "optimal_fiber_length": np.array([1.05, 0.95, 0.97, 1.04, 1.03]),
    "tendon_slack_length": np.array([1.01, 0.99, 1.02, 0.985, 1.00]),
}
KW = dict(shooting_interval=0.5, max_steps=40, progress=False)


@pytest.fixture(scope="module")
def wrist():
    return jaxmsk.models.wrist()


@pytest.fixture(scope="module")
def truth(wrist):
    return jaxmsk.scale_parameters(wrist, **TRUE)


@pytest.fixture(scope="module")
def clean_trials(truth):
    return synthetic_trials(truth, jax.random.key(3), n_trials=2, duration=1.0, fs=50.0)


@pytest.fixture(scope="module")
def clean_fit(wrist, clean_trials):
    return identify(wrist, clean_trials, FIT, **KW)


def test_noiseless_recovery_is_exact(clean_fit):
    """From noiseless trials the true scales are found to solver precision, with multiple
    shooting (two segments per trial) and the initial states fitted as nuisances."""
    res = clean_fit
    assert res.diagnostics["converged"], res.diagnostics["message"]
    for name in FIT:
        np.testing.assert_allclose(res.scales[name], TRUE[name], rtol=1e-4, err_msg=name)
    assert res.rms["q"] < 1e-5
    assert res.unidentifiable == []
    assert res.loss < 1e-6
    # The result's model is the given model scaled by the fitted scales.
    params = res.model.muscles.params
    np.testing.assert_allclose(params.max_isometric_force,
                               np.asarray(jaxmsk.models.wrist().muscles.params.max_isometric_force)
                               * res.scales["max_isometric_force"], rtol=1e-12)
    assert res.covariance.shape == (15, 15) and len(res.labels) == 15
    assert res.labels[0] == "max_isometric_force[FCR]"
    assert "| max_isometric_force[FCR] |" in res.table()


def test_standard_errors_cover_truth_with_noise(wrist, truth, clean_trials):
    """With 0.5° angle noise the estimates move off the truth and the Gauss–Newton standard
    errors account for it: the truth lies within 3 SE for at least 13 of the 15 scales, and
    the noise level is estimated within 30 %."""
    rng = np.random.default_rng(0)
    sigma = np.deg2rad(0.5)
    noisy = [IdentificationTrial(ts=t.ts, q=t.q + rng.normal(0, sigma, t.q.shape),
                                 excitation=t.excitation) for t in clean_trials]
    res = identify(wrist, noisy, FIT, **KW)
    z = np.concatenate([(res.scales[n] - TRUE[n]) / res.standard_errors[n] for n in FIT])
    assert np.all(np.isfinite(z))
    assert np.sum(np.abs(z) < 3) >= 13, z
    assert np.max(np.abs(z)) > 0.1  # the noise did move the estimates
    assert res.noise_sigma == pytest.approx(sigma, rel=0.3)


def test_unidentifiable_combination_is_reported(wrist):
    """Two identical muscles (FCU made a copy of FCR) driven identically: the data see only
    the sum of their contributions. The fit reports the difference directions and gives
    those standard errors as inf instead of meaningless numbers."""
    p = wrist.muscles.params
    dup = lambda a: a.at[1].set(a[0])  # noqa: E731
    model = eqx.tree_at(
        lambda m: (m.muscles.params.max_isometric_force, m.muscles.params.optimal_fiber_length,
                   m.muscles.params.tendon_slack_length, m.muscles.params.pennation_angle,
                   m.muscles.params.max_contraction_velocity, m.path.coefficients),
        wrist, (dup(p.max_isometric_force), dup(p.optimal_fiber_length),
                dup(p.tendon_slack_length), dup(p.pennation_angle),
                dup(p.max_contraction_velocity), wrist.path.coefficients.at[1].set(
                    wrist.path.coefficients[0])))
    trials = []
    for t in synthetic_trials(model, jax.random.key(3), n_trials=2, duration=1.0, fs=50.0):
        u = np.asarray(t.excitation)[:, [0, 0, 2, 3, 4]]  # the twins get the same drive
        q = jaxmsk.simulate(model, u, t.ts, q0=np.zeros(1), solver="explicit", rtol=1e-8,
                            atol=1e-10).q
        trials.append((t.ts, u, np.asarray(q)))
    res = identify(model, trials, FIT, **KW)
    # At the symmetric solution only the twins' sums are visible: one direction per
    # parameter (their difference) is reported for each of F_max, l_opt and l_ts.
    assert len(res.unidentifiable) == 3, res.unidentifiable
    for name in FIT:
        assert any(f"{name}[FCR]" in c and f"{name}[FCU]" in c for c in res.unidentifiable), name
        assert np.isinf(res.standard_errors[name][:2]).all()
        assert np.isfinite(res.standard_errors[name][2:]).all()


def test_closed_loop_trials_replay_their_excitation(wrist):
    """`synthetic_trials(protocol=...)`: excitations from the cohort's tracking controller,
    and the recorded angles are what `simulate` gives for them (the open-loop replay)."""
    trials = synthetic_trials(wrist, jax.random.key(1), n_trials=2, duration=1.0, fs=50.0,
                              protocol=("fast", "free"))
    assert [t.name for t in trials] == ["trial 1 (fast)", "trial 2 (free)"]
    for t in trials:
        u = np.asarray(t.excitation)
        assert u.shape == (51, 5) and u.min() >= 0.01 - 1e-12 and u.max() <= 1.0
        q = jaxmsk.simulate(wrist, u, t.ts, q0=t.q[0], solver="explicit", rtol=1e-8,
                            atol=1e-10).q
        np.testing.assert_allclose(t.q, np.asarray(q), atol=1e-7)
        assert np.ptp(t.q) > 0.1  # the target moves the wrist
    with pytest.raises(ValueError, match="unknown protocol"):
        synthetic_trials(wrist, jax.random.key(1), protocol="jog")
    with pytest.raises(ValueError, match="ranges must be"):
        synthetic_trials(wrist, jax.random.key(1), protocol="slow", ranges=[[0.2, -0.2]])


def test_start_velocity_is_exact_on_quadratics_and_robust_to_noise():
    ts = np.arange(101) / 100.0
    q = np.stack([0.2 + 0.7 * ts - 1.5 * ts**2, -0.4 * ts + 3.0 * ts**2], axis=1)
    np.testing.assert_allclose(id_problem.start_velocity(ts, q), [0.7, -0.4], atol=1e-10)
    rng = np.random.default_rng(0)
    sigma = np.radians(0.25)
    est = np.array([id_problem.start_velocity(ts, q + rng.normal(0, sigma, q.shape))[0]
                    for _ in range(400)])
    three_point = 2.5 * sigma / 0.01 * np.sqrt(26 / 25)  # sd of (-3q0 + 4q1 - q2)/(2 dt)
    assert abs(est.mean() - 0.7) < 0.03 and est.std() < 0.2 * three_point


def test_loss_gradient_matches_finite_differences(wrist, clean_trials):
    """The reverse-mode gradient of the objective (used by BFGS and optax) agrees with central
    differences along a random direction of the physical parameters. The objective is the
    one `clean_fit` used (multiple shooting, nuisance initial states), so its forward pass is
    already compiled. (Levenberg–Marquardt's forward-mode Jacobian is checked by the exact
    noiseless recovery.)"""
    problem, theta = build_problem(
        wrist, clean_trials, FIT, bounds=None, initial=None, emg_model=None,
        shooting_interval=KW["shooting_interval"], fit_initial_state=True,
        q_sigma=math.radians(1.0), moment_sigma=0.1, defect_weight=10.0, solver="explicit",
        rtol=1e-6, atol=1e-8, max_sim_steps=20_000)
    loss, grad = id_optim.loss_and_grad(theta, problem)
    rng = np.random.default_rng(1)
    direction = {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in theta["phys"].items()}
    moved = lambda h: {**theta, "phys": {k: theta["phys"][k] + h * direction[k]  # noqa: E731
                                         for k in theta["phys"]}}
    h = 1e-4
    fd = (float(id_optim.loss_value(moved(h), problem))
          - float(id_optim.loss_value(moved(-h), problem))) / (2 * h)
    analytic = sum(float(jnp.vdot(grad["phys"][k], direction[k])) for k in direction)
    assert abs(loss) > 1.0 and abs(fd) > 1.0  # away from the optimum: a real gradient
    assert analytic == pytest.approx(fd, rel=1e-4)


def test_optax_reduces_the_loss(wrist, clean_trials):
    """The optax alternative to Levenberg–Marquardt runs on the same objective and improves it
    (sharing the compiled reverse-mode gradient with the test above)."""
    import optax

    with pytest.warns(jaxmsk.IdentificationWarning, match="noise floor"):
        res = identify(wrist, clean_trials, FIT, method=optax.adam(0.05),
                       **{**KW, "max_steps": 6})
    history = [loss for _, loss in res.diagnostics["history"]]
    assert res.loss < 0.7 * history[0], history
    # Six Adam steps do not reach the fit: the result says so rather than looking done.
    d = res.diagnostics
    assert d["stalled"] and not d["converged"] and d["message"].startswith("stalled")
    assert len(d["starts"]) == 1 and d["gradient_norm"] > 0


def test_bfgs_descends_from_its_first_step(wrist, clean_trials):
    """BFGS (optimistix) on the same objective. Its first trial step is scaled to 0.1 in the
    unconstrained coordinates (`_bfgs_scale`). Unscaled, the raw gradient (max 2·10⁵ here)
    was the first trial step, about 20 Armijo halvings failed before one was accepted, and
    the loss did not move. The reported losses are unscaled; an accepted loss never rises."""
    res = identify(wrist, clean_trials, FIT, method="bfgs", starts=2, key=jax.random.key(5),
                   start_spread=0.1, **{**KW, "max_steps": 30})
    history = np.array([loss for _, loss in res.diagnostics["history"]])
    assert np.all(np.diff(history) <= 1e-9 * history[:-1]), history
    assert history[3] < 0.5 * history[0], history  # the scaled first steps are accepted
    assert res.loss < 1e-3 * history[0], history
    assert res.loss == pytest.approx(history[-1], rel=1e-6)
    # Two starts (the second perturbed in θ): both are reported and the better one is kept.
    ends = res.diagnostics["starts"]
    assert len(ends) == 2 and abs(ends[0] - ends[1]) > 1e-6 * min(ends), ends
    assert res.loss == min(ends)


@pytest.mark.parametrize("bad, message", [
    (lambda t: (t.ts, t.excitation, t.q[:-1]), "q has shape"),
    (lambda t: (t.ts, t.excitation[:, :4], t.q), "excitation has shape"),
    (lambda t: (t.ts, t.excitation, np.where(np.arange(len(t.ts))[:, None] == 7, np.nan, t.q)),
     "NaN or inf .first at row 7"),
    (lambda t: (t.ts[::-1], t.excitation, t.q), "strictly increasing"),
    (lambda t: (t.ts, t.excitation * 2.5, t.q), r"excitation must lie in \[0, 1\]"),
    (lambda t: {"ts": t.ts, "q": t.q}, "exactly one of excitation and emg"),
    (lambda t: {"ts": t.ts, "q": t.q, "excitation": t.excitation, "torque": 1}, "unknown key"),
])
def test_bad_trials_give_clear_errors(wrist, clean_trials, bad, message):
    with pytest.raises(ValueError, match=message):
        identify(wrist, [bad(clean_trials[0])], FIT, progress=False)


def test_bad_arguments_give_clear_errors(wrist, clean_trials):
    t = clean_trials[0]
    trial = (t.ts, t.excitation, t.q)
    with pytest.raises(ValueError, match="cannot fit 'F_maximum'"):
        identify(wrist, [trial], ("F_maximum",), progress=False)
    with pytest.raises(ValueError, match="only be fitted from trials that give `emg`"):
        identify(wrist, [trial], ("emg_delay",), progress=False)
    with pytest.raises(ValueError, match="must contain 1"):
        identify(wrist, [trial], ("F_max",), bounds={"F_max": (1.5, 3.0)}, progress=False)
    with pytest.raises(ValueError, match="bounds given for 'tau_act'"):
        identify(wrist, [trial], ("F_max",), bounds={"tau_act": (0.5, 2.0)}, progress=False)
    with pytest.raises(ValueError, match="non-empty sequence"):
        identify(wrist, [], FIT, progress=False)
    with pytest.raises(ValueError, match="fit_initial_state=False"):
        identify(wrist, [trial], FIT, method="dual_annealing", progress=False)
    with pytest.raises(ValueError, match="method="):
        identify(wrist, [trial], FIT, method="simplex", progress=False)
    # measured angles beyond the paths' ±1.2 rad box: said before anything is fitted (the
    # bounds error then stops this call before compiling)
    far = (t.ts, t.excitation, np.asarray(t.q) + 1.3)
    with pytest.warns(jaxmsk.IdentificationWarning, match=r"leave the box .*\{'flexion': "):
        with pytest.raises(ValueError, match="bounds given for 'tau_act'"):
            identify(wrist, [far], ("F_max",), bounds={"tau_act": (0.5, 2.0)}, progress=False)


def test_emg_excitation_is_differentiable_and_passes_through_by_default():
    ts = jnp.linspace(0.0, 1.0, 101)
    emg = jnp.stack([0.5 + 0.4 * jnp.sin(2 * jnp.pi * ts), 0.2 + 0.1 * ts], axis=1)
    u = EMGExcitation()(ts, emg)
    np.testing.assert_allclose(u, emg, atol=2e-4)  # A = −1e-3: almost linear; emg > minimum
    # A delay of 0.05 s shifts the signal by 5 samples.
    shifted = EMGExcitation(delay=0.05)(ts, emg)
    np.testing.assert_allclose(shifted[10:, 0], EMGExcitation()(ts, emg)[5:-5, 0], atol=2e-4)
    total = jax.jit(
        lambda d, a, c: EMGExcitation(shape_factor=a, c1=c, c2=c, delay=d)(ts, emg).sum())
    jax.test_util.check_grads(total, (0.0314, -1.2, -0.5), order=1, modes=("fwd", "rev"),
                              eps=1e-6)


def test_identify_cli_on_recordings(tmp_path, wrist, clean_trials, capsys):
    """`jaxmsk identify` on the recordings layout (processed EMG envelopes + kinematics in
    degrees, no force files): writes the fitted parameters, the model, a plot and a summary;
    refuses to overwrite; names a wrong subject."""
    import json

    from jaxmsk import cli
    from jaxmsk.io import write_sto

    subject = tmp_path / "data" / "S01"
    subject.mkdir(parents=True)
    for t in clean_trials:
        name = t.name.replace(" ", "_")
        write_sto(subject / f"{name}_emg.sto", t.ts, t.excitation, list(wrist.muscle_names),
                  metadata={"emg": "processed", "units": "1"})
        write_sto(subject / f"{name}_kinematics.mot", t.ts, np.degrees(t.q),
                  list(wrist.coordinate_names), in_degrees=True)
    out = tmp_path / "fit"
    argv = ["identify", "--data", str(tmp_path / "data"), "--subject", "S01", "--out", str(out),
            "--fit", "F_max", "--max-duration", "0.4", "--shooting-interval", "0",
            "--max-steps", "3"]
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "fit.png", "identify.json", "model.json", "parameters.csv", "summary.md"]
    summary = json.loads((out / "identify.json").read_text())
    assert summary["trials"] == ["trial_1", "trial_2"]
    fitted = summary["parameters"]["max_isometric_force"]["fitted"]
    assert len(fitted) == 5 and all(0.2 < f < 5 for f in fitted)
    assert len((out / "parameters.csv").read_text().splitlines()) == 1 + 5
    model = jaxmsk.models.load_model_json(out / "model.json")
    np.testing.assert_allclose(model.muscles.params.max_isometric_force,
                               np.asarray(wrist.muscles.params.max_isometric_force) * fitted)
    before = (out / "parameters.csv").read_text()
    assert cli.main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "parameters.csv").read_text() == before
    assert cli.main(argv[:4] + ["S09", "--out", str(tmp_path / "other")]) == 2
    assert "no subject folder 'S09'" in capsys.readouterr().err


def test_a_stalled_fit_warns_and_restarts(wrist, clean_trials):
    """Stopped far above the noise floor (here by a three-step budget from F_max scales at
    4.5 against a truth of 0.85–1.2): not converged, the figures in the message, a warning;
    "auto" tries more starts while the best one stalls, and reports each start's loss."""
    start = {"max_isometric_force": np.full(5, 4.5)}
    with pytest.warns(jaxmsk.IdentificationWarning, match=r"4 start\(s\)"):
        res = identify(wrist, clean_trials, FIT, initial=start, **{**KW, "max_steps": 3})
    d = res.diagnostics
    assert d["stalled"] and not d["converged"], d["message"]
    assert len(d["starts"]) == 4 and res.loss == min(d["starts"])
    assert res.rms["q"] > 3 * d["noise_floor_q"] and "noise floor" in d["message"]
    assert np.isfinite(d["gradient_norm"]) and d["gradient_norm"] > 0


def test_noise_floor_is_the_noise_of_the_data():
    """σ̂ from second differences: about σ for white noise on a smooth motion; for noiseless
    samples the motion's own q̈·dt²/√6 (3e-4 rad here), far below any measurement noise."""
    from jaxmsk._identify.identify import Q_ACCURACY, noise_floor

    t = np.linspace(0, 2, 201)[:, None]
    q = 0.5 * np.sin(2 * np.pi * 0.7 * t)
    noisy = q + np.random.default_rng(0).normal(0, math.radians(1), q.shape)
    assert noise_floor([noisy, noisy[::-1]]) == pytest.approx(math.radians(1), rel=0.15)
    assert Q_ACCURACY <= noise_floor([q]) < 0.02 * math.radians(1)


def test_default_multiple_shooting_recovers_sinusoidal_excitations(wrist):
    """The default (shooting_interval="auto": 0.5-s segments) on sinusoidal excitations in
    0.03–0.47, two 2-s trials at 50 Hz, F_max scales from 0.6 to 1.6: every scale within
    1 % (1e-6 measured). (`python -m experiments.identify.shooting` runs the full-size case,
    4 × 2 s at 100 Hz, where single shooting stalls at loss 3.7e4.)"""
    true = {"max_isometric_force": np.array([1.6, 0.6, 1.3, 0.75, 1.45]),
            "optimal_fiber_length": np.array([1.1, 0.9, 1.15, 1.0, 0.95]),
            "tendon_slack_length": np.array([1.03, 0.97, 1.0, 1.02, 0.98])}
    truth = jaxmsk.scale_parameters(wrist, **true)
    ts = np.arange(101) / 50.0
    rng = np.random.default_rng(7)
    trials = []
    for _ in range(2):
        f, ph = rng.uniform(0.5, 1.5, 5), rng.uniform(0, 2 * np.pi, 5)
        u = 0.25 + 0.22 * np.sin(2 * np.pi * f * ts[:, None] + ph)
        q = jaxmsk.simulate(truth, u, ts, q0=np.zeros(1), rtol=1e-10, atol=1e-12).q
        trials.append(IdentificationTrial(ts=ts, excitation=u, q=np.asarray(q),
                                          qdot0=np.zeros(1)))
    said = []
    res = identify(wrist, trials, FIT, max_steps=100, progress=said.append)
    assert "2 trial(s), 8 segment(s)" in said[0]  # four 0.5-s segments per 2-s trial
    d = res.diagnostics
    assert d["converged"] and not d["stalled"], d["message"]
    for name in FIT:
        np.testing.assert_allclose(res.scales[name], true[name], rtol=0.01, err_msg=name)


def test_strength_is_one_scale_of_every_muscles_force(wrist):
    """fit=("strength",): one scale label, and the model's F_max is nominal × strength (×
    the per-muscle scales when those are fitted too)."""
    params = id_problem.parameters_to_fit(wrist, EMGExcitation(), ("strength", "F_max"),
                                          {}, -1)
    assert params[0].labels == ("strength",) and params[0].kind == "scale"
    per = np.array([1.1, 0.9, 1.0, 1.2, 0.8])
    phys = {"strength": jnp.asarray(id_problem.to_theta(params[0], np.array([1.5]))),
            "max_isometric_force": jnp.asarray(id_problem.to_theta(params[1], per))}
    model, _ = id_problem.apply_parameters(wrist, EMGExcitation(), params, phys, -1)
    np.testing.assert_allclose(model.muscles.params.max_isometric_force,
                               1.5 * per * np.asarray(wrist.muscles.params.max_isometric_force),
                               rtol=1e-9)


def test_per_unit_jacobian_equals_the_dense_one(wrist):
    """identify's forward mode by unit (each trial segment differentiated only in the
    directions of the parameters and its own start state) gives the dense jacfwd's Jacobian:
    two trials cut into 0.15-s shooting segments (first segments from (q0, qdot0), later
    ones from free states), away from the start point so that every block is non-trivial."""
    import dataclasses

    import jax.flatten_util

    trials = synthetic_trials(wrist, jax.random.key(3), n_trials=2, duration=0.3)
    for shooting in (0.15,):
        problem, theta0 = build_problem(
            wrist, trials, FIT, bounds=None, initial=None, emg_model=None,
            shooting_interval=shooting, fit_initial_state=True, q_sigma=math.radians(1.0),
            moment_sigma=0.1, defect_weight=10.0, solver="explicit", rtol=1e-8, atol=1e-10,
            max_sim_steps=20_000)
        assert problem.structured
        flat, unravel = jax.flatten_util.ravel_pytree(theta0)
        flat = flat + 0.05 * jnp.sin(jnp.arange(flat.size))
        jac = eqx.filter_jit(lambda f, pr, un=unravel: jax.jacfwd(
            lambda g: pr.residuals(un(g)))(f))
        j_unit = np.asarray(jac(flat, problem))
        j_dense = np.asarray(jac(flat, dataclasses.replace(problem, structured=False)))
        assert np.all(np.isfinite(j_unit)) and np.abs(j_unit).max() > 1
        np.testing.assert_allclose(j_unit, j_dense, rtol=0, atol=1e-9 * np.abs(j_dense).max())
