"""Import the skeleton of an OpenSim model as a `JointTree` (function-based joints).

What `tree_from_opensim` reads, through the OpenSim 4.x API:

- `CustomJoint`: each of the six `TransformAxis`es of its `SpatialTransform`, with its axis
  and its function of (at most) one coordinate: `Constant`, `LinearFunction`,
  `PolynomialFunction`, `MultiplierFunction`, `SimmSpline`, `PiecewiseLinearFunction`,
  `GCVSpline`. Splines are piecewise polynomials; their coefficients are recovered exactly
  from OpenSim's own values inside each interval (degree + 1 samples), and every function is
  then compared with OpenSim's over its knots and beyond (linear extrapolation), so a
  function jaxmsk would evaluate differently raises instead of loading.
- `PinJoint` (rotation about z), `SliderJoint` (translation along x), `PlanarJoint`
  (rotation about z, translations along x and y) and `WeldJoint`.
- Any joint whose coordinates are all held (not selected, locked at their defaults) is a
  fixed transform taken from OpenSim's body poses at the default state, whatever its type.
- `CoordinateCouplerConstraint`s: the dependent coordinate (e.g. `knee_angle_r_beta`) is a
  function of its independent one and eliminated; with the independent held, it is held too.
- Bodies that no selected coordinate moves are dropped (fixed to ground, no dynamics).

The import checks itself: every body pose of the tree is compared with OpenSim's at the
default pose and at random poses of the coordinates' ranges, and a mismatch raises.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..skeleton._tree import JointFunction, JointTree
from ._osim_pose import pose_constraints, set_pose
from ._osim_skeleton import (
    body_inertia,
    checked_coordinates,
    compose,
    default_state,
    frame_transform,
    import_opensim,
    invert,
    passive_elements,
    vec3,
)

_SPLINE_DEGREE = {"SimmSpline": 3, "PiecewiseLinearFunction": 1}
_FUNCTION_TOL = 1e-9  # relative agreement of a converted function with OpenSim's values
_POSE_TOL = 1e-8  # m and rotation-matrix entries, the self-check
_N_CHECK_POSES = 4


def _calc(osim, fn, x: float) -> float:
    return fn.calcValue(osim.Vector(1, float(x)))


def _convert(osim, fn, label: str, scale: float = 1.0) -> JointFunction:
    kind = fn.getConcreteClassName()
    if kind == "Constant":
        return JointFunction.constant(scale * osim.Constant.safeDownCast(fn).getValue())
    if kind == "LinearFunction":
        lin = osim.LinearFunction.safeDownCast(fn)
        return JointFunction.linear(scale * lin.getSlope(), scale * lin.getIntercept())
    if kind == "PolynomialFunction":
        c = osim.PolynomialFunction.safeDownCast(fn).getCoefficients()
        return JointFunction.polynomial(scale * np.array([c.get(i) for i in range(c.size())])[::-1])
    if kind == "MultiplierFunction":
        mf = osim.MultiplierFunction.safeDownCast(fn)
        return _convert(osim, mf.getFunction(), label, scale * mf.getScale())
    if kind in _SPLINE_DEGREE or kind == "GCVSpline":
        spline = getattr(osim, kind).safeDownCast(fn)
        xs = np.array([spline.getX(i) for i in range(spline.getSize())])
        if xs.size < 2:
            raise ValueError(f"{label}: its {kind} has {xs.size} point; give at least two.")
        degree = spline.getDegree() if kind == "GCVSpline" else _SPLINE_DEGREE[kind]
        t = (np.arange(degree + 1) + 0.5) / (degree + 1)
        coef = []
        for a, b in zip(xs[:-1], xs[1:]):
            dx = t * (b - a)
            y = [scale * _calc(osim, fn, a + d) for d in dx]
            coef.append(np.linalg.solve(np.vander(dx, degree + 1, increasing=True), y))
        return JointFunction(np.asarray(xs), np.asarray(coef), linear_ends=True)
    raise ValueError(f"{label} is a {kind}; jaxmsk reads Constant, LinearFunction, "
                     "PolynomialFunction, MultiplierFunction, SimmSpline, "
                     "PiecewiseLinearFunction and GCVSpline. Replace it by one of these.")


def joint_function(osim, fn, label: str, scale: float = 1.0) -> JointFunction:
    """An OpenSim function of one variable as a `JointFunction`, checked against OpenSim's
    values over its knots and 0.5 beyond (or over [−π, π] for polynomials)."""
    jf = _convert(osim, fn, label, scale)
    b = np.asarray(jf.breaks)
    xs = (np.linspace(b[0] - 0.5, b[-1] + 0.5, 41) if jf.linear_ends
          else np.linspace(-np.pi, np.pi, 41))
    ours = np.asarray(jax.vmap(jf)(jnp.asarray(xs)))
    theirs = scale * np.array([_calc(osim, fn, x) for x in xs])
    err = np.abs(ours - theirs).max()
    if not err <= _FUNCTION_TOL * (1.0 + np.abs(theirs).max()):
        raise ValueError(f"{label}: jaxmsk's reading of its {fn.getConcreteClassName()} differs "
                         f"from OpenSim's values by {err:.3g} over [{xs[0]:.3g}, {xs[-1]:.3g}]; "
                         "please report it with the model file.")
    return jf


def _constraints(osim, model):
    """{dependent: (function, scale, [independent names], name)} of the enforced couplers;
    raises for other enforced constraints."""
    couplers = {}
    for con in model.getConstraintSet():
        if not con.get_isEnforced():
            continue
        c = osim.CoordinateCouplerConstraint.safeDownCast(con)
        if c is None:
            raise ValueError(f"Constraint '{con.getName()}' ({con.getConcreteClassName()}) is "
                             "enforced; jaxmsk eliminates CoordinateCouplerConstraints only. "
                             "Disable it (isEnforced false) or remove it.")
        names = c.getIndependentCoordinateNames()
        scale = osim.PropertyHelper.getValueDouble(c.getPropertyByName("scale_factor"))
        couplers[c.getDependentCoordinateName()] = (
            c.getFunction(), scale, [names.get(i) for i in range(names.getSize())], c.getName())
    return couplers


def _selection(osim, model, coordinates, couplers) -> list[str]:
    coord_set = model.getCoordinateSet()
    all_names = [c.getName() for c in coord_set]
    if coordinates is None:
        chosen = [c.getName() for c in coord_set
                  if not c.getDefaultLocked() and c.getName() not in couplers]
    else:
        chosen = checked_coordinates(all_names, coordinates)
    for name in chosen:
        if name in couplers:
            _, _, ind, con = couplers[name]
            raise ValueError(f"Coordinate '{name}' follows {ind} through the constraint "
                             f"'{con}'; select {ind} instead (the dependent coordinate is "
                             "eliminated).")
        c = coord_set.get(name)  # any motion type: rotational, translational or both
        if c.getDefaultIsPrescribed():
            raise ValueError(f"Coordinate '{name}' is prescribed in the file; a prescribed "
                             "motion cannot be a free coordinate.")
    if not chosen:
        raise ValueError("No coordinate selected: the skeleton would not move.")
    return chosen


def tree_from_opensim(model, coordinates: list[str] | None = None):
    """A `JointTree` and passive elements from a loaded, initialised `opensim.Model`.

    Args:
        model: an `opensim.Model` after `initSystem()`; it is not modified.
        coordinates: the independent coordinates to keep, in the order of q (any order).
            Default: every coordinate not locked in the file, less the dependent ones of
            coupler constraints. Coordinates left out are held at their default values.

    Returns:
        (tree, names, passive, messages) as `chain_from_opensim`.

    Raises ValueError naming the joint, function, coordinate or constraint jaxmsk cannot
    read, and when the tree's body poses differ from OpenSim's (the self-check).
    """
    osim = import_opensim()
    couplers = _constraints(osim, model)
    names = _selection(osim, model, coordinates, couplers)
    state = default_state(osim, model, set(names))
    set_pose(model, state, [], [])  # dependent coordinates from their couplers
    coord_set = model.getCoordinateSet()
    value = {c.getName(): c.getValue(state) for c in coord_set}
    index = {n: i for i, n in enumerate(names)}
    couplings, coupling_inputs = [], []
    joint_notes: list[str] = []

    def source(name: str) -> int | None:
        """The index of coordinate `name` in u = (q, dependent ones), None when held."""
        if name in index:
            return index[name]
        if name not in couplers:
            return None
        fn, scale, ind, con = couplers[name]
        moving = [c for c in ind if c in index]
        if not moving:
            return None
        if len(ind) != 1:
            raise ValueError(f"Constraint '{con}' makes '{name}' a function of {ind}; jaxmsk "
                             "eliminates couplers of one independent coordinate.")
        index[name] = len(names) + len(couplings)
        couplings.append(joint_function(osim, fn, f"the function of constraint '{con}'", scale))
        coupling_inputs.append(index[ind[0]])
        return index[name]

    def coordinate_axis(name: str):
        i = source(name)
        return (JointFunction.linear(1.0), i) if i is not None else (
            JointFunction.constant(value[name]), -1)

    eye = np.eye(3)

    def motion(joint):
        """Six (axis, function, input) of a moving joint, or None when it is held fixed."""
        kind, jname = joint.getConcreteClassName(), joint.getName()
        coords = [joint.get_coordinates(i).getName() for i in range(joint.numCoordinates())]
        if all(source(c) is None for c in coords):
            return None
        held = (JointFunction.constant(0.0), -1)
        if kind == "PinJoint":
            return [(eye[0], *held), (eye[1], *held), (eye[2], *coordinate_axis(coords[0])),
                    (eye[0], *held), (eye[1], *held), (eye[2], *held)]
        if kind == "SliderJoint":
            return [(eye[0], *held), (eye[1], *held), (eye[2], *held),
                    (eye[0], *coordinate_axis(coords[0])), (eye[1], *held), (eye[2], *held)]
        if kind == "PlanarJoint":
            return [(eye[0], *held), (eye[1], *held), (eye[2], *coordinate_axis(coords[0])),
                    (eye[0], *coordinate_axis(coords[1])), (eye[1], *coordinate_axis(coords[2])),
                    (eye[2], *held)]
        if kind != "CustomJoint":
            raise ValueError(f"Joint '{jname}' is a {kind} moving coordinates {coords}; jaxmsk "
                             "reads CustomJoint, PinJoint, SliderJoint, PlanarJoint and "
                             "WeldJoint. Leave its coordinates out of `coordinates` to hold it.")
        spatial = osim.CustomJoint.safeDownCast(joint).getSpatialTransform()
        out = []
        for k in range(6):
            ta = spatial.getTransformAxis(k)
            label = f"{ta.getName()} of CustomJoint '{jname}'"
            ta_names = [ta.get_coordinates(i)
                        for i in range(ta.getCoordinateNamesInArray().getSize())]
            axis = vec3(ta.getAxis())
            axis = axis / np.linalg.norm(axis)
            fn = joint_function(osim, ta.getFunction(), label)
            if len(ta_names) > 1:
                raise ValueError(f"{label} is a function of {ta_names}; jaxmsk reads functions "
                                 "of one coordinate.")
            if not ta_names:
                if not fn.is_constant:
                    raise ValueError(f"{label} has a non-constant function of no coordinate.")
                out.append((axis, fn, -1))
                continue
            i = source(ta_names[0])
            if i is None:
                out.append((axis, JointFunction.constant(float(fn(value[ta_names[0]]))), -1))
            else:
                out.append((axis, fn, i))
        turning = [i for _, fn, i in out[:3] if i >= 0]
        shared = sorted({i for i in turning if turning.count(i) > 1})
        if shared:
            joint_notes.append(
                f"CustomJoint '{jname}' turns about several axes as functions of one "
                f"coordinate ({[n for n, k in index.items() if k in shared]}). For such joints "
                "OpenSim's velocity-dependent forces are not those of its own kinematics (the "
                "walking model's walker knee: OpenSim's energy drifts by 5 % in 1 s of free "
                "swing with every force off); jaxmsk's dynamics follow the kinematics, so "
                "forward simulations may differ from OpenSim's about this joint (poses, mass "
                "matrix and gravity agree).")
        return out

    # Walk the joints from ground, keeping the bodies a selected coordinate moves.
    ground = model.getGround().getName()
    children: dict[str, list] = {}
    for joint in model.getJointSet():
        children.setdefault(joint.getParentFrame().findBaseFrame().getName(), []).append(joint)
    pose = {ground: (eye, np.zeros(3))}
    for body in model.getBodySet():
        pose[body.getName()] = frame_transform(body.getTransformInGround(state))
    kept: dict[str, int] = {}
    fields = {k: [] for k in ("parents", "parent_offset", "parent_rotation", "child_offset",
                              "child_rotation", "axes", "functions", "inputs", "mass", "com",
                              "inertia")}
    queue = [ground]
    while queue:
        parent_name = queue.pop(0)
        for joint in children.get(parent_name, []):
            child_name = joint.getChildFrame().findBaseFrame().getName()
            queue.append(child_name)
            six = motion(joint)
            if six is None and parent_name not in kept:
                continue  # fixed to ground
            x_pf = frame_transform(joint.getParentFrame().findTransformInBaseFrame())
            x_bm = frame_transform(joint.getChildFrame().findTransformInBaseFrame())
            if parent_name in kept:
                parent = kept[parent_name]
            else:
                parent, x_pf = -1, compose(pose[parent_name], x_pf)
            if six is None:  # held joint of a moving body: its transform at the default state
                x_fm = compose(invert(frame_transform(joint.getParentFrame().getTransformInGround(
                    state))), frame_transform(joint.getChildFrame().getTransformInGround(state)))
                x_bm = compose(x_bm, invert(x_fm))
                six = [(eye[k % 3], JointFunction.constant(0.0), -1) for k in range(6)]
            body = model.getBodySet().get(child_name)
            i_body = body_inertia(body)
            kept[child_name] = len(fields["parents"])
            fields["parents"].append(parent)
            fields["parent_rotation"].append(x_pf[0])
            fields["parent_offset"].append(x_pf[1])
            fields["child_rotation"].append(x_bm[0])
            fields["child_offset"].append(x_bm[1])
            fields["axes"].append(np.stack([a for a, _, _ in six]))
            fields["functions"].append(tuple(f for _, f, _ in six))
            fields["inputs"].append(tuple(i for _, _, i in six))
            fields["mass"].append(body.getMass())
            fields["com"].append(vec3(body.getMassCenter()))
            fields["inertia"].append(i_body)
    if not kept:
        raise ValueError(f"The coordinates {names} move no body.")
    arrays = {k: np.stack(v) for k, v in fields.items()
              if k not in ("parents", "functions", "inputs")}
    tree = JointTree(parents=fields["parents"], functions=fields["functions"],
                     inputs=fields["inputs"], n_coordinates=len(names), couplings=couplings,
                     coupling_inputs=coupling_inputs, gravity=vec3(model.getGravity()), **arrays)
    _self_check(model, tree, names, list(kept), set(names))
    passive, messages = passive_elements(osim, model, names)
    messages = joint_notes + messages
    for dep in (d for d in couplers if d in index):
        for force in model.getForceSet():
            if (force.get_appliesForce() and force.hasProperty("coordinate")
                    and dep in force.getPropertyByName("coordinate").toString()):
                messages.append(f"{force.getConcreteClassName()} '{force.getName()}' acts on "
                                f"the dependent coordinate '{dep}' and is not imported.")
    for msg in messages:
        warnings.warn(msg, stacklevel=2)
    return tree, names, passive, messages


def _self_check(model, tree, names, bodies, selected, seed: int = 0) -> None:
    """Body poses of the tree against OpenSim's at the default pose and random poses."""
    osim = import_opensim()
    state = default_state(osim, model, selected)
    coords = [model.getCoordinateSet().get(n) for n in names]
    constraints = pose_constraints(model)
    rng = np.random.default_rng(seed)
    lo = np.array([c.getRangeMin() for c in coords])
    hi = np.array([c.getRangeMax() for c in coords])
    poses = [np.array([c.getDefaultValue() for c in coords])]
    poses += [rng.uniform(lo, hi) for _ in range(_N_CHECK_POSES - 1)]
    for q in poses:
        set_pose(model, state, coords, q, constraints)
        rotations, origins = (np.asarray(x, np.float64) for x in tree.body_transforms(q))
        for i, body in enumerate(bodies):
            r, p = frame_transform(model.getBodySet().get(body).getTransformInGround(state))
            err = max(np.abs(r - rotations[i]).max(), np.abs(p - origins[i]).max())
            if not err <= _POSE_TOL:
                raise ValueError(
                    f"Internal check failed: body '{body}' is posed differently from OpenSim "
                    f"(error {err:.3g}) at q = {q.tolist()} ({names}). The model uses a joint "
                    "feature jaxmsk does not read; please report it with the model file.")
