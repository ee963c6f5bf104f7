"""`jaxmsk train` and `jaxmsk personalise` end to end on the small cohort exported as
recordings (tiny budgets and network: this checks the commands, their files and errors;
experiments/ measures the method)."""

import json
import shutil

import jax
import numpy as np
import pytest

import jaxmsk as msk
from jaxmsk._learn import checkpoint
from jaxmsk.cli import main
from jaxmsk.cli.demo import METRICS

# The transfer worker: the session's small cohort, and the train steps compiled by the demo
# test for the same network, segment and batch sizes are reused here.
pytestmark = pytest.mark.xdist_group("transfer")


def small_cnn(n_in, n_out, key):
    return msk.nn.CNN(n_in, n_out, channels=(8, 8), kernel_sizes=(4, 4), head_width=16, key=key)


@pytest.fixture(scope="module")
def recordings(small_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cli") / "recordings"
    msk.io.export_recordings(root, small_cohort)
    return root


def _fails(args, capsys, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, (needle, err)


def _truth_residual(cohort, i, rms=True):
    """EoM residual of cohort subject i's recorded q and tendon forces, all trials pooled."""
    model = msk.models.wrist()
    r = np.concatenate([np.asarray(msk.physics.equation_of_motion_residual(
        model, cohort.q[i, j], cohort.tendon_force[i, j], 1.0 / cohort.fs))
        for j in range(cohort.n_trials)])
    return float(np.sqrt(np.mean(r**2))) if rms else r


def test_train_then_personalise(recordings, small_cohort, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint, "network_builder", lambda name: small_cnn)
    gen = tmp_path / "generic"
    args = ["train", "--data", str(recordings), "--subjects", "S01,S02", "--out", str(gen),
            "--steps", "20", "--batch-size", "8", "--segment-length", "16"]
    assert main(args) == 0
    saved = json.loads((gen / "results.json").read_text())
    assert saved["subjects"] == ["S01", "S02"] and saved["units"]["force"] == "N"
    for part in ("training", "validation"):
        r = saved[part]
        assert r["angle"]["labels"] == ["flexion"]
        assert r["force"]["labels"] == list(msk.models.wrist().muscle_names)
        assert len(r["force"]["rmse"]) == 5 and all(np.isfinite(r["force"]["rmse"]))
        assert all(np.isfinite(r[k]) for k in METRICS)
    assert (gen / "results.md").read_text().startswith("# jaxmsk train")
    assert (gen / "generic.eqx").is_file() and (gen / "generic.eqx.json").is_file()

    before = (gen / "results.json").stat().st_mtime_ns
    _fails(args, capsys, "--overwrite")  # nothing a user saved is replaced without asking
    assert (gen / "results.json").stat().st_mtime_ns == before

    base = ["personalise", "--data", str(recordings), "--generic", str(gen), "--steps", "10",
            "--batch-size", "8"]
    _fails(base + ["--subject", "S01", "--out", str(tmp_path / "x")], capsys,
           "trained on S01, S02")  # not held out
    _fails(base + ["--subject", "S03", "--out", str(tmp_path / "x"), "--methods", "magic"],
           capsys, "--methods 'magic'")
    out = tmp_path / "S03"
    assert main(base + ["--subject", "S03", "--out", str(out),
                        "--methods", "pi_transfer,generic"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["pi_transfer", "generic"]
    for m, r in res["methods"].items():
        assert all(np.isfinite(r[k]) and r[k] != 0 for k in METRICS), m
    assert res["share_trials"] == ["fast_1", "free_1", "medium_1", "slow_1"]  # 20 % of each
    # The residual reported for the recorded truth is the direct computation on the cohort's
    # own arrays (the subject's q in rad and tendon forces in N at its fs, generic model).
    direct = _truth_residual(small_cohort, 2)
    assert res["recorded_eom_residual_rms"] == pytest.approx(direct, rel=1e-4)
    assert saved["recorded_eom_residual_rms"] == pytest.approx(
        np.sqrt(np.mean(np.concatenate([_truth_residual(small_cohort, i, rms=False)
                                        for i in (0, 1)]) ** 2)), rel=1e-4)
    for m, r in res["methods"].items():
        assert 0 <= r["angle_outside_limits"] <= 1 and r["eom_residual_median"] >= 0, m
    assert "recorded angles and forces" in (out / "results.md").read_text()
    assert all(t.endswith("#rest") for t in res["test_trials"])
    assert (out / "traces.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "results.md").read_text().startswith("# jaxmsk personalise: subject S03")
    pred, adj, meta = checkpoint.load_predictor(out / "personalised.eqx", msk.models.wrist())
    assert meta["subject"] == "S03" and meta["kind"] == "personalised"
    np.testing.assert_allclose(np.exp(np.asarray(adj.log_strength)),
                               list(res["strength_scales"]["pi_transfer"].values()))
    q_hat, f_hat = pred(jax.numpy.zeros((40, 5)))
    assert q_hat.shape == (40 - pred.net.receptive_field + 1, 1) and f_hat.shape[1] == 5

    # --labels angle with whole trials named: fit on the angles of slow_1 and fast_1 only, test
    # on the other motion types, forces scored from their files. The share's force files are
    # not read: tripling them changes nothing.
    named = ["--subject", "S03", "--methods", "pi_transfer,generic", "--labels", "angle",
             "--trials", "slow_1,fast_1"]
    _fails(base + named[:-1] + ["slow_9", "--out", str(tmp_path / "x")], capsys,
           "names slow_9, which it does not have")
    runs = []
    for tag, factor in (("angle", 1.0), ("angle_tripled", 3.0)):
        folder = tmp_path / f"rec_{tag}"
        shutil.copytree(recordings, folder)
        for trial in ("slow_1", "fast_1"):
            f = folder / "S03" / f"{trial}_muscle_forces.sto"
            tab = msk.io.read_sto(f)
            msk.io.write_sto(f, tab.time, tab.values * factor, tab.labels, overwrite=True)
        assert main(base[:2] + [str(folder)] + base[3:] + named
                    + ["--out", str(tmp_path / tag)]) == 0
        runs.append(json.loads((tmp_path / tag / "results.json").read_text()))
    res = runs[0]
    assert res["share_trials"] == ["fast_1", "slow_1"]
    assert res["test_trials"] == ["free_1", "medium_1"]
    assert res["labels"] == "angle" and res["force_labels"] is False and res["force_scored"]
    for m, r in res["methods"].items():
        assert np.isfinite(r["force_rmse"]) and r["force_rmse"] > 0, m
        assert set(r["by_motion"]) == {"free", "medium"}, m
        assert r["by_motion"]["free"]["trials"] == ["free_1"]
        for name in ("angle_rmse", "force_rmse"):
            assert r[name] == runs[1]["methods"][m][name], (m, name)
    assert "by motion type" in (tmp_path / "angle" / "results.md").read_text()

    # A new subject without muscle-force files (forces cannot be measured in vivo): the
    # methods personalise on the angles alone and no force metric is reported.
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(recordings, unlabelled)
    sto = sorted((unlabelled / "S03").glob("*_muscle_forces.sto"))
    sto[0].unlink()
    some = base[:2] + [str(unlabelled)] + base[3:]
    _fails(some + ["--subject", "S03", "--out", str(tmp_path / "y")], capsys,
           f"{sto[0].name} missing while subject S03's other trials", "or none")
    for f in sto[1:]:
        f.unlink()
    out = tmp_path / "S03_angles"
    assert main(some + ["--subject", "S03", "--out", str(out),
                        "--methods", "pi_transfer,generic,pi_hybrid"]) == 0
    assert "has no muscle-force files" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["force_labels"] is False
    for m, r in res["methods"].items():
        assert r["force_rmse"] is None and r["force"] is None, m
        assert np.isfinite(r["angle_rmse"]) and np.isfinite(r["eom_residual_rms"]), m
    assert "force errors cannot be scored" in (out / "results.md").read_text()
    # pi_hybrid (the subject's model in the loop, no calibration) ran its --steps through
    # the simulator from the files and scored its open-loop angles.
    h = res["methods"]["pi_hybrid"]["hybrid"]
    assert h["history"][-1]["step"] <= 10 and h["step_seconds"] > 0
    assert len(res["strength_scales"]["pi_hybrid"]) == 5
    assert (out / "traces.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs_name_the_input_and_the_fix(recordings, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    _fails(["train", "--data", str(tmp_path / "nowhere")] + out, capsys, "no such folder")
    _fails(["train", "--data", str(recordings), "--subjects", "S09"] + out, capsys,
           "no subject folder 'S09'", "S01, S02, S03")
    _fails(["train", "--data", str(recordings), "--model", "arm26"] + out, capsys,
           "has 5 column(s) (FCR, FCU", "the model has 6 muscles", "--model")
    _fails(["train", "--data", str(recordings), "--model", "nope.osim"] + out, capsys,
           "--model nope.osim: no such file")
    _fails(["train", "--data", str(recordings), "--steps", "0"] + out, capsys, "--steps 0")
    no_forces = tmp_path / "no_forces"
    shutil.copytree(recordings, no_forces)
    (no_forces / "S02" / "slow_1_muscle_forces.sto").unlink()
    _fails(["train", "--data", str(no_forces)] + out, capsys,
           "S02/slow_1_muscle_forces.sto is missing", "static optimisation")
    assert not (tmp_path / "out").exists()  # nothing written on bad input
