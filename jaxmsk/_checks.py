"""Two-tier input checks, used by every module that takes user input.

Concrete values (plain numbers, NumPy arrays, JAX arrays outside `jit`) are checked
eagerly and raise `ValueError` naming the input and the fix. Traced values (inside `jit`,
`vmap`, `grad`) are checked with `eqx.error_if`, whose returned array must be used.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike


def is_concrete(x) -> bool:
    """True if `x` holds values known now (not a JAX tracer)."""
    return not isinstance(x, jax.core.Tracer)


def as_float_array(x: ArrayLike) -> Array:
    """`x` as a floating JAX array (float32 unless x64 is on, or a wider input dtype)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def check_values(name: str, x: Array, bad_fn, what: str, fix: str) -> Array:
    if is_concrete(x):
        bad = np.asarray(bad_fn(np.asarray(x)))
        if bad.any():
            vals = np.asarray(x)[bad] if np.ndim(x) else np.asarray(x)
            raise ValueError(f"{name} {what}: got {vals.ravel()[:5].tolist()}"
                             f"{'...' if bad.sum() > 5 else ''}. {fix}")
        return x
    return eqx.error_if(x, bad_fn(x), f"{name} {what}. {fix}")


def check_finite(name: str, x: Array) -> Array:
    """Raise (or `error_if`) if `x` has NaN or inf."""
    return check_values(name, x, lambda v: ~(v == v) | (v == np.inf) | (v == -np.inf),
                        "contains NaN or inf",
                        "Replace missing samples before calling (e.g. interpolate).")


def check_positive(name: str, x: Array) -> Array:
    """Raise (or `error_if`) unless every entry of `x` is finite and > 0."""
    x = check_finite(name, x)
    return check_values(name, x, lambda v: ~(v > 0), "must be positive",
                  "Pass lengths in m, forces in N and times in s, all > 0.")


def check_nonnegative(name: str, x: Array) -> Array:
    """Raise (or `error_if`) unless every entry of `x` is finite and >= 0."""
    x = check_finite(name, x)
    return check_values(name, x, lambda v: ~(v >= 0), "must be >= 0", "Use 0 to switch it off.")


def _converter(name: str, check, scalar: bool):
    def convert(x):
        x = as_float_array(x)
        if scalar:
            if x.shape not in ((), (1,)):
                raise ValueError(f"{name} has shape {x.shape}; it is one scalar.")
            x = jnp.reshape(x, ())
        return check(name, x)
    return convert


def positive(name: str, *, scalar: bool = False):
    """A field converter: the value as a float array, checked finite and > 0 (use with
    `eqx.field(converter=positive("Owner.field"))`); `scalar=True` also makes it shape ()."""
    return _converter(name, check_positive, scalar)


def nonnegative(name: str, *, scalar: bool = False):
    """A field converter: the value as a float array, checked finite and >= 0."""
    return _converter(name, check_nonnegative, scalar)


def finite(name: str, *, scalar: bool = False):
    """A field converter: the value as a float array, checked finite."""
    return _converter(name, check_finite, scalar)


def index(name: str):
    """A converter for a static coordinate index: an int >= 0."""
    def convert(i):
        if isinstance(i, bool) or int(i) != i or i < 0:
            raise ValueError(f"{name} must be an index >= 0, got {i!r}.")
        return int(i)
    return convert


def check_per_muscle(name: str, x: ArrayLike, n_muscles: int) -> Array:
    """`x` as a float array of shape () or (n_muscles,), else a ValueError at trace time."""
    x = as_float_array(x)
    if x.shape not in ((), (n_muscles,)):
        raise ValueError(
            f"{name} has shape {x.shape}, but the muscle model has {n_muscles} muscle(s): pass a "
            f"scalar or an array of shape ({n_muscles},). For batches (time, trials), use jax.vmap."
        )
    return x

def concrete_or_none(x: Any) -> np.ndarray | None:
    """`x` as a NumPy array, or None when it is a tracer (value checks are then skipped)."""
    if not is_concrete(x):
        return None
    try:
        return np.asarray(x)
    except Exception:  # an abstract value of some other transformation
        return None


def check_broadcast(owner: str, fields: dict[str, Any]) -> tuple[int, ...]:
    """Trace-time shape check: per-muscle fields broadcast together; returns the shape."""
    shapes = {k: tuple(jnp.shape(v)) for k, v in fields.items()}
    try:
        return tuple(np.broadcast_shapes(*shapes.values()))
    except ValueError:
        raise ValueError(
            f"{owner}: per-muscle fields must broadcast together (a leading muscle axis, or "
            f"scalars shared by all muscles); got shapes {shapes}. Give every per-muscle "
            "field shape (n_muscles,) or ()."
        ) from None


def concrete_fields(fields: dict[str, Any], shape) -> dict[str, np.ndarray] | None:
    """All fields as broadcast NumPy arrays, or None if any is traced."""
    values = {k: concrete_or_none(v) for k, v in fields.items()}
    if any(v is None for v in values.values()):
        return None
    return {k: np.broadcast_to(v, shape) for k, v in values.items()}


def require(owner: str, ok: Any, message: str) -> None:
    if not bool(np.all(ok)):
        raise ValueError(f"{owner}: {message}")
