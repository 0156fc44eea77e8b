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


def _in_scan(stop: bool):
    """The stopped shift inside a ``scan`` body, over 3 steps of a recurrent state."""
    def f(w, x):
        def step(h, _):
            z = (h + x) @ w
            m = z.max(-1, keepdims=True)
            return jnp.tanh(z - (jax.lax.stop_gradient(m) if stop else m)), None
        h, _ = jax.lax.scan(step, x @ w, None, length=3)
        return h @ HEAD[:3]
    return f


def _in_cond(stop: bool):
    """The stopped value inside the ``cond`` branch taken (the predicate is a parameter)."""
    def f(w, x):
        def branch(h):
            return jnp.tanh(h - (jax.lax.stop_gradient(h) if stop else 0.0) * 0.5)
        h = jax.lax.cond(w[0, 0] > -10.0, branch, jnp.sin, x @ w)
        return h @ HEAD[:3]
    return f


@pytest.mark.parametrize("where", [_in_scan, _in_cond], ids=["scan body", "cond branch"])
def test_deeplift_refuses_a_stopped_value_inside_a_body(where):
    """The same check in ``scan`` bodies and ``cond`` branches, where the value would again be
    credited to nothing; without the stop_gradient the body sums to delta."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        w, x = jnp.asarray(rng.normal(size=(3, 3))), jnp.asarray(rng.normal(size=(2, 3)))
        f = where(stop=True)
        with pytest.raises(ja.UnsupportedPrimitiveError,
                           match="'stop_gradient' .*hides a value that depends on x from DeepLIFT"):
            ja.attribute(f, w, x, 1, ja.DeepLIFT())
        f = where(stop=False)
        c = ja.attribute(f, w, x, 1, ja.DeepLIFT())
        np.testing.assert_allclose(c.sum(1), f(w, x)[:, 1] - f(w, 0 * x)[:, 1], rtol=1e-10)


def test_a_softmax_inside_a_scan_body_is_fine():
    """Layers scanned over (``nn.scan``'s pattern) with a softmax in the body: its max shift is
    exempt there too, and DeepLIFT sums to delta."""
    def f(ws, x):
        def layer(h, w):
            return h + jax.nn.softmax(h @ w, axis=-1) @ w.T, None
        return jax.lax.scan(layer, x, ws)[0] @ HEAD[:3]

    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        ws, x = jnp.asarray(rng.normal(size=(2, 3, 3))), jnp.asarray(rng.normal(size=(2, 3)))
        c = ja.attribute(f, ws, x, 1, ja.DeepLIFT())
        np.testing.assert_allclose(c.sum(1), f(ws, x)[:, 1] - f(ws, 0 * x)[:, 1], rtol=1e-10)
