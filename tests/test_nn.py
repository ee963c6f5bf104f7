"""jaxmsk.nn: shapes, causal alignment, filter specs for head-only transfer, jit/vmap/grad,
the Flax NNX adapter, and bad-input errors."""

from __future__ import annotations

import equinox as eqx
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmsk import nn

N_IN, N_OUT, T = 5, 3, 100
# Networks are initialised with the "rbg" PRNG: equinox's initialisers draw with
# jax.random.uniform, whose default threefry implementation takes seconds to compile per
# weight shape on CPU (the whole suite would spend most of its time there).
KEY = jax.random.key(0, impl="rbg")


def _nnx_model():
    return nn.NNXConvNet(N_IN, N_OUT, channels=(8, 8), kernel_sizes=(6, 5),
                         param_dtype=jnp.float64, rngs=nnx.Rngs(KEY))


# Small networks keep compilation short; the defaults are checked abstractly below.
BUILDERS = {
    "CNN": lambda: nn.CNN(N_IN, N_OUT, channels=(8, 8), kernel_sizes=(5, 4), head_width=16,
                          key=KEY),
    "TCN": lambda: nn.TCN(N_IN, N_OUT, channels=8, dilations=(1, 2, 4), head_width=16,
                          key=KEY),
    "GRU": lambda: nn.GRU(N_IN, N_OUT, hidden_size=8, window=8, head_width=16, key=KEY),
    "MLP": lambda: nn.MLP(N_IN, N_OUT, window=6, width=16, head_width=16, key=KEY),
    "NNX": lambda: nn.NNXRegressor(_nnx_model(), n_inputs=N_IN),
}
NAMES = list(BUILDERS)
_CACHE: dict = {}


def build(name):
    if name not in _CACHE:
        _CACHE[name] = BUILDERS[name]()
    return _CACHE[name]


# Test data and checks use NumPy: every eager jnp op on a new shape is one more compilation.
def emg(key=1, time=T, batch=()):
    return np.random.default_rng(key).uniform(size=batch + (time, N_IN))


def _inexact_leaves(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))


@eqx.filter_jit
def apply(net, x):
    return net(x)


@eqx.filter_jit
def batched_loss_and_grad(net, x, y):
    """Outputs of `jax.vmap(net)`, MSE loss and its gradient w.r.t. the whole network."""

    def loss_fn(m):
        out = jax.vmap(m)(x)
        return jnp.mean((out - y) ** 2), out

    (loss, out), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(net)
    return out, loss, grads


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name):
    net = build(name)
    out = apply(net, emg())
    assert out.shape == (T - net.receptive_field + 1, N_OUT)
    assert np.all(np.isfinite(out))


def _abstract(cls, **kw):
    return eqx.filter_eval_shape(lambda: cls(N_IN, 6, key=jax.random.key(0), **kw))


def test_defaults_receptive_fields_and_sizes():
    # ~0.3 s at 100 Hz, as documented; no initialisation needed (abstract networks).
    cnn = _abstract(nn.CNN)
    assert cnn.receptive_field == 32
    assert _abstract(nn.TCN).receptive_field == 31
    assert _abstract(nn.GRU).receptive_field == 32
    assert _abstract(nn.MLP).receptive_field == 32
    assert build("NNX").receptive_field == 1 + 5 + 4
    # conv 5→32 k12, 32→32 k11 (twice), head MLP 32→64→6.
    expected = (5 * 32 * 12 + 32) + 2 * (32 * 32 * 11 + 32) + (32 * 64 + 64) + (64 * 6 + 6)
    assert nn.count_parameters(cnn) == expected
    # GRU: 3 gates of input (5) and hidden (32) weights, a bias for the 3 gates and the
    # candidate's separate hidden-side bias (equinox's GRUCell layout).
    gru = _abstract(nn.GRU)
    assert nn.count_parameters(gru.features) == 3 * 32 * (5 + 32) + 3 * 32 + 32


def _dependency(net, x):
    """Boolean (time_out, time): does output k depend on input sample j?"""
    jac = eqx.filter_jit(jax.jacrev(lambda e: net(e).sum(axis=1)))(x)  # (out, time, chan)
    return np.any(np.asarray(jac) != 0, axis=-1)


def _window_mask(net, time):
    k = np.arange(time - net.receptive_field + 1)[:, None]
    j = np.arange(time)[None, :]
    return (k <= j) & (j <= k + net.receptive_field - 1)


@pytest.mark.parametrize("name", ["CNN", "TCN"])
def test_convolutions_depend_exactly_on_their_window(name):
    net = build(name)
    x = emg(time=60)
    np.testing.assert_array_equal(_dependency(net, x), _window_mask(net, 60))


def _perturbation_dependency(net, x):
    """Boolean (time_out, time): does perturbing input sample j change output k?"""
    y0 = np.asarray(apply(net, x))
    dep = np.zeros((y0.shape[0], x.shape[0]), dtype=bool)
    for j in range(x.shape[0]):
        xj = x.copy()
        xj[j] += 0.5
        dep[:, j] = np.any(np.asarray(apply(net, xj)) != y0, axis=1)
    return dep


@pytest.mark.parametrize("name", ["MLP", "NNX"])
def test_windowed_networks_depend_exactly_on_their_window(name):
    net = build(name)
    np.testing.assert_array_equal(_perturbation_dependency(net, emg()), _window_mask(net, T))


def test_gru_is_causal_and_sees_the_whole_past():
    net = build("GRU")
    dep = _perturbation_dependency(net, emg())
    k = np.arange(dep.shape[0])[:, None]
    j = np.arange(T)[None, :]
    future = j > k + net.receptive_field - 1
    assert not dep[future].any()  # no effect on earlier outputs (bit-identical)
    # ... but on the past beyond the window (here the 10 samples before it; much older
    # inputs' influence decays below float64 resolution, so it is not bit-detectable).
    window = _window_mask(net, T)
    assert dep[window].all()
    for kk in range(10, dep.shape[0]):
        assert dep[kk, kk - 10:kk].all()


@pytest.mark.parametrize("name", NAMES)
def test_filters_partition_head_and_features(name):
    net = build(name)
    head_spec, feat_spec = nn.head_filter(net), nn.features_filter(net)
    trainable, frozen = eqx.partition(net, head_spec)
    head_ids = {id(a) for a in _inexact_leaves(net.head)}
    assert head_ids
    assert {id(a) for a in _inexact_leaves(trainable)} == head_ids
    assert not head_ids & {id(a) for a in _inexact_leaves(frozen)}
    # Complement: every parameter is in exactly one part.
    is_arr = jax.tree.map(eqx.is_inexact_array, net)
    for h, f, a in zip(jax.tree.leaves(head_spec), jax.tree.leaves(feat_spec),
                       jax.tree.leaves(is_arr), strict=True):
        assert (h or f) == a and not (h and f)
    total = nn.count_parameters(net)
    assert total == nn.count_parameters(net.head) + nn.count_parameters(net.features)
    assert nn.count_parameters(net.head) > 0 and nn.count_parameters(net.features) > 0


def _toy_data(net):
    x = emg(key=2, batch=(4,))
    rf = net.receptive_field
    # Targets on the output grid: smooth functions of the current EMG.
    mix = np.random.default_rng(3).normal(size=(N_IN, N_OUT))
    y = np.tanh(x[:, rf - 1:] @ mix)
    return x, y


def _assert_features_frozen_head_changed(before, after):
    for a, b in zip(_inexact_leaves(before.features), _inexact_leaves(after.features),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(_inexact_leaves(before.head), _inexact_leaves(after.head), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_head_only_training_freezes_features(name):
    net = build(name)
    x, y = _toy_data(net)
    spec = nn.head_filter(net)
    trainable, frozen = eqx.partition(net, spec)
    opt = optax.adam(1e-2)
    opt_state = eqx.filter_jit(opt.init)(trainable)

    @eqx.filter_jit
    def update(grads, opt_state, tr):
        updates, opt_state = opt.update(grads, opt_state, tr)
        return eqx.apply_updates(tr, updates), opt_state

    losses = []
    for _ in range(26):
        # Gradient w.r.t. the whole network (shares its compilation with test_jit_vmap_grad),
        # of which only the head part is kept: the same as differentiating `trainable`.
        _, loss, grads = batched_loss_and_grad(eqx.combine(trainable, frozen), x, y)
        trainable, opt_state = update(eqx.partition(grads, spec)[0], opt_state, trainable)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    _assert_features_frozen_head_changed(net, eqx.combine(trainable, frozen))


def test_head_only_with_multi_transform():
    net = build("CNN")
    x, y = _toy_data(net)
    labels = jax.tree.map(lambda h: "head" if h else "frozen", nn.head_filter(net))
    # `labels` is a (callable) module: wrap it, or optax would call it on the parameters.
    opt = optax.multi_transform({"head": optax.sgd(1e-1), "frozen": optax.set_to_zero()},
                                lambda _: labels)
    params = eqx.filter(net, eqx.is_inexact_array)
    _, _, grads = batched_loss_and_grad(net, x, y)
    updates, _ = eqx.filter_jit(lambda g, p: opt.update(g, opt.init(p), p))(grads, params)
    _assert_features_frozen_head_changed(net, eqx.apply_updates(net, updates))


@pytest.mark.parametrize("name", NAMES)
def test_jit_vmap_grad(name):
    net = build(name)
    x, y = _toy_data(net)
    out, loss, grads = batched_loss_and_grad(net, x, y)
    assert out.shape == (4, T - net.receptive_field + 1, N_OUT)
    for i in range(x.shape[0]):  # vmap under jit == one sequence at a time
        np.testing.assert_allclose(out[i], apply(net, x[i]), rtol=1e-10, atol=1e-12)
    leaves = _inexact_leaves(grads)
    assert len(leaves) == len(_inexact_leaves(net)) and np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.any(np.asarray(g) != 0) for g in leaves)


nnx_apply = nnx.jit(lambda m, x: m(x))


def test_nnx_adapter_matches_module_and_its_gradients():
    model = _nnx_model()
    net = nn.NNXRegressor(model, n_inputs=N_IN)
    x = emg(key=5)
    np.testing.assert_allclose(apply(net, x), nnx_apply(model, x), rtol=1e-12, atol=1e-14)
    assert net.n_outputs == N_OUT

    # Gradient through the adapter equals the gradient of the functional NNX model.
    graphdef, feats = nnx.graphdef(model.head), nnx.jit(lambda f, x: f(x))(model.features, x)

    @jax.jit
    def nnx_grad(head_state):
        return jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, s)(feats) ** 2))(head_state)

    g_ref = nnx_grad(nnx.state(model.head))
    g = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m(x) ** 2)))(net)
    for a, b in zip(jax.tree.leaves(g.head.state), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

    # Parameters written back into the NNX model reproduce the adapter.
    shifted = jax.tree.map(lambda a: np.asarray(a) + 0.1, net)
    fresh = shifted.write_to(_nnx_model())
    np.testing.assert_allclose(nnx_apply(fresh, x), apply(shifted, x), rtol=1e-12, atol=1e-14)
    assert not np.allclose(nnx_apply(fresh, x), nnx_apply(model, x))


def test_nnx_adapter_bad_models():
    model = _nnx_model()
    with pytest.raises(ValueError, match="receptive_field=12"):
        nn.NNXRegressor(model, n_inputs=N_IN, receptive_field=12)

    class NoHead(nnx.Module):
        def __init__(self):
            self.features = nnx.Linear(N_IN, 2, rngs=nnx.Rngs(KEY))

    with pytest.raises(ValueError, match="`head`"):
        nn.NNXRegressor(NoHead(), n_inputs=N_IN, receptive_field=1)


@pytest.mark.parametrize("name", ["CNN", "NNX"])
def test_bad_input_errors(name):
    net = build(name)
    with pytest.raises(ValueError, match="n_inputs=5 channels.*got 4"):
        net(jnp.zeros((T, 4)))
    with pytest.raises(ValueError, match="transposed"):
        net(jnp.zeros((N_IN, T)))
    with pytest.raises(ValueError, match=f"at least receptive_field={net.receptive_field}"):
        apply(net, jnp.zeros((net.receptive_field - 1, N_IN)))
    with pytest.raises(ValueError, match=r"jax.vmap\(net\)"):
        net(jnp.zeros((2, T, N_IN)))
    # The shortest valid input gives exactly one output.
    assert apply(net, jnp.zeros((net.receptive_field, N_IN))).shape == (1, N_OUT)


def test_bad_sizes():
    with pytest.raises(ValueError, match="kernel_sizes"):
        nn.CNN(N_IN, N_OUT, channels=(8, 8), kernel_sizes=(3,), key=KEY)
    with pytest.raises(ValueError, match="window"):
        nn.GRU(N_IN, N_OUT, window=0, key=KEY)
