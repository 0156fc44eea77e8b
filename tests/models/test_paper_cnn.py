import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.models import PaperCNN, max_pool_2x2, small_paper_cnn

LAYERS = [f"block{b}_conv{c}" for b in (1, 2, 3) for c in (1, 2)] + ["dense1", "dense2"]


def shapes(model, x_shape):
    """Parameter and output shapes without compiling (eval_shape)."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    return variables["params"], out


@pytest.mark.parametrize(
    "x_shape, flat", [((5, 32, 32, 3), 4 * 4 * 128), ((5, 8, 8, 1), 1 * 1 * 128)]
)
def test_paper_cnn_shapes_for_cifar_and_digits(x_shape, flat):
    params, out = shapes(PaperCNN(), x_shape)
    assert out.shape == (5, 10)
    assert sorted(params) == sorted(LAYERS)
    assert params["block1_conv1"]["kernel"].shape == (3, 3, x_shape[-1], 32)
    assert params["block2_conv2"]["kernel"].shape == (3, 3, 64, 64)
    assert params["block3_conv2"]["kernel"].shape == (3, 3, 128, 128)
    assert params["dense1"]["kernel"].shape == (flat, 512)
    assert params["dense2"]["kernel"].shape == (512, 10)


def test_small_paper_cnn_has_the_same_layers_and_runs():
    model = small_paper_cnn(num_classes=3)
    x = jnp.asarray(np.random.default_rng(0).random((2, 8, 8, 1), np.float32))
    with jax.threefry_partitionable(False):  # compiles ~3x faster on CPU
        params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    assert sorted(params) == sorted(LAYERS)
    logits = jax.jit(model.apply)({"params": params}, x)
    assert logits.shape == (2, 3)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_paper_cnn_rejects_bad_input():
    with pytest.raises(ValueError, match=r"NHWC.*got shape \(2, 8, 8\)"):
        shapes(PaperCNN(), (2, 8, 8))
    with pytest.raises(TypeError, match="floating dtype, got int32"):
        PaperCNN().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1), jnp.int32))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (4, 6, 4, 1), (3, 2, 2, 5)])
def test_max_pool_2x2_equals_nn_max_pool(shape):
    x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
    reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")

    @jax.jit
    def both(x):
        # Continuous random input has no ties, so the gradients agree as well.
        grad = lambda pool: jax.grad(lambda x: jnp.sum(jnp.sin(pool(x))))(x)
        return max_pool_2x2(x), reference(x), grad(max_pool_2x2), grad(reference)

    out, out_ref, g, g_ref = both(x)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)


def test_max_pool_2x2_uses_reshape_max_when_even():
    jaxpr = str(jax.make_jaxpr(max_pool_2x2)(jnp.zeros((1, 4, 4, 2))))
    assert "reduce_max" in jaxpr and "reduce_window" not in jaxpr


def test_max_pool_2x2_odd_sizes_fall_back_to_nn_max_pool():
    x = jnp.arange(2 * 5 * 7 * 1, dtype=jnp.float32).reshape(2, 5, 7, 1)
    out = max_pool_2x2(x)
    assert out.shape == (2, 2, 3, 1)
    np.testing.assert_array_equal(
        out, nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    )
    assert "reduce_window_max" in str(jax.make_jaxpr(max_pool_2x2)(x))


def test_max_pool_2x2_rejects_low_rank_input():
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, C\), got shape \(4,\)"):
        max_pool_2x2(jnp.zeros(4))
