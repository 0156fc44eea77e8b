"""Values that depend on x behind ``stop_gradient`` (``jaxattr.engine.stopped``): DeepLIFT
refuses them, since their change between x and the reference would be credited to nothing;
a softmax's max shift (which the softmax cancels) and a stopped parameter are fine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja

HEAD = jnp.arange(8.0).reshape(4, 2)


def _shifted(stop: bool):
    def f(w, x):
        h = x @ w
        m = h.max(-1, keepdims=True)
        return jnp.tanh(h - (jax.lax.stop_gradient(m) if stop else m)) @ HEAD
    return f


def _data():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray(rng.normal(size=(2, 3)))


def test_deeplift_refuses_a_stopped_value_that_depends_on_x():
    with jax.enable_x64(True):
        w, x = _data()
        f = _shifted(stop=True)
        with pytest.raises(ja.UnsupportedPrimitiveError,
                           match="'stop_gradient' .*hides a value that depends on x from DeepLIFT"):
            ja.attribute(f, w, x, 1, ja.DeepLIFT())
        # methods without a reference take it as a constant, as jax.grad does
        grad = jax.grad(lambda v: f(w, v)[:, 1].sum())(x)
        np.testing.assert_allclose(ja.attribute(f, w, x, 1, ja.Gradient()), grad, rtol=1e-12)
        assert ja.attribute(f, w, x, 1, ja.LRP()).shape == x.shape
        # without the stop_gradient DeepLIFT sums to delta
        f = _shifted(stop=False)
        c = ja.attribute(f, w, x, 1, ja.DeepLIFT())
        np.testing.assert_allclose(c.sum(1), f(w, x)[:, 1] - f(w, 0 * x)[:, 1], rtol=1e-10)


@pytest.mark.parametrize("written", ["jax.nn.softmax", "by hand"])
def test_a_softmax_max_shift_and_a_stopped_parameter_are_fine(written):
    def softmax(z):
        if written == "jax.nn.softmax":
            return jax.nn.softmax(z, axis=-1)
        e = jnp.exp(z - jax.lax.stop_gradient(z.max(-1, keepdims=True)))
        return e / e.sum(-1, keepdims=True)

    def f(w, x):
        return softmax(x @ jax.lax.stop_gradient(w)) @ HEAD

    with jax.enable_x64(True):
        w, x = _data()
        c = ja.attribute(f, w, x, 1, ja.DeepLIFT())
        np.testing.assert_allclose(c.sum(1), f(w, x)[:, 1] - f(w, 0 * x)[:, 1], rtol=1e-10)
