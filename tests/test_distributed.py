"""jaxmsk.distributed in one process (the multi-process checks are `python -m jaxmsk.launch -n 2
-- python -m benchmarks.simulate --distributed`, not yet in the suite)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmsk as msk
from jaxmsk import distributed as dist


def test_simulate_batch_matches_vmap_with_padding_and_chunks():
    model = msk.models.wrist()
    ts = np.linspace(0.0, 0.3, 31)
    rng = np.random.default_rng(0)
    excs = 0.2 + 0.1 * rng.random((5, 31, model.n_muscles))
    q0 = np.zeros((5, 1))
    ref = np.asarray(jax.vmap(lambda e, q: msk.simulate(
        model, e, jnp.asarray(ts), q0=q, qdot0=jnp.zeros(1), solver="explicit").q)(
        jnp.asarray(excs), jnp.asarray(q0)))
    for chunk in (None, 2):  # 5 trajectories: padded to 6 (chunks of 2)
        out = dist.simulate_batch(model, excs, ts, q0=q0, solver="explicit", chunk=chunk)
        assert out.q.shape == (5, 31, 1)
        assert np.all(out.result == 0)
        np.testing.assert_allclose(out.q, ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="excitation must be"):
        dist.simulate_batch(model, excs[0], ts, q0=q0[0])
    with pytest.raises(ValueError, match="chunk"):
        dist.simulate_batch(model, excs, ts, q0=q0, chunk=0)


def test_simulate_batch_warns_about_stopped_simulations():
    model = msk.models.wrist()
    ts = np.linspace(0.0, 0.3, 31)
    excs = np.full((2, 31, model.n_muscles), 0.3)
    with pytest.warns(RuntimeWarning, match="2 of 2 simulations stopped"):
        out = dist.simulate_batch(model, excs, ts, q0=np.zeros(1), solver="explicit",
                                  max_steps=2)
    assert np.all(out.result != 0)


def test_items_and_objects_in_one_process():
    assert dist.my_items([1, 2, 3]) == [1, 2, 3]
    assert dist.gather_objects({"a": [1, 2]}) == [{"a": [1, 2]}]
    assert dist.broadcast_flag(True) is True
    assert dist.info().process_count == 1
