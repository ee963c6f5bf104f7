"""Per-subject physiology and electrode effects for synthetic cohorts.

`CohortDistributions` documents every distribution; `sample_subject` draws one subject
(vmap over keys for a cohort); `subject_model` applies a subject to a generic model.

The distributions are jaxmsk's assumptions, chosen to give inter-subject differences of the
size reported for healthy adults rather than fitted to a data set:
- Strength: a subject-wide factor (log-normal, log-sd 0.15) times a per-muscle factor
  (log-sd 0.10); F_max differs by tens of percent between healthy adults.
- Body size S ~ N(1, 0.04): every MTU length, l_opt, l_ts and moment arm scales with S, so
  a bigger subject is a scaled copy (normalised fibre and tendon lengths unchanged).
- On top of size, per muscle: l_opt ~ N(1, 0.03), l_ts ~ N(1, 0.01) and moment arm
  ~ N(1, 0.08). l_ts varies least because the tendon's strain at F_max is only 3–5 %:
  1 % of a 0.22 m tendon is 2.2 mm, about a fifth of that strain.
- Segment mass and inertia: log-normal, log-sd 0.15. Joint damping: log-sd 0.2.
- Activation and deactivation time constants: uniform in [10, 20] ms and [40, 80] ms
  (De Groote et al. 2016 use 15 and 60 ms).
- Electromechanical delay: uniform in [20, 80] ms (10–100 ms is the reported range).
- Electrodes: RMS sEMG at full drive log-uniform in [0.2, 1.0] mV per channel; crosstalk
  between neighbouring channels uniform in [0, 0.15]; baseline noise RMS uniform in
  [2, 10] µV; powerline amplitude uniform in [0, 50] µV.
All normal draws are truncated at ±2 sd so that no subject is implausible.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .._model import Model
from .._scale import scale_damping, scale_parameters, scale_segments


@dataclasses.dataclass(frozen=True)
class CohortDistributions:
    """Distributions of per-subject parameters (see the module docstring for the reasons).

    `*_sd` of a scale factor drawn N(1, sd) or, where marked log-sd, exp(N(0, sd)).
    Ranges are (low, high) of uniform draws; `emg_gain_mV` is log-uniform.
    """

    strength_subject_log_sd: float = 0.15
    strength_muscle_log_sd: float = 0.10
    size_sd: float = 0.04
    optimal_fiber_length_sd: float = 0.03
    tendon_slack_length_sd: float = 0.01
    moment_arm_sd: float = 0.08
    segment_mass_log_sd: float = 0.15
    damping_log_sd: float = 0.2
    tau_act_s: tuple[float, float] = (0.010, 0.020)
    tau_deact_s: tuple[float, float] = (0.040, 0.080)
    delay_s: tuple[float, float] = (0.020, 0.080)
    emg_gain_mV: tuple[float, float] = (0.2, 1.0)
    crosstalk: tuple[float, float] = (0.0, 0.15)
    noise_rms_mV: tuple[float, float] = (0.002, 0.010)
    powerline_mV: tuple[float, float] = (0.0, 0.05)
    truncation_sd: float = 2.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                if len(v) != 2 or not (0 <= v[0] <= v[1]):
                    raise ValueError(f"CohortDistributions.{f.name}={v}: give (low, high) with "
                                     "0 <= low <= high.")
            elif not v >= 0:
                raise ValueError(f"CohortDistributions.{f.name}={v} must be >= 0.")
        if self.tau_act_s[0] <= 0 or self.tau_deact_s[0] <= 0 or self.emg_gain_mV[0] <= 0:
            raise ValueError("CohortDistributions: time constants and EMG gains must be > 0.")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class SubjectParameters(eqx.Module):
    """One subject's true parameters (a leading subject axis when batched).

    Scales are relative to the generic model; lengths include the body-size factor.
    """

    max_isometric_force_scale: Array  # (muscles,)
    optimal_fiber_length_scale: Array  # (muscles,) size × per-muscle
    tendon_slack_length_scale: Array  # (muscles,) size × per-muscle
    moment_arm_scale: Array  # (muscles,) size × per-muscle
    size_scale: Array  # ()
    segment_mass_scale: Array  # () mass and inertia of every segment
    damping_scale: Array  # () joint damping of every passive element
    tau_act: Array  # () s
    tau_deact: Array  # () s
    delay: Array  # () s, electromechanical delay (EMG leads excitation)
    emg_gain: Array  # (muscles,) mV RMS at full drive
    crosstalk: Array  # (muscles - 1,) between neighbouring channels
    noise_rms: Array  # () mV
    powerline: Array  # () mV

    def as_dict(self) -> dict[str, Array]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def sample_subject(key: PRNGKeyArray, n_muscles: int,
                   dist: CohortDistributions = CohortDistributions(),
                   dtype=None) -> SubjectParameters:
    """Draw one subject. `jax.vmap(sample_subject, (0, None, None))(keys, ...)` draws many."""
    dtype = dtype or jnp.result_type(float)
    ks = iter(jax.random.split(key, 16))
    lim = dist.truncation_sd

    def normal(shape=()):
        return jax.random.truncated_normal(next(ks), -lim, lim, shape, dtype)

    def uniform(bounds, shape=()):
        return jax.random.uniform(next(ks), shape, dtype, bounds[0], bounds[1])

    m = n_muscles
    size = 1.0 + dist.size_sd * normal()
    strength = jnp.exp(dist.strength_subject_log_sd * normal()
                       + dist.strength_muscle_log_sd * normal((m,)))
    lo, hi = jnp.log(dist.emg_gain_mV[0]), jnp.log(dist.emg_gain_mV[1])
    return SubjectParameters(
        max_isometric_force_scale=strength,
        optimal_fiber_length_scale=size * (1.0 + dist.optimal_fiber_length_sd * normal((m,))),
        tendon_slack_length_scale=size * (1.0 + dist.tendon_slack_length_sd * normal((m,))),
        moment_arm_scale=size * (1.0 + dist.moment_arm_sd * normal((m,))),
        size_scale=size,
        segment_mass_scale=jnp.exp(dist.segment_mass_log_sd * normal()),
        damping_scale=jnp.exp(dist.damping_log_sd * normal()),
        tau_act=uniform(dist.tau_act_s),
        tau_deact=uniform(dist.tau_deact_s),
        delay=uniform(dist.delay_s),
        emg_gain=jnp.exp(uniform((lo, hi), (m,))),
        crosstalk=uniform(dist.crosstalk, (max(m - 1, 0),)),
        noise_rms=uniform(dist.noise_rms_mV),
        powerline=uniform(dist.powerline_mV),
    )


def _constant_term(path) -> int:
    for i, e in enumerate(path.exponents):
        if not any(e):
            return i
    raise ValueError("subject_model: the model's path polynomial has no constant term.")


def scale_path(path, size, moment_arm_scale):
    """A path with l_j(q) = S·l_j(c) + s_j·(l_j(q) − l_j(c)), c the path's centre (where
    every non-constant monomial vanishes): lengths at c scale with body size S = `size`,
    moment arms with s_j = `moment_arm_scale` (which includes S)."""
    k = _constant_term(path)
    coef = path.coefficients
    s = jnp.broadcast_to(jnp.asarray(moment_arm_scale, coef.dtype), (coef.shape[0],))
    new = (coef * s[:, None]).at[:, k].set(size * coef[:, k])
    return eqx.tree_at(lambda p: p.coefficients, path, new)


def subject_model(model: Model, subject: SubjectParameters) -> Model:
    """The generic `model` made into one subject: F_max, l_opt, l_ts and moment arms scaled,
    segment masses and inertias (and the gravity moments they cause) scaled, passive joint
    damping scaled, activation time constants replaced. vmap over a batch of subjects."""
    m = scale_parameters(model,
                         max_isometric_force=subject.max_isometric_force_scale,
                         optimal_fiber_length=subject.optimal_fiber_length_scale,
                         tendon_slack_length=subject.tendon_slack_length_scale)
    m = eqx.tree_at(lambda x: x.path, m, scale_path(m.path, subject.size_scale,
                                                    subject.moment_arm_scale))
    m = scale_damping(scale_segments(m, subject.segment_mass_scale), subject.damping_scale)
    dtype = m.activation.tau_act.dtype
    return eqx.tree_at(lambda x: (x.activation.tau_act, x.activation.tau_deact), m,
                       (jnp.asarray(subject.tau_act, dtype), jnp.asarray(subject.tau_deact, dtype)))


__all__ = ["CohortDistributions", "SubjectParameters", "sample_subject", "subject_model",
           "scale_path"]
