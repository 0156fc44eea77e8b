"""Explanations are differentiable: ``jax.grad``/``jax.jvp`` of an attribution are its true derivative.

For every method and composite, on a dense net, a conv net with a max pool and an average pool,
and a residual net with inference-mode batch norm (all with biases, float64), the derivative of
``L = Σ R²`` (``R`` the attribution) along random directions of the parameters and of ``x`` is
compared with central finite differences (h = 1e-6) and with forward mode (``jax.jvp`` must equal
``jax.vjp`` transposed). Away from ReLU and max-pool switching points (random inputs are), every
rule is smooth, so the two agree to ~1e-9; the bound is 1e-6 relative. A seed or reference
that reached the rules as a constant (``stop_gradient``) made these errors O(1) (issue #20).

SmoothGrad's noise is drawn from the example's own bits (batch-exactness), a piecewise-constant
function of x, so finite differences in x would change the noise; its x-derivative is checked
against the same computation written directly with ``jax.grad`` and the noise held fixed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.methods import example_fingerprints

C, R = ja.composites, ja.rules
H = 1e-6
RTOL = 1e-6
CONV = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _dense(p, x):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    h = jax.nn.relu(h @ p["w2"] + p["b2"])
    return h @ p["w3"] + p["b3"]


def _pools(p, x):
    z = jax.nn.relu(jax.lax.conv_general_dilated(x, p["k1"], **CONV) + p["c1"])
    z = jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    z = jax.nn.relu(jax.lax.conv_general_dilated(z, p["k2"], **CONV) + p["c2"])
    z = jax.lax.reduce_window(z, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
    return z.reshape(z.shape[0], -1) @ p["w"] + p["b"]


def _batch_norm(z, s):
    return (z - s["mean"]) / jnp.sqrt(s["var"] + 1e-5) * s["scale"] + s["shift"]


def _residual(p, x):
    h = jax.nn.relu(_batch_norm(jax.lax.conv_general_dilated(x, p["k1"], **CONV), p["bn1"]))
    r = _batch_norm(jax.lax.conv_general_dilated(h, p["k2"], **CONV), p["bn2"])
    h = jax.nn.relu(h + r)
    return h.mean(axis=(1, 2)) @ p["w"] + p["b"]


def _params(net, rng):
    normal = lambda *s: rng.normal(size=s)
    if net == "dense":
        return {"w1": normal(5, 7), "b1": 0.3 * normal(7), "w2": normal(7, 6) / 2,
                "b2": 0.3 * normal(6), "w3": normal(6, 3) / 2, "b3": 0.3 * normal(3)}
    if net == "pools":
        return {"k1": normal(3, 3, 2, 3) / 3, "c1": 0.3 * normal(3), "k2": normal(3, 3, 3, 4) / 4,
                "c2": 0.3 * normal(4), "w": normal(16, 3) / 3, "b": 0.3 * normal(3)}
    bn = lambda n: {"mean": 0.2 * normal(n), "var": 0.5 + rng.uniform(size=n),
                    "scale": normal(n), "shift": 0.3 * normal(n)}
    return {"k1": normal(3, 3, 2, 4) / 3, "bn1": bn(4), "k2": normal(3, 3, 4, 4) / 5, "bn2": bn(4),
            "w": normal(4, 3), "b": 0.3 * normal(3)}


NETS = {"dense": (_dense, (5,)), "pools": (_pools, (8, 8, 2)), "residual": (_residual, (4, 4, 2))}

METHODS = {
    "gradient": ja.Gradient(),
    "gradient_x_input": ja.GradientXInput(),
    "integrated_gradients": ja.IntegratedGradients(steps=4),
    "guided_backprop": ja.GuidedBackprop(),
    "deconvnet": ja.DeconvNet(),
    "lrp_epsilon": ja.LRP(R.Epsilon(0.1)),
    "lrp_zplus": ja.LRP(R.ZPlus()),
    "lrp_alpha2_beta1": ja.LRP(R.AlphaBeta(2.0, 1.0)),
    "lrp_gamma": ja.LRP(R.Gamma(0.25)),
    "lrp_flat": ja.LRP(R.Flat()),
    "lrp_wsquare": ja.LRP(R.WSquare()),
    "lrp_epsilon_plus": ja.LRP(C.epsilon_plus(0.1)),
    "lrp_epsilon_plus_flat": ja.LRP(C.epsilon_plus_flat(0.1)),
    "lrp_epsilon_gamma_box": ja.LRP(C.epsilon_gamma_box(-3.0, 3.0, epsilon=0.1)),
    "lrp_epsilon_alpha2_beta1": ja.LRP(C.epsilon_alpha2_beta1(0.1)),
    "deep_taylor": ja.DeepTaylor(),
    "deep_taylor_bounded": ja.DeepTaylor(-3.0, 3.0),
    "deeplift": ja.DeepLIFT(),
    "deeplift_reference_per_example": ja.DeepLIFT(lambda x: 0.1 * x[::-1]),
    "deeplift_gradient_max": ja.DeepLIFT(maxpool="gradient"),
    "deeplift_reveal_cancel": ja.DeepLIFT(rule="reveal_cancel"),
}
# every method on the conv net with pools; a few on the dense and residual nets. The default
# suite runs one case per rule family (each compiles a second-order program: seconds on CI's
# CPU); the rest are marked slow.
FAST = {("pools", "gradient_x_input"), ("pools", "lrp_epsilon_gamma_box"),
        ("pools", "lrp_epsilon_plus_flat"), ("pools", "deep_taylor"), ("pools", "deeplift"),
        ("pools", "deeplift_reveal_cancel"), ("residual", "lrp_epsilon_alpha2_beta1"),
        ("residual", "deeplift"), ("dense", "lrp_wsquare")}
CASES = ([("pools", m) for m in METHODS]
         + [(net, m) for net in ("dense", "residual")
            for m in ("gradient_x_input", "lrp_epsilon", "lrp_wsquare", "lrp_epsilon_plus_flat",
                      "lrp_epsilon_gamma_box", "lrp_epsilon_alpha2_beta1", "deep_taylor",
                      "deeplift", "deeplift_reveal_cancel")])
CASES = [pytest.param(*c, marks=() if c in FAST else pytest.mark.slow) for c in CASES]
# forward mode (jax.jvp == jax.vjp transposed) on these; finite differences on all
JVP = {"lrp_epsilon_gamma_box", "deeplift_reveal_cancel", "lrp_epsilon_alpha2_beta1"}


def _derivatives(apply_fn, method, params, x, target, v, u, forward_mode):
    """``(⟨∇_p L, v⟩, FD_p, ⟨∇_x L, u⟩, FD_x, jvp of L along (v, u) or None)``; the four
    evaluations of the differences share one compiled attribution program."""
    def loss(p, x_):
        return jnp.sum(ja.attribute(apply_fn, p, x_, target, method, key=jax.random.key(3)) ** 2)

    def shift(tree, s):
        return jax.tree_util.tree_map(lambda a, b: a + s * b, params, v)

    def derivatives(p, x_):
        gp, gx = jax.grad(loss, (0, 1))(p, x_)
        dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(gp),
                                                 jax.tree_util.tree_leaves(v)))
        tangent = jax.jvp(loss, (p, x_), (v, u))[1] if forward_mode else jnp.nan
        return dot, jnp.vdot(gx, u), tangent

    dp, dx, tangent = jax.jit(derivatives)(params, x)
    fd_p = (loss(shift(params, H), x) - loss(shift(params, -H), x)) / (2 * H)
    fd_x = (loss(params, x + H * u) - loss(params, x - H * u)) / (2 * H)
    return dp, fd_p, dx, fd_x, tangent


def _close(a, b, scale):
    return abs(a - b) <= RTOL * max(abs(b), 1e-3 * scale)


@pytest.mark.parametrize("net,name", CASES)
def test_derivative_equals_finite_differences(net, name):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        apply_fn, shape = NETS[net]
        params = jax.tree_util.tree_map(jnp.asarray, _params(net, rng))
        x = jnp.asarray(rng.normal(size=(3,) + shape))
        target = jnp.asarray([0, 1, 2])
        v = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
        u = jnp.asarray(rng.normal(size=x.shape))
        got = _derivatives(apply_fn, METHODS[name], params, x, target, v, u, name in JVP)
        dp, fd_p, dx, fd_x, tangent = map(float, got)
        scale = max(abs(dp), abs(dx), abs(fd_p), abs(fd_x), 1.0)
        assert _close(dp, fd_p, scale), (name, "d/dparams", dp, fd_p)
        assert _close(dx, fd_x, scale), (name, "d/dx", dx, fd_x)
        if name in JVP:
            assert _close(tangent, dp + dx, scale), (name, "jvp != vjp", tangent, dp + dx)


def test_smoothgrad_derivative_holds_its_noise_fixed():
    """SmoothGrad's derivative is that of the mean gradient over its (fixed) noisy copies,
    written here directly with ``jax.grad``; w.r.t. params it is also checked by differences."""
    samples, sigma = 3, 0.2
    method = ja.SmoothGrad(samples=samples, sigma=sigma)
    key = jax.random.key(3)
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        params = jax.tree_util.tree_map(jnp.asarray, _params("dense", rng))
        x = jnp.asarray(rng.normal(size=(3, 5)))
        target = jnp.asarray([0, 1, 2])
        prints = example_fingerprints(x)
        keys = jax.random.split(key, samples)
        noise = jnp.stack([jax.vmap(lambda p: jax.random.normal(jax.random.fold_in(k, p), (5,)))(prints)
                           for k in keys])

        def direct(p, x_):
            scale = sigma * (x_.max(1, keepdims=True) - x_.min(1, keepdims=True))
            logit = lambda xi, ti: _dense(p, xi[None])[0, ti]
            grads = [jax.vmap(jax.grad(logit))(x_ + scale * n, target) for n in noise]
            return jnp.sum(jnp.mean(jnp.stack(grads), 0) ** 2)

        ours = lambda p, x_: jnp.sum(ja.attribute(_dense, p, x_, target, method, key=key) ** 2)
        want_p, want_x = jax.grad(direct, (0, 1))(params, x)
        got_p, got_x = jax.grad(ours, (0, 1))(params, x)
        np.testing.assert_allclose(got_x, want_x, rtol=1e-10, atol=1e-12)
        for a, b in zip(jax.tree_util.tree_leaves(got_p), jax.tree_util.tree_leaves(want_p)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
