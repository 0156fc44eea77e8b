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


def test_has_convolution_looks_into_every_jaxpr_the_program_calls():
    w, x = jnp.ones((3, 3, 2, 2)), jnp.ones((1, 5, 5, 2))
    assert not xla.has_convolution(lambda w, x: jnp.tanh(x @ w[0, 0]), w, x)
    assert xla.has_convolution(_conv, w, x)
    in_bodies = lambda w, x: jax.lax.scan(
        lambda c, _: (jax.lax.cond(c.sum() > 0, lambda: _conv(w, c), lambda: c), None),
        x, None, length=2)[0]
    assert xla.has_convolution(in_bodies, w, x)

    @jax.custom_vjp
    def custom(w, x):
        return _conv(w, x)

    custom.defvjp(lambda w, x: (custom(w, x), None), lambda _, g: (None, g))
    assert xla.has_convolution(jax.jit(lambda w, x: jax.checkpoint(custom)(w, x)), w, x)


def test_program_options_turn_ynn_off_only_for_convolutions(monkeypatch):
    """XLA's defaults are as fast or faster on dense-only models (see jaxattr.xla)."""
    w, x = jnp.ones((3, 3, 2, 2)), jnp.ones((1, 5, 5, 2))
    dense = lambda w, x: jnp.tanh(x @ w[0, 0])
    assert xla.backward_options("cpu", convolution=False) == {}
    assert xla.program_options(dense, w, x, backend="cpu") == {}
    assert xla.program_options(_conv, w, x, backend="cpu") == xla.CPU_BACKWARD_OPTIONS
    assert xla.program_options(_conv, w, x, backend="gpu") == {}

    def untraceable(w, x):
        raise AssertionError("traced although no option can apply")

    monkeypatch.setenv("JAXATTR_XLA_DEFAULTS", "1")
    assert xla.program_options(untraceable, w, x, backend="cpu") == {}


def test_explain_compiles_with_the_models_options(monkeypatch):
    """``ja.explain`` asks once per program, from the model's first call; a model that rejects
    ``x`` still gets its clear error (the options' trace does not preempt it), and the next
    good call runs (with the options for a convolution: only a speed choice)."""
    seen = []
    real = ja.api.program_options
    monkeypatch.setattr(ja.api, "program_options",
                        lambda fn, *args: seen.append(real(fn, *args, backend="cpu")) or seen[-1])
    w, x = jnp.full((3, 3, 2, 2), 0.1), jnp.ones((2, 5, 5, 2))
    conv_model = lambda w, x: _conv(w, x).mean(axis=(1, 2))
    dense_model = lambda w, x: jnp.tanh(x.reshape(x.shape[0], -1) @ jnp.ones((50, 3)))
    for model in (conv_model, dense_model):
        explain = ja.explain(model, ja.GradientXInput())
        explain(w, x), explain(w, x + 1.0)
    assert seen == [xla.CPU_BACKWARD_OPTIONS, {}]
    explain = ja.explain(conv_model, ja.Gradient())
    with pytest.raises((TypeError, ValueError), match="model"):
        explain(w, jnp.ones((2, 5, 5, 3)))
    np.testing.assert_allclose(explain(w, x), ja.explain(conv_model, ja.GradientXInput())(w, x) / x,
                               rtol=1e-6)
