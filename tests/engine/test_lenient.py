"""The methods that need no segment rules (issue #19 items 1–2, #16 item 7): the gradient family
is ``jax.grad`` on any differentiable function, control flow included; Guided Backprop and
DeconvNet modify ReLUs only; rule-based methods still refuse what no rule covers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
import oracle as O  # noqa: E402  (tests/ is on sys.path, see conftest.py)
from jaxattr.engine.lenient import lenient_segments
from jaxattr.engine.trace import trace

TOL = dict(rtol=1e-12, atol=1e-12)


@jax.custom_vjp
def _scaled_sin(x):  # a custom_vjp whose backward is NOT the derivative: it must be kept
    return jnp.sin(x)


_scaled_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (2.0 * g * jnp.cos(x),))


@jax.custom_jvp
def _softclip(x):
    return jnp.tanh(x) * 2.0


_softclip.defjvp(lambda p, t: (_softclip(p[0]), 2.0 * (1 - jnp.tanh(p[0]) ** 2) * t[0]))


def _control_flow(params, x):
    """scan, fori_loop, while_loop, cond, switch, checkpoint, nested jit, custom_jvp/custom_vjp,
    softmax attention, a norm, an x-by-x product and a sort: everything the strict segmenter
    refuses."""
    h = x @ params["w"]
    h = jax.lax.cond(h.sum() > 0, lambda v: v * 2.0, jnp.tanh, h)
    _, ys = jax.lax.scan(lambda c, v: (jnp.tanh(c + v), c * v), h[:, 0], h.T)
    h = h + ys.T
    h = jax.lax.fori_loop(0, 3, lambda i, v: jnp.sin(v) + v, h)
    h = jax.lax.while_loop(lambda s: s[0] < 2, lambda s: (s[0] + 1, s[1]), (0, h))[1] * 1.5
    h = jax.checkpoint(lambda v: jnp.cos(v) * v)(h)
    h = jax.jit(lambda v: _scaled_sin(_softclip(v)))(h)
    h = jax.lax.switch(1, [lambda v: v, lambda v: v ** 2 + v], h)
    att = jax.nn.softmax(h[:, :, None] * h[:, None, :], axis=-1)
    h = jnp.einsum("bij,bj->bi", att, h) / jnp.linalg.norm(h, axis=-1, keepdims=True)
    h = jnp.sort(h, axis=-1) + jax.nn.gelu(h) * jax.nn.sigmoid(h)
    return h @ params["v"]


def _params(din=5, hidden=4, classes=3, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"w": jax.random.normal(k1, (din, hidden)), "v": jax.random.normal(k2, (hidden, classes))}


def _grad(fn, params, x, target):
    return jax.grad(lambda v: fn(params, v)[jnp.arange(x.shape[0]), target].sum())(x)


def test_gradient_family_on_control_flow_equals_jax_grad():
    """One example: the ``cond``'s predicate sums over the batch, which makes a batch of several
    examples depend on each other (refused: see below)."""
    with jax.enable_x64(True):
        params, x = _params(), jax.random.normal(jax.random.key(1), (1, 5))
        target = jnp.argmax(_control_flow(params, x), -1)
        methods = [ja.Gradient(), ja.GradientXInput(), ja.IntegratedGradients(steps=2),
                   ja.GuidedBackprop(), ja.DeconvNet()]
        got = O.jit_many(ja.attribute, _control_flow, params, x, methods)
        g = np.asarray(_grad(_control_flow, params, x, target))
        nodes, weights = np.polynomial.legendre.leggauss(2)
        ig = sum(w / 2 * np.asarray(_grad(_control_flow, params, (a + 1) / 2 * x, target))
                 for a, w in zip(nodes, weights))
        x = np.asarray(x)
    for name, r, want in zip(["gradient", "gxi", "ig", "guided", "deconv"], got,
                             [g, x * g, x * ig, g, g]):
        O.check(r, np.asarray(want), **TOL)
    assert np.abs(g).max() > 1e-3


def test_float32_gradient_is_jax_grad_within_1e6():
    params, x = _params(seed=3), jax.random.normal(jax.random.key(4), (1, 5))
    target = jnp.argmax(_control_flow(params, x), -1)
    got = np.asarray(ja.attribute(_control_flow, params, x))
    want = np.asarray(_grad(_control_flow, params, x, target))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_a_batch_level_predicate_is_refused():
    """With several examples, ``cond(h.sum() > 0, ...)`` picks one branch for the whole batch
    from every example: the gradient family refuses it too (its result would not be each
    example's own derivative), naming the reduction."""
    params, x = _params(seed=3), jax.random.normal(jax.random.key(4), (3, 5))
    with pytest.raises(ja.BatchCouplingError, match="'reduce_sum' .*batch axis 0"):
        ja.attribute(_control_flow, params, x)


ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "gelu": jax.nn.gelu,
               "silu": jax.nn.silu, "softplus": jax.nn.softplus, "elu": jax.nn.elu,
               "leaky_relu": jax.nn.leaky_relu, "relu6": jax.nn.relu6,
               "prelu": lambda v: jnp.where(v > 0, v, 0.2 * v)}


def _mlp(act):
    return lambda p, x: act(x @ p["w"]) @ p["v"]


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_guided_and_deconvnet_keep_the_derivative_of_non_relu_activations(act):
    """#16 item 7: DeconvNet used to return ``max(g, 0)`` through tanh/sigmoid/GELU (dropping
    their derivative) and Guided ``f'(x)·max(g, 0)``; as in Captum, only ReLUs are modified."""
    fn = _mlp(ACTIVATIONS[act])
    with jax.enable_x64(True):
        params, x = _params(seed=5), jax.random.normal(jax.random.key(6), (4, 5))
        grad, guided, deconv = O.jit_many(ja.attribute, fn, params, x,
                                          [ja.Gradient(), ja.GuidedBackprop(), ja.DeconvNet()])
        target = jnp.argmax(fn(params, x), -1)
        want = np.asarray(_grad(fn, params, x, target))
    O.check(grad, want, **TOL)
    np.testing.assert_array_equal(guided, grad)
    np.testing.assert_array_equal(deconv, grad)


@pytest.mark.parametrize("relu", [jax.nn.relu, lambda v: jnp.maximum(v, 0.0),
                                  lambda v: jnp.maximum(0.0, v), lambda v: jnp.maximum(v, 0)])
def test_relus_are_modified_as_in_the_papers(relu):
    """Through a ReLU of any spelling: Guided ``1[z > 0]·max(g, 0)``, DeconvNet ``max(g, 0)``."""
    fn = lambda p, x: relu(jnp.tanh(x @ p["w"]) @ p["u"]) @ p["v"]
    with jax.enable_x64(True):
        params = dict(_params(seed=7), u=jax.random.normal(jax.random.key(8), (4, 4)))
        x = jax.random.normal(jax.random.key(9), (4, 5))
        guided, deconv = O.jit_many(ja.attribute, fn, params, x,
                                    [ja.GuidedBackprop(), ja.DeconvNet()])
        t = jnp.argmax(fn(params, x), -1)
        z = jnp.tanh(x @ params["w"]) @ params["u"]
        g = jax.nn.one_hot(t, 3, dtype=x.dtype) @ params["v"].T
        back = lambda gz: (gz @ params["u"].T * (1 - jnp.tanh(x @ params["w"]) ** 2)) @ params["w"].T
        want_guided = back(jnp.where(z > 0, jnp.maximum(g, 0), 0))
        want_deconv = back(jnp.maximum(g, 0))
    O.check(guided, np.asarray(want_guided), **TOL)
    O.check(deconv, np.asarray(want_deconv), **TOL)
    assert np.abs(want_guided - want_deconv).max() > 1e-3


def test_layernorm_variance_clamp_is_not_a_relu():
    """Flax's LayerNorm computes ``max(0, E[x²] − E[x]²)``: a guard, not an activation."""
    model = nn.Sequential([nn.Dense(6), nn.LayerNorm(), nn.relu, nn.Dense(3)])
    x = jnp.ones((2, 4))
    params = model.init(jax.random.key(0), x)
    segs = lenient_segments(trace(model.apply, params, x))
    assert [(s.kind, s.nodes[0].prim) for s in segs] == [("activation", "custom_jvp_call")]


def test_lenient_segments_cut_out_relus_and_max_pools_only():
    model = nn.Sequential([nn.Conv(3, (3, 3)), nn.relu, lambda h: nn.max_pool(h, (2, 2), (2, 2)),
                           jnp.tanh, lambda h: h.reshape(h.shape[0], -1), nn.Dense(2)])
    x = jnp.ones((2, 4, 4, 1))
    params = model.init(jax.random.key(0), x)
    assert [s.kind for s in lenient_segments(trace(model.apply, params, x))] == [
        "activation", "maxpool"]
    rows = ja.engine.audit(model.apply, params, x, ja.GuidedBackprop())
    assert [r.rule for r in rows if r.kind == "activation"] == ["Guided()"]
    assert {r.kind for r in rows if r.primitive == "tanh"} == {"other"}


def test_rule_based_methods_name_the_methods_that_work():
    fn = lambda p, x: jnp.sort(x @ p["w"], axis=-1) @ p["v"]  # no rule covers a sort
    params, x = _params(), jnp.ones((2, 5))
    with pytest.raises(ja.UnsupportedPrimitiveError, match="'sort'") as info:
        ja.attribute(fn, params, x, method=ja.LRP())
    assert "ja.Gradient(), ja.GradientXInput()" in str(info.value)
    assert "ja.GuidedBackprop()" in str(info.value) and "ja.DeconvNet()" in str(info.value)
    # and the gradient family runs on it
    ja.attribute(fn, params, x, method=ja.SmoothGrad(samples=2))
