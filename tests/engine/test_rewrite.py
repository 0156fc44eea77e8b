"""The interpreter's backward (``jaxattr.engine.rewrite.bind_rule``): an input a rule sends no
relevance to is a symbolic zero, and nothing that feeds only such inputs is computed."""
import jax
import numpy as np
import pytest

import jaxattr as ja


def _dots(fn, *args) -> int:
    """dot_general count of the lowered (dead code removed) program of ``fn``."""
    return jax.jit(fn).lower(*args).as_text().count("stablehlo.dot_general")


def _glu(held: bool):
    """``(x W₁) ⊙ σ(x W₂ W₃)``; ``held``: the gate behind ``stop_gradient`` (the cost floor)."""
    def f(p, x):
        gate = jax.nn.sigmoid(x @ p[1] @ p[2])
        return (x @ p[0]) * (jax.lax.stop_gradient(gate) if held else gate)
    return f


def test_gate_path_of_signal_take_all_is_not_computed():
    """Signal-take-all gives the gate nothing: its two products' backward must not run (the
    program has the dot count of the model whose gate is behind ``stop_gradient``)."""
    key = jax.random.split(jax.random.key(0), 4)
    p = tuple(jax.random.normal(k, s) for k, s in zip(key, [(5, 3), (5, 4), (4, 3)]))
    x = jax.random.normal(key[3], (2, 5))
    method = ja.LRP(ja.composites.lstm_signal_take_all(1e-30))
    explain = lambda held: lambda p, x: ja.attribute(_glu(held), p, x, method=method)
    assert _dots(explain(False), p, x) == _dots(explain(True), p, x)
    # and the relevance is what the rule says: all of it to the signal, none through the gate
    # (with the gate held the product is a scaling, whose ε-rule passes all of it as ε → 0)
    np.testing.assert_allclose(explain(False)(p, x), explain(True)(p, x), rtol=1e-5, atol=1e-7)


def test_held_inputs_skip_their_backward_on_attention():
    """CP-LRP holds the attention weights: the scores' backward (``QKᵀ`` and the ``A`` side of
    ``AV``) is not computed, so its program has fewer products than AttnLRP's; both keep the
    LayerNorm statistics out (their scale is held by both)."""
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, h):
            h = h + nn.MultiHeadDotProductAttention(2)(nn.LayerNorm()(h))
            return nn.Dense(3)(nn.LayerNorm()(h).mean(axis=1))

    x = jax.random.normal(jax.random.key(0), (2, 4, 8))
    model = Block()
    params = model.init(jax.random.key(1), x)
    dots = {c: _dots(lambda p, x, c=c: ja.attribute(model.apply, p, x, method=ja.LRP(
        getattr(ja.composites, c)())), params, x) for c in ("cp_lrp", "attn_lrp")}
    assert dots["cp_lrp"] < dots["attn_lrp"]


def test_a_skipped_rule_still_reports_its_errors():
    """A segment reached only by symbolic zeros still traces its rule: a rule on the wrong
    segment raises as it would with relevance (here ConstantAttention on ``QKᵀ``, upstream of
    the held weights)."""
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (2, 4, 8))
    model = nn.MultiHeadDotProductAttention(2)
    apply = lambda p, x: model.apply(p, x).mean(axis=1)
    params = model.init(jax.random.key(1), x)
    wrong = (ja.composites.Composite((("bilinear", ja.rules.ConstantAttention()),))
             + ja.composites.attn_lrp())
    with pytest.raises(ValueError, match="ConstantAttention"):
        ja.attribute(apply, params, x, method=ja.LRP(wrong))
