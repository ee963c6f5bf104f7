"""De Groote–Fregly 2016 curves: live OpenSim parity, defining properties, gradients."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CURVE_ABS, import_opensim
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxmsk as msk

osim = import_opensim()


def _osim_muscle(width_scale=1.0, passive_strain=0.6, tendon_strain=0.049):
    m = osim.DeGrooteFregly2016Muscle()
    m.set_active_force_width_scale(width_scale)
    m.set_passive_fiber_strain_at_one_norm_force(passive_strain)
    m.set_tendon_strain_at_one_norm_force(tendon_strain)
    m.finalizeFromProperties()  # recomputes kT from the tendon strain
    return m


def _compare(ours, theirs, grid):
    ours = np.asarray(ours(jnp.asarray(grid)))
    theirs = np.array([theirs(float(x)) for x in grid])
    err = np.max(np.abs(ours - theirs))
    assert err < CURVE_ABS, err
    return err


@pytest.mark.parametrize("width_scale", [1.0, 1.7])
def test_active_force_length_matches_opensim(width_scale):
    ours = msk.DeGrooteCurves.opensim(active_force_width_scale=width_scale)
    theirs = _osim_muscle(width_scale=width_scale)
    _compare(ours.active_force_length, theirs.calcActiveForceLengthMultiplier,
             np.linspace(0.0, 2.0, 2001))


@pytest.mark.parametrize("strain", [0.6, 0.45])
def test_passive_force_length_matches_opensim(strain):
    ours = msk.DeGrooteCurves.opensim(passive_fiber_strain_at_one_norm_force=strain)
    theirs = _osim_muscle(passive_strain=strain)
    _compare(ours.passive_force_length, theirs.calcPassiveForceMultiplier,
             np.linspace(0.0, 2.0, 2001))


def test_force_velocity_and_inverse_match_opensim():
    ours, theirs = msk.DeGrooteCurves.opensim(), _osim_muscle()
    _compare(ours.force_velocity, theirs.calcForceVelocityMultiplier, np.linspace(-1.2, 1.2, 2001))
    _compare(ours.force_velocity_inverse, theirs.calcForceVelocityInverseCurve,
             np.linspace(0.0, 1.7943429636, 2001))


@pytest.mark.parametrize("strain", [0.049, 0.1])
def test_tendon_curve_and_inverse_match_opensim(strain):
    ours = msk.DeGrooteCurves.opensim(tendon_strain_at_one_norm_force=strain)
    theirs = _osim_muscle(tendon_strain=strain)
    _compare(ours.tendon_force_length, theirs.calcTendonForceMultiplier,
             np.linspace(0.95, 1.0 + 1.6 * strain, 2001))
    _compare(ours.tendon_force_length_derivative, theirs.calcTendonForceMultiplierDerivative,
             np.linspace(0.95, 1.0 + 1.6 * strain, 501))
    _compare(ours.tendon_force_length_inverse, theirs.calcTendonForceLengthInverseCurve,
             np.linspace(0.0, 5.0, 2001))


def test_reference_table_values():
    """Values computed by OpenSim 4.6 (`opensim` on PyPI), recorded here as numbers."""
    c = msk.DeGrooteCurves.opensim()
    table = [
        (c.active_force_length, 0.6, 0.3021030656), (c.active_force_length, 1.4, 0.3802428538),
        (c.passive_force_length, 0.6, 0.0011843115), (c.passive_force_length, 1.0, 0.0182288238),
        (c.passive_force_length, 1.4, 0.2635320145), (c.force_velocity, -0.5, 0.2340363935),
        (c.force_velocity, 0.1, 1.2065086713), (c.force_velocity, 1.0, 1.7943429636),
        (c.tendon_force_length, 1.01, 0.0882945107), (c.tendon_force_length, 1.033, 0.4684840382),
        (c.tendon_force_length, 1.05, 1.0446919587),
    ]
    for fn, x, want in table:
        assert abs(float(fn(x)) - want) < 1e-9


def test_defining_properties_and_kt():
    c = msk.DeGrooteCurves.opensim()
    assert float(c.active_force_length(1.0)) == pytest.approx(1.0, abs=1e-14)
    assert float(c.force_velocity(0.0)) == pytest.approx(1.0, abs=1e-14)
    assert float(c.force_velocity(-1.0)) == pytest.approx(0.0, abs=1e-14)
    assert float(c.passive_force_length(0.2)) == pytest.approx(0.0, abs=1e-14)
    assert float(c.tendon_force_length(1.049)) == pytest.approx(1.0, abs=1e-12)
    assert c.kt == pytest.approx(math.log(6.0) / 0.049)
    p = msk.DeGrooteCurves.published()
    assert p.kt == 35.0 and p.c2 == 0.995 and p.c3 == 0.25 and p.d4 == 0.886
    assert float(p.passive_force_length(1.0)) == pytest.approx(0.0, abs=1e-14)
    assert float(p.passive_force_length(0.9)) < 0.0  # the paper's curve goes negative
    # Published and OpenSim curves differ by their rounding only.
    v = jnp.linspace(-1, 1, 101)
    assert float(jnp.max(jnp.abs(p.force_velocity(v) - c.force_velocity(v)))) < 0.02


def test_curves_are_frozen_hashable_and_validated():
    c = msk.DeGrooteCurves.opensim()
    assert hash(c) == hash(msk.DeGrooteCurves.opensim())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.kt = 1.0
    with pytest.raises(ValueError, match="active_force_width_scale"):
        msk.DeGrooteCurves.opensim(active_force_width_scale=0.5)
    with pytest.raises(ValueError, match="f_v\\(0\\) = 1"):
        dataclasses.replace(c, d4=0.9)
    with pytest.raises(ValueError, match="12 constants"):
        dataclasses.replace(c, active_fl=(1.0, 2.0))


def _all_curves(c):
    return [c.active_force_length, c.passive_force_length, c.force_velocity,
            c.force_velocity_inverse, c.tendon_force_length, c.tendon_force_length_inverse]


@pytest.mark.parametrize("variant", ["opensim", "published"])
def test_curve_gradients_check_grads(variant):
    c = getattr(msk.DeGrooteCurves, variant)()
    points = [jnp.array([0.5, 0.9, 1.3]), jnp.array([0.5, 1.0, 1.5]), jnp.array([-0.7, 0.0, 0.6]),
              jnp.array([0.2, 1.0, 1.6]), jnp.array([1.0, 1.02, 1.04]), jnp.array([0.1, 1.0, 3.0])]
    for fn, x in zip(_all_curves(c), points):
        check_grads(fn, (x,), order=1, modes=("fwd", "rev"), eps=1e-6)


def test_active_curve_finite_gradient_at_its_singular_point():
    """The second Gaussian term's denominator b32 + b42·x vanishes at x ≈ 0.1495."""
    c = msk.DeGrooteCurves.opensim()
    b32, b42 = c.active_fl[6], c.active_fl[7]
    x0 = -b32 / b42
    xs = jnp.array([x0, np.nextafter(x0, 1.0), np.nextafter(x0, 0.0), 0.0, 0.2, 1.8, 2.0])
    g = jax.vmap(jax.grad(c.active_force_length))(xs)
    h = jax.vmap(jax.grad(jax.grad(c.active_force_length)))(xs)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))


@jax.jit
def _curves_values_and_grads(args):
    c = msk.DeGrooteCurves.opensim()
    return [jax.value_and_grad(fn)(x) for fn, x in zip(_all_curves(c), args)]


@settings(max_examples=200, deadline=None)
@given(l=st.floats(0.0, 2.0), v=st.floats(-1.0, 1.0), lt=st.floats(0.9, 1.1),
       ft=st.floats(0.0, 5.0), fv=st.floats(0.0, 1.7943429636))
def test_curves_finite_values_and_gradients_over_domain(l, v, lt, ft, fv):
    args = [jnp.float64(x) for x in (l, l, v, fv, lt, ft)]
    for val, grad in _curves_values_and_grads(args):
        assert np.isfinite(val) and np.isfinite(grad)


def test_curves_jit_vmap_parity():
    c = msk.DeGrooteCurves.opensim()
    x = jnp.linspace(0.3, 1.7, 64)
    for fn in _all_curves(c):
        np.testing.assert_allclose(jax.jit(fn)(x), fn(x), rtol=1e-14)
        np.testing.assert_allclose(jax.vmap(fn)(x), fn(x), rtol=1e-14)
