"""`load_osim`: an OpenSim model file as a jaxmsk `Model` (needs the `opensim` package).

Skeleton (a `SerialChain` of revolute joints, or a `JointTree` of function-based joints),
gravity and coordinate passive forces come from `chain_from_opensim` / `tree_from_opensim`;
every muscle, whatever its OpenSim class, becomes a De Groote–Fregly 2016 muscle with the
file's F_max, l_opt, l_ts, α_opt and v_max; the muscle paths (via points, conditional
points, wrapping surfaces...) are sampled with OpenSim over the coordinates' ranges and
fitted by polynomials whose degree is chosen by held-out error (FunctionBasedPaths read).
"""

from __future__ import annotations

import os
import warnings

import jax.numpy as jnp
import numpy as np

from .._model import Model
from ..muscle import DeGrooteActivation, DeGrooteCurves, DeGrooteFregly2016Muscle, MuscleParameters
from ..skeleton import SerialChain
from ..skeleton._path import PolynomialPath
from ._osim_pose import import_opensim, sample_mtu_lengths


def _muscle_activation_time_constants(osim, muscle) -> tuple[float, float]:
    """(τ_act, τ_deact) of an OpenSim muscle, OpenSim's DeGroote defaults if it has none."""
    for cls in ("DeGrooteFregly2016Muscle", "Thelen2003Muscle", "Millard2012EquilibriumMuscle"):
        concrete = getattr(osim, cls).safeDownCast(muscle)
        if concrete is not None:
            return (concrete.get_activation_time_constant(),
                    concrete.get_deactivation_time_constant())
    return 0.015, 0.060


def _curve_constants(osim, muscle) -> dict:
    """The De Groote curve constants an OpenSim muscle implies (what OpenSim's
    `DeGrooteFregly2016Muscle::replaceMuscles` carries over), or {} when the class has none."""
    dgf = osim.DeGrooteFregly2016Muscle.safeDownCast(muscle)
    if dgf is not None:
        return dict(tendon_strain_at_one_norm_force=dgf.get_tendon_strain_at_one_norm_force(),
                    passive_fiber_strain_at_one_norm_force=(
                        dgf.get_passive_fiber_strain_at_one_norm_force()),
                    active_force_width_scale=dgf.get_active_force_width_scale())
    thelen = osim.Thelen2003Muscle.safeDownCast(muscle)
    if thelen is not None:
        return dict(tendon_strain_at_one_norm_force=thelen.get_FmaxTendonStrain(),
                    passive_fiber_strain_at_one_norm_force=thelen.get_FmaxMuscleStrain())
    millard = osim.Millard2012EquilibriumMuscle.safeDownCast(muscle)
    if millard is not None:
        return dict(tendon_strain_at_one_norm_force=(
            millard.getTendonForceLengthCurve().getStrainAtOneNormForce()))
    return {}


def model_curves(osim, objs, names, path) -> DeGrooteCurves:
    """One `DeGrooteCurves` for all muscles; warns when the file's muscles disagree."""
    consts = [_curve_constants(osim, m) for m in objs]
    chosen = {}
    for key in ("tendon_strain_at_one_norm_force", "passive_fiber_strain_at_one_norm_force",
                "active_force_width_scale"):
        values = {n: c[key] for n, c in zip(names, consts) if key in c}
        if not values:
            continue
        distinct = sorted(set(values.values()))
        chosen[key] = float(np.median(list(values.values())))
        if len(distinct) > 1:
            warnings.warn(f"load_osim: the muscles of {path} have different {key} "
                          f"({values}); jaxmsk's curves are shared by all muscles, so the "
                          f"median {chosen[key]} is used.", stacklevel=3)
    damped = [n for n, m in zip(names, objs)
              if osim.DeGrooteFregly2016Muscle.safeDownCast(m) is not None
              and osim.DeGrooteFregly2016Muscle.safeDownCast(m).get_fiber_damping() != 0.0]
    if damped:
        warnings.warn(f"load_osim: muscles {damped} of {path} have fiber_damping > 0, which "
                      "jaxmsk does not model; they are loaded without fibre damping.",
                      stacklevel=3)
    return DeGrooteCurves.opensim(**chosen)


def opensim_model_with_paths(osim, path, paths, owner: str = "load_emg_driven_model"):
    """An initialised `opensim.Model` (and its state), `paths` (a FunctionBasedPathSet .xml)
    applied when given."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{owner}: no such model file {path!r}.")
    if paths is None:
        model = osim.Model(path)
    else:
        paths = os.fspath(paths)
        if not os.path.isfile(paths):
            raise FileNotFoundError(f"{owner}: no such path set {paths!r} "
                                    "(a FunctionBasedPathSet .xml).")
        processor = osim.ModelProcessor(path)
        processor.append(osim.ModOpReplacePathsWithFunctionBasedPaths(paths))
        try:
            model = processor.process()
        except Exception as err:  # OpenSim raises its own exception types
            raise ValueError(f"{owner}: OpenSim could not apply the path set "
                             f"{paths}: {err}") from None
    state = model.initSystem()
    return model, state


PATH_TOLERANCE = 1e-3
"""Held-out length or moment-arm error (m) of a fitted path above which `load_osim` warns."""


def _warn_path_errors(osim_model, state, muscles, coordinates, box, poly, seed) -> None:
    """Warn, naming them, about muscles whose fitted paths miss OpenSim's by more than
    PATH_TOLERANCE, and say where OpenSim's own lengths jump for them (`path_jumps`)."""
    from ._osim_paths import describe_jumps, path_jumps

    err_l, err_r = np.asarray(poly.fit_max), np.asarray(poly.fit_moment_arm_max)
    bad = [i for i in range(len(muscles))
           if err_l[i] > PATH_TOLERANCE or err_r[i] > PATH_TOLERANCE]
    if not bad:
        return
    names = [muscles[i] for i in bad]
    listed = ", ".join(f"{muscles[i]} {err_l[i] * 1e3:.1f} mm / {err_r[i] * 1e3:.1f} mm"
                       for i in sorted(bad, key=lambda i: -max(err_l[i], err_r[i])))
    jumps = path_jumps(osim_model, state, names, list(coordinates), box, seed=seed)
    why = (f" OpenSim's own lengths jump (wrapping discontinuities, which no smooth path "
           f"follows) for {describe_jumps(jumps, coordinates)}." if jumps else "")
    warnings.warn(
        f"load_osim: the fitted paths of {len(bad)} muscle(s) differ from OpenSim's by more "
        f"than {PATH_TOLERANCE * 1e3:.0f} mm over the sampled box (held-out max length / moment "
        f"arm error: {listed}; model.path.fit_max, fit_moment_arm_max).{why} Fit over the "
        "task's range (ranges=), give the model's FunctionBasedPathSet (paths=), or fix its "
        "wrap objects.", RuntimeWarning, stacklevel=3)


def load_osim(path, coordinates=None, muscles=None, *, tendon=None, ranges=None,
              paths=None, n_samples=None, max_degree=10, seed=0):
    """Read an OpenSim model into a jaxmsk `Model`.

    Args:
        path: the .osim file.
        coordinates: names of the coordinates to keep (the order of q; default: every
            coordinate not locked in the file, less the dependent ones of coupler
            constraints). Coordinates left out are held at their default values.
        muscles: names of the muscles to keep (default: all; for models read as a
            `JointTree` or over more than two coordinates, all that cross a kept coordinate).
        tendon: "compliant" or "rigid" for every muscle (default: compliant unless every
            muscle in the file has `ignore_tendon_compliance`).
        ranges: {coordinate: (min, max)} (rad or m) to sample the paths over instead of the
            file's coordinate ranges, e.g. the range a task uses: the paths' recorded
            `domain`, outside which `simulate` and `identify` warn. OpenSim's wrapping makes
            some paths jump or kink over the full range (arm26's TRIlong above ~0.7 rad
            shoulder elevation), which no smooth surrogate follows; a task range avoids that.
        paths: a FunctionBasedPathSet .xml (OpenSim's own polynomial paths, e.g. the one
            Moco's example3DWalking ships) applied with OpenSim's
            `ModOpReplacePathsWithFunctionBasedPaths`; its polynomials are then read exactly.
        n_samples: path samples (default 600·n_dofs, at least 600; for per-muscle fits,
            400 per coordinate a group of muscles crosses).
        max_degree: highest polynomial degree tried for the paths (per-muscle fits over
            three or more coordinates: at most 6).

    Skeleton: a serial chain of revolute joints (`PinJoint`s, one-coordinate
    `CustomJoint`s) becomes a `SerialChain`; anything else `tree_from_opensim` reads
    becomes a `JointTree` (three-axis hips, knees whose translations and rotations are
    splines or polynomials of the knee angle, the patella's `CoordinateCouplerConstraint`
    eliminated, several branches). Both check their body poses against OpenSim's.

    Paths are fitted to OpenSim's lengths and moment arms (`computeMomentArm`) together:
    for one or two coordinates over all of them; for more, or a `JointTree`, per muscle over
    only the coordinates it crosses (`FunctionBasedPath` polynomials are read exactly).
    The muscles' curve constants (tendon strain at one normalised force, passive fibre strain,
    active-force width) are read from De Groote, Thelen and Millard muscles as OpenSim's
    `replaceMuscles` carries them over.

    Returns a `Model`; `model.path.fit_rms` / `fit_max` hold the held-out length errors (m)
    and `fit_moment_arm_rms` / `fit_moment_arm_max` the moment-arm errors (m) per muscle.
    Where one is over 1 mm it warns (RuntimeWarning) naming the muscles, and names those
    whose OpenSim lengths themselves jump inside the box (`path_discontinuities`).

    Raises ValueError naming the joint, function or constraint jaxmsk cannot read, and
    warns (never silently drops) about force elements acting on the coordinates that are
    not supported.
    """
    osim = import_opensim()
    from ._osim_paths import crossing, polynomial_paths
    from ._osim_skeleton import chain_from_opensim
    from ._osim_tree import tree_from_opensim

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_osim: no such file {path!r}.")
    osim_model, state = opensim_model_with_paths(osim, path, paths, "load_osim")
    try:
        skeleton, coord_names, passive, skipped = chain_from_opensim(osim_model, coordinates)
    except ValueError:  # not a serial chain of revolute joints: the general tree
        skeleton, coord_names, passive, skipped = tree_from_opensim(osim_model, coordinates)
    per_muscle = (not isinstance(skeleton, SerialChain) or len(coord_names) > 2
                  or paths is not None)

    muscle_set = osim_model.getMuscles()
    all_muscles = [muscle_set.get(i).getName() for i in range(muscle_set.getSize())]
    unknown = [m for m in (muscles or []) if m not in all_muscles]
    if unknown:
        raise ValueError(f"load_osim: muscles {unknown} are not in {path}; it has {all_muscles}.")

    # The box the paths are sampled over: the coordinates' ranges or the given task ranges.
    coord_set = osim_model.getCoordinateSet()
    box = np.array([[coord_set.get(c).getRangeMin(), coord_set.get(c).getRangeMax()]
                    for c in coord_names])
    if ranges is not None:
        unknown = [c for c in ranges if c not in coord_names]
        if unknown:
            raise ValueError(f"load_osim: ranges names {unknown}, which are not among the loaded "
                             f"coordinates {coord_names}.")
        for c, r in ranges.items():
            lo, hi = (float(v) for v in r)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"load_osim: ranges[{c!r}] = {r}; give (min, max) in rad "
                                 "with min < max.")
            box[coord_names.index(c)] = (lo, hi)
    if muscles is None:
        muscles = all_muscles
        if per_muscle and muscles:
            crossed = crossing(osim_model, state, muscles, coord_names, box, seed)
            muscles = [m for m in muscles if crossed[m]]
    if not muscles:
        raise ValueError(f"load_osim: {path} has no muscles crossing {coord_names} to load.")
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

    n_dofs = len(coord_names)
    if per_muscle:
        poly, _ = polynomial_paths(
            osim_model, state, muscles, coord_names, box, max_degree=max_degree,
            samples_per_dof=400 if n_samples is None else max(1, int(n_samples) // n_dofs),
            seed=seed)
    else:
        n = max(600, 600 * n_dofs) if n_samples is None else int(n_samples)
        rng = np.random.default_rng(seed)
        q = rng.uniform(box[:, 0], box[:, 1], size=(n, n_dofs))
        lengths, arms = sample_mtu_lengths(osim_model, state, coord_names, muscles, q,
                                           moment_arms=True)
        poly = PolynomialPath.fit(q, lengths, arms, max_degree=max_degree, seed=seed,
                                  ranges=box)

    _warn_path_errors(osim_model, state, muscles, coord_names, box, poly, seed)
    dtype = jnp.result_type(float)
    params = MuscleParameters(*(jnp.asarray(fields[:, k], dtype) for k in range(5)))
    model = Model(
        muscles=DeGrooteFregly2016Muscle(params, tendon=tendon,
                                         curves=model_curves(osim, objs, muscles, path)),
        activation=DeGrooteActivation(jnp.asarray(taus[:, 0], dtype),
                                      jnp.asarray(taus[:, 1], dtype)),
        skeleton=skeleton,
        path=poly,
        passive=tuple(passive),
        muscle_names=tuple(muscles),
        coordinate_names=tuple(coord_names),
    )
    return model


def path_discontinuities(path, coordinates, muscles=None, *, ranges=None, lines: int = 4,
                         points: int = 200, threshold: float = 1e-3,
                         seed: int = 0) -> list[dict]:
    """Where an OpenSim model's own muscle lengths jump: the wrapping discontinuities (a path
    flipping around a wrap object) that no smooth surrogate, and no gradient, can follow.

    Each coordinate is swept over its range (or `ranges[c]`) through `lines` random poses of
    the others, `points` samples a sweep; a step between samples above `threshold` (m) and
    10× the sweep's median step is bisected 20 times, and kept if it is still above
    threshold/2 over about 1e-6 of the range. A search, not a proof: jumps the sweeps do not
    cross are not found (more `lines` find more).

    Args:
        path: the .osim file.
        coordinates: the coordinates to sweep (the others stay at their defaults; coupled
            coordinates follow their constraints).
        muscles: the muscles to examine (default: all).
        ranges: {coordinate: (min, max)} instead of the file's ranges.

    Returns a list of {"muscle", "coordinate", "at" (the pose, in `coordinates` order),
    "jump" (m, the length after minus before)}, the largest first. For the walking model of
    data/opensim-walking with its GeometryPaths, e.g., glmax1_r's length jumps by 0.22 m
    across 1e-6 rad of hip adduction.
    """
    from ._osim_paths import path_jumps
    from ._osim_skeleton import checked_coordinates

    osim = import_opensim()
    osim_model, state = opensim_model_with_paths(osim, path, None, "path_discontinuities")
    coord_set = osim_model.getCoordinateSet()
    names = [coord_set.get(i).getName() for i in range(coord_set.getSize())]
    coordinates = checked_coordinates(names, coordinates)
    muscle_set = osim_model.getMuscles()
    all_muscles = [muscle_set.get(i).getName() for i in range(muscle_set.getSize())]
    muscles = all_muscles if muscles is None else list(muscles)
    unknown = [m for m in muscles if m not in all_muscles]
    if unknown:
        raise ValueError(f"path_discontinuities: muscles {unknown} are not in {path}.")
    box = np.array([[coord_set.get(c).getRangeMin(), coord_set.get(c).getRangeMax()]
                    for c in coordinates])
    for c, r in (ranges or {}).items():
        if c not in coordinates:
            raise ValueError(f"path_discontinuities: ranges names {c!r}, which is not among "
                             f"the coordinates {coordinates}.")
        lo, hi = (float(v) for v in r)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"path_discontinuities: ranges[{c!r}] = {r}; give (min, max) with "
                             "min < max.")
        box[coordinates.index(c)] = (lo, hi)
    return path_jumps(osim_model, state, muscles, coordinates, box, lines=lines,
                      points=points, threshold=threshold, seed=seed)


def write_osim_polynomial_paths(model: Model, source, out, *, overwrite: bool = False) -> str:
    """Write a copy of the OpenSim model `source` whose muscles follow `model`'s polynomial
    paths (OpenSim `FunctionBasedPath`s with `MultivariatePolynomialFunction` lengths; OpenSim
    takes moment arms and lengthening speeds from the polynomial's derivatives).

    OpenSim then simulates exactly the geometry jaxmsk simulates, which separates the
    surrogate's error from the dynamics when the two are compared, and lets a fitted or
    identified path be used in OpenSim's tools. Only the muscles of `model` are changed
    (matched by name); coordinates must be `model.coordinate_names`.

    The file is written to a temporary name and renamed into place; an existing `out` is
    kept unless `overwrite=True`. Returns the path written.
    """
    osim = import_opensim()
    source, out = os.fspath(source), os.fspath(out)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"write_osim_polynomial_paths: {out!r} exists; pass overwrite=True "
                              "or choose another name.")
    if model.path.n_dofs > 6:
        raise ValueError("OpenSim's MultivariatePolynomialFunction takes at most 6 coordinates; "
                         f"this path has {model.path.n_dofs}.")
    if not model.muscle_names or not model.coordinate_names:
        raise ValueError("write_osim_polynomial_paths needs model.muscle_names and "
                         "model.coordinate_names to match the OpenSim model's components.")
    raw = model.path.in_raw_coordinates()
    osim_model = osim.Model(source)
    coord_set = osim_model.getCoordinateSet()
    missing = [c for c in model.coordinate_names if not coord_set.contains(c)]
    muscle_set = osim_model.getMuscles()
    missing += [m for m in model.muscle_names if not muscle_set.contains(m)]
    if missing:
        raise ValueError(f"write_osim_polynomial_paths: {missing} are not in {source}.")
    coord_paths = osim.StdVectorString()
    for c in model.coordinate_names:
        coord_paths.append(coord_set.get(c).getAbsolutePathString())
    coefficients = np.asarray(raw.coefficients, np.float64)
    for i, name in enumerate(model.muscle_names):
        fn = osim.MultivariatePolynomialFunction()
        fn.setDimension(raw.n_dofs)
        fn.setOrder(raw.degree)
        fn.setCoefficients(osim.Vector([float(v) for v in coefficients[i]]))
        fbp = osim.FunctionBasedPath()
        fbp.setName("path")
        fbp.setCoordinatePaths(coord_paths)
        fbp.setLengthFunction(fn)
        muscle_set.get(name).set_path(fbp)
    osim_model.finalizeFromProperties()
    directory = os.path.dirname(os.path.abspath(out))
    tmp = os.path.join(directory, f".{os.path.basename(out)}.{os.getpid()}.tmp")
    try:
        osim_model.printToXML(tmp)
        if not overwrite and os.path.exists(out):
            raise FileExistsError(f"write_osim_polynomial_paths: {out!r} appeared while writing.")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out
