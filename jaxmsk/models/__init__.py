"""Built-in models and the JSON model format.

- `arm26()`: OpenSim's arm26 (osim-rl, Apache-2.0): shoulder elevation and elbow flexion,
  six muscles, imported with `load_osim`.
- `wrist()`: wrist flexion/extension with FCR, FCU, ECU, ECRB and ECRL (parameters of the
  OpenSim wrist model; moment arms, hand inertia and joint passive elements from MoBL-ARMS).

Both are stored as JSON in `jaxmsk/models/data/` and need no OpenSim at run time;
`python -m jaxmsk.models._build` regenerates them (see that module for every choice made).
`builtin_metadata(name)` returns what was recorded when they were built (sources, fit errors).
`load(name_or_path)` is the one loader behind every command's `--model`: a built-in name, a
model JSON file or an OpenSim .osim file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io._model_json import load_model_json as load_model_json
from ..io._model_json import model_from_json as model_from_json
from ..io._model_json import model_json_metadata as model_json_metadata
from ..io._model_json import model_to_json as model_to_json
from ..io._model_json import save_model_json as save_model_json

_DATA = os.path.join(os.path.dirname(__file__), "data")
BUILTIN = ("arm26", "wrist")


def _builtin_file(name: str) -> str:
    if name not in BUILTIN:
        raise ValueError(f"no built-in model {name!r}; built-in models are {BUILTIN}.")
    return os.path.join(_DATA, f"{name}.json")


def arm26():
    """OpenSim's arm26: coordinates (r_shoulder_elev, r_elbow_flex), muscles TRIlong, TRIlat,
    TRImed, BIClong, BICshort, BRA as De Groote–Fregly 2016 muscles with compliant tendons
    (tendon strain 0.033 at F_max, from the file's Thelen muscles), polynomial paths fitted to
    OpenSim's lengths and moment arms over the coordinates' full ranges (held-out errors in
    `model.path.fit_rms` / `fit_moment_arm_rms`; TRIlong's and BIClong's are mm-sized because
    OpenSim's own wrapped paths jump there; use `jaxmsk.load_osim(..., ranges=...)` to fit a
    task's range more closely)."""
    return load_model_json(_builtin_file("arm26"))


def wrist():
    """Wrist flexion/extension (coordinate "flexion", rad, positive = flexion), muscles FCR,
    FCU, ECU, ECRB, ECRL (the OpenSim wrist model's parameters, compliant tendons), hand
    inertia about the flexion axis 1.48e-3 kg·m², MoBL-ARMS' flexion ligaments and damping,
    no gravity (forearm supported, elbow at 90°, forearm neutral, flexion in the horizontal
    plane).
    Paths are valid over ±1.2 rad."""
    return load_model_json(_builtin_file("wrist"))


def builtin_metadata(name: str) -> dict:
    """What was recorded when a built-in model was generated (sources, fit errors, ...)."""
    return model_json_metadata(_builtin_file(name))


def load(name_or_path, *, argument: str = "model"):
    """A built-in model ("wrist", "arm26"), a jaxmsk model .json (`save_model_json`) or an
    OpenSim .osim file (through `jaxmsk.load_osim`, which needs the `opensim` package).

    `argument` names the input in error messages (the commands pass "--model"). Raises
    ValueError naming the input and the fix."""
    name = str(name_or_path)
    if name in BUILTIN:
        return globals()[name]()
    path = Path(name)
    suffix = path.suffix.lower()
    if suffix not in (".osim", ".json"):
        raise ValueError(f"{argument} {name!r}: use one of {BUILTIN}, an OpenSim .osim file or "
                         "a model .json saved with jaxmsk.models.save_model_json.")
    if not path.is_file():
        raise ValueError(f"{argument} {name}: no such file.")
    if suffix == ".json":
        return load_model_json(path)
    from ..io import load_osim

    try:
        return load_osim(path)
    except ImportError as e:
        raise ValueError(f"{argument} {name}: {e}") from None
