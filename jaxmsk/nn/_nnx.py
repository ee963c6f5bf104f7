"""Flax NNX models as jaxmsk networks.

`NNXRegressor` turns a Flax NNX model with `features` and `head` submodules into an
`EMGRegressor`: an immutable equinox pytree whose array leaves are the NNX parameters. Each
submodule is split once (`nnx.split`) into its `GraphDef` (stored as static configuration)
and its `nnx.State` (the pytree of parameters); calling re-assembles it with `nnx.merge` and
applies it. The adapter therefore works with `jax.jit`, `jax.vmap`, `eqx.filter_grad`,
optax, and `head_filter` / `features_filter` (True exactly on the head's / features' state
arrays) exactly like the equinox networks. `write_to(model)` copies trained parameters back
into an NNX model (`nnx.update`).

Contract on the NNX model: `model.features` maps EMG `(time, n_inputs)` →
`(time - receptive_field + 1, F)` (causal, aligned as in `jaxmsk.nn._base`, e.g. VALID
convolutions over time) and `model.head` maps `(F,)` → `(n_outputs,)`. The adapter computes
`head(features(emg))` per time step, which is the model's own `__call__` whenever that is
`head(features(x))`; any other logic in the model's `__call__` is not used.

The adapter is for deterministic models (parameters only, as in inference mode): state that an
NNX module would mutate while being called (BatchNorm running statistics, Dropout's RNG
counters) is merged into a temporary copy on every call and not carried out of it. Only
inexact arrays are parameters for `head_filter`, `features_filter` and `count_parameters`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import flax.nnx as nnx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ._base import EMGRegressor


class NNXPart(eqx.Module):
    """One NNX submodule in functional form: static `graphdef` + `state` (its arrays)."""

    graphdef: nnx.GraphDef = eqx.field(static=True)
    state: nnx.State

    def __init__(self, module: nnx.Module):
        self.graphdef, self.state = nnx.split(module)

    def __call__(self, x: Array) -> Array:
        return nnx.merge(self.graphdef, self.state)(x)


class NNXRegressor(EMGRegressor):
    """Adapter: a Flax NNX model with `features` and `head` submodules as an `EMGRegressor`.

    Args:
        model: the NNX model (not modified; its parameters are copied by reference into the
            adapter's state). See the module docstring for the contract.
        n_inputs: EMG channels the model takes.
        receptive_field: input samples behind each output; defaults to
            `model.receptive_field` if the model defines it.

    `n_outputs` is inferred (shape evaluation, no compute), and the features' output length
    is checked against `receptive_field` at construction.

    Shapes: `(time, n_inputs)` → `(time - receptive_field + 1, n_outputs)`.
    """

    features: NNXPart
    head: NNXPart
    receptive_field: int = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)
    n_outputs: int = eqx.field(static=True)

    def __init__(self, model: nnx.Module, *, n_inputs: int, receptive_field: int | None = None):
        for part in ("features", "head"):
            if not isinstance(getattr(model, part, None), nnx.Module):
                raise ValueError(
                    f"NNXRegressor: the model ({type(model).__name__}) needs an nnx.Module "
                    f"attribute `{part}` (feature extractor `features` (time, channels) → "
                    "(time_out, F) and per-step regression `head` (F,) → (outputs,)); "
                    f"got {type(getattr(model, part, None)).__name__}."
                )
        if receptive_field is None:
            receptive_field = getattr(model, "receptive_field", None)
            if receptive_field is None:
                raise ValueError(
                    "NNXRegressor: pass receptive_field=... (the number of input samples "
                    f"behind each output); {type(model).__name__} has no `receptive_field`."
                )
        self.features = NNXPart(model.features)
        self.head = NNXPart(model.head)
        self.receptive_field = int(receptive_field)
        self.n_inputs = int(n_inputs)

        time = self.receptive_field + 7
        probe = jax.ShapeDtypeStruct((time, self.n_inputs), jnp.result_type(float))
        feats = jax.eval_shape(self.features, probe)
        if feats.ndim != 2 or feats.shape[0] != time - self.receptive_field + 1:
            raise ValueError(
                f"NNXRegressor: model.features maps emg of shape {(time, self.n_inputs)} to "
                f"{feats.shape}, expected (time - receptive_field + 1, F) = "
                f"({time - self.receptive_field + 1}, F) for receptive_field="
                f"{self.receptive_field}. Use VALID padding over time and pass the right "
                "receptive_field."
            )
        out = jax.eval_shape(self.head, jax.ShapeDtypeStruct(feats.shape[1:], feats.dtype))
        if out.ndim != 1:
            raise ValueError(
                f"NNXRegressor: model.head must map one feature vector {feats.shape[1:]} to "
                f"(n_outputs,), got output shape {out.shape}."
            )
        self.n_outputs = int(out.shape[0])

    def write_to(self, model: nnx.Module) -> nnx.Module:
        """Copy this adapter's (e.g. fine-tuned) parameters into `model` in place
        (`nnx.update`); returns `model`."""
        nnx.update(model.features, self.features.state)
        nnx.update(model.head, self.head.state)
        return model


class NNXConvNet(nnx.Module):
    """Example NNX model for `NNXRegressor`: VALID `nnx.Conv` layers over time + a linear head.

    `features`: `nnx.Sequential` of convolutions (channels-last, `(time, channels)`), each
    followed by GELU; `head`: `nnx.Linear(channels[-1], n_outputs)`.
    `receptive_field = 1 + Σ (kernel_size_i − 1)`.

    Shapes: `(time, n_inputs)` → `(time - receptive_field + 1, n_outputs)`.
    """

    def __init__(self, n_inputs: int, n_outputs: int, *, channels: Sequence[int] = (16, 16),
                 kernel_sizes: Sequence[int] = (8, 8), activation: Callable = jax.nn.gelu,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        channels, kernel_sizes = tuple(channels), tuple(kernel_sizes)
        if len(channels) != len(kernel_sizes) or not channels:
            raise ValueError(
                f"NNXConvNet: channels {channels} and kernel_sizes {kernel_sizes} must be "
                "non-empty with one entry per layer."
            )
        sizes = (n_inputs,) + channels
        layers = []
        for i, k in enumerate(kernel_sizes):
            layers += [nnx.Conv(sizes[i], sizes[i + 1], k, padding="VALID",
                                param_dtype=param_dtype, rngs=rngs), activation]
        self.features = nnx.Sequential(*layers)
        self.head = nnx.Linear(channels[-1], n_outputs, param_dtype=param_dtype, rngs=rngs)
        self.receptive_field = 1 + sum(k - 1 for k in kernel_sizes)

    def __call__(self, emg: Array, *, key: PRNGKeyArray | None = None) -> Array:
        del key
        return self.head(self.features(emg))


__all__ = ["NNXRegressor", "NNXConvNet", "NNXPart"]
