"""Package promises: no side effects at import, oracles present, the CLI and its demo."""

import json
import subprocess
import sys

import pytest


def test_import_changes_no_jax_configuration():
    code = ("import jax; before = jax.config.jax_enable_x64; import jaxmsk; "
            "assert jax.config.jax_enable_x64 == before == False, 'import jaxmsk flipped x64'; "
            "import jax.numpy as jnp; assert jnp.ones(1).dtype == jnp.float32")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_live_oracles_are_installed():
    """Parity tests must run, never skip: CI fails here if an oracle is missing."""
    import mujoco
    import opensim

    assert opensim.GetVersion().startswith("4.6")
    assert hasattr(mujoco, "mju_muscleGain")


def test_public_names():
    import jaxmsk as msk

    for name in ("MuscleParameters", "DeGrooteFregly2016Muscle", "DeGrooteCurves",
                 "DeGrooteActivation", "MuJoCoMuscle", "MuJoCoActivation", "CEINMSActivation",
                 "TwoPoleActivation", "Equilibrium"):
        assert hasattr(msk, name), name


def test_cli_help_and_refuses_to_overwrite(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jaxmsk", "demo", "--help"], capture_output=True,
                         text=True, check=True)
    assert "--out" in out.stdout
    (tmp_path / "keep.txt").write_text("user data")
    res = subprocess.run([sys.executable, "-m", "jaxmsk", "demo", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_demo_runs_and_reports(tmp_path):
    from jaxmsk._demo import run_demo

    lines = []
    results = run_demo(out=tmp_path / "demo", n_subjects=2, progress=lines.append)
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved["muscles"] == results["muscles"]
    assert [r["muscle"] for r in saved["muscles"]] == ["FCR", "FCU", "ECU", "ECRB", "ECRL"]
    for r in saved["muscles"]:
        assert 0 < r["peak_tendon_force_N"] < 200  # below each muscle's F_max (≤ 122.9 N)
        assert r["max_abs_norm_fiber_velocity"] < 1.0
    # Flexors raise the peak flexion moment, extensors lower it.
    signs = [r["dpeak_moment_dfmax_m"] > 0 for r in saved["muscles"]]
    assert signs == [True, True, False, False, False]
    assert "successful" in "\n".join(lines)
    assert (tmp_path / "demo" / "report.md").read_text().startswith("# jaxmsk demo")
