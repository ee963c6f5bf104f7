"""Training and personalisation: segments, losses, head-only fine-tuning with personalised
physics, resumption from checkpoints, metrics, and one leave-one-subject-out fold with every
baseline (tiny budgets: this checks the machinery, experiments/ measures the method)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import small_cnn

import jaxmsk as msk
from jaxmsk._learn.train import (
    LossWeights,
    Predictor,
    SubjectAdjustment,
    fit,
    losses,
    make_segments,
    metrics,
)
from jaxmsk._learn.transfer import TransferConfig, run_fold

# One xdist worker runs these and the demo test: they share the session's small cohort and
# the compiled train steps (the cohort tests run on another worker, group "cohort").
pytestmark = pytest.mark.xdist_group("transfer")




@pytest.fixture(scope="module")
def segments(processed):
    return make_segments(processed, 7, length=16)


def test_segments_align_inputs_and_labels(processed, segments):
    t = processed.trials[0]
    assert segments.emg.shape[1:] == (7 + 16 - 1, 5) and segments.q.shape[1:] == (16, 1)
    np.testing.assert_array_equal(segments.emg[1], t.emg[16:38])
    np.testing.assert_array_equal(segments.q[1], t.q[16 + 6:38])
    np.testing.assert_array_equal(segments.forces[1], t.forces[16 + 6:38])
    per_trial = (t.n_samples - 22) // 16 + 1
    assert len(segments) == per_trial * len(processed)
    with pytest.raises(ValueError, match="long enough"):
        make_segments(processed, 7, length=10_000)


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(200, 3))
    pred = true + 0.3 * rng.normal(size=(200, 3))
    m = metrics(pred, true)
    np.testing.assert_allclose(m["rmse"], np.sqrt(((pred - true) ** 2).mean(0)))
    np.testing.assert_allclose(m["nrmse"], m["rmse"] / np.ptp(true, 0))
    np.testing.assert_allclose(m["r2"], 1 - ((pred - true) ** 2).sum(0)
                               / ((true - true.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(m["pearson_r"], [np.corrcoef(pred[:, j], true[:, j])[0, 1]
                                                for j in range(3)])


def test_subject_adjustment(small_cohort):
    wrist = small_cohort.model
    adj = SubjectAdjustment(jnp.log(jnp.array([1.2, 1.0, 0.8, 1.0, 1.1])), jnp.log(1.5),
                            jnp.log(2.0), jnp.zeros(()))
    m = adj.apply(wrist)
    np.testing.assert_allclose(m.muscles.params.max_isometric_force,
                               wrist.muscles.params.max_isometric_force
                               * np.array([1.2, 1.0, 0.8, 1.0, 1.1]), rtol=1e-12)
    np.testing.assert_allclose(m.skeleton.inertia, 1.5 * wrist.skeleton.inertia, rtol=1e-12)
    np.testing.assert_allclose(m.passive[1].damping, 2.0 * wrist.passive[1].damping, rtol=1e-12)
    assert float(adj.delay) == pytest.approx(0.05)
    same = SubjectAdjustment.identity(5).apply(wrist)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(wrist)):
        np.testing.assert_array_equal(a, b)


def test_physics_terms_are_small_on_the_truth(small_cohort, segments):
    """A 'predictor' that returns the labels: the data loss is 0, and the physics terms are
    the discretisation and sEMG-activation errors of the truth, far below those of the
    labels of another muscle order."""
    class Truth(eqx.Module):
        emg: jax.Array
        labels: jax.Array
        std: jax.Array
        n_dofs: int = eqx.field(static=True)

        def __call__(self, emg):  # look the segment up by its sEMG
            y = self.labels[jnp.argmin(jnp.sum((self.emg - emg) ** 2, axis=(1, 2)))]
            return y[:, :1], y[:, 1:]

    n = 8
    emg = jnp.asarray(segments.emg[:n])
    q, f = jnp.asarray(segments.q[:n]), jnp.asarray(segments.forces[:n])
    labels = jnp.concatenate([q, f], -1)
    pred = Truth(emg, labels, jnp.ones(6), 1)
    assert len(set(segments.subject[:n].tolist())) == 1
    model = small_cohort.subject_model(int(segments.subject[0]))  # the labels' own subject
    data, eom, cons = losses(pred, SubjectAdjustment.identity(5), model, emg, q, f, 0.01)
    assert float(jnp.max(data)) == 0.0
    shuffled = Truth(emg, labels[:, :, jnp.array([0, 2, 1, 4, 5, 3])], jnp.ones(6), 1)
    _, eom_bad, cons_bad = losses(shuffled, SubjectAdjustment.identity(5), model, emg, q, f, 0.01)
    assert float(jnp.mean(eom)) < 1e-2 * float(jnp.mean(eom_bad))
    assert float(jnp.mean(cons)) < 0.5 * float(jnp.mean(cons_bad))
    # Activations computed once ahead (generic training: the adjustment is not trained) give
    # the losses computed in the step, for a non-identity adjustment (delay and strengths).
    from jaxmsk._learn.train import cached_activation

    adj = SubjectAdjustment(jnp.log(jnp.array([1.2, 1.0, 0.8, 1.0, 1.1])), jnp.zeros(()),
                            jnp.zeros(()), jnp.log(1.6))
    act = cached_activation(adj, model, np.asarray(emg), 0.01, q.shape[1], chunk=3)
    assert act.shape == (n, q.shape[1], 5)
    inline = losses(shuffled, adj, model, emg, q, f, 0.01)
    cached = losses(shuffled, adj, model, emg, q, f, 0.01, activation=jnp.asarray(act))
    for a, b in zip(inline, cached):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_head_only_fit_with_personal_physics_and_resume(processed, small_cohort, tmp_path):
    seg = make_segments(processed, 7, length=16)
    train, val = seg.take(np.arange(0, len(seg), 2)), seg.take(np.arange(1, len(seg), 2))
    net = small_cnn(5, 6, jax.random.key(0, impl="rbg"))
    start = Predictor.create(net, train)
    kwargs = dict(key=jax.random.key(1), trainable="head", train_physical=True, steps=40,
                  batch_size=8, eval_every=10, patience=100, learning_rate=1e-2)
    wrist = small_cohort.model
    full = fit(start, SubjectAdjustment.identity(5), wrist, train, val,
               checkpoint=tmp_path / "a.eqx", **kwargs)
    hist = full.history
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] * 1.001 or full.best_step > 10
    assert min(h["val_loss"] for h in hist) < hist[0]["val_loss"]
    for a, b in zip(jax.tree.leaves(full.predictor.net.features), jax.tree.leaves(net.features)):
        np.testing.assert_array_equal(a, b)  # the feature extractor is inherited frozen
    assert float(jnp.max(jnp.abs(full.adjustment.log_strength))) > 0  # physics personalised
    # Interrupted after 20 steps (an exception from the progress callback), then resumed: the
    # same result as the uninterrupted run.
    def interrupt(line):
        if "step    20/" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(start, SubjectAdjustment.identity(5), wrist, train, val,
            checkpoint=tmp_path / "b.eqx", progress=interrupt, **kwargs)
    lines = []
    resumed = fit(start, SubjectAdjustment.identity(5), wrist, train, val,
                  checkpoint=tmp_path / "b.eqx", progress=lines.append, **kwargs)
    assert any("resumed" in s and "step 20" in s for s in lines)
    for a, b in zip(jax.tree.leaves(resumed.predictor), jax.tree.leaves(full.predictor)):
        np.testing.assert_array_equal(a, b)
    assert resumed.best_step == full.best_step


def test_bad_arguments(processed, segments, small_cohort):
    net = small_cnn(5, 6, jax.random.key(0, impl="rbg"))
    with pytest.raises(ValueError, match="'all' or 'head'"):
        fit(Predictor.create(net, segments), SubjectAdjustment.identity(5), small_cohort.model,
            segments, segments, key=jax.random.key(0), trainable="features", steps=1)
    with pytest.raises(ValueError, match="unknown methods"):
        run_fold(processed, "S01", small_cohort.model, TransferConfig(), jax.random.key(0),
                 methods=("magic",))
    assert LossWeights(0.0, 0.0, 0.0).physics is False


def test_split_in_time_keeps_labels_apart_and_uses_history(processed):
    import dataclasses

    from jaxmsk._learn.transfer import split_in_time

    share, _ = processed.share(None, fraction=0.3)
    # Label every sample by (trial, index) so that the split can be checked exactly.
    share = type(share)(tuple(
        dataclasses.replace(t, q=np.full((t.n_samples, 1), 1000.0 * k)
                            + np.arange(t.n_samples)[:, None],
                            emg=np.full_like(t.emg, 1000.0 * k) + np.arange(t.n_samples)[:, None])
        for k, t in enumerate(share.trials)))
    config = TransferConfig(segment_length=16, validation_fraction=0.25)
    train, val = split_in_time(share, 7, config)
    for k, t in enumerate(share.trials):
        n, s = t.n_samples, int(round(0.75 * t.n_samples))
        tl = {int(x) - 1000 * k for x in train.q.ravel() if 1000 * k <= x < 1000 * (k + 1)}
        vl = {int(x) - 1000 * k for x in val.q.ravel() if 1000 * k <= x < 1000 * (k + 1)}
        assert vl == set(range(s, n))  # every held-out sample is a validation label
        assert tl and max(tl) < s and min(tl) >= 6  # training labels only before the split
    # Each validation window ends on its label and reaches 6 samples (the history) back.
    np.testing.assert_array_equal(val.emg[:, 6:, 0], val.q[:, :, 0])
    np.testing.assert_array_equal(val.emg[:, 0, 0], val.q[:, 0, 0] - 6)


def test_physical_learning_rate_applies_to_the_adjustment_only():
    from jaxmsk._learn.train import make_optimizer

    params = ({"w": jnp.zeros(3)}, {"log_strength": jnp.zeros(2)})
    grads = ({"w": jnp.ones(3)}, {"log_strength": jnp.ones(2)})
    opt = make_optimizer(1e-3, 100, 1e-2)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates[0]["w"], -1e-3, rtol=1e-3)
    np.testing.assert_allclose(updates[1]["log_strength"], -1e-2, rtol=1e-3)
    # Frozen adjustment (None leaves, as eqx.partition leaves them) is accepted.
    frozen = ({"w": jnp.zeros(3)}, {"log_strength": None})
    u, _ = opt.update(({"w": jnp.ones(3)}, {"log_strength": None}), opt.init(frozen), frozen)
    np.testing.assert_allclose(u[0]["w"], -1e-3, rtol=1e-3)


def test_share_start_drops_the_fade_in_from_share_and_test(processed):
    from jaxmsk._learn.transfer import drop_start

    cut = drop_start(processed, 1.0)
    for a, b in zip(processed.trials, cut.trials):
        k = int(round(a.fs))
        assert b.name == a.name and b.n_samples == a.n_samples - k
        np.testing.assert_array_equal(b.q, a.q[k:])
        np.testing.assert_array_equal(b.emg, a.emg[k:])
    with pytest.raises(ValueError, match="leaves nothing"):
        drop_start(processed, 1e3)
    with pytest.raises(ValueError, match=">= 0"):
        drop_start(processed, -1.0)


def test_personalising_without_force_labels_never_reads_them(processed, small_cohort):
    """`force_labels=False` (a subject whose muscle forces were never estimated): the share's
    forces reach no method's loss or standardisation, so placeholder zeros give the same fit
    as the true labels (which the data loss would otherwise see)."""
    import dataclasses

    from jaxmsk._learn.transfer import from_scratch, personalise

    share, _ = processed.share(None, fraction=0.5)
    blank = type(share)(tuple(dataclasses.replace(t, forces=np.zeros_like(t.forces))
                              for t in share.trials))
    config = TransferConfig(network=small_cnn, segment_length=16, personal_steps=6,
                            batch_size=4, eval_every=3, patience=10)
    wrist = small_cohort.model
    seg = make_segments(processed, 7, length=16)
    generic = Predictor.create(small_cnn(5, 6, jax.random.key(0, impl="rbg")), seg)
    # The labels do differ where the data loss reads them.
    with_labels = losses(generic, SubjectAdjustment.identity(5), wrist, seg.emg[:4], seg.q[:4],
                         seg.forces[:4], 0.01)[0]
    without = losses(generic, SubjectAdjustment.identity(5), wrist, seg.emg[:4], seg.q[:4],
                     np.zeros_like(seg.forces[:4]), 0.01)[0]
    assert not np.allclose(with_labels, without)
    runs = {  # personalised physics (head + SubjectAdjustment), and a new data-only network
        "pi_transfer": lambda s: personalise(generic, s, wrist, config, jax.random.key(2),
                                             force_labels=False).predictor,
        "target_only": lambda s: from_scratch(s, wrist, config, jax.random.key(3),
                                              physics=False, force_labels=False).predictor,
    }
    for name, run in runs.items():
        a, b = run(share), run(blank)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(x, y, err_msg=name)
    # Without labels a new network's forces are standardised by the model's F_max.
    fmax = np.asarray(wrist.muscles.params.max_isometric_force)
    np.testing.assert_allclose(b.std[1:], 0.1 * fmax)
    np.testing.assert_array_equal(b.mean[1:], 0.0)


def test_calibrated_msk_given_the_truth_predicts_the_truth(processed, small_cohort):
    """calibrated_msk's open-loop evaluation: with the subject's true model and the true
    excitations in place of the sEMG, the second halves of its trials (started mid-motion
    from the recorded angle and the estimated velocity) are reproduced: RMS angle error below
    0.015 rad (6e-3 measured; the muscles' hidden states at the cut start from equilibrium:
    with the true velocity one of these halves is 0.014 rad off, the other 7e-4), R² > 0.99,
    tendon forces within 5 % of their range."""
    import dataclasses

    from jaxmsk import EMGExcitation
    from jaxmsk._learn.calibrated import CalibratedMSK, evaluate_calibrated
    from jaxmsk.data import Dataset

    c = small_cohort
    trials = []
    for j in (0, 2):
        t = next(t for t in processed.trials if t.subject == c.subject_ids[0]
                 and t.name == c.trial_names[j])
        trials.append(dataclasses.replace(t, emg=np.asarray(c.excitation[0, j, :t.n_samples])))
    _, rest = Dataset(tuple(trials)).share(None, fraction=0.5)
    cal = CalibratedMSK(c.subject_model(0), EMGExcitation(minimum=0.0))
    r = evaluate_calibrated(cal, rest, c.model)
    assert r["angle_rmse"] < 0.015, r["angle_rmse"]
    span = np.ptp(np.concatenate([t.forces for t in rest.trials]), axis=0)
    assert np.all(np.asarray(r["force"]["rmse"]) < 0.05 * span), (r["force"]["rmse"], span)
    assert r["angle_r2"] > 0.99 and set(r["by_motion"]) == {
        msk._learn.train.motion_type(n) for n in (c.trial_names[0], c.trial_names[2])}


def test_calibrated_msk_is_a_method(processed, small_cohort):
    """compare_methods runs calibrated_msk (identify on the share's sEMG and angles, no force
    label read) and reports its metrics, by motion type, its calibration's convergence and
    its F_max scales; one LM step cannot converge, and says so."""
    from jaxmsk._learn.transfer import compare_methods

    subject = processed.subjects[0]
    data = type(processed)(tuple(t for t in processed.trials if t.subject == subject)[:2])
    share, test = data.share(None, fraction=0.2)
    config = TransferConfig(network=small_cnn, segment_length=16, calibration_steps=1)
    with pytest.warns(msk.IdentificationWarning):
        out = compare_methods(None, share, test, small_cohort.model, config, jax.random.key(0),
                              methods=("calibrated_msk",))
    r = out["methods"]["calibrated_msk"]
    assert np.isfinite(r["angle_rmse"]) and np.isfinite(r["force_rmse"])
    assert r["calibration"]["stalled"] and not r["calibration"]["converged"]
    assert len(out["strength_scales"]["calibrated_msk"]) == 5
    assert set(r["by_motion"]) == {msk._learn.train.motion_type(t.name) for t in test.trials}


def test_calibrated_msk_says_when_a_simulation_failed(processed, small_cohort):
    """A failed open-loop run (non-finite states, as diffrax leaves a stopped solve) warns
    and is named in "simulation_failed"; its samples are never NaN in the metrics."""
    import types

    from jaxmsk import EMGExcitation
    from jaxmsk._learn.calibrated import CalibratedMSK, evaluate_calibrated
    from jaxmsk.data import Dataset

    class Broken(CalibratedMSK):
        def simulate(self, emg, ts, q0, qdot0):
            n = len(ts)
            return types.SimpleNamespace(q=np.full((n, 1), np.inf),
                                         tendon_force=np.full((n, 5), np.nan))

    trial = processed.trials[0]
    with pytest.warns(RuntimeWarning, match="failed"):
        r = evaluate_calibrated(Broken(small_cohort.model, EMGExcitation()),
                                Dataset((trial,)), small_cohort.model)
    assert r["simulation_failed"] == [trial.name]
    assert np.isfinite(r["angle_rmse"]) and np.isfinite(r["force_rmse"])
