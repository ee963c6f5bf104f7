"""Regenerate the built-in models' data files from OpenSim models (needs `opensim` and
`osim-rl`): ``python -m jaxmsk.models._build [--check]``.

- ``arm26.json``: `load_osim` on osim-rl's ``arm26.osim`` (Apache-2.0): two coordinates,
  six muscles (Thelen in the file, De Groote–Fregly here with the file's parameters and
  tendon strain), paths fitted over the coordinates' ranges.
- ``wrist.json``: one wrist flexion/extension coordinate and FCR, FCU, ECU, ECRB, ECRL with
  the parameters of the OpenSim wrist model (opensim-models). Moment arms,
  hand inertia and the joint's passive elements come from osim-rl's
  ``MoBL_ARMS_J_Simple_032118.osim`` (Saul et al. 2015, "Benchmarking of dynamic simulation
  predictions in two software platforms using an upper limb musculoskeletal model", CMBBE
  18:1445). Its flexion drives a second wrist rotation through a CoordinateCouplerConstraint,
  which `load_osim` (serial chains of independent coordinates) refuses, so this script uses
  load_osim's own steps on it: OpenSim samples the muscle lengths with the constraint
  enforced, the moment arms are −dl/dθ by central differences of those lengths (OpenSim's
  `computeMomentArm` ignores the coupling: 4.8 mm off for ECRL at −69°), and
  `PolynomialPath.fit` fits both. The hand's inertia about the flexion axis is the mass
  matrix projected on the coupled motion, uᵀM(q)u with u = dq/dθ. Gravity is left out: the
  forearm is taken as supported with flexion in the horizontal plane.

  The table's tendon slack lengths belong to the wrist model's own paths, not MoBL's, so each
  path's constant term is set so that, rigid tendon taken, the muscle sits at the same
  normalised fibre length at θ = 0 as in MoBL: (l_MT(0) − l_ts)/l_opt equal in both.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from importlib.util import find_spec

import jax.numpy as jnp
import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "data")

WRIST_MUSCLES = ("FCR", "FCU", "ECU", "ECRB", "ECRL")
# The OpenSim wrist model (opensim-models): F_max (N), l_opt (m), l_ts (m), α_opt (rad);
# v_max = 10 l_opt/s.
WRIST_PARAMETERS = np.array([
    [59.7, 0.0628, 0.2185, 0.054],
    [102.6, 0.0509, 0.2420, 0.211],
    [117.0, 0.0622, 0.2310, 0.061],
    [122.9, 0.0585, 0.2205, 0.155],
    [65.7, 0.0936, 0.2026, 0.044],
])
WRIST_RANGE = (-1.2, 1.2)  # rad, inside MoBL's ±1.22 rad flexion range
MOBL_FILE = "MoBL_ARMS_J_Simple_032118.osim"
# The posture of wrist flexion/extension experiments: elbow flexed 90°, forearm neutral.
MOBL_POSTURE = {"elbow_flexion": np.pi / 2, "pro_sup": 0.0}


def osim_rl_model(name: str) -> str:
    spec = find_spec("osim")
    if spec is None:
        raise ImportError("The built-in models are generated from osim-rl's model files: "
                          "pip install --no-deps osim-rl==3.0.11")
    return os.path.join(spec.submodule_search_locations[0], "models", name)


def build_arm26():
    from ..io import load_osim

    model = load_osim(osim_rl_model("arm26.osim"), seed=0)
    return model, dict(source="osim-rl 3.0.11 models/arm26.osim (Apache-2.0) via jaxmsk.load_osim",
                       fit_rms_m=list(model.path.fit_rms),
                       fit_moment_arm_rms_m=list(model.path.fit_moment_arm_rms))


def mobl_wrist_samples(n_samples: int = 481, h: float = 1e-6):
    from ..io._osim import import_opensim

    osim = import_opensim()
    model = osim.Model(osim_rl_model(MOBL_FILE))
    model.getCoordinateSet().get("flexion").setDefaultLocked(False)
    for name, value in MOBL_POSTURE.items():
        model.getCoordinateSet().get(name).setDefaultValue(value)
    state = model.initSystem()
    flexion = model.getCoordinateSet().get("flexion")
    muscles = [model.getMuscles().get(n) for n in WRIST_MUSCLES]
    coords = list(model.getCoordinateSet())

    def at(theta):
        flexion.setValue(state, float(theta), True)  # enforce the coupler constraint
        model.realizePosition(state)
        return (np.array([m.getLength(state) for m in muscles]),
                np.array([c.getValue(state) for c in coords]))

    thetas = np.linspace(*WRIST_RANGE, n_samples)
    lengths, arms = [], []
    for t in thetas:
        lengths.append(at(t)[0])
        arms.append(-(at(t + h)[0] - at(t - h)[0]) / (2 * h))
    # Inertia about flexion: with every coordinate's speed set to dq_i/dθ (θ̇ = 1, the
    # coupled motion), I = 2·kinetic energy; at θ = 0 and, to report its variation, at the
    # range ends.
    inertias = []
    for t in (0.0, *WRIST_RANGE):
        u = (at(t + h)[1] - at(t - h)[1]) / (2 * h)
        at(t)
        for c, ui in zip(coords, u):
            c.setSpeedValue(state, float(ui))
        model.realizeVelocity(state)
        inertias.append(2.0 * model.getMatterSubsystem().calcKineticEnergy(state))
        for c in coords:
            c.setSpeedValue(state, 0.0)
    at(0.0)
    lengths0 = np.array([m.getLength(state) for m in muscles])
    mobl = np.array([[m.getOptimalFiberLength(), m.getTendonSlackLength()] for m in muscles])
    from ..io._osim_skeleton import passive_elements

    passive, _ = passive_elements(osim, model, ["flexion"])
    return thetas, np.array(lengths), np.array(arms), inertias, lengths0, mobl, passive


def build_wrist():
    from .._model import Model
    from ..muscle import DeGrooteActivation, DeGrooteFregly2016Muscle, MuscleParameters
    from ..skeleton import Hinge, PolynomialPath

    thetas, lengths, arms, inertias, l0, mobl, passive = mobl_wrist_samples()
    fmax, lopt, lts, alpha = (WRIST_PARAMETERS[:, k] for k in range(4))
    # Same normalised stretch at θ = 0 as in MoBL (rigid-tendon reading).
    target0 = lts + lopt * (l0 - mobl[:, 1]) / mobl[:, 0]
    shifted = lengths - l0 + target0
    path = PolynomialPath.fit(thetas[:, None], shifted, arms[:, :, None], max_degree=10,
                              ranges=np.array([WRIST_RANGE]))
    dtype = jnp.result_type(float)
    params = MuscleParameters(jnp.asarray(fmax, dtype), jnp.asarray(lopt, dtype),
                              jnp.asarray(lts, dtype), jnp.asarray(alpha, dtype),
                              jnp.asarray(10.0 * lopt, dtype))
    model = Model(muscles=DeGrooteFregly2016Muscle(params, tendon="compliant"),
                  activation=DeGrooteActivation(),
                  skeleton=Hinge(inertia=inertias[0]),
                  path=path, passive=tuple(passive), muscle_names=WRIST_MUSCLES,
                  coordinate_names=("flexion",))
    meta = dict(source=f"parameters: the OpenSim wrist model (opensim-models); moment arms, "
                       f"inertia, passive elements: osim-rl 3.0.11 models/{MOBL_FILE}",
                hand_inertia_kg_m2=inertias[0],
                hand_inertia_at_range_ends_kg_m2=inertias[1:],
                fit_rms_m=list(path.fit_rms), fit_moment_arm_rms_m=list(path.fit_moment_arm_rms),
                fit_outliers=path.fit_outliers,
                mtu_length_at_zero_m=list(map(float, target0)))
    return model, meta


BUILDERS = {"arm26": build_arm26, "wrist": build_wrist}


def main(argv=None) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # the data are stored in float64
    from ..io._model_json import load_model_json, save_model_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="rebuild and compare with the stored files instead of writing")
    parser.add_argument("names", nargs="*", default=sorted(BUILDERS))
    args = parser.parse_args(argv)
    status = 0
    for name in args.names:
        model, meta = BUILDERS[name]()
        target = os.path.join(DATA, f"{name}.json")
        if args.check:
            stored = load_model_json(target)
            diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                       for a, b in zip(jax.tree_util.tree_leaves(model),
                                       jax.tree_util.tree_leaves(stored)))
            print(f"{name}: max difference to the stored file {diff:.3e}")
            status |= diff > 1e-9
            continue
        meta["generated"] = datetime.date.today().isoformat()
        meta["generator"] = "python -m jaxmsk.models._build"
        os.makedirs(DATA, exist_ok=True)
        save_model_json(target, model, overwrite=True, **meta)
        print(f"wrote {target}: {meta}")
    return status


if __name__ == "__main__":
    sys.exit(main())
