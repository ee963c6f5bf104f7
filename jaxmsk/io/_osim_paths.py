"""Muscle paths of an OpenSim model as one `PolynomialPath` over chosen coordinates.

Each muscle's length is a polynomial in only the coordinates it crosses:

- a `FunctionBasedPath` whose length is a `MultivariatePolynomialFunction` (OpenSim ≥ 4.5;
  e.g. the paths Moco's example3DWalking ships) is read exactly, coefficient for coefficient;
- any other path (via points, wrapping surfaces...) is sampled with OpenSim over the box of
  the coordinates it crosses (found from `computeMomentArm` at random poses) and fitted by
  `PolynomialPath.fit`, muscles that cross the same coordinates together.

The per-muscle polynomials are then written in one set of monomials over the chosen
coordinates (a coordinate a muscle does not cross has exponent 0 in its terms), so lengths and
moment arms of every muscle come from one `PolynomialPath.length_and_moment_arms` call.
Coordinates a function-based path names but that are not chosen are held at their default
values (their powers folded into the coefficients).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from ..skeleton._path import PolynomialPath
from ._osim_pose import pose_constraints, set_pose

_CROSSING_ARM = 1e-4
"""|dl/dq| (m/rad) above which a sampled muscle is taken to cross a coordinate."""
_MAX_CROSSED = 6
_MAX_DEGREE_3D = 6
"""Highest degree tried for muscles crossing three or more coordinates (84–924 monomials)."""


def _lexicographic_exponents(n: int, order: int) -> list[tuple[int, ...]]:
    # OpenSim's MultivariatePolynomialFunction orders its coefficients this way (checked
    # against OpenSim's own lengths in tests/test_moments.py).
    return sorted(e for e in itertools.product(range(order + 1), repeat=n) if sum(e) <= order)


def _coordinate_name(path: str) -> str:
    return path.rstrip("/").split("/")[-1]


def function_based_polynomial(osim, muscle):
    """(coordinate names, exponents, coefficients) of a muscle whose path is a
    FunctionBasedPath with a MultivariatePolynomialFunction length, else None."""
    fbp = osim.FunctionBasedPath.safeDownCast(muscle.getPath())
    if fbp is None:
        return None
    fn = osim.MultivariatePolynomialFunction.safeDownCast(fbp.getLengthFunction())
    if fn is None:
        raise ValueError(
            f"Muscle '{muscle.getName()}' has a FunctionBasedPath whose length function is a "
            f"{fbp.getLengthFunction().getConcreteClassName()}; jaxmsk reads "
            "MultivariatePolynomialFunction lengths only. Replace the path by a "
            "GeometryPath (it is then fitted) or by a polynomial.")
    paths = fbp.getCoordinatePaths()
    names = [_coordinate_name(paths[i]) for i in range(len(paths))]
    coefficients = fn.getCoefficients()
    coef = np.array([coefficients.get(i) for i in range(coefficients.size())])
    exps = _lexicographic_exponents(fn.getDimension(), fn.getOrder())
    if len(exps) != coef.size or fn.getDimension() != len(names):
        raise ValueError(f"Muscle '{muscle.getName()}': its MultivariatePolynomialFunction has "
                         f"{coef.size} coefficients for dimension {fn.getDimension()} and order "
                         f"{fn.getOrder()} ({len(exps)} expected) over {len(names)} coordinates.")
    return names, exps, coef


def probe_crossed(osim_model, state, muscles, candidates, box, rng, n_probe=3, step=0.05):
    """The candidate coordinates each muscle crosses: those whose change by ±`step` rad
    changes the muscle's length, |Δl|/(2·step) > 0.1 mm/rad, at some of `n_probe` random
    poses of the box. (Lengths, not `computeMomentArm`, which at random poses can report
    moment arms about coordinates that move the whole body rigidly, such as the pelvis's.)"""
    coord_set = osim_model.getCoordinateSet()
    coords = [coord_set.get(c) for c in candidates]
    arms = np.zeros((len(muscles), len(candidates)))

    constraints = pose_constraints(osim_model)

    def lengths(q):
        set_pose(osim_model, state, coords, q, constraints)
        return np.array([m.getLength(state) for m in muscles])

    for _ in range(n_probe):
        base = rng.uniform(box[:, 0] + step, np.maximum(box[:, 1] - step, box[:, 0] + step))
        for j in range(len(coords)):
            up, down = base.copy(), base.copy()
            up[j] += step
            down[j] -= step
            slope = np.abs(lengths(up) - lengths(down)) / (2 * step)
            arms[:, j] = np.maximum(arms[:, j], np.where(np.isfinite(slope), slope, 0.0))
    set_pose(osim_model, state, coords, [c.getDefaultValue() for c in coords])
    return [[candidates[j] for j in range(len(candidates)) if arms[i, j] > _CROSSING_ARM]
            for i in range(len(muscles))]


def _sample(osim_model, state, muscles, coords, q):
    from ._osim_pose import sample_mtu_lengths

    return sample_mtu_lengths(osim_model, state, coords, [m.getName() for m in muscles], q,
                              moment_arms=True)


def polynomial_paths(osim_model, state, muscle_names, coordinates, box, *,
                     samples_per_dof: int = 400, max_degree: int = 6, seed: int = 0):
    """One `PolynomialPath` over `coordinates` for `muscle_names` of an initialised model.

    Args:
        osim_model, state: an `opensim.Model` after `initSystem()` and its state.
        muscle_names: muscles, in the order of the path's rows.
        coordinates: coordinate names (the path's q, in this order).
        box: (n_coordinates, 2) rad, the range sampled for fitted paths and recorded as the
            path's `domain`.
        samples_per_dof: OpenSim samples per crossed coordinate for each fitted group.
        max_degree: highest degree tried for fitted paths (at most 6 for muscles crossing
            three or more coordinates).

    Returns:
        (path, info): `info[muscle]` is a dict with `source` ("FunctionBasedPath" or
        "fitted"), `coordinates` (those the muscle's length depends on) and, for fitted
        paths, the held-out `fit_rms_m` / `fit_max_m` / `moment_arm_rms_m` /
        `moment_arm_max_m`, also in the path's `fit_rms`, `fit_max`, `fit_moment_arm_rms`
        and `fit_moment_arm_max` (0 for paths read exactly).
    """
    coordinates = list(coordinates)
    box = np.asarray(box, np.float64)
    index = {c: j for j, c in enumerate(coordinates)}
    coord_set = osim_model.getCoordinateSet()
    muscle_set = osim_model.getMuscles()
    objs = [muscle_set.get(m) for m in muscle_names]
    rng = np.random.default_rng(seed)
    osim = _osim()
    terms: list[dict[tuple[int, ...], float]] = [dict() for _ in objs]
    info: dict[str, dict] = {}
    geometric = []
    for i, (name, m) in enumerate(zip(muscle_names, objs)):
        poly = function_based_polynomial(osim, m)
        if poly is None:
            geometric.append(i)
            continue
        names, exps, coef = poly
        unknown = [c for c in names if not coord_set.contains(c)]
        if unknown:
            raise ValueError(f"Muscle '{name}': its FunctionBasedPath names coordinates "
                             f"{unknown} that the model does not have.")
        defaults = [coord_set.get(c).getDefaultValue() for c in names]
        for e, c in zip(exps, coef):
            if c == 0.0:
                continue
            key, weight = [0] * len(coordinates), float(c)
            for name_j, e_j, d_j in zip(names, e, defaults):
                if name_j in index:
                    key[index[name_j]] += e_j
                else:
                    weight *= d_j ** e_j
            key = tuple(key)
            terms[i][key] = terms[i].get(key, 0.0) + weight
        info[name] = {"source": "FunctionBasedPath",
                      "coordinates": [c for c in names if c in index],
                      "held_at_default": [c for c in names if c not in index]}
    if geometric:
        crossed = probe_crossed(osim_model, state, [objs[i] for i in geometric], coordinates,
                                box, rng)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, cs in zip(geometric, crossed):
            if len(cs) > _MAX_CROSSED:
                raise ValueError(f"Muscle '{muscle_names[i]}' crosses {len(cs)} of the chosen "
                                 f"coordinates ({cs}); fitted paths take at most {_MAX_CROSSED}. "
                                 "Choose fewer coordinates or give the muscle a "
                                 "FunctionBasedPath.")
            groups.setdefault(tuple(cs), []).append(i)
        for cs, members in groups.items():
            if not cs:
                for i in members:  # crosses none of the chosen coordinates: a constant
                    coords = [coord_set.get(c) for c in coordinates]
                    set_pose(osim_model, state, coords, [c.getDefaultValue() for c in coords])
                    terms[i][(0,) * len(coordinates)] = objs[i].getLength(state)
                    info[muscle_names[i]] = {"source": "fitted", "coordinates": [],
                                             "fit_rms_m": 0.0, "fit_max_m": 0.0,
                                             "moment_arm_rms_m": 0.0,
                                             "moment_arm_max_m": 0.0}
                continue
            sub = box[[index[c] for c in cs]]
            q = rng.uniform(sub[:, 0], sub[:, 1], size=(samples_per_dof * len(cs), len(cs)))
            lengths, arms = _sample(osim_model, state, [objs[i] for i in members], list(cs), q)
            degree = max_degree if len(cs) <= 2 else min(max_degree, _MAX_DEGREE_3D)
            fitted = PolynomialPath.fit(q, lengths, arms, max_degree=degree, seed=seed,
                                        ranges=sub).in_raw_coordinates()
            coef = np.asarray(fitted.coefficients, np.float64)
            for row, i in enumerate(members):
                for e, c in zip(fitted.exponents, coef[row]):
                    if c == 0.0:
                        continue
                    key = [0] * len(coordinates)
                    for name_j, e_j in zip(cs, e):
                        key[index[name_j]] = e_j
                    terms[i][tuple(key)] = terms[i].get(tuple(key), 0.0) + float(c)
                info[muscle_names[i]] = {
                    "source": "fitted", "coordinates": list(cs),
                    "fit_rms_m": fitted.fit_rms[row], "fit_max_m": fitted.fit_max[row],
                    "moment_arm_rms_m": fitted.fit_moment_arm_rms[row],
                    "moment_arm_max_m": fitted.fit_moment_arm_max[row]}
        coords = [coord_set.get(c) for c in coordinates]
        set_pose(osim_model, state, coords, [c.getDefaultValue() for c in coords])
    keys = sorted(set().union(*terms) | {(0,) * len(coordinates)}, key=lambda e: (sum(e), e))
    col = {e: k for k, e in enumerate(keys)}
    coef = np.zeros((len(objs), len(keys)))
    for i, t in enumerate(terms):
        for e, c in t.items():
            coef[i, col[e]] = c
    dtype = jnp.result_type(float)
    n = len(coordinates)

    def errors(key):  # read exactly (FunctionBasedPath): 0
        return tuple(float(info[m].get(key, 0.0)) for m in muscle_names)

    return PolynomialPath(coefficients=jnp.asarray(coef, dtype), centre=jnp.zeros(n, dtype),
                          scale=jnp.ones(n, dtype), exponents=tuple(keys),
                          fit_rms=errors("fit_rms_m"), fit_max=errors("fit_max_m"),
                          fit_moment_arm_rms=errors("moment_arm_rms_m"),
                          fit_moment_arm_max=errors("moment_arm_max_m"),
                          domain=tuple((float(a), float(b)) for a, b in box)), info


def crossing(osim_model, state, muscle_names, coordinates, box, seed: int = 0):
    """{muscle: the `coordinates` its length depends on}: read from FunctionBasedPaths,
    probed with OpenSim (`probe_crossed`) over `box` for other paths."""
    osim = _osim()
    muscle_set = osim_model.getMuscles()
    out, rest = {}, []
    for m in muscle_names:
        poly = function_based_polynomial(osim, muscle_set.get(m))
        if poly is None:
            rest.append(m)
        else:
            out[m] = [c for c in poly[0] if c in coordinates]
    if rest:
        probed = probe_crossed(osim_model, state, [muscle_set.get(m) for m in rest],
                               list(coordinates), np.asarray(box, np.float64),
                               np.random.default_rng(seed))
        out.update(zip(rest, probed))
    return out


def _osim():
    from ._osim_pose import import_opensim

    return import_opensim()


def crossed_coordinates(osim, muscle) -> list[str] | None:
    """The coordinates a FunctionBasedPath muscle's length depends on, or None for other
    paths (probe those with `computeMomentArm`)."""
    poly = function_based_polynomial(osim, muscle)
    return None if poly is None else poly[0]


def path_jumps(osim_model, state, muscle_names, coordinates, box, *, lines: int = 4,
               points: int = 200, threshold: float = 1e-3, seed: int = 0) -> list[dict]:
    """Where OpenSim's own path lengths jump: sweeps of each coordinate over its side of
    `box` through `lines` random poses (`points` samples each), every step larger than
    `threshold` (m) and than 10 times the sweep's median step bisected 20 times along the
    coordinate (to about 1e-6 of the range); a step still above threshold/2 at that width
    is a discontinuity (a wrapping surface the path flips around), not a steep slope.

    Returns dicts {muscle, coordinate, at (the pose, rad or m, in `coordinates` order), jump
    (m, signed: length after minus before)}, largest |jump| first, at most one per muscle,
    coordinate and sweep."""
    from ._osim_pose import sample_mtu_lengths

    box = np.asarray(box, np.float64)
    rng = np.random.default_rng(seed)
    found = []

    def lengths(q, muscles=muscle_names):
        return sample_mtu_lengths(osim_model, state, coordinates, muscles, np.atleast_2d(q))

    for j, c in enumerate(coordinates):
        for _ in range(lines):
            base = rng.uniform(box[:, 0], box[:, 1])
            q = np.tile(base, (points, 1))
            q[:, j] = np.linspace(box[j, 0], box[j, 1], points)
            swept = lengths(q)
            steps = np.diff(swept, axis=0)
            median = np.median(np.abs(steps), axis=0)
            for k, m in enumerate(muscle_names):
                i = int(np.argmax(np.abs(steps[:, k])))
                if not abs(steps[i, k]) > max(threshold, 10 * median[k]):
                    continue
                lo, hi = q[i].copy(), q[i + 1].copy()
                l_lo, l_hi = swept[i, k], swept[i + 1, k]
                for _ in range(20):  # (only this muscle's length at each midpoint)
                    mid = 0.5 * (lo + hi)
                    l_mid = lengths(mid, [m])[0, 0]
                    if abs(l_mid - l_lo) >= abs(l_hi - l_mid):
                        hi, l_hi = mid, l_mid
                    else:
                        lo, l_lo = mid, l_mid
                if abs(l_hi - l_lo) > threshold / 2:
                    found.append({"muscle": m, "coordinate": c, "at": (0.5 * (lo + hi)).tolist(),
                                  "jump": float(l_hi - l_lo)})
    return sorted(found, key=lambda d: -abs(d["jump"]))


def describe_jumps(jumps: list[dict], coordinates) -> str:
    """'glmax1_r 29.5 mm at hip_adduction_r = 0.520, ...': each muscle's largest jump."""
    seen, parts = set(), []
    for d in jumps:
        if d["muscle"] in seen:
            continue
        seen.add(d["muscle"])
        j = list(coordinates).index(d["coordinate"])
        parts.append(f"{d['muscle']} {abs(d['jump']) * 1e3:.1f} mm at {d['coordinate']} = "
                     f"{d['at'][j]:.3f}")
    return ", ".join(parts)
