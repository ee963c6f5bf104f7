"""Several folds of one training problem optimised together: one `eqx.filter_vmap`-ed train
step for all of them.

- `fit_stacked`: the optimisation of `train.fit` for F folds at once (the folds' networks,
  adjustments, optimiser states and batches stacked along a leading axis; the `Model`, the
  optimiser, the loss weights and the sampling interval shared). Each fold keeps its own
  batch sequence and its own early stopping, so the results are those of F sequential
  `fit` calls (up to floating-point rounding: a vmapped convolution or reduction may
  associate differently from an unbatched one).
- `train_generic_folds`: `transfer.train` for several leave-one-subject-out folds
  (one generic network per held-out subject), trained together through `fit_stacked`.

Memory: the stacked step holds F folds' parameters, optimiser states, activations and
gradients at once, and the folds' training and validation segments on the device (F × those
of one `fit`); where that does not fit, call `fit` per fold.

On CPU the stacked step is compiled with XLA's older fusion emitters: the current ones
miscompile the folds' vmapped sEMG delay (see `CPU_WORKAROUND`; `miscompilation_canary`
checks it on the backend in use, and `fit_stacked` refuses to run where neither compiles it
correctly).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._model import Model
from ..data._dataset import Dataset
from ..data._segments import Segments
from .loop import EarlyStopping, batch_rng
from .train import (
    FitResult,
    LossWeights,
    Predictor,
    SubjectAdjustment,
    loss_terms,
    make_optimizer,
    trainable_filter,
)

_USE_FIT = "fit_stacked needs folds of one structure and shape; use `fit` per fold instead."


def _stack(trees):
    """Array leaves of equal-structure pytrees stacked along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _path(path) -> str:
    return jax.tree_util.keystr(path) or "(root)"


def _structure_difference(a, b, path: str = "") -> str | None:
    """Where two pytrees first differ in structure (type, length, keys, static field)."""
    where = path or "(root)"
    if type(a) is not type(b):
        return f"{where} is a {type(b).__name__} (fold 0: {type(a).__name__})"
    if isinstance(a, eqx.Module):
        for field in dataclasses.fields(a):
            va, vb = getattr(a, field.name, None), getattr(b, field.name, None)
            here = f"{path}.{field.name}"
            if field.metadata.get("static", False):
                if not _same(va, vb):
                    return f"{here} = {vb!r} (fold 0: {va!r})"
            elif (d := _structure_difference(va, vb, here)) is not None:
                return d
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{where} has {len(b)} entries (fold 0: {len(a)})"
        for i, (x, y) in enumerate(zip(a, b)):
            if (d := _structure_difference(x, y, f"{path}[{i}]")) is not None:
                return d
    elif isinstance(a, dict):
        if set(a) != set(b):
            return f"{where} has keys {sorted(b)} (fold 0: {sorted(a)})"
        for k in a:
            if (d := _structure_difference(a[k], b[k], f"{path}[{k!r}]")) is not None:
                return d
    return None


def _same(a, b) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable objects count as different
        return False


def _check_folds(predictors, adjustments, trains, vals, keys) -> int:
    """The number of folds F; ValueError naming the first fold and the first shape, field or
    structure that differs from fold 0's."""
    n = len(predictors)
    if n == 0:
        raise ValueError("fit_stacked needs at least one fold.")
    for name, seq in (("adjustments", adjustments), ("trains", trains), ("vals", vals),
                      ("keys", keys)):
        if len(seq) != n:
            raise ValueError(f"{len(predictors)} predictors but {len(seq)} {name}: give one "
                             "of each per fold.")
    ref_leaves, ref_def = jax.tree_util.tree_flatten_with_path((predictors[0], adjustments[0]))
    for f in range(1, n):
        leaves, treedef = jax.tree_util.tree_flatten_with_path((predictors[f], adjustments[f]))
        if treedef != ref_def:
            where = _structure_difference((predictors[0], adjustments[0]),
                                          (predictors[f], adjustments[f]))
            raise ValueError(f"fold {f}: the network / adjustment differs in structure from "
                             f"fold 0's: {where or 'another pytree structure'}. {_USE_FIT}")
        for (p, a), (_, b) in zip(ref_leaves, leaves):
            if eqx.is_array(a) or eqx.is_array(b):
                sa, sb = (np.shape(a), jnp.result_type(a)), (np.shape(b), jnp.result_type(b))
                if not (eqx.is_array(a) and eqx.is_array(b)) or sa != sb:
                    raise ValueError(
                        f"fold {f}: {_path(p)} has shape {sb[0]} and dtype {sb[1]}, fold 0's "
                        f"{sa[0]} and {sa[1]}. {_USE_FIT}")
            else:
                if not _same(a, b):
                    raise ValueError(f"fold {f}: {_path(p)} is {b!r}, fold 0's {a!r} (a "
                                     f"non-array field the folds must share). {_USE_FIT}")
    for name, segs in (("train", trains), ("validation", vals)):
        for f in range(1, n):
            for field in ("emg", "q", "forces"):
                a, b = getattr(segs[0], field), getattr(segs[f], field)
                if a.shape != b.shape:
                    what = (f"another number of {name} segments" if a.shape[1:] == b.shape[1:]
                            else "another segment shape")
                    raise ValueError(f"fold {f}: {name} {field} has shape {b.shape}, fold 0's "
                                     f"{a.shape} ({what}). {_USE_FIT}")
    for f in range(1, n):
        if trains[f].fs != trains[0].fs:
            raise ValueError(f"fold {f}: train segments at {trains[f].fs} Hz, fold 0's at "
                             f"{trains[0].fs} Hz. {_USE_FIT}")
    return n


def _stacked_step_impl(p, static, state, active, emg, q, f, idx, model, optim, weights, dt):
    """`train.train_step` for every fold (leading axis of p, static's arrays, state, active,
    emg, q, f, idx); the batch is gathered on the device from the fold's training segments
    (emg, q, f: (F, n, ...)) at idx (F, batch). Stopped folds (active False) keep their
    parameters and optimiser state."""

    def one(p, static, state, active, emg, q, f, idx):
        (loss, aux), g = eqx.filter_value_and_grad(loss_terms, has_aux=True)(
            p, static, emg[idx], q[idx], f[idx], model, weights, dt)
        updates, new_state = optim.update(g, state, p)
        new_p = eqx.apply_updates(p, updates)
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        return jax.tree.map(keep, new_p, p), jax.tree.map(keep, new_state, state), loss, aux

    return eqx.filter_vmap(one)(p, static, state, active, emg, q, f, idx)


def _stacked_loss_impl(p, static, emg, q, f, model, weights, dt):
    return eqx.filter_vmap(lambda p, s, e, qq, ff: loss_terms(p, s, e, qq, ff, model, weights,
                                                               dt))(p, static, emg, q, f)


def _select_impl(mask, new, old):
    return jax.tree.map(
        lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)


_select = eqx.filter_jit(_select_impl)

# XLA:CPU (jaxlib 0.10.2) miscompiles a gather whose indices are batched along one vmapped
# axis and its operand along another when a scan consumes it: `losses` delays each
# segment's sEMG by the adjustment's electromechanical delay (`data._emg.delay`, a gather)
# before the activation dynamics (a scan), and under the folds' vmap the delay is batched
# over folds, the segments over (folds, segments). The result is wrong by whole samples
# (consistency losses off by ~1 %), silently. XLA's older CPU fusion emitters compile it
# correctly; `miscompilation_canary` checks the pattern on the backend in use.
CPU_WORKAROUND = {"xla_cpu_use_fusion_emitters": False}


def miscompilation_canary(**jitkw) -> bool:
    """Whether jit(vmap(f)) agrees with jit(f) on the smallest form of that pattern."""
    def f(seconds, x):
        def one(e):
            n = e.shape[0]
            pos = jnp.clip(jnp.arange(n, dtype=e.dtype) - seconds * 100.0, 0.0, n - 1.0)
            y = e[jnp.clip(jnp.floor(pos), 0, n - 2).astype(jnp.int32)]
            return jax.lax.scan(lambda a, v: (a + 0.5 * (v - a),) * 2, y[0], y[1:])[1]
        return jax.vmap(one)(x)

    x = jnp.arange(1.0, 11.0)[None, :, None]
    s = jnp.full(2, 0.05)
    ref = jax.jit(f, **jitkw)(s[0], x)
    got = jax.jit(jax.vmap(f, in_axes=(0, None)), **jitkw)(s, x)
    return bool(jnp.all(got == ref[None]))


@functools.cache
def _compiled(backend: str, x64: bool):
    """The stacked train step and validation loss, jit-compiled (module level, so that calls
    with the same structure, shapes and settings share one compilation, as
    `train.train_step` does for `fit`), with the workaround above where needed."""
    kw = {}
    if not miscompilation_canary():
        try:
            ok = backend == "cpu" and miscompilation_canary(compiler_options=CPU_WORKAROUND)
        except Exception:  # noqa: BLE001 - the option is gone from this XLA
            ok = False
        if not ok:
            raise RuntimeError(
                f"this JAX/XLA build miscompiles vmapped gathers feeding a scan on {backend} "
                "(see jaxmsk._learn.folds), so folds cannot be stacked correctly here; use `fit` "
                "per fold.")
        kw = {"compiler_options": CPU_WORKAROUND}
    return eqx.filter_jit(_stacked_step_impl, **kw), eqx.filter_jit(_stacked_loss_impl, **kw)


def fit_stacked(predictors: Sequence[Predictor], adjustments: Sequence[SubjectAdjustment],
                model: Model, trains: Sequence[Segments], vals: Sequence[Segments], *, keys,
                trainable: str = "all", train_physical: bool = False,
                weights: LossWeights = LossWeights(),  # noqa: B008
                steps: int = 1000, batch_size: int = 32,
                learning_rate: float = 3e-3, physical_learning_rate: float | None = None,
                eval_every: int = 50, patience: int = 6,
                progress: Callable[[str], None] | None = None, label: str = ""
                ) -> list[FitResult]:
    """`fit` for F folds at once: one jit-compiled, `eqx.filter_vmap`-ed train step updates
    every fold's parameters from its own batch.

    Fold f is optimised exactly as `fit(predictors[f], adjustments[f], model, trains[f],
    vals[f], key=keys[f], ...)` with the same settings: the same Adam with cosine-decayed
    rate, the same batches (a NumPy generator seeded from the fold's key, `batch_size`
    segments drawn each step), validation every `eval_every` steps and at the last, and its
    own early stopping (stopped after `patience` evaluations without a better validation
    loss; a stopped fold's parameters and optimiser state no longer change while the
    others go on). The loop ends when every fold has stopped or after `steps`. Results
    agree with sequential `fit` up to floating-point rounding (vmapped convolutions and
    reductions may associate differently).

    Args:
        predictors, adjustments, trains, vals, keys: one per fold. The folds must share the
            network architecture (one pytree structure, array shapes and dtypes, and equal
            non-array fields), the number of training and of validation segments, the
            segment shapes and the sampling rate; otherwise ValueError (then use `fit` per
            fold).
        model: the generic `Model` (shared by the folds, not stacked).
        trainable, train_physical, weights, steps, batch_size, learning_rate,
        physical_learning_rate, eval_every, patience: as in `fit`, shared by the folds.
        progress: called with one line per evaluation summarising the folds (mean, min and
            max validation loss of the folds evaluated, folds still training, elapsed time)
            and naming folds that stop there.
        label: prefix of the progress lines.

    No checkpoints: an interrupted `fit_stacked` starts again from the beginning (`fit`
    per fold can checkpoint and resume).

    Memory: F × that of one `fit` step (parameters, optimiser states, activations and
    gradients), plus every fold's training and validation segments on the device.

    Returns one `FitResult` per fold, in order (history, best_step and the best parameters
    as `fit` gives them; `.seconds` is the wall time of the shared optimisation).
    """
    n_folds = _check_folds(predictors, adjustments, trains, vals, keys)
    _stacked_step, _stacked_loss = _compiled(jax.default_backend(),
                                             bool(jax.config.jax_enable_x64))
    say = progress or (lambda s: None)
    dt = 1.0 / trains[0].fs
    parts = [eqx.partition((p, a), trainable_filter(p, a, trainable, train_physical))
             for p, a in zip(predictors, adjustments)]
    statics = [s for _, s in parts]
    optim = make_optimizer(learning_rate, steps, physical_learning_rate)
    params = _stack([p for p, _ in parts])
    opt_state = _stack([optim.init(p) for p, _ in parts])
    # Arrays outside the trained parameters (output standardisation, frozen layers, a fixed
    # adjustment) differ per fold: stacked and mapped; the rest (activation functions,
    # sizes) is shared, checked equal by `_check_folds`.
    s_arrays = [eqx.partition(s, eqx.is_array) for s in statics]
    static = eqx.combine(_stack([a for a, _ in s_arrays]), s_arrays[0][1])

    rngs = [batch_rng(k) for k in keys]
    n_train = len(trains[0])
    temg, tq, tf = (jnp.asarray(np.stack([getattr(t, x) for t in trains]))
                    for x in ("emg", "q", "forces"))
    vemg, vq, vf = (jnp.asarray(np.stack([getattr(v, x) for v in vals]))
                    for x in ("emg", "q", "forces"))

    stopping = EarlyStopping(n_folds, patience)
    active = stopping.active
    best_params = params
    active_dev = jnp.asarray(active)
    idx = np.zeros((n_folds, batch_size), np.int64)
    t0 = time.perf_counter()
    for i in range(steps):
        for f in np.flatnonzero(active):
            idx[f] = rngs[f].integers(0, n_train, batch_size)
        params, opt_state, loss, (data, phys) = _stacked_step(
            params, static, opt_state, active_dev, temg, tq, tf, jnp.asarray(idx), model, optim,
            weights, dt)
        if (i + 1) % eval_every == 0 or i + 1 == steps:
            vloss, (vdata, vphys) = _stacked_loss(params, static, vemg, vq, vf, model, weights,
                                                  dt)
            evaluated, improved, stopped = stopping.record(i + 1, loss, data, phys, vloss,
                                                           vdata, vphys)
            if improved.any():
                best_params = _select(jnp.asarray(improved), params, best_params)
            v = np.asarray(vloss, np.float64)[evaluated]
            line = (f"{label}step {i + 1:5d}/{steps}  val mean {v.mean():.4f}  min {v.min():.4f}"
                    f"  max {v.max():.4f} ({len(evaluated)} folds)  training "
                    f"{int(active.sum())}/{n_folds}  {time.perf_counter() - t0:.0f} s")
            if stopped:
                line += "; early stop: " + ", ".join(
                    f"fold {f} (best validation at step {stopping.best_step[f]})" for f in stopped)
            say(line)
            if not active.any():
                break
            if stopped:
                active_dev = jnp.asarray(active)
    seconds = time.perf_counter() - t0
    out = []
    for f in range(n_folds):
        p_f = jax.tree.map(lambda x, f=f: x[f], best_params)
        pred, adj = eqx.combine(p_f, statics[f])
        out.append(FitResult(pred, adj, stopping.histories[f], int(stopping.best_step[f]),
                             seconds, trains[f], vals[f]))
    return out


def train_generic_folds(dataset: Dataset, targets: Sequence[str], model: Model, config,
                        keys, *, physics: bool = True,
                        progress: Callable[[str], None] | None = None) -> list[FitResult]:
    """The generic networks of several leave-one-subject-out folds, trained together.

    For each `targets[i]` this is `transfer.train(source, model, config, key=keys[i],
    physics=physics)` with `source` = every subject of `dataset` but the target (the same
    network initialisation, segments, train/validation split, loss weights and budget),
    optimised through `fit_stacked` (so: no checkpoints; ValueError if the folds'
    segment counts differ, e.g. subjects with different recording lengths — then call
    `train` per fold).

    Args:
        dataset: processed trials of every subject (`train`'s requirements).
        targets: the held-out subjects, one fold each.
        model: the generic `Model`.
        config: a `TransferConfig`.
        keys: one JAX PRNG key per target.
        physics: False for a data-only loss.
        progress: called with a line per evaluation summarising the folds.

    Returns one `FitResult` per target, in order.
    """
    from .transfer import generic_start, loss_weights

    keys = list(keys)
    if len(keys) != len(targets):
        raise ValueError(f"{len(targets)} targets but {len(keys)} keys: give one key per "
                         "target.")
    predictors, trains, vals, fit_keys = [], [], [], []
    for target, key in zip(targets, keys):
        if target not in dataset.subjects:
            raise ValueError(f"target {target!r} is not a subject of the dataset "
                             f"({', '.join(dataset.subjects)}).")
        source, _ = dataset.leave_one_subject_out(target)
        start, train, val, k_fit = generic_start(source, config, key)
        predictors.append(start)
        trains.append(train)
        vals.append(val)
        fit_keys.append(k_fit)
    adjustments = [SubjectAdjustment.identity(model.n_muscles) for _ in targets]
    return fit_stacked(predictors, adjustments, model, trains, vals, keys=fit_keys,
                       trainable="all", weights=loss_weights(config, physics, regularise=False),
                       steps=config.generic_steps, batch_size=config.batch_size,
                       learning_rate=config.generic_learning_rate,
                       eval_every=config.eval_every, patience=config.patience,
                       progress=progress, label="generic: ")


__all__ = ["fit_stacked", "train_generic_folds"]
