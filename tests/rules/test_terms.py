"""The shared LRP propagation (``jaxattr.rules.terms``): folded per-channel scales against the
float64 oracle, and the convolutions it shares between terms."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
import oracle as O  # noqa: E402  (tests/ is on sys.path, see conftest.py)

R = ja.rules

# conv SAME -> ReLU -> conv SAME -> ReLU -> flatten -> dense, each layer followed by a constant
# per-unit affine map ``z·a + c`` (an inference batch norm) with scales of both signs and a zero
SPEC = (("conv", 3, "SAME"), ("relu",), ("conv", 4, "SAME"), ("relu",), ("flatten",),
        ("dense", 3))
IN = (5, 5, 2)
SCALED_RULES = {
    "eps": (R.Epsilon(0.1), ("eps", 0.1)),
    "zplus": (R.ZPlus(), ("zplus", 1e-6)),
    "ab21_split": (R.AlphaBeta(2.0, 1.0), ("ab", 2.0, 1.0, "split", 1e-6)),
    "ab21_whole": (R.AlphaBeta(2.0, 1.0, bias="whole"), ("ab", 2.0, 1.0, "whole", 1e-6)),
    "gamma": (R.Gamma(0.5), ("gamma", 0.5, 1e-6)),
    "wsquare": (R.WSquare(), ("wsquare", 1e-6)),
    "flat": (R.Flat(), ("flat", 1e-6)),
    "zbox": (R.ZBox(-2.0, (1.0, 3.0)), None),  # first layer only (per-channel high bound)
}


def _scaled_net():
    weights = O.init_weights(SPEC, IN, 11)
    rng = np.random.default_rng(12)
    scales = [np.array([1.5, -0.7, 0.0]), np.array([0.4, -1.2, 2.0, -0.3]),
              np.array([-1.1, 0.8, 0.5])]
    shifts = [rng.normal(size=s.shape) * 0.3 for s in scales]
    folded = [(w * a, b * a + c) for (w, b), a, c in zip(weights, scales, shifts)]
    x = rng.normal(size=(3,) + IN)
    return weights, scales, shifts, folded, x


def _scaled_apply(p, x):
    for k, layer in enumerate(SPEC):
        if layer[0] == "conv":
            x = jax.lax.conv_general_dilated(x, p[k]["w"], (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        elif layer[0] == "dense":
            x = x @ p[k]["w"]
        elif layer[0] == "relu":
            x = jax.nn.relu(x)
        else:
            x = x.reshape(x.shape[0], -1)
        if layer[0] in ("conv", "dense"):
            x = (x + p[k]["b"]) * p[k]["a"] + p[k]["c"]
    return x


@pytest.fixture(scope="module")
def scaled_results():
    weights, scales, shifts, folded, x = _scaled_net()
    idx = [k for k, layer in enumerate(SPEC) if layer[0] in ("conv", "dense")]
    params = [{} for _ in SPEC]
    methods = []
    for name, (rule, _) in SCALED_RULES.items():
        if name == "zbox":
            rule = ja.composites.Composite((("first", rule), ("linear", R.Epsilon(0.1))))
        methods.append(ja.LRP(rule))
    with jax.enable_x64(True):
        for k, (w, b), a, c in zip(idx, weights, scales, shifts):
            params[k] = {"w": jnp.asarray(w), "b": jnp.asarray(b), "a": jnp.asarray(a),
                         "c": jnp.asarray(c)}
        got = O.jit_many(ja.attribute, _scaled_apply, tuple(params), jnp.asarray(x), methods)
    return dict(zip(SCALED_RULES, got))


@pytest.mark.parametrize("name", list(SCALED_RULES))
def test_rules_see_the_folded_scale(scaled_results, name):
    """``(conv(x, W) + b)·a + c`` with ``a`` of both signs (and a zero) is the layer
    ``conv(x, W·a) + (b·a + c)``: every rule equals the oracle on the folded weights — the
    shared basis ``W, W⁺`` must split ``(aW)⁺ = a⁺W⁺ + a⁻W⁻`` correctly."""
    _, _, _, folded, x = _scaled_net()
    oracle_rule = SCALED_RULES[name][1]
    if name == "zbox":
        rule_for = lambda k, layer, n: ("zbox", -2.0, np.array([1.0, 3.0]), 1e-6) if k == 0 \
            else ("eps", 0.1)
    else:
        rule_for = lambda k, layer, n: oracle_rule
    O.check(scaled_results[name], O.lrp(SPEC, folded, x, rule_for))


def _convolutions(method, channels=8):
    """Convolutions XLA runs for ``method`` on ReLU → conv → flatten → dense (the conv's input
    is non-negative and has ``channels`` channels)."""
    def f(p, x):
        h = jax.lax.conv_general_dilated(jax.nn.relu(x), p["w"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(h + p["b"]).reshape(x.shape[0], -1) @ p["d"]

    k = jax.random.split(jax.random.key(0), 3)
    p = {"w": jax.random.normal(k[0], (3, 3, channels, 6)), "b": jnp.ones(6),
         "d": jax.random.normal(k[1], (6 * 36, 3))}
    x = jax.random.normal(k[2], (2, 6, 6, channels))
    comp = ja.composites.Composite((("conv", method), ("dense", R.Epsilon())))
    hlo = jax.jit(lambda p, x: ja.attribute(f, p, x, method=ja.LRP(comp))).lower(p, x)
    return len(re.findall(r" convolution\(", hlo.compile().as_text()))


@pytest.mark.parametrize(("rule", "count"), [
    pytest.param(R.Epsilon(), 2, id="epsilon: the forward's own conv, one transposed"),
    pytest.param(R.ZPlus(), 3, id="z+: W⁺x once more, W⁺ᵀ"),
    pytest.param(R.Gamma(0.25), 4, id="gamma: W⁺x once more, Wᵀ and W⁺ᵀ"),
    pytest.param(R.AlphaBeta(2.0, 1.0), 4, id="alpha-beta: W⁺x once more, Wᵀ and W⁺ᵀ"),
])
def test_terms_share_convolutions(rule, count):
    """W⁻ = W − W⁺: rules mixing W, W⁺ and W⁻ compute ``W⁺x`` as their only extra convolution
    (``Wx`` is the forward's) and two transposed ones at most."""
    assert _convolutions(rule) == count


def test_constant_inputs_are_convolved_once_per_batch():
    """Flat's ``lin(1, 1)`` and z^B's bounds do not depend on the example: one row is convolved
    and broadcast, and the result still matches the batch of per-example explanations."""
    def f(p, x):
        h = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return h.reshape(x.shape[0], -1) @ p["d"]

    k = jax.random.split(jax.random.key(1), 3)
    p = {"w": jax.random.normal(k[0], (3, 3, 8, 4)), "d": jax.random.normal(k[1], (4 * 25, 3))}
    x = jax.random.normal(k[2], (4, 5, 5, 8))
    for rule in (R.Flat(), R.ZBox(-1.0, 2.0)):
        method = ja.LRP(ja.composites.Composite((("conv", rule), ("dense", R.Epsilon()))))
        hlo = jax.jit(lambda p, x: ja.attribute(f, p, x, method=method)).lower(p, x)
        batches = re.findall(r"= f32\[(\d+),[^ ]* convolution\(", hlo.compile().as_text())
        assert "1" in batches, batches  # the constant's convolution runs on one row
        whole = ja.attribute(f, p, x, method=method)
        rows = jnp.concatenate([ja.attribute(f, p, x[i:i + 1], method=method) for i in range(4)])
        np.testing.assert_allclose(whole, rows, rtol=1e-5, atol=1e-6)


def test_constant_input_of_a_layer_that_mixes_rows():
    """``Wᵀ·xᵀ`` reads x as the right operand: its rows are not the output's leading axis, so
    the constant is convolved at full size — and Flat still gives every input ``R/D``."""
    def f(p, x):
        return jnp.einsum("io,ni->no", p["w"], x)  # dot_general(W, x): x is the right operand

    p = {"w": jax.random.normal(jax.random.key(2), (5, 3))}
    x = jax.random.normal(jax.random.key(3), (4, 5))
    target = jnp.array([0, 1, 2, 0])
    got = ja.attribute(f, p, x, target, method=ja.LRP(R.Flat()))
    logit = f(p, x)[jnp.arange(4), target]
    np.testing.assert_allclose(got, jnp.broadcast_to(logit[:, None] / 5, (4, 5)), rtol=1e-5)
