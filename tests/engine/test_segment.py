"""The segmenter: what each model's equations become, and loud errors for what no rule covers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxattr as ja
from jaxattr.engine import UnsupportedPrimitiveError, segment, trace


class BNResNet(nn.Module):
    """Conv + inference BN, a residual add, average pool, max pool, flatten, dense."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(3, (3, 3))(x)))
        h = nn.Conv(3, (3, 3), use_bias=False)(h) + h
        h = nn.avg_pool(h, (2, 2), (2, 2))
        h = nn.max_pool(nn.relu(h), (2, 2), (1, 1))
        return nn.Dense(4)(h.reshape(h.shape[0], -1))


def kinds(fn, params, x):
    return [s.kind for s in segment(trace(fn, params, x))]


def test_linen_segments_fold_bias_and_batchnorm():
    model, x = BNResNet(), jnp.ones((2, 6, 6, 2))
    params = model.init(jax.random.key(0), x)
    segs = segment(trace(model.apply, params, x))
    # the average pool is one "sum" segment: window sum and division (rules see the mean)
    assert [s.kind for s in segs] == ["conv", "activation", "conv", "sum", "sum",
                                      "activation", "maxpool", "dense"]
    assert [n.prim for n in segs[4].nodes] == ["reduce_window_sum", "div"]
    first = segs[0]
    # conv + bias add + batch norm (sub, mul, add) is one layer
    assert [n.prim for n in first.nodes] == ["conv_general_dilated", "add", "sub", "mul", "add"]
    assert first.is_first and first.name.endswith("Conv_0")
    assert segs[-1].is_last and segs[-1].name.endswith("Dense_0")
    # the second conv reads a ReLU output, so its input is known to be non-negative
    assert segs[2].nonneg_input


def test_folded_layer_matches_forward():
    """The view's z(x) with unmodified parameters equals the traced forward of the segment."""
    from jaxattr.engine.layer import make_view
    from jaxattr.engine.rewrite import environment

    model, x = BNResNet(), jax.random.normal(jax.random.key(1), (2, 6, 6, 2))
    params = model.init(jax.random.key(0), x)
    params = jax.tree_util.tree_map(lambda v: v + 0.3, params)  # non-trivial BN statistics
    graph = trace(model.apply, params, x)
    env = environment(graph, jax.tree_util.tree_leaves(params) + [x])
    seg = segment(graph)[0]
    view = make_view(seg, [env[v] for v in seg.consts()])
    assert view.scale is not None and view.bias is not None
    z = view.z(env[seg.inputs[0]])
    assert jnp.allclose(z, env[seg.output], atol=1e-5)
    # the positive part of the folded weight, without materialising it
    w_folded = view.weight * view.scale.reshape(1, 1, 1, -1)
    lin = lambda w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert jnp.allclose(view.z(x, (("pos", 1.0),), ()), lin(jnp.maximum(w_folded, 0)), atol=1e-5)
    assert jnp.allclose(view.z(x, (("neg", 1.0),), ()), lin(jnp.minimum(w_folded, 0)), atol=1e-5)


def test_plain_jax_and_prelu_region():
    def f(p, x):
        h = x @ p["w1"]
        h = jnp.where(h >= 0, h, 0.1 * h)  # PReLU-like: one activation region of several ops
        return jnp.tanh(h) @ p["w2"]

    p = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
    segs = segment(trace(f, p, jnp.ones((2, 3))))
    assert [s.kind for s in segs] == ["dense", "activation", "dense"]
    assert {n.prim for n in segs[1].nodes} >= {"ge", "mul", "select_n", "tanh"}


def test_nnx_model_segments_without_names():
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.b(nnx.relu(self.a(x)))

    graphdef, state = nnx.split(MLP(nnx.Rngs(0)))
    fn = lambda s, x: nnx.merge(graphdef, s)(x)
    segs = segment(trace(fn, state, jnp.ones((2, 3))))
    assert [s.kind for s in segs] == ["dense", "activation", "dense"]
    assert segs[0].is_first and segs[2].is_last


@pytest.mark.parametrize("fn, match", [
    (lambda p, x: jnp.sort(x @ p, axis=-1), "sort"),
    (lambda p, x: jax.nn.softmax(x @ p), "softmax"),
    # a tensor contracted with itself (attention's QKᵀ of two tensors is a bilinear segment)
    (lambda p, x: (lambda h: jnp.einsum("bi,bj->bij", h, h).reshape(2, -1))(x @ p), "by itself"),
    (lambda p, x: (x / x.sum(-1, keepdims=True)) @ p, "x-dependent"),
])
def test_uncovered_primitives_raise(fn, match):
    p = jnp.ones((3, 3))
    with pytest.raises(UnsupportedPrimitiveError, match=match):
        segment(trace(fn, p, jnp.ones((2, 3))))
    with pytest.raises(UnsupportedPrimitiveError, match=match):
        ja.attribute(fn, p, jnp.ones((2, 3)), method=ja.LRP(ja.rules.Epsilon()))


def test_error_names_module_path():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return jnp.sort(nn.Dense(3, name="proj")(x), axis=-1)

    x = jnp.ones((2, 3))
    params = Net().init(jax.random.key(0), x)
    with pytest.raises(UnsupportedPrimitiveError, match="Net/proj|Net"):
        ja.attribute(Net().apply, params, x, method=ja.LRP())  # the gradient needs no rule


def test_stop_gradient_removes_dependence():
    fn = lambda p, x: jax.lax.stop_gradient(jnp.sort(x, axis=-1)) + x @ p
    # the sorted copy is a constant for the rules: it becomes the dense layer's bias
    assert kinds(fn, jnp.ones((3, 3)), jnp.ones((2, 3))) == ["dense"]


def test_nonneg_input_only_when_every_float_input_is_nonneg():
    """ZPlus/Gamma skip x⁻ terms on inputs known >= 0; a concatenation with a signed tensor is not."""
    p = {"a": jnp.ones((3, 2)), "b": -jnp.ones((3, 2)), "c": jnp.ones((4, 2))}
    mixed = lambda p, x: jnp.concatenate([jax.nn.relu(x @ p["a"]), x @ p["b"]], -1) @ p["c"]
    relu = lambda p, x: jnp.concatenate([jax.nn.relu(x @ p["a"])] * 2, -1) @ p["c"]
    last = lambda f: [s for s in segment(trace(f, p, jnp.ones((2, 3)))) if s.kind == "dense"][-1]
    assert not last(mixed).nonneg_input
    assert last(relu).nonneg_input
