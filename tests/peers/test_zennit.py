"""jaxattr's LRP rules and composites against Zennit, float64 on both sides, same weights.

Relevance seed: jaxattr's LRP starts from the target logit's value; Zennit gets
``grad_output = onehot(target) · output``. A single rule ``ja.LRP(rule)`` is compared with a
Zennit ``LayerMapComposite`` of Zennit's base map (activations Pass, sums and average pools
Norm, batch norms Pass) plus that rule on every ``Linear``/``Conv2d``; the composites with
Zennit's own (``EpsilonPlus``, ``EpsilonPlusFlat``, ``EpsilonGammaBox``, ``EpsilonAlpha2Beta1``,
``EpsilonAlpha2Beta1Flat``). Max pools are the gradient on both sides; the paper CNN has a dead
channel (``dead_channels``) so that max-pool windows tie and the tie convention (first maximum,
both) is exercised by the rules that send relevance into dead ReLUs (flat, w², z^B).

Documented differences (tests below):

* **Batch norm.** jaxattr folds the inference-mode batch norm into the preceding convolution in
  the engine, exactly. Zennit's ``SequentialMergeBatchNorm`` merges it too but leaves the batch
  norm as ``(x − 0)/√(1 + eps)·1 + 0`` — not the identity — so the canonized model's output (and
  with it every relevance) is off by a factor ≈ (1 + eps)^(−1/2) per batch norm (≈ 1e-5 relative
  with PyTorch's eps = 1e-5). The comparisons use :class:`ExactMergeBatchNorm` (running variance
  set to 1 − eps after the merge), which removes exactly that.
* **Average pool stabiliser**: Zennit's ``Norm`` on an ``AvgPool2d`` stabilises the window
  *mean*, ``R/(mean + ε)``; so does jaxattr, whose "sum" segment takes in the division after the
  window sum (found by these tests: it used to stabilise the sum, ε acting like ε/k).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer cross-checks need the [peers] extra (torch)")
zennit = pytest.importorskip("zennit", reason="peer cross-checks need the [peers] extra (zennit)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from zennit import canonizers as ZK  # noqa: E402
from zennit import composites as ZC  # noqa: E402
from zennit import rules as ZR  # noqa: E402
from zennit.types import AvgPool, Convolution  # noqa: E402

import jaxattr as ja  # noqa: E402

import _torch_nets as T  # noqa: E402

EPS = 1e-6          # both libraries' default stabiliser
BOX = (0.0, 1.0)    # the inputs' range (z^B bounds)
BATCH = 3

RULES = {
    "epsilon": (ja.rules.Epsilon(0.25), lambda: ZR.Epsilon(0.25)),
    "epsilon_0": (ja.rules.Epsilon(0.0), lambda: ZR.Epsilon(0.0)),
    "zplus": (ja.rules.ZPlus(), ZR.ZPlus),
    "alpha2_beta1": (ja.rules.AlphaBeta(2.0, 1.0), lambda: ZR.AlphaBeta(2.0, 1.0)),
    "alpha1_beta0": (ja.rules.AlphaBeta(1.0, 0.0), lambda: ZR.AlphaBeta(1.0, 0.0)),
    "gamma": (ja.rules.Gamma(0.25), lambda: ZR.Gamma(0.25)),
    "flat": (ja.rules.Flat(), ZR.Flat),
    "wsquare": (ja.rules.WSquare(), ZR.WSquare),
    "zbox": (ja.rules.ZBox(*BOX), lambda: ZR.ZBox(*BOX)),
}
COMPOSITES = {
    "epsilon_plus": (ja.composites.epsilon_plus(EPS), ZC.EpsilonPlus),
    "epsilon_plus_flat": (ja.composites.epsilon_plus_flat(EPS), ZC.EpsilonPlusFlat),
    "epsilon_gamma_box": (ja.composites.epsilon_gamma_box(*BOX),
                          lambda **kw: ZC.EpsilonGammaBox(low=BOX[0], high=BOX[1], **kw)),
    "epsilon_alpha2_beta1": (ja.composites.epsilon_alpha2_beta1(EPS), ZC.EpsilonAlpha2Beta1),
    "epsilon_alpha2_beta1_flat": (ja.composites.epsilon_alpha2_beta1_flat(EPS),
                                  ZC.EpsilonAlpha2Beta1Flat),
}
PAIRS = {"dense": {}, "paper_cnn": {"transform": T.dead_channels}, "resnet_bn": {}}


class ExactMergeBatchNorm(ZK.SequentialMergeBatchNorm):
    """Zennit's ``SequentialMergeBatchNorm`` with the merged batch norm reduced to the exact
    identity: after the merge its running variance is ``1 − eps`` (Zennit sets 1, so the batch norm
    still divides by √(1 + eps))."""

    @staticmethod
    def merge_batch_norm(modules, batch_norm):
        ZK.SequentialMergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.running_var.data -= batch_norm.eps


def _zennit_kwargs(net, exact_bn=True, avgpool_eps=EPS):
    """Canonizers and layer-map additions for ``net`` (see the module docstring)."""
    if net != "resnet_bn":
        return {}
    merge = ExactMergeBatchNorm() if exact_bn else ZK.SequentialMergeBatchNorm()
    return {"canonizers": [merge], "layer_map": [(AvgPool, ZR.Norm(stabilizer=avgpool_eps))]}


def zennit_rule(net, make_rule, **kwargs):
    """``make_rule()`` on every Linear/Conv2d over Zennit's base layer map."""
    kw = _zennit_kwargs(net, **kwargs)
    rule = (Convolution, torch.nn.Linear)
    layer_map = kw.get("layer_map", []) + ZC.layer_map_base(EPS) + [(rule, make_rule())]
    return ZC.LayerMapComposite(layer_map, canonizers=kw.get("canonizers"))


def zennit(pair, x, target, composite):
    return T.to_numpy(T.zennit_attribute(pair.torch_model, T.to_torch(x), target, composite))


def close(got, want, rtol=1e-9):
    scale = np.abs(want).max()
    assert scale > 0
    err = np.abs(np.asarray(got) - want).max()
    assert err <= rtol * scale, f"max abs diff {err:.3e} = {err / scale:.2e} of max |want| {scale:.3e}"


@pytest.fixture(scope="module")
def results():
    """{net: (pair, x, target, {name: jaxattr relevance})}: every rule and composite in one
    compiled program per net."""
    out = {}
    methods = {n: ja.LRP(r) for n, (r, _) in {**RULES, **COMPOSITES}.items()}
    with jax.enable_x64(True):
        for net, kwargs in PAIRS.items():
            pair = T.make_pair(net, **kwargs)
            x = pair.inputs(BATCH, seed=7)
            target = np.arange(BATCH) % 5
            out[net] = (pair, x, target, T.jit_all(pair.apply_fn, pair.variables, jnp.asarray(x),
                                                   methods, jnp.asarray(target)))
    return out


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("net", list(PAIRS))
def test_rule_matches_zennit(results, net, name):
    pair, x, target, got = results[net]
    want = zennit(pair, x, target, zennit_rule(net, RULES[name][1]))
    close(got[name], want)


@pytest.mark.parametrize("name", list(COMPOSITES))
@pytest.mark.parametrize("net", list(PAIRS))
def test_composite_matches_zennit(results, net, name):
    pair, x, target, got = results[net]
    want = zennit(pair, x, target, COMPOSITES[name][1](**_zennit_kwargs(net)))
    close(got[name], want)


def test_paper_cnn_has_tied_max_pool_windows(results):
    """The tie convention is exercised: a whole channel of the paper CNN is dead, and flat puts
    relevance on it, which reaches the input only through the first maximum of each window."""
    pair, x, _, got = results["paper_cnn"]
    with jax.enable_x64(True):
        p = pair.variables["params"]
        z = jax.lax.conv_general_dilated(jnp.asarray(x), p["block1_conv1"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.nn.relu(z + p["block1_conv1"]["bias"])
        z = jax.lax.conv_general_dilated(h, p["block1_conv2"]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        assert float(jnp.max((z + p["block1_conv2"]["bias"])[..., 0])) < 0   # channel 0 dead


def test_zennit_batch_norm_merge_is_not_exact(results):
    """Zennit's stock ``SequentialMergeBatchNorm``: the canonized model's logits differ from the
    original's by ≈ 1e-5 relative (the merged batch norm still divides by √(1 + eps)), and so does
    every relevance; :class:`ExactMergeBatchNorm` makes the canonized model the same function.
    jaxattr folds exactly (``test_composite_matches_zennit[resnet_bn-*]``)."""
    pair, x, target, got = results["resnet_bn"]
    xt = T.to_torch(x)
    with torch.no_grad():
        original = pair.torch_model(xt).numpy()
    for canonizer, lo, hi in ((ZK.SequentialMergeBatchNorm(), 1e-7, 1e-4), (ExactMergeBatchNorm(), 0, 1e-13)):
        with ZC.EpsilonPlus(canonizers=[canonizer]).context(pair.torch_model):
            with torch.no_grad():
                merged = pair.torch_model(xt).numpy()
        rel = np.abs(merged - original).max() / np.abs(original).max()
        assert lo <= rel <= hi, (type(canonizer).__name__, rel)
    stock = zennit(pair, x, target, COMPOSITES["epsilon_plus"][1](**{
        **_zennit_kwargs("resnet_bn"), "canonizers": [ZK.SequentialMergeBatchNorm()]}))
    err = np.abs(got["epsilon_plus"] - stock).max() / np.abs(stock).max()
    assert 1e-7 < err < 1e-4


def test_avgpool_stabiliser_placement_matters(results):
    """Zennit's default ``Norm(ε)`` on average pools matches; ``Norm(ε/4)`` (a stabilised window
    *sum*, jaxattr's old behaviour) does not: the test sees the placement."""
    pair, x, target, got = results["resnet_bn"]
    on_sum = zennit(pair, x, target, ZC.EpsilonPlus(**_zennit_kwargs("resnet_bn", avgpool_eps=EPS / 4)))
    matched = zennit(pair, x, target, ZC.EpsilonPlus(**_zennit_kwargs("resnet_bn")))
    assert np.abs(got["epsilon_plus"] - on_sum).max() > 1e-8 * np.abs(on_sum).max()
    close(got["epsilon_plus"], matched)


def test_avgpool_norm_matches_zennit_default():
    """``Composite(... ("sum", Norm(0.05)) ...)`` on the residual CNN (2×2 average pool) against
    Zennit's ``Norm(stabilizer=0.05)`` on ``AvgPool2d`` (and on the skip sum), ε on every
    dense/conv layer: equal (it differed by ≈ 7 % while jaxattr stabilised the window sum)."""
    from jaxattr.composites import Composite

    e = 0.05
    with jax.enable_x64(True):
        pair = T.make_pair("resnet_bn")
        x = pair.inputs(BATCH, seed=7)
        target = np.arange(BATCH) % 5
        comp = Composite((("linear", ja.rules.Epsilon(EPS)), ("activation", ja.rules.Pass()),
                          ("sum", ja.rules.Norm(e)), ("scale", ja.rules.Pass())))
        got = T.jit_all(pair.apply_fn, pair.variables, jnp.asarray(x), {"lrp": ja.LRP(comp)},
                        jnp.asarray(target))["lrp"]
    layer_map = ZC.layer_map_base(e) + [((Convolution, torch.nn.Linear), ZR.Epsilon(EPS))]
    want = zennit(pair, x, target, ZC.LayerMapComposite(layer_map, canonizers=[ExactMergeBatchNorm()]))
    close(got, want)
