"""Gradient-family methods, Guided Backprop, DeconvNet, Integrated Gradients, SmoothGrad and
DeepLIFT Rescale against hand-written float64 numpy backward passes (``tests/oracle.py``) and
``jax.grad`` of the plain-jax network.

Each network's methods are traced into one compiled program (``jit_many``) to keep the suite
fast on shared CPUs; a few tests call ``ja.attribute`` directly so its own jit is covered too.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja


import oracle as O  # noqa: E402  (tests/ is on sys.path, see conftest.py)
BATCH = 3

# ReLU conv net with bias and max pool (pool before the ReLU: no window ties)
RELU_CONV = (("conv", 3, "SAME"), ("maxpool",), ("relu",), ("conv", 4, "VALID"), ("relu",),
             ("flatten",), ("dense", 5), ("relu",), ("dense", 4))
RELU_CONV_IN = (8, 8, 2)
# ReLU/tanh nets without max pool, for DeepLIFT (Rescale everywhere)
DL_DENSE = (("dense", 6), ("relu",), ("dense", 5), ("tanh",), ("dense", 4))
DL_DENSE_IN = (5,)
DL_CONV = (("conv", 3, "SAME"), ("relu",), ("avgpool",), ("conv", 3, "VALID"), ("tanh",),
           ("flatten",), ("dense", 3))
DL_CONV_IN = (6, 6, 2)
# smooth net for the Integrated Gradients completeness check
TANH_DENSE = (("dense", 6), ("tanh",), ("dense", 5), ("tanh",), ("dense", 3))

NETS = {"relu_conv": (RELU_CONV, RELU_CONV_IN, 19), "dl_dense": (DL_DENSE, DL_DENSE_IN, 11),
        "dl_conv": (DL_CONV, DL_CONV_IN, 12), "tanh_dense": (TANH_DENSE, DL_DENSE_IN, 13)}
TARGET = np.array([2, 0, 3])
LOGIT_TARGET = np.array([1, 0, 1])  # relu_conv's target logits: −1.54, +0.63, −0.66 (both signs)


def _net(name):
    spec, in_shape, seed = NETS[name]
    weights = O.init_weights(spec, in_shape, seed)
    x = np.random.default_rng(200 + seed).normal(size=(BATCH,) + in_shape)
    return spec, weights, x


DL_REF_DENSE = np.random.default_rng(5).normal(size=DL_DENSE_IN) * 0.5  # one example's shape


def _methods():
    """net -> [(name, method, target, oracle(spec, weights, x) -> expected)]."""
    def grad(t):
        return lambda s, w, x: O.gradient(s, w, x, t)

    def ig(steps, base, rule):
        return lambda s, w, x: O.integrated_gradients(s, w, x, steps, base, rule)

    def dl(ref, t=None):
        return lambda s, w, x: O.deeplift_rescale(s, w, x, ref, t)

    relu_conv = [
        ("gradient", ja.Gradient(), None, grad(None)),
        ("gradient_target", ja.Gradient(), TARGET, grad(TARGET)),
        ("gradient_x_input", ja.GradientXInput(), None, lambda s, w, x: x * O.gradient(s, w, x)),
        ("guided_backprop", ja.GuidedBackprop(), None, O.guided_backprop),
        ("guided_backprop_target", ja.GuidedBackprop(), TARGET,
         lambda s, w, x: O.guided_backprop(s, w, x, TARGET)),
        ("deconvnet", ja.DeconvNet(), None, O.deconvnet),
        ("guided_backprop_logit_seed", ja.GuidedBackprop(seed="logit"), LOGIT_TARGET,
         lambda s, w, x: O.guided_backprop(s, w, x, LOGIT_TARGET, scale_by_logit=True)),
        ("deconvnet_logit_seed", ja.DeconvNet(seed="logit"), LOGIT_TARGET,
         lambda s, w, x: O.deconvnet(s, w, x, LOGIT_TARGET, scale_by_logit=True)),
        ("ig_trapezoid", ja.IntegratedGradients(steps=5, rule="riemann_trapezoid"), None,
         ig(5, 0.0, "riemann_trapezoid")),
        ("ig_trapezoid_baseline", ja.IntegratedGradients(steps=4, baseline=0.5,
                                                         rule="riemann_trapezoid"), None,
         ig(4, 0.5, "riemann_trapezoid")),
        ("ig_gausslegendre", ja.IntegratedGradients(steps=6), None, ig(6, 0.0, "gausslegendre")),
        ("smoothgrad_sigma0", ja.SmoothGrad(samples=3, sigma=0.0), None, grad(None)),
    ]
    dl_dense = [
        ("deeplift", ja.DeepLIFT(), None, dl(0.0)),
        ("deeplift_target", ja.DeepLIFT(), TARGET, dl(0.0, TARGET)),
        ("deeplift_scalar_ref", ja.DeepLIFT(reference=0.3), None, dl(0.3)),
        ("deeplift_array_ref", ja.DeepLIFT(reference=DL_REF_DENSE), None, dl(DL_REF_DENSE)),
        ("ig_trapezoid", ja.IntegratedGradients(steps=7, rule="riemann_trapezoid"), TARGET,
         lambda s, w, x: O.integrated_gradients(s, w, x, 7, 0.0, "riemann_trapezoid", TARGET)),
    ]
    dl_conv = [
        ("deeplift", ja.DeepLIFT(), None, dl(0.0)),
        ("deeplift_scalar_ref", ja.DeepLIFT(reference=-0.2), None, dl(-0.2)),
        ("gradient", ja.Gradient(), None, grad(None)),
        ("ig_trapezoid_baseline", ja.IntegratedGradients(steps=4, baseline=0.5,
                                                         rule="riemann_trapezoid"), None,
         ig(4, 0.5, "riemann_trapezoid")),
    ]
    return {"relu_conv": relu_conv, "dl_dense": dl_dense, "dl_conv": dl_conv}


METHODS = _methods()

CASES = [pytest.param(net, i, id=f"{entry[0]}-{net}")
         for net, entries in METHODS.items() for i, entry in enumerate(entries)]


@pytest.fixture(scope="module")
def engine_results():
    out = {}
    with jax.enable_x64(True):
        for net, entries in METHODS.items():
            spec, weights, x = _net(net)
            got = O.jit_many(ja.attribute, O.jax_apply(spec), O.jax_params(weights), jnp.asarray(x),
                             [e[1] for e in entries], target=[e[2] for e in entries])
            for i, g in enumerate(got):
                out[(net, i)] = g
    return out


@pytest.mark.parametrize(("net", "i"), CASES)
def test_method_matches_oracle(engine_results, net, i):
    spec, weights, x = _net(net)
    want = METHODS[net][i][3](spec, weights, x)
    assert np.all(np.abs(want).reshape(BATCH, -1).max(1) > 1e-3)  # no trivially-zero example
    O.check(engine_results[(net, i)], want)


@pytest.mark.parametrize("pool", ["reduce_window", "reshape_max"])
def test_gradient_at_max_pool_tie_goes_to_the_first_maximum(pool):
    """A 2x2 max pool over a constant window: the whole gradient goes to the first maximum,
    (1, 0, 0, 0), as ``jax.grad`` of ``reduce_window`` and PyTorch route it, whether the model
    writes the pool as ``reduce_window_max`` or as reshape + max (whose own autodiff would split
    it equally). Trapezoid / left-Riemann IG meets exactly this at α = 0."""
    def apply(p, x):
        if pool == "reduce_window":
            y = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        else:
            y = x.reshape(x.shape[0], 1, 2, 1, 2, 1).max(axis=(2, 4))
        return y.reshape(x.shape[0], -1) @ p

    with jax.enable_x64(True):
        p, x = jnp.ones((1, 2)), jnp.ones((1, 2, 2, 1))
        got = ja.attribute(apply, p, x, target=jnp.array([0]), method=ja.Gradient())
    np.testing.assert_allclose(np.asarray(got).ravel(), [1.0, 0.0, 0.0, 0.0], rtol=1e-12)


def test_oracle_gradient_is_jax_grad():
    """The numpy backward of the oracle agrees with ``jax.grad`` of the plain-jax network."""
    for net in ("relu_conv", "dl_conv"):
        spec, weights, x = _net(net)
        with jax.enable_x64(True):
            f, p = O.jax_apply(spec), O.jax_params(weights)
            t = jnp.asarray(O.logits(spec, weights, x).argmax(-1))
            g = jax.jit(jax.grad(lambda xx: f(p, xx)[jnp.arange(BATCH), t].sum()))(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(g), O.gradient(spec, weights, x), rtol=1e-10,
                                   atol=1e-12)


def test_gradient_direct_call_equals_jax_grad():
    """``ja.attribute`` (its own jit, no helper) == ``jax.grad`` of the target logit, on the Linen
    version of the network, with explicit targets."""
    spec, weights, x = _net("relu_conv")
    with jax.enable_x64(True):
        f, p = O.linen_apply(spec), O.linen_params(spec, weights)
        got = ja.attribute(f, p, jnp.asarray(x), target=jnp.asarray(TARGET), method=ja.Gradient())
        want = jax.jit(jax.grad(lambda xx: f(p, xx)[jnp.arange(BATCH), TARGET].sum()))(
            jnp.asarray(x))
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10, atol=1e-12)


def test_guided_and_deconv_differ_from_gradient(engine_results):
    """Sanity of the set-up: the three signals through the ReLUs are genuinely different here
    (otherwise the oracle tests above could not tell them apart)."""
    entries = [e[0] for e in METHODS["relu_conv"]]
    grad = engine_results[("relu_conv", entries.index("gradient"))]
    guided = engine_results[("relu_conv", entries.index("guided_backprop"))]
    deconv = engine_results[("relu_conv", entries.index("deconvnet"))]
    assert np.abs(grad - guided).max() > 1e-3
    assert np.abs(grad - deconv).max() > 1e-3
    assert np.abs(guided - deconv).max() > 1e-3


def test_integrated_gradients_completeness():
    """Gauss–Legendre IG on a smooth (tanh) net: Σ attributions = f_t(x) − f_t(0)."""
    spec, weights, x = _net("tanh_dense")
    with jax.enable_x64(True):
        got = ja.attribute(O.jax_apply(spec), O.jax_params(weights), jnp.asarray(x),
                           method=ja.IntegratedGradients(steps=16))
    out, out0 = O.logits(spec, weights, x), O.logits(spec, weights, np.zeros_like(x))
    t = out.argmax(-1)
    delta = out[np.arange(BATCH), t] - out0[np.arange(BATCH), t]
    np.testing.assert_allclose(np.asarray(got).sum(-1), delta, rtol=1e-8, atol=1e-10)


def test_logit_seed_is_a_scale_for_positive_logits_and_another_map_for_negative():
    """iNNvestigate seeds Guided Backprop and DeconvNet with the logit's value: where it is
    positive that scales the map by it, where it is negative the ReLUs see the negated signal
    and the map is a different one (not −|v| times the default)."""
    spec, weights, x = _net("relu_conv")
    value = O.logits(spec, weights, x)[np.arange(BATCH), LOGIT_TARGET]
    assert value[1] > 0 and value[0] < 0 and value[2] < 0
    for oracle in (O.guided_backprop, O.deconvnet):
        one = oracle(spec, weights, x, LOGIT_TARGET)
        logit = oracle(spec, weights, x, LOGIT_TARGET, scale_by_logit=True)
        np.testing.assert_allclose(logit[1], value[1] * one[1], rtol=1e-12)
        for i in (0, 2):
            assert np.abs(logit[i] - value[i] * one[i]).max() > 1e-3
    with pytest.raises(ValueError, match="seed must be one of"):
        ja.GuidedBackprop(seed="value")


def _fingerprints(x):
    """numpy twin of ``jaxattr.methods.example_fingerprints`` (float64: the high word is folded
    in): Σ_i bits_i · (2i + 1) · 0x9E3779B1 mod 2³²."""
    bits = np.ascontiguousarray(x).reshape(len(x), -1).view(np.uint64)
    bits = ((bits ^ (bits >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(object)
    odd = [((2 * i + 1) * 0x9E3779B1) % 2**32 for i in range(bits.shape[1])]
    return np.array([sum(int(b) * o for b, o in zip(row, odd)) % 2**32 for row in bits],
                    dtype=np.uint32)


def test_smoothgrad_matches_numpy_with_the_same_noise():
    """SmoothGrad with σ > 0 (Smilkov et al. 2017): ``(1/S) Σ_s ∇f_t(x + σ·(max x − min x)·ε_s)``
    with ``ε_s`` the documented draws (``normal(fold_in(split(key, S)[s], fingerprint(x)))``);
    the fingerprint, the σ·(max − min) scale, the mean and the gradient at every noisy input
    are computed here in numpy (only the standard-normal draws come from jax.random)."""
    spec, weights, x = _net("relu_conv")
    samples, sigma, key = 5, 0.3, jax.random.key(11)
    prints = _fingerprints(x)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(ja.methods.example_fingerprints(jnp.asarray(x))),
                                      prints)
        keys = jax.random.split(key, samples)
        draws = np.stack([np.stack([np.asarray(jax.random.normal(
            jax.random.fold_in(k, int(p)), x.shape[1:], jnp.float64)) for p in prints])
            for k in keys])
        got = ja.attribute(O.jax_apply(spec), O.jax_params(weights), jnp.asarray(x),
                           target=jnp.asarray(TARGET),
                           method=ja.SmoothGrad(samples=samples, sigma=sigma), key=key)
    scale = sigma * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    want = np.mean([O.gradient(spec, weights, x + scale * d, TARGET) for d in draws], axis=0)
    plain = O.gradient(spec, weights, x, TARGET)
    assert np.abs(want - plain).max() > 1e-2  # the noise changes the answer on this ReLU net
    O.check(np.asarray(got), want)


def test_smoothgrad_of_affine_model_is_its_weight():
    """The gradient of an affine model is constant, so SmoothGrad returns it for any noise."""
    rng = np.random.default_rng(9)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    x = rng.normal(size=(BATCH, 5))
    with jax.enable_x64(True):
        got = ja.attribute(O.jax_apply((("dense", 3),)), O.jax_params([(w, b)]), jnp.asarray(x),
                           target=jnp.asarray([0, 2, 1]),
                           method=ja.SmoothGrad(samples=4, sigma=0.5), key=jax.random.key(3))
    np.testing.assert_allclose(np.asarray(got), w[:, [0, 2, 1]].T, rtol=1e-10)


def test_deeplift_paper_figure_1():
    """DeepLIFT paper Fig. 1: x1 = x2 = −1, reference 0, h = ReLU(x1 + 2·x2 + 2),
    y = 0.1 + 0.2·h.
    The gradient is 0; Rescale gives (−0.4/3, −0.8/3), summing to Δy = −0.4."""
    weights = [(np.array([[1.0], [2.0]]), np.array([2.0])), (np.array([[0.2, 0.0]]),
                                                              np.array([0.1, 0.0]))]
    spec = (("dense", 1), ("relu",), ("dense", 2))
    x = np.array([[-1.0, -1.0]])
    want = np.array([[-0.4 / 3, -0.8 / 3]])
    np.testing.assert_allclose(O.deeplift_rescale(spec, weights, x, 0.0, [0]), want, rtol=1e-12)
    with jax.enable_x64(True):
        f, p = O.jax_apply(spec), O.jax_params(weights)
        got = ja.attribute(f, p, jnp.asarray(x), target=jnp.array([0]), method=ja.DeepLIFT())
        grad = ja.attribute(f, p, jnp.asarray(x), target=jnp.array([0]), method=ja.Gradient())
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-15)
