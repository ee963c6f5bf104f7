"""synthetic_cohort(): subjects with known physiology, their movements and their sEMG.

Pipeline, batched over subjects and trials with `vmap`:
1. Draw each subject's physiology and electrode effects (`_subjects.py`).
2. Plan each trial's target movement (`_protocols.py`).
3. Run the subject's model in closed loop with the protocol's controller (diffrax, Tsit5)
   to obtain muscle excitations.
4. Ground truth: `jaxmsk.simulate` of the subject's model driven by those excitations
   (sampled at `fs`, linearly interpolated). The stored kinematics, forces and activations
   are exactly what `simulate` returns for the stored excitation; the closed loop only
   designed the excitation.
5. Raw sEMG at `fs_emg` from the excitation advanced by the electromechanical delay (EMG
   leads force), plus one maximum voluntary contraction (MVC) trial per subject.
"""

from __future__ import annotations

import dataclasses
import math
import time as _time
from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._model import Model, ModelState
from .._simulate import simulate
from ._protocols import PROTOCOLS, Controller, TrialPlan, default_ranges, plan_trial
from ._semg import mvc_drive, neighbour_crosstalk, synthetic_semg
from ._subjects import CohortDistributions, SubjectParameters, sample_subject, subject_model

TRUTH_FIELDS = ("q", "qdot", "qddot", "target", "excitation", "activation", "tendon_force",
                "fiber_length", "moments")
UNITS = {"q": "rad", "qdot": "rad/s", "qddot": "rad/s^2", "target": "rad", "excitation": "1",
         "activation": "1", "tendon_force": "N", "fiber_length": "m", "moments": "N*m",
         "emg": "mV", "mvc_emg": "mV"}


@dataclasses.dataclass(frozen=True, eq=False)
class Cohort:
    """A synthetic cohort: subjects × trials of ground truth and raw sEMG.

    Arrays are NumPy, time along the axis after (subject, trial):
        q, qdot, qddot, target, moments: (subjects, trials, time, dofs)
        excitation, activation, tendon_force, fiber_length: (subjects, trials, time, muscles)
        emg: (subjects, trials, time_emg, muscles) raw sEMG (mV), one channel per muscle
        mvc_emg: (subjects, time_mvc, muscles) raw sEMG of each subject's MVC trial
    Units are in `UNITS`. `subjects` holds every subject's true parameters (leading subject
    axis); `subject_model(i)` rebuilds subject i's model from the generic `model`.
    """

    model: Model
    subjects: SubjectParameters
    subject_ids: tuple[str, ...]
    trial_names: tuple[str, ...]
    protocols: tuple[str, ...]
    fs: float
    fs_emg: float
    time: np.ndarray
    time_emg: np.ndarray
    q: np.ndarray
    qdot: np.ndarray
    qddot: np.ndarray
    target: np.ndarray
    excitation: np.ndarray
    activation: np.ndarray
    tendon_force: np.ndarray
    fiber_length: np.ndarray
    moments: np.ndarray
    emg: np.ndarray
    mvc_emg: np.ndarray
    metadata: dict

    @property
    def n_subjects(self) -> int:
        return len(self.subject_ids)

    @property
    def n_trials(self) -> int:
        return len(self.trial_names)

    @property
    def muscle_names(self) -> tuple[str, ...]:
        return self.model.muscle_names or tuple(f"muscle{j}" for j in range(self.model.n_muscles))

    @property
    def coordinate_names(self) -> tuple[str, ...]:
        return self.model.coordinate_names or tuple(f"q{j}" for j in range(self.model.n_dofs))

    def subject_parameters(self, i: int) -> dict[str, np.ndarray]:
        """Subject i's true parameters as NumPy arrays."""
        return {k: np.asarray(v[i]) for k, v in self.subjects.as_dict().items()}

    def subject_model(self, i: int) -> Model:
        """Subject i's model (the generic model with subject i's physiology)."""
        return subject_model(self.model, jax.tree.map(lambda x: jnp.asarray(x[i]), self.subjects))

    def to_dataset(self):
        """The cohort as a `Dataset` of raw-sEMG trials with ground-truth labels."""
        from ..data._dataset import Dataset
        return Dataset.from_cohort(self)


def closed_loop(model: Model, plan: TrialPlan, controller: Controller, ts, rtol, atol):
    q0 = plan.target(ts[0])
    qdot0 = jnp.zeros_like(q0)
    gains = controller.gains(model, plan.centre)

    def excite(t, q, qdot):
        return controller.excitation(model, plan, gains, t, q, qdot)

    y0 = model.initial_state(q0, qdot0, excite(ts[0], q0, qdot0))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: model.derivative(y, excite(t, y.q, y.qdot))),
        diffrax.Tsit5(), ts[0], ts[-1], dt0=1e-3, y0=y0, saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=200_000,
        throw=False)
    exc = jax.vmap(excite)(ts, sol.ys.q, sol.ys.qdot)
    return sol.ys.q, exc, sol.result == diffrax.RESULTS.successful


def _truth(model: Model, plan: TrialPlan, excitation, ts, rtol, atol):
    q0 = plan.target(ts[0])
    traj = simulate(model, excitation, ts, q0=q0, solver="explicit", rtol=rtol, atol=atol,
                    throw=False)
    qddot = jax.vmap(lambda y: model.outputs(y).qddot)(_states(model, traj))
    return dict(q=traj.q, qdot=traj.qdot, qddot=qddot, target=jax.vmap(plan.target)(ts),
                excitation=excitation, activation=traj.activation,
                tendon_force=traj.tendon_force, fiber_length=traj.fiber_length,
                moments=traj.moments), traj.result == diffrax.RESULTS.successful


def _states(model: Model, traj) -> ModelState:
    return ModelState(activation=traj.activation,
                      norm_tendon_force=traj.norm_tendon_force if model.compliant else None,
                      q=traj.q, qdot=traj.qdot)


def _emg(key, excitation, ts, delay, subject: SubjectParameters, t_emg, fs_emg):
    # EMG at time t reflects the excitation that reaches the muscle at t + delay.
    drive = jax.vmap(lambda col: jnp.interp(t_emg + delay, ts, col), 1, 1)(excitation)
    return synthetic_semg(key, drive, fs_emg, gain=subject.emg_gain,
                          crosstalk=neighbour_crosstalk(subject.crosstalk),
                          noise_rms=subject.noise_rms, powerline=subject.powerline)


def _mvc(key, subject: SubjectParameters, n, fs_emg, m):
    drive = mvc_drive(n, fs_emg, m, dtype=subject.emg_gain.dtype)
    return synthetic_semg(key, drive, fs_emg, gain=subject.emg_gain,
                          crosstalk=neighbour_crosstalk(subject.crosstalk),
                          noise_rms=subject.noise_rms, powerline=subject.powerline)


# Module-level jitted batches (subjects × trials), so that cohorts of the same shapes reuse
# one compilation.
def _per_trial(fn):
    return eqx.filter_vmap(eqx.filter_vmap(fn, in_axes=(None, 0)), in_axes=(0, 0))


@eqx.filter_jit
def _plan_batch(keys, protocol, ranges, m, duration):
    return jax.vmap(lambda k: plan_trial(k, protocol, ranges, m, duration))(keys)


@eqx.filter_jit
def _closed_loop_batch(models, plans, controller, ts, rtol, atol):
    return _per_trial(lambda mdl, pl: closed_loop(mdl, pl, controller, ts, rtol, atol))(
        models, plans)


@eqx.filter_jit
def _truth_batch(models, plans, excitation, ts, rtol, atol):
    return _per_trial(lambda mdl, pe: _truth(mdl, pe[0], pe[1], ts, rtol, atol))(
        models, (plans, excitation))


@eqx.filter_jit
def _emg_batch(keys, excitation, ts, subjects, t_emg, fs_emg):
    one = lambda k, e, s: _emg(k, e, ts, s.delay, s, t_emg, fs_emg)  # noqa: E731
    return jax.vmap(jax.vmap(one, (0, 0, None)), (0, 0, 0))(keys, excitation, subjects)


@eqx.filter_jit
def _mvc_batch(keys, subjects, n, fs_emg, m):
    return jax.vmap(lambda k, s: _mvc(k, s, n, fs_emg, m))(keys, subjects)


def synthetic_cohort(
    model: Model,
    n_subjects: int,
    key: PRNGKeyArray,
    *,
    protocols: Sequence[str] = PROTOCOLS,
    repetitions: int = 2,
    duration: float = 10.0,
    fs: float = 100.0,
    fs_emg: float = 2000.0,
    mvc_duration: float = 5.0,
    ranges=None,
    distributions: CohortDistributions = CohortDistributions(),  # noqa: B008
    controller: Controller = Controller(),  # noqa: B008
    rtol: float = 1e-6,
    atol: float = 1e-8,
    progress: Callable[[str], None] | None = None,
) -> Cohort:
    """Generate a synthetic cohort with ground truth from forward simulation.

    Args:
        model: the generic model (e.g. `jaxmsk.models.wrist()`); subjects are variations of it.
        n_subjects: number of subjects (>= 1).
        key: JAX PRNG key; the same key gives the same cohort, bit for bit on one machine.
        protocols: movement protocols, from "slow", "medium", "fast" (flexion/extension at
            0.25, 0.5 and 1 Hz) and "free"; each is recorded `repetitions` times.
        duration: seconds per trial.
        fs: sampling rate of kinematics, forces and excitations (Hz).
        fs_emg: sampling rate of raw sEMG (Hz, 1–2 kHz; above 900 Hz).
        mvc_duration: seconds of each subject's MVC trial.
        ranges: (dofs, 2) coordinate ranges the movements stay within (rad); default 80 % of
            the range the model's paths were fitted over.
        distributions: per-subject parameter distributions (`CohortDistributions`).
        controller: the excitation controller (`Controller`).
        rtol, atol: ODE tolerances of the simulations.
        progress: called with a line of text at each stage (e.g. `print`).

    Returns a `Cohort`. `metadata["checks"]` records how far the movements went toward the
    range limits and how closely the open-loop replay followed the closed loop.
    """
    if not isinstance(model, Model):
        raise ValueError(f"synthetic_cohort needs a jaxmsk.Model, got {type(model).__name__}.")
    if int(n_subjects) != n_subjects or n_subjects < 1:
        raise ValueError(f"n_subjects={n_subjects!r}: pass a positive integer.")
    protocols = tuple(protocols)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"protocols {bad or protocols}: choose from {PROTOCOLS}.")
    if repetitions < 1 or duration <= 0 or fs <= 0 or mvc_duration <= 0:
        raise ValueError("synthetic_cohort: repetitions >= 1 and duration, fs, mvc_duration > 0.")
    if fs_emg <= 900.0:
        raise ValueError(f"fs_emg={fs_emg} Hz is too slow for raw sEMG (content up to 450 Hz); "
                         "use 1000–2000 Hz.")
    say = progress or (lambda s: None)
    dtype = jnp.result_type(float)
    m, d = model.n_muscles, model.n_dofs
    ranges = default_ranges(model) if ranges is None else jnp.asarray(ranges, dtype)
    if ranges.shape != (d, 2) or not bool(jnp.all(ranges[:, 0] < ranges[:, 1])):
        raise ValueError(f"ranges has shape {ranges.shape}; pass (n_dofs, 2) = ({d}, 2) with "
                         "low < high for each coordinate (rad).")
    names = tuple(f"{p}_{r + 1}" for p in protocols for r in range(repetitions))
    trial_protocols = tuple(p for p in protocols for _ in range(repetitions))
    n_trials = len(names)

    k_subj, k_plan, k_emg, k_mvc = jax.random.split(key, 4)
    subjects = jax.jit(jax.vmap(sample_subject, (0, None, None)), static_argnums=(1, 2))(
        jax.random.split(k_subj, n_subjects), m, distributions)
    models = eqx.filter_vmap(subject_model, in_axes=(None, 0))(model, subjects)

    plan_keys = jax.random.split(k_plan, (n_trials, n_subjects))
    plans = [_plan_batch(plan_keys[i], p, ranges, m, duration)
             for i, p in enumerate(trial_protocols)]
    plans = jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *plans)  # (subjects, trials, ...)

    n = int(round(duration * fs)) + 1
    ts = jnp.arange(n, dtype=dtype) / fs
    lead = math.ceil((distributions.delay_s[1] + 0.05) * fs)
    ts_ext = jnp.arange(n + lead, dtype=dtype) / fs

    t0 = _time.perf_counter()
    say(f"cohort: {n_subjects} subjects x {n_trials} trials of {duration:g} s; designing "
        "excitations in closed loop ...")
    q_cl, exc_ext, ok_cl = _closed_loop_batch(models, plans, controller, ts_ext, rtol, atol)
    say(f"  closed loop done in {_time.perf_counter() - t0:.1f} s; forward simulation of the "
        "ground truth ...")
    t1 = _time.perf_counter()
    truth, ok_truth = _truth_batch(models, plans, exc_ext[:, :, :n], ts, rtol, atol)
    say(f"  ground truth done in {_time.perf_counter() - t1:.1f} s; synthesising sEMG ...")
    t2 = _time.perf_counter()
    n_emg = int(round(duration * fs_emg)) + 1
    t_emg = jnp.arange(n_emg, dtype=dtype) / fs_emg
    emg = _emg_batch(jax.random.split(k_emg, (n_subjects, n_trials)), exc_ext, ts_ext, subjects,
                     t_emg, fs_emg)
    mvc = _mvc_batch(jax.random.split(k_mvc, n_subjects), subjects,
                     int(round(mvc_duration * fs_emg)), fs_emg, m)
    say(f"  sEMG done in {_time.perf_counter() - t2:.1f} s")

    q = np.asarray(truth["q"])
    lo, hi = np.asarray(ranges[:, 0]), np.asarray(ranges[:, 1])
    n_fail = int(np.sum(~np.asarray(ok_cl)) + np.sum(~np.asarray(ok_truth)))
    if n_fail:
        raise RuntimeError(f"synthetic_cohort: {n_fail} simulation(s) failed; try a smaller "
                           "rtol/atol or a shorter duration, and report it if it persists.")
    checks = {
        "range_low_rad": lo.tolist(), "range_high_rad": hi.tolist(),
        "q_min_rad": q.min(axis=(0, 1, 2)).tolist(), "q_max_rad": q.max(axis=(0, 1, 2)).tolist(),
        "max_tracking_error_rad": float(np.max(np.abs(q - np.asarray(truth["target"])))),
        "max_replay_vs_closed_loop_rad": float(np.max(np.abs(q - np.asarray(q_cl)[:, :, :n]))),
        "seconds": round(_time.perf_counter() - t0, 2),
    }
    metadata = {"generator": "jaxmsk.cohort.synthetic_cohort", "duration_s": duration,
                "repetitions": repetitions, "distributions": distributions.as_dict(),
                "controller": dataclasses.asdict(controller) if dataclasses.is_dataclass(controller)
                else {}, "rtol": rtol, "atol": atol, "checks": checks, "units": UNITS}
    return Cohort(
        model=model, subjects=jax.tree.map(np.asarray, subjects),
        subject_ids=tuple(f"S{i + 1:02d}" for i in range(n_subjects)),
        trial_names=names, protocols=trial_protocols, fs=float(fs), fs_emg=float(fs_emg),
        time=np.asarray(ts), time_emg=np.asarray(t_emg),
        **{k: np.asarray(v) for k, v in truth.items()},
        emg=np.asarray(emg), mvc_emg=np.asarray(mvc), metadata=metadata)


__all__ = ["Cohort", "synthetic_cohort", "TRUTH_FIELDS", "UNITS"]
