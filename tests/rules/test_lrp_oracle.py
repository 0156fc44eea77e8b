"""LRP rules, composites and Deep Taylor against an independent float64 numpy oracle.

The oracle (``tests/oracle.py``) implements each rule from its formula (Zennit's definitions,
DESIGN §3/§9) and shares no code with ``jaxattr``. Every network has non-zero biases and sees
inputs ~ N(0, 1), so the x⁻ terms of z⁺/αβ/γ are exercised at the first layer; a ``tanh``
before the first dense layer gives the dense layers signed inputs as well.

To stay fast, every method on a network is traced into one jitted program (``jit_many``); each
test then compares one method's result.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja


import oracle as O  # noqa: E402  (tests/ is on sys.path, see conftest.py)
R = ja.rules
C = ja.composites

# conv 3x3 SAME -> max pool -> ReLU -> conv 3x3 VALID -> tanh -> flatten -> dense -> ReLU -> dense.
# The pool sits before the ReLU (same function) so no window ties at zero.
CONV = (("conv", 3, "SAME"), ("maxpool",), ("relu",), ("conv", 4, "VALID"), ("tanh",),
        ("flatten",), ("dense", 5), ("relu",), ("dense", 4))
CONV_IN = (8, 8, 2)
# average pool (the proportional "Norm" split) between ReLU convs
AVG = (("conv", 3, "SAME"), ("relu",), ("avgpool",), ("conv", 3, "SAME"), ("relu",), ("flatten",),
       ("dense", 4))
AVG_IN = (6, 6, 2)
DENSE = (("dense", 6), ("relu",), ("dense", 5), ("tanh",), ("dense", 4))
DENSE_IN = (5,)

NETS = {"conv": (CONV, CONV_IN, 0), "avg": (AVG, AVG_IN, 1), "dense": (DENSE, DENSE_IN, 2)}
BATCH = 3


def _net(name):
    spec, in_shape, seed = NETS[name]
    weights = O.init_weights(spec, in_shape, seed)
    x = np.random.default_rng(100 + seed).normal(size=(BATCH,) + in_shape)
    return spec, weights, x


def _every(rule):
    return lambda k, layer, n: rule


# name -> (ja rule, oracle rule tuple)
RULES = {
    "eps0": (R.Epsilon(0.0), ("eps", 0.0)),
    "eps0.1": (R.Epsilon(0.1), ("eps", 0.1)),
    "eps_default": (R.Epsilon(), ("eps", 1e-6)),
    "zplus": (R.ZPlus(), ("zplus", 1e-6)),
    "zplus_eps0.1": (R.ZPlus(epsilon=0.1), ("zplus", 0.1)),
    "ab21_split": (R.AlphaBeta(2.0, 1.0, bias="split"), ("ab", 2.0, 1.0, "split", 1e-6)),
    "ab21_whole": (R.AlphaBeta(2.0, 1.0, bias="whole"), ("ab", 2.0, 1.0, "whole", 1e-6)),
    "ab21_none": (R.AlphaBeta(2.0, 1.0, bias="none"), ("ab", 2.0, 1.0, "none", 1e-6)),
    "ab10": (R.AlphaBeta(1.0, 0.0), ("ab", 1.0, 0.0, "split", 1e-6)),
    "ab32_whole_eps": (R.AlphaBeta(3.0, 2.0, bias="whole", epsilon=0.05),
                       ("ab", 3.0, 2.0, "whole", 0.05)),
    "gamma0.25": (R.Gamma(0.25), ("gamma", 0.25, 1e-6)),
    "gamma1_eps": (R.Gamma(1.0, epsilon=0.05), ("gamma", 1.0, 0.05)),
    "flat": (R.Flat(), ("flat", 1e-6)),
    "wsquare": (R.WSquare(), ("wsquare", 1e-6)),
    "zbox": (R.ZBox(-2.0, 3.0), ("zbox", -2.0, 3.0, 1e-6)),
}

RULE_NAMES = list(RULES)


def _composites():
    """name -> (composite, oracle rule_for(k, layer, n_linear)).  ε's differ per layer kind so a
    rule put on the wrong kind shows."""
    def eps_plus(k, layer, n):
        return ("eps", 0.01) if layer[0] == "dense" else ("zplus", 1e-6)

    def eps_plus_flat(k, layer, n):
        return ("flat", 1e-6) if k == 0 else eps_plus(k, layer, n)

    def gamma_box(low, high):
        def rule_for(k, layer, n):
            if layer[0] == "dense":
                return ("eps", 0.01)
            return ("zbox", low, high, 1e-6) if k == 0 else ("gamma", 0.25, 1e-6)
        return rule_for

    def a2b1(k, layer, n):
        return ("eps", 0.01) if layer[0] == "dense" else ("ab", 2.0, 1.0, "split", 1e-6)

    def a2b1_flat(k, layer, n):
        return ("flat", 1e-6) if k == 0 else a2b1(k, layer, n)

    def custom(k, layer, n):
        if k == n - 1:
            return ("eps", 0.5)
        if k == 0:
            return ("wsquare", 1e-6)
        return ("gamma", 0.1, 1e-6) if layer[0] == "conv" else ("zplus", 1e-6)

    custom_comp = C.Composite((("last", R.Epsilon(0.5)), ("first", R.WSquare()),
                               ("conv", R.Gamma(0.1)), ("dense", R.ZPlus()))) + C.LRP_BASE
    return {
        "epsilon_plus": (C.epsilon_plus(0.01), eps_plus),
        "epsilon_plus_flat": (C.epsilon_plus_flat(0.01), eps_plus_flat),
        "epsilon_gamma_box": (C.epsilon_gamma_box(-2.0, 3.0, 0.25, 0.01), gamma_box(-2.0, 3.0)),
        "epsilon_gamma_box_per_channel": (C.epsilon_gamma_box((-1.0, -2.5), (1.5, 2.0), 0.25, 0.01),
                                          gamma_box((-1.0, -2.5), (1.5, 2.0))),
        "epsilon_alpha2_beta1": (C.epsilon_alpha2_beta1(0.01), a2b1),
        "epsilon_alpha2_beta1_flat": (C.epsilon_alpha2_beta1_flat(0.01), a2b1_flat),
        "custom_first_last": (custom_comp, custom),
    }


COMPOSITES = _composites()
COMPOSITE_NAMES = list(COMPOSITES)


def _deep_taylor():
    """name -> (method, oracle rule_for, output_relu)."""
    ab10_whole = ("ab", 1.0, 0.0, "whole", 0.0)
    return {
        "plain": (ja.DeepTaylor(), lambda k, layer, n: ab10_whole, True),
        "raw_seed": (ja.DeepTaylor(output_relu=False), lambda k, layer, n: ab10_whole, False),
        "bounded": (ja.DeepTaylor(low=-2.0, high=3.0),
                    lambda k, layer, n: ("zbox", -2.0, 3.0, 0.0) if k == 0 else ab10_whole, True),
        "ignore_bias": (ja.DeepTaylor(ignore_bias=True),
                        lambda k, layer, n: ("ab", 1.0, 0.0, "none", 0.0), True),
    }


DEEP_TAYLOR = _deep_taylor()
DT_NAMES = list(DEEP_TAYLOR)
TARGET = np.array([1, 3, 0])  # explicit targets for the composites (the rules use argmax)


def _dt_target(net):
    """Deep Taylor's targets: the example with the largest logit gets its predicted class, the
    others their likeliest class with a *negative* logit, so every batch mixes positive and
    negative target logits (the output ReLU matters)."""
    spec, weights, x = _net(net)
    out = O.logits(spec, weights, x)
    target = np.where(out < 0, out, -np.inf).argmax(-1)
    best = out.max(-1).argmax()
    target[best] = out[best].argmax()
    return target

# Which (group, name) run on which network: everything on the conv net; on the others a subset
# (the average-pool net is about the proportional split; on an all-dense net epsilon_plus,
# epsilon_gamma_box and epsilon_alpha2_beta1 are all "ε everywhere"), to keep compile time down.
SUBSET = {
    "avg": {("rule", n) for n in ("eps0.1", "zplus", "ab21_split", "ab21_whole", "gamma0.25",
                                  "wsquare", "zbox")}
           | {("composite", n) for n in ("epsilon_plus_flat", "epsilon_gamma_box_per_channel",
                                         "epsilon_alpha2_beta1")}
           | {("dt", "plain"), ("dt", "raw_seed")},
    "dense": {("rule", n) for n in RULES}
             | {("composite", n)
                for n in ("epsilon_plus", "epsilon_plus_flat", "custom_first_last")}
             | {("dt", n) for n in DEEP_TAYLOR},
}


def _runs(net, group, name):
    return net not in SUBSET or (group, name) in SUBSET[net]


def _cases(group, names):
    return [pytest.param(net, n, id=f"{n}-{net}")
            for net in NETS for n in names if _runs(net, group, n)]


@pytest.fixture(scope="module")
def engine_results():
    """{(net, group, name): relevance} for every rule, composite and Deep Taylor variant; one
    compiled program per network. Rules explain the predicted class (target=None), composites
    the explicit TARGET, Deep Taylor :func:`_dt_target`."""
    out = {}
    with jax.enable_x64(True):
        for net in NETS:
            spec, weights, x = _net(net)
            entries = [("rule", n, ja.LRP(RULES[n][0]), None) for n in RULE_NAMES]
            entries += [("dt", n, DEEP_TAYLOR[n][0], _dt_target(net)) for n in DT_NAMES]
            entries += [("composite", n, ja.LRP(COMPOSITES[n][0]), TARGET) for n in COMPOSITE_NAMES]
            entries = [e for e in entries if _runs(net, e[0], e[1])]
            got = O.jit_many(ja.attribute, O.jax_apply(spec), O.jax_params(weights), jnp.asarray(x),
                             [e[2] for e in entries], target=[e[3] for e in entries])
            for (group, name, _, _), g in zip(entries, got):
                out[(net, group, name)] = g
    return out


@pytest.mark.parametrize(("net", "name"),
                         _cases("rule", RULE_NAMES))
def test_rule_matches_oracle(engine_results, net, name):
    spec, weights, x = _net(net)
    want = O.lrp(spec, weights, x, _every(RULES[name][1]))
    O.check(engine_results[(net, "rule", name)], want)


@pytest.mark.parametrize(("net", "name"), _cases("composite", COMPOSITE_NAMES))
def test_composite_matches_oracle(engine_results, net, name):
    spec, weights, x = _net(net)
    want = O.lrp(spec, weights, x, COMPOSITES[name][1], target=TARGET)
    O.check(engine_results[(net, "composite", name)], want)


@pytest.mark.parametrize(("net", "name"), _cases("dt", DT_NAMES))
def test_deep_taylor_matches_oracle(engine_results, net, name):
    spec, weights, x = _net(net)
    target = _dt_target(net)
    value = O.logits(spec, weights, x)[np.arange(BATCH), target]
    positive = value > 0
    assert positive.sum() == 1  # both signs of the seed are exercised
    _, rule_for, output_relu = DEEP_TAYLOR[name]
    want = O.lrp(spec, weights, x, rule_for, target=target, output_relu=output_relu)
    assert np.abs(want[positive]).max() > 1e-3  # the positive example is not trivially zero
    if not output_relu:
        assert np.abs(want[~positive]).max() > 1e-3
    O.check(engine_results[(net, "dt", name)], want)


def test_deep_taylor_negative_logit_is_zero_and_raw_seed_inverts():
    """iNNvestigate's Deep Taylor puts a ReLU on the outputs: a negative target logit gives an
    all-zero map. Seeding the raw negative logit instead gives an α1β0 map with every
    relevance ≤ 0, so under MoRF the most positive evidence would be perturbed last."""
    spec, weights, x = _net("conv")
    with jax.enable_x64(True):
        f, p = O.jax_apply(spec), O.jax_params(weights)
        out = O.logits(spec, weights, x)
        negative = np.where(out < 0, out, -np.inf).argmax(-1)  # likeliest negative class
        assert np.all(out[np.arange(BATCH), negative] < 0)
        relu = ja.attribute(f, p, jnp.asarray(x), target=jnp.asarray(negative),
                            method=ja.DeepTaylor())
        raw = ja.attribute(f, p, jnp.asarray(x), target=jnp.asarray(negative),
                           method=ja.DeepTaylor(output_relu=False))
    np.testing.assert_array_equal(np.asarray(relu), 0.0)
    assert np.all(np.asarray(raw) <= 0) and np.asarray(raw).min() < -1e-3


@pytest.mark.parametrize("rule", ["eps", "zplus", "ab", "gamma"])
@pytest.mark.parametrize("net", list(NETS))
def test_check_sees_a_stabiliser(net, rule):
    """The comparison is sharp enough to catch a missing or misplaced stabiliser: the oracle
    with ε = 1e-6 (the rules' default) must *fail* :func:`oracle.check` against itself with
    ε = 0 (at the old rtol = atol = 1e-5, 10 of these 12 cases passed)."""
    spec, weights, x = _net(net)
    tuples = {"eps": lambda e: ("eps", e), "zplus": lambda e: ("zplus", e),
              "ab": lambda e: ("ab", 2.0, 1.0, "split", e), "gamma": lambda e: ("gamma", 0.25, e)}
    with_eps = O.lrp(spec, weights, x, _every(tuples[rule](1e-6)))
    without = O.lrp(spec, weights, x, _every(tuples[rule](0.0)))
    O.check(with_eps, with_eps)
    with pytest.raises(AssertionError, match="mismatch"):
        O.check(without, with_eps)


def _two_input_layer(relu_first):
    def apply(p, x):
        return (jax.nn.relu(x) if relu_first else x) @ p["w"] + p["b"]
    return apply


RELU_DENSE = _two_input_layer(True)
PLAIN_DENSE = _two_input_layer(False)


@pytest.mark.parametrize("apply_fn", [pytest.param(RELU_DENSE, id="relu_then_dense"),
                                      pytest.param(PLAIN_DENSE, id="dense")])
def test_deep_taylor_whole_bias_by_hand(apply_fn):
    """x = (2, 1) >= 0 (so the ReLU changes nothing), w_0 = (1, −1), b_0 = −0.5: z = 0.5.
    α1β0 with the whole bias: R = x ⊙ w⁺ · z / (w⁺·x + b) = (2·0.5/1.5, 0) = (2/3, 0).
    Dropping b⁻ gives (2·0.5/2, 0) = (0.5, 0)."""
    with jax.enable_x64(True):
        params = {"w": jnp.array([[1.0, 0.3], [-1.0, 0.2]]), "b": jnp.array([-0.5, 0.1])}
        got = ja.attribute(apply_fn, params, jnp.array([[2.0, 1.0]]), target=jnp.array([0]),
                           method=ja.DeepTaylor())
    np.testing.assert_allclose(np.asarray(got), [[2.0 / 3.0, 0.0]], rtol=1e-10, atol=1e-12)


def test_oracle_lrp0_is_gradient_times_input():
    """The oracle itself: LRP-0 equals gradient × input on ReLU nets with bias and max pool."""
    spec = (("conv", 3, "SAME"), ("relu",), ("maxpool",), ("flatten",), ("dense", 5), ("relu",),
            ("dense", 3))
    weights = O.init_weights(spec, (4, 4, 2), 7)
    x = np.random.default_rng(7).normal(size=(3, 4, 4, 2))
    np.testing.assert_allclose(O.lrp(spec, weights, x, _every(("eps", 0.0))),
                               x * O.gradient(spec, weights, x), rtol=1e-9, atol=1e-12)


def test_oracle_conv_transpose_is_adjoint():
    """<conv(x), g> == <x, convᵀ(g)> for both paddings: the oracle's conv backward is right."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 5, 2))
    w = rng.normal(size=(3, 3, 2, 3))
    for padding in ("SAME", "VALID"):
        z = O.conv_forward(x, w, 0.0, padding)
        g = rng.normal(size=z.shape)
        adjoint = O.conv_transpose(g, w, x.shape, padding)
        np.testing.assert_allclose((z * g).sum(), (x * adjoint).sum(), rtol=1e-12)


def test_linen_composite_matches_oracle():
    """The Linen version of the conv net (names SpecNet/Conv_0 ...) through ``ja.attribute``
    directly (its own jit, concrete-input checks), epsilon_gamma_box with explicit targets."""
    spec, weights, x = _net("conv")
    comp, rule_for = COMPOSITES["epsilon_gamma_box"]
    with jax.enable_x64(True):
        got = ja.attribute(O.linen_apply(spec), O.linen_params(spec, weights), jnp.asarray(x),
                           target=jnp.asarray(TARGET), method=ja.LRP(comp))
    O.check(np.asarray(got), O.lrp(spec, weights, x, rule_for, target=TARGET))


def test_audit_names_composite_rules():
    """The audit puts zB on the first conv, γ on the second, ε on both dense layers, Pass on the
    activations and the ordinary gradient on the max pool."""
    spec, weights, x = _net("conv")
    with jax.enable_x64(True):
        rows = ja.engine.audit(O.linen_apply(spec), O.linen_params(spec, weights), jnp.asarray(x),
                               ja.LRP(C.epsilon_gamma_box(-2.0, 3.0, 0.25, 0.01)))
    by_kind = {}
    for row in rows:
        if row.kind in ("conv", "dense", "maxpool", "activation"):
            by_kind.setdefault((row.kind, row.name), set()).add(row.rule)
    assert by_kind[("conv", "SpecNet/Conv_0")] == {repr(R.ZBox(-2.0, 3.0))}
    assert by_kind[("conv", "SpecNet/Conv_1")] == {repr(R.Gamma(0.25))}
    assert by_kind[("dense", "SpecNet/Dense_0")] == {repr(R.Epsilon(0.01))}
    assert by_kind[("dense", "SpecNet/Dense_1")] == {repr(R.Epsilon(0.01))}
    assert by_kind[("maxpool", "SpecNet")] == {"gradient"}
    assert by_kind[("activation", "SpecNet")] == {"Pass()"}


def test_terms_on_the_negative_part_of_a_nonnegative_input_are_bias_only():
    """After a ReLU, x⁻ = 0: an x⁻ term adds only its bias to the denominator and passes no
    relevance; a rule made of x⁻ terms alone passes zeros."""
    from jaxattr.rules.base import Group, LayerRule, Term

    class OnlyNegative(LayerRule):
        def groups(self):
            return (Group((Term("neg", (("neg", 1.0),), (("neg", 1.0),)),)),)

    f = lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"] + p["b"]
    p = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2)), "b": -jnp.ones(2)}
    comp = ja.composites.Composite((("last", OnlyNegative(epsilon=0.0)),))
    got = ja.attribute(f, p, jnp.ones((2, 3)), method=ja.LRP(comp))
    np.testing.assert_array_equal(got, np.zeros((2, 3)))
