"""Run in every process of `python -m jaxmsk.launch -n 2 --devices-per-process 2 -- python
tests/distributed_checks.py` (by tests/test_distributed.py): a sharded batch of arm26
simulations and a sharded calibration (their results gathered to every process), each
against the same work on one device of process 0, which prints `CHECK simulate X` and
`CHECK identify Y`: the largest differences (rad; scale factors)."""

import jax.numpy as jnp
import numpy as np

from jaxmsk import distributed as dist

where = dist.initialize()
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jaxmsk as msk  # noqa: E402
from jaxmsk._identify.identify import identify, synthetic_trials  # noqa: E402

assert where.process_count == 2 and where.device_count == 4, where
main = where.process_index == 0  # (only process 0 computes the one-device references)


# arm26: 8 trajectories of 0.25 s over the 4 devices of 2 processes, in chunks of 2.
arm = msk.models.arm26()
ts = np.linspace(0.0, 0.25, 26)
rng = np.random.default_rng(0)  # the same batch in every process
phase = rng.uniform(0, 2 * np.pi, (8, 1, arm.n_muscles))
excs = 0.2 + 0.05 * np.sin(2 * np.pi * 1.3 * ts[None, :, None] + phase)
kw = dict(q0=np.array([0.3, 0.8]), solver="stabilized", rtol=1e-3, atol=1e-5, chunk=2)
out = dist.simulate_batch(arm, excs, ts, **kw)
assert np.all(out.result == 0)
if main:
    one = dist.simulate_batch(arm, excs, ts, mesh=dist.batch_mesh(jax.local_devices()[:1]),
                              **kw)
    d_sim = float(np.max(np.abs(out.q - one.q)))

# The wrist: 4 trials of 0.3 s split over the 4 devices, 2 Levenberg–Marquardt iterations.
wrist = msk.models.wrist()
truth = np.array([1.2, 0.8, 1.1, 0.9, 1.0])
subject = msk.scale_parameters(wrist, max_isometric_force=jnp.asarray(truth))
trials = synthetic_trials(subject, jax.random.key(0), n_trials=4, duration=0.3)
fit_kw = dict(fit=("max_isometric_force",), max_steps=2, starts=1, shooting_interval=None,
              progress=False)
sharded = identify(wrist, trials, mesh=dist.batch_mesh(), **fit_kw)
if main:
    local = identify(wrist, trials, **fit_kw)
    d_id = float(np.max(np.abs(sharded.scales["max_isometric_force"]
                               - local.scales["max_isometric_force"])))
    moved = float(np.max(np.abs(sharded.scales["max_isometric_force"] - 1.0)))
    print(f"CHECK simulate {d_sim:.3g}", flush=True)
    print(f"CHECK identify {d_id:.3g} (scales moved by up to {moved:.3g})", flush=True)
