"""Physics-informed transfer learning (Zhang et al., IEEE TIM 2022) and its baselines on one
leave-one-subject-out fold.

`personalise` is the method: inherit the generic network's feature extractor frozen,
fine-tune its head together with the subject's physical parameters (`SubjectAdjustment`,
regularised toward the generic model) on a small share of the subject's data, with the data
loss plus the subject's equation-of-motion residual.

`run_fold` trains the generic network on the source subjects and compares, on the held-out
subject's remaining data and with the same budget:
- `pi_transfer`: `personalise` (head + physical parameters, data + physics);
- `generic`: the generic network, no adaptation;
- `target_only`: a new network trained on the target's share, data only;
- `transfer_no_physics`: head fine-tuned on the share, data only;
- `pi_no_transfer`: a new network on the share, data + physics (+ physical parameters);
- `full_finetune`: every layer fine-tuned on the share, data + physics (+ physical parameters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from ._model import Model
from ._train import (LossWeights, Predictor, Segments, SubjectAdjustment, evaluate, fit,
                     make_segments)
from .data._dataset import Dataset

METHODS = ("pi_transfer", "generic", "target_only", "transfer_no_physics", "pi_no_transfer",
           "full_finetune")


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Budgets and weights. `network(n_inputs, n_outputs, key)` builds a fresh network
    (default: the paper's CNN, `jaxmsk.nn.CNN`)."""

    network: Callable | None = None
    segment_length: int = 64
    generic_steps: int = 1500
    personal_steps: int = 400
    batch_size: int = 32
    generic_learning_rate: float = 3e-3
    personal_learning_rate: float = 1e-3
    weights: LossWeights = LossWeights()
    eval_every: int = 50
    patience: int = 6
    validation_fraction: float = 0.2

    def make_network(self, n_inputs: int, n_outputs: int, key):
        if self.network is not None:
            return self.network(n_inputs, n_outputs, key)
        from .nn import CNN
        return CNN(n_inputs, n_outputs, key=key)


def _split_in_time(share: Dataset, receptive_field: int, config: TransferConfig
                   ) -> tuple[Segments, Segments]:
    """Train on the first (1 − validation_fraction) of every trial of a subject's share and
    validate on the rest: segments never overlap across the split, so early stopping sees
    unseen data (random segments of one trial would leak into validation)."""
    first, last = share.share(None, fraction=1.0 - config.validation_fraction)
    parts = []
    for part in (first, last):
        shortest = min(t.n_samples for t in part.trials)
        length = min(config.segment_length, shortest - receptive_field + 1)
        if length < 3:
            raise ValueError(
                f"the subject's share is too short: {shortest} samples in its smallest "
                f"{'training' if part is first else 'validation'} part, but the network needs "
                f"{receptive_field} + 2; give a larger share or a smaller validation_fraction.")
        parts.append(make_segments(part, receptive_field, length,
                                   stride=max(1, length // 4)))
    return parts[0], parts[1]


def _split_segments(seg: Segments, fraction: float, key) -> tuple[Segments, Segments]:
    n = len(seg)
    order = np.asarray(jax.random.permutation(key, n))
    n_val = max(1, int(round(fraction * n)))
    return seg.take(order[n_val:]), seg.take(order[:n_val])


def _weights(config: TransferConfig, physics: bool, regularise: bool = True) -> LossWeights:
    w = config.weights
    if not physics:
        return LossWeights(0.0, 0.0, 0.0)
    return w if regularise else dataclasses.replace(w, regularisation=0.0)


def train_generic(source: Dataset, model: Model, config: TransferConfig, key, *,
                  physics: bool = True, progress=None, checkpoint=None):
    """The generic network: all layers, data + λ·physics under the generic model, on the
    source subjects' trials (segments split at random into train and validation)."""
    k_net, k_split, k_fit = jax.random.split(key, 3)
    n_in = len(source.trials[0].emg_labels)
    n_out = source.trials[0].q.shape[1] + source.trials[0].forces.shape[1]
    net = config.make_network(n_in, n_out, k_net)
    seg = make_segments(source, net.receptive_field, config.segment_length)
    train, val = _split_segments(seg, config.validation_fraction, k_split)
    return fit(Predictor.create(net, train), SubjectAdjustment.identity(model.n_muscles), model,
               train, val, key=k_fit, trainable="all",
               weights=_weights(config, physics, regularise=False),
               steps=config.generic_steps, batch_size=config.batch_size,
               learning_rate=config.generic_learning_rate, eval_every=config.eval_every,
               patience=config.patience, progress=progress, label="generic: ",
               checkpoint=checkpoint)


def personalise(generic: Predictor, share: Dataset, model: Model, config: TransferConfig, key,
                *, trainable: str = "head", physics: bool = True, physical: bool = True,
                progress=None, label: str = "pi_transfer: "):
    """Fine-tune `generic` on a subject's small `share` (see the module docstring).
    Validation: the last `validation_fraction` of each of the share's trials."""
    train, val = _split_in_time(share, generic.net.receptive_field, config)
    return fit(generic, SubjectAdjustment.identity(model.n_muscles), model, train, val,
               key=key, trainable=trainable, train_physical=physical and physics,
               weights=_weights(config, physics),
               steps=config.personal_steps, batch_size=config.batch_size,
               learning_rate=config.personal_learning_rate, eval_every=config.eval_every,
               patience=config.patience, progress=progress, label=label)


def from_scratch(share: Dataset, model: Model, config: TransferConfig, key, *, physics: bool,
                 progress=None, label: str = ""):
    """A new network trained on the subject's share only (target_only / pi_no_transfer)."""
    k_net, k_fit = jax.random.split(key)
    t = share.trials[0]
    net = config.make_network(len(t.emg_labels), t.q.shape[1] + t.forces.shape[1], k_net)
    train, val = _split_in_time(share, net.receptive_field, config)
    return fit(Predictor.create(net, train), SubjectAdjustment.identity(model.n_muscles), model,
               train, val, key=k_fit, trainable="all", train_physical=physics,
               weights=_weights(config, physics),
               steps=config.personal_steps, batch_size=config.batch_size,
               learning_rate=config.personal_learning_rate, eval_every=config.eval_every,
               patience=config.patience, progress=progress, label=label)


def run_fold(dataset: Dataset, target: str, model: Model, config: TransferConfig, key, *,
             share_fraction: float | None = 0.2, share_trials: int | None = None,
             methods=METHODS, progress=None, generic=None) -> dict:
    """One leave-one-subject-out fold: train the generic network on every other subject
    (or take `generic`), give each method a small share of `target` — the first
    `share_fraction` of every trial (default 20 %), or `share_trials` whole trials — and
    evaluate on the rest of the target's data. Returns {"methods": {name: metrics}, "strength_scales":
    exp(log_strength) of the physics-informed personalisations, ...}."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}.")
    say = progress or (lambda s: None)
    k_gen, k_share, k_methods = jax.random.split(key, 3)
    source, target_data = dataset.leave_one_subject_out(target)
    if share_trials is not None:
        share, test = target_data.share(k_share, trials=share_trials)
    else:
        share, test = target_data.share(k_share, fraction=share_fraction)
    if generic is None:
        generic = train_generic(source, model, config, k_gen, progress=say).predictor
    results, extra, predictors = {}, {}, {}
    keys = dict(zip(METHODS, jax.random.split(k_methods, len(METHODS))))
    for name in methods:
        label = f"{target} {name}: "
        adjustment = None
        if name == "generic":
            pred = generic
        elif name == "pi_transfer":
            r = personalise(generic, share, model, config, keys[name], progress=say, label=label)
            pred, adjustment = r.predictor, r.adjustment
        elif name == "transfer_no_physics":
            pred = personalise(generic, share, model, config, keys[name], physics=False,
                               progress=say, label=label).predictor
        elif name == "full_finetune":
            r = personalise(generic, share, model, config, keys[name], trainable="all",
                            progress=say, label=label)
            pred, adjustment = r.predictor, r.adjustment
        elif name == "target_only":
            pred = from_scratch(share, model, config, keys[name], physics=False, progress=say,
                                label=label).predictor
        else:  # pi_no_transfer
            r = from_scratch(share, model, config, keys[name], physics=True, progress=say,
                             label=label)
            pred, adjustment = r.predictor, r.adjustment
        results[name] = evaluate(pred, test, model, adjustment)
        predictors[name] = pred
        if adjustment is not None:
            extra[name] = np.exp(np.asarray(adjustment.log_strength)).tolist()
        say(f"{label}angle RMSE {results[name]['angle_rmse']:.4f} rad, force RMSE "
            f"{results[name]['force_rmse']:.3f} N")
    return {"target": target, "share_trials": [t.name for t in share.trials],
            "test_trials": [t.name for t in test.trials], "methods": results,
            "strength_scales": extra, "generic_predictor": generic, "predictors": predictors,
            "test": test}


__all__ = ["METHODS", "TransferConfig", "train_generic", "personalise", "from_scratch",
           "run_fold"]
