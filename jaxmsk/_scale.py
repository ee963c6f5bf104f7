"""scale_parameters(): per-muscle scaling of a model's muscle parameters."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import ArrayLike

from ._model import Model
from .muscle import MuscleParameters
from .muscle._validation import as_float_array, check_positive

SCALABLE = tuple(f.name for f in dataclasses.fields(MuscleParameters))


def scale_parameters(model: Model, **scales: ArrayLike) -> Model:
    """A copy of `model` whose named per-muscle parameters are multiplied by `scales`.

    Args:
        model: a `jaxmsk.Model`.
        **scales: parameter name -> scale factors, a scalar or one per muscle (n_muscles,),
            in model order, each > 0. Names are the fields of `MuscleParameters`:
            max_isometric_force, optimal_fiber_length, tendon_slack_length,
            pennation_angle, max_contraction_velocity.

    Works under `jit`, `vmap` (e.g. over a cohort's scale arrays) and `grad` with respect to
    the scales. Nothing else in the model changes: scaling `optimal_fiber_length` leaves the
    path and tendon slack length as they are.
    """
    if not isinstance(model, Model):
        raise ValueError(f"scale_parameters needs a jaxmsk.Model, got {type(model).__name__}.")
    unknown = sorted(set(scales) - set(SCALABLE))
    if unknown:
        raise ValueError(f"scale_parameters: unknown parameter(s) {unknown}; scalable per-muscle "
                         f"parameters are {list(SCALABLE)}.")
    params = model.muscles.params
    n = model.n_muscles
    names, values = [], []
    for name, s in scales.items():
        s = as_float_array(s)
        if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != n):
            raise ValueError(f"scale_parameters: {name} has shape {s.shape}; pass a scalar or "
                             f"one factor per muscle, shape ({n},), in model order.")
        s = check_positive(f"scale_parameters: {name}", s)
        names.append(name)
        values.append(getattr(params, name) * jnp.broadcast_to(s, (n,)))
    if not names:
        return model
    return eqx.tree_at(lambda m: [getattr(m.muscles.params, k) for k in names], model, values)


__all__ = ["scale_parameters", "SCALABLE"]
