"""`pi_hybrid`: physics in the model, not only in the loss.

The subject's musculoskeletal model is the predictor. Its excitations are the processed sEMG
(through the calibrated EMG model of `calibrated_msk`) corrected by a network:

    u(t) = clip(e(t) · exp(c(t)), minimum, 1),   c(t) = head(features(sEMG window ending at t))

`features` is the generic network's feature extractor, inherited frozen (the transfer);
`head` is a new per-time-step MLP whose last layer starts at zero, so an untrained hybrid is
exactly the calibrated model. Angles and muscle forces are what the subject's model, driven
by u and integrated by diffrax, gives: they obey the equation of motion by construction.

Personalisation fits the head and the subject's per-muscle strength (log-scales of F_max on
top of the calibration's) to the share through the simulator: the share is cut into short
segments (multiple shooting: each starts at the recorded angle, the velocity of a quadratic
fit and the muscles in equilibrium), all simulated at once under `vmap`, and the loss (angles;
forces where labels exist; without force labels optionally the generic network's force
predictions as a prior) is differentiated through the integration with diffrax's
`RecursiveCheckpointAdjoint`. Test trials are simulated open loop from their first sample.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._identify.problem import EMGExcitation, start_velocity
from .._model import Model
from .._scale import scale_parameters
from .._simulate import integrate, simulate
from ..data._dataset import Dataset
from .calibrated import CalibratedMSK, open_loop


@dataclasses.dataclass(frozen=True)
class HybridConfig:
    """Budget and weights of `personalise_hybrid`.

    The defaults were chosen among four settings on the built-in cohort's 8 folds (angle
    labels, 10 % share; experiments/transfer/README.md): 1-s segments and a strength
    penalty of 1 gave angle RMSE 0.087 rad and force RMSE 1.88 N, against 0.091 / 2.02 for
    0.5-s segments with a penalty of 0.01, which also moved the strengths further from the
    truth (mean |log error| 0.23 against 0.17).

    Attributes:
        segment_seconds: length of the shooting segments (s).
        stride_seconds: spacing of segment starts (s; segments overlap when smaller).
        steps, eval_every, patience: Adam steps (each on every training segment at once);
            validate every `eval_every` steps, stop after `patience` validations without
            improvement (the best parameters are kept).
        learning_rate, strength_learning_rate: Adam's rates for the head and for the
            strength log-scales (cosine decay).
        head_width: hidden units of the correction head.
        correction_penalty: weight of mean(c²) (keeps corrections small where the data do
            not call for them). 1.0 (the default) against 0.01 on the built-in cohort, 8
            folds, 10 % share, angle labels: angle RMSE 0.0754 against 0.0874 rad (seed 0)
            and 0.0725 against 0.1012 rad (seed-1 cohort), forces unchanged within 0.1 N.
        strength_penalty: weight of mean(log-scale²) (toward the calibrated strengths).
        force_weight: weight of the force term, relative to the angle term.
        force_prior: without force labels, use the generic network's force predictions on
            the share as force targets (knowledge from the source subjects, whose forces
            were labelled). Off by default: on the built-in cohort's S01 at a 10 % share
            (0.5-s segments, strength penalty 0.01) it made the forces worse (RMSE 2.76 N
            against 1.56 N from the angles alone) and the angles too (0.087 against 0.075
            rad); the generic network's forces for that subject are 3.11 N off.
        rtol, atol: integration tolerances in training (test trials are simulated at rtol
            1e-6).
        max_steps: solver steps per training segment; a segment that needs more fails, is
            left out of the loss at that step, and `personalise_hybrid` warns.
        validation_fraction: the end of each share trial held out for early stopping.
        start: "generic": start from the generic model (F_max scales 1, the EMG model at
            its pass-through defaults; the strength log-scales are regularised toward it);
            "calibrated": from `calibrated_msk`'s calibration (`calibrate` on the share).
    """

    segment_seconds: float = 1.0
    stride_seconds: float = 0.5
    steps: int = 150
    eval_every: int = 10
    patience: int = 5
    learning_rate: float = 3e-3
    strength_learning_rate: float = 2e-2
    head_width: int = 32
    correction_penalty: float = 1.0
    strength_penalty: float = 1.0
    force_weight: float = 1.0
    force_prior: bool = False
    rtol: float = 1e-5
    atol: float = 1e-7
    max_steps: int = 20_000
    validation_fraction: float = 0.2
    start: str = "generic"

    def __post_init__(self):
        if self.start not in ("generic", "calibrated"):
            raise ValueError(f"HybridConfig.start={self.start!r}: use 'generic' or "
                             "'calibrated'.")


class HybridMSK(eqx.Module):
    """The subject's model driven by network-corrected sEMG excitations (see the module).

    `excitation(ts, emg)` gives u (time, muscles); `subject_model()` the model with the
    fitted strengths; `predict(trial)` / `predict_checked(trial)` the open-loop angles (rad)
    and tendon forces (N) of a processed trial, as `CalibratedMSK`'s."""

    features: Any
    head: eqx.nn.MLP
    log_strength: jax.Array
    base: Model
    emg_model: EMGExcitation
    receptive_field: int = eqx.field(static=True)

    @classmethod
    def create(cls, calibrated: CalibratedMSK, features, receptive_field: int, *,
               head_width: int = 32, key) -> HybridMSK:
        """An untrained hybrid (zero corrections: the calibrated model itself)."""
        n_feat = jax.eval_shape(features, jnp.zeros((receptive_field,
                                                     calibrated.model.n_muscles))).shape[-1]
        head = eqx.nn.MLP(n_feat, calibrated.model.n_muscles, head_width, 1,
                          activation=jax.nn.gelu, key=key)
        last = head.layers[-1]
        head = eqx.tree_at(lambda h: (h.layers[-1].weight, h.layers[-1].bias), head,
                           (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))
        return cls(features, head, jnp.zeros(calibrated.model.n_muscles), calibrated.model,
                   calibrated.emg_model, int(receptive_field))

    @property
    def model(self) -> Model:
        return self.subject_model()

    def subject_model(self) -> Model:
        return scale_parameters(self.base, max_isometric_force=jnp.exp(self.log_strength))

    def correction(self, emg):
        """c (time, muscles): zero over the first receptive_field − 1 samples (no window)."""
        c = jax.vmap(self.head)(self.features(emg))
        pad = jnp.zeros((self.receptive_field - 1, c.shape[1]), c.dtype)
        return jnp.concatenate([pad, c], axis=0)

    def excitation(self, ts, emg):
        """u (time, muscles): the EMG model on the envelopes clipped to [0, 1], times the
        correction computed from the envelopes as given (as the features were trained)."""
        return self.excitation_and_correction(ts, emg)[0]

    def excitation_and_correction(self, ts, emg):
        """(u, c), both (time, muscles): `excitation` and the correction it applied."""
        emg = jnp.asarray(emg)
        c = self.correction(emg)
        e = self.emg_model(ts, jnp.clip(emg, 0.0, 1.0))
        return jnp.clip(e * jnp.exp(c), self.emg_model.minimum, 1.0), c

    def strength_scales(self, calibrated_scales=None) -> np.ndarray:
        s = np.exp(np.asarray(self.log_strength))
        return s if calibrated_scales is None else s * np.asarray(calibrated_scales)

    def simulate(self, emg, ts, q0, qdot0):
        ts = jnp.asarray(ts)
        return simulate(self.subject_model(), self.excitation(ts, emg), ts,
                        q0=jnp.asarray(q0), qdot0=jnp.asarray(qdot0), solver="explicit",
                        rtol=1e-6, atol=1e-8, max_steps=200_000, throw=False)

    def predict(self, trial):
        return self.predict_checked(trial)[:2]

    def predict_checked(self, trial):
        """(q, forces, ok) as `CalibratedMSK.predict_checked` (a failed run warns and scores
        as the first angle and zero force)."""
        return open_loop(self, trial, "pi_hybrid")


@dataclasses.dataclass
class HybridResult:
    """What `personalise_hybrid` returns: the fitted `HybridMSK` (best validation loss),
    one dict per evaluation (step, loss, val_loss, failed segments), the best step, seconds
    of optimisation, the cost of one step after compilation (s) and of the first (s,
    compilation included), and the number of training segments."""

    hybrid: HybridMSK
    history: list[dict]
    best_step: int
    seconds: float
    step_seconds: float
    first_step_seconds: float
    n_segments: int


def shooting_segments(share: Dataset, seconds: float, stride: float, part: str,
                      fraction: float):
    """Segment starts over the first (part="train") or last (part="val") `fraction` of each
    trial: list of (trial index, start, length)."""
    out = []
    for i, t in enumerate(share.trials):
        n = t.n_samples
        length = max(3, int(round(seconds * t.fs)))
        step = max(1, int(round(stride * t.fs)))
        cut_at = int(round((1.0 - fraction) * n))
        lo, hi = (0, cut_at) if part == "train" else (max(0, cut_at - 1), n)
        if hi - lo < length:
            if hi - lo >= 3:
                out.append((i, lo, hi - lo))
            continue
        starts = list(range(lo, hi - length + 1, step))
        if starts[-1] != hi - length:
            starts.append(hi - length)
        out.extend((i, s, length) for s in starts)
    return out


def _batch(share: Dataset, segs, targets_f):
    """Stacked arrays of segments of equal length (the longest common one is used)."""
    length = min(n for _, _, n in segs)
    idx = np.array([[s + k for k in range(length)] for _, s, _ in segs])
    tr = np.array([i for i, _, _ in segs])
    q = np.stack([share.trials[i].q[s:s + length] for i, s, _ in segs])
    ts = np.stack([share.trials[i].time()[s:s + length] for i, s, _ in segs])
    qdot0 = np.stack([start_velocity(ts[k], q[k]) for k in range(len(segs))])
    f = None if targets_f is None else np.stack([targets_f[i][s:s + length] for i, s, _ in segs])
    return {"trial": tr, "index": idx, "ts": ts, "q": q, "qdot0": qdot0, "f": f}


def personalise_hybrid(calibrated: CalibratedMSK, generic, share: Dataset,
                       config: HybridConfig = HybridConfig(), *, key, force_labels: bool = False,
                       progress: Callable[[str], None] | None = None,
                       label: str = "pi_hybrid: ") -> HybridResult:
    """Fit a `HybridMSK` to a subject's share through the simulator (see the module).

    Args:
        calibrated: the subject's `CalibratedMSK` (`calibrate(share, model)`).
        generic: the generic `Predictor`; its feature extractor is inherited frozen and,
            without force labels and with `config.force_prior`, its force predictions on
            the share are the force targets.
        share: the subject's processed trials (sEMG envelopes, angles; forces are read only
            with `force_labels`).
        key: PRNG key (head initialisation).
    """
    import optax

    say = progress or (lambda s: None)
    rf = generic.net.receptive_field
    hybrid = HybridMSK.create(calibrated, generic.net.features, rf,
                              head_width=config.head_width, key=key)
    model = calibrated.model
    dtype = jnp.result_type(float)
    t_max = max(t.n_samples for t in share.trials)
    pad = lambda x: np.concatenate(  # noqa: E731
        [x, np.repeat(x[-1:], t_max - x.shape[0], axis=0)]) if x.shape[0] < t_max else x
    emg = jnp.asarray(np.stack([pad(np.asarray(t.emg, float)) for t in share.trials]), dtype)
    ts_all = jnp.asarray(np.stack([pad(t.time()) for t in share.trials]), dtype)

    targets_f, f_weight = None, 0.0
    if force_labels:
        targets_f = [np.asarray(t.forces, float) for t in share.trials]
        f_weight = config.force_weight
    elif config.force_prior:
        targets_f = []
        for t in share.trials:
            _, f_hat = generic(jnp.asarray(t.emg, dtype))
            f_hat = np.asarray(f_hat, float)
            targets_f.append(np.concatenate([np.repeat(f_hat[:1], rf - 1, axis=0), f_hat]))
        f_weight = config.force_weight
    vf = config.validation_fraction
    train_b = _batch(share, shooting_segments(share, config.segment_seconds,
                                              config.stride_seconds, "train", vf), targets_f)
    val_b = _batch(share, shooting_segments(share, config.segment_seconds,
                                            config.stride_seconds, "val", vf), targets_f)
    q_all = np.concatenate([t.q for t in share.trials])
    q_sigma = float(max(np.std(q_all), 1e-3))
    f_sigma = 0.1 * np.asarray(model.muscles.params.max_isometric_force, float)
    # Samples whose excitation correction has no full window count only for the angles
    # (their correction is zero by construction).
    to_j = lambda b: {k: (jnp.asarray(v, dtype) if k not in ("trial", "index") else  # noqa: E731
                          jnp.asarray(v)) for k, v in b.items() if v is not None}
    train_j, val_j = to_j(train_b), to_j(val_b)

    params, static = eqx.partition(hybrid, eqx.is_inexact_array)
    spec = jax.tree.map(lambda _: False, hybrid)
    spec = eqx.tree_at(lambda h: (h.head, h.log_strength), spec,
                       (jax.tree.map(eqx.is_inexact_array, hybrid.head), True))
    train_p, frozen = eqx.partition(hybrid, spec)
    del params, static

    def loss_fn(trainable, batch, regularise=True):
        h = eqx.combine(trainable, frozen)
        m = h.subject_model()
        # What the test trials are driven by, and the correction for its penalty.
        u_all, c = jax.vmap(h.excitation_and_correction)(ts_all, emg)
        u = u_all[batch["trial"][:, None], batch["index"]]

        def one(ts, u_, q0, qdot0):
            y0 = m.initial_state(q0, qdot0, u_[0])
            sol = integrate(m, y0, ts, u_, solver="explicit", rtol=config.rtol,
                            atol=config.atol, max_steps=config.max_steps, throw=False)
            out = jax.vmap(m.outputs)(sol.ys)
            return sol.ys.q, out.tendon_force, sol.result == diffrax.RESULTS.successful

        q_sim, f_sim, ok = jax.vmap(one)(batch["ts"], u, batch["q"][:, 0], batch["qdot0"])
        okf = ok.astype(dtype)
        rq = jnp.where(ok[:, None, None], (q_sim - batch["q"]) / q_sigma, 0.0)
        loss = jnp.sum(jnp.mean(rq**2, axis=(1, 2)) * okf) / jnp.maximum(okf.sum(), 1.0)
        if "f" in batch and f_weight > 0:
            rf_ = jnp.where(ok[:, None, None], (f_sim - batch["f"]) / f_sigma, 0.0)
            loss = loss + f_weight * jnp.sum(jnp.mean(rf_**2, axis=(1, 2)) * okf) \
                / jnp.maximum(okf.sum(), 1.0)
        # A failed segment costs as much as a bad fit, so the optimiser steers away from it.
        loss = loss + 10.0 * jnp.mean(1.0 - okf)
        if regularise:
            loss = loss + config.correction_penalty * jnp.mean(c**2) \
                + config.strength_penalty * jnp.mean(trainable.log_strength**2)
        return loss, jnp.sum(1 - ok.astype(jnp.int32))

    def lr(rate):
        return optax.cosine_decay_schedule(rate, max(config.steps, 1), alpha=0.1)

    labels = jax.tree.map(lambda _: "head", train_p)
    labels = eqx.tree_at(lambda h: h.log_strength, labels, "strength")
    opt = optax.multi_transform({"head": optax.adam(lr(config.learning_rate)),
                                 "strength": optax.adam(lr(config.strength_learning_rate))},
                                labels)
    opt_state = opt.init(eqx.filter(train_p, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(trainable, state):
        (loss, failed), g = eqx.filter_value_and_grad(loss_fn, has_aux=True)(trainable, train_j)
        updates, state = opt.update(g, state, trainable)
        return eqx.apply_updates(trainable, updates), state, loss, failed

    @eqx.filter_jit
    def val_loss(trainable):
        return loss_fn(trainable, val_j, regularise=False)

    n_seg = len(train_b["trial"])
    say(f"{label}{n_seg} segments of {train_b['q'].shape[1]} samples simulated per step, "
        f"{config.steps} steps at most")
    best = (float(val_loss(train_p)[0]), 0, train_p)
    history = [{"step": 0, "val_loss": best[0]}]
    bad, t_start, first, steady = 0, time.perf_counter(), None, []
    for k in range(1, config.steps + 1):
        t0 = time.perf_counter()
        train_p, opt_state, loss, failed = step(train_p, opt_state)
        loss = float(loss)
        dt = time.perf_counter() - t0
        if first is None:
            first = dt
        else:
            steady.append(dt)
        if k % config.eval_every == 0 or k == config.steps:
            v, vf_ = val_loss(train_p)
            v = float(v)
            history.append({"step": k, "loss": loss, "val_loss": v,
                            "failed_segments": int(failed) + int(vf_)})
            say(f"{label}step {k}: loss {loss:.4g}, validation {v:.4g}"
                + (f" ({int(failed)} segments failed)" if int(failed) else ""))
            if np.isfinite(v) and v < best[0]:
                best, bad = (v, k, train_p), 0
            else:
                bad += 1
                if bad >= config.patience:
                    break
    seconds = time.perf_counter() - t_start
    failed = [h["step"] for h in history if h.get("failed_segments")]
    if failed:
        warnings.warn(f"{label}the simulation of some segments failed at steps {failed} "
                      "(they were left out of the loss there); loosen rtol/atol or shorten "
                      "segment_seconds if this persists.", RuntimeWarning, stacklevel=2)
    hybrid = eqx.combine(best[2], frozen)
    return HybridResult(hybrid, history, best[1], seconds,
                        float(np.median(steady)) if steady else float("nan"),
                        float(first or 0.0), n_seg)


__all__ = ["HybridConfig", "HybridMSK", "HybridResult", "personalise_hybrid",
           "shooting_segments"]
