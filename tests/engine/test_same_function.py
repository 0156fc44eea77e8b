"""The same function gets the same relevance however it is written (issue #22, items 1–3).

* a per-example model under ``jax.vmap`` (the Equinox idiom) == the same model written batched:
  the ``transpose``/``reshape``/``squeeze`` that vmap leaves between a layer's product and its
  bias is folded into the layer, so the bias is absorbed as in the batched form;
* a zero ``jnp.pad`` + VALID convolution (and Flax's ``padding="CAUSAL"``) == the convolution's
  own padding: the padded positions are not inputs, so Flat, w², z^B and bounded Deep Taylor
  conserve on a bias-free net;
* an output normalised over the class axis (``log_softmax``, centring) is refused like softmax.

All in float64; "same" means equal to 1e-12.
"""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja

C, R = ja.composites, ja.rules
TOL = dict(rtol=1e-12, atol=1e-12)

RULE_METHODS = {
    "lrp_epsilon": ja.LRP(R.Epsilon(0.0)),
    "lrp_zplus": ja.LRP(R.ZPlus()),
    "lrp_alpha2_beta1": ja.LRP(R.AlphaBeta(2.0, 1.0)),
    "lrp_epsilon_plus_flat": ja.LRP(C.epsilon_plus_flat()),
    "lrp_epsilon_gamma_box": ja.LRP(C.epsilon_gamma_box(-3.0, 3.0)),
    "deep_taylor": ja.DeepTaylor(),
    "deeplift": ja.DeepLIFT(),
    "deeplift_reveal_cancel": ja.DeepLIFT(rule="reveal_cancel"),
}


def _compare(f, g, params, x, methods=RULE_METHODS):
    for name, method in methods.items():
        a = ja.attribute(f, params, x, None, method)
        b = ja.attribute(g, params, x, None, method)
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)


def test_vmapped_per_example_model_equals_batched_model():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = [jnp.asarray(rng.normal(size=s)) for s in [(6, 5), (6,), (3, 6), (3,)]]
        per = lambda p, xi: p[2] @ jax.nn.relu(p[0] @ xi + p[1]) + p[3]
        vmapped = lambda p, x: jax.vmap(per, (None, 0))(p, x)
        batched = lambda p, x: jax.nn.relu(x @ p[0].T + p[1]) @ p[2].T + p[3]
        _compare(vmapped, batched, p, jnp.asarray(rng.normal(size=(4, 5))))
        kinds = [r.kind for r in ja.engine.audit(vmapped, p, jnp.ones((4, 5)), ja.LRP())]
        assert "scale" not in kinds  # the bias is part of its layer, not a lone scaling


def test_equinox_mlp_equals_its_batched_twin():
    with jax.enable_x64(True):
        mlp = eqx.nn.MLP(5, 3, 6, 2, key=jax.random.key(0))
        params, static = eqx.partition(mlp, eqx.is_array)

        def batched(p, x):
            for i, layer in enumerate(p.layers):
                x = x @ layer.weight.T + layer.bias
                x = jax.nn.relu(x) if i < len(p.layers) - 1 else x
            return x

        vmapped = lambda p, x: jax.vmap(eqx.combine(p, static))(x)
        _compare(vmapped, batched, params, jax.random.normal(jax.random.key(1), (4, 5)))


def test_equinox_conv2d_equals_its_batched_twin():
    with jax.enable_x64(True):
        conv = eqx.nn.Conv2d(2, 3, 3, padding=1, key=jax.random.key(0))
        lin = eqx.nn.Linear(3 * 4 * 4, 3, key=jax.random.key(2))
        params, static = eqx.partition((conv, lin), eqx.is_array)

        def vmapped(p, x):
            c, l = eqx.combine(p, static)
            return jax.vmap(lambda xi: l(jax.nn.relu(c(xi)).reshape(-1)))(x)

        def batched(p, x):
            c, l = p
            z = jax.lax.conv_general_dilated(x, c.weight, (1, 1), ((1, 1), (1, 1)),
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            z = jax.nn.relu(z + c.bias[None])
            return z.reshape(x.shape[0], -1) @ l.weight.T + l.bias

        x = jax.random.normal(jax.random.key(1), (4, 2, 4, 4))
        np.testing.assert_allclose(vmapped(params, x), batched(params, x), **TOL)
        _compare(vmapped, batched, params, x)


class _Causal(nn.Module):
    padding: object

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (4,), padding=self.padding, use_bias=False)(x))
        return nn.Dense(3, use_bias=False)(x.reshape(x.shape[0], -1))


FIRST_LAYER_RULES = {
    "flat": ja.LRP(C.epsilon_plus_flat(0.0)),
    "wsquare": ja.LRP(C.Composite((("first", R.WSquare()), ("linear", R.Epsilon(0.0))))),
    "zbox": ja.LRP(C.epsilon_gamma_box(0.0, 1.0, epsilon=0.0)),
    "deep_taylor_bounded": ja.DeepTaylor(0.0, 1.0),
}


@pytest.mark.parametrize("padding", ["CAUSAL", "jnp.pad"])
def test_explicit_zero_padding_is_part_of_the_layer(padding):
    """Flax's CAUSAL padding and ``jnp.pad`` + VALID equal the convolution's own padding, and
    the first-layer rules conserve relevance (bias-free): before, they lost 0.63–1.56× the logit."""
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.key(1), (3, 10, 2))
        own = _Causal(((3, 0),))
        params = own.init(jax.random.key(0), x)
        if padding == "CAUSAL":
            padded = _Causal("CAUSAL").apply
        else:
            padded = lambda p, x: _Causal("VALID").apply(p, jnp.pad(x, ((0, 0), (3, 0), (0, 0))))
        np.testing.assert_allclose(padded(params, x), own.apply(params, x), **TOL)
        _compare(padded, own.apply, params, x, FIRST_LAYER_RULES)
        logits = own.apply(params, x)
        target = jnp.argmax(logits, -1)
        for name, method in FIRST_LAYER_RULES.items():
            rel = ja.attribute(padded, params, x, target, method)
            np.testing.assert_allclose(rel.sum((1, 2)), logits[jnp.arange(3), target], rtol=1e-5,
                                       err_msg=name)


def test_a_nonzero_pad_is_not_absorbed():
    """Padding with a constant other than 0 is affine, not linear: it stays plumbing."""
    f = lambda p, x: jnp.pad(x, ((0, 0), (1, 1)), constant_values=1.0) @ p
    rows = ja.engine.audit(f, jnp.ones((5, 2)), jnp.ones((2, 3)), ja.LRP())
    assert [(r.primitive, r.kind) for r in rows if r.primitive == "pad"] == [("pad", "plumbing")]


@pytest.mark.parametrize("head", ["log_softmax", "centred", "logsumexp_shift"])
def test_output_normalised_over_classes_is_refused(head):
    w = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    heads = {"log_softmax": jax.nn.log_softmax,
             "centred": lambda z: z - z.mean(-1, keepdims=True),
             "logsumexp_shift": lambda z: z - jax.nn.logsumexp(z, -1, keepdims=True)}
    f = lambda p, x: heads[head](jax.nn.relu(x) @ p)
    x = jnp.ones((2, 5))
    for method in (ja.LRP(C.epsilon_plus()), ja.DeepTaylor(), ja.DeepLIFT()):
        with pytest.raises(ja.UnsupportedPrimitiveError, match="explain the logits|Explain the logits"):
            ja.attribute(f, w, x, None, method)


def test_checkpointed_blocks_get_their_rules():
    """``jax.checkpoint`` (``remat2``) is inlined like ``jit``: the layers inside get rules."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = [jnp.asarray(rng.normal(size=s)) for s in [(5, 6), (6,), (6, 3), (3,)]]
        block = lambda w, b, h: jax.nn.relu(h @ w + b)
        plain = lambda p, x: block(p[0], p[1], x) @ p[2] + p[3]
        remat = lambda p, x: jax.checkpoint(block)(p[0], p[1], x) @ p[2] + p[3]
        _compare(remat, plain, p, jnp.asarray(rng.normal(size=(4, 5))))
