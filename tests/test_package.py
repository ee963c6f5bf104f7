"""Package promises: no side effects at import, oracles present, the CLI and its demo."""

import json
import subprocess
import sys

import numpy as np
import pytest

import jaxmsk


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


def test_cohort_names_moved_from_data_still_resolve_with_a_warning():
    import jaxmsk as msk

    with pytest.warns(DeprecationWarning, match="moved to jaxmsk.cohort.synthetic_cohort"):
        old = msk.data.synthetic_cohort
    assert old is msk.cohort.synthetic_cohort
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        msk.data.not_a_name  # noqa: B018


def test_cli_help_and_refuses_to_overwrite(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jaxmsk", "demo", "--help"], capture_output=True,
                         text=True, check=True)
    assert "--out" in out.stdout
    (tmp_path / "keep.txt").write_text("user data")
    res = subprocess.run([sys.executable, "-m", "jaxmsk", "demo", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "keep.txt").read_text() == "user data"


@pytest.mark.xdist_group("transfer")  # with tests/test_transfer.py: one cohort, one compile
def test_demo_runs_and_reports(tmp_path, small_cohort):
    """The demo end to end on the small cohort's sizes with tiny training budgets (the real
    run's figures are in README): one leave-one-subject-out fold with every method."""
    from jaxmsk._learn.hybrid import HybridConfig
    from jaxmsk._learn.transfer import TransferConfig
    from jaxmsk.cli.demo import DEMO_METHODS as METHODS
    from jaxmsk.cli.demo import METRICS, run_demo

    def small_cnn(n_in, n_out, key):
        return jaxmsk.nn.CNN(n_in, n_out, channels=(8, 8), kernel_sizes=(4, 4), head_width=16,
                             key=key)

    config = TransferConfig(network=small_cnn, segment_length=16, generic_steps=20,
                            personal_steps=10, batch_size=8, eval_every=10,
                            hybrid=HybridConfig(steps=3, eval_every=3))
    lines = []
    results = run_demo(out=tmp_path / "demo", n_subjects=3, repetitions=1, duration=3.0,
                       config=config, progress=lines.append)
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert set(saved["methods"]) == set(METHODS)
    for m in METHODS:
        for k in METRICS:
            assert np.isfinite(saved["methods"][m][k]), (m, k)
        assert saved["methods"][m]["angle_rmse"] == results["methods"][m]["angle_rmse"]
    assert saved["units"] == {"angle": "rad", "force": "N", "eom_residual_rms": "dimensionless"}
    assert saved["folds"][0]["target"] == "S03"
    assert saved["share_start_s"] == 1.0  # the fade-in is used by no method
    assert set(saved["strength"]) == {"pi_transfer", "pi_no_transfer", "full_finetune",
                                      "pi_hybrid"}
    assert saved["labels"] == "angle" and "pi_hybrid" in METHODS  # the demo's default
    for m in METHODS:
        assert saved["methods"][m]["angle_rmse"] > 0 and saved["methods"][m]["force_rmse"] > 0
    fold = saved["folds"][0]
    assert fold["share_trials"] == ["slow_1", "medium_1", "fast_1", "free_1"]  # 20 % of each
    assert all(t.endswith("#rest") for t in fold["test_trials"])
    assert (tmp_path / "demo" / "results.md").read_text().startswith("# jaxmsk demo")
    for png in ("errors.png", "traces.png"):
        assert (tmp_path / "demo" / png).read_bytes()[:4] == b"\x89PNG"
    assert any("fold 1/1" in s for s in lines)
