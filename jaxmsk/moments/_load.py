"""`load_emg_driven_model`: an OpenSim model's muscles and paths for EMG-driven moments."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..io._osim import import_opensim, model_curves, opensim_model_with_paths
from ..io._osim_paths import function_based_polynomial, polynomial_paths, probe_crossed
from ..muscle import DeGrooteFregly2016Muscle, MuscleParameters
from ._model import EMGDrivenModel, map_channels, mapping_matrix


def _box(coord_set, names, ranges) -> np.ndarray:
    """(len(names), 2): `ranges` where given, else the coordinates' own ranges."""
    box = np.array([[coord_set.get(c).getRangeMin(), coord_set.get(c).getRangeMax()]
                    for c in names])
    for c, r in (ranges or {}).items():
        if c not in names:
            continue
        lo, hi = (float(v) for v in r)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"ranges[{c!r}] = {r}: give (min, max) in rad with min < max.")
        box[list(names).index(c)] = (lo, hi)
    return box


def _free_rotational(osim, model) -> list[str]:
    return [c.getName() for c in model.getCoordinateSet()
            if c.getMotionType() == osim.Coordinate.Rotational and not c.getDefaultLocked()]


def load_emg_driven_model(path, channels, *, side: str | None = None,
                          mapping: dict | None = None, coordinates=None, paths=None,
                          ranges: dict | None = None, samples_per_dof: int = 400,
                          max_degree: int = 6, seed: int = 0):
    """Read an OpenSim model into an `EMGDrivenModel` for the given EMG channels.

    Args:
        path: the .osim file.
        channels: EMG channel names (e.g. `MomentRecording.channel_names`).
        side: "r"/"l", the side the EMG was recorded on (models with both legs).
        mapping: {channel: [muscles]} overriding the name matching of `map_channels`.
        coordinates: the coordinates moments are computed about (default: every free
            rotational coordinate a driven muscle crosses, in the model's order).
        paths: a FunctionBasedPathSet .xml applied with OpenSim's
            `ModOpReplacePathsWithFunctionBasedPaths` (e.g. the one Moco's example3DWalking
            ships); without it the model's own paths are used: FunctionBasedPaths read
            exactly, other paths fitted over the coordinates each muscle crosses.
        ranges: {coordinate: (min, max)} rad, the box non-polynomial paths are fitted over
            (and the path's recorded `domain`) instead of the file's coordinate ranges, e.g.
            the recorded motion's range with a margin. OpenSim's wrapping surfaces make some
            paths kink or jump over a whole range of motion (the walking model's gluteus
            maximus, iliopsoas), which no polynomial follows; a task's box avoids that.
        samples_per_dof, max_degree, seed: the fit of non-polynomial paths.

    Every muscle that crosses a chosen coordinate is kept: driven muscles with their EMG,
    the others with zero activation (their passive force still acts). Each muscle's
    F_max, l_opt, l_ts, α_opt and v_max come from the file; the De Groote curves from the
    file's De Groote, Thelen or Millard muscles as in `load_osim`.

    Returns:
        (model, info): `info` holds the channel map, the muscles without EMG, and per muscle
        the path's source and the coordinates it crosses.
    """
    osim = import_opensim()
    omodel, state = opensim_model_with_paths(osim, path, paths)
    muscle_set = omodel.getMuscles()
    all_muscles = [muscle_set.get(i).getName() for i in range(muscle_set.getSize())]
    if not all_muscles:
        raise ValueError(f"load_emg_driven_model: {path} has no muscles.")
    channels = list(channels)
    channel_map = map_channels(channels, all_muscles, side=side, mapping=mapping)
    driven = sorted({m for ms in channel_map.values() for m in ms}, key=all_muscles.index)

    free = _free_rotational(osim, omodel)
    coord_set = omodel.getCoordinateSet()
    box_all = _box(coord_set, free, {k: v for k, v in (ranges or {}).items() if k in free})
    rng = np.random.default_rng(seed)

    def crossed(names):
        fbp = {m: function_based_polynomial(osim, muscle_set.get(m)) for m in names}
        out = {m: p[0] for m, p in fbp.items() if p is not None}
        rest = [m for m in names if fbp[m] is None]
        if rest:
            probed = probe_crossed(omodel, state, [muscle_set.get(m) for m in rest], free,
                                   box_all, rng)
            out.update(zip(rest, probed))
        return out

    driven_cross = crossed(driven)
    if coordinates is None:
        wanted = {c for m in driven for c in driven_cross[m]}
        coordinates = [c for c in free if c in wanted]
        if not coordinates:
            raise ValueError(f"load_emg_driven_model: the driven muscles {driven} cross no free "
                             "rotational coordinate of the model.")
    else:
        coordinates = list(coordinates)
        unknown = [c for c in coordinates if not coord_set.contains(c)]
        if unknown:
            raise ValueError(f"coordinates {unknown} are not in {path}; free rotational "
                             f"coordinates: {free}.")
    every = crossed(all_muscles)
    muscles = [m for m in all_muscles if set(every[m]) & set(coordinates)]
    missing = [m for m in driven if m not in muscles]
    if missing:
        raise ValueError(f"muscles {missing} (driven by EMG) cross none of the coordinates "
                         f"{coordinates}; add the coordinates they cross or drop the channels.")
    box = _box(coord_set, coordinates, ranges)
    path_poly, path_info = polynomial_paths(omodel, state, muscles, coordinates, box,
                                            samples_per_dof=samples_per_dof,
                                            max_degree=max_degree, seed=seed)
    objs = [muscle_set.get(m) for m in muscles]
    fields = np.array([[m.getMaxIsometricForce(), m.getOptimalFiberLength(),
                        m.getTendonSlackLength(), m.getPennationAngleAtOptimalFiberLength(),
                        m.getMaxContractionVelocity()] for m in objs])
    dtype = jnp.result_type(float)
    params = MuscleParameters(*(jnp.asarray(fields[:, k], dtype) for k in range(5)))
    hill = DeGrooteFregly2016Muscle(params, tendon="rigid",
                                    curves=model_curves(osim, objs, muscles, path))
    weights = mapping_matrix(channel_map, channels, muscles)
    model = EMGDrivenModel(muscles=hill, path=path_poly, mapping=jnp.asarray(weights, dtype),
                           muscle_names=tuple(muscles), coordinate_names=tuple(coordinates),
                           channel_names=tuple(channels),
                           path_sources=tuple(path_info[m]["source"] for m in muscles))
    info = {"channel_map": channel_map,
            "without_emg": [m for m in muscles if m not in driven],
            "paths": path_info}
    return model, info
