"""The engine's faster primitive implementations: same forward values, same derivatives."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxattr as ja
from jaxattr.engine import fast
from jaxattr.engine.trace import trace


def _conv_node(x, w, **kw):
    """The traced conv node of ``conv_general_dilated(x, w, **kw)`` and its input avals."""
    graph = trace(lambda p, x: lax.conv_general_dilated(x, p, **kw), w, x)
    node = next(n for n in graph.nodes if n.prim == "conv_general_dilated")
    return node, [graph.avals[a] for a in node.ins]


CASES = [  # (x shape, kernel shape, padding, dimension numbers)
    ((2, 9, 7, 3), (3, 3, 3, 5), "SAME", ("NHWC", "HWIO", "NHWC")),
    ((3, 8, 8, 1), (3, 2, 1, 4), "VALID", ("NHWC", "HWIO", "NHWC")),
    ((2, 6, 5, 2), (2, 3, 2, 3), ((2, 0), (1, 3)), ("NHWC", "HWIO", "NHWC")),
    ((4, 40, 4), (15, 4, 6), "VALID", ("NWC", "WIO", "NWC")),  # one-hot DNA, genomics CNN
    ((2, 11, 3), (5, 3, 2), ((3, 1),), ("NWC", "WIO", "NWC")),
]


@pytest.mark.parametrize("x_shape, w_shape, padding, dn", CASES)
def test_narrow_conv_has_the_convolutions_values_and_derivatives(x_shape, w_shape, padding, dn):
    with jax.enable_x64():
        x = jax.random.normal(jax.random.key(0), x_shape, jnp.float64)
        w = jax.random.normal(jax.random.key(1), w_shape, jnp.float64)
        kw = dict(window_strides=(1,) * (len(x_shape) - 2), padding=padding, dimension_numbers=dn)
        node, avals = _conv_node(x, w, **kw)
        impl = fast.fast_impl(node, avals)
        assert impl is not None
        plain = lambda x, w: lax.conv_general_dilated(x, w, **kw)
        np.testing.assert_array_equal(impl(x, w), plain(x, w))  # forward: the same primitive
        g = jax.random.normal(jax.random.key(2), plain(x, w).shape, jnp.float64)
        want = jax.vjp(plain, x, w)[1](g)
        got = jax.vjp(impl, x, w)[1](g)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        # under jit and vmap too
        got = jax.jit(jax.vmap(lambda x, g: jax.vjp(impl, x[None], w)[1](g[None])[0][0]))(x, g)
        np.testing.assert_allclose(got, want[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("change", [
    dict(window_strides=(2, 2)), dict(rhs_dilation=(2, 2)), dict(lhs_dilation=(2, 2)),
    dict(channels=8), dict(kernel=(1, 1)), dict(dimension_numbers=("NCHW", "OIHW", "NCHW")),
])
def test_narrow_conv_only_takes_stride_1_channels_last_narrow_convolutions(change):
    channels, kernel = change.pop("channels", 3), change.pop("kernel", (3, 3))
    dn = change.pop("dimension_numbers", ("NHWC", "HWIO", "NHWC"))
    x_shape = (2, 8, 8, channels) if dn[0] == "NHWC" else (2, channels, 8, 8)
    w_shape = (*kernel, channels, 4) if dn[1] == "HWIO" else (4, channels, *kernel)
    x, w = jnp.ones(x_shape), jnp.ones(w_shape)
    kw = {"window_strides": (1, 1), "padding": ((1, 1), (1, 1)), "dimension_numbers": dn, **change}
    assert fast.fast_impl(*_conv_node(x, w, **kw)) is None


def test_tiled_max_pool_only_takes_windows_that_tile_the_input():
    node = types.SimpleNamespace(prim="reduce_window_max", params=dict(
        window_dimensions=(1, 2, 2, 1), window_strides=(1, 2, 2, 1), padding=((0, 0),) * 4,
        base_dilation=(1,) * 4, window_dilation=(1,) * 4))
    aval = lambda shape: jax.core.ShapedArray(shape, jnp.float32)
    impl = fast.fast_impl(node, [aval((2, 4, 6, 3))])
    x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
    np.testing.assert_array_equal(impl(x), lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1),
                                                             (1, 2, 2, 1), "VALID"))
    assert fast.fast_impl(node, [aval((2, 5, 6, 3))]) is None  # 5 rows: windows do not tile
    assert fast.fast_impl(node, [None]) is None  # unknown shape


def test_first_layer_attributions_match_plain_autodiff():
    """A 3-channel image model and a 4-channel DNA model: the gradient through the im2col
    backward equals ``jax.grad`` (float64), and so does a parameter gradient through it."""
    from jaxattr.models.genomics_cnn import GenomicsCNN
    from jaxattr.models.paper_cnn import PaperCNN

    with jax.enable_x64():
        for model, shape in [(PaperCNN(features=(4, 6, 8), dense=16), (3, 16, 16, 3)),
                             (GenomicsCNN(), (3, 200, 4))]:
            x = jax.random.uniform(jax.random.key(0), shape, jnp.float64)
            params = model.init(jax.random.key(1), x[:1])
            target = jnp.array([0, 0, 0])

            def plain(params, x):
                return jax.grad(lambda x: model.apply(params, x)[:, 0].sum())(x)

            got = ja.attribute(model.apply, params, x, target)
            np.testing.assert_allclose(got, plain(params, x), rtol=1e-10, atol=1e-14)
            d_got = jax.grad(lambda p: ja.attribute(model.apply, p, x, target).sum())(params)
            d_want = jax.grad(lambda p: plain(p, x).sum())(params)
            for a, b in zip(jax.tree.leaves(d_got), jax.tree.leaves(d_want)):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
