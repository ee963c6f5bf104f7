"""Recurrent EMG → forces + angle network (GRU)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import EMGRegressor
from ._cnn import check_sizes, mlp_head


class ScannedGRU(eqx.Module):
    """`eqx.nn.GRUCell` scanned over time from a zero hidden state; the first `window − 1`
    hidden states are dropped.

    Maps `(time, input_size)` → `(time - window + 1, hidden_size)`; output k is the hidden
    state after input k + window − 1, which depends on *all* inputs 0 … k + window − 1.
    """

    cell: eqx.nn.GRUCell
    window: int = eqx.field(static=True)

    def __init__(self, input_size: int, hidden_size: int, window: int, *, key: PRNGKeyArray):
        self.cell = eqx.nn.GRUCell(input_size, hidden_size, key=key)
        self.window = window

    def __call__(self, x: Float[Array, "time in"]) -> Float[Array, "time_out hidden"]:
        def step(h, x_t):
            h = self.cell(x_t, h)
            return h, h

        h0 = jnp.zeros(self.cell.hidden_size, dtype=jnp.result_type(x.dtype, self.cell.weight_hh))
        _, hs = jax.lax.scan(step, h0, x)
        return hs[self.window - 1:]


class GRU(EMGRegressor):
    """Gated recurrent network: a GRU over the whole sequence, then a per-step MLP head.

    To share the windowed interface, `receptive_field` is set to `window` (default 32 =
    0.32 s at 100 Hz) and the first `window − 1` outputs are dropped, so output k is aligned
    with input k + window − 1 like the convolutional networks. Unlike them, the GRU sees the
    *whole past*, not just the window: output k depends on inputs 0 … k + window − 1 (still
    causal — never on later inputs). `window` is thus a warm-up length for the zero initial
    hidden state rather than a hard receptive field.

    Args:
        n_inputs: EMG channels (muscles).
        n_outputs: regressed quantities.
        hidden_size: GRU state size (the feature size F).
        window: warm-up/alignment length (the interface's `receptive_field`).
        head_width: hidden units of the head.
        activation: nonlinearity of the head.
        key: PRNG key.

    Shapes: `(time, n_inputs)` → `(time - window + 1, n_outputs)`.
    """

    features: ScannedGRU
    head: eqx.nn.MLP
    receptive_field: int = eqx.field(static=True)
    n_inputs: int = eqx.field(static=True)
    n_outputs: int = eqx.field(static=True)

    def __init__(self, n_inputs: int, n_outputs: int, *, hidden_size: int = 32,
                 window: int = 32, head_width: int = 64, activation: Callable = jax.nn.gelu,
                 key: PRNGKeyArray):
        check_sizes("GRU", n_inputs=n_inputs, n_outputs=n_outputs, hidden_size=hidden_size,
                     window=window, head_width=head_width)
        fkey, hkey = jax.random.split(key)
        self.features = ScannedGRU(n_inputs, hidden_size, window, key=fkey)
        self.head = mlp_head(hidden_size, n_outputs, head_width, activation, hkey)
        self.receptive_field = window
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs


__all__ = ["GRU", "ScannedGRU"]
