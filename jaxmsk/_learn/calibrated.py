"""`calibrated_msk`: the EMG-driven musculoskeletal model the field compares against.

The subject's model is calibrated by `identify` on the personalisation share (processed sEMG
envelopes as excitations, through CEINMS's EMG model at its pass-through defaults, and the
per-muscle F_max scales, within 0.5–2×, fitted to the share's joint angles;
`calibrate(fit=..., bounds=...)` fits more),
then
simulated open loop from each test trial's sEMG, starting from its first recorded angle and
velocity. Muscle forces are the simulated tendon forces. No network and no force labels are
involved: the physics alone, personalised.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .._identify.identify import IdentificationResult, identify
from .._identify.problem import (
    EMGExcitation,
    IdentificationTrial,
    canonical_name,
    start_velocity,
)
from .._model import Model
from .._simulate import simulate
from ..data._dataset import Dataset
from ..physics import equation_of_motion_residual
from .train import motion_type, outside_limits, pooled_metrics

# What the share's angles can pin down. With l_opt, l_ts and the delay fitted too (20
# parameters) on 4 × 2 s of a built-in cohort subject, 30 LM steps moved l_opt to 1.84× and the
# delay to 0 and predicted the test angles worse (RMSE 0.131 rad) than F_max alone (0.055).
CALIBRATED_FIT = ("max_isometric_force",)
# Strength scales stay within 0.5–2× the generic model's (CEINMS-style calibrations bound
# strength coefficients similarly). identify's own bounds (0.2–5×) let angle-only data raise
# agonists and antagonists together: on a built-in cohort subject whose true scales were
# 0.68–0.85, four of five went to 3.6–5.0 and the test forces were 12 N off.
CALIBRATED_BOUNDS = {"max_isometric_force": (0.5, 2.0)}


@dataclasses.dataclass
class CalibratedMSK:
    """A subject's calibrated model and EMG model (`calibrate`), with the calibration's
    report (`identification`: its diagnostics say whether it converged or stalled)."""

    model: Model
    emg_model: EMGExcitation
    identification: IdentificationResult | None = None

    def strength_scales(self) -> np.ndarray:
        """Per-muscle F_max scales of the calibrated model relative to the one calibrated
        (the shared `strength` times the per-muscle scales, whichever were fitted)."""
        s = self.identification.scales if self.identification is not None else {}
        out = np.ones(self.model.n_muscles)
        for name in ("max_isometric_force", "strength"):
            if name in s:
                out = out * np.asarray(s[name], float)
        return out

    def simulate(self, emg, ts, q0, qdot0):
        """Open-loop trajectory driven by processed sEMG (time, muscles) at `ts`."""
        ts = jnp.asarray(ts)
        u = self.emg_model(ts, jnp.asarray(emg))
        return simulate(self.model, u, ts, q0=jnp.asarray(q0), qdot0=jnp.asarray(qdot0),
                        solver="explicit", rtol=1e-6, atol=1e-8, max_steps=200_000,
                        throw=False)

    def predict(self, trial):
        """(q (time, dofs) rad, tendon forces (time, muscles) N) for a processed trial, from
        its first recorded angle and velocity (see `predict_checked` for a failed run)."""
        return self.predict_checked(trial)[:2]

    def predict_checked(self, trial):
        """`predict` and whether the simulation succeeded: where it failed (non-finite
        states, a solver that stopped), it warns and the samples are the trial's first angle
        and zero force."""
        return open_loop(self, trial, "calibrated_msk")


def open_loop(sim, trial, method: str):
    """(q, forces, ok) of `sim.simulate(emg, ts, q0, qdot0)` over a processed trial, from
    its first recorded angle and the velocity of a quadratic fit; a failed run (non-finite
    states, a solver that stopped) warns, naming `method` and the trial, and its samples are
    the first angle and zero force."""
    import diffrax

    ts = trial.time()
    q0 = trial.q[0]
    qdot0 = start_velocity(np.asarray(ts), np.asarray(trial.q))
    traj = sim.simulate(trial.emg, ts, q0, qdot0)
    q, f = np.asarray(traj.q), np.asarray(traj.tendon_force)
    result = getattr(traj, "result", diffrax.RESULTS.successful)
    ok = bool(np.isfinite(q).all() and np.isfinite(f).all()
              and result == diffrax.RESULTS.successful)
    if not ok:
        warnings.warn(f"{method}: the open-loop simulation of {trial.subject}/{trial.name} "
                      "failed (non-finite states or a solver that stopped); its samples score "
                      "as the trial's first angle and zero force.", RuntimeWarning,
                      stacklevel=3)
        q = np.where(np.isfinite(q), q, q0)
        f = np.where(np.isfinite(f), f, 0.0)
    return q, f, ok


def calibrate(share: Dataset, model: Model, *, fit: Sequence[str] = CALIBRATED_FIT,
              max_steps: int = 20, starts: int | str = 1, progress=None,
              **identify_options) -> CalibratedMSK:
    """`identify` the subject's model on the share's processed sEMG and joint angles (no
    force labels used; multiple shooting, 0.5-s segments). Returns a `CalibratedMSK`; its
    `identification` holds the report. One start by default: processed sEMG is not the
    excitation, so the fit ends above the angles' noise floor whatever the start (and
    `identify` warns that it stalled); `starts="auto"` would try 3 more, at 4× the time."""
    trials = []
    for t in share.trials:
        if not t.processed:
            raise ValueError(f"calibrate: trial {t.subject}/{t.name} has raw sEMG; process it "
                             "first (Dataset.process).")
        trials.append(IdentificationTrial(ts=np.asarray(t.time()), q=np.asarray(t.q),
                                          emg=np.clip(np.asarray(t.emg), 0.0, 1.0),
                                          name=t.name))
    names = {canonical_name(f) for f in fit}
    options = {"bounds": {k: v for k, v in CALIBRATED_BOUNDS.items() if k in names},
               **identify_options}
    res = identify(model, trials, fit, max_steps=max_steps, starts=starts,
                   progress=progress or False, **options)
    return CalibratedMSK(res.model, res.emg_model or EMGExcitation(), res)


def evaluate_calibrated(cal: CalibratedMSK, dataset: Dataset, model: Model) -> dict:
    """`evaluate`'s metrics (angle in rad, force in N, EoM residual of the simulated angles
    and forces under the calibrated model) over every sample of the trials, with
    "by_motion" as `evaluate_by_motion`, and "simulation_failed": the trials whose open-loop
    simulation failed (scored as their first angle and zero force; a warning says so)."""
    checked = [(t, *cal.predict_checked(t)) for t in dataset.trials]
    per = [(t, q, f) for t, q, f, _ in checked]

    def pooled(items):
        q_hat = np.concatenate([q for _, q, _ in items])
        f_hat = np.concatenate([f for _, _, f in items])
        res = np.concatenate([np.asarray(equation_of_motion_residual(
            cal.model, jnp.asarray(q), jnp.asarray(f), 1.0 / t.fs)) for t, q, f in items])
        out = pooled_metrics(q_hat, f_hat, np.concatenate([t.q for t, _, _ in items]),
                             np.concatenate([t.forces for t, _, _ in items]), res)
        out["angle_outside_limits"] = outside_limits(cal.model, q_hat)
        out["angle_outside_limits_truth"] = outside_limits(
            cal.model, np.concatenate([t.q for t, _, _ in items]))
        return out

    out = pooled(per)
    out["simulation_failed"] = [t.name for t, _, _, ok in checked if not ok]
    groups: dict[str, list] = {}
    for item in per:
        groups.setdefault(motion_type(item[0].name), []).append(item)
    out["by_motion"] = {}
    for k, v in groups.items():
        m = pooled(v)
        out["by_motion"][k] = {"trials": [t.name for t, _, _ in v],
                               **{n: m[n] for n in ("angle_rmse", "angle_r2", "force_rmse",
                                                    "force_r2")}}
    return out


__all__ = ["CALIBRATED_FIT", "CALIBRATED_BOUNDS", "CalibratedMSK", "calibrate",
           "evaluate_calibrated"]
