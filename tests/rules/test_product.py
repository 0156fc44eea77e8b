"""Products of two x-dependent tensors (``bilinear`` segments): DeepLIFT's rule of §2.3.5 and
AttnLRP's uniform rule, against numpy oracles written from the papers (float64, 1e-12).

The net is a gated unit with biases, ``f(x) = W₃ᵀ(relu(W₁ᵀx + b₁) ⊙ σ(W₂ᵀx + b₂)) + b₃``; a
single GRU-style update ``h' = z ⊙ h + (1 − z) ⊙ n`` checks summation-to-delta where the gate
multiplies two products.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja

TOL = dict(rtol=1e-12, atol=1e-12)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"w1": rng.normal(size=(4, 5)), "b1": 0.3 * rng.normal(size=5),
            "w2": rng.normal(size=(4, 5)), "b2": 0.3 * rng.normal(size=5),
            "w3": rng.normal(size=(5, 3)), "b3": 0.3 * rng.normal(size=3)}


def _gated(p, x):
    a = jax.nn.relu(x @ p["w1"] + p["b1"])
    s = jax.nn.sigmoid(x @ p["w2"] + p["b2"])
    return (a * s) @ p["w3"] + p["b3"]


def _deeplift_oracle(p, x, x0, t):
    """DeepLIFT multipliers from Shrikumar et al. 2016: linear layers m = W, Rescale on relu and
    σ (§2.3.3), the product rule m_{x₁} = x₂⁰ + ½Δx₂ (§2.3.5)."""
    def forward(v):
        z1, z2 = v @ p["w1"] + p["b1"], v @ p["w2"] + p["b2"]
        return z1, z2, np.maximum(z1, 0), _sigmoid(z2)

    z1, z2, a, s = forward(x)
    z10, z20, a0, s0 = forward(x0)

    def rescale(dy, dx, grad):
        small = np.abs(dx) < 1e-7
        return np.where(small, grad, dy / np.where(small, 1, dx))

    m_y = p["w3"][:, t].T                                        # (batch, 5)
    m_a = m_y * (s0 + 0.5 * (s - s0))
    m_s = m_y * (a0 + 0.5 * (a - a0))
    m_z1 = m_a * rescale(a - a0, z1 - z10, (z1 > 0).astype(float))
    m_z2 = m_s * rescale(s - s0, z2 - z20, s * (1 - s))
    return (x - x0) * (m_z1 @ p["w1"].T + m_z2 @ p["w2"].T)


def _lrp_oracle(p, x, t):
    """LRP-0 (ε = 0) on every dense layer, identity through relu and σ, and the uniform rule
    R_a = R_s = ½R_y on the product (Achtibat et al. 2024)."""
    z1, z2 = x @ p["w1"] + p["b1"], x @ p["w2"] + p["b2"]
    y = np.maximum(z1, 0) * _sigmoid(z2)
    logit = (y @ p["w3"] + p["b3"])[np.arange(len(t)), t]
    r_y = y * p["w3"][:, t].T * (logit / logit)[:, None]        # R_y = y ⊙ W (R_t / z_t), R_t = z_t
    r_z1 = r_z2 = 0.5 * r_y
    return x * ((r_z1 / z1) @ p["w1"].T) + x * ((r_z2 / z2) @ p["w2"].T)


def test_deeplift_product_rule_equals_the_paper():
    with jax.enable_x64(True):
        p = _weights()
        rng = np.random.default_rng(1)
        x, x0 = rng.normal(size=(6, 4)), 0.2 * rng.normal(size=(6, 4))
        t = np.array([0, 1, 2, 0, 1, 2])
        params = jax.tree_util.tree_map(jnp.asarray, p)
        got = ja.attribute(_gated, params, jnp.asarray(x), jnp.asarray(t),
                           ja.DeepLIFT(reference=jnp.asarray(x0)))
        np.testing.assert_allclose(got, _deeplift_oracle(p, x, x0, t), **TOL)
        delta = _gated(params, x)[np.arange(6), t] - _gated(params, x0)[np.arange(6), t]
        np.testing.assert_allclose(got.sum(1), delta, **TOL)


def test_uniform_rule_equals_attnlrp_and_conserves():
    with jax.enable_x64(True):
        p = _weights(2)
        x = np.random.default_rng(3).normal(size=(6, 4))
        t = np.array([0, 1, 2, 2, 1, 0])
        params = jax.tree_util.tree_map(jnp.asarray, p)
        got = ja.attribute(_gated, params, jnp.asarray(x), jnp.asarray(t),
                           ja.LRP(ja.rules.Epsilon(0.0)))
        np.testing.assert_allclose(got, _lrp_oracle(p, x, t), rtol=1e-10, atol=1e-12)
        bias_free = dict(params, b1=0 * params["b1"], b2=0 * params["b2"], b3=0 * params["b3"])
        rel = ja.attribute(_gated, bias_free, jnp.asarray(x), jnp.asarray(t),
                           ja.LRP(ja.rules.Epsilon(0.0)))
        np.testing.assert_allclose(rel.sum(1), _gated(bias_free, x)[np.arange(6), t], **TOL)


def _gru_step(p, x):
    """One GRU update from h = tanh(x W_h) (so h depends on x too), then a readout."""
    h = jnp.tanh(x @ p["wh"])
    z = jax.nn.sigmoid(x @ p["wz"] + h @ p["uz"])
    r = jax.nn.sigmoid(x @ p["wr"] + h @ p["ur"])
    n = jnp.tanh(x @ p["wn"] + (r * h) @ p["un"])
    return (z * h + (1 - z) * n) @ p["out"]


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_gated_recurrent_update_sums_to_delta(rule):
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        p = {k: jnp.asarray(rng.normal(size=s)) for k, s in
             [("wh", (3, 4)), ("wz", (3, 4)), ("uz", (4, 4)), ("wr", (3, 4)), ("ur", (4, 4)),
              ("wn", (3, 4)), ("un", (4, 4)), ("out", (4, 2))]}
        x, x0 = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(0.3 * rng.normal(size=(5, 3)))
        t = jnp.asarray([0, 1, 0, 1, 0])
        c = ja.attribute(_gru_step, p, x, t, ja.DeepLIFT(reference=x0, rule=rule))
        delta = (_gru_step(p, x) - _gru_step(p, x0))[jnp.arange(5), t]
        np.testing.assert_allclose(c.sum(1), delta, **TOL)
        kinds = [r.kind for r in ja.engine.audit(_gru_step, p, x, ja.DeepLIFT())]
        assert kinds.count("bilinear") == 3


class _GLU(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(8)(x)
        a, b = jnp.split(h, 2, axis=-1)
        return nn.Dense(3)(a * nn.sigmoid(b))


def test_flax_glu_batch_equals_examples():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
        params = _GLU().init(jax.random.key(1), x)
        for method in (ja.LRP(ja.composites.epsilon_plus()), ja.DeepLIFT(), ja.DeepTaylor()):
            batch = ja.attribute(_GLU().apply, params, x, jnp.zeros(4, int), method)
            one = jnp.concatenate([ja.attribute(_GLU().apply, params, x[i:i + 1], jnp.zeros(1, int),
                                                method) for i in range(4)])
            np.testing.assert_allclose(batch, one, rtol=1e-10, atol=1e-12)


def test_a_composite_without_a_product_rule_refuses():
    method = ja.LRP(ja.composites.Composite((("linear", ja.rules.Epsilon()),)))
    params = jax.tree_util.tree_map(jnp.asarray, _weights())
    with pytest.raises(ja.UnsupportedPrimitiveError, match="'bilinear'"):
        ja.attribute(_gated, params, jnp.ones((2, 4)), None, method)


def test_x_times_its_own_sigmoid_stays_an_activation():
    """SiLU written out, ``z * sigmoid(z)``, is one activation region (Rescale / Pass), not a
    product of two inputs."""
    def f(p, x):
        z = x @ p
        return z * jax.nn.sigmoid(z)

    rows = ja.engine.audit(f, jnp.ones((3, 2)), jnp.ones((1, 3)), ja.DeepLIFT())
    assert "bilinear" not in {r.kind for r in rows}


class _Normed(nn.Module):
    norm: str = "layer"

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(6)(x)
        h = nn.LayerNorm()(h) if self.norm == "layer" else nn.RMSNorm()(h)
        return nn.Dense(3, use_bias=False)(jax.nn.relu(h))


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_layer_and_rms_norm_are_normalisations(norm):
    """Flax's LayerNorm ``(x − μ)·rsqrt(σ² + ε)`` and RMSNorm ``x·rsqrt(mean(x²) + ε)`` are
    ``normalise`` segments: LRP holds the scale constant (nothing flows through σ), DeepLIFT's
    product rule keeps summation to delta."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
        model = _Normed(norm)
        params = model.init(jax.random.key(1), x)
        rows = ja.engine.audit(model.apply, params, x, ja.LRP())
        normalise = [r for r in rows if r.kind == "normalise"]
        assert len(normalise) == 1 and normalise[0].rule == "HoldScale()"
        assert "bilinear" not in {r.kind for r in rows}
        ref = 0.3 * jnp.ones_like(x)
        c = ja.attribute(model.apply, params, x, jnp.zeros(4, int), ja.DeepLIFT(reference=ref))
        delta = model.apply(params, x)[:, 0] - model.apply(params, ref)[:, 0]
        np.testing.assert_allclose(c.sum(1), delta, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("reference", ["zero", "shifted"])
def test_deeplift_normalise_multipliers_equal_numpy(norm, reference):
    """DeepLIFTNormalise on the ``normalise`` segment alone: ``m_s = g ⊙ m_y`` and
    ``m_g = Σ_axis s₀ ⊙ m_y`` (the scale moved first, at the reference's signal), so that
    ``m_s Δs + m_g Δg = m_y Δy`` exactly; at the zero reference (``s₀ = 0``) the scale gets
    nothing. The symmetric split of §2.3.5 gets ``m_s = ½(g + g₀) ⊙ m_y`` on the same segment."""
    from jaxattr.engine import segment, trace
    from jaxattr.engine.layer import make_view
    from jaxattr.engine.rewrite import environment
    with jax.enable_x64(True):
        rng = np.random.default_rng(9)
        x = jnp.asarray(rng.normal(size=(3, 5)))
        x0 = jnp.zeros_like(x) if reference == "zero" else x + jnp.asarray(rng.normal(size=x.shape))
        model = _Normed(norm)
        params = model.init(jax.random.key(1), x)
        graph = trace(model.apply, params, x)
        (seg,) = [g for g in segment(graph) if g.kind == "normalise"]
        leaves = jax.tree_util.tree_leaves(params)
        env, env0 = environment(graph, leaves + [x]), environment(graph, leaves + [x0])
        view = make_view(seg, [env[c] for c in seg.consts()])
        (s, g), (s0, g0) = ([e[v] for v in seg.inputs] for e in (env, env0))
        y, y0 = env[seg.output], env0[seg.output]
        m_y = jnp.asarray(rng.normal(size=y.shape))
        m_s, m_g = ja.rules.DeepLIFTNormalise().backward(view, (s, g), y, m_y, (s0, g0))
        np.testing.assert_allclose(m_s, np.broadcast_to(g, y.shape) * m_y, **TOL)
        axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, y.shape)) if a == 1 < b)
        np.testing.assert_allclose(m_g, np.sum(np.asarray(s0) * m_y, axes, keepdims=True), **TOL)
        np.testing.assert_allclose((m_s * (s - s0)).sum() + (m_g * (g - g0)).sum(),
                                   (m_y * (y - y0)).sum(), **TOL)
        if reference == "zero":
            assert float(jnp.abs(m_g).max()) == 0.0 and float(jnp.abs(g0).min()) > 100
        m_sym, _ = ja.rules.DeepLIFTProduct().backward(view, (s, g), y, m_y, (s0, g0))
        np.testing.assert_allclose(m_sym, 0.5 * np.broadcast_to(g + g0, y.shape) * m_y, **TOL)


def _by_division(form: str):
    """A dense layer, a normalisation written as a division (``form``: ``"layer"``,
    ``(h − μ) / sqrt(σ² + ε)``; ``"l2"``, ``h / ‖h‖``) or, for comparison, with ``rsqrt``
    (``"layer_rsqrt"``), GELU, a dense head."""
    def f(p, x):
        h = x @ p["w1"] + p["b1"]
        if form == "l2":
            h = h / jnp.linalg.norm(h, axis=-1, keepdims=True)
        elif form == "l2_clamped":  # torch's F.normalize
            h = h / jnp.maximum(jnp.linalg.norm(h, axis=-1, keepdims=True), 1e-12)
        else:
            c = h - h.mean(-1, keepdims=True)
            v = (c * c).mean(-1, keepdims=True)
            h = c / jnp.sqrt(v + 1e-5) if form == "layer" else c * jax.lax.rsqrt(v + 1e-5)
        return jax.nn.gelu(h * p["g"]) @ p["w2"] + p["b2"]
    return f


def _division_params():
    k = jax.random.split(jax.random.key(4), 6)
    p = dict(w1=jax.random.normal(k[0], (5, 6)), b1=jax.random.normal(k[1], (6,)),
             g=1 + 0.3 * jax.random.normal(k[2], (6,)), w2=jax.random.normal(k[3], (6, 3)),
             b2=jax.random.normal(k[4], (3,)))
    return p, jax.random.normal(k[5], (4, 5))


@pytest.mark.parametrize("normalise", ["scale_first", "symmetric"])
def test_normalisations_written_as_divisions(normalise):
    """``(h − μ) / sqrt(σ² + ε)`` and ``h / ‖h‖`` are ``normalise`` segments like the ``rsqrt``
    form: LRP holds the scale (the same relevance as the ``rsqrt`` form, exactly), DeepLIFT sums
    to delta and equals the ``rsqrt`` form, at the zero and at a shifted reference."""
    with jax.enable_x64(True):
        p, x = _division_params()
        p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), p)
        x, t = x.astype(jnp.float64), jnp.array([0, 1, 2, 0])
        layer, l2, clamped, rsqrt = (_by_division(f) for f in ("layer", "l2", "l2_clamped",
                                                                "layer_rsqrt"))
        for f in (layer, l2, clamped):
            rows = ja.engine.audit(f, p, x, ja.LRP(ja.composites.attn_lrp()))
            assert [r.rule for r in rows if r.kind == "normalise"] == ["HoldScale()"]
            assert [r.primitive for r in rows if r.kind == "normalise"] == ["div"]
        for method in (ja.LRP(ja.composites.attn_lrp(0.0)), ja.LRP(ja.composites.cp_lrp())):
            np.testing.assert_array_equal(ja.attribute(layer, p, x, t, method),
                                          ja.attribute(rsqrt, p, x, t, method))
        for ref in (0.0, 0.3):
            method = ja.DeepLIFT(ref, normalise=normalise)
            for f in (layer, l2, clamped):
                c = ja.attribute(f, p, x, t, method)
                delta = (f(p, x) - f(p, jnp.full_like(x, ref)))[jnp.arange(4), t]
                np.testing.assert_allclose(c.sum(1), delta, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(ja.attribute(layer, p, x, t, method),
                                       ja.attribute(rsqrt, p, x, t, method), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_deeplift_division_multipliers_equal_numpy(symmetric):
    """On the ``div`` segment alone, ``y = s / d``: ``m_s = r̃ m_y`` with ``r̃ = 1/d`` (scale
    first) or ``½(1/d + 1/d₀)`` (symmetric), and ``m_d = Σ_axis s̃ m_y · (−1/(d d₀))`` with
    ``s̃ = s₀`` or ``½(s + s₀)``: ``1/d``'s exact secant, so ``m_s Δs + m_d Δd = m_y Δy``."""
    from jaxattr.engine import segment, trace
    from jaxattr.engine.layer import make_view
    from jaxattr.engine.rewrite import environment
    with jax.enable_x64(True):
        p, x = _division_params()
        p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), p)
        x = np.asarray(x, np.float64)
        x0 = x + np.random.default_rng(3).normal(size=x.shape)
        f = _by_division("layer")
        graph = trace(f, p, x)
        (seg,) = [g for g in segment(graph) if g.kind == "normalise"]
        assert seg.reciprocal
        leaves = jax.tree_util.tree_leaves(p)
        env, env0 = environment(graph, leaves + [x]), environment(graph, leaves + [x0])
        view = make_view(seg, [env[c] for c in seg.consts()])
        (s, d), (s0, d0) = ([np.asarray(e[v]) for v in seg.inputs] for e in (env, env0))
        y, y0 = np.asarray(env[seg.output]), np.asarray(env0[seg.output])
        m_y = np.random.default_rng(4).normal(size=y.shape)
        rule = ja.rules.DeepLIFTProduct() if symmetric else ja.rules.DeepLIFTNormalise()
        m_s, m_d = rule.backward(view, (s, d), y, m_y, (s0, d0))
        r = 0.5 * (1 / d + 1 / d0) if symmetric else 1 / d
        s_bar = 0.5 * (s + s0) if symmetric else s0
        np.testing.assert_allclose(m_s, r * m_y, **TOL)
        np.testing.assert_allclose(m_d, np.sum(s_bar * m_y, -1, keepdims=True) * (-1 / (d * d0)),
                                   **TOL)
        np.testing.assert_allclose((m_s * (s - s0)).sum() + (m_d * (d - d0)).sum(),
                                   (m_y * (y - y0)).sum(), **TOL)


def test_a_division_by_another_tensor_is_still_refused():
    """Only a root (a norm, a standard deviation) computed from the signal through a reduction
    makes a division a normalisation: a quotient of two unrelated x-dependent tensors, or a
    softmax written with an ε in its denominator (``e / (Σe + ε)``), has no rule."""
    f = lambda p, x: ((x @ p[0]) / (1.0 + jnp.exp(x @ p[1]))) @ p[2]
    p = (jnp.ones((3, 2)), jnp.ones((3, 2)), jnp.ones((2, 2)))
    with pytest.raises(ja.UnsupportedPrimitiveError, match="'div'"):
        ja.attribute(f, p, jnp.ones((2, 3)), method=ja.LRP())

    def softmax_eps(p, x):
        e = jnp.exp(x @ p[0])
        return (e / (e.sum(-1, keepdims=True) + 1e-9)) @ p[2]
    with pytest.raises(ja.UnsupportedPrimitiveError, match="'div'"):
        ja.attribute(softmax_eps, p, jnp.ones((2, 3)), method=ja.LRP())


def test_deeplift_normalise_option():
    rows = {ja.DeepLIFT(normalise=n): [r.rule for r in ja.engine.audit(
        _Normed("layer").apply, *_normed_args(), ja.DeepLIFT(normalise=n)) if r.kind == "normalise"]
        for n in ("scale_first", "symmetric")}
    assert list(rows.values()) == [["DeepLIFTNormalise()"], ["DeepLIFTProduct()"]]
    with pytest.raises(ValueError, match="normalise must be 'scale_first' or 'symmetric'"):
        ja.DeepLIFT(normalise="hold")


def _normed_args():
    x = jnp.ones((2, 5))
    return _Normed("layer").init(jax.random.key(1), x), x


def test_hold_scale_sends_no_relevance_through_the_scale():
    """``y = x ⊙ rsqrt(mean(x²))`` then a linear read-out: with the scale held constant, LRP-0's
    relevance of x is exactly ``x ⊙ s ⊙ w`` (the scale a constant), summing to the logit."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        w = jnp.asarray(rng.normal(size=(4, 2)))
        x = jnp.asarray(rng.normal(size=(3, 4)))
        f = lambda p, x: (x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True))) @ p
        s = jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True))
        got = ja.attribute(f, w, x, jnp.zeros(3, int), ja.LRP(ja.rules.Epsilon(0.0)))
        np.testing.assert_allclose(got, x * s * w[:, 0], **TOL)
