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

from .._model import Model
from ..data._dataset import Dataset
from ..data._segments import Segments, make_segments
from .train import (
    FitResult,
    LossWeights,
    Predictor,
    SubjectAdjustment,
    evaluate,
    evaluate_by_motion,
    fit,
)

# Without force labels a new network's force outputs are standardised by mean 0 and this
# fraction of F_max (the wrist cohort's forces have sd 0.03–0.1 F_max).
UNLABELLED_FORCE_SD = 0.1

# The network methods, run by default (`run_fold`, `compare_methods`, `jaxmsk demo`).
DEFAULT_METHODS = ("pi_transfer", "generic", "target_only", "transfer_no_physics",
                   "pi_no_transfer", "full_finetune")
# Every method: also "calibrated_msk", the EMG-driven model calibrated by `identify` on the
# share and simulated open loop (`_learn/calibrated.py`; minutes per subject on a CPU), and
# "pi_hybrid", that model driven by network-corrected excitations fitted through the
# simulator (`_learn/hybrid.py`).
METHODS = (*DEFAULT_METHODS, "calibrated_msk", "pi_hybrid")
# The methods whose predictor is the subject's simulated model (no network output).
MODEL_METHODS = ("calibrated_msk", "pi_hybrid")


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Budgets and weights of `train`, `personalise` and the baselines.

    Attributes:
        network: `network(n_inputs, n_outputs, key)` builds a fresh `jaxmsk.nn`
            EMGRegressor (default: the paper's CNN, `jaxmsk.nn.CNN`); n_inputs = sEMG
            channels, n_outputs = DoFs + muscles.
        segment_length: predictions per training segment (samples; the physics residual
            differentiates along them).
        generic_steps, personal_steps: optimiser steps of `train` and of `personalise` (and
            the baselines trained on a subject's share).
        batch_size: segments per step.
        generic_learning_rate, personal_learning_rate: Adam's initial rates (cosine decay).
        physical_learning_rate: Adam's initial rate for the subject's physical log-scales
            (`SubjectAdjustment`). Adam moves a parameter by about its rate per step, so
            at the network's 1e-3 a log-scale moves at most ~0.1 in the 100 steps a
            personalisation may stop after, while subjects' strengths differ from the
            generic model by log-scales of 0.1–0.4 (the synthetic cohort's F_max spread).
        weights: `LossWeights` of the physics and regularisation terms.
        eval_every, patience: validate every `eval_every` steps; stop after `patience`
            validations without improvement (the best parameters are kept).
        validation_fraction: share of the segments (`train`) or of the end of each trial
            (`personalise`) held out for early stopping.
        calibration_steps, calibration_fit: Levenberg–Marquardt steps of `calibrated_msk`'s
            `identify`, and what it fits (`identify`'s names; "strength" is one F_max scale
            shared by every muscle).
        hybrid: `HybridConfig` of `pi_hybrid` (default `HybridConfig()`).
    """

    network: Callable | None = None
    segment_length: int = 64
    generic_steps: int = 1500
    personal_steps: int = 400
    batch_size: int = 32
    generic_learning_rate: float = 3e-3
    personal_learning_rate: float = 1e-3
    physical_learning_rate: float = 1e-2
    weights: LossWeights = LossWeights()
    eval_every: int = 50
    patience: int = 6
    validation_fraction: float = 0.2
    calibration_steps: int = 20
    calibration_fit: tuple[str, ...] = ("max_isometric_force",)
    hybrid: object = None

    def hybrid_config(self):
        from .hybrid import HybridConfig
        return HybridConfig() if self.hybrid is None else self.hybrid

    def make_network(self, n_inputs: int, n_outputs: int, key):
        if self.network is not None:
            return self.network(n_inputs, n_outputs, key)
        from ..nn import CNN
        return CNN(n_inputs, n_outputs, key=key)


def split_in_time(share: Dataset, receptive_field: int, config: TransferConfig
                   ) -> tuple[Segments, Segments]:
    """Train on the first (1 − validation_fraction) of every trial of a subject's share and
    validate on the rest. No label is in both: validation predicts only samples after the
    split. Its windows take their sEMG history (receptive_field − 1 samples) from before
    the split, as the network would when run on the whole trial, so every held-out sample
    is a validation label (from a 2-s chunk at 20 %: 40 labels, against 9 if the history
    had to come from the held-out part too)."""
    from ..data._dataset import cut

    vf = config.validation_fraction
    first, last = [], []
    for t in share.trials:
        n = t.n_samples
        s = int(round((1.0 - vf) * n))
        first.append(cut(t, 0, s, "a"))
        last.append(cut(t, max(0, s - receptive_field + 1), n, "b"))
    parts = []
    for part in (Dataset(tuple(first)), Dataset(tuple(last))):
        shortest = min(t.n_samples for t in part.trials)
        length = min(config.segment_length, shortest - receptive_field + 1)
        if length < 3:
            raise ValueError(
                f"the subject's share is too short: {shortest} samples in its smallest "
                f"{'training' if not parts else 'validation'} part, but the network needs "
                f"{receptive_field} + 2; give a larger share or a smaller validation_fraction.")
        parts.append(make_segments(part, receptive_field, length,
                                   stride=max(1, length // 4), cover_end=True))
    return parts[0], parts[1]


def _split_segments(seg: Segments, fraction: float, key) -> tuple[Segments, Segments]:
    n = len(seg)
    order = np.asarray(jax.random.permutation(key, n))
    n_val = max(1, int(round(fraction * n)))
    return seg.take(order[n_val:]), seg.take(order[:n_val])


def loss_weights(config: TransferConfig, physics: bool, regularise: bool = True,
             force_labels: bool = True) -> LossWeights:
    w = config.weights
    if not physics:
        w = LossWeights(0.0, 0.0, 0.0, force_data=w.force_data)
    elif not regularise:
        w = dataclasses.replace(w, regularisation=0.0)
    return w if force_labels else dataclasses.replace(w, force_data=0.0)


def train(source: Dataset, model: Model, config: TransferConfig = TransferConfig(), *, key,
          physics: bool = True, progress: Callable[[str], None] | None = None,
          checkpoint=None) -> FitResult:
    """Train the generic network on source subjects: every layer, with the data loss plus
    λ·physics (the equation-of-motion and muscle-consistency residuals of the predictions
    under the generic `model`, weighted by `config.weights`).

    Args:
        source: processed trials (`Dataset.process()`) of the source subjects, at one rate
            fs (Hz): sEMG envelopes (time, channels) with one channel per muscle of `model`
            in its order, joint angles q (time, dofs) in rad and muscle forces (time,
            muscles) in N.
        model: the generic musculoskeletal `Model` whose physics the loss uses.
        config: network, segment length (samples), steps, batch size, learning rate, loss
            weights, early stopping (`TransferConfig`).
        key: a JAX PRNG key (network initialisation, train/validation split, batches).
        physics: False for a data-only loss (`LossWeights(0, 0, 0)`).
        progress: called with a line per evaluation.
        checkpoint: a file path; the training state is saved there atomically at every
            evaluation, and a run with the same path resumes from it.

    Returns a `FitResult`: `.predictor` maps sEMG (T, channels) to (q (T', dofs) rad,
    forces (T', muscles) N), T' = T − receptive_field + 1; `.train` / `.val` are the
    segments it used (split at random, `config.validation_fraction` for validation).
    """
    start, train_seg, val_seg, k_fit = generic_start(source, config, key)
    return fit(start, SubjectAdjustment.identity(model.n_muscles), model,
               train_seg, val_seg, key=k_fit, trainable="all",
               weights=loss_weights(config, physics, regularise=False),
               steps=config.generic_steps, batch_size=config.batch_size,
               learning_rate=config.generic_learning_rate, eval_every=config.eval_every,
               patience=config.patience, progress=progress, label="generic: ",
               checkpoint=checkpoint)


def generic_start(source: Dataset, config: TransferConfig, key):
    """(initial Predictor, train segments, validation segments, key of the fit) of a generic
    network (shared by `train` and `folds.train_generic_folds`)."""
    k_net, k_split, k_fit = jax.random.split(key, 3)
    n_in = len(source.trials[0].emg_labels)
    n_out = source.trials[0].q.shape[1] + source.trials[0].forces.shape[1]
    net = config.make_network(n_in, n_out, k_net)
    seg = make_segments(source, net.receptive_field, config.segment_length)
    train, val = _split_segments(seg, config.validation_fraction, k_split)
    return Predictor.create(net, train), train, val, k_fit


def personalise(generic: Predictor, share: Dataset, model: Model, config: TransferConfig, key,
                *, trainable: str = "head", physics: bool = True, physical: bool = True,
                force_labels: bool = True, progress=None, label: str = "pi_transfer: "
                ) -> FitResult:
    """Personalise a generic network to one subject from a small share of its data
    (physics-informed transfer, Zhang et al. 2022): the feature extractor is inherited
    frozen; the head is fine-tuned together with the subject's physical parameters
    (`SubjectAdjustment`: log-scales of F_max per muscle, inertia, damping and the
    electromechanical delay, regularised toward the generic model) with the data loss plus
    the physics residuals under the adjusted model.

    Args:
        generic: the generic `Predictor` (e.g. `train(...).predictor`).
        share: the subject's processed trials (same channels, DoFs, muscles and rate as
            the generic network's data: sEMG envelopes, q in rad, forces in N). The last
            `config.validation_fraction` of each trial (in time) is held out for early
            stopping (its windows take their history from before the split), so each
            trial needs at least `receptive_field + 2` samples before the split and 3
            after it.
        model: the generic `Model` the subject's physical parameters scale.
        config: `config.personal_steps`, `personal_learning_rate`,
            `physical_learning_rate`, `batch_size`,
            `segment_length`, `weights`, `eval_every`, `patience`.
        key: a JAX PRNG key (batches).
        trainable: "head" (transfer) or "all" (full fine-tuning).
        physics: False for a data-only loss (then `physical` is ignored).
        physical: also fit the `SubjectAdjustment`.
        force_labels: False when the subject has no muscle-force labels (they cannot be
            measured in vivo): the share's forces are then never read (any placeholder
            values will do) and only the angles are data; the forces learn from the physics
            terms alone (or, with `physics=False`, keep what the generic network gives).

    Returns a `FitResult`: `.predictor` (as in `train`) and `.adjustment` (apply it to
    `model` for the subject's model; `exp(adjustment.log_strength)` are the F_max scales).
    """
    train, val = split_in_time(share, generic.net.receptive_field, config)
    return fit(generic, SubjectAdjustment.identity(model.n_muscles), model, train, val,
               key=key, trainable=trainable, train_physical=physical and physics,
               weights=loss_weights(config, physics, force_labels=force_labels),
               steps=config.personal_steps, batch_size=config.batch_size,
               learning_rate=config.personal_learning_rate,
               physical_learning_rate=config.physical_learning_rate,
               eval_every=config.eval_every, patience=config.patience, progress=progress,
               label=label)


def from_scratch(share: Dataset, model: Model, config: TransferConfig, key, *, physics: bool,
                 force_labels: bool = True, progress=None, label: str = ""):
    """A new network trained on the subject's share only (target_only / pi_no_transfer).
    Without `force_labels` its force outputs are standardised by mean 0 and sd
    `UNLABELLED_FORCE_SD` × F_max (the labels' statistics are not available)."""
    k_net, k_fit = jax.random.split(key)
    t = share.trials[0]
    net = config.make_network(len(t.emg_labels), t.q.shape[1] + t.forces.shape[1], k_net)
    train, val = split_in_time(share, net.receptive_field, config)
    scale = None if force_labels else \
        UNLABELLED_FORCE_SD * np.asarray(model.muscles.params.max_isometric_force)
    return fit(Predictor.create(net, train, force_scale=scale),
               SubjectAdjustment.identity(model.n_muscles), model,
               train, val, key=k_fit, trainable="all", train_physical=physics,
               weights=loss_weights(config, physics, force_labels=force_labels),
               steps=config.personal_steps, batch_size=config.batch_size,
               learning_rate=config.personal_learning_rate,
               physical_learning_rate=config.physical_learning_rate,
               eval_every=config.eval_every, patience=config.patience, progress=progress,
               label=label)


def compare_methods(generic: Predictor, share: Dataset, test: Dataset, model: Model,
                    config: TransferConfig, key, *, methods=DEFAULT_METHODS,
                    force_labels: bool = True, progress=None, label: str = "") -> dict:
    """Give each of `methods` the subject's `share` (the generic network for the transfer
    methods), evaluate it on `test` (`evaluate`, under its `SubjectAdjustment` where it has
    one). Needs no source data. `force_labels=False`: every method ignores the share's
    muscle forces (see `personalise`); `test` keeps them for evaluation. Returns
    {"methods": {name: metrics}, "predictors": {name: Predictor}, "adjustments":
    {name: SubjectAdjustment} (physics-informed methods), "calibrated": {"calibrated_msk":
    the `CalibratedMSK` (also when only pi_hybrid ran with `HybridConfig(start=
    "calibrated")`: its calibration), "pi_hybrid": the `HybridMSK`},
    "strength_scales": {name: exp(log_strength)}}."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}.")
    say = progress or (lambda s: None)
    results, extra, predictors, adjustments, calibrated = {}, {}, {}, {}, {}
    keys = dict(zip(METHODS, jax.random.split(key, len(METHODS))))
    for name in methods:
        tag = f"{label}{name}: "
        adjustment = None
        if name in MODEL_METHODS:
            metrics, scales, info = run_model_method(
                name, generic, share, test, model, config, keys[name], force_labels=force_labels,
                progress=say, label=tag, cache=calibrated, show_force=force_labels)
            results[name], extra[name] = metrics, scales
            if name == "pi_hybrid":
                calibrated[name] = info["hybrid"]
            continue
        if name == "generic":
            pred = generic
        elif name == "pi_transfer":
            r = personalise(generic, share, model, config, keys[name],
                            force_labels=force_labels, progress=say, label=tag)
            pred, adjustment = r.predictor, r.adjustment
        elif name == "transfer_no_physics":
            pred = personalise(generic, share, model, config, keys[name], physics=False,
                               force_labels=force_labels, progress=say, label=tag).predictor
        elif name == "full_finetune":
            r = personalise(generic, share, model, config, keys[name], trainable="all",
                            force_labels=force_labels, progress=say, label=tag)
            pred, adjustment = r.predictor, r.adjustment
        elif name == "target_only":
            pred = from_scratch(share, model, config, keys[name], physics=False,
                                force_labels=force_labels, progress=say, label=tag).predictor
        else:  # pi_no_transfer
            r = from_scratch(share, model, config, keys[name], physics=True,
                             force_labels=force_labels, progress=say, label=tag)
            pred, adjustment = r.predictor, r.adjustment
        results[name] = evaluate(pred, test, model, adjustment)
        results[name]["by_motion"] = evaluate_by_motion(pred, test, model, adjustment)
        predictors[name] = pred
        if adjustment is not None:
            adjustments[name] = adjustment
            extra[name] = np.exp(np.asarray(adjustment.log_strength)).tolist()
        say(f"{tag}angle RMSE {results[name]['angle_rmse']:.4f} rad"
            + (f", force RMSE {results[name]['force_rmse']:.3f} N" if force_labels else ""))
    return {"methods": results, "predictors": predictors, "adjustments": adjustments,
            "strength_scales": extra, "calibrated": calibrated}


def run_model_method(name: str, generic, share: Dataset, test: Dataset, model: Model,
                     config: TransferConfig, key, *, force_labels: bool = True, progress=None,
                     label: str = "", cache: dict | None = None, show_force: bool = True
                     ) -> tuple[dict, list, dict]:
    """One of `MODEL_METHODS` on a subject's share, scored on `test`: "calibrated_msk"
    (`calibrate`, then open-loop simulation) or "pi_hybrid" (`personalise_hybrid` from the
    generic model, or with `HybridConfig(start="calibrated")` from that calibration). A
    calibration already in `cache["calibrated_msk"]` is reused, and a new one is stored
    there. Returns (metrics as `evaluate_calibrated`, per-muscle F_max
    scales relative to `model`, info: {"seconds", "steps_run", and for pi_hybrid
    "hybrid" (the `HybridMSK`), "step_seconds", "best_step"}). `show_force`: the progress
    line names the force RMSE (False where the test forces are placeholders)."""
    import time

    from .calibrated import calibrate, evaluate_calibrated

    say = progress or (lambda s: None)
    cache = {} if cache is None else cache
    t0 = time.perf_counter()
    hybrid_start = config.hybrid_config().start if name == "pi_hybrid" else "calibrated"
    cal = cache.get("calibrated_msk")
    if hybrid_start == "generic":
        from .._identify.problem import EMGExcitation
        from .calibrated import CalibratedMSK

        cal = CalibratedMSK(model, EMGExcitation())
    elif cal is None:
        say(f"{label}identify on the share's sEMG and angles "
            f"({config.calibration_steps} steps at most) ...")
        cal = calibrate(share, model, fit=config.calibration_fit,
                        max_steps=config.calibration_steps,
                        progress=lambda s: say(f"{label}{s}"))
        cache["calibrated_msk"] = cal
    calibration = None if cal.identification is None else {
        k: cal.identification.diagnostics[k]
        for k in ("converged", "stalled", "message", "steps", "loss")}
    if name == "calibrated_msk":
        metrics = evaluate_calibrated(cal, test, model)
        metrics["calibration"] = calibration
        scales = cal.strength_scales().tolist()
        info = {"steps_run": calibration["steps"]}
    elif name == "pi_hybrid":
        from .hybrid import personalise_hybrid

        r = personalise_hybrid(cal, generic, share, config.hybrid_config(), key=key,
                               force_labels=force_labels, progress=say, label=label)
        metrics = evaluate_calibrated(r.hybrid, test, model)
        if calibration is not None:
            metrics["calibration"] = calibration
        metrics["hybrid"] = {"best_step": r.best_step, "step_seconds": r.step_seconds,
                             "first_step_seconds": r.first_step_seconds,
                             "segments": r.n_segments, "history": r.history}
        scales = r.hybrid.strength_scales(cal.strength_scales()).tolist()
        info = {"hybrid": r.hybrid, "step_seconds": round(r.step_seconds, 4),
                "best_step": r.best_step,
                "steps_run": r.history[-1]["step"] if r.history else 0}
    else:
        raise ValueError(f"run_model_method: {name!r} is not one of {MODEL_METHODS}.")
    info["seconds"] = round(time.perf_counter() - t0, 1)
    say(f"{label}angle RMSE {metrics['angle_rmse']:.4f} rad"
        + (f", force RMSE {metrics['force_rmse']:.3f} N" if show_force else "")
        + f" ({info['seconds']:.0f} s)")
    return metrics, scales, info


def run_fold(dataset: Dataset, target: str, model: Model, config: TransferConfig, key, *,
             share_fraction: float | None = 0.2, share_trials: int | None = None,
             share_start: float = 0.0, methods=DEFAULT_METHODS, force_labels: bool = True,
             progress=None, generic=None) -> dict:
    """One leave-one-subject-out fold: train the generic network on every other subject
    (or take `generic`), give each method a small share of `target` — the first
    `share_fraction` of every trial (default 20 %), or `share_trials` whole trials — and
    evaluate on the rest of the target's data (`compare_methods`). `share_start` (s) first
    drops that much from the start of each of the target's trials, from share and test
    alike (the synthetic protocols fade in from rest over their first second,
    `data._protocols.FADE_IN_S`, a transient the rest of a trial does not have).

    Args:
        dataset: processed trials of every subject (`train`'s requirements).
        target: the held-out subject.
        model, config, key: as in `train`.
        methods: a subset of `METHODS`.
        generic: a trained generic `Predictor` (then `dataset` may hold only `target`).
        force_labels: False: the methods do not use the share's muscle forces
            (`compare_methods`); the test set's forces still score them.

    Returns {"target", "share_trials", "test_trials" (trial names), "methods": {name:
    `evaluate` metrics (angle rad, force N)}, "strength_scales": exp(log_strength) of the
    physics-informed personalisations, "generic_predictor", "predictors", "models" (the
    model methods' CalibratedMSK / HybridMSK, see `compare_methods`), "test"}."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}.")
    say = progress or (lambda s: None)
    k_gen, k_share, k_methods = jax.random.split(key, 3)
    source, target_data = dataset.leave_one_subject_out(target)
    if share_start:
        target_data = drop_start(target_data, share_start)
    if share_trials is not None:
        share, test = target_data.share(k_share, trials=share_trials)
    else:
        share, test = target_data.share(k_share, fraction=share_fraction)
    if generic is None:
        generic = train(source, model, config, key=k_gen, progress=say).predictor
    out = compare_methods(generic, share, test, model, config, k_methods, methods=methods,
                          force_labels=force_labels, progress=say, label=f"{target} ")
    return {"target": target, "share_trials": [t.name for t in share.trials],
            "test_trials": [t.name for t in test.trials], "methods": out["methods"],
            "strength_scales": out["strength_scales"], "generic_predictor": generic,
            "predictors": out["predictors"], "models": out["calibrated"], "test": test}


def drop_start(data: Dataset, seconds: float) -> Dataset:
    """Every trial without its first `seconds` (processed trials, names kept)."""
    from ..data._dataset import cut

    if seconds < 0:
        raise ValueError(f"share_start={seconds} s must be >= 0.")
    out = []
    for t in data.trials:
        k = int(round(seconds * t.fs))
        if k >= t.n_samples - 1:
            raise ValueError(f"share_start={seconds} s leaves nothing of trial {t.subject}/"
                             f"{t.name} ({t.n_samples / t.fs:.2f} s).")
        out.append(cut(t, k, t.n_samples, "a"))
    return Dataset(tuple(out))


__all__ = ["METHODS", "DEFAULT_METHODS", "MODEL_METHODS", "TransferConfig", "train",
           "personalise", "from_scratch", "compare_methods", "run_model_method", "run_fold"]
