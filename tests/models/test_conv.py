import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxattr.models import PaperCNN, patches_conv

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(scope="module")
def xk():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 7, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, 5)), jnp.float32)
    return x, k


@pytest.mark.parametrize("padding", ["SAME", "VALID", [(1, 1), (1, 1)], [(0, 2), (1, 0)]])
def test_patches_conv_equals_lax_conv(xk, padding):
    x, k = xk
    expected = lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DIMS)
    got = patches_conv(x, k, (1, 1), padding, dimension_numbers=DIMS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert "dot_general" in str(jax.make_jaxpr(
        lambda x, k: patches_conv(x, k, (1, 1), padding, dimension_numbers=DIMS))(x, k))


def test_other_convolutions_fall_back_to_lax(xk):
    x, k = xk
    for kwargs in (dict(window_strides=(2, 2)), dict(window_strides=(1, 1), rhs_dilation=(2, 2))):
        got = patches_conv(x, k, padding="SAME", dimension_numbers=DIMS, **kwargs)
        expected = lax.conv_general_dilated(x, k, padding="SAME", dimension_numbers=DIMS, **kwargs)
        np.testing.assert_array_equal(got, expected)


def test_paper_cnn_with_patches_conv_has_the_same_params_and_outputs(xk):
    x = jnp.concatenate([xk[0], xk[0][:, :, :1]], axis=2)  # (2, 8, 8, 3)
    plain, fast = PaperCNN(features=(4, 8, 8), dense=16), PaperCNN(
        features=(4, 8, 8), dense=16, conv_general_dilated=patches_conv
    )
    with jax.threefry_partitionable(False):
        params = jax.jit(plain.init)(jax.random.key(0), x)["params"]
        params_fast = jax.jit(fast.init)(jax.random.key(0), x)["params"]
    jax.tree.map(np.testing.assert_array_equal, params, params_fast)

    @jax.jit
    def outputs_and_grads(params):
        loss = lambda m: lambda p: jnp.sum(jnp.tanh(m.apply({"params": p}, x)))
        return [(m.apply({"params": params}, x), jax.grad(loss(m))(params)) for m in (plain, fast)]

    (out, grad), (out_fast, grad_fast) = outputs_and_grads(params)
    np.testing.assert_allclose(out_fast, out, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grad_fast, grad)
