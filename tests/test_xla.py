"""Compiler options for backward programs: accepted by the pinned XLA, and only where they apply."""

import jax
import pytest
import jax.numpy as jnp
import numpy as np

import jaxattr as ja
from jaxattr import xla


def test_options_only_on_cpu_and_can_be_switched_off(monkeypatch):
    assert xla.backward_options("cpu") == xla.CPU_BACKWARD_OPTIONS
    assert xla.backward_options("gpu") == {}
    monkeypatch.setenv("JAXATTR_XLA_DEFAULTS", "1")
    assert xla.backward_options("cpu") == {}


def test_pinned_xla_accepts_the_options():
    # Fails loudly if an XLA release renames or drops the option: then update jaxattr.xla.
    f = lambda w, x: jax.grad(lambda x: jnp.tanh(jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))).sum())(x)
    x, w = jnp.ones((2, 6, 6, 8)), jnp.full((3, 3, 8, 4), 0.1)
    got = jax.jit(f, compiler_options=xla.CPU_BACKWARD_OPTIONS)(w, x)
    np.testing.assert_allclose(got, jax.jit(f)(w, x), rtol=1e-5, atol=1e-6)
    g = lambda w, x: jax.grad(lambda x: jnp.tanh(x @ w[0, 0]).sum())(x)  # a matrix product
    got = jax.jit(g, compiler_options=xla.CPU_BACKWARD_OPTIONS)(w, x)
    np.testing.assert_allclose(got, jax.jit(g)(w, x), rtol=1e-5, atol=1e-6)


def test_explain_works_inside_jit_grad_and_vmap():
    """Options belong to top-level programs only; nested calls use the outer program's."""
    f = lambda p, x: jnp.tanh(x @ p)
    p, x = jnp.ones((3, 2)) * 0.3, jnp.arange(12.0).reshape(4, 3) / 10
    explain = ja.explain(f, ja.GradientXInput())
    want = explain(p, x)
    np.testing.assert_allclose(jax.jit(explain)(p, x), want, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda x: explain(p, x[None])[0])(x), want, rtol=1e-6)
    assert jax.grad(lambda p: explain(p, x).sum())(p).shape == p.shape


def _conv(w, x):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_explain_compiles_its_top_level_program_with_the_options(monkeypatch):
    """One choice per program; a model that rejects ``x`` still gets its clear error, and the
    next good call runs."""
    seen = []
    monkeypatch.setattr(ja.api, "backward_options",
                        lambda: seen.append(xla.backward_options("cpu")) or seen[-1])
    w, x = jnp.full((3, 3, 2, 2), 0.1), jnp.ones((2, 5, 5, 2))
    conv_model = lambda w, x: _conv(w, x).mean(axis=(1, 2))
    explain = ja.explain(conv_model, ja.GradientXInput())
    explain(w, x), explain(w, x + 1.0)
    assert seen == [xla.CPU_BACKWARD_OPTIONS]
    explain = ja.explain(conv_model, ja.Gradient())
    with pytest.raises((TypeError, ValueError), match="model"):
        explain(w, jnp.ones((2, 5, 5, 3)))
    np.testing.assert_allclose(explain(w, x), ja.explain(conv_model, ja.GradientXInput())(w, x) / x,
                               rtol=1e-6)
