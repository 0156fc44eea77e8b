"""jaxattr's gradient family, Integrated Gradients and DeepLIFT against Captum, float64 on both
sides, on the same weights (``_torch_nets``).

Settings where the two agree exactly, and the documented differences:

* Gradient, Gradient×Input, Guided Backprop, Integrated Gradients: equal on the dense net, the
  small paper CNN and the residual/batch-norm CNN (Captum's ``Saliency`` needs ``abs=False``).
  Captum casts the IG quadrature weights to float32 (``torch.tensor(step_sizes).float()`` in
  ``integrated_gradients.py``), so IG agrees to ~1e-9 relative, not 1e-15.
* DeconvNet: the backward signal passes dead ReLUs, so it reaches max-pool windows whose inputs
  are all 0 (tied maxima); the paper CNN here has a dead channel (``dead_channels``) so that
  every window of it ties. jaxattr's max pools (``ja.rules.WinnerTakeAll``) route a tie to the
  first maximum, as torch does: equal.
* DeepLIFT (Rescale): equal on nets without max pools. Captum's max-pool rule (``maxpool`` in
  ``captum/attr/_core/deep_lift.py``) routes Δy per window to the winner at x when y ≥ y₀ and to
  the winner at x₀ otherwise, dividing by that element's own Δx; jaxattr's ``maxpool=
  "interpolate"`` mixes the two routings, ``"gradient"`` keeps the routing at x. All three are
  the gradient when the winner is the same at x and x₀, which is the setting compared exactly
  (zero reference, non-positive conv biases, so every reference activation is 0; a ``Clone``
  between ReLU and pool, see next point).
  Captum 0.9.0 has two bugs here, both tested below: with a ReLU module right before the max pool
  (the paper CNN) the max-pool rule is silently dropped (captum#1104: Captum's result is then
  exactly Rescale + first-max gradient pools, and does not sum to delta), and in a batch the
  max-pool rule's zero-Δ fallback uses the first example's gradient for every example
  (captum#1276: wrong per-example contributions that still sum to delta).
  ``DeepLIFT(maxpool="gradient")`` routes a tied maximum to the first maximum, like every other
  jaxattr max pool and torch (found by these tests: it used to split ties equally).

Import order matters in this environment: torch (and triton, via torchvision) before jax/TF.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer cross-checks need the [peers] extra (torch)")
pytest.importorskip("zennit", reason="peer cross-checks need the [peers] extra (zennit)")
captum_attr = pytest.importorskip("captum.attr", reason="peer cross-checks need the [peers] extra (captum)")

import warnings  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxattr as ja  # noqa: E402
from jaxattr.models.pooling import max_pool_2x2  # noqa: E402

import _torch_nets as T  # noqa: E402

BATCH = 3
STEPS = 16

GRADIENT_FAMILY = {
    "gradient": (ja.Gradient(), lambda m: (captum_attr.Saliency(m), {"abs": False})),
    "gradient_x_input": (ja.GradientXInput(), lambda m: (captum_attr.InputXGradient(m), {})),
    "guided_backprop": (ja.GuidedBackprop(), lambda m: (captum_attr.GuidedBackprop(m), {})),
    "deconvnet": (ja.DeconvNet(), lambda m: (captum_attr.Deconvolution(m), {})),
    "integrated_gradients": (ja.IntegratedGradients(steps=STEPS, rule="gausslegendre"),
                             lambda m: (captum_attr.IntegratedGradients(m),
                                        {"method": "gausslegendre", "n_steps": STEPS})),
    "integrated_gradients_baseline": (
        ja.IntegratedGradients(steps=STEPS, baseline=0.5, rule="gausslegendre"),
        lambda m: (captum_attr.IntegratedGradients(m),
                   {"method": "gausslegendre", "n_steps": STEPS, "baselines": 0.5})),
    "deeplift": (ja.DeepLIFT(reference=0.0), lambda m: (captum_attr.DeepLift(m), {})),
    "deeplift_gradient_pool": (ja.DeepLIFT(reference=0.0, maxpool="gradient"),
                               lambda m: (captum_attr.DeepLift(m), {})),
}
#: Captum casts IG's quadrature weights to float32
RTOL = {"integrated_gradients": 1e-7, "integrated_gradients_baseline": 1e-7}


def captum(method, model, x, target, **extra):
    algo, kwargs = GRADIENT_FAMILY[method][1](model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about the hooks it sets
        out = algo.attribute(T.to_torch(x).requires_grad_(True), target=torch.as_tensor(target),
                             **kwargs, **extra)
    if isinstance(out, tuple):
        return T.to_numpy(out[0]), out[1].detach().numpy()
    return T.to_numpy(out)


def close(got, want, rtol=1e-10):
    """Agreement relative to the largest attribution (attributions span many magnitudes)."""
    scale = np.abs(want).max()
    assert scale > 0
    err = np.abs(np.asarray(got) - want).max()
    assert err <= rtol * scale, f"max abs diff {err:.3e} = {err / scale:.2e} of max |want| {scale:.3e}"


#: (net, methods compared exactly there, make_pair kwargs)
CASES = {
    "dense": (list(GRADIENT_FAMILY), {}),
    "resnet_bn": (list(GRADIENT_FAMILY), {}),
    # the paper CNN, a dead channel so that max-pool windows tie; DeepLIFT: see below
    "paper_cnn": ([m for m in GRADIENT_FAMILY if not m.startswith("deeplift")],
                  {"transform": T.dead_channels}),
    # Captum's max-pool rule active (Clone, captum#1104) and the winner the same at x and x₀
    "paper_cnn_zero_reference": (["deeplift", "deeplift_gradient_pool"],
                                 {"transform": T.nonpositive_conv_biases, "clone_before_pool": True}),
}


@pytest.fixture(scope="module")
def results():
    """{case: (pair, x, target, {method: jaxattr result})}, one compiled program per case."""
    out = {}
    with jax.enable_x64(True):
        for case, (methods, kwargs) in CASES.items():
            pair = T.make_pair(case.split("_zero")[0], **kwargs)
            x = pair.inputs(BATCH, seed=11)
            target = np.arange(BATCH) % 5
            got = T.jit_all(pair.apply_fn, pair.variables, jnp.asarray(x),
                            {m: GRADIENT_FAMILY[m][0] for m in methods}, jnp.asarray(target))
            out[case] = (pair, x, target, got)
    return out


@pytest.mark.parametrize(("case", "method"), [pytest.param(c, m, id=f"{m}-{c}")
                                              for c, (ms, _) in CASES.items() for m in ms])
def test_matches_captum(results, case, method):
    pair, x, target, got = results[case]
    want = captum(method, pair.torch_model, x, target)
    close(got[method], want, RTOL.get(method, 1e-10))


# --------------------------------------------------------------------------------------------
# DeepLIFT: summation to delta, Captum's max-pool rule and its two bugs
# --------------------------------------------------------------------------------------------

def _delta(pair, x, target, reference=0.0):
    """f_t(x) − f_t(x₀) per example."""
    with jax.enable_x64(True):
        both = T.jax_logits(pair, np.concatenate([x, np.full_like(x, reference)]))
    rows = np.arange(len(x))
    return both[rows, target] - both[len(x) + rows, target]


def _deeplift(pair, x, target, **kwargs):
    with jax.enable_x64(True):
        return T.jit_all(pair.apply_fn, pair.variables, jnp.asarray(x),
                         {"dl": ja.DeepLIFT(**kwargs)}, jnp.asarray(target))["dl"]


def _rescale_first_max(pair, x, target):
    """DeepLIFT with Rescale on the activations and the plain first-max gradient on max pools
    (``ja.rules.WinnerTakeAll``), zero reference: what Captum's DeepLift computes when captum#1104
    drops its max-pool rule."""
    from jaxattr.composites import Composite
    from jaxattr.methods import backward

    comp = Composite((("activation", ja.rules.Rescale()), ("maxpool", ja.rules.WinnerTakeAll())))
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        m = backward(pair.apply_fn, pair.variables, xj, jnp.asarray(target), comp, "one",
                     reference=jnp.zeros_like(xj))[0]
        return np.asarray(xj * m)


def test_deeplift_captum_drops_maxpool_rule_after_relu():
    """captum#1104 (Captum 0.9.0): on the paper CNN (``ReLU`` module right before ``MaxPool2d``)
    Captum's DeepLift does not sum to delta: both modules' hooks sit on one tensor and the ReLU
    reads the pool's plain gradient, so the max-pool rule is lost — Captum's result is exactly
    Rescale + the first-max gradient at the pools. A ``Clone`` between ReLU and pool restores its
    max-pool rule and summation to delta. jaxattr's DeepLIFT sums to delta on the same network."""
    with jax.enable_x64(True):
        stock = T.make_pair("paper_cnn")
        cloned = T.make_pair("paper_cnn", clone_before_pool=True)
    x = stock.inputs(1, seed=4)
    target = np.array([2])
    delta = _delta(stock, x, target)
    want, captum_gap = captum("deeplift", stock.torch_model, x, target, return_convergence_delta=True)
    _, cloned_gap = captum("deeplift", cloned.torch_model, x, target, return_convergence_delta=True)
    assert abs(captum_gap[0]) > 1e-3 * abs(delta[0])          # Captum: not summation-exact
    close(_rescale_first_max(stock, x, target), want)          # ... because pools are gradients
    assert abs(cloned_gap[0]) < 1e-12                          # with the workaround it is exact
    got = _deeplift(stock, x, target)
    np.testing.assert_allclose(got.reshape(1, -1).sum(1), delta, rtol=1e-10, atol=1e-14)


def test_deeplift_gradient_pool_matches_rescale_with_first_max():
    """``ja.DeepLIFT(maxpool="gradient")`` ("the routing at x", the gradient) against Rescale +
    the first-max gradient (= Captum's DeepLift on the stock paper CNN, captum#1104), zero
    reference, batch of one: they differ where a window of dead ReLUs ties at x while the
    reference activates them (here by ≈ 17 % of the largest contribution)."""
    with jax.enable_x64(True):
        pair = T.make_pair("paper_cnn")
    x = pair.inputs(1, seed=4)
    target = np.array([2])
    close(_deeplift(pair, x, target, maxpool="gradient"), _rescale_first_max(pair, x, target))


def test_deeplift_benchmark_network_is_like_for_like():
    """The DeepLIFT rows of ``benchmarks/peers.py`` time Captum's DeepLift against jaxattr's on
    the full paper CNN with a ``Clone`` before each max pool (captum#1104) and its conv biases
    made ≤ 0 (``T.nonpositive_conv_biases``): at the zero reference every conv-stack activation
    is 0, so Captum's max-pool rule, ``maxpool="gradient"`` and the default ``"interpolate"`` all
    reduce to the gradient and the two libraries compute the same contributions (float64, 1e-10
    of the largest). With the stock biases Captum's rule (Δy to the winner at x or at x₀,
    whichever maximum is larger, divided by that element's Δx) equals none of jaxattr's: every
    mode differs by more than 10 % — the reason for the benchmark's network."""
    modes = ("gradient", "interpolate", "scaled_gradient")
    for transform, agree in ((T.nonpositive_conv_biases, True), (None, False)):
        with jax.enable_x64(True):
            pair = T.make_pair("paper_cnn_full", clone_before_pool=True, transform=transform)
            x = pair.inputs(2, seed=0)
            target = T.jax_logits(pair, x).argmax(-1)
            got = T.jit_all(pair.apply_fn, pair.variables, jnp.asarray(x),
                            {m: ja.DeepLIFT(maxpool=m) for m in modes}, jnp.asarray(target))
        want, gap = captum("deeplift", pair.torch_model, x, target, return_convergence_delta=True)
        assert np.abs(gap).max() < 1e-12                        # Captum sums to delta (Clone)
        for mode in modes:
            if agree:
                close(got[mode], want)
            else:
                assert np.abs(got[mode] - want).max() > 0.1 * np.abs(want).max(), mode


class _EdgeNet(nn.Module):
    """conv (zero-sum kernels, so a flat region gives Δ = 0 after it) → 2×2 max pool → dense."""

    @nn.compact
    def __call__(self, x):
        h = max_pool_2x2(nn.Conv(2, (3, 3), padding="SAME", name="conv")(x))
        return nn.Dense(3, name="dense")(h.reshape(h.shape[0], -1))


def _edge_pair():
    model = _EdgeNet()
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 1, 2))
    kernel -= kernel.mean(axis=(0, 1, 2), keepdims=True)      # each filter sums to 0
    variables = {"params": {"conv": {"kernel": kernel, "bias": rng.normal(size=2) * 0.1},
                            "dense": {"kernel": rng.normal(size=(4 * 4 * 2, 3)),
                                      "bias": rng.normal(size=3) * 0.1}}}
    with jax.enable_x64(True):
        variables = jax.tree_util.tree_map(jnp.asarray, variables)
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    dense = torch.nn.Linear(32, 3)
    T._load_conv(conv, variables["params"]["conv"], torch.float64)
    T._load_dense(dense, variables["params"]["dense"], torch.float64, rows=(4, 4, 2))
    tmodel = torch.nn.Sequential(conv, torch.nn.MaxPool2d(2), torch.nn.Flatten(), dense).double().eval()
    return T.Pair("edge", model.apply, variables, tmodel, (8, 8, 1))


def test_deeplift_captum_batch_uses_first_example_gradient():
    """captum#1276 (Captum 0.9.0): where a max pool's input did not change (Δ = 0, here a flat
    image region under zero-sum filters), Captum falls back to ``grad_input[0]`` — the first
    example's gradient — for every example in the batch. Example 1 is flat, example 0 is not:
    Captum's batch result for example 1 differs from its own batch-of-one result, while jaxattr's
    batch result equals its per-example results and sums to delta. Summation to delta does not
    reveal this bug: the wrong multipliers sit where Δz = 0, so they move contributions between
    pixels (through the zero-sum filters) without changing their sum."""
    pair = _edge_pair()
    rng = np.random.default_rng(1)
    x = np.stack([rng.uniform(size=(8, 8, 1)), np.full((8, 8, 1), 0.6)])
    target = np.array([0, 1])

    batch, gap = captum("deeplift", pair.torch_model, x, target, return_convergence_delta=True)
    single = np.concatenate([captum("deeplift", pair.torch_model, x[i:i + 1], target[i:i + 1])
                             for i in range(2)])
    np.testing.assert_allclose(batch[0], single[0], rtol=1e-12, atol=1e-15)  # example 0 is fine
    assert np.abs(batch[1] - single[1]).max() > 1e-3 * np.abs(single[1]).max()
    assert np.abs(gap).max() < 1e-12                           # yet it sums to delta

    got = _deeplift(pair, x, target)
    got_single = np.concatenate([_deeplift(pair, x[i:i + 1], target[i:i + 1]) for i in range(2)])
    np.testing.assert_allclose(got, got_single, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.reshape(2, -1).sum(1), _delta(pair, x, target), rtol=1e-10)


class _PoolOnly(nn.Module):
    """One 1×2 max pool, read by a dense layer of weight 1: the DeepLIFT toy of one window."""

    @nn.compact
    def __call__(self, x):
        return jnp.max(x, axis=(1, 2, 3))[:, None]


def test_deeplift_maxpool_rules_documented():
    """One window, x = (3, 0.5), x₀ = (1, 5): y = 3, y₀ = 5, Δy = −2, the winner changes.

    * Captum routes Δy to x₀'s winner (y₀ > y) and divides by its Δx: m = (0, −2/−4.5),
      contributions (0, −2);
    * jaxattr ``"interpolate"``: routings g = (1, 0), g₀ = (0, 1), D = g·Δx = 2, D₀ = −4.5,
      λ = (Δy − D₀)/(D − D₀) = 5/13, m = (5/13, 8/13), contributions (10/13, −36/13);
    * jaxattr ``"gradient"``: m = (1, 0), contributions (2, 0), which sums to +2, not Δy.

    Captum and ``"interpolate"`` both sum to Δy; they agree whenever the winner is the same at x
    and x₀ (then both are the gradient, as ``"gradient"`` is)."""
    model = torch.nn.Sequential(torch.nn.MaxPool2d((1, 2)), torch.nn.Flatten(),
                                torch.nn.Linear(1, 1)).double().eval()
    model[2].weight.data.fill_(1.0)
    model[2].bias.data.fill_(0.0)
    x = np.array([[[[3.0], [0.5]]]]).reshape(1, 1, 2, 1)       # NHWC: H = 1, W = 2, C = 1
    ref = np.array([1.0, 5.0]).reshape(1, 1, 2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = captum_attr.DeepLift(model).attribute(T.to_torch(x).requires_grad_(True),
                                                     baselines=T.to_torch(ref), target=0)
    np.testing.assert_allclose(T.to_numpy(want).ravel(), [0.0, -2.0], atol=1e-12)

    apply_fn = _PoolOnly().apply
    with jax.enable_x64(True):
        got = T.jit_all(apply_fn, {}, jnp.asarray(x), {
            "interpolate": ja.DeepLIFT(reference=jnp.asarray(ref)),
            "gradient": ja.DeepLIFT(reference=jnp.asarray(ref), maxpool="gradient")}, jnp.array([0]))
    np.testing.assert_allclose(got["interpolate"].ravel(), [10 / 13, -36 / 13], rtol=1e-12)
    np.testing.assert_allclose(got["gradient"].ravel(), [2.0, 0.0], rtol=1e-12)
