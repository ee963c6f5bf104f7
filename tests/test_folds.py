"""Folds trained together (`jaxmsk._learn.folds`): one vmapped train step gives what sequential
`fit` calls give (same batches, per-fold early stopping, best parameters and history), and
folds that cannot be stacked are refused with the fold and shape named. Tiny networks and a
hand-made processed dataset (no simulation), so compilation dominates the run time."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmsk as msk
from jaxmsk._learn.folds import fit_stacked, miscompilation_canary, train_generic_folds
from jaxmsk._learn.train import LossWeights, Predictor, SubjectAdjustment, fit
from jaxmsk._learn.transfer import TransferConfig, train
from jaxmsk.data import make_segments
from jaxmsk.data._dataset import Dataset, Trial

# The transfer tests' worker: they share the compiled train steps of this network size.
pytestmark = pytest.mark.xdist_group("transfer")

RTOL = 1e-6  # vmapped convolutions and reductions may associate differently (~1e-13 seen)


def small_cnn(n_in, n_out, key):
    return msk.nn.CNN(n_in, n_out, channels=(8, 8), kernel_sizes=(4, 4), head_width=16, key=key)


@pytest.fixture(scope="module")
def wrist():
    return msk.models.wrist()


@pytest.fixture(scope="module")
def toy(wrist):
    """Processed trials at 100 Hz without a simulation: 3 subjects × 2 trials × 3 s of smooth
    sEMG envelopes, forces proportional to them (N), a sinusoidal wrist angle (rad)."""
    rng = np.random.default_rng(0)
    fs, n = 100.0, 300
    t = np.arange(n) / fs
    muscles = wrist.muscle_names
    trials = []
    for s in range(3):
        gain = rng.uniform(20.0, 60.0, 5)
        for k in range(2):
            phase, freq = rng.uniform(0, 2 * np.pi, 5), rng.uniform(0.3, 1.0, 5)
            emg = 0.2 + 0.15 * np.sin(2 * np.pi * freq * t[:, None] + phase)
            q = 0.5 * np.sin(2 * np.pi * 0.4 * t + phase[0])[:, None]
            trials.append(Trial(f"S{s + 1:02d}", f"trial{k}", emg, fs, muscles, "1", True, fs,
                                q, ("flexion",), gain * emg, muscles))
    return Dataset(tuple(trials))


def assert_same_fit(stacked, sequential):
    assert stacked.best_step == sequential.best_step
    assert [h.keys() for h in stacked.history] == [h.keys() for h in sequential.history]
    assert [h["step"] for h in stacked.history] == [h["step"] for h in sequential.history]
    for a, b in zip(stacked.history, sequential.history):
        np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=RTOL)
    for part in ("predictor", "adjustment"):
        mine, theirs = (eqx.filter(getattr(r, part), eqx.is_array) for r in (stacked, sequential))
        assert jax.tree.structure(mine) == jax.tree.structure(theirs)
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs)):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12)


def test_canary_pattern_is_compiled_correctly_where_folds_are_stacked():
    from jaxmsk._learn.folds import CPU_WORKAROUND

    kw = {"compiler_options": CPU_WORKAROUND} if jax.default_backend() == "cpu" else {}
    assert miscompilation_canary(**kw)


def test_fit_stacked_matches_sequential_fit_with_one_fold_stopping_early(toy, wrist):
    """Head-only fine-tuning with personalised physics (the adjustments trained, so the
    electromechanical delay differs per fold) and the physics loss: fold 0
    validates on its training segments (keeps improving), fold 1 on labels of reversed
    sign (stops early)."""
    seg = make_segments(toy, 7, length=16)
    n = len(seg)
    train0, train1 = seg.take(np.arange(0, n, 2)), seg.take(np.arange(1, n, 2))
    bad_val = dataclasses.replace(train1, q=-train1.q, forces=-train1.forces)
    trains, vals = [train0, train1], [train0, bad_val]
    predictors = [Predictor.create(small_cnn(5, 6, jax.random.key(10 + f)), trains[f])
                  for f in range(2)]
    # NumPy-made, so not weakly typed: one compilation serves both sequential fits.
    adjustments = [SubjectAdjustment.identity(5),
                   SubjectAdjustment(jnp.asarray(np.full(5, 0.1)), jnp.zeros(()), jnp.zeros(()),
                                     jnp.asarray(np.array(0.2)))]
    keys = [jax.random.key(20), jax.random.key(21)]
    # The budget of test_transfer's head-only fit: in one worker, `fit`'s compiled step is
    # shared.
    kwargs = dict(trainable="head", train_physical=True, weights=LossWeights(), steps=40,
                  batch_size=8, learning_rate=1e-2, eval_every=5, patience=2)
    sequential = [fit(predictors[f], adjustments[f], wrist, trains[f], vals[f], key=keys[f],
                      **kwargs) for f in range(2)]
    lines = []
    stacked = fit_stacked(predictors, adjustments, wrist, trains, vals, keys=keys,
                          progress=lines.append, label="t: ", **kwargs)
    # The scenario: fold 1 stopped before the end, fold 0 went on to the last step.
    assert sequential[0].history[-1]["step"] == 40
    assert sequential[1].history[-1]["step"] < 40
    for f in range(2):
        assert_same_fit(stacked[f], sequential[f])
        assert stacked[f].train is trains[f] and stacked[f].val is vals[f]
        assert stacked[f].seconds == stacked[0].seconds > 0
    # The frozen features are inherited; the physical parameters moved.
    for a, b in zip(jax.tree.leaves(stacked[1].predictor.net.features),
                    jax.tree.leaves(predictors[1].net.features)):
        np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(stacked[0].adjustment.log_strength))) > 0
    # One progress line per evaluation, naming the fold that stops where it stops.
    assert len(lines) == len(stacked[0].history)
    stop = len(stacked[1].history) - 1
    assert "early stop: fold 1" in lines[stop] and "training 1/2" in lines[stop]
    assert all(s.startswith("t: step") and "val mean" in s for s in lines)


def test_train_generic_folds_matches_train_generic(toy, wrist):
    config = TransferConfig(network=small_cnn, segment_length=16, generic_steps=12,
                            batch_size=8, eval_every=4, patience=2)
    targets = ["S01", "S03"]
    keys = list(jax.random.split(jax.random.key(3), 2))
    together = train_generic_folds(toy, targets, wrist, config, keys, physics=False)
    for target, key, mine in zip(targets, keys, together):
        source, _ = toy.leave_one_subject_out(target)
        alone = train(source, wrist, config, key=key, physics=False)
        np.testing.assert_array_equal(mine.train.emg, alone.train.emg)  # same split
        np.testing.assert_array_equal(mine.val.q, alone.val.q)
        assert_same_fit(mine, alone)
    with pytest.raises(ValueError, match="not a subject"):
        train_generic_folds(toy, ["S09"], wrist, config, keys[:1])
    with pytest.raises(ValueError, match="one key per target"):
        train_generic_folds(toy, targets, wrist, config, keys[:1])


def test_folds_that_cannot_be_stacked_are_refused(toy, wrist):
    seg = make_segments(toy, 7, length=16)
    net = small_cnn(5, 6, jax.random.key(0))
    pred = Predictor.create(net, seg)
    adj = SubjectAdjustment.identity(5)
    keys = [jax.random.key(0), jax.random.key(1)]

    def stack(preds=(pred, pred), trains=(seg, seg), vals=(seg, seg), k=keys):
        fit_stacked(list(preds), [adj] * len(preds), wrist, list(trains), list(vals), keys=k,
                    steps=1)

    with pytest.raises(ValueError, match=r"fold 1: train emg has shape .*another number of "
                                         r"train segments.*use `fit` per fold"):
        stack(trains=(seg, seg.take(np.arange(len(seg) - 1))))
    with pytest.raises(ValueError, match=r"fold 1: validation emg has shape \(\d+, 18, 5\)"
                                         r".*another segment shape"):
        stack(vals=(seg, make_segments(toy, 7, length=12)))
    wide = Predictor.create(msk.nn.CNN(5, 6, channels=(8, 9), kernel_sizes=(4, 4),
                                       head_width=16, key=jax.random.key(0)), seg)
    with pytest.raises(ValueError, match=r"fold 1: .*structure.*\[0\]\.net\.features\.layers"
                                         r"\[1\]\.out_channels = 9 \(fold 0: 8\)"):
        stack(preds=(pred, wide))
    relu = Predictor.create(msk.nn.CNN(5, 6, channels=(8, 8), kernel_sizes=(4, 4),
                                       head_width=16, activation=jax.nn.relu,
                                       key=jax.random.key(0)), seg)
    with pytest.raises(ValueError, match=r"fold 1: .*\[0\]\.net\.features\.activation"):
        stack(preds=(pred, relu))
    with pytest.raises(ValueError, match="2 predictors but 1 keys"):
        stack(k=keys[:1])
