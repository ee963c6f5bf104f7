"""`load_osim`: an OpenSim model file as a jaxmsk `Model` (needs the `opensim` package).

Skeleton (serial chain of single-axis rotational joints), gravity and coordinate passive
forces come from `chain_from_opensim`; every muscle, whatever its OpenSim class, becomes a
De Groote–Fregly 2016 muscle with the file's F_max, l_opt, l_ts, α_opt and v_max; the muscle
paths (via points, conditional points, wrapping surfaces...) are sampled with OpenSim over
the coordinates' ranges and fitted by polynomials whose degree is chosen by held-out error.
"""

from __future__ import annotations

import os
import warnings

import jax.numpy as jnp
import numpy as np

from .._model import Model
from ..muscle import DeGrooteActivation, DeGrooteFregly2016Muscle, MuscleParameters
from ..skeleton._path import PolynomialPath


def import_opensim():
    """The `opensim` module, or an ImportError that says how to install it."""
    try:
        import opensim
    except ImportError as err:
        raise ImportError(
            "load_osim needs OpenSim's Python package: pip install 'opensim==4.6.*' "
            "(or pip install 'jaxmsk[test]'). The built-in models (jaxmsk.models) need no OpenSim."
        ) from err
    opensim.Logger.setLevelString("error")
    return opensim


def _muscle_activation_time_constants(osim, muscle) -> tuple[float, float]:
    """(τ_act, τ_deact) of an OpenSim muscle, OpenSim's DeGroote defaults if it has none."""
    for cls in ("DeGrooteFregly2016Muscle", "Thelen2003Muscle", "Millard2012EquilibriumMuscle"):
        concrete = getattr(osim, cls).safeDownCast(muscle)
        if concrete is not None:
            return concrete.get_activation_time_constant(), concrete.get_deactivation_time_constant()
    return 0.015, 0.060


def sample_mtu_lengths(osim_model, state, coordinates, muscles, q: np.ndarray) -> np.ndarray:
    """OpenSim's MTU lengths (m), (n_samples, n_muscles), at the coordinate samples q."""
    coord_set = osim_model.getCoordinateSet()
    coords = [coord_set.get(name) for name in coordinates]
    muscle_set = osim_model.getMuscles()
    objs = [muscle_set.get(name) for name in muscles]
    out = np.empty((q.shape[0], len(objs)))
    for i, qi in enumerate(q):
        for c, v in zip(coords, qi):
            c.setValue(state, float(v), False)
        osim_model.realizePosition(state)
        out[i] = [m.getLength(state) for m in objs]
    return out


def load_osim(path, coordinates=None, muscles=None, *, tendon=None, n_samples=None,
              max_degree=8, seed=0):
    """Read an OpenSim model into a jaxmsk `Model`.

    Args:
        path: the .osim file.
        coordinates: names of the coordinates to keep, in order (default: all, file order).
            Coordinates left out are locked at their default values.
        muscles: names of the muscles to keep (default: all, file order).
        tendon: "compliant" or "rigid" for every muscle (default: compliant unless every
            muscle in the file has `ignore_tendon_compliance`).
        n_samples: path samples over the coordinate ranges (default 400·n_dofs, at least 400).
        max_degree: highest polynomial degree tried for the paths.

    Returns a `Model`; `model.path.fit_rms` / `fit_max` hold the held-out length errors (m)
    per muscle of the chosen polynomial degree (`model.path.degree`).

    Raises ValueError naming the joint for joints other than single-axis rotations, and
    warns (never silently drops) about force elements acting on the coordinates that are
    not supported.
    """
    osim = import_opensim()
    from ._osim_skeleton import chain_from_opensim

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_osim: no such file {path!r}.")
    osim_model = osim.Model(path)
    state = osim_model.initSystem()
    skeleton, coord_names, passive, skipped = chain_from_opensim(osim_model, coordinates)

    muscle_set = osim_model.getMuscles()
    all_muscles = [muscle_set.get(i).getName() for i in range(muscle_set.getSize())]
    if muscles is None:
        muscles = all_muscles
    unknown = [m for m in muscles if m not in all_muscles]
    if unknown:
        raise ValueError(f"load_osim: muscles {unknown} are not in {path}; it has {all_muscles}.")
    if not muscles:
        raise ValueError(f"load_osim: {path} has no muscles to load.")
    objs = [muscle_set.get(m) for m in muscles]
    fields = np.array([[m.getMaxIsometricForce(), m.getOptimalFiberLength(),
                        m.getTendonSlackLength(), m.getPennationAngleAtOptimalFiberLength(),
                        m.getMaxContractionVelocity()] for m in objs])
    taus = np.array([_muscle_activation_time_constants(osim, m) for m in objs])
    if tendon is None:
        rigid = [m.get_ignore_tendon_compliance() for m in objs]
        tendon = "rigid" if all(rigid) else "compliant"
        if any(rigid) and not all(rigid):
            warnings.warn(f"load_osim: {path} mixes rigid and compliant tendons; all muscles are "
                          "loaded with compliant tendons (pass tendon= to choose).", stacklevel=2)

    # Sample the paths over the coordinates' ranges (uniformly, plus the range corners).
    coord_set = osim_model.getCoordinateSet()
    ranges = np.array([[coord_set.get(c).getRangeMin(), coord_set.get(c).getRangeMax()]
                       for c in coord_names])
    n_dofs = len(coord_names)
    n = max(400, 400 * n_dofs) if n_samples is None else int(n_samples)
    rng = np.random.default_rng(seed)
    q = rng.uniform(ranges[:, 0], ranges[:, 1], size=(n, n_dofs))
    lengths = sample_mtu_lengths(osim_model, state, coord_names, muscles, q)
    poly = PolynomialPath.fit(q, lengths, max_degree=max_degree, seed=seed, ranges=ranges)

    dtype = jnp.result_type(float)
    params = MuscleParameters(*(jnp.asarray(fields[:, k], dtype) for k in range(5)))
    model = Model(
        muscles=DeGrooteFregly2016Muscle(params, tendon=tendon),
        activation=DeGrooteActivation(jnp.asarray(taus[:, 0], dtype), jnp.asarray(taus[:, 1], dtype)),
        skeleton=skeleton,
        path=poly,
        passive=tuple(passive),
        muscle_names=tuple(muscles),
        coordinate_names=tuple(coord_names),
    )
    return model
