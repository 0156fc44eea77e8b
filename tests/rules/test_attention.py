"""Attention: AttnLRP, CP-LRP and DeepLIFT on a multi-head self-attention block, against numpy
float64 oracles written from the papers (1e-10).

The block is ``h = x + (softmax(QKᵀ/√d) V) W_o + b_o`` with ``Q, K, V = x W + b`` per head, then a
token mean and a linear read-out. The oracles write every rule out by hand:

* AttnLRP (Achtibat et al. 2024): ε on linear layers and sums (eq. 8), the uniform rule on
  ``QKᵀ`` and ``AV`` after the ε-rule over their sums (Prop. 3.3), the softmax rule
  ``R_x = x ⊙ (R − s ⊙ ΣR)`` (Prop. 3.1);
* CP-LRP (Ali et al. 2022): attention weights constant, so ``A·V`` is a linear layer in ``V``;
* DeepLIFT (Shrikumar et al. 2016/2017): linear layers ``m = W``, the product rule of §2.3.5
  summed over the contracted axis, and through the softmax either its Jacobian averaged along
  the straight path (numpy: 64 Gauss–Legendre nodes, jaxattr: 16) or DeepLIFT's own rules on
  its primitives (Rescale on exp, the secant of 1/S, the product rule).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja

B, T, D, H, DH, C = 3, 5, 4, 2, 3, 3
EPS = 1e-9
TOL = dict(rtol=1e-10, atol=1e-12)


def _weights(seed=0, bias=True):
    rng = np.random.default_rng(seed)
    w = lambda *s: rng.normal(size=s) * 0.7
    b = (lambda *s: 0.3 * rng.normal(size=s)) if bias else (lambda *s: np.zeros(s))
    return {"wq": w(D, H * DH), "bq": b(H * DH), "wk": w(D, H * DH), "bk": b(H * DH),
            "wv": w(D, H * DH), "bv": b(H * DH), "wo": w(H * DH, D), "bo": b(D),
            "wc": w(D, C), "bc": b(C)}


def _model(p, x):
    heads = lambda v: v.reshape(v.shape[:2] + (H, DH))
    q = heads((x @ p["wq"] + p["bq"]) / math.sqrt(DH))
    k = heads(x @ p["wk"] + p["bk"])
    v = heads(x @ p["wv"] + p["bv"])
    a = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k), axis=-1)
    o = jnp.einsum("bhqk,bkhd->bqhd", a, v).reshape(x.shape[0], T, H * DH)
    h = x + (o @ p["wo"] + p["bo"])
    return h.mean(1) @ p["wc"] + p["bc"]


def _forward(p, x):
    """numpy forward, every intermediate."""
    f = {"x": x}
    f["zq"] = (x @ p["wq"] + p["bq"]) / math.sqrt(DH)
    f["zk"], f["zv"] = x @ p["wk"] + p["bk"], x @ p["wv"] + p["bv"]
    q, k, v = (f[n].reshape(x.shape[0], T, H, DH) for n in ("zq", "zk", "zv"))
    f["q"], f["k"], f["v"] = q, k, v
    f["s"] = np.einsum("bqhd,bkhd->bhqk", q, k)
    e = np.exp(f["s"] - f["s"].max(-1, keepdims=True))
    f["a"] = e / e.sum(-1, keepdims=True)
    f["o"] = np.einsum("bhqk,bkhd->bqhd", f["a"], v)
    f["o2"] = f["o"].reshape(x.shape[0], T, H * DH)
    f["y"] = f["o2"] @ p["wo"] + p["bo"]
    f["h"] = x + f["y"]
    f["m"] = f["h"].mean(1)
    f["logits"] = f["m"] @ p["wc"] + p["bc"]
    return f


def _stab(z):
    return z + EPS * np.where(z >= 0, 1.0, -1.0)


def _lrp_oracle(p, x, t, cp=False):
    f = _forward(p, x)
    n = np.arange(len(t))
    r_c = np.zeros_like(f["logits"])
    r_c[n, t] = f["logits"][n, t]
    r_m = f["m"] * ((r_c / _stab(f["logits"])) @ p["wc"].T)
    r_h = f["h"] * (r_m / _stab(f["m"]))[:, None, :] / T           # mean: ε over the sum
    r_x = x * r_h / _stab(f["h"])                                   # residual: ε over x + y
    r_y = f["y"] * r_h / _stab(f["h"])
    r_o = (f["o2"] * ((r_y / _stab(f["y"])) @ p["wo"].T)).reshape(f["o"].shape)
    ratio = r_o / _stab(f["o"])
    share = 1.0 if cp else 0.5
    r_v = share * f["v"] * np.einsum("bhqk,bqhd->bkhd", f["a"], ratio)
    if cp:                                                          # attention weights constant
        r_q = r_k = np.zeros_like(f["q"])
    else:
        r_a = 0.5 * f["a"] * np.einsum("bqhd,bkhd->bhqk", ratio, f["v"])
        r_s = f["s"] * (r_a - f["a"] * r_a.sum(-1, keepdims=True))  # Prop. 3.1
        ratio_s = r_s / _stab(f["s"])
        r_q = 0.5 * f["q"] * np.einsum("bhqk,bkhd->bqhd", ratio_s, f["k"])
        r_k = 0.5 * f["k"] * np.einsum("bhqk,bqhd->bkhd", ratio_s, f["q"])
    for r, z, w in ((r_q, "zq", p["wq"] / math.sqrt(DH)), (r_k, "zk", p["wk"]), (r_v, "zv", p["wv"])):
        r_x = r_x + x * ((r.reshape(f[z].shape) / _stab(f[z])) @ w.T)
    return r_x


def _softmax_path(s, s0, g, order=64):
    """``∫₀¹ J_softmax(s0 + α(s − s0))ᵀ g dα`` over the last axis, numpy Gauss–Legendre."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    out = 0.0
    for a, w in zip((nodes + 1) / 2, weights / 2):
        z = s0 + a * (s - s0)
        e = np.exp(z - z.max(-1, keepdims=True))
        y = e / e.sum(-1, keepdims=True)
        out = out + w * y * (g - (y * g).sum(-1, keepdims=True))
    return out


def _softmax_rules(z, z0, g):
    """DeepLIFT's own rules on ``s = e · (1/S)`` over the last axis, numpy: Rescale's secant on
    ``exp``, the secant ``−1/(S S₀)`` of ``1/S``, §2.3.5's product rule. The shift is one per
    row shared by z and z₀, deliberately not jaxattr's (the result does not depend on it)."""
    c = 0.5 * (z.max(-1, keepdims=True) + z0.max(-1, keepdims=True)) + 0.25
    e, e0 = np.exp(z - c), np.exp(z0 - c)
    S, S0 = e.sum(-1, keepdims=True), e0.sum(-1, keepdims=True)
    m_exp = np.where(z == z0, e, (e - e0) / np.where(z == z0, 1.0, z - z0))
    g_e = 0.5 * (1 / S + 1 / S0) * g - (0.5 * (e + e0) * g).sum(-1, keepdims=True) / (S * S0)
    return m_exp * g_e


def _deeplift_oracle(p, x, x0, t, softmax=_softmax_path):
    f, f0 = _forward(p, x), _forward(p, x0)
    mean = lambda k: 0.5 * (f[k] + f0[k])
    m_m = p["wc"][:, t].T                                           # (B, D)
    m_h = np.repeat(m_m[:, None, :], T, 1) / T
    m_x = m_h.copy()
    m_o = (m_h @ p["wo"].T).reshape(f["o"].shape)
    m_a = np.einsum("bqhd,bkhd->bhqk", m_o, mean("v"))              # §2.3.5 over d
    m_v = np.einsum("bhqk,bqhd->bkhd", mean("a"), m_o)              # §2.3.5 over q
    m_s = softmax(f["s"], f0["s"], m_a)
    m_q = np.einsum("bhqk,bkhd->bqhd", m_s, mean("k"))
    m_k = np.einsum("bhqk,bqhd->bkhd", m_s, mean("q"))
    for m, w in ((m_q, p["wq"] / math.sqrt(DH)), (m_k, p["wk"]), (m_v, p["wv"])):
        m_x = m_x + m.reshape(B, T, H * DH) @ w.T
    return (x - x0) * m_x


def _data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, T, D)), 0.3 * rng.normal(size=(B, T, D)), np.array([0, 2, 1])


@pytest.mark.parametrize("cp", [False, True], ids=["attn_lrp", "cp_lrp"])
def test_attn_lrp_and_cp_lrp_equal_the_papers(cp):
    with jax.enable_x64(True):
        p = _weights()
        x, _, t = _data()
        comp = ja.composites.cp_lrp(EPS) if cp else ja.composites.attn_lrp(EPS)
        params = jax.tree_util.tree_map(jnp.asarray, p)
        got = ja.attribute(_model, params, jnp.asarray(x), jnp.asarray(t), ja.LRP(comp))
        np.testing.assert_allclose(got, _lrp_oracle(p, x, t, cp), **TOL)


def test_deeplift_equals_the_paper_and_sums_to_delta():
    with jax.enable_x64(True):
        p = _weights()
        x, x0, t = _data()
        params = jax.tree_util.tree_map(jnp.asarray, p)
        got = ja.attribute(_model, params, jnp.asarray(x), jnp.asarray(t),
                           ja.DeepLIFT(reference=jnp.asarray(x0), softmax="path"))
        np.testing.assert_allclose(got, _deeplift_oracle(p, x, x0, t), **TOL)
        check = ja.evaluation.checks.summation_to_delta(_model, params, jnp.asarray(x), got,
                                                         jnp.asarray(x0), jnp.asarray(t))
        assert float(check.error.max()) < 1e-12 * float(np.abs(check.delta).max())


def test_deeplift_softmax_rules_equal_numpy_and_sum_to_delta():
    """``ja.DeepLIFT()`` (``softmax="rules"``): DeepLIFT's own rules through the softmax
    (:class:`ja.rules.DeepLIFTSoftmax`) equal the numpy oracle at 1e-10, sum to delta to
    rounding, and differ from the path integral's multipliers."""
    with jax.enable_x64(True):
        p = _weights()
        x, x0, t = _data()
        params = jax.tree_util.tree_map(jnp.asarray, p)
        got = ja.attribute(_model, params, jnp.asarray(x), jnp.asarray(t),
                           ja.DeepLIFT(reference=jnp.asarray(x0)))
        np.testing.assert_allclose(got, _deeplift_oracle(p, x, x0, t, _softmax_rules), **TOL)
        check = ja.evaluation.checks.summation_to_delta(_model, params, jnp.asarray(x), got,
                                                         jnp.asarray(x0), jnp.asarray(t))
        assert float(check.error.max()) < 1e-12 * float(np.abs(check.delta).max())
        path = _deeplift_oracle(p, x, x0, t)
        assert np.abs(np.asarray(got) - path).max() > 1e-6 * np.abs(path).max()


def test_deeplift_softmax_rules_fall_back_to_the_path_with_a_mask_inside():
    """A mask between ``exp`` and the sum (``jax.nn.softmax(where=...)``) is not covered by
    the primitive rules: the path integral is used there (same result as ``softmax="path"``)."""
    mask = jnp.array([[True, True, False, True]])

    def f(w, x):
        return jax.nn.softmax(x @ w, axis=-1, where=mask) @ jnp.arange(8.0).reshape(4, 2)

    with jax.enable_x64(True):
        w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
        x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)))
        rules = ja.attribute(f, w, x, 1, ja.DeepLIFT(softmax="rules"))
        np.testing.assert_array_equal(rules, ja.attribute(f, w, x, 1, ja.DeepLIFT(softmax="path")))
    with pytest.raises(ValueError, match="softmax must be 'path' or 'rules'"):
        ja.DeepLIFT(softmax="taylor")


def test_cp_lrp_conserves_without_biases():
    """With biases off, CP-LRP loses relevance only to ε (the softmax passes none, and A·V is
    linear in V); AttnLRP's softmax absorbs its Taylor bias term."""
    with jax.enable_x64(True):
        p = jax.tree_util.tree_map(jnp.asarray, _weights(3, bias=False))
        x, _, t = _data(4)
        x, t = jnp.asarray(x), jnp.asarray(t)
        r = ja.attribute(_model, p, x, t, ja.LRP(ja.composites.cp_lrp(EPS)))
        check = ja.evaluation.checks.conservation(_model, p, x, r, t)
        assert float(check.error.max()) < 1e-7 * float(np.abs(check.logit).max())


def test_softmax_rule_equals_prop_3_1_with_masks():
    """``R_x = x ⊙ (R − s ⊙ ΣR)`` per row, with a causal mask written as ``−∞`` (LXT: 0 there)
    and with ``jax.nn.softmax(where=...)``: finite, 0 at masked positions."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        w, v = jnp.asarray(rng.normal(size=(4, 4))), jnp.asarray(rng.normal(size=(4, 4)))
        causal = np.tril(np.ones((4, 4), bool))

        def f_inf(p, x):  # (B, 4) -> (B, 4); row i of the scores masked past i
            s = (x @ p[0])[:, None, :] * jnp.ones((4, 1))
            a = jax.nn.softmax(jnp.where(causal, s, -jnp.inf), axis=-1)
            return jnp.einsum("bqk,kc->bc", a, p[1])

        def f_where(p, x):
            s = (x @ p[0])[:, None, :] * jnp.ones((4, 1))
            a = jax.nn.softmax(s, axis=-1, where=causal)
            return jnp.einsum("bqk,kc->bc", a, p[1])

        x = jnp.asarray(rng.normal(size=(2, 4)))
        from jaxattr.engine import segment, trace
        for f in (f_inf, f_where):
            segs = segment(trace(f, (w, v), x))
            assert [s.kind for s in segs].count("softmax") == 1
            # the softmax alone: relevance R at its output
            seg = next(s for s in segs if s.kind == "softmax")
            from jaxattr.engine.layer import make_view
            from jaxattr.engine.rewrite import environment
            env = environment(trace(f, (w, v), x), [w, v, x])
            view = make_view(seg, [env[c] for c in seg.consts()])
            z, s = env[seg.inputs[0]], env[seg.output]
            R = jnp.asarray(rng.normal(size=s.shape)) * (s > 0)
            (got,) = ja.rules.SoftmaxTaylor().backward(view, (z,), s, R, None)
            zn = np.where(np.isneginf(np.asarray(z)), 0.0, np.asarray(z))
            want = zn * (R - s * R.sum(-1, keepdims=True))
            assert np.all(np.isfinite(got))
            np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("written", ["jax.nn.softmax", "max shift not stopped", "unshifted"])
def test_softmax_rule_on_any_writing_and_axis(written, axis):
    """The rule on a softmax written three ways, over either axis, equals Prop. 3.1 in numpy at
    1e-12; where an output underflows to 0 (x far below its row's maximum) the relevance there
    counts as 0, as ``J_sᵀ(R ⊘ s)`` has it."""
    softmax = {
        "jax.nn.softmax": lambda s: jax.nn.softmax(s, axis=axis),
        "max shift not stopped": lambda s: (lambda e: e / e.sum(axis, keepdims=True))(
            jnp.exp(s - s.max(axis, keepdims=True))),
        "unshifted": lambda s: jnp.exp(s) / jnp.exp(s).sum(axis, keepdims=True),
    }[written]
    with jax.enable_x64(True):
        rng = np.random.default_rng(8)
        f = lambda p, x: softmax(x * p)
        x = rng.normal(size=(2, 3, 5)) * 3
        x[0, 1, 2] = x[0, 1, 3] = -800.0  # exp underflows: s = 0 there, exactly
        from jaxattr.engine import segment, trace
        from jaxattr.engine.layer import make_view
        from jaxattr.engine.rewrite import environment
        x = jnp.asarray(x)
        graph = trace(f, 1.0, x)
        (seg,) = [g for g in segment(graph) if g.kind == "softmax"]
        env = environment(graph, [1.0, x])
        view = make_view(seg, [env[c] for c in seg.consts()])
        s = softmax(x)
        R = jnp.asarray(rng.normal(size=s.shape))
        (got,) = ja.rules.SoftmaxTaylor().backward(view, (x,), s, R, None)
        r = np.where(np.asarray(s) == 0, 0.0, np.asarray(R))
        want = np.asarray(x) * (r - np.asarray(s) * r.sum(axis, keepdims=True))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        assert float(np.asarray(s)[0, 1, 2]) == 0.0 and float(got[0, 1, 2]) == 0.0


def test_path_integral_equals_numpy_and_its_order_converges():
    """PathIntegral on one softmax against the numpy path integral (64 nodes); order 4 is
    visibly off, 16 within 1e-12, and the multipliers sum to delta at every order ≥ 16."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        z, z0 = rng.normal(size=(3, 6)) * 2, rng.normal(size=(3, 6))
        g = rng.normal(size=(3, 6))
        f = lambda p, x: jax.nn.softmax(x, axis=-1)
        from jaxattr.engine import trace
        from jaxattr.engine.layer import make_view
        graph = trace(f, (), jnp.asarray(z))
        (seg,) = _inner(graph)
        view = make_view(seg, [])
        want = _softmax_path(z, z0, g)
        errs = {}
        for order in (4, 16):
            (m,) = ja.rules.PathIntegral(order).backward(view, (jnp.asarray(z),), None, jnp.asarray(g),
                                                         (jnp.asarray(z0),))
            errs[order] = float(np.abs(np.asarray(m) - want).max())
        assert errs[4] > 1e-6 and errs[16] < 1e-12
        sm = lambda v: np.exp(v) / np.exp(v).sum(-1, keepdims=True)
        np.testing.assert_allclose((want * (z - z0)).sum(), (g * (sm(z) - sm(z0))).sum(), rtol=1e-12)


def _inner(graph):
    """The softmax of a graph that is only a softmax (the model's output: a segment the
    segmenter refuses there, built here for the rule alone)."""
    from jaxattr.engine.segment import Segment
    return [Segment("softmax", list(graph.nodes), (graph.x_vars[0],), graph.outvars[0])]
