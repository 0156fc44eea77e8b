"""The segmenter on attention: ``QKᵀ``/``AV`` are bilinear segments, a softmax inside the model
is one ``softmax`` segment however it is written, and what no rule covers still raises."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxattr as ja
from jaxattr.engine import UnsupportedPrimitiveError, segment, trace


class _Attention(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.MultiHeadDotProductAttention(2)(x)
        return nn.Dense(3)(h.mean(1))


def _attention():
    x = jax.random.normal(jax.random.key(0), (2, 4, 6))
    return _Attention(), _Attention().init(jax.random.key(1), x), x


def test_flax_attention_segments_and_audit():
    model, params, x = _attention()
    segs = segment(trace(model.apply, params, x))
    kinds = [s.kind for s in segs]
    assert kinds.count("bilinear") == 2 and kinds.count("softmax") == 1
    qk, av = [s for s in segs if s.kind == "bilinear"]
    assert qk.held == () and len(av.held) == 1  # A of A·V is the softmax's output
    soft = next(s for s in segs if s.kind == "softmax")
    assert {n.prim for n in soft.nodes} >= {"sub", "exp", "reduce_sum", "div"}
    assert "MultiHeadDotProductAttention" in soft.name
    rows = ja.engine.audit(model.apply, params, x, ja.LRP(ja.composites.cp_lrp()))
    rules = {(r.kind, r.rule) for r in rows}
    assert ("softmax", "Constant()") in rules
    assert ("bilinear", "ConstantAttention(epsilon=1e-06)") in rules
    assert ("bilinear", "Uniform(epsilon=1e-06)") in rules
    rows = ja.engine.audit(model.apply, params, x, ja.LRP(ja.composites.attn_lrp()))
    assert ("softmax", "SoftmaxTaylor()") in {(r.kind, r.rule) for r in rows}


def _scores(p, x):
    return jnp.einsum("bqd,bkd->bqk", x @ p, x @ p)


SOFTMAXES = {
    "jax.nn.softmax": lambda s: jax.nn.softmax(s, axis=-1),
    "no stop_gradient": lambda s: (lambda e: e / e.sum(-1, keepdims=True))(
        jnp.exp(s - s.max(-1, keepdims=True))),
    "unshifted": lambda s: jnp.exp(s) / jnp.exp(s).sum(-1, keepdims=True),
    "where=": lambda s: jax.nn.softmax(s, axis=-1, where=jnp.tril(jnp.ones((3, 3), bool))),
    "axis 1": lambda s: jax.nn.softmax(s, axis=1),
}


@pytest.mark.parametrize("name", SOFTMAXES)
def test_softmax_written_any_way_is_one_segment(name):
    soft = SOFTMAXES[name]
    f = lambda p, x: jnp.einsum("bqk,bkd->bqd", soft(_scores(p, x)), x).sum(1)
    p, x = jnp.eye(2), jax.random.normal(jax.random.key(2), (2, 3, 2))
    kinds = [s.kind for s in segment(trace(f, p, x))]
    assert kinds.count("softmax") == 1 and "activation" not in kinds, kinds
    # the relevance through it is finite, and DeepLIFT still sums to delta
    with jax.enable_x64(True):
        p, x = p.astype(jnp.float64), x.astype(jnp.float64)
        r = ja.attribute(f, p, x, jnp.array([0, 1]), ja.LRP(ja.composites.attn_lrp()))
        assert bool(jnp.all(jnp.isfinite(r)))
        c = ja.attribute(f, p, x, jnp.array([0, 1]), ja.DeepLIFT(0.1))
        check = ja.evaluation.checks.summation_to_delta(f, p, x, c, 0.1, jnp.array([0, 1]))
        assert float(check.error.max()) < 1e-10


def test_custom_jvp_softmax_is_a_softmax_not_an_activation():
    """Under ``jax_softmax_custom_jvp`` jax.nn.softmax is one ``custom_jvp_call``: elementwise in
    shape, but it must not pass for an activation (LRP would pass relevance straight through)."""
    f = lambda p, x: jax.nn.softmax(x @ p, axis=-1) @ p
    with jax.softmax_custom_jvp(True):
        kinds = [s.kind for s in segment(trace(f, jnp.ones((3, 3)), jnp.ones((2, 3))))]
        assert kinds == ["dense", "softmax", "dense"]
        with pytest.raises(UnsupportedPrimitiveError, match="explain the logits|Explain the logits"):
            segment(trace(lambda p, x: jax.nn.softmax(x @ p), jnp.ones((3, 3)), jnp.ones((2, 3))))


def test_custom_call_with_a_reduction_is_refused():
    @jax.custom_jvp
    def centre(v):
        return v - v.mean(-1, keepdims=True)

    centre.defjvp(lambda primals, tangents: (centre(*primals), centre(*tangents)))
    f = lambda p, x: centre(x @ p) @ p
    with pytest.raises(UnsupportedPrimitiveError, match="custom_jvp_call"):
        segment(trace(f, jnp.ones((3, 3)), jnp.ones((2, 3))))


def test_output_softmax_still_refused():
    with pytest.raises(UnsupportedPrimitiveError, match="logits"):
        ja.attribute(lambda p, x: jax.nn.softmax(x @ p), jnp.ones((3, 3)), jnp.ones((2, 3)),
                     method=ja.LRP(ja.composites.attn_lrp()))


def test_wrong_rule_or_missing_rule_raises():
    model, params, x = _attention()
    bad = ja.composites.Composite((("softmax", ja.rules.Uniform()),)) + ja.composites.attn_lrp()
    with pytest.raises(ValueError, match="Uniform.*softmax|softmax.*Uniform"):
        ja.attribute(model.apply, params, x, method=ja.LRP(bad))
    no_softmax = ja.composites.Composite((("linear", ja.rules.Epsilon()),
                                          ("bilinear", ja.rules.Uniform())))
    with pytest.raises(UnsupportedPrimitiveError, match="softmax.*MultiHeadDotProductAttention"):
        ja.attribute(model.apply, params, x, method=ja.LRP(no_softmax))
    # CP-LRP's rule on a product without a softmax operand (QKᵀ) refuses
    wrong = ja.composites.Composite((("bilinear", ja.rules.ConstantAttention()),)) + ja.composites.attn_lrp()
    with pytest.raises(ValueError, match="ConstantAttention"):
        ja.attribute(model.apply, params, x, method=ja.LRP(wrong))
