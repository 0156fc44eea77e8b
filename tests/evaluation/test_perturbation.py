"""Perturbations and the step inputs built from them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxattr.evaluation import Blur, Mean, Uniform, Zeros, perturbed_inputs

RNG = np.random.default_rng(0)
IMAGE = jnp.asarray(RNG.random((9, 7, 3)), jnp.float32)


def test_zeros_and_mean_fill_a_constant():
    key = jax.random.key(0)
    np.testing.assert_array_equal(Zeros()(key, IMAGE), np.zeros(IMAGE.shape))
    np.testing.assert_allclose(Mean()(key, IMAGE), np.full(IMAGE.shape, np.asarray(IMAGE).mean()), rtol=1e-6)


def test_uniform_is_in_range_per_pixel_and_channel_and_keyed():
    draw = np.asarray(Uniform(-2.0, 3.0)(jax.random.key(0), jnp.zeros((64, 64, 3))))
    assert draw.min() >= -2.0 and draw.max() < 3.0
    assert abs(draw.mean() - 0.5) < 0.05 and abs(draw.std() - 5 / np.sqrt(12)) < 0.05
    assert not np.array_equal(draw[..., 0], draw[..., 1])  # independent channels ("random RGB value")
    np.testing.assert_array_equal(draw, Uniform(-2.0, 3.0)(jax.random.key(0), jnp.zeros((64, 64, 3))))
    assert not np.array_equal(draw, Uniform(-2.0, 3.0)(jax.random.key(1), jnp.zeros((64, 64, 3))))


@pytest.mark.parametrize("sigma", [0.5, 3.0])  # 3σ: the kernel is wider than the image
def test_blur_matches_scipy_gaussian_filter(sigma):
    want = scipy.ndimage.gaussian_filter(np.asarray(IMAGE, np.float64), (sigma, sigma, 0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(jax.jit(Blur(sigma))(jax.random.key(0), IMAGE), want, rtol=1e-5, atol=1e-6)


def test_presets_are_hashable_static_arguments():
    assert hash(Uniform(0.0, 1.0)) == hash(Uniform(0.0, 1.0)) and Blur(2.0) == Blur(2.0)


def test_step_inputs_perturb_all_channels_cumulatively_with_fixed_values():
    x = jnp.asarray(RNG.random((2, 6, 6, 3)), jnp.float32)
    rel = jnp.asarray(RNG.standard_normal(x.shape), jnp.float32)
    steps = perturbed_inputs(x, rel, region=2, steps=3, perturbation="uniform", low=5.0, high=6.0)
    x, steps = np.asarray(x), np.asarray(steps)
    assert steps.shape == (2, 4, 6, 6, 3)
    np.testing.assert_array_equal(steps[:, 0], x)  # column 0: the original image
    changed = steps != x[:, None]  # the replacement lies in [5, 6), the data in [0, 1)
    # a pixel is perturbed in all channels or in none (iNNvestigate ≤ 2.0.1 / Quantus bug: only the first)
    assert np.all(changed.all(axis=-1) == changed.any(axis=-1))
    per_step = changed[..., 0].sum(axis=(2, 3))
    np.testing.assert_array_equal(per_step, [[0, 12, 24, 36]] * 2)  # 9 regions of 2×2, 3 per step
    # cumulative: once perturbed, a pixel stays perturbed with the same value
    for k in range(1, 3):
        earlier = changed[:, k]
        assert np.all(changed[:, k + 1][earlier])
        np.testing.assert_array_equal(steps[:, k + 1][earlier], steps[:, k][earlier])


def test_step_inputs_follow_the_relevance_order():
    x = jnp.ones((1, 4, 4, 3))
    rel = jnp.zeros(x.shape).at[0, 3, 3, 2].set(5.0).at[0, 0, 1, 0].set(3.0)  # summed over channels
    steps = np.asarray(perturbed_inputs(x, rel, region=1, steps=16, perturbation="zeros"))
    assert steps[0, 1, 3, 3].tolist() == [0, 0, 0] and steps[0, 1].sum() == 15 * 3
    assert steps[0, 2, 0, 1].tolist() == [0, 0, 0] and steps[0, 2].sum() == 14 * 3
    # then ties (relevance 0) in raster order: pixel (0, 0)
    assert steps[0, 3, 0, 0].tolist() == [0, 0, 0]


def test_callable_perturbation_is_called_per_image_with_its_key():
    x = jnp.asarray(RNG.random((3, 4, 4, 2)), jnp.float32)
    rel = jnp.asarray(RNG.standard_normal(x.shape), jnp.float32)
    seen_shapes = []

    def half(key, image):
        seen_shapes.append(image.shape)
        return jnp.full_like(image, 0.5)

    steps = np.asarray(perturbed_inputs(x, rel, region=4, steps=1, perturbation=half))
    assert seen_shapes[0] == (4, 4, 2)
    np.testing.assert_array_equal(steps[:, 1], np.full((3, 4, 4, 2), 0.5, np.float32))


def test_every_order_sees_the_same_replacement_values():
    """Common random numbers: MoRF, LeRF and the random baseline of an image differ only in
    which pixels are replaced, not in the values they are replaced with."""
    x = jnp.asarray(RNG.random((2, 4, 4, 3)), jnp.float32)
    rel = jnp.asarray(RNG.standard_normal(x.shape), jnp.float32)
    morf, rand = (np.asarray(perturbed_inputs(x, rel, region=1, steps=2, order=o, key=jax.random.key(7)))
                  for o in ("morf", "random"))
    np.testing.assert_array_equal(morf[:, -1], rand[:, -1])  # everything replaced: identical
    assert not np.array_equal(morf[:, 1], rand[:, 1])  # but different pixels at the half-way step
