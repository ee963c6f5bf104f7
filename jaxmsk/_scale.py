"""Scaling a model to a subject: the one place every personalisation scales through.

- `scale_parameters`: per-muscle scaling of the muscle parameters (F_max, l_opt, l_ts, ...).
- `scale_segments`: segment masses and inertias, and the gravity moments they cause.
- `scale_damping`: the passive joint elements' damping.

`jaxmsk.cohort.subject_model` (the synthetic cohort's subjects), `SubjectAdjustment.apply`
(the learned subject-specific parameters) and `identify` (fitted parameters) all use these.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike

from ._checks import as_float_array, check_positive
from ._model import Model
from .muscle import DeGrooteFregly2016Muscle, MuscleParameters

SCALABLE = tuple(f.name for f in dataclasses.fields(MuscleParameters))


def scale_parameters(model: Model, *, check: bool = True, **scales: ArrayLike) -> Model:
    """A copy of `model` whose named per-muscle parameters are multiplied by `scales`.

    Args:
        model: a `jaxmsk.Model`.
        **scales: parameter name -> scale factors, a scalar or one per muscle (n_muscles,),
            in model order, each > 0. Names are the fields of `MuscleParameters`:
            max_isometric_force, optimal_fiber_length, tendon_slack_length,
            pennation_angle, max_contraction_velocity.
        check: check that the scales are finite and > 0 (raises on concrete values,
            `eqx.error_if` under `jit`). Pass False only where positivity holds by
            construction, e.g. `exp` or a sigmoid of an unconstrained parameter.

    Works under `jit`, `vmap` (e.g. over a cohort's scale arrays) and `grad` with respect to
    the scales. Nothing else in the model changes: scaling `optimal_fiber_length` leaves the
    path and tendon slack length as they are.
    """
    if not isinstance(model, Model):
        raise ValueError(f"scale_parameters needs a jaxmsk.Model, got {type(model).__name__}.")
    if not isinstance(model.muscles, DeGrooteFregly2016Muscle):
        raise ValueError(f"scale_parameters scales MuscleParameters, which a "
                         f"{type(model.muscles).__name__} does not have; it needs a Model of "
                         "DeGrooteFregly2016Muscle muscles.")
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
        if check:
            s = check_positive(f"scale_parameters: {name}", s)
        names.append(name)
        values.append(getattr(params, name) * jnp.broadcast_to(s, (n,)))
    if not names:
        return model
    return eqx.tree_at(lambda m: [getattr(m.muscles.params, k) for k in names], model, values)


def scale_fields(tree, names, factor):
    """Multiply every array field called one of `names`, anywhere in `tree`, by `factor`."""
    def fix(key_path, leaf):
        last = key_path[-1] if key_path else None
        if isinstance(last, jax.tree_util.GetAttrKey) and last.name in names:
            return leaf * factor
        return leaf
    return jax.tree_util.tree_map_with_path(fix, tree)


def scale_segments(model: Model, scale: ArrayLike) -> Model:
    """`model` with every segment mass and inertia (and the gravity moments they cause)
    multiplied by `scale` (a scalar > 0; traced values welcome)."""
    skeleton = scale_fields(model.skeleton, ("mass", "inertia", "gravity_moment"), scale)
    return eqx.tree_at(lambda m: m.skeleton, model, skeleton)


def scale_damping(model: Model, scale: ArrayLike) -> Model:
    """`model` with the damping (and viscosity) of every passive joint element multiplied by
    `scale` (a scalar > 0)."""
    passive = tuple(scale_fields(p, ("damping", "viscosity"), scale) for p in model.passive)
    return eqx.tree_at(lambda m: m.passive, model, passive)


__all__ = ["scale_parameters", "scale_segments", "scale_damping", "SCALABLE"]
