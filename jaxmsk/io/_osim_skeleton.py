"""Import the skeleton of an OpenSim model as a `SerialChain` plus its passive elements.

What is read from the model, and how (the OpenSim 4.x API, no XML parsing):

- Joint frames from `Joint.getParentFrame()/getChildFrame().findTransformInBaseFrame()`:
  each is an offset frame on a body (or ground); files in the 3.x format are converted by
  OpenSim on load, so `location_in_parent`/`orientation_in_parent` arrive the same way.
- `PinJoint`: rotation about z of the joint frames.
- `CustomJoint`: Simbody's function-based mobilizer. Its rotation of the child frame M
  relative to the parent frame F is the body-fixed product R(a₁,θ₁)·R(a₂,θ₂)·R(a₃,θ₃) of the
  three rotation `TransformAxis`es, and its translation Σ tₖ·aₖ is expressed in F (checked
  against OpenSim in the tests). With one axis θₖ = s·q + c (s = ±1) and every other
  function constant, R_FM = A·R(s·aₖ, q)·B, which is the revolute joint
  R(A·s·aₖ, q)·(A·B): the axis A·s·aₖ goes to `axis` and A·B into the child frame.
- Fixed transforms (welds, locked or unselected coordinates) from the body poses that
  OpenSim computes at the default state, so any joint type may be folded.

The import checks itself: the chain's body poses are compared with OpenSim's at the
default pose and at a perturbed one, and a mismatch raises instead of returning a wrong
skeleton.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..skeleton._chain import SerialChain
from ..skeleton._passive import CoordinateLimitForce, SpringGeneralizedForce

_SLOPE_TOL = 1e-12
_AXIS_TOL = 1e-12
_SELF_CHECK_ANGLE = 0.3  # rad added to every coordinate for the second self-check pose


def import_opensim():
    """The `opensim` package, or an ImportError that says how to install it."""
    try:
        import opensim
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading OpenSim models needs the OpenSim Python package: "
            "pip install 'opensim==4.6.*'"
        ) from err
    return opensim


def vec3(v) -> np.ndarray:
    return np.array([v.get(i) for i in range(3)], dtype=np.float64)


def rot33(r) -> np.ndarray:
    return np.array([[r.get(i, j) for j in range(3)] for i in range(3)], dtype=np.float64)


def frame_transform(x) -> tuple[np.ndarray, np.ndarray]:
    """(R, p) of a SimTK Transform: a point with coordinates v maps to R·v + p."""
    return rot33(x.R()), vec3(x.p())


def compose(a, b):
    return a[0] @ b[0], a[0] @ b[1] + a[1]


def invert(a):
    return a[0].T, -a[0].T @ a[1]


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Right-handed rotation by `angle` (rad) about the unit `axis`, in float64 NumPy."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _custom_joint_motion(osim, joint, coordinate: str):
    """(axis in F, C = R_FM(0), p_FM in F) of a one-coordinate revolute CustomJoint."""
    name = joint.getName()
    spatial = osim.CustomJoint.safeDownCast(joint).getSpatialTransform()
    rotations, moving, translation = [], None, np.zeros(3)
    for k in range(6):
        ta = spatial.getTransformAxis(k)
        label = f"{ta.getName()} of CustomJoint '{name}'"
        names = [ta.get_coordinates(i) for i in range(ta.getCoordinateNamesInArray().getSize())]
        fn = ta.getFunction()
        kind = fn.getConcreteClassName()
        axis = vec3(ta.getAxis())
        axis = axis / np.linalg.norm(axis)
        if kind == "Constant":
            value, slope = osim.Constant.safeDownCast(fn).getValue(), 0.0
        elif kind == "LinearFunction" and names:
            lin = osim.LinearFunction.safeDownCast(fn)
            value, slope = lin.getIntercept(), lin.getSlope()
        else:
            raise ValueError(
                f"Joint '{name}': {label} uses a {kind}"
                f"{' of ' + ', '.join(names) if names else ' with no coordinate'}; only "
                "Constant functions and LinearFunction (slope ±1) of the joint's coordinate "
                "are supported. Lock or remove this joint, or select other coordinates.")
        if slope != 0.0 and names != [coordinate]:
            raise ValueError(f"Joint '{name}': {label} depends on {names}, not only on "
                             f"'{coordinate}' (a coupled joint).")
        if k >= 3:
            if slope != 0.0:
                raise ValueError(f"Joint '{name}': {label} translates with '{coordinate}'; "
                                 "only revolute joints (constant translations) are supported.")
            translation += value * axis
            continue
        if slope != 0.0:
            if abs(abs(slope) - 1.0) > _SLOPE_TOL:
                raise ValueError(f"Joint '{name}': {label} has slope {slope}; the rotation must "
                                 "equal ±q plus a constant (slope ±1).")
            if moving is not None:
                raise ValueError(f"Joint '{name}': several rotation axes depend on "
                                 f"'{coordinate}' (a coupled rotation).")
            moving = (k, np.sign(slope) * axis)
        rotations.append(_rotation(axis, value))  # angle at q = 0
    if moving is None:
        raise ValueError(f"Joint '{name}': no rotation of its CustomJoint depends on "
                         f"'{coordinate}'.")
    k, axis_k = moving
    note = None
    before = np.eye(3)
    for r in rotations[:k]:
        before = before @ r
    if np.abs(before @ axis_k - axis_k).max() > _AXIS_TOL:
        note = (f"CustomJoint '{name}': a constant rotation precedes the rotation about "
                f"'{coordinate}'. OpenSim (Simbody's function-based mobilizer) then computes "
                "the joint's angular velocity about the unrotated axis, inconsistently with "
                "its own joint transform; jaxmsk uses the consistent (rotated) axis, so its "
                "dynamics differ from OpenSim's for this joint. Put the coordinate on "
                "rotation1 to match both.")
    a, b = np.eye(3), np.eye(3)
    for r in rotations[: k + 1]:  # A ends with the constant part R(a_k, c) of axis k
        a = a @ r
    for r in rotations[k + 1:]:
        b = b @ r
    return a @ axis_k, a @ b, translation, note


def _joint_motion(osim, joint, coordinate: str):
    kind = joint.getConcreteClassName()
    if kind == "PinJoint":
        return np.array([0.0, 0.0, 1.0]), np.eye(3), np.zeros(3), None
    if kind == "CustomJoint":
        return _custom_joint_motion(osim, joint, coordinate)
    raise ValueError(f"Joint '{joint.getName()}' is a {kind} moving coordinate '{coordinate}'; "
                     "only PinJoint and one-coordinate revolute CustomJoint can become chain "
                     "joints. Leave its coordinates out of `coordinates` to lock it.")


def default_state(osim, model, selected):
    """A copy of the working state at default coordinate values, selected ones unlocked."""
    try:
        state = osim.State(model.getWorkingState())
        model.realizeTime(state)
    except Exception as err:  # OpenSim raises if the system was never built
        raise ValueError("chain_from_opensim needs an initialised model: call "
                         "model.initSystem() first.") from err
    for c in model.getCoordinateSet():
        if c.getName() in selected and c.getLocked(state):
            c.setLocked(state, False)
        if not c.getLocked(state):
            c.setValue(state, c.getDefaultValue(), False)
        c.setSpeedValue(state, 0.0)
    model.realizePosition(state)
    return state


def body_inertia(body) -> np.ndarray:
    """An OpenSim body's inertia about its COM in its frame (kg·m²), as a 3×3 matrix."""
    inertia = body.getInertia()
    moments, products = vec3(inertia.getMoments()), vec3(inertia.getProducts())
    i_body = np.diag(moments)
    i_body[0, 1] = i_body[1, 0] = products[0]
    i_body[0, 2] = i_body[2, 0] = products[1]
    i_body[1, 2] = i_body[2, 1] = products[2]
    return i_body


def _merge_mass(members, pose_in_root):
    """Mass (kg), COM (m) and inertia about the COM (kg·m²) of rigidly joined bodies."""
    masses, coms, inertias = [], [], []
    for body in members:
        r, p = pose_in_root[body.getName()]
        i_body = body_inertia(body)
        masses.append(body.getMass())
        coms.append(p + r @ vec3(body.getMassCenter()))
        inertias.append(r @ i_body @ r.T)
    total = float(np.sum(masses))
    com = (np.sum([m * c for m, c in zip(masses, coms)], axis=0) / total if total > 0
           else coms[0])
    inertia = np.zeros((3, 3))
    for m, c, i in zip(masses, coms, inertias):
        d = c - com
        inertia += i + m * (d @ d * np.eye(3) - np.outer(d, d))
    return total, com, inertia


def checked_coordinates(names: list[str], coordinates) -> list[str]:
    """`coordinates` as a list, checked to be distinct members of the model's `names`."""
    coordinates = list(coordinates)
    unknown = [c for c in coordinates if c not in names]
    if unknown or len(set(coordinates)) != len(coordinates):
        raise ValueError(f"coordinates {coordinates} must be distinct names of the model's "
                         f"coordinates {names}; unknown: {unknown}.")
    return coordinates


def _select(osim, model, coordinates) -> set[str]:
    """The selected coordinate names, checked to be free rotational coordinates."""
    coord_set = model.getCoordinateSet()
    by_name = {c.getName(): c for c in (coord_set.get(i) for i in range(coord_set.getSize()))}
    if coordinates is None:
        selected = {n for n, c in by_name.items() if not c.getDefaultLocked()}
    else:
        selected = set(checked_coordinates(list(by_name), coordinates))
    for name in sorted(selected):
        c = by_name[name]
        if c.getMotionType() != osim.Coordinate.Rotational:
            kind = {osim.Coordinate.Translational: "translational",
                    osim.Coordinate.Coupled: "coupled"}.get(c.getMotionType(), "not rotational")
            raise ValueError(f"Coordinate '{name}' of joint '{c.getJoint().getName()}' is "
                             f"{kind}; only revolute joints are supported. Leave it out of "
                             "`coordinates` to lock it at its default value.")
        if c.getDefaultIsPrescribed():
            raise ValueError(f"Coordinate '{name}' is prescribed in the file; a prescribed "
                             "motion cannot be a free chain coordinate.")
    return selected


def _check_constraints(osim, model, selected) -> None:
    """Raise for an enforced constraint, unless it only couples locked coordinates."""
    for con in model.getConstraintSet():
        if not con.get_isEnforced():
            continue
        coupler = osim.CoordinateCouplerConstraint.safeDownCast(con)
        what = "constrains the model"
        if coupler is not None:
            ind = coupler.getIndependentCoordinateNames()
            involved = {coupler.getDependentCoordinateName()}
            involved |= {ind.get(i) for i in range(ind.getSize())}
            if not involved & selected:
                continue  # only couples locked coordinates
            what = f"couples {sorted(involved)}"
        raise ValueError(f"Constraint '{con.getName()}' ({con.getConcreteClassName()}) {what}; "
                         "a SerialChain has independent coordinates. Disable the constraint "
                         "or leave its coordinates unselected.")


def chain_from_opensim(model, coordinates: list[str] | None = None):
    """A `SerialChain` and passive elements from a loaded, initialised `opensim.Model`.

    Joints are walked from ground. Each selected coordinate must belong to a `PinJoint` or
    to a `CustomJoint` whose only coordinate it is, with one rotation linear in q of slope
    ±1 and every other rotation and all translations constant. Everything else is folded
    rigidly: `WeldJoint`s, and every joint whose coordinates are not selected, which are
    **locked at their default values** (any joint type). Bodies joined rigidly are merged
    (mass, centre of mass, inertia) into the chain body they hang from; bodies rigidly
    attached to ground are dropped.

    Args:
        model: an `opensim.Model` after `model.initSystem()`; it is not modified.
        coordinates: names of the coordinates to keep, in chain order from ground outward.
            Default: every coordinate not locked in the file, in chain order (the file's
            order for ordinary models).

    Returns:
        chain: the `SerialChain` (gravity from the model).
        names: the selected coordinate names, in the order of q.
        passive: `SpringGeneralizedForce` and `CoordinateLimitForce` elements acting on a
            selected coordinate, indexed into q; elements on locked coordinates are dropped.
        messages: warnings, each also issued with `warnings.warn`: force elements that were
            not imported and may act on the selected coordinates (e.g.
            `ExpressionBasedCoordinateForce`; muscles are not listed, `load_osim` imports
            them), and CustomJoints whose OpenSim dynamics are inconsistent (below).

    OpenSim quirk: when a CustomJoint's moving rotation follows a non-zero constant rotation
    about another axis, Simbody's velocity kinematics uses the unrotated axis while the
    joint transform uses the rotated one, so OpenSim's mass matrix is not that of its own
    kinematics. jaxmsk keeps the consistent kinematics and warns; with the coordinate on
    `rotation1` (as in arm26 and most models), both agree to rounding.

    Raises:
        ValueError naming the joint, coordinate, constraint or element when the selection
        is not a serial chain of supported revolute joints, or the model is not initialised.
    """
    osim = import_opensim()
    selected = _select(osim, model, coordinates)
    state = default_state(osim, model, selected)
    _check_constraints(osim, model, selected)

    # Rigid groups: each chain body with everything fixed to it, walked from ground.
    ground = model.getGround().getName()
    pose = {ground: (np.eye(3), np.zeros(3))}
    for body in model.getBodySet():
        pose[body.getName()] = frame_transform(body.getTransformInGround(state))
    bodies = {b.getName(): b for b in model.getBodySet()}
    children: dict[str, list] = {}
    for joint in model.getJointSet():
        parent = joint.getParentFrame().findBaseFrame().getName()
        children.setdefault(parent, []).append(joint)

    def moving_coordinate(joint) -> str | None:
        names = [joint.get_coordinates(i).getName() for i in range(joint.numCoordinates())]
        chosen = [n for n in names if n in selected]
        if chosen and len(names) > 1:
            raise ValueError(f"Joint '{joint.getName()}' ({joint.getConcreteClassName()}) has "
                             f"several coordinates {names}; only one-coordinate revolute joints "
                             "can be chain joints.")
        return chosen[0] if chosen else None

    fields = {k: [] for k in ("parent_offset", "parent_rotation", "child_offset",
                              "child_rotation", "axis", "mass", "com", "inertia")}
    names: list[str] = []
    joint_notes: list[str] = []
    root, chain_bodies = ground, []
    while True:
        members, outgoing, stack = [], [], [root]
        while stack:
            body_name = stack.pop()
            if body_name != ground:
                members.append(bodies[body_name])
            for joint in children.get(body_name, []):
                coord = moving_coordinate(joint)
                child = joint.getChildFrame().findBaseFrame().getName()
                if coord is None:
                    stack.append(child)
                else:
                    outgoing.append((joint, coord, body_name))
        root_inv = invert(pose[root])
        in_root = {b.getName(): compose(root_inv, pose[b.getName()]) for b in members}
        if root != ground:
            mass, com, inertia = _merge_mass(members, in_root)
            fields["mass"].append(mass)
            fields["com"].append(com)
            fields["inertia"].append(inertia)
        if not outgoing:
            break
        if len(outgoing) > 1:
            raise ValueError(
                f"The selected coordinates branch at body '{root}': joints "
                f"{[j.getName() for j, _, _ in outgoing]} (coordinates "
                f"{[c for _, c, _ in outgoing]}) both hang from it, so they are not one serial "
                "chain. Select the coordinates of one path from ground.")
        joint, coord, parent_body = outgoing[0]
        axis, c_rot, p_fm, note = _joint_motion(osim, joint, coord)
        if note is not None:
            joint_notes.append(note)
        x_pf = compose(compose(root_inv, pose[parent_body]),
                        frame_transform(joint.getParentFrame().findTransformInBaseFrame()))
        r_bm, p_bm = frame_transform(joint.getChildFrame().findTransformInBaseFrame())
        fields["parent_offset"].append(x_pf[1] + x_pf[0] @ p_fm)
        fields["parent_rotation"].append(x_pf[0])
        fields["child_offset"].append(p_bm)
        fields["child_rotation"].append(r_bm @ c_rot.T)
        fields["axis"].append(axis)
        names.append(coord)
        root = joint.getChildFrame().findBaseFrame().getName()
        chain_bodies.append(root)

    if not names:
        raise ValueError("No coordinate selected: the chain would have no joint.")
    if set(names) != selected:
        raise ValueError(f"Coordinates {sorted(selected - set(names))} are not on the chain "
                         f"from ground through {names}.")
    if coordinates is not None and list(coordinates) != names:
        raise ValueError(f"coordinates must be listed in chain order from ground outward: "
                         f"{names}, got {list(coordinates)}.")
    chain = SerialChain(**{k: np.stack(v) for k, v in fields.items()},
                        gravity=vec3(model.getGravity()))
    _self_check(osim, model, chain, names, chain_bodies, selected)
    passive, messages = passive_elements(osim, model, names)
    messages = joint_notes + messages
    for msg in messages:
        warnings.warn(msg, stacklevel=2)
    return chain, names, passive, messages


def _self_check(osim, model, chain, names, chain_bodies, selected) -> None:
    """Compare the chain's body poses with OpenSim's at two poses; raise on a mismatch."""
    state = default_state(osim, model, selected)
    coords = [model.getCoordinateSet().get(n) for n in names]
    tol = 1e3 * np.finfo(chain.mass.dtype).eps
    for shift in (0.0, _SELF_CHECK_ANGLE):
        q = np.array([c.getDefaultValue() + shift for c in coords])
        for c, v in zip(coords, q):
            c.setValue(state, float(v), False)
        model.realizePosition(state)
        rotations, origins = (np.asarray(x, dtype=np.float64) for x in chain.body_transforms(q))
        for i, body in enumerate(chain_bodies):
            r, p = frame_transform(model.getBodySet().get(body).getTransformInGround(state))
            err = max(np.abs(r - rotations[i]).max(),
                      np.abs(p - origins[i]).max() / (1 + np.abs(p).max()))
            if not err <= tol:
                raise ValueError(
                    f"Internal check failed: body '{body}' is posed differently from OpenSim "
                    f"(error {err:.3g}) at q = {q.tolist()} ({names}). The model uses a joint "
                    "feature jaxmsk does not read; please report it with the model file.")


def _coordinate_of(force) -> str | None:
    """The `coordinate` property of a force, or None (optional properties print "(name)")."""
    if not force.hasProperty("coordinate"):
        return None
    text = force.getPropertyByName("coordinate").toString().strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text or None


def passive_elements(osim, model, names):
    index = {n: i for i, n in enumerate(names)}
    passive, messages = [], []
    for force in model.getForceSet():
        if not force.get_appliesForce() or osim.Muscle.safeDownCast(force) is not None:
            continue
        kind, label = (force.getConcreteClassName(),
                       f"{force.getConcreteClassName()} '{force.getName()}'")
        coord = _coordinate_of(force)
        if coord is not None and coord not in index:
            continue  # acts on a locked coordinate only
        if kind == "CoordinateLimitForce":
            f = osim.CoordinateLimitForce.safeDownCast(force)
            passive.append(CoordinateLimitForce(
                index[coord], upper_stiffness=f.get_upper_stiffness(),
                upper_limit=f.get_upper_limit(), lower_stiffness=f.get_lower_stiffness(),
                lower_limit=f.get_lower_limit(), damping=f.get_damping(),
                transition=f.get_transition()))
        elif kind == "SpringGeneralizedForce":
            f = osim.SpringGeneralizedForce.safeDownCast(force)
            passive.append(SpringGeneralizedForce(
                index[coord], stiffness=f.get_stiffness(), rest_length=f.get_rest_length(),
                viscosity=f.get_viscosity()))
        elif coord is not None:
            messages.append(f"{label} acts on coordinate '{coord}' but is not imported by "
                            "jaxmsk; add an equivalent passive element yourself.")
        else:
            messages.append(f"{label} is not imported by jaxmsk and may act on the selected "
                            f"coordinates {names}.")
    return passive, messages
