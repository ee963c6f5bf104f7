"""jaxmsk.distributed: in one process, and with 2 local processes × 2 CPU devices each
(`python -m jaxmsk.launch`, gloo collectives): sharded simulations, a sharded calibration and
a distributed 2-fold study against their one-device / sequential results."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def _launch(*command: str, devices: int = 2, timeout: float = 400) -> str:
    """Run `command` in 2 processes with `devices` CPU devices each; its output (asserting
    success)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "jaxmsk.launch", "-n", "2", "--devices-per-process", str(devices),
         "--timeout", str(timeout), "--", sys.executable, *command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def _last_value(out: str, pattern: str) -> float:
    found = re.findall(pattern, out)
    assert found, out[-4000:]
    return float(found[-1])


def test_two_processes_shard_simulations_and_a_calibration_like_one_device():
    # tests/distributed_checks.py: an arm26 batch (8 × 0.25 s) and a wrist calibration (4
    # trials, 2 iterations) over 2 processes × 2 CPU devices, each against one device.
    out = _launch(str(ROOT / "tests" / "distributed_checks.py"))
    assert _last_value(out, r"CHECK simulate (\S+)") <= 1e-12
    assert _last_value(out, r"CHECK identify (\S+)") <= 1e-10
    assert _last_value(out, r"scales moved by up to (\S+)\)") > 1e-3  # the fit did move


def test_distributed_study_gives_the_sequential_table(tmp_path):
    args = ["-m", "experiments.transfer.run", "--quick", "--subjects", "2", "--folds", "2",
            "--shares", "0.1", "--methods", "generic,transfer_no_physics", "--no-plots",
            "--generic-steps", "10", "--personal-steps", "5"]
    # The sequential run simulates the cohort and keeps it; the distributed one loads it (the
    # cache is exact: the tables below must agree to the last digit).
    args += ["--cohort-cache", str(tmp_path / "cohorts")]
    seq = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "seq")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert seq.returncode == 0, (seq.stdout + seq.stderr)[-4000:]
    assert "cohort: saved to" in seq.stdout
    out = _launch(*args, "--distributed", "--out", str(tmp_path / "dist"), devices=1)
    assert out.count("cohort: loaded from") == 2, out[-4000:]  # (both processes)
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("seq", "dist"))
    assert a["targets"] == b["targets"] == ["S01", "S02"]
    assert a["shares"] == b["shares"]  # every method's mean and sd, every metric
    for fa, fb in zip(a["folds"], b["folds"]):
        assert fa["shares"]["0.1"]["methods"] == fb["shares"]["0.1"]["methods"]
    # Each fold file was written once, by the process that ran it; results by process 0.
    assert sorted(p.name for p in (tmp_path / "dist").glob("fold_*.json")) == \
        ["fold_S01.json", "fold_S02.json"]
