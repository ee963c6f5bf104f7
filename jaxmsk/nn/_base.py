"""The interface every EMG → forces + kinematics network implements, and filter specs.

A network is a *feature extractor* followed by a *head*:

    emg (time, channels) ──features──▶ (time_out, F) ──head per step──▶ (time_out, outputs)

with `time_out = time - receptive_field + 1`. Output step k is aligned with the window of
inputs k … k + receptive_field − 1, i.e. with the window that *ends* at input index
k + receptive_field − 1; equivalently, output k is the estimate at input time
k + receptive_field − 1 made from that sample and the receptive_field − 1 before it (causal,
no look-ahead). To align outputs with targets sampled on the input grid, drop the first
`receptive_field − 1` target samples: `targets[net.receptive_field - 1:]`.

Networks output a whole *sequence* (not one window → one value) because the physics-informed
losses take finite differences of the predicted joint angle.

Transfer learning (Zhang et al. 2022) freezes the feature extractor and fine-tunes only the
subject-specific head. `head_filter` and `features_filter` give the boolean filter specs for
`eqx.partition` / `optax.multi_transform`; nothing is mutated.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree


class EMGRegressor(eqx.Module):
    """Abstract base of the EMG → (muscle forces, joint angles) networks. Subclasses are final.

    Attributes (provided by every subclass):
        features: module mapping EMG `(time, n_inputs)` → features `(time_out, F)`, with
            `time_out = time - receptive_field + 1` and output k depending only on inputs
            k … k + receptive_field − 1 (recurrent extractors may also see earlier inputs; see
            `GRU`).
        head: module mapping one feature vector `(F,)` → `(n_outputs,)`; applied to every
            time step. In transfer learning this is the only part that is fine-tuned.
        receptive_field: number of input samples behind each output (static).
        n_inputs: number of EMG channels, one per muscle (static).
        n_outputs: number of regressed quantities, e.g. 5 muscle forces + 1 angle (static).

    Calling a network:
        `net(emg)` with `emg` of shape `(time, n_inputs)` and `time >= receptive_field`
        returns `(time - receptive_field + 1, n_outputs)`. Write for one sequence; `jax.vmap`
        over a batch. Output units are whatever the targets were in (the networks are plain
        regressors; normalise forces and angles before training).
    """

    features: eqx.AbstractVar[Any]
    head: eqx.AbstractVar[Any]
    receptive_field: eqx.AbstractVar[int]
    n_inputs: eqx.AbstractVar[int]
    n_outputs: eqx.AbstractVar[int]

    def __check_init__(self):
        for name in ("receptive_field", "n_inputs", "n_outputs"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be a positive int, got {value!r}."
                )

    def __call__(
        self, emg: Float[ArrayLike, "time channels"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "time_out outputs"]:
        """Regress one EMG sequence.

        Args:
            emg: EMG envelopes, shape `(time, n_inputs)` (time first, one channel per muscle).
            key: unused by the deterministic networks here; accepted so that stochastic
                networks (dropout) share the call signature.

        Returns:
            `(time - receptive_field + 1, n_outputs)`; row k is aligned with input index
            `k + receptive_field - 1`.
        """
        del key
        emg = check_emg(self, emg)
        feats = self.features(emg)
        return jax.vmap(self.head)(feats)


def check_emg(net: EMGRegressor, emg: ArrayLike) -> Array:
    """Trace-time shape checks on one EMG sequence; returns it as an inexact array."""
    name = type(net).__name__
    emg = jnp.asarray(emg)
    if not jnp.issubdtype(emg.dtype, jnp.inexact):
        emg = emg.astype(jnp.result_type(float))
    if emg.ndim != 2:
        hint = (" For a batch of sequences, use jax.vmap(net)(emg)."
                if emg.ndim == 3 else "")
        raise ValueError(
            f"{name}: emg must have shape (time, channels) = (time, {net.n_inputs}), got shape "
            f"{tuple(emg.shape)}.{hint}"
        )
    time, channels = emg.shape
    if channels != net.n_inputs:
        extra = (" emg looks transposed: pass emg.T (time must be the first axis)."
                 if time == net.n_inputs else
                 f" Build the network with n_inputs={channels} or select the network's "
                 f"{net.n_inputs} muscles' channels.")
        raise ValueError(
            f"{name} expects emg with n_inputs={net.n_inputs} channels (one per muscle) on "
            f"axis 1, got {channels} (emg shape {tuple(emg.shape)}).{extra}"
        )
    if time < net.receptive_field:
        raise ValueError(
            f"{name} needs at least receptive_field={net.receptive_field} time samples, got "
            f"emg with {time}. Pass a longer sequence (output length is "
            f"time - {net.receptive_field - 1}) or build a network with a smaller receptive "
            f"field."
        )
    return emg


def _part_filter(net: EMGRegressor, part: str) -> PyTree[bool]:
    if not isinstance(net, EMGRegressor):
        raise TypeError(
            f"expected a jaxmsk.nn network (an EMGRegressor), got {type(net).__name__}."
        )
    spec = jax.tree.map(lambda _: False, net)
    part_spec = jax.tree.map(eqx.is_inexact_array, getattr(net, part))
    return eqx.tree_at(lambda n: getattr(n, part), spec, replace=part_spec)


def head_filter(net: EMGRegressor) -> PyTree[bool]:
    """Filter spec, same structure as `net`: True exactly on the head's inexact arrays.

    Use it to fine-tune only the subject-specific head (Zhang et al. 2022):

        trainable, frozen = eqx.partition(net, head_filter(net))
        opt_state = optimizer.init(trainable)
        ...  # grads w.r.t. trainable; eqx.combine(trainable, frozen) to call

    or as the labels of `optax.multi_transform` (True → optimiser, False →
    `optax.set_to_zero()`). The spec is a module, and modules are callable, which optax
    would call on the parameters: pass it wrapped,

        labels = jax.tree.map(lambda h: "head" if h else "frozen", head_filter(net))
        optax.multi_transform({"head": optax.adam(1e-3), "frozen": optax.set_to_zero()},
                              lambda _: labels)
    """
    return _part_filter(net, "head")


def features_filter(net: EMGRegressor) -> PyTree[bool]:
    """Filter spec: True exactly on the feature extractor's inexact arrays.

    Complement of `head_filter` on the network's parameters (every inexact array is in
    exactly one of the two)."""
    return _part_filter(net, "features")


def _is_inexact_leaf(x) -> bool:
    return eqx.is_inexact_array(x) or (
        isinstance(x, jax.ShapeDtypeStruct) and jnp.issubdtype(x.dtype, jnp.inexact)
    )


def count_parameters(net: PyTree) -> int:
    """Number of trainable scalars: total size of the inexact arrays in `net`.

    Also counts an abstract network, so sizes can be checked without initialising:
    `count_parameters(eqx.filter_eval_shape(CNN, 5, 6, key=jax.random.key(0)))`.
    """
    leaves = [x for x in jax.tree.leaves(net) if _is_inexact_leaf(x)]
    return int(sum(np.prod(leaf.shape, dtype=int) for leaf in leaves))


__all__ = ["EMGRegressor", "head_filter", "features_filter", "count_parameters"]
