"""Windowed feed-forward networks: the paper's CNN, a dilated TCN and a windowed MLP.

All three see exactly `receptive_field` input samples per output (no look-ahead, no memory
beyond the window). Convolutions use VALID padding, so the output is shorter than the input
by `receptive_field − 1` samples and output k is aligned with the window ending at input
k + receptive_field − 1 (see `jaxmsk.nn._base`). Convolutions in equinox take
`(channels, time)`; the modules here take and return `(time, channels)` and transpose inside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import EMGRegressor


def check_sizes(owner: str, **sizes) -> None:
    for name, value in sizes.items():
        values = value if isinstance(value, tuple) else (value,)
        if len(values) == 0 or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
            for v in values
        ):
            raise ValueError(f"{owner}: {name} must be positive int(s), got {value!r}.")


class ConvStack(eqx.Module):
    """Stacked VALID 1-D convolutions, each followed by `activation`.

    Maps `(time, in_channels)` → `(time - receptive_field + 1, channels[-1])` with
    `receptive_field = 1 + Σ (kernel_size_i − 1)`.
    """

    layers: tuple[eqx.nn.Conv1d, ...]
    activation: Callable = eqx.field(static=True)
    receptive_field: int = eqx.field(static=True)

    def __init__(self, in_channels: int, channels: Sequence[int], kernel_sizes: Sequence[int],
                 activation: Callable, *, key: PRNGKeyArray):
        channels, kernel_sizes = tuple(channels), tuple(kernel_sizes)
        if len(channels) != len(kernel_sizes):
            raise ValueError(
                f"ConvStack: channels {channels} and kernel_sizes {kernel_sizes} must have one "
                "entry per layer (same length)."
            )
        keys = jax.random.split(key, len(channels))
        sizes = (in_channels,) + channels
        self.layers = tuple(
            eqx.nn.Conv1d(sizes[i], sizes[i + 1], kernel_sizes[i], padding="VALID", key=keys[i])
            for i in range(len(channels))
        )
        self.activation = activation
        self.receptive_field = 1 + sum(k - 1 for k in kernel_sizes)

    def __call__(self, x: Float[Array, "time in"]) -> Float[Array, "time_out out"]:
        h = x.T
        for layer in self.layers:
            h = self.activation(layer(h))
        return h.T


class ResidualDilatedConv(eqx.Module):
    """Dilated TCN: a 1×1 input projection, then blocks `h ← h[crop] + act(conv_d(h))`.

    Each block's convolution has kernel `kernel_size` and dilation d (VALID padding), so it
    shortens the sequence by `(kernel_size − 1)·d`; the residual branch is cropped to the
    *last* samples of each window (`h[(kernel_size-1)·d:]`) so both branches are aligned with
    the window's final input. Receptive field `1 + (kernel_size − 1)·Σ d`.
    Maps `(time, in_channels)` → `(time - receptive_field + 1, channels)`.
    """

    projection: eqx.nn.Conv1d
    blocks: tuple[eqx.nn.Conv1d, ...]
    activation: Callable = eqx.field(static=True)
    receptive_field: int = eqx.field(static=True)

    def __init__(self, in_channels: int, channels: int, kernel_size: int,
                 dilations: Sequence[int], activation: Callable, *, key: PRNGKeyArray):
        dilations = tuple(dilations)
        pkey, *bkeys = jax.random.split(key, len(dilations) + 1)
        self.projection = eqx.nn.Conv1d(in_channels, channels, 1, key=pkey)
        self.blocks = tuple(
            eqx.nn.Conv1d(channels, channels, kernel_size, padding="VALID", dilation=d, key=k)
            for d, k in zip(dilations, bkeys)
        )
        self.activation = activation
        self.receptive_field = 1 + (kernel_size - 1) * sum(dilations)

    def __call__(self, x: Float[Array, "time in"]) -> Float[Array, "time_out out"]:
        h = self.projection(x.T)
        for block in self.blocks:
            y = self.activation(block(h))
            h = h[:, h.shape[1] - y.shape[1]:] + y
        return h.T


class SlidingWindowMLP(eqx.Module):
    """Flattens each window of `window` consecutive samples and applies an MLP.

    Maps `(time, in_channels)` → `(time - window + 1, out_size)`; window k holds inputs
    k … k + window − 1 (flattened time-major, `(window·in_channels,)`).
    """

    mlp: eqx.nn.MLP
    window: int = eqx.field(static=True)

    def __init__(self, in_channels: int, window: int, out_size: int, width: int, depth: int,
                 activation: Callable, *, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(window * in_channels, out_size, width, depth,
                              activation=activation, final_activation=activation, key=key)
        self.window = window

    def __call__(self, x: Float[Array, "time in"]) -> Float[Array, "time_out out"]:
        n_out = x.shape[0] - self.window + 1
        idx = jnp.arange(n_out)[:, None] + jnp.arange(self.window)[None, :]
        windows = x[idx].reshape(n_out, -1)
        return jax.vmap(self.mlp)(windows)


def mlp_head(in_size: int, n_outputs: int, width: int, activation: Callable, key):
    return eqx.nn.MLP(in_size, n_outputs, width, 1, activation=activation, key=key)


class CNN(EMGRegressor):
    """The convolutional EMG → forces + angle network of Zhang et al. (2022).

    `features`: VALID 1-D temporal convolutions (default 3 layers of 32 channels, kernels
    (12, 11, 11) → receptive field 32 samples = 0.32 s at 100 Hz), each followed by
    `activation`. `head`: an `eqx.nn.MLP` with one hidden layer of `head_width` units,
    applied per time step — the subject-specific layers fine-tuned in transfer.

    Departures from the paper: the paper gives the architecture for its data; sizes here are
    defaults chosen for 5-channel 100 Hz envelopes and are all arguments. GELU by default
    (pass `activation=jax.nn.relu` for ReLU).

    Args:
        n_inputs: EMG channels (muscles), e.g. 5 for the wrist.
        n_outputs: regressed quantities, e.g. 5 muscle forces + 1 joint angle = 6.
        channels: output channels of each convolution.
        kernel_sizes: kernel size of each convolution (same length as `channels`).
        head_width: hidden units of the head.
        activation: element-wise nonlinearity.
        key: PRNG key for initialisation.

    Shapes: `(time, n_inputs)` → `(time - receptive_field + 1, n_outputs)`.
    """

    features: ConvStack
    head: eqx.nn.MLP
    receptive_field: int = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)
    n_outputs: int = eqx.field(static=True)

    def __init__(self, n_inputs: int, n_outputs: int, *, channels: Sequence[int] = (32, 32, 32),
                 kernel_sizes: Sequence[int] = (12, 11, 11), head_width: int = 64,
                 activation: Callable = jax.nn.gelu, key: PRNGKeyArray):
        channels, kernel_sizes = tuple(channels), tuple(kernel_sizes)
        check_sizes("CNN", n_inputs=n_inputs, n_outputs=n_outputs, channels=channels,
                     kernel_sizes=kernel_sizes, head_width=head_width)
        fkey, hkey = jax.random.split(key)
        self.features = ConvStack(n_inputs, channels, kernel_sizes, activation, key=fkey)
        self.head = mlp_head(channels[-1], n_outputs, head_width, activation, hkey)
        self.receptive_field = self.features.receptive_field
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs


class TCN(EMGRegressor):
    """Temporal convolutional network: dilated convolutions with residual connections.

    `features`: a 1×1 projection to `channels`, then one residual block per dilation
    (default kernel 3, dilations (1, 2, 4, 8) → receptive field 31 samples = 0.31 s at
    100 Hz). Causal in the sense of `jaxmsk.nn._base`: VALID padding instead of the usual left
    zero-padding, so no output is computed from padded zeros. `head`: MLP with one hidden
    layer of `head_width`, per time step.

    Shapes: `(time, n_inputs)` → `(time - receptive_field + 1, n_outputs)`.
    """

    features: ResidualDilatedConv
    head: eqx.nn.MLP
    receptive_field: int = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)
    n_outputs: int = eqx.field(static=True)

    def __init__(self, n_inputs: int, n_outputs: int, *, channels: int = 32,
                 kernel_size: int = 3, dilations: Sequence[int] = (1, 2, 4, 8),
                 head_width: int = 64, activation: Callable = jax.nn.gelu,
                 key: PRNGKeyArray):
        dilations = tuple(dilations)
        check_sizes("TCN", n_inputs=n_inputs, n_outputs=n_outputs, channels=channels,
                     kernel_size=kernel_size, dilations=dilations, head_width=head_width)
        fkey, hkey = jax.random.split(key)
        self.features = ResidualDilatedConv(n_inputs, channels, kernel_size, dilations,
                                            activation, key=fkey)
        self.head = mlp_head(channels, n_outputs, head_width, activation, hkey)
        self.receptive_field = self.features.receptive_field
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs


class MLP(EMGRegressor):
    """Windowed multilayer perceptron: a baseline without temporal weight sharing.

    `features`: each window of `window` samples (default 32 = 0.32 s at 100 Hz) is flattened
    to `(window·n_inputs,)` and mapped by an MLP (`depth` hidden layers of `width`, output
    `width`, activation after every layer). `head`: MLP with one hidden layer of
    `head_width`, per time step. `receptive_field = window`.

    Shapes: `(time, n_inputs)` → `(time - window + 1, n_outputs)`.
    """

    features: SlidingWindowMLP
    head: eqx.nn.MLP
    receptive_field: int = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)
    n_outputs: int = eqx.field(static=True)

    def __init__(self, n_inputs: int, n_outputs: int, *, window: int = 32, width: int = 64,
                 depth: int = 1, head_width: int = 64, activation: Callable = jax.nn.gelu,
                 key: PRNGKeyArray):
        check_sizes("MLP", n_inputs=n_inputs, n_outputs=n_outputs, window=window, width=width,
                     depth=depth, head_width=head_width)
        fkey, hkey = jax.random.split(key)
        self.features = SlidingWindowMLP(n_inputs, window, width, width, depth, activation,
                                         key=fkey)
        self.head = mlp_head(width, n_outputs, head_width, activation, hkey)
        self.receptive_field = window
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs


__all__ = ["CNN", "TCN", "MLP", "ConvStack", "ResidualDilatedConv", "SlidingWindowMLP"]
