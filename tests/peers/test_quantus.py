"""``ja.evaluation`` against Quantus' ``RegionPerturbation`` and ``PixelFlipping`` (0.6.0), on
the same weights and deterministic perturbations (a fixed baseline value).

Quantus predicts through ``torch.Tensor(x)`` — float32 whatever the model — so these
comparisons run in float32 on both sides (tolerance 1e-5 on probabilities and logits).

Where the definitions agree (tested equal):

* ``RegionPerturbation(patch_size=r, regions_evaluation=n, perturb_baseline=v)`` ==
  ``perturbation_curve(region=r, steps=n, perturbation=<fill v>)`` with ``n`` = the number of
  regions: Quantus' curve is ``f(x) − f(x_k)`` for k = 1..n (jaxattr's ``curve[:, :1] −
  curve[:, 1:]``), regions ranked by their relevance summed over the patch *and the channels*,
  every channel of a patch perturbed (Quantus 0.6.0's patches span all channels: the
  first-channel-only bug of iNNvestigate ≤ 2.0.1 is not in it), MoRF and LeRF, probabilities
  (``softmax=True``) or logits (``softmax=False``), when r divides the image side.
* ``PixelFlipping(features_in_step=C·k)`` with one relevance value per pixel (the same in every
  channel) == ``perturbation_curve(region=1, steps=H·W/k)``'s ``curve[:, 1:]``.

Where they differ (documented here, not forced):

* **Patch grid when r does not divide the side.** Quantus centres the grid (pads ⌊p/2⌋ before
  and ⌈p/2⌉ after, p = the padding needed): 12 pixels in patches of 5 are rows −1..3, 4..8,
  9..13, i.e. 4, 5 and 3 pixels; jaxattr starts at the top-left corner: 0..4, 5..9, 10..11.
* **Step size.** Quantus perturbs one patch per step for ``regions_evaluation`` steps; jaxattr
  perturbs ⌈n/L⌉ regions per step so that L steps always reach the whole image.
* **Pixel flipping is per feature.** Quantus ranks and flips single (pixel, channel) values by
  their per-channel relevance, and its ``features_in_step`` must divide H·W (not C·H·W); jaxattr
  sums relevance over channels and perturbs whole pixels (DESIGN §3).
* **Ties.** Quantus sorts with ``np.argsort`` (quicksort, not stable); jaxattr breaks ties by
  region index (stable sort). Equal region scores may be perturbed in another order.
* **Baselines computed from the image** (``"mean"``, ``"black"``, ``"uniform"`` …): Quantus
  recomputes them at every step from the *already perturbed* (and edge-padded) image; jaxattr
  computes the replacement once from the original image.
* **AOPC.** jaxattr's ``aopc`` is Samek et al.'s ``1/(L+1) Σ_{k=0..L} (f(x₀) − f(x_k))`` =
  ``sum(quantus_curve) / (L+1)``. Quantus' ``get_auc_score`` is the trapezoidal area under its
  curve (k = 1..L, unnormalised), and calls ``np.trapz``, which NumPy 2.4 removed
  (``AttributeError`` there).
* **Random orders/perturbations** use different generators: not comparable value by value.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer cross-checks need the [peers] extra (torch)")
pytest.importorskip("zennit", reason="peer cross-checks need the [peers] extra (zennit)")
# torchvision (and with it triton) must load before Quantus imports TensorFlow: the other order
# segfaults in this environment (torch 2.14.1 + triton 3.8 + tensorflow)
pytest.importorskip("torchvision", reason="peer cross-checks need the [peers] extra (torchvision)")
quantus = pytest.importorskip("quantus", reason="peer cross-checks need the [peers] extra (quantus)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxattr as ja  # noqa: E402

import _torch_nets as T  # noqa: E402

BATCH = 4
QUIET = {"disable_warnings": True, "display_progressbar": False}


def _fill(value):
    def replacement(key, image):
        return jnp.full_like(image, value)
    return replacement


FILL = {0.0: "zeros", 0.3: _fill(0.3)}


@pytest.fixture(scope="module")
def setup():
    """Small paper CNN on 12×12×3 (float32), random inputs and per-channel relevance."""
    pair = T.make_pair("paper_cnn", dtype=np.float32, in_shape=(12, 12, 3))
    x = pair.inputs(BATCH, seed=3, dtype=np.float32)
    relevance = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    target = T.jax_logits(pair, x).argmax(-1)
    return pair, x, relevance, target


def _quantus(metric, pair, x, relevance, target, softmax=True):
    out = metric(model=pair.torch_model, x_batch=T.to_torch(x).numpy(), y_batch=target,
                 a_batch=T.to_torch(relevance).numpy(), channel_first=True, softmax=softmax,
                 device="cpu")
    return np.asarray(out)


def _curve(pair, x, relevance, target, **kwargs):
    return np.asarray(ja.evaluation.perturbation_curve(
        pair.apply_fn, pair.variables, jnp.asarray(x), jnp.asarray(target), jnp.asarray(relevance),
        progress=False, **kwargs))


@pytest.mark.parametrize(("order", "baseline", "softmax"), [
    ("morf", 0.0, True), ("lerf", 0.0, True), ("morf", 0.3, False), ("lerf", 0.3, True)])
def test_region_perturbation_matches_quantus(setup, order, baseline, softmax):
    pair, x, relevance, target = setup
    metric = quantus.RegionPerturbation(patch_size=3, regions_evaluation=16, order=order,
                                        perturb_baseline=baseline, normalise=False, **QUIET)
    want = _quantus(metric, pair, x, relevance, target, softmax=softmax)
    curve = _curve(pair, x, relevance, target, region=3, steps=16, order=order,
                   perturbation=FILL[baseline], score="probability" if softmax else "logit")
    assert want.shape == (BATCH, 16)
    np.testing.assert_allclose(curve[:, :1] - curve[:, 1:], want, atol=1e-5)


def test_region_perturbation_edge_patches_differ(setup):
    """12×12 images, 5×5 patches, 3×3 regions on both sides but not the same ones: Quantus
    centres its grid, jaxattr anchors it at the corner. Only the fully perturbed end agrees."""
    pair, x, relevance, target = setup
    metric = quantus.RegionPerturbation(patch_size=5, regions_evaluation=9, perturb_baseline=0.0,
                                        normalise=False, **QUIET)
    want = _quantus(metric, pair, x, relevance, target)
    curve = _curve(pair, x, relevance, target, region=5, steps=9, perturbation="zeros")
    got = curve[:, :1] - curve[:, 1:]
    assert np.abs(got - want).max() > 1e-4
    np.testing.assert_allclose(got[:, -1], want[:, -1], atol=1e-5)


def test_pixel_flipping_matches_quantus_for_per_pixel_relevance(setup):
    """One relevance value per pixel: Quantus' C·k features per step are k whole pixels."""
    pair, x, relevance, target = setup
    per_pixel = np.broadcast_to(relevance.sum(-1, keepdims=True), x.shape).copy()
    metric = quantus.PixelFlipping(features_in_step=3 * 4, perturb_baseline=0.0, normalise=False,
                                   **QUIET)
    want = _quantus(metric, pair, x, per_pixel, target)
    curve = _curve(pair, x, per_pixel, target, region=1, steps=144 // 4, perturbation="zeros")
    assert want.shape == (BATCH, 36)
    np.testing.assert_allclose(curve[:, 1:], want, atol=1e-5)


def test_pixel_flipping_per_channel_relevance_differs(setup):
    """Per-channel relevance: Quantus flips (pixel, channel) features in the order of their own
    relevance, jaxattr whole pixels by the channel sum — different curves by definition."""
    pair, x, relevance, target = setup
    metric = quantus.PixelFlipping(features_in_step=3 * 4, perturb_baseline=0.0, normalise=False,
                                   **QUIET)
    want = _quantus(metric, pair, x, relevance, target)
    curve = _curve(pair, x, relevance, target, region=1, steps=36, perturbation="zeros")
    assert np.abs(curve[:, 1:] - want).max() > 1e-3
    np.testing.assert_allclose(curve[:, -1], want[:, -1], atol=1e-5)  # all perturbed: the same


def test_aopc_and_quantus_auc_definitions(setup):
    """jaxattr's AOPC = Σ quantus_curve / (L + 1); Quantus' AUC = trapezoid over k = 1..L."""
    pair, x, relevance, target = setup
    metric = quantus.RegionPerturbation(patch_size=3, regions_evaluation=16, perturb_baseline=0.0,
                                        normalise=False, **QUIET)
    want = _quantus(metric, pair, x, relevance, target)
    curve = _curve(pair, x, relevance, target, region=3, steps=16, perturbation="zeros")
    aopc = np.asarray(ja.evaluation.aopc(jnp.asarray(curve)))
    np.testing.assert_allclose(aopc, want.sum(1) / 17, atol=1e-6)
    trapezoid = np.trapezoid(want, axis=1)
    assert np.abs(trapezoid - aopc).max() > 1e-3          # a different number
    if hasattr(np, "trapz"):
        np.testing.assert_allclose(metric.get_auc_score, trapezoid.mean(), rtol=1e-6)
    else:  # NumPy ≥ 2.4 removed np.trapz, which Quantus 0.6.0 calls
        with pytest.raises(AttributeError):
            metric.get_auc_score  # noqa: B018


def test_image_dependent_baseline_differs(setup):
    """``perturb_baseline="mean"``: Quantus recomputes the mean from the already perturbed image
    at each step, jaxattr uses the original image's mean throughout: the first step agrees, later
    steps do not."""
    pair, x, relevance, target = setup
    metric = quantus.RegionPerturbation(patch_size=3, regions_evaluation=16,
                                        perturb_baseline="mean", normalise=False, **QUIET)
    want = _quantus(metric, pair, x, relevance, target)
    curve = _curve(pair, x, relevance, target, region=3, steps=16, perturbation="mean")
    got = curve[:, :1] - curve[:, 1:]
    np.testing.assert_allclose(got[:, 0], want[:, 0], atol=1e-5)
    assert np.abs(got - want).max() > 1e-4
