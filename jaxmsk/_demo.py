"""`jaxmsk demo` until the transfer-learning pipeline lands: five wrist muscles simulated.

The five wrist flexor/extensor muscle–tendon units of ../shared/REFERENCE.md §4 (FCR, FCU,
ECU, ECRB, ECRL) with compliant tendons and De Groote activation dynamics are driven by
agonist/antagonist excitation while their muscle–tendon lengths follow a prescribed wrist
flexion/extension. The state (activation, normalised tendon force) starts in static
equilibrium and is integrated with diffrax's Tsit5 (an explicit solver: this protocol is not
stiff — Kvaerno5 took 418 steps and 20× longer at rtol 1e-4); the same simulation is
then `vmap`-ed over a cohort of strength-scaled subjects. Path geometry is not modelled yet
(the skeleton issue brings it): lengths use constant moment arms of ±1.5 cm, an
illustrative value, not a fitted one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .muscle import DeGrooteActivation, DeGrooteFregly2016Muscle, MuscleParameters

WRIST_MUSCLES = ("FCR", "FCU", "ECU", "ECRB", "ECRL")
# REFERENCE.md §4 (OpenSim wrist model): F_max (N), l_opt (m), l_ts (m), α_opt (rad).
WRIST_PARAMETERS = (
    (59.7, 0.0628, 0.2185, 0.054),
    (102.6, 0.0509, 0.2420, 0.211),
    (117.0, 0.0622, 0.2310, 0.061),
    (122.9, 0.0585, 0.2205, 0.155),
    (65.7, 0.0936, 0.2026, 0.044),
)
MOMENT_ARMS = (0.015, 0.015, -0.015, -0.015, -0.015)  # m; flexors +, extensors − (illustrative)


def wrist_muscles(strength_scale: float | jax.Array = 1.0) -> DeGrooteFregly2016Muscle:
    """The five wrist muscles as one stacked compliant-tendon module."""
    fmax, lopt, lts, alpha = (jnp.array(col) for col in zip(*WRIST_PARAMETERS))
    return DeGrooteFregly2016Muscle(MuscleParameters(fmax * strength_scale, lopt, lts, alpha))


def _protocol(t, muscles: DeGrooteFregly2016Muscle):
    """Wrist angle (rad), MTU lengths (m), MTU velocities (m/s) and excitations at time t."""
    p = muscles.params
    r = jnp.array(MOMENT_ARMS)
    angle = 0.6 * jnp.sin(2 * math.pi * 0.5 * t)
    angle_rate = 0.6 * 2 * math.pi * 0.5 * jnp.cos(2 * math.pi * 0.5 * t)
    rest = p.tendon_slack_length * 1.01 + p.optimal_fiber_length * jnp.cos(p.pennation_angle)
    lmt = rest - r * angle  # flexion (angle > 0) shortens the flexors
    vmt = -r * angle_rate
    # Agonists follow the flexion velocity, antagonists co-contract at 5 %.
    drive = jnp.tanh(4.0 * angle_rate)
    flexor = jnp.sign(r) > 0
    excitation = 0.05 + 0.5 * jnp.where(flexor, jax.nn.relu(drive), jax.nn.relu(-drive))
    return angle, lmt, vmt, excitation


def simulate_wrist(muscles: DeGrooteFregly2016Muscle, ts: jax.Array, rtol: float = 1e-6):
    """Integrate (activation, f̃T) of the wrist muscles along the prescribed protocol."""
    activation_dynamics = DeGrooteActivation()

    def vector_field(t, y, args):
        a, ft = y
        _, lmt, vmt, e = _protocol(t, muscles)
        return (activation_dynamics.derivative(e, a),
                muscles.norm_tendon_force_derivative(lmt, vmt, a, ft))

    _, lmt0, vmt0, e0 = _protocol(ts[0], muscles)
    ft0 = muscles.equilibrium(lmt0, e0, vmt0).norm_tendon_force
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), diffrax.Tsit5(), ts[0], ts[-1], dt0=1e-3,
        y0=(e0, ft0), saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-2),
        max_steps=100_000,
    )
    a, ft = sol.ys
    _, lmt, vmt, _ = jax.vmap(lambda t: _protocol(t, muscles))(ts)
    state = jax.vmap(muscles.compliant_tendon_state)(lmt, vmt, a, ft)
    moment = state.tendon_force @ jnp.array(MOMENT_ARMS)
    return dict(activation=a, norm_tendon_force=ft, tendon_force=state.tendon_force,
                fiber_length=state.fiber_length, norm_fiber_velocity=state.norm_fiber_velocity,
                moment=moment, steps=sol.stats["num_steps"], result=sol.result)


def run_demo(out: Path | None = None, n_subjects: int = 64, progress=print) -> dict:
    """Run the demo, print its report and (optionally) write report.md and results.json."""
    ts = jnp.linspace(0.0, 2.0, 201)
    muscles = wrist_muscles()
    device = jax.devices()[0]
    progress(f"jaxmsk demo — five compliant-tendon wrist muscles, device {device.platform} "
             f"({getattr(device, 'device_kind', device)}), dtype {jnp.result_type(float).name}")

    sim = eqx.filter_jit(simulate_wrist)
    t0 = time.perf_counter()
    traj = jax.block_until_ready(sim(muscles, ts))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    traj = jax.block_until_ready(sim(muscles, ts))
    steady = time.perf_counter() - t0
    progress(f"  one 2 s simulation: compile+run {first:.2f} s, then {steady * 1e3:.1f} ms "
             f"({int(traj['steps'])} solver steps, "
             f"{'successful' if traj['result'] == diffrax.RESULTS.successful else traj['result']})")

    scales = jnp.linspace(0.7, 1.3, n_subjects)
    cohort = eqx.filter_jit(jax.vmap(lambda s: simulate_wrist(wrist_muscles(s), ts)["moment"]))
    t0 = time.perf_counter()
    jax.block_until_ready(cohort(scales))
    c_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    moments = jax.block_until_ready(cohort(scales))
    c_steady = time.perf_counter() - t0
    progress(f"  {n_subjects} strength-scaled subjects in one vmap: compile+run {c_first:.2f} s, "
             f"then {c_steady * 1e3:.1f} ms")

    # Sensitivity of the peak wrist moment to every muscle's F_max, by autodiff.
    def peak_moment(m):
        return jnp.max(simulate_wrist(m, ts)["moment"])

    grads = eqx.filter_jit(eqx.filter_grad(peak_moment))(muscles)
    dpeak = grads.params.max_isometric_force

    rows = []
    for j, name in enumerate(WRIST_MUSCLES):
        rows.append(dict(
            muscle=name,
            peak_tendon_force_N=float(jnp.max(traj["tendon_force"][:, j])),
            fiber_length_range_m=[float(jnp.min(traj["fiber_length"][:, j])),
                                  float(jnp.max(traj["fiber_length"][:, j]))],
            max_abs_norm_fiber_velocity=float(jnp.max(jnp.abs(traj["norm_fiber_velocity"][:, j]))),
            peak_activation=float(jnp.max(traj["activation"][:, j])),
            dpeak_moment_dfmax_m=float(dpeak[j]),
        ))
    lines = [
        "| muscle | peak F_T (N) | fibre length (cm) | max abs v/v_max | peak a | ∂(peak moment)/∂F_max (m) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lo, hi = r["fiber_length_range_m"]
        lines.append(f"| {r['muscle']} | {r['peak_tendon_force_N']:.2f} | {lo * 100:.2f}–{hi * 100:.2f} | "
                     f"{r['max_abs_norm_fiber_velocity']:.3f} | {r['peak_activation']:.3f} | "
                     f"{r['dpeak_moment_dfmax_m']:.4f} |")
    summary = (f"Peak wrist flexion moment {float(jnp.max(traj['moment'])):.3f} N·m, peak extension "
               f"moment {float(-jnp.min(traj['moment'])):.3f} N·m; across the cohort the peak flexion "
               f"moment spans {float(jnp.min(moments.max(axis=1))):.3f}–"
               f"{float(jnp.max(moments.max(axis=1))):.3f} N·m.")
    report = "\n".join(lines + ["", summary])
    progress("")
    progress(report)

    results = dict(
        device=f"{device.platform}: {getattr(device, 'device_kind', device)}",
        single_simulation=dict(compile_and_run_s=first, run_s=steady, solver_steps=int(traj["steps"])),
        cohort=dict(n_subjects=n_subjects, compile_and_run_s=c_first, run_s=c_steady),
        muscles=rows,
        summary=summary,
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "report.md", "# jaxmsk demo\n\n" + report + "\n")
        _atomic_write(out / "results.json", json.dumps(results, indent=2) + "\n")
        progress(f"\nwrote {out / 'report.md'} and {out / 'results.json'}")
    return results


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, then rename into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
