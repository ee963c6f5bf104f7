"""Training EMG → (joint angle, muscle forces) networks with the equation of motion as a soft
constraint, and fine-tuning them for one subject.

- `make_segments`: contiguous training segments from a processed `Dataset`.
- `Predictor`: a network plus the fixed standardisation of its outputs, giving angles (rad)
  and forces (N) for a sequence of sEMG envelopes.
- `SubjectAdjustment`: subject-specific physical parameters (log-scales of muscle strength,
  segment inertia and joint damping) applied to a generic `Model`.
- `fit`: one jit-compiled optax train step; data loss + λ·physics + μ·regularisation;
  early stopping on validation; progress lines; atomic checkpoints and resumption.
- `evaluate`, `metrics`: RMSE, NRMSE, R², Pearson r per output.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._model import Model
from .._scale import scale_damping, scale_parameters, scale_segments
from ..data._dataset import Dataset
from ..data._emg import delay as shift_in_time
from ..data._segments import Segments, make_segments
from ..nn import head_filter
from ..physics import emg_to_activation, equation_of_motion_residual, muscle_consistency_residual
from .loop import EarlyStopping, batch_rng

if TYPE_CHECKING:
    import optax


class Predictor(eqx.Module):
    """A network and the fixed standardisation of its outputs.

    `__call__(emg (T, channels))` returns (q (T', dofs) rad, forces (T', muscles) N) for the
    T' = T − receptive_field + 1 samples the windows end on.
    """

    net: eqx.Module
    mean: jax.Array  # (dofs + muscles,)
    std: jax.Array
    n_dofs: int = eqx.field(static=True)

    @classmethod
    def create(cls, net, segments: Segments, force_scale=None) -> Predictor:
        """The outputs standardised by the segments' label statistics; with `force_scale`
        (N, per muscle) the forces are standardised by mean 0 and sd `force_scale` instead,
        and the segments' force labels are not read (training without force labels)."""
        d = segments.q.shape[-1]
        if force_scale is None:
            y = np.concatenate([segments.q, segments.forces], axis=-1).reshape(-1, net.n_outputs)
            return cls(net, jnp.asarray(y.mean(0)), jnp.asarray(np.maximum(y.std(0), 1e-6)), d)
        q = segments.q.reshape(-1, d)
        f_std = np.broadcast_to(np.asarray(force_scale, float), (net.n_outputs - d,))
        return cls(net, jnp.asarray(np.concatenate([q.mean(0), np.zeros_like(f_std)])),
                   jnp.asarray(np.concatenate([np.maximum(q.std(0), 1e-6), f_std])), d)

    def __call__(self, emg):
        y = self.net(emg) * jax.lax.stop_gradient(self.std) + jax.lax.stop_gradient(self.mean)
        return y[:, :self.n_dofs], y[:, self.n_dofs:]


NOMINAL_DELAY = 0.05  # s, electromechanical delay before personalisation


class SubjectAdjustment(eqx.Module):
    """Subject-specific physical parameters as log-scales of the generic model's (zero =
    generic): per-muscle strength (F_max), segment mass and inertia, joint damping; and the
    electromechanical delay between the sEMG envelope and the excitation it reflects
    (NOMINAL_DELAY·exp(log_delay), s)."""

    log_strength: jax.Array
    log_inertia: jax.Array
    log_damping: jax.Array
    log_delay: jax.Array

    @classmethod
    def identity(cls, n_muscles: int) -> SubjectAdjustment:
        return cls(jnp.zeros(n_muscles), jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))

    @property
    def delay(self):
        return NOMINAL_DELAY * jnp.exp(self.log_delay)

    def apply(self, model: Model) -> Model:
        m = scale_parameters(model, max_isometric_force=jnp.exp(self.log_strength))
        return scale_damping(scale_segments(m, jnp.exp(self.log_inertia)),
                             jnp.exp(self.log_damping))

    def penalty(self):
        return (jnp.mean(self.log_strength**2) + self.log_inertia**2 + self.log_damping**2
                + self.log_delay**2)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (each a mean of squares, dimensionless):
    eom: the equation-of-motion residual of the predictions (`physics.
    equation_of_motion_residual`, scaled by the muscles' moment capacity);
    consistency: predicted forces against the Hill forces of the (adjusted) model driven by
    the sEMG-derived activation and the predicted kinematics (`physics.
    muscle_consistency_residual`, compliant tendon, ÷ F_max);
    regularisation: squared log-scales of `SubjectAdjustment` (toward the generic model);
    force_data: weight of the force labels in the data loss (1: angles and forces count
    alike; 0: the force labels are not used, e.g. a subject whose muscle forces were never
    estimated; the forces then learn only from the physics terms).
    eom, consistency and regularisation zero: a data-only loss."""

    eom: float = 100.0
    consistency: float = 10.0
    regularisation: float = 0.1
    force_data: float = 1.0

    @property
    def physics(self) -> bool:
        return self.eom > 0 or self.consistency > 0


def segment_activation(adjustment: SubjectAdjustment, model: Model, emg, dt: float,
                       n_out: int):
    """(segments, n_out, muscles) activations of the consistency residual: each segment's
    sEMG envelope (segments, time, muscles), clipped at 0 and delayed by the adjustment's
    electromechanical delay, through the adjusted model's activation dynamics
    (`physics.emg_to_activation`), its last `n_out` samples (those the network predicts)."""
    subject_model = adjustment.apply(model)
    fs = 1.0 / dt
    skip = emg.shape[1] - n_out
    return jax.vmap(lambda e: emg_to_activation(
        shift_in_time(e, fs, adjustment.delay), fs,
        tau_act=subject_model.activation.tau_act,
        tau_deact=subject_model.activation.tau_deact)[skip:])(jnp.clip(emg, 0.0, None))


_segment_activation = eqx.filter_jit(segment_activation)


def cached_activation(adjustment: SubjectAdjustment, model: Model, emg: np.ndarray, dt: float,
                      n_out: int, chunk: int = 256) -> np.ndarray:
    """`segment_activation` of every segment, computed once (in chunks of `chunk`
    segments), for fits whose adjustment is not trained: the activation then depends on the
    data alone, and a train step need not integrate the activation dynamics again (the
    sequential scan over the segment's samples is most of the physics loss's cost)."""
    out = []
    for k in range(0, emg.shape[0], chunk):
        part = emg[k:k + chunk]
        if part.shape[0] < chunk and emg.shape[0] > chunk:  # one compiled shape
            pad = np.concatenate([part, np.repeat(part[-1:], chunk - part.shape[0], 0)])
            out.append(np.asarray(_segment_activation(adjustment, model, jnp.asarray(pad), dt,
                                                      n_out))[:part.shape[0]])
        else:
            out.append(np.asarray(_segment_activation(adjustment, model, jnp.asarray(part),
                                                      dt, n_out)))
    return np.concatenate(out)


def losses(predictor: Predictor, adjustment: SubjectAdjustment, model: Model, emg, q, forces,
           dt: float, force_data: float = 1.0, activation=None):
    """Per-segment (data, eom, consistency) losses, unreduced over segments.

    data: mean squared standardised error of angles and (weighted by `force_data`) forces;
    eom, consistency: mean
    squared residuals of the predictions under the adjusted model (see `LossWeights`). The
    activation for the consistency residual comes from the segment's sEMG envelope, delayed
    by the adjustment's electromechanical delay, through the model's activation dynamics
    (`segment_activation`), or is given (`activation`, (segments, predictions, muscles):
    the same values, precomputed where the adjustment is not trained)."""
    q_hat, f_hat = jax.vmap(predictor)(emg)
    std = predictor.std
    d = predictor.n_dofs
    data = _data_error(q_hat, f_hat, q, forces, std, d, force_data)
    subject_model = adjustment.apply(model)
    eom = jax.vmap(lambda a, b: equation_of_motion_residual(subject_model, a, b, dt))(q_hat, f_hat)
    act = (segment_activation(adjustment, model, emg, dt, q_hat.shape[1]) if activation is None
           else activation)
    cons = jax.vmap(lambda a, b, c: muscle_consistency_residual(
        subject_model, a, b, c, dt, tendon="compliant"))(act, q_hat, f_hat)
    return data, jnp.mean(eom**2, axis=(1, 2)), jnp.mean(cons**2, axis=(1, 2))


@dataclasses.dataclass
class FitResult:
    """What `fit` (and `jaxmsk.train` / `jaxmsk.personalise`) returns.

    Attributes:
        predictor: the `Predictor` at the best validation loss.
        adjustment: the `SubjectAdjustment` at that step (identity unless physical
            parameters were trained).
        history: one dict per evaluation: step, loss, data, physics (training batch) and
            val_loss, val_data, val_physics (dimensionless, see `LossWeights`).
        best_step: the step of the returned parameters.
        seconds: wall-clock time of the optimisation (s).
        train, val: the `Segments` trained and validated on.
    """

    predictor: Predictor
    adjustment: SubjectAdjustment
    history: list[dict]
    best_step: int
    seconds: float
    train: Segments | None = None
    val: Segments | None = None


def trainable_filter(predictor: Predictor, adjustment: SubjectAdjustment, trainable: str,
            train_physical: bool):
    if trainable == "all":
        net_spec = jax.tree.map(eqx.is_inexact_array, predictor.net)
    elif trainable == "head":
        net_spec = head_filter(predictor.net)
    else:
        raise ValueError(f"trainable={trainable!r}: use 'all' or 'head'.")
    pred_spec = Predictor(net_spec, False, False, predictor.n_dofs)
    adj_spec = jax.tree.map(lambda _: train_physical, adjustment)
    return (pred_spec, adj_spec)


@functools.lru_cache(maxsize=64)
def make_optimizer(learning_rate: float, steps: int, physical_learning_rate: float | None = None
               ) -> optax.GradientTransformation:
    """Adam with a cosine-decayed learning rate (the `SubjectAdjustment`'s log-scales at
    `physical_learning_rate` if given); cached so that fits with the same budget share one
    object, and so one compiled train step (`train_step` is jitted with the optimizer as a
    static argument). optax is imported here, not at module level: it adds ~0.1 s to
    `import jaxmsk` for users who never train."""
    import optax

    def adam(rate):
        return optax.adam(optax.cosine_decay_schedule(rate, steps, alpha=0.05))

    if physical_learning_rate is None or physical_learning_rate == learning_rate:
        return adam(learning_rate)
    # The trained parameters are (predictor part, adjustment part).
    return optax.multi_transform(
        {"net": adam(learning_rate), "physical": adam(physical_learning_rate)},
        lambda p: (jax.tree.map(lambda _: "net", p[0]), jax.tree.map(lambda _: "physical", p[1])))


def loss_terms(p, static, emg, q, f, model, weights: LossWeights, dt, activation=None):
    pred, adj = eqx.combine(p, static)
    if weights.physics:
        data, eom, cons = losses(pred, adj, model, emg, q, f, dt, weights.force_data,
                                 activation)
        phys = weights.eom * jnp.mean(eom) + weights.consistency * jnp.mean(cons)
    else:
        data, phys = _data_only(pred, emg, q, f, weights.force_data), jnp.zeros(())
    loss = jnp.mean(data) + phys + weights.regularisation * adj.penalty()
    return loss, (jnp.mean(data), phys)


# Module level, so that fits with the same structure, shapes and settings (folds, methods,
# resumed runs) reuse one compilation.
_total_loss = eqx.filter_jit(loss_terms)


@eqx.filter_jit
def train_step(p, static, state, emg, q, f, model, optim, weights, dt, activation=None):
    """One Adam step on a batch; `activation`: the batch's precomputed consistency
    activations (`cached_activation`), for fits whose adjustment is not trained."""
    (loss, aux), g = eqx.filter_value_and_grad(loss_terms, has_aux=True)(
        p, static, emg, q, f, model, weights, dt, activation)
    updates, state = optim.update(g, state, p)
    return eqx.apply_updates(p, updates), state, loss, aux


def fit(predictor: Predictor, adjustment: SubjectAdjustment, model: Model, train: Segments,
        val: Segments, *, key, trainable: str = "all", train_physical: bool = False,
        weights: LossWeights = LossWeights(), steps: int = 1000, batch_size: int = 32,
        learning_rate: float = 3e-3, physical_learning_rate: float | None = None,
        eval_every: int = 50, patience: int = 6, checkpoint: str | os.PathLike | None = None,
        progress: Callable[[str], None] | None = None, label: str = "") -> FitResult:
    """Train with Adam (cosine-decayed learning rate) and early stopping on `val`.

    Args:
        predictor, adjustment: the starting point (e.g. a generic predictor to fine-tune).
        model: the generic model whose physics the residual uses (after `adjustment`).
        train, val: segments; validation loss uses the same weights.
        trainable: "all" layers or the "head" only (transfer: the feature extractor frozen).
        train_physical: also fit the `SubjectAdjustment` (personalised physics).
        weights: `LossWeights`; LossWeights(0, 0, 0) is data only.
        physical_learning_rate: Adam's rate for the `SubjectAdjustment` (default
            `learning_rate`).
        steps, batch_size, learning_rate, eval_every, patience: the budget; training stops
            after `patience` evaluations without a better validation loss, and the best
            parameters are returned.
        checkpoint: a file path; the state is saved there atomically at every evaluation and
            a run with the same path resumes from it.
        progress: called with a line per evaluation.
    """
    from ..io._checkpoint import load_checkpoint, save_checkpoint

    say = progress or (lambda s: None)
    dt = 1.0 / train.fs
    spec = trainable_filter(predictor, adjustment, trainable, train_physical)
    params, static = eqx.partition((predictor, adjustment), spec)
    optim = make_optimizer(learning_rate, steps, physical_learning_rate)
    opt_state = optim.init(params)

    # Without trained physical parameters the consistency residual's activations depend on
    # the data alone: integrated once here, not in every step (see `cached_activation`).
    cache = weights.consistency > 0 and not train_physical
    n_out = train.q.shape[1]
    train_act = val_act = None
    if cache:
        train_act = cached_activation(adjustment, model, train.emg, dt, n_out)
        val_act = jnp.asarray(cached_activation(adjustment, model, val.emg, dt, val.q.shape[1]))

    def step(p, state, emg, q, f, act):
        return train_step(p, static, state, emg, q, f, model, optim, weights, dt, act)

    def evaluate(p, emg, q, f):
        return _total_loss(p, static, emg, q, f, model, weights, dt, val_act)

    start, best_params = 0, params
    stopping = EarlyStopping(1, patience)
    if checkpoint is not None and os.path.exists(checkpoint):
        (params, opt_state, best_params), meta = load_checkpoint(
            checkpoint, (params, opt_state, best_params))
        start = meta["step"]
        stopping.best[0], stopping.best_step[0] = meta["best"], meta["best_step"]
        stopping.bad[0], stopping.histories[0] = meta["bad"], meta.get("history", [])
        say(f"{label}resumed from {checkpoint} at step {start}")
    rng = batch_rng(key)
    for _ in range(start):  # the same batches as an uninterrupted run
        rng.integers(0, len(train), batch_size)
    t0 = time.perf_counter()
    vemg, vq, vf = (jnp.asarray(x) for x in (val.emg, val.q, val.forces))
    for i in range(start, steps):
        idx = rng.integers(0, len(train), batch_size)
        params, opt_state, loss, (data, phys) = step(
            params, opt_state, jnp.asarray(train.emg[idx]), jnp.asarray(train.q[idx]),
            jnp.asarray(train.forces[idx]), None if train_act is None
            else jnp.asarray(train_act[idx]))
        if (i + 1) % eval_every == 0 or i + 1 == steps:
            vloss, (vdata, vphys) = evaluate(params, vemg, vq, vf)
            _, improved, stopped = stopping.record(i + 1, loss, data, phys, vloss, vdata, vphys)
            if improved[0]:
                best_params = params
            if checkpoint is not None:
                save_checkpoint(checkpoint, (params, opt_state, best_params),
                                metadata={"step": i + 1, "best": float(stopping.best[0]),
                                          "best_step": int(stopping.best_step[0]),
                                          "bad": int(stopping.bad[0]),
                                          "history": stopping.histories[0]}, overwrite=True)
            say(f"{label}step {i + 1:5d}/{steps}  loss {float(loss):.4f}  val {float(vloss):.4f}  "
                f"(data {float(vdata):.4f}, physics {float(vphys):.2e})  "
                f"{time.perf_counter() - t0:.0f} s")
            if stopped:
                say(f"{label}early stop at step {i + 1}; best validation at step "
                    f"{int(stopping.best_step[0])}")
                break
    history, best_step = stopping.histories[0], int(stopping.best_step[0])
    pred, adj = eqx.combine(best_params, static)
    return FitResult(pred, adj, history, best_step, time.perf_counter() - t0, train, val)


def _data_only(pred: Predictor, emg, q, forces, force_data: float = 1.0):
    q_hat, f_hat = jax.vmap(pred)(emg)
    return _data_error(q_hat, f_hat, q, forces, pred.std, pred.n_dofs, force_data)


def _data_error(q_hat, f_hat, q, forces, std, d, force_data):
    err_q = jnp.mean(((q_hat - q) / std[:d]) ** 2, axis=(1, 2))
    if isinstance(force_data, (int, float)) and force_data == 0:
        # Unused labels (possibly placeholders, even NaN) never reach the loss.
        return 0.5 * err_q
    return 0.5 * (err_q + force_data * jnp.mean(((f_hat - forces) / std[d:]) ** 2, axis=(1, 2)))


def metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per-output RMSE (units of the output), NRMSE (RMSE / range of the truth), R² and
    Pearson r; arrays (time, outputs)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    err = pred - true
    rmse = np.sqrt(np.mean(err**2, axis=0))
    rng = np.ptp(true, axis=0)
    r2 = 1 - np.sum(err**2, axis=0) / np.maximum(np.sum((true - true.mean(0)) ** 2, axis=0), 1e-300)
    pc = pred - pred.mean(0)
    tc = true - true.mean(0)
    r = np.sum(pc * tc, axis=0) / np.maximum(np.sqrt(np.sum(pc**2, 0) * np.sum(tc**2, 0)), 1e-300)
    return {"rmse": rmse, "nrmse": rmse / np.maximum(rng, 1e-300), "r2": r2, "pearson_r": r}


def evaluate(predictor: Predictor, dataset: Dataset, model: Model | None = None,
             adjustment: SubjectAdjustment | None = None) -> dict:
    """Metrics of a predictor over whole trials (windows ending on every sample), pooled.

    Args:
        predictor: a trained `Predictor`.
        dataset: processed trials with q (rad) and force (N) labels at one rate.
        model: if given, also the RMS of the equation-of-motion residual of the predictions
            under `adjustment` applied to it (identity if None).

    Returns {"angle": metrics, "force": metrics (per output, lists; see `metrics`),
    "angle_rmse": mean over DoFs (rad), "force_rmse": mean over muscles (N), and the means
    of nrmse, r2, pearson_r; when `model` is given also "eom_residual_rms" (RMS of the
    equation-of-motion residual of the predictions, dimensionless), "eom_residual_median"
    (median of its magnitude: a few samples past a joint limit dominate the RMS),
    "angle_outside_limits" and "angle_outside_limits_truth" (fractions of the predicted and of
    the recorded samples outside the model's joint limits, `joint_limits`)}."""
    rf = predictor.net.receptive_field
    qs, fs, qt, ft, res = [], [], [], [], []
    m = None
    if model is not None:
        m = (adjustment or SubjectAdjustment.identity(model.n_muscles)).apply(model)
    for t in dataset.trials:
        q_hat, f_hat = predict(predictor, jnp.asarray(t.emg))
        qs.append(np.asarray(q_hat))
        fs.append(np.asarray(f_hat))
        qt.append(t.q[rf - 1:])
        ft.append(t.forces[rf - 1:])
        if m is not None:
            res.append(np.asarray(_residual(m, q_hat, f_hat, 1.0 / t.fs)))
    out = pooled_metrics(np.concatenate(qs), np.concatenate(fs), np.concatenate(qt),
                  np.concatenate(ft), np.concatenate(res) if res else None)
    if m is not None:
        out["angle_outside_limits"] = outside_limits(m, np.concatenate(qs))
        out["angle_outside_limits_truth"] = outside_limits(m, np.concatenate(qt))
    return out


def motion_type(trial_name: str) -> str:
    """The motion type a trial name stands for: the name without a share's "#rest" suffix and
    without a trailing repetition number ("slow_2" -> "slow", "free-1" -> "free",
    "walk" -> "walk")."""
    return re.sub(r"[_\-. ]?\d+$", "", trial_name.split("#", 1)[0]) or trial_name


def evaluate_by_motion(predictor: Predictor, dataset: Dataset, model: Model | None = None,
                       adjustment: SubjectAdjustment | None = None) -> dict[str, dict]:
    """`evaluate` on the trials of each motion type (`motion_type` of the trial names) apart:
    {type: {"trials": [names], "angle_rmse", "angle_r2", "force_rmse", "force_r2"}} (rad, N;
    means over outputs)."""
    groups: dict[str, list] = {}
    for t in dataset.trials:
        groups.setdefault(motion_type(t.name), []).append(t)
    out = {}
    for kind, trials in groups.items():
        m = evaluate(predictor, Dataset(tuple(trials)), model, adjustment)
        out[kind] = {"trials": [t.name for t in trials],
                     **{k: m[k] for k in ("angle_rmse", "angle_r2", "force_rmse", "force_r2")}}
    return out


def recorded_residual_rms(dataset: Dataset, model: Model) -> float | None:
    """RMS of the equation-of-motion residual of the *recorded* angles and muscle forces
    (every trial whole, pooled over the interior samples; `physics.equation_of_motion_residual`
    at each trial's dt = 1/fs): the floor a prediction's residual can be compared with (the
    model's mismatch with the data plus the finite-difference error). None when a trial has no
    force labels or they are not finite."""
    parts = []
    for t in dataset.trials:
        if t.forces is None or not np.isfinite(t.forces).all():
            return None
        parts.append(np.asarray(_residual(model, jnp.asarray(t.q), jnp.asarray(t.forces),
                                          1.0 / t.fs)))
    return float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))


def joint_limits(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) joint range per coordinate (rad; m for sliders) from the model's passive
    limit elements (`CoordinateLimitForce`, `JointPassive`); ±inf where none. Past a limit
    the limit moment grows steeply, so a prediction there has a large residual unless its
    muscle forces balance it."""
    from ..skeleton import CoordinateLimitForce, JointPassive

    lo, hi = np.full(model.n_dofs, -np.inf), np.full(model.n_dofs, np.inf)
    for p in model.passive:
        if isinstance(p, CoordinateLimitForce):
            w = np.pi / 180 if p.rotational else 1.0
            i = p.coordinate
            lo[i] = max(lo[i], w * float(p.lower_limit))
            hi[i] = min(hi[i], w * float(p.upper_limit))
        elif isinstance(p, JointPassive):
            lo = np.maximum(lo, np.asarray(p.lower_limit, float))
            hi = np.minimum(hi, np.asarray(p.upper_limit, float))
    return lo, hi


def outside_limits(model: Model, q: np.ndarray) -> float:
    """Fraction of the samples of q (time, dofs) with any coordinate outside `joint_limits`."""
    lo, hi = joint_limits(model)
    q = np.asarray(q)
    return float(np.mean(((q < lo) | (q > hi)).any(axis=-1)))


def evaluate_segments(predictor: Predictor, segments: Segments, model: Model | None = None,
                      adjustment: SubjectAdjustment | None = None, *,
                      batch_size: int = 256) -> dict:
    """`evaluate` over the predictions of training or validation `Segments` (each segment's
    `length` labelled samples, pooled), e.g. `FitResult.train` / `FitResult.val`; the
    same dictionary. Predictions run in batches of `batch_size` segments (the last one
    padded, so that every batch has one shape and one compilation)."""
    qs, fs, res = [], [], []
    m = None
    if model is not None:
        m = (adjustment or SubjectAdjustment.identity(model.n_muscles)).apply(model)
    n = len(segments)
    for s in range(0, n, batch_size):
        idx = np.minimum(np.arange(s, s + batch_size), n - 1)
        keep = min(batch_size, n - s)
        q_hat, f_hat = _predict_batch(predictor, jnp.asarray(segments.emg[idx]))
        qs.append(np.asarray(q_hat)[:keep])
        fs.append(np.asarray(f_hat)[:keep])
        if m is not None:
            res.append(np.asarray(_residuals(m, q_hat, f_hat, 1.0 / segments.fs))[:keep])
    def flat(xs):  # (segments, length, outputs) pieces → (samples, outputs)
        x = np.concatenate(xs) if isinstance(xs, list) else xs
        return x.reshape(-1, x.shape[-1])

    return pooled_metrics(flat(qs), flat(fs), flat(segments.q), flat(segments.forces),
                   flat(res) if res else None)


def pooled_metrics(q_hat, f_hat, q, forces, residual) -> dict:
    """`evaluate`'s dictionary from pooled predictions and labels (time, outputs) and the
    equation-of-motion residual of the predictions (or None)."""
    a = metrics(q_hat, q)
    f = metrics(f_hat, forces)
    out = {"angle": {k: v.tolist() for k, v in a.items()},
           "force": {k: v.tolist() for k, v in f.items()},
           "angle_rmse": float(a["rmse"].mean()), "force_rmse": float(f["rmse"].mean()),
           "angle_nrmse": float(a["nrmse"].mean()), "force_nrmse": float(f["nrmse"].mean()),
           "angle_r2": float(a["r2"].mean()), "force_r2": float(f["r2"].mean()),
           "angle_pearson_r": float(a["pearson_r"].mean()),
           "force_pearson_r": float(f["pearson_r"].mean())}
    if residual is not None:
        out["eom_residual_rms"] = float(np.sqrt(np.mean(residual ** 2)))
        out["eom_residual_median"] = float(np.median(np.abs(residual)))
    return out


@eqx.filter_jit
def _residual(model, q, f, dt):
    return equation_of_motion_residual(model, q, f, dt)


@eqx.filter_jit
def _residuals(model, q, f, dt):
    return jax.vmap(lambda a, b: equation_of_motion_residual(model, a, b, dt))(q, f)


@eqx.filter_jit
def predict(predictor: Predictor, emg):
    """`predictor(emg)`, compiled once per structure and shape (shared by every predictor of
    one architecture): sEMG (T, channels) → (q (T', dofs) rad, forces (T', muscles) N)."""
    return predictor(emg)


@eqx.filter_jit
def _predict_batch(predictor, emg):
    return jax.vmap(predictor)(emg)


__all__ = ["Segments", "make_segments", "Predictor", "SubjectAdjustment", "LossWeights",
           "losses", "fit", "FitResult", "metrics", "evaluate", "evaluate_segments",
           "recorded_residual_rms", "joint_limits", "outside_limits", "motion_type",
           "evaluate_by_motion"]
