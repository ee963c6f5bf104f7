"""load_osim on arm26 (live OpenSim) and the JSON model format."""

import os
import re
import warnings
from importlib.util import find_spec

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import import_opensim

import jaxmsk as msk

osim = import_opensim()


def arm26_path():
    spec = find_spec("osim")
    if spec is None:  # the tests never skip: install it as README says
        raise RuntimeError("arm26.osim comes from osim-rl: pip install --no-deps osim-rl==3.0.11")
    return os.path.join(spec.submodule_search_locations[0], "models", "arm26.osim")


@pytest.fixture(scope="module")
def arm26_and_warnings():
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        model = msk.load_osim(arm26_path())
    return model, [str(w.message) for w in said if issubclass(w.category, RuntimeWarning)]


@pytest.fixture(scope="module")
def arm26(arm26_and_warnings):
    return arm26_and_warnings[0]


def test_load_osim_warns_about_paths_it_cannot_follow(arm26_and_warnings):
    """arm26 over the file's full ranges: TRIlong's wrapped path jumps near the top of the
    shoulder range (OpenSim confirms it: the length moves by more than a millimetre over
    2e-5 rad there) and BIClong's kinks; both fits miss by more than 1 mm, and the warning
    names them, with the jump."""
    model, said = arm26_and_warnings
    assert len(said) == 1, said
    err = dict(zip(model.muscle_names, np.maximum(np.asarray(model.path.fit_max),
                                                  np.asarray(model.path.fit_moment_arm_max))))
    named = {m for m in model.muscle_names if f"{m} " in said[0].split("OpenSim's own")[0]}
    assert named == {m for m, e in err.items() if e > 1e-3} and {"TRIlong", "BIClong"} <= named
    jump = re.search(r"OpenSim's own lengths jump .* for TRIlong (\d+\.\d) mm at "
                     r"r_shoulder_elev = (-?\d+\.\d+)", said[0])
    assert jump, said[0]
    at = float(jump.group(2))
    ref = osim.Model(arm26_path())
    state = ref.initSystem()
    lengths = []
    for q in (at - 2e-3, at + 2e-3):  # (printed to 1e-3: the jump lies within ±5e-4)
        ref.getCoordinateSet().get("r_shoulder_elev").setValue(state, q)
        ref.realizePosition(state)
        lengths.append(ref.getMuscles().get("TRIlong").getLength(state))
    assert abs(lengths[1] - lengths[0]) * 1e3 > 0.5 * float(jump.group(1))


def test_load_osim_reads_arm26(arm26):
    m = arm26
    assert m.muscle_names == ("TRIlong", "TRIlat", "TRImed", "BIClong", "BICshort", "BRA")
    assert m.coordinate_names == ("r_shoulder_elev", "r_elbow_flex")
    ref = osim.Model(arm26_path())
    ref.initSystem()
    for i, name in enumerate(m.muscle_names):
        mus = ref.getMuscles().get(name)
        assert float(m.muscles.params.max_isometric_force[i]) == mus.getMaxIsometricForce()
        assert float(m.muscles.params.optimal_fiber_length[i]) == mus.getOptimalFiberLength()
        assert float(m.muscles.params.tendon_slack_length[i]) == mus.getTendonSlackLength()
    # The fit's held-out errors are reported per muscle, and the degree was chosen.
    assert len(m.path.fit_rms) == 6 and 1 <= m.path.degree <= 10
    # Moment arms from the polynomial vs OpenSim's computeMomentArm at a mid-range pose.
    state = ref.initSystem()
    q = np.array([0.4, 1.0])
    for c, v in zip(m.coordinate_names, q):
        ref.getCoordinateSet().get(c).setValue(state, float(v))
    ref.realizePosition(state)
    r = np.asarray(m.path.moment_arms(jnp.asarray(q)))
    elbow = ref.getCoordinateSet().get("r_elbow_flex")
    theirs = [ref.getMuscles().get(n).computeMomentArm(state, elbow) for n in m.muscle_names]
    np.testing.assert_allclose(r[:, 1], theirs, atol=2e-3)


def test_load_osim_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        msk.load_osim(tmp_path / "missing.osim")
    with pytest.raises(ValueError, match="not in"):
        msk.load_osim(arm26_path(), muscles=["NOPE"])
    with pytest.raises(ValueError, match="not among the loaded coordinates"):
        msk.load_osim(arm26_path(), ranges={"nope": (0.0, 1.0)})
    with pytest.raises(ValueError, match="min < max"):
        msk.load_osim(arm26_path(), ranges={"r_elbow_flex": (1.0, 0.5)})


def test_model_json_round_trip_is_exact(arm26, tmp_path):
    path = tmp_path / "arm26.json"
    msk.models.save_model_json(path, arm26, source="arm26.osim")
    back = msk.models.load_model_json(path)
    for a, b in zip(jax.tree_util.tree_leaves(arm26), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert back.muscle_names == arm26.muscle_names and back.path.exponents == arm26.path.exponents
    with pytest.raises(FileExistsError, match="overwrite=True"):
        msk.models.save_model_json(path, arm26)
    q = jnp.array([0.3, 0.8])
    np.testing.assert_array_equal(back.path.length(q), arm26.path.length(q))


def test_model_json_of_0_1_0_with_private_class_paths_still_loads(tmp_path):
    """Files written before 0.2.0 name classes by their private modules (which moved);
    they load to the same model. A name outside jaxmsk is refused."""
    text = (tmp_path / "new.json")
    msk.models.save_model_json(text, msk.models.wrist())
    old = text.read_text()
    for new, legacy in (("jaxmsk.Model", "jaxmsk._model.Model"),
                        ("jaxmsk.muscle.DeGrooteActivation",
                         "jaxmsk.muscle._activation.DeGrooteActivation"),
                        ("jaxmsk.muscle.DeGrooteFregly2016Muscle",
                         "jaxmsk.muscle._hill.DeGrooteFregly2016Muscle"),
                        ("jaxmsk.muscle.MuscleParameters", "jaxmsk.muscle._hill.MuscleParameters"),
                        ("jaxmsk.skeleton.Hinge", "jaxmsk.skeleton._hinge.Hinge")):
        assert f'"{new}"' in old, new
        old = old.replace(f'"{new}"', f'"{legacy}"')
    legacy_file = tmp_path / "legacy.json"
    legacy_file.write_text(old)
    back = msk.models.load_model_json(legacy_file)
    for a, b in zip(jax.tree_util.tree_leaves(msk.models.wrist()), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert type(back.muscles) is msk.DeGrooteFregly2016Muscle
    (tmp_path / "bad.json").write_text(old.replace('"jaxmsk.skeleton._hinge.Hinge"',
                                                   '"os.path.join"'))
    with pytest.raises(ValueError, match="outside jaxmsk"):
        msk.models.load_model_json(tmp_path / "bad.json")


def test_polynomial_fit_leaves_out_jumps_and_recovers_polynomials():
    rng = np.random.default_rng(0)
    q = rng.uniform(-1.0, 1.0, (400, 2))
    truth = np.stack([0.3 + 0.02 * q[:, 0] - 0.01 * q[:, 0] * q[:, 1] ** 2,
                      0.25 + 0.015 * q[:, 1] ** 3], axis=1)
    lengths = truth.copy()
    lengths[7, 0] += 0.09  # a sample where the sampled path jumped (as arm26's BIClong does)
    path = msk.PolynomialPath.fit(q, lengths, max_degree=5)
    assert path.fit_outliers == 1
    pred = np.asarray(jax.vmap(path.length)(jnp.asarray(q)))
    np.testing.assert_allclose(pred, truth, atol=1e-10)
    assert max(path.fit_max) < 1e-10
    naive = msk.PolynomialPath.fit(q, lengths, max_degree=5, robust=False)
    assert naive.fit_outliers == 0 and max(naive.fit_max) > 1e-3


def test_polynomial_fit_with_moment_arms_is_exact_and_reports_their_error():
    rng = np.random.default_rng(1)
    q = rng.uniform(-1.0, 1.0, (300, 2))
    lengths = np.stack([0.3 + 0.02 * q[:, 0] - 0.01 * q[:, 0] * q[:, 1] ** 2,
                        0.25 + 0.015 * q[:, 1] ** 3], axis=1)
    arms = -np.stack([np.stack([0.02 - 0.01 * q[:, 1] ** 2, -0.02 * q[:, 0] * q[:, 1]], 1),
                      np.stack([0 * q[:, 0], 0.045 * q[:, 1] ** 2], 1)], axis=1)
    arms[5, 1, 0] = np.nan  # OpenSim returns NaN where a wrap fails: that entry is left out
    path = msk.PolynomialPath.fit(q, lengths, arms, max_degree=4, ranges=[[-1, 1], [-1, 1]])
    r = np.asarray(jax.vmap(path.moment_arms)(jnp.asarray(q)))
    ok = np.isfinite(arms)
    np.testing.assert_allclose(r[ok], arms[ok], atol=1e-12)
    assert len(path.fit_moment_arm_rms) == 2 and max(path.fit_moment_arm_max) < 1e-12
    # The raw-coordinate form (OpenSim's MultivariatePolynomialFunction order) is the same
    # polynomial.
    raw = path.in_raw_coordinates()
    np.testing.assert_allclose(jax.vmap(raw.length)(jnp.asarray(q)), lengths, atol=1e-12)
    assert raw.exponents[:3] == ((0, 0), (0, 1), (0, 2))
    with pytest.raises(ValueError, match="moment_arms has shape"):
        msk.PolynomialPath.fit(q, lengths, arms[:, :1])


@pytest.mark.parametrize("n_dofs, degree", [(1, 6), (2, 10), (3, 5), (4, 8)])
def test_length_and_moment_arms_equal_length_and_its_jacobian(n_dofs, degree):
    """Both forms of the one-pass path evaluation: a dense coefficient tensor (used while it
    has at most DENSE_MAX_ENTRIES entries: 7, 121, 216 here) and the monomial gather (4 DoFs
    of degree 8: 9⁴ = 6561 entries), against `length` and −jax.jacfwd(`length`)."""
    from jaxmsk.skeleton._path import DENSE_MAX_ENTRIES, monomial_exponents

    rng = np.random.default_rng(n_dofs)
    exps = monomial_exponents(n_dofs, degree)
    path = msk.PolynomialPath(coefficients=jnp.asarray(rng.normal(0, 0.01, (3, len(exps)))),
                              centre=jnp.asarray(rng.uniform(-0.5, 0.5, n_dofs)),
                              scale=jnp.asarray(rng.uniform(0.5, 2.0, n_dofs)), exponents=exps)
    dense = (degree + 1) ** n_dofs <= DENSE_MAX_ENTRIES
    assert dense == (n_dofs < 4)
    q = jnp.asarray(rng.uniform(-1.5, 1.5, (20, n_dofs)))
    q = q.at[0].set(path.centre)  # x = 0 exactly: the powers' derivatives stay finite
    length, arms = jax.jit(jax.vmap(path.length_and_moment_arms))(q)
    np.testing.assert_allclose(length, jax.vmap(path.length)(q), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(arms, jax.vmap(path.moment_arms)(q), rtol=1e-10, atol=1e-14)
    grad = jax.grad(lambda c: jnp.sum(jax.vmap(
        lambda x: msk.PolynomialPath(c, path.centre, path.scale, exps)
        .length_and_moment_arms(x)[1])(q) ** 2))(path.coefficients)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_path_domain_is_recorded_by_fits_and_files():
    from jaxmsk.skeleton import PolynomialPath

    rng = np.random.default_rng(0)
    q = rng.uniform(-1, 1, (200, 2))
    path = PolynomialPath.fit(q, (q[:, :1] ** 2 + q[:, 1:]), max_degree=3,
                              ranges=np.array([[-1.0, 1.0], [-0.5, 1.5]]))
    assert path.domain == ((-1.0, 1.0), (-0.5, 1.5))
    assert PolynomialPath.from_dict(path.to_dict()).domain == path.domain
    assert path.in_raw_coordinates().domain == path.domain
    inside, outside = np.array([0.0, 1.0]), np.array([1.2, -0.7])
    np.testing.assert_array_equal(path.outside_domain(np.stack([inside, outside])),
                                  [False, True])
    np.testing.assert_allclose(path.domain_excursion(np.stack([inside, outside])), [0.2, 0.2])
    with pytest.raises(ValueError, match="domain must be 2 .min, max. pairs"):
        PolynomialPath(coefficients=path.coefficients, centre=path.centre, scale=path.scale,
                       exponents=path.exponents, domain=((1.0, 0.0), (0.0, 1.0)))
