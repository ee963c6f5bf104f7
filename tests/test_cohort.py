"""Synthetic cohorts: reproducibility, ground truth = forward simulation, protocols inside the
range, subject physiology applied, sEMG that tracks the excitation; datasets and splits."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

import jaxmsk as msk
from jaxmsk.cohort import synthetic_cohort
from jaxmsk.data import Dataset

# Every test here shares one generated cohort (about a minute of compilation): keep them on
# one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("cohort")

from helpers import SMALL_COHORT  # noqa: E402

N_SUBJECTS = SMALL_COHORT["n_subjects"]
DURATION = SMALL_COHORT["duration"]


@pytest.fixture(scope="module")
def wrist():
    return msk.models.wrist()


@pytest.fixture(scope="module")
def cohort(small_cohort):
    return small_cohort


@pytest.fixture(scope="module")
def processed(cohort):
    return cohort.to_dataset().process()


def test_shapes_units_and_metadata(cohort):
    s, r, t = N_SUBJECTS, 4, int(DURATION * 100) + 1
    assert cohort.trial_names == ("slow_1", "medium_1", "fast_1", "free_1")
    assert cohort.q.shape == (s, r, t, 1) and cohort.tendon_force.shape == (s, r, t, 5)
    assert cohort.emg.shape == (s, r, int(DURATION * 2000) + 1, 5)
    assert cohort.mvc_emg.shape == (s, 10000, 5)
    assert cohort.muscle_names == ("FCR", "FCU", "ECU", "ECRB", "ECRL")
    for name in ("q", "qdot", "qddot", "excitation", "activation", "tendon_force", "emg"):
        assert np.all(np.isfinite(getattr(cohort, name))), name
    assert np.all((cohort.excitation >= 0.01) & (cohort.excitation <= 1.0))
    assert cohort.metadata["units"]["tendon_force"] == "N"


def test_same_key_same_cohort_other_key_differs(cohort, wrist):
    again = synthetic_cohort(wrist, N_SUBJECTS, jax.random.key(0), repetitions=1, duration=DURATION)
    other = synthetic_cohort(wrist, N_SUBJECTS, jax.random.key(1), repetitions=1, duration=DURATION)
    for name in ("q", "tendon_force", "emg", "mvc_emg"):
        np.testing.assert_array_equal(getattr(again, name), getattr(cohort, name))
        assert not np.allclose(getattr(other, name), getattr(cohort, name)), name
    for k, v in cohort.subjects.as_dict().items():
        np.testing.assert_array_equal(again.subjects.as_dict()[k], v)
        assert not np.allclose(other.subjects.as_dict()[k], v), k


def test_ground_truth_is_simulate_of_stored_excitation(cohort):
    """The stored kinematics and forces are what jaxmsk.simulate gives for the stored
    excitation and the subject's stored parameters (batched vs single run: 1e-6)."""
    i, r = 1, cohort.trial_names.index("fast_1")
    traj = msk.simulate(cohort.subject_model(i), cohort.excitation[i, r], cohort.time,
                        q0=cohort.q[i, r, 0], solver="explicit", rtol=cohort.metadata["rtol"],
                        atol=cohort.metadata["atol"])
    np.testing.assert_allclose(traj.q, cohort.q[i, r], atol=1e-6)
    np.testing.assert_allclose(traj.tendon_force, cohort.tendon_force[i, r], atol=1e-4)
    np.testing.assert_allclose(traj.activation, cohort.activation[i, r], atol=1e-7)


def test_movements_stay_inside_and_span_the_range(cohort):
    checks = cohort.metadata["checks"]
    lo, hi = checks["range_low_rad"][0], checks["range_high_rad"][0]
    assert lo < 0 < hi
    q = cohort.q[..., 0]
    assert q.min() >= lo and q.max() <= hi
    span = q.max(axis=-1) - q.min(axis=-1)  # (subjects, trials)
    assert span.min() > 0.3, span
    speed = np.abs(cohort.qdot[..., 0]).max(axis=-1)
    slow, fast = cohort.trial_names.index("slow_1"), cohort.trial_names.index("fast_1")
    assert np.all(speed[:, fast] > 1.5 * speed[:, slow]), speed
    # Agonists and antagonists alternate: flexor (FCU) and extensor (ECRB) excitation peaks
    # fall at different times in the paced trials.
    for r in (slow, fast):
        e = cohort.excitation[:, r]
        assert np.all(np.argmax(e[:, :, 1], axis=1) != np.argmax(e[:, :, 3], axis=1))


def test_subject_physiology_is_applied(cohort, wrist):
    for i in range(N_SUBJECTS):
        p = cohort.subject_parameters(i)
        m = cohort.subject_model(i)
        np.testing.assert_allclose(m.muscles.params.max_isometric_force,
                                   wrist.muscles.params.max_isometric_force
                                   * p["max_isometric_force_scale"], rtol=1e-14)
        np.testing.assert_allclose(m.skeleton.inertia,
                                   wrist.skeleton.inertia * p["segment_mass_scale"], rtol=1e-14)
        np.testing.assert_allclose(m.activation.tau_act, p["tau_act"], rtol=1e-14)
        q = jnp.array([0.3])
        np.testing.assert_allclose(m.path.moment_arms(q)[:, 0] / wrist.path.moment_arms(q)[:, 0],
                                   p["moment_arm_scale"], rtol=1e-12)
        np.testing.assert_allclose(m.path.length(jnp.zeros(1)) / wrist.path.length(jnp.zeros(1)),
                                   p["size_scale"], rtol=1e-12)
        assert 0.010 <= p["tau_act"] <= 0.020 and 0.020 <= p["delay"] <= 0.080
    strength = np.log(cohort.subjects.max_isometric_force_scale)
    assert np.all(np.abs(strength) <= 2 * (0.15 + 0.10) + 1e-12)
    assert np.ptp(strength) > 0.05  # subjects differ


def test_envelope_tracks_excitation(cohort, processed):
    """Processed sEMG (band-pass, notch, rectify, 6 Hz envelope, MVC-normalised), shifted by
    the subject's electromechanical delay, against the true excitation: per subject and
    channel over all trials. Crosstalk lowers r for muscles that barely modulate."""
    rs = []
    for i, s in enumerate(processed.subjects):
        trials = processed.subject(s).trials
        d = float(cohort.subjects.delay[i])
        env = np.concatenate([np.asarray(msk.data.delay(t.emg, t.fs_emg, d)) for t in trials])
        exc = np.concatenate([t.extra["excitation"] for t in trials])
        rs += [np.corrcoef(env[:, j], exc[:, j])[0, 1] for j in range(5)]
        # MVC-normalised envelope is on the excitation's scale.
        ratio = env.mean(axis=0) / exc.mean(axis=0)
        assert np.all((ratio > 0.6) & (ratio < 1.8)), ratio
    assert np.median(rs) > 0.9 and min(rs) > 0.75, np.round(rs, 3)


def test_semg_spectrum_is_realistic():
    fs = 2000.0
    drive = jnp.full((40000, 2), 0.5)
    raw = np.asarray(msk.cohort.synthetic_semg(jax.random.key(3), drive, fs, gain=[0.5, 1.0]))
    f, p = scipy.signal.welch(raw, fs, nperseg=1024, axis=0)
    cum = np.cumsum(p, axis=0) / p.sum(axis=0)
    median = f[np.argmax(cum >= 0.5, axis=0)]
    assert np.all((median > 70) & (median < 120)), median  # sEMG median frequency 50–150 Hz
    inband = p[(f >= 20) & (f <= 450)].sum(axis=0) / p.sum(axis=0)
    assert np.all(inband > 0.97), inband
    np.testing.assert_allclose(raw.std(axis=0), [0.25, 0.5], rtol=0.02)  # gain × drive RMS
    hum = np.asarray(msk.cohort.synthetic_semg(jax.random.key(3), drive, fs, gain=[0.5, 1.0],
                                             powerline=0.2))
    line = hum - raw  # same key: the same EMG, so the difference is the interference alone
    np.testing.assert_allclose(line.std(axis=0), 0.2 * np.sqrt((1 + 0.3**2) / 2), rtol=1e-3)
    spectrum = np.abs(np.fft.rfft(line[:, 0]))
    freqs = np.fft.rfftfreq(len(line), 1 / fs)
    assert set(freqs[np.argsort(spectrum)[-2:]]) == {50.0, 150.0}


def test_crosstalk_mixes_neighbours():
    c = np.asarray(msk.cohort.neighbour_crosstalk(jnp.array([0.1, 0.2])))
    np.testing.assert_array_equal(c, [[1, 0.1, 0], [0.1, 1, 0.2], [0, 0.2, 1]])
    drive = jnp.zeros((20000, 3)).at[:, 1].set(1.0)  # only the middle muscle active
    raw = np.asarray(msk.cohort.synthetic_semg(jax.random.key(0), drive, 2000.0, crosstalk=c))
    np.testing.assert_allclose(raw.std(axis=0), [0.1, 1.0, 0.2], rtol=0.02)


def test_synthetic_cohort_errors(wrist):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="positive integer"):
        synthetic_cohort(wrist, 0, key)
    with pytest.raises(ValueError, match="choose from"):
        synthetic_cohort(wrist, 1, key, protocols=("jog",))
    with pytest.raises(ValueError, match="too slow for raw sEMG"):
        synthetic_cohort(wrist, 1, key, fs_emg=500.0)
    with pytest.raises(ValueError, match=r"\(n_dofs, 2\)"):
        synthetic_cohort(wrist, 1, key, ranges=[[-1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="low <= high"):
        msk.cohort.CohortDistributions(delay_s=(0.1, 0.01))


# -- datasets ---------------------------------------------------------------------------------

def test_windows_align_labels(processed):
    w = processed.windows(width=25, stride=10)
    t0 = processed.trials[0]
    n0 = (t0.n_samples - 25) // 10 + 1
    assert w.emg.shape[1:] == (25, 5) and w.q.shape[1:] == (1,) and w.forces.shape[1:] == (5,)
    assert len(w) == n0 * len(processed)
    k = 3
    np.testing.assert_array_equal(w.emg[k], t0.emg[k * 10:k * 10 + 25])
    np.testing.assert_array_equal(w.q[k], t0.q[k * 10 + 24])
    np.testing.assert_array_equal(w.forces[k], t0.forces[k * 10 + 24])
    assert set(np.unique(w.subject)) == {0, 1, 2}
    with pytest.raises(ValueError, match="process"):
        Dataset(processed.trials[:0] + (dataclasses.replace(t0, processed=False),)).windows(5)


def test_splits_are_deterministic_disjoint_and_complete(processed):
    folds = list(processed.folds())
    assert [f[0] for f in folds] == ["S01", "S02", "S03"]
    for s, train, test in folds:
        assert set(test.subjects) == {s} and s not in train.subjects
        assert len(train) + len(test) == len(processed)
    key = jax.random.key(5)
    a_train, a_test = processed.split_trials(key, 0.25)
    b_train, b_test = processed.split_trials(key, 0.25)
    assert [t.name for t in a_test.trials] == [t.name for t in b_test.trials]
    names = lambda d: {(t.subject, t.name) for t in d.trials}  # noqa: E731
    assert not names(a_train) & names(a_test)
    assert names(a_train) | names(a_test) == names(processed)
    assert all(len(a_test.subject(s)) == 1 for s in processed.subjects)
    others = {tuple(t.name for t in processed.split_trials(jax.random.key(k), 0.25)[1].trials)
              for k in range(6)}
    assert len(others) > 1  # the key matters
    one, rest = processed.share(key, trials=1)
    assert all(len(one.subject(s)) == 1 for s in processed.subjects)
    assert not names(one) & names(rest)
    first, later = processed.share(key, fraction=0.2)
    t, u = first.trials[0], later.trials[0]
    assert t.n_samples + u.n_samples == processed.trials[0].n_samples
    np.testing.assert_array_equal(np.concatenate([t.q, u.q]), processed.trials[0].q)
    with pytest.raises(ValueError, match="exactly one"):
        processed.share(key)
    with pytest.raises(ValueError, match="no subject"):
        processed.subject("S99")


def test_trial_rejects_bad_input(processed):
    t = processed.trials[0]
    with pytest.raises(ValueError, match="NaN"):
        dataclasses.replace(t, q=np.full_like(t.q, np.nan))
    with pytest.raises(ValueError, match="labels"):
        dataclasses.replace(t, emg_labels=("a",))


# -- scale_parameters ---------------------------------------------------------------------------

def test_scale_parameters(wrist):
    s = jnp.array([1.1, 0.9, 1.0, 1.2, 0.8])
    m = msk.scale_parameters(wrist, max_isometric_force=s, tendon_slack_length=1.01)
    np.testing.assert_allclose(m.muscles.params.max_isometric_force,
                               wrist.muscles.params.max_isometric_force * s, rtol=1e-15)
    np.testing.assert_allclose(m.muscles.params.tendon_slack_length,
                               wrist.muscles.params.tendon_slack_length * 1.01, rtol=1e-15)
    np.testing.assert_array_equal(m.muscles.params.optimal_fiber_length,
                                  wrist.muscles.params.optimal_fiber_length)

    def force(scale):
        mm = msk.scale_parameters(wrist, max_isometric_force=scale)
        return mm.initial_state(jnp.array([0.2]), None, 0.5).norm_tendon_force @ \
            mm.muscles.params.max_isometric_force

    g = jax.grad(force)(s)
    eps = 1e-6
    fd = [(force(s.at[j].add(eps)) - force(s.at[j].add(-eps))) / (2 * eps) for j in range(5)]
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    batched = jax.vmap(lambda x: msk.scale_parameters(wrist, max_isometric_force=x)
                       .muscles.params.max_isometric_force)(jnp.stack([s, 2 * s]))
    assert batched.shape == (2, 5)
    with pytest.raises(ValueError, match="unknown parameter"):
        msk.scale_parameters(wrist, strength=s)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        msk.scale_parameters(wrist, max_isometric_force=jnp.ones(3))
    with pytest.raises(ValueError, match="max_isometric_force"):
        msk.scale_parameters(wrist, max_isometric_force=-s)


# -- the `jaxmsk cohort` command -------------------------------------------------------------

def test_cohort_command_writes_cohort_recordings_and_plots(cohort, tmp_path):
    """Same model, size and seed as the fixture: the saved cohort is the fixture's, bit for
    bit, and the exported recordings load back as the same trials."""
    from jaxmsk.cli import main

    out = tmp_path / "c"
    args = ["cohort", "--out", str(out), "--subjects", str(N_SUBJECTS), "--repetitions", "1",
            "--duration", str(DURATION), "--seed", "0"]
    assert main(args) == 0
    saved = msk.io.load_cohort(out / "cohort")
    for name in ("q", "tendon_force", "emg", "mvc_emg", "excitation"):
        np.testing.assert_array_equal(getattr(saved, name), getattr(cohort, name))
    rec = msk.io.load_recordings(out / "recordings")
    assert rec.subjects == cohort.subject_ids and len(rec) == N_SUBJECTS * cohort.n_trials
    t = rec.subject("S02").select(["fast_1"]).trials[0]
    r = cohort.trial_names.index("fast_1")
    np.testing.assert_array_equal(t.q, cohort.q[1, r])
    np.testing.assert_array_equal(t.emg, cohort.emg[1, r])
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == sorted([f"S01_{n}.png" for n in cohort.trial_names] + ["subject_parameters.png"])
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    summary = (out / "summary.md").read_text()
    assert "True subject parameters" in summary and "max_isometric_force_scale [FCU]" in summary
    before = (out / "summary.md").stat().st_mtime_ns
    assert main(args) == 2  # a non-empty --out is never overwritten without --overwrite
    assert (out / "summary.md").stat().st_mtime_ns == before
