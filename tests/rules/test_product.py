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
