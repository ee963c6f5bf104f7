"""`load_mujoco`: a MuJoCo / MyoSuite MJCF model as a jaxmsk `Model` (needs `mujoco`).

- Skeleton: the hinge joints, which must lie on one path from the world body, become a
  `SerialChain`. Frames, axes, masses, centres of mass and inertias come from MuJoCo's own
  kinematics at qpos = 0 (`mj_kinematics`: `xpos`, `xmat`, `xanchor`, `xipos`, `ximat`), so
  MJCF conventions (quat/euler/axisangle, inertiafromgeom, childclass defaults) are MuJoCo's.
  Bodies without a joint are welded to the chain body they hang from (mass, centre of mass
  and inertia merged); bodies fixed to the world are dropped. `armature` goes into the
  chain's mass matrix; joint damping and stiffness become `SpringGeneralizedForce`s.
- Muscles: the muscle actuators as `MuJoCoMuscle` / `MuJoCoActivation` (MuJoCo's own muscle
  model, `from_mjmodel`).
- Paths: each muscle's actuator length sampled with MuJoCo over the joints' ranges
  (`mj_fwdPosition`; tendons wrap as MuJoCo wraps them) with moment arms by central
  differences, fitted by `PolynomialPath.fit`.

Not modelled, and said so: joint limits (MuJoCo's soft constraints; the range is recorded as
the paths' domain and a warning names the joints), contacts, equality constraints (refused).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .._model import Model
from ..skeleton import SerialChain, SpringGeneralizedForce
from ..skeleton._path import PolynomialPath

_FD_STEP = 1e-6  # rad, central differences of MuJoCo's actuator lengths


def _import_mujoco():
    try:
        import mujoco
    except ImportError as err:
        raise ImportError("load_mujoco needs MuJoCo's Python package: pip install "
                          "'mujoco==3.17.0' (or pip install 'jaxmsk[test]').") from err
    return mujoco


def _name(mujoco, m, kind, i) -> str:
    return mujoco.mj_id2name(m, kind, i) or f"#{i}"


def _merged_mass(m, d, members, frame):
    """Mass, COM and inertia about the COM, in the frame (R, x) of a chain body."""
    r_b, x_b = frame
    masses = np.array([m.body_mass[i] for i in members])
    total = float(masses.sum())
    coms = [r_b.T @ (d.xipos[i] - x_b) for i in members]
    com = sum(mi * c for mi, c in zip(masses, coms)) / total if total > 0 else np.zeros(3)
    inertia = np.zeros((3, 3))
    for i, mi, c in zip(members, masses, coms):
        r_i = r_b.T @ d.ximat[i].reshape(3, 3)
        inertia += r_i @ np.diag(m.body_inertia[i]) @ r_i.T
        dc = c - com
        inertia += mi * (dc @ dc * np.eye(3) - np.outer(dc, dc))
    return total, com, 0.5 * (inertia + inertia.T)


def load_mujoco(path, *, ranges=None, n_samples=None, max_degree=14, seed=0) -> Model:
    """Read an MJCF file (MuJoCo, MyoSuite) into a jaxmsk `Model`.

    Args:
        path: the .xml file.
        ranges: {joint: (min, max)} (rad) to sample the muscle paths over instead of the
            joints' ranges (required for joints without a range).
        n_samples: path samples (default 1000 per joint, at least 2000).
        max_degree: highest polynomial degree tried for the paths. MuJoCo's wrapped tendons
            have kinks in their moment arms; on myoelbow degree 14 (the default) follows the
            lengths to 4.7e-6 m RMS and the moment arms to 8.7e-5 m RMS, and a 1 s rollout
            to 3.7e-4 rad of MuJoCo's own (degree 10: 1.7e-3 rad; 20: 2.1e-4 rad).

    Returns a `Model` with `MuJoCoMuscle` muscles (MuJoCo's muscle model, rigid tendons),
    `coordinate_names` the hinge joints' names and `muscle_names` the muscle actuators'.
    `model.path.fit_rms` / `fit_moment_arm_rms` hold the held-out errors (m) against MuJoCo.

    Raises ValueError naming the joint or constraint for what a serial chain of hinges cannot
    be: slide, ball and free joints, joints off one path from the world body, bodies with
    several joints, active equality constraints, muscles on a joint transmission.
    """
    mujoco = _import_mujoco()
    from ..muscle import MuJoCoActivation, MuJoCoMuscle

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_mujoco: no such file {path!r}.")
    try:
        m = mujoco.MjModel.from_xml_path(path)
    except Exception as err:  # mujoco raises ValueError with its parser message
        raise ValueError(f"load_mujoco: MuJoCo could not read {path}: {err}") from None
    d = mujoco.MjData(m)
    obj = mujoco.mjtObj
    for j in range(m.njnt):
        if m.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE:
            kind = {0: "free", 1: "ball", 2: "slide"}.get(int(m.jnt_type[j]), "non-hinge")
            raise ValueError(f"load_mujoco: joint '{_name(mujoco, m, obj.mjOBJ_JOINT, j)}' is a "
                             f"{kind} joint; jaxmsk reads serial chains of hinge joints.")
    active = [i for i in range(m.neq) if m.eq_active0[i]]
    if active:
        raise ValueError(f"load_mujoco: equality constraints "
                         f"{[_name(mujoco, m, obj.mjOBJ_EQUALITY, i) for i in active]} are "
                         "active; a SerialChain has independent coordinates.")
    if m.njnt == 0:
        raise ValueError(f"load_mujoco: {path} has no joints.")
    jointed = [b for b in range(m.nbody) if m.body_jntnum[b] > 0]
    for b in jointed:
        if m.body_jntnum[b] > 1:
            raise ValueError(f"load_mujoco: body '{_name(mujoco, m, obj.mjOBJ_BODY, b)}' has "
                             f"{m.body_jntnum[b]} joints; give each its own body.")

    def jointed_ancestor(b):
        b = m.body_parentid[b]
        while b != 0 and m.body_jntnum[b] == 0:
            b = m.body_parentid[b]
        return b

    chain, prev = [], 0
    remaining = set(jointed)
    while remaining:
        nxt = [b for b in remaining if jointed_ancestor(b) == prev]
        if len(nxt) != 1:
            names = [_name(mujoco, m, obj.mjOBJ_BODY, b) for b in (nxt or remaining)]
            raise ValueError(f"load_mujoco: the joints do not form one serial chain from the "
                             f"world (bodies {names} hang from the same chain body, or none "
                             "does); jaxmsk reads one path of hinges.")
        chain.append(nxt[0])
        remaining.discard(nxt[0])
        prev = nxt[0]
    joints = [int(m.body_jntadr[b]) for b in chain]
    names = [_name(mujoco, m, obj.mjOBJ_JOINT, j) for j in joints]
    qadr = [int(m.jnt_qposadr[j]) for j in joints]
    dadr = [int(m.jnt_dofadr[j]) for j in joints]

    d.qpos[:] = 0.0
    mujoco.mj_kinematics(m, d)
    frames = {0: (np.eye(3), np.zeros(3))}
    for b in chain:
        frames[b] = (d.xmat[b].reshape(3, 3).copy(), d.xpos[b].copy())
    owner = {}  # every body -> the chain body it moves with (0: the world)
    for b in range(1, m.nbody):
        a = b
        while a != 0 and a not in frames:
            a = m.body_parentid[a]
        owner[b] = a
    fields = {k: [] for k in ("parent_offset", "parent_rotation", "child_offset",
                              "child_rotation", "axis", "mass", "com", "inertia")}
    prev = 0
    for b, j in zip(chain, joints):
        r_p, x_p = frames[prev]
        r_b, _ = frames[b]
        fields["parent_offset"].append(r_p.T @ (d.xanchor[j] - x_p))
        fields["parent_rotation"].append(r_p.T @ r_b)
        fields["child_offset"].append(np.array(m.jnt_pos[j]))
        fields["child_rotation"].append(np.eye(3))
        fields["axis"].append(np.array(m.jnt_axis[j]))
        members = [i for i, o in owner.items() if o == b]
        mass, com, inertia = _merged_mass(m, d, members, frames[b])
        fields["mass"].append(mass)
        fields["com"].append(com)
        fields["inertia"].append(inertia)
        prev = b
    armature = np.array([m.dof_armature[k] for k in dadr])
    skeleton = SerialChain(**{k: np.stack(v) for k, v in fields.items()},
                           gravity=np.array(m.opt.gravity),
                           armature=armature if np.any(armature > 0) else None)
    passive = []
    for i, (j, k) in enumerate(zip(joints, dadr)):
        damping, stiffness = float(m.dof_damping[k]), float(m.jnt_stiffness[j])
        if damping > 0 or stiffness > 0:
            passive.append(SpringGeneralizedForce(i, stiffness=stiffness,
                                                  rest_length=float(m.qpos_spring[qadr[i]]),
                                                  viscosity=damping))
    if np.any(np.asarray(m.dof_frictionloss)[dadr] > 0):
        warnings.warn("load_mujoco: joint friction loss (frictionloss) is not modelled.",
                      stacklevel=2)

    # Muscles and their paths.
    muscle_ids = np.flatnonzero(np.asarray(m.actuator_gaintype) == mujoco.mjtGain.mjGAIN_MUSCLE)
    if muscle_ids.size == 0:
        raise ValueError(f"load_mujoco: {path} has no muscle actuators.")
    bad = [_name(mujoco, m, obj.mjOBJ_ACTUATOR, a) for a in muscle_ids
           if m.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_TENDON]
    if bad:
        raise ValueError(f"load_mujoco: muscles {bad} act through a transmission other than a "
                         "tendon; jaxmsk reads tendon-driven muscles.")
    box = np.array([m.jnt_range[j] if m.jnt_limited[j] else (np.nan, np.nan) for j in joints])
    for name, r in dict(ranges or {}).items():
        if name not in names:
            raise ValueError(f"load_mujoco: ranges names {name!r}, not a chain joint {names}.")
        lo, hi = (float(v) for v in r)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"load_mujoco: ranges[{name!r}] = {r}: give (min, max), min < max.")
        box[names.index(name)] = (lo, hi)
    unbounded = [n for n, b in zip(names, box) if not np.all(np.isfinite(b))]
    if unbounded:
        raise ValueError(f"load_mujoco: joints {unbounded} have no range; give ranges= to "
                         "sample their muscle paths over.")
    limited = [n for n, j in zip(names, joints) if m.jnt_limited[j]]
    if limited:
        warnings.warn(f"load_mujoco: the range limits of joints {limited} (MuJoCo's soft "
                      "constraints) are not modelled; a simulation may pass them, and then "
                      "leaves the paths' domain (reported by simulate).", stacklevel=2)
    n = max(2000, 1000 * len(names)) if n_samples is None else int(n_samples)
    rng = np.random.default_rng(seed)
    q = rng.uniform(box[:, 0], box[:, 1], size=(n, len(names)))

    def lengths_at(qi):
        d.qpos[:] = 0.0
        d.qpos[qadr] = qi
        mujoco.mj_fwdPosition(m, d)
        return np.array(d.actuator_length)[muscle_ids]

    lengths = np.empty((n, muscle_ids.size))
    arms = np.empty((n, muscle_ids.size, len(names)))
    for s, qi in enumerate(q):
        lengths[s] = lengths_at(qi)
        for k in range(len(names)):
            up, down = qi.copy(), qi.copy()
            up[k] += _FD_STEP
            down[k] -= _FD_STEP
            arms[s, :, k] = -(lengths_at(up) - lengths_at(down)) / (2 * _FD_STEP)
    poly = PolynomialPath.fit(q, lengths, arms, max_degree=max_degree, seed=seed, ranges=box)
    return Model(
        muscles=MuJoCoMuscle.from_mjmodel(m),
        activation=MuJoCoActivation.from_mjmodel(m),
        skeleton=skeleton, path=poly, passive=tuple(passive),
        muscle_names=tuple(_name(mujoco, m, obj.mjOBJ_ACTUATOR, a) for a in muscle_ids),
        coordinate_names=tuple(names))
