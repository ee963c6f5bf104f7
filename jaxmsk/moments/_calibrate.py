"""Calibrate an EMG-driven moment model against inverse-dynamics moments (gradient-based).

Levenberg–Marquardt (optimistix) on the moment errors of a calibration span, each joint's
errors divided by the RMS of its inverse-dynamics moment there (so joints count alike), plus
a weak pull of every parameter towards its nominal value. Parameters live in bounded boxes
through a logistic map centred on the nominal value:

    strength ∈ [0.5, 2], l_opt and l_ts scales ∈ [0.95, 1.05], EMG gain ∈ [0.02, 2],
    A ∈ (−3, 0),
    delay ∈ [5, 120] ms, time constants ∈ [2, 150] ms.

Which of them are fitted is chosen by `fit`. As in CEINMS (Pizzolato et al. 2015) the
calibrated model is then run on the rest of the recording without further change.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._model import EMGDrivenModel, MomentParameters
from ._recording import MomentRecording

BOUNDS = {
    "strength": (0.5, 2.0),
    "optimal_fiber_length_scale": (0.95, 1.05),
    "tendon_slack_length_scale": (0.95, 1.05),
    "emg_gain": (0.02, 2.0),
    "shape_factor": (-2.999, -1e-3),
    "delay": (0.005, 0.12),
    "time_constants": (0.002, 0.15),
}
FITTABLE = tuple(BOUNDS)
ALIASES = {"F_max": "strength", "l_opt": "optimal_fiber_length_scale",
           "l_ts": "tendon_slack_length_scale", "A": "shape_factor"}


def _logit(p):
    return np.log(p) - np.log1p(-p)


def _to_value(name, x, nominal):
    lo, hi = BOUNDS[name]
    p0 = (np.clip(np.asarray(nominal, np.float64), lo + 1e-9, hi - 1e-9) - lo) / (hi - lo)
    return lo + (hi - lo) * jax.nn.sigmoid(x + _logit(p0))


def metrics(predicted, measured) -> dict:
    """RMSE (units of the inputs) and R² = 1 − SS_res/SS_tot per column."""
    predicted, measured = np.asarray(predicted), np.asarray(measured)
    err = predicted - measured
    ss_tot = np.sum((measured - measured.mean(0)) ** 2, axis=0)
    rmse = np.sqrt(np.mean(err**2, axis=0))
    r2 = 1.0 - np.sum(err**2, axis=0) / np.where(ss_tot > 0, ss_tot, np.nan)
    return {"rmse": rmse.tolist(), "r2": r2.tolist()}


@dataclasses.dataclass(frozen=True)
class MomentCalibration:
    """What `calibrate_moments` returns.

    Attributes:
        params: the calibrated `MomentParameters`.
        nominal: the starting (nominal) `MomentParameters`.
        fitted: the parameter names fitted.
        windows: ((start, stop), ...) s, the calibration windows.
        loss_start, loss: ½·Σr² at the nominal and the calibrated parameters.
        converged: the optimiser met its tolerance within `max_steps`.
        steps: optimiser iterations.
        compile_s, fit_s: compilation and fitting wall times (s).
        at_bounds: "name[i]" of the parameters within 1 % of a bound (the box, not the data,
            decided them).
    """

    params: MomentParameters
    nominal: MomentParameters
    fitted: tuple[str, ...]
    windows: tuple[tuple[float, float], ...]
    loss_start: float
    loss: float
    converged: bool
    steps: int
    compile_s: float
    fit_s: float
    at_bounds: tuple[str, ...]


def normalise_windows(windows) -> tuple[tuple[float, float], ...]:
    """((start, stop), ...) from one pair or a sequence of pairs; checks start < stop."""
    arr = np.asarray(windows, np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.all(np.isfinite(arr)) or np.any(
            arr[:, 0] >= arr[:, 1]):
        raise ValueError(f"windows {windows}: give (start, stop) in s with start < stop, or a "
                         "list of such pairs.")
    return tuple((float(a), float(b)) for a, b in arr)


def _resolve(fit) -> tuple[str, ...]:
    names = tuple(ALIASES.get(f, f) for f in fit)
    if not names:
        raise ValueError(f"calibrate_moments: fit names no parameter; choose from "
                         f"{list(FITTABLE)}.")
    unknown = [f for f in names if f not in FITTABLE]
    if unknown:
        raise ValueError(f"calibrate_moments: fit names {unknown}; choose from {list(FITTABLE)} "
                         f"(aliases {ALIASES}).")
    return names


def calibrate_moments(model: EMGDrivenModel, recording: MomentRecording, windows, *,
                      fit=("strength", "optimal_fiber_length_scale",
                           "tendon_slack_length_scale", "emg_gain", "shape_factor",
                           "delay", "time_constants"),
                      nominal: MomentParameters | None = None, regularisation: float = 1e-3,
                      max_steps: int = 200, tol: float = 1e-8) -> MomentCalibration:
    """Fit `fit` so the model's moments follow the recording's inverse dynamics in `windows`.

    Args:
        model: the `EMGDrivenModel` (its coordinates must be the recording's).
        recording: the `MomentRecording`.
        windows: (start, stop) s, or a sequence of them: the calibration samples. The whole
            EMG record is filtered; errors are taken in the windows only.
        fit: parameters to fit (names of `MomentParameters` fields; aliases F_max, l_opt,
            l_ts, A). Strength is per muscle; only driven muscles' strengths are fitted.
        nominal: the start and prior (default `MomentParameters.nominal`).
        regularisation: weight w of the prior term w·Σx²/n on the n unbounded parameters
            x (x = 0 is nominal), added to the mean squared relative moment error.
        max_steps: Levenberg–Marquardt iterations.
    """
    import optimistix as optx

    fit = _resolve(fit)
    if tuple(recording.coordinate_names) != tuple(model.coordinate_names):
        raise ValueError(f"calibrate_moments: the recording's coordinates "
                         f"{recording.coordinate_names} differ from the model's "
                         f"{model.coordinate_names}; read the recording with the model's.")
    if tuple(recording.channel_names) != tuple(model.channel_names):
        raise ValueError("calibrate_moments: the recording's EMG channels differ from the "
                         "model's; load the model with the recording's channel names.")
    windows = normalise_windows(windows)
    mask = recording.windows(windows)
    if mask.sum() < 10:
        raise ValueError(f"calibrate_moments: windows {windows} hold {int(mask.sum())} samples of "
                         "the "
                         f"recording ({recording.time[0]:g}–{recording.time[-1]:g} s); give at "
                         "least 10.")
    excursion = np.asarray(model.path.domain_excursion(recording.q))
    if np.any(excursion > 1e-6):
        beyond = {c: round(float(e), 4) for c, e in zip(model.coordinate_names, excursion)
                  if e > 1e-6}
        warnings.warn(f"calibrate_moments: the kinematics leave the muscle paths' domain by "
                      f"{beyond} rad; there lengths and moment arms are extrapolated (linearly) "
                      "and the moments may be wrong. Fit the paths over the motion's range "
                      "(load_emg_driven_model(..., ranges=...)).", RuntimeWarning, stacklevel=2)
    if nominal is None:
        nominal = MomentParameters.nominal(len(model.muscle_names), len(model.channel_names))
    f = jnp.result_type(float)
    emg, q, qdot = (jnp.asarray(x, f) for x in (recording.emg, recording.q, recording.qdot))
    target = jnp.asarray(recording.moments[mask], f)
    idx = np.flatnonzero(mask)
    scale = jnp.asarray(np.sqrt(np.mean(recording.moments[mask] ** 2, axis=0)) + 1e-6, f)
    n_res = target.size
    driven = model.driven
    per_muscle = ("strength", "optimal_fiber_length_scale", "tendon_slack_length_scale")
    sizes = {name: int(np.size(getattr(nominal, name))) if name not in per_muscle
             else int(driven.sum()) for name in fit}

    def unpack(theta):
        out, k = {}, 0
        for name in fit:
            n = sizes[name]
            x = theta[k:k + n]
            k += n
            nom = np.asarray(getattr(nominal, name))
            if name in per_muscle:  # driven muscles only; the others keep their nominal
                full = jnp.zeros(len(driven), f).at[np.flatnonzero(driven)].set(x)
                out[name] = jnp.where(jnp.asarray(driven), _to_value(name, full, nom), nom)
            else:
                out[name] = _to_value(name, x.reshape(nom.shape), nom)
        return eqx.tree_at(lambda p: tuple(getattr(p, n) for n in fit), nominal,
                           tuple(out[n] for n in fit))

    def residuals(theta, data):
        emg, q, qdot, target, scale = data
        params = unpack(theta)
        tau = model.moments(params, emg, q, qdot, recording.rate, recording.lead)[idx]
        r = ((tau - target) / scale).ravel() / np.sqrt(n_res)
        return jnp.concatenate([r, np.sqrt(regularisation / theta.size) * theta])

    theta0 = jnp.zeros(sum(sizes.values()), f)
    solver = optx.LevenbergMarquardt(rtol=tol, atol=tol)
    data = (emg, q, qdot, target, scale)  # arguments, not constants folded into the program

    def solve(th, data):
        sol = optx.least_squares(residuals, solver, th, args=data, max_steps=max_steps,
                                 throw=False)
        return sol.value, sol.result == optx.RESULTS.successful, sol.stats["num_steps"]

    loss_fn = jax.jit(lambda th, data: 0.5 * jnp.sum(residuals(th, data) ** 2))
    t0 = time.perf_counter()
    compiled = jax.jit(solve).lower(theta0, data).compile()
    loss_start = float(loss_fn(theta0, data))
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    theta, ok, steps = jax.block_until_ready(compiled(theta0, data))
    fit_s = time.perf_counter() - t1
    params = unpack(theta)
    loss = float(loss_fn(theta, data))
    converged, steps = bool(ok), int(steps)
    at_bounds = []
    for name in fit:
        lo, hi = BOUNDS[name]
        v = np.atleast_1d(np.asarray(getattr(params, name)))
        for i, x in enumerate(v):
            if name in per_muscle and not driven[i]:
                continue
            if min(x - lo, hi - x) < 0.01 * (hi - lo):
                label = model.muscle_names[i] if v.size == len(model.muscle_names) else (
                    model.channel_names[i] if v.size == len(model.channel_names) else str(i))
                at_bounds.append(f"{name}[{label}]")
    if not converged:
        warnings.warn(f"calibrate_moments: Levenberg–Marquardt stopped after {steps} steps "
                      f"without meeting its tolerance (loss {loss:.4g}, from {loss_start:.4g}); "
                      "raise max_steps or check the data.", RuntimeWarning, stacklevel=2)
    return MomentCalibration(params=params, nominal=nominal, fitted=fit,
                             windows=windows, loss_start=loss_start,
                             loss=loss, converged=converged, steps=steps,
                             compile_s=compile_s, fit_s=fit_s, at_bounds=tuple(at_bounds))
