"""OpenSim helpers shared by the readers: the `opensim` import, and posing a model with its
coupler constraints satisfied (`set_pose`) to sample muscle lengths and moment arms."""

from __future__ import annotations

import numpy as np


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


def pose_constraints(osim_model):
    """(enforced CoordinateCouplerConstraints as (function, scale, independent, dependent),
    whether other enforced constraints exist): what `set_pose` needs, computed once."""
    import opensim as osim

    couplers, other = [], False
    for con in osim_model.getConstraintSet():
        if not con.get_isEnforced():
            continue
        c = osim.CoordinateCouplerConstraint.safeDownCast(con)
        if c is None:
            other = True
            continue
        names = c.getIndependentCoordinateNames()
        scale = osim.PropertyHelper.getValueDouble(c.getPropertyByName("scale_factor"))
        couplers.append((c.getFunction(), scale,
                         [osim_model.getCoordinateSet().get(names.get(i))
                          for i in range(names.getSize())],
                         osim_model.getCoordinateSet().get(c.getDependentCoordinateName())))
    return couplers, other


def set_pose(osim_model, state, coords, values, constraints=None) -> None:
    """Set coordinates and realise positions, with the model's constraints satisfied:
    each CoordinateCouplerConstraint's dependent coordinate (e.g. the patella's, which
    follows the knee angle) is set to scale·f(independent ones); other enforced
    constraints are met by OpenSim's assembly. Setting values alone would leave dependent
    coordinates where they were, and the paths over the patella wrong by up to 1 cm.
    Loops pass `constraints=pose_constraints(osim_model)` to read them once."""
    import opensim as osim

    for c, v in zip(coords, values):
        c.setValue(state, float(v), False)
    couplers, other = pose_constraints(osim_model) if constraints is None else constraints
    for fn, scale, independent, dependent in couplers:
        x = osim.Vector([c.getValue(state) for c in independent])
        dependent.setValue(state, scale * fn.calcValue(x), False)
    if other:
        osim_model.assemble(state)
        moved = max(abs(c.getValue(state) - float(v)) for c, v in zip(coords, values))
        if moved > 1e-4:  # assembly tolerance; 1e-4 rad moves a 5-cm moment arm by 5 µm
            raise ValueError(f"OpenSim's assembly moved the coordinates by {moved:.3g} to "
                             f"satisfy the model's constraints at {list(values)}; the sampled "
                             "pose is not one the model can take.")
    osim_model.realizePosition(state)


def sample_mtu_lengths(osim_model, state, coordinates, muscles, q: np.ndarray,
                       moment_arms: bool = False):
    """OpenSim's MTU lengths (m), (n_samples, n_muscles), at the coordinate samples q;
    with `moment_arms`, also OpenSim's moment arms (m), (n_samples, n_muscles, n_dofs)."""
    coord_set = osim_model.getCoordinateSet()
    coords = [coord_set.get(name) for name in coordinates]
    muscle_set = osim_model.getMuscles()
    objs = [muscle_set.get(name) for name in muscles]
    out = np.empty((q.shape[0], len(objs)))
    arms = np.empty((q.shape[0], len(objs), len(coords)))
    constraints = pose_constraints(osim_model)
    for i, qi in enumerate(q):
        set_pose(osim_model, state, coords, qi, constraints)
        out[i] = [m.getLength(state) for m in objs]
        if moment_arms:
            arms[i] = [[m.computeMomentArm(state, c) for c in coords] for m in objs]
    return (out, arms) if moment_arms else out
