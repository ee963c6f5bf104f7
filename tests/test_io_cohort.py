"""jaxmsk.io._cohort_files (cohort folders) and jaxmsk.io._checkpoint (Equinox checkpoints)."""

from __future__ import annotations

import dataclasses
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_foreign_folder_kept, fake_cohort, hidden_entries

import jaxmsk
from jaxmsk.cohort import Cohort
from jaxmsk.cohort._cohort import TRUTH_FIELDS
from jaxmsk.io._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from jaxmsk.io._cohort_files import load_cohort, save_cohort

N_SUBJECTS, N_TRIALS, N_TIME, N_EMG, N_MVC = 2, 3, 11, 201, 100


def _cohort(seed: int = 0) -> Cohort:
    """A small cohort of random data with the right shapes (no simulation)."""
    return fake_cohort(seed, trial_names=("slow_1", "fast_1", "free_1"), n_time=N_TIME,
                       fs=100.0, n_emg=N_EMG, fs_emg=2000.0 / 3.0, n_mvc=N_MVC,
                       n_subjects=N_SUBJECTS,
                       metadata={"generator": "test", "seed": seed,
                                 "checks": {"max_error_rad": 0.1 + 0.2},
                                 "ranges": [[-1.0, 1.0]]})


def _assert_same_cohort(a: Cohort, b: Cohort) -> None:
    for name in ("time", "time_emg", *TRUTH_FIELDS, "emg", "mvc_emg"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert jax.tree.structure(a.subjects) == jax.tree.structure(b.subjects)
    for x, y in zip(jax.tree.leaves(a.subjects), jax.tree.leaves(b.subjects)):
        assert isinstance(y, np.ndarray) and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    _assert_same_tree(a.model, b.model)
    for name in ("subject_ids", "trial_names", "protocols", "fs", "fs_emg", "metadata"):
        assert getattr(a, name) == getattr(b, name), name


def _assert_same_tree(a, b) -> None:
    """Same structure, same non-array leaves, array leaves equal bit for bit."""
    (sa, rest_a), (sb, rest_b) = eqx.partition(a, eqx.is_array), eqx.partition(b, eqx.is_array)
    assert jax.tree.structure(sa) == jax.tree.structure(sb)
    assert jax.tree.leaves(rest_a) == jax.tree.leaves(rest_b)
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _snapshot(folder) -> dict[str, bytes]:
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return _cohort(0)


# 1. Cohort folders.

def test_cohort_round_trip_is_exact(tmp_path, cohort):
    path = tmp_path / "cohort_S2"
    assert save_cohort(path, cohort) == os.fspath(path)
    assert sorted(os.listdir(path)) == ["arrays.npz", "cohort.json", "model.json"]
    assert hidden_entries(tmp_path) == []
    loaded = load_cohort(path)
    _assert_same_cohort(cohort, loaded)
    _assert_same_tree(cohort.subject_model(1), loaded.subject_model(1))

    desc = json.loads((path / "cohort.json").read_text())
    assert desc["format"] == "jaxmsk-cohort/1"
    assert desc["jaxmsk_version"] == jaxmsk.__version__
    assert desc["arrays"]["q"] == {"shape": [2, 3, 11, 1], "dtype": "<f8", "units": "rad"}
    assert desc["arrays"]["tendon_force"]["units"] == "N"
    assert desc["arrays"]["subject/tau_act"]["units"] == "s"
    table = desc["true_parameters"]
    assert table[0].split() == ["parameter", "S01", "S02"]
    row = next(r for r in table if r.startswith("max_isometric_force_scale FCR "))
    np.testing.assert_allclose([float(v) for v in row.split()[-2:]],
                               cohort.subjects.max_isometric_force_scale[:, 0], rtol=1e-3)
    with np.load(path / "arrays.npz") as z:
        assert "subject/crosstalk" in z.files and z["subject/crosstalk"].shape == (2, 4)


def test_refuses_to_overwrite_and_leaves_folder_untouched(tmp_path, cohort):
    path = tmp_path / "cohort"
    save_cohort(path, cohort)
    before = _snapshot(path)
    with pytest.raises(FileExistsError, match=r"cohort exists; pass overwrite=True"):
        save_cohort(path, _cohort(1))
    assert _snapshot(path) == before
    assert hidden_entries(tmp_path) == []


def test_overwrite_replaces(tmp_path, cohort):
    path = tmp_path / "cohort"
    save_cohort(path, cohort)
    other = _cohort(1)
    assert not np.array_equal(other.q, cohort.q)
    save_cohort(path, other, overwrite=True)
    _assert_same_cohort(other, load_cohort(path))
    assert hidden_entries(tmp_path) == []


def test_overwrite_never_deletes_a_folder_that_is_not_a_cohort(tmp_path, cohort):
    assert_foreign_folder_kept(tmp_path, lambda path: save_cohort(path, cohort, overwrite=True),
                               "not a jaxmsk cohort folder")


def test_failed_final_rename_restores_the_old_folder(tmp_path, cohort, monkeypatch):
    path = tmp_path / "cohort"
    save_cohort(path, cohort)
    before = _snapshot(path)
    rename = os.rename

    def failing_rename(src, dst):
        if ".tmp-" in os.fspath(src):
            raise OSError("rename failed")
        return rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        save_cohort(path, _cohort(1), overwrite=True)
    assert _snapshot(path) == before
    assert hidden_entries(tmp_path) == []


def test_save_rejects_bad_cohorts_before_writing(tmp_path, cohort):
    bad_shape = dataclasses.replace(cohort, q=cohort.q[:, :, :-1])
    with pytest.raises(ValueError, match=r"q has shape \(2, 3, 10, 1\), expected \(2, 3, 11, 1\)"):
        save_cohort(tmp_path / "a", bad_shape)
    bad_meta = dataclasses.replace(cohort, metadata={"callback": print})
    with pytest.raises(ValueError, match="cohort.metadata cannot be stored as JSON"):
        save_cohort(tmp_path / "b", bad_meta)
    with pytest.raises(ValueError, match="needs a jaxmsk.cohort.Cohort"):
        save_cohort(tmp_path / "c", {"q": cohort.q})
    assert os.listdir(tmp_path) == []


def _rewrite_npz(folder, **changes):
    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with open(folder / "arrays.npz", "wb") as f:
        np.savez(f, **arrays)


def _edit_json(folder, fn):
    desc = json.loads((folder / "cohort.json").read_text())
    fn(desc)
    (folder / "cohort.json").write_text(json.dumps(desc))


def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, message", [
    (lambda p: os.remove(p / "model.json"), r"lacks model\.json"),
    (lambda p: _truncate(p / "arrays.npz"), r"arrays\.npz is unreadable"),
    (lambda p: _truncate(p / "cohort.json"), r"cohort\.json is not valid JSON"),
    (lambda p: (p / "model.json").write_text('{"format": "other"}'), r"model\.json is not a valid"),
    (lambda p: _edit_json(p, lambda d: d.update(format="jaxmsk-cohort/9")),
     r"cohort\.json has format 'jaxmsk-cohort/9', expected 'jaxmsk-cohort/1'"),
    (lambda p: _edit_json(p, lambda d: d.pop("trial_names")),
     r"cohort\.json lacks \['trial_names'\]"),
    (lambda p: _rewrite_npz(p, q=np.zeros((2, 3, 10, 1))),
     r"arrays\.npz\['q'\] has shape \(2, 3, 10, 1\).*cohort\.json says \(2, 3, 11, 1\)"),
    (lambda p: _rewrite_npz(p, emg=np.zeros((2, 3, 201, 5))),  # float64 where float32 was saved
     r"arrays\.npz\['emg'\] has shape \(2, 3, 201, 5\) and dtype <f8, but .* <f4"),
    (lambda p: _rewrite_npz(p, extra=np.zeros(3)), r"present but unlisted \['extra'\]"),
    # Consistent with cohort.json but not with the other arrays: one trial too few.
    (lambda p: (_rewrite_npz(p, moments=np.zeros((2, 2, 11, 1))), _edit_json(
        p, lambda d: d["arrays"]["moments"].update(shape=[2, 2, 11, 1]))),
     r"moments has shape \(2, 2, 11, 1\), expected \(2, 3, 11, 1\)"),
])
def test_load_reports_damage_clearly(tmp_path, cohort, damage, message):
    path = tmp_path / "cohort"
    save_cohort(path, cohort)
    damage(path)
    with pytest.raises(ValueError, match=message) as info:
        load_cohort(path)
    assert os.fspath(path) in str(info.value)


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_cohort(tmp_path / "nope")


# 2. Checkpoints.

def _mlp(seed, width=4, dtype=None, *, abstract=False):
    """An MLP 2 -> 3 with two hidden layers; weights from NumPy (initialising with jax.random
    costs seconds of compilation); `abstract`: ShapeDtypeStructs, as eqx.filter_eval_shape."""
    shapes = eqx.filter_eval_shape(eqx.nn.MLP, 2, 3, width, 2, key=jax.random.key(0), dtype=dtype)
    if abstract:
        return shapes
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype)
                        if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)


def test_checkpoint_round_trip_mlp(tmp_path):
    net = _mlp(0)
    path = os.fspath(tmp_path / "ckpt.eqx")
    meta = {"step": 100, "loss": jnp.asarray(0.25), "optimiser": {"lr": 1e-3, "name": "adam"}}
    assert save_checkpoint(path, net, metadata=meta) == path
    like = _mlp(1)
    assert not np.array_equal(like.layers[0].weight, net.layers[0].weight)
    loaded, metadata = load_checkpoint(path, like)
    _assert_same_tree(net, loaded)
    assert metadata == {"step": 100, "loss": 0.25, "optimiser": {"lr": 1e-3, "name": "adam"}}
    sidecar = json.loads(open(path + ".json").read())
    assert sidecar["jaxmsk_version"] == jaxmsk.__version__ and len(sidecar["fingerprint"]) == 64
    assert sorted(os.listdir(tmp_path)) == ["ckpt.eqx", "ckpt.eqx.json"]


def test_checkpoint_round_trip_model(tmp_path):
    model = jaxmsk.models.wrist()
    like = jax.tree.map(lambda x: 2.0 * x if eqx.is_inexact_array(x) else x, model)
    path = save_checkpoint(tmp_path / "model.eqx", model, metadata={"step": 1})
    loaded, metadata = load_checkpoint(path, like)
    _assert_same_tree(model, loaded)
    assert metadata == {"step": 1}


def test_checkpoint_structure_mismatch(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.eqx", _mlp(0, width=4))
    with pytest.raises(ValueError, match=r"(?s)different model/network structure.*"
                       r"\.layers\[0\]\.weight: stored \(4, 2\) float64, expected \(8, 2\)"):
        load_checkpoint(path, _mlp(0, width=8))
    with pytest.raises(ValueError, match=r"\.layers\[0\]\.bias: stored \(4,\) float64, expected "
                       r"\(4,\) float32"):
        load_checkpoint(path, _mlp(0, dtype=jnp.float32, abstract=True))
    with pytest.raises(ValueError, match=r"(?s)6 leaves stored, 8 expected\n  \[0\]\.layers\[0\]"
                       r"\.weight: not in the checkpoint, expected \(4, 2\) float64.* and 10 more"):
        load_checkpoint(path, (_mlp(0), _mlp(0).layers[0]))
    with pytest.raises(ValueError, match="different model/network structure"):
        load_checkpoint(path, jaxmsk.models.wrist())
    # An abstract `like` of the right structure loads.
    _assert_same_tree(_mlp(0), load_checkpoint(path, _mlp(5, abstract=True))[0])


def test_checkpoint_no_overwrite_then_overwrite(tmp_path):
    path = os.fspath(tmp_path / "ckpt.eqx")
    save_checkpoint(path, _mlp(0), metadata={"step": 1})
    before = _snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="ckpt.eqx exists; pass overwrite=True"):
        save_checkpoint(path, _mlp(1), metadata={"step": 2})
    assert _snapshot(tmp_path) == before
    save_checkpoint(path, _mlp(1), metadata={"step": 2}, overwrite=True)
    loaded, metadata = load_checkpoint(path, _mlp(0))
    _assert_same_tree(_mlp(1), loaded)
    assert metadata == {"step": 2}
    assert sorted(os.listdir(tmp_path)) == ["ckpt.eqx", "ckpt.eqx.json"]


def test_checkpoint_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(eqx, "tree_serialise_leaves", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt.eqx", _mlp(0), metadata={"step": 1})
    assert os.listdir(tmp_path) == []


def test_checkpoint_leaves_not_matching_sidecar(tmp_path):
    """An overwrite interrupted after the new sidecar but before the new leaves."""
    a = save_checkpoint(tmp_path / "a.eqx", _mlp(0), metadata={"step": 1})
    b = save_checkpoint(tmp_path / "b.eqx", _mlp(1), metadata={"step": 2})
    os.replace(a, b)
    with pytest.raises(ValueError, match=r"b\.eqx does not match its sidecar"):
        load_checkpoint(b, _mlp(0))
    assert latest_checkpoint(tmp_path) is None  # a.eqx lost its leaves, b.eqx is inconsistent
    with pytest.raises(ValueError, match="has no sidecar"):
        os.remove(b + ".json")
        load_checkpoint(b, _mlp(0))


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for step in (10, 7, 2):  # the highest step is written first, so it is not the newest file
        save_checkpoint(tmp_path / f"ckpt_{step}.eqx", _mlp(step), metadata={"step": step})
    eqx.tree_serialise_leaves(tmp_path / "raw.eqx", _mlp(0))  # no sidecar: not ours
    assert latest_checkpoint(tmp_path) == os.fspath(tmp_path / "ckpt_10.eqx")
    # A newer step whose leaves file is damaged is skipped.
    broken = save_checkpoint(tmp_path / "ckpt_20.eqx", _mlp(20), metadata={"step": 20})
    _truncate(tmp_path / "ckpt_20.eqx")
    assert latest_checkpoint(tmp_path) == os.fspath(tmp_path / "ckpt_10.eqx")
    os.remove(broken)
    os.remove(broken + ".json")
    save_checkpoint(tmp_path / "ckpt_30.eqx", _mlp(30), metadata={"step": 30})
    path = latest_checkpoint(tmp_path)
    assert path == os.fspath(tmp_path / "ckpt_30.eqx")
    assert load_checkpoint(path, _mlp(0))[1] == {"step": 30}
    single_digit = latest_checkpoint(tmp_path, pattern="ckpt_[0-9].eqx")
    assert single_digit == os.fspath(tmp_path / "ckpt_7.eqx")
