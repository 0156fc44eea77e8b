"""Properties every attribution method must have, checked for every method:

shape and finiteness; jit == eager (``jax.disable_jit``); a batch == its examples one by one;
``jax.vmap`` over a stack of batches == a loop; Flax Linen == plain jax with the same weights;
Flax NNX (``nnx.split`` / ``nnx.merge``) == Linen. Plus the identities of the papers:
conservation of LRP-0 / LRP-ε / α2β1 (bias-free), LRP-0 == gradient × input on ReLU nets
(DeepLIFT paper §3.4) and DeepLIFT's summation-to-delta.

All in float64. To stay fast on shared CPUs the methods are traced into one compiled program
per input signature (``jit_many`` in ``tests/oracle.py``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxattr as ja


import oracle as O  # noqa: E402  (tests/ is on sys.path, see conftest.py)
C = ja.composites
BATCH = 3

# small ReLU CNN with bias and max pool (pool before ReLU: no tied windows)
NET = (("conv", 3, "SAME"), ("maxpool",), ("relu",), ("flatten",), ("dense", 5), ("relu",),
       ("dense", 3))
NET_IN = (4, 4, 2)

METHODS = {
    "gradient": ja.Gradient(),
    "gradient_x_input": ja.GradientXInput(),
    "integrated_gradients": ja.IntegratedGradients(steps=4),
    "smoothgrad": ja.SmoothGrad(samples=3),
    "deconvnet": ja.DeconvNet(),
    "guided_backprop": ja.GuidedBackprop(),
    "deep_taylor": ja.DeepTaylor(),
    "deep_taylor_bounded": ja.DeepTaylor(0.0, 1.0),
    "lrp_epsilon_plus": ja.LRP(C.epsilon_plus()),
    "lrp_epsilon_plus_flat": ja.LRP(C.epsilon_plus_flat()),
    "lrp_epsilon_gamma_box": ja.LRP(C.epsilon_gamma_box()),
    "lrp_epsilon_alpha2_beta1": ja.LRP(C.epsilon_alpha2_beta1()),
    "deeplift": ja.DeepLIFT(),
}
NAMES = list(METHODS)
TOL = dict(rtol=1e-9, atol=1e-12)


def _weights(seed=0, zero_bias=False, spec=NET, in_shape=NET_IN):
    return O.init_weights(spec, in_shape, seed, zero_bias=zero_bias)


def _x(seed=1, batch=BATCH, in_shape=NET_IN):
    return np.random.default_rng(seed).normal(size=(batch,) + in_shape)


def _run(apply_kind, x, vmapped=False, names=NAMES):
    weights = _weights()
    if apply_kind == "linen":
        f, p = O.linen_apply(NET), O.linen_params(NET, weights)
    else:
        f, p = O.jax_apply(NET), O.jax_params(weights)
    got = O.jit_many(ja.attribute, f, p, jnp.asarray(x), [METHODS[n] for n in names],
                     vmapped=vmapped)
    return dict(zip(names, got))  # arrays, or the exception a method's tracing raised


def _eager(f, p, x, method):
    try:
        with jax.disable_jit():
            return np.asarray(ja.attribute(f, p, jnp.asarray(x), method=method))
    except Exception as err:  # noqa: BLE001 - raised by the test of this method
        return err


def _concat(parts):
    errors = [r for r in parts if isinstance(r, Exception)]
    return errors[0] if errors else np.concatenate(parts)


@pytest.fixture(scope="module")
def results():
    """Everything the property tests compare, computed once (four compiled programs + eager).
    ``results[kind][name]`` is an array or the exception computing it raised."""
    x, x2 = _x(1), _x(2)
    out = {}
    with jax.enable_x64(True):
        out["linen"] = _run("linen", x)
        out["linen_x2"] = _run("linen", x2)
        out["plain"] = _run("plain", x)
        per = [_run("linen", x[i:i + 1]) for i in range(BATCH)]  # one compile, three runs
        out["per_example"] = {n: _concat([r[n] for r in per]) for n in NAMES}
        out["vmap"] = _run("linen", np.stack([x, x2]), vmapped=True)
        f, p = O.linen_apply(NET), O.linen_params(NET, _weights())
        out["eager"] = {n: _eager(f, p, x, METHODS[n]) for n in NAMES}
    return out


def _get(results, kind, name):
    r = results[kind][name]
    if isinstance(r, Exception):
        raise r
    return r


@pytest.mark.parametrize("name", NAMES)
def test_shape_finite_nonzero(results, name):
    r = _get(results, "linen", name)
    assert r.shape == (BATCH,) + NET_IN
    assert r.dtype == np.float64
    assert np.all(np.isfinite(r))
    assert np.all(np.abs(r).reshape(BATCH, -1).max(1) > 0)  # every example gets some attribution


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(results, name):
    np.testing.assert_allclose(_get(results, "eager", name), _get(results, "linen", name), **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_per_example(results, name):
    np.testing.assert_allclose(_get(results, "per_example", name), _get(results, "linen", name),
                               **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_loop(results, name):
    got = _get(results, "vmap", name)
    assert got.shape == (2, BATCH) + NET_IN
    np.testing.assert_allclose(got[0], _get(results, "linen", name), **TOL)
    np.testing.assert_allclose(got[1], _get(results, "linen_x2", name), **TOL)


@pytest.mark.parametrize("name", NAMES)
def test_linen_equals_plain_jax(results, name):
    np.testing.assert_allclose(_get(results, "plain", name), _get(results, "linen", name), **TOL)


def test_smoothgrad_depends_on_key():
    """Sanity for the properties above: the key actually changes SmoothGrad's noise, and the
    same key gives the same result (through ``ja.attribute``'s own jit, small dense net)."""
    spec = (("dense", 4), ("relu",), ("dense", 3))
    weights = _weights(spec=spec, in_shape=(5,))
    with jax.enable_x64(True):
        x = jnp.asarray(_x(1, in_shape=(5,)))
        f, p = O.jax_apply(spec), O.jax_params(weights)
        m = ja.SmoothGrad(samples=3)
        a = ja.attribute(f, p, x, method=m, key=jax.random.key(1))
        b = ja.attribute(f, p, x, method=m, key=jax.random.key(1))
        c = ja.attribute(f, p, x, method=m, key=jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-6


# ---------------------------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------------------------

CONS_DENSE = (("dense", 6), ("relu",), ("dense", 5), ("relu",), ("dense", 3))
CONS_CONV = (("conv", 3, "SAME"), ("relu",), ("conv", 3, "VALID"), ("relu",), ("flatten",),
             ("dense", 3))
# signed inputs everywhere (tanh, no zero padding), so units receive positive *and* negative
# contributions, which αβ needs to conserve (checked for these seeds by the oracle)
CONS_TANH = (("conv", 3, "VALID"), ("tanh",), ("flatten",), ("dense", 5), ("tanh",), ("dense", 3))
# name -> (spec, input shape, weight seed, input seed)
CONS_NETS = {"relu_dense": (CONS_DENSE, (5,), 4, 6), "relu_conv": (CONS_CONV, (5, 5, 2), 3, 5),
             "relu_conv_maxpool": (NET, NET_IN, 3, 5), "tanh_conv": (CONS_TANH, NET_IN, 4, 6)}
CONSERVING = {"lrp0": ja.LRP(ja.rules.Epsilon(0.0)), "lrp_eps": ja.LRP(ja.rules.Epsilon(1e-9)),
              "alpha2_beta1_nobias": ja.LRP(ja.rules.AlphaBeta(2.0, 1.0, bias="none",
                                                               epsilon=0.0))}
CONS_CASES = [(net, rule) for net in CONS_NETS for rule in CONSERVING
              if rule != "alpha2_beta1_nobias" or net == "tanh_conv"]


@pytest.fixture(scope="module")
def conservation():
    out = {}
    with jax.enable_x64(True):
        for net, (spec, in_shape, wseed, xseed) in CONS_NETS.items():
            weights = _weights(wseed, zero_bias=True, spec=spec, in_shape=in_shape)
            x = _x(xseed, in_shape=in_shape)
            rules = [r for n, r in CONS_CASES if n == net]
            got = O.jit_many(ja.attribute, O.jax_apply(spec), O.jax_params(weights),
                             jnp.asarray(x), [CONSERVING[r] for r in rules])
            out[net] = (dict(zip(rules, got)), O.logits(spec, weights, x).max(-1))
    return out


@pytest.mark.parametrize(("net", "rule"), CONS_CASES)
def test_conservation_without_bias(conservation, net, rule):
    """Bias-free nets: Σ relevance == the target (predicted) logit, per example. LRP-0/ε on ReLU
    nets (max pool included: the winner takes all); α2β1 (bias ignored, ε = 0) where the units
    receive contributions of both signs (tanh net) -- see the next test for when they do not."""
    got, target_logit = conservation[net]
    r = got[rule]
    if isinstance(r, Exception):
        raise r
    spec, in_shape, wseed, xseed = CONS_NETS[net]
    weights = _weights(wseed, zero_bias=True, spec=spec, in_shape=in_shape)
    x = _x(xseed, in_shape=in_shape)
    rule_tuple = ("ab", 2.0, 1.0, "none", 0.0) if rule.startswith("alpha") else ("eps", 0.0)
    oracle = O.lrp(spec, weights, x, lambda k, layer, n: rule_tuple)
    # the set-up is right: logits not ~0, and the oracle itself conserves here
    assert np.all(np.abs(target_logit) > 1e-2)
    np.testing.assert_allclose(oracle.reshape(BATCH, -1).sum(1), target_logit, rtol=1e-6)
    np.testing.assert_allclose(r.reshape(BATCH, -1).sum(1), target_logit, rtol=1e-6, atol=1e-10)


def test_alpha2_beta1_without_negative_contributions_gives_alpha_times_relevance():
    """The αβ rule itself does not conserve when a unit has no negative contribution (its β
    part is 0/0 := 0): x = (1, 2) >= 0, w_0 = (0.5, 0.25) > 0, no bias: z = 1 and
    R = α · x ⊙ w / z = 2 · (0.5, 0.5) = (1, 1), summing to 2 = α·z (iNNvestigate #116)."""
    def apply(p, x):
        return x @ p["w"]

    with jax.enable_x64(True):
        params = {"w": jnp.array([[0.5, -1.0], [0.25, 1.0]])}
        got = ja.attribute(apply, params, jnp.array([[1.0, 2.0]]), target=jnp.array([0]),
                           method=ja.LRP(ja.rules.AlphaBeta(2.0, 1.0, bias="none")))
    np.testing.assert_allclose(np.asarray(got), [[1.0, 1.0]], rtol=1e-5)


def test_lrp0_equals_gradient_times_input_with_bias_and_max_pool():
    """DeepLIFT paper §3.4: on ReLU nets LRP-0 is gradient × input, biases and max pool
    included (and relevance is *not* conserved then: the biases absorb some)."""
    weights, x = _weights(5), _x(6)
    with jax.enable_x64(True):
        lrp0, gxi = O.jit_many(ja.attribute, O.linen_apply(NET), O.linen_params(NET, weights),
                               jnp.asarray(x), [ja.LRP(ja.rules.Epsilon(0.0)), ja.GradientXInput()])
    np.testing.assert_allclose(lrp0, gxi, rtol=1e-9, atol=1e-12)
    target_logit = O.logits(NET, weights, x).max(-1)
    assert np.abs(lrp0.reshape(BATCH, -1).sum(1) - target_logit).max() > 1e-3


DL_NETS = {
    "dense": ((("dense", 6), ("relu",), ("dense", 5), ("tanh",), ("dense", 3)), (5,)),
    "conv": ((("conv", 3, "SAME"), ("tanh",), ("avgpool",), ("conv", 3, "SAME"), ("relu",),
              ("flatten",), ("dense", 3)), (4, 4, 2)),
}


@pytest.mark.parametrize("net", list(DL_NETS))
def test_deeplift_summation_to_delta(net):
    """Σ contributions == f_t(x) − f_t(x₀), for a zero and a random reference (no max pool)."""
    spec, in_shape = DL_NETS[net]
    weights, x = _weights(7, spec=spec, in_shape=in_shape), _x(8, in_shape=in_shape)
    ref = np.random.default_rng(9).normal(size=in_shape) * 0.5
    with jax.enable_x64(True):
        got = O.jit_many(ja.attribute, O.jax_apply(spec), O.jax_params(weights), jnp.asarray(x),
                         [ja.DeepLIFT(), ja.DeepLIFT(reference=jnp.asarray(ref))])
    out = O.logits(spec, weights, x)
    t = out.argmax(-1)
    for contrib, x0 in zip(got, (np.zeros_like(x), np.broadcast_to(ref, x.shape))):
        delta = out[np.arange(BATCH), t] - O.logits(spec, weights, x0)[np.arange(BATCH), t]
        assert np.all(np.abs(delta) > 1e-3)
        np.testing.assert_allclose(contrib.reshape(BATCH, -1).sum(1), delta, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Flax NNX
# ---------------------------------------------------------------------------------------------

NNX_SPEC = (("dense", 6), ("relu",), ("dense", 5), ("relu",), ("dense", 3))
NNX_METHODS = [ja.Gradient(), ja.GuidedBackprop(), ja.LRP(C.epsilon_plus_flat()), ja.DeepLIFT()]


class NNXNet(nnx.Module):
    def __init__(self, weights):
        self.layers = nnx.List([nnx.Linear(w.shape[0], w.shape[1], rngs=nnx.Rngs(0),
                                           param_dtype=jnp.float64) for w, _ in weights])
        for layer, (w, b) in zip(self.layers, weights):
            layer.kernel[...] = jnp.asarray(w)
            layer.bias[...] = jnp.asarray(b)

    def __call__(self, x):
        *hidden, last = self.layers
        for layer in hidden:
            x = jax.nn.relu(layer(x))
        return last(x)


_NNX = {}


def _nnx_apply(weights):
    """``(state, x) -> logits`` through ``nnx.merge`` of a split NNX model (one function object,
    so the attribution cache is reused)."""
    graphdef, state = nnx.split(NNXNet(weights))
    if "fn" not in _NNX:
        _NNX["graphdef"] = graphdef
        _NNX["fn"] = lambda st, x: nnx.merge(_NNX["graphdef"], st)(x)
    return _NNX["fn"], state


def test_nnx_equals_linen():
    weights, x = _weights(11, spec=NNX_SPEC, in_shape=(5,)), _x(12, in_shape=(5,))
    with jax.enable_x64(True):
        f_nnx, state = _nnx_apply(weights)
        np.testing.assert_allclose(np.asarray(f_nnx(state, jnp.asarray(x))),
                                   O.logits(NNX_SPEC, weights, x), rtol=1e-12)
        got = O.jit_many(ja.attribute, f_nnx, state, jnp.asarray(x), NNX_METHODS)
        want = O.jit_many(ja.attribute, O.linen_apply(NNX_SPEC), O.linen_params(NNX_SPEC, weights),
                          jnp.asarray(x), NNX_METHODS)
    for m, g, w in zip(NNX_METHODS, got, want):
        for v in (g, w):
            if isinstance(v, Exception):
                raise v
        assert np.abs(w).max() > 1e-3, m
        np.testing.assert_allclose(g, w, err_msg=repr(m), **TOL)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_example_fingerprints_depend_on_the_example_only(dtype):
    """The SmoothGrad noise seed of an example: equal in any batch and position, different for
    different examples (and for the same values in another order)."""
    from jaxattr.methods import example_fingerprints

    with jax.enable_x64(dtype == "float64"):
        x = jax.random.normal(jax.random.key(0), (5, 3, 4)).astype(dtype)
        swapped = x[:1, ::-1]  # example 0 with its rows reversed
        prints = np.asarray(example_fingerprints(x))
        assert prints.dtype == np.uint32
        assert len(set(prints.tolist())) == 5
        assert int(example_fingerprints(x[3:4])[0]) == prints[3]
        assert np.array_equal(np.asarray(example_fingerprints(x[::-1])), prints[::-1])
        assert int(example_fingerprints(swapped)[0]) != prints[0]


def test_smoothgrad_float32_is_batch_exact():
    """An example's SmoothGrad is the same alone and in a batch (float32, jitted explain)."""
    spec = (("dense", 4), ("relu",), ("dense", 3))
    weights = _weights(spec=spec, in_shape=(5,))
    f = O.jax_apply(spec)
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), O.jax_params(weights))
    x = jnp.asarray(_x(3, in_shape=(5,)), jnp.float32)
    explain = ja.explain(f, ja.SmoothGrad(samples=4, sigma=0.3))
    whole = explain(p, x, jnp.array([0, 1, 2]), jax.random.key(5))
    alone = explain(p, x[1:2], jnp.array([1]), jax.random.key(5))
    np.testing.assert_allclose(whole[1:2], alone, rtol=1e-6, atol=1e-7)
