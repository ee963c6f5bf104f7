"""Numerics shared by every module: guarded operations that are safe to differentiate.

The "double-where" trick is used throughout: the unsafe branch of a `jnp.where` is fed a
harmless placeholder so that neither its value nor its gradient can become NaN or inf
(see optax/_src/numerics.py for the same idea).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def safe_div(num: ArrayLike, den: ArrayLike, *, eps: float = 0.0, fill: float = 0.0) -> Array:
    """`num / den` where `|den| > eps`, `fill` elsewhere, with finite gradients everywhere."""
    num = jnp.asarray(num)
    den = jnp.asarray(den)
    ok = jnp.abs(den) > eps
    safe_den = jnp.where(ok, den, 1.0)
    return jnp.where(ok, num / safe_den, fill)


def safe_sqrt(x: ArrayLike) -> Array:
    """`sqrt(x)` for `x > 0` and 0 for `x <= 0`; the gradient at 0 is 0 instead of inf."""
    x = jnp.asarray(x)
    ok = x > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def smoothstep5(x: ArrayLike) -> Array:
    """Quintic smoothstep on [0, 1]: 0 below, 1 above, C² in between (6x⁵ − 15x⁴ + 10x³).

    Evaluated as x³·(3x·(2x − 5) + 10), MuJoCo's order (`mju_sigmoid`), so that MuJoCo's
    smooth activation switch is reproduced bit for bit.
    """
    x = jnp.clip(jnp.asarray(x), 0.0, 1.0)
    return x * x * x * (3.0 * x * (2.0 * x - 5.0) + 10.0)


def smooth_max(x: ArrayLike, y: ArrayLike, smoothing: float) -> Array:
    """Smooth maximum `0.5·(x + y + sqrt((x − y)² + smoothing²))`; exact as smoothing → 0."""
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    return 0.5 * (x + y + jnp.sqrt((x - y) ** 2 + smoothing**2))


def default_float(*arrays: ArrayLike):
    """The floating dtype that `arrays` promote to (float32 unless x64 is enabled)."""
    return jnp.result_type(float, *arrays)
