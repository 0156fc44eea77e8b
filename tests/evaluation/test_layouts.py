"""Issue #22: evaluation of every input layout, single-logit classifiers, scalar targets and
steps that do not divide the region count.

Before: any x but 4-D NHWC was refused ("x must be a 4-D NHWC array"), a one-logit binary
classifier scored 1.0 at every step (softmax over one class) so every AOPC was 0, and a scalar
``target`` (accepted by ``jaxattr.attribute``) was refused.
"""
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

import jaxattr as ja
from jaxattr.evaluation import aopc, confidence_drop, evaluate, perturbation_curve, perturbed_inputs
from jaxattr.evaluation.regions import RepeatedStepsWarning
from jaxattr.models.genomics_cnn import GenomicsCNN


def reference_curve(apply_fn, params, x, target, relevance, *, region, counts, fill, score, channels):
    """Plain numpy for one region axis (sequences ``(b, L, C)`` with ``channels``; tabular
    rows ``(b, F)`` without): perturb the top regions of each example and score."""
    x, relevance = np.asarray(x), np.asarray(relevance)
    curve = np.zeros((x.shape[0], len(counts)))
    for i in range(x.shape[0]):
        per_position = relevance[i].sum(-1) if channels else relevance[i]
        length = per_position.shape[0]
        starts = range(0, length, region)
        scores = np.array([per_position[s:s + region].sum() for s in starts])
        ranking = np.argsort(-scores, kind="stable")
        value = {"zeros": 0.0, "mean": x[i].mean()}[fill]
        for k, count in enumerate(counts):
            example = x[i].copy()
            for r in ranking[:count]:
                example[r * region:(r + 1) * region] = value
            z = np.asarray(apply_fn(params, example[None]), np.float64)[0]
            t = int(target[i])
            if score == "sigmoid":
                curve[i, k] = 1 / (1 + np.exp(-z[t]))
            elif score == "logit":
                curve[i, k] = z[t]
            else:
                e = np.exp(z - z.max())
                curve[i, k] = e[t] / e.sum()
    return curve


def steps_counts(n, steps):
    per = -(-n // steps)
    return [min(k * per, n) for k in range(steps + 1)]


# ------------------------------------------------------------------------ the genomics CNN


GENOMICS = GenomicsCNN()
genomics_apply = GENOMICS.apply


@pytest.fixture(scope="module")
def dna():
    """Four random one-hot sequences (batch, 200, 4) and the CNN's random-init parameters."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.eye(4, dtype=np.float32)[rng.integers(0, 4, (4, 200))])
    params = GENOMICS.init(jax.random.key(0), x[:1])
    # a non-zero PReLU slope and a larger output layer make the logits move with the input
    params = jax.tree_util.tree_map_with_path(
        lambda path, p: p + 0.3 if "slope" in jax.tree_util.keystr(path) else p, params)
    return x, params


def test_genomics_cnn_curve_matches_numpy_reference_with_the_sigmoid(dna):
    """The DeepLIFT genomics model: one logit, one-hot DNA (batch, 200, 4). Regions of 10
    positions × all 4 channels; its 'probability' is σ(logit)."""
    x, params = dna
    relevance = jnp.asarray(np.random.default_rng(1).integers(-3, 4, x.shape), jnp.float32)
    curve = perturbation_curve(genomics_apply, params, x, None, relevance, region=10, steps=5,
                               perturbation="zeros", progress=False)
    want = reference_curve(genomics_apply, params, x, np.zeros(4, int), relevance, region=10,
                           counts=steps_counts(20, 5), fill="zeros", score="sigmoid", channels=True)
    assert curve.shape == (4, 6)
    np.testing.assert_allclose(curve, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(aopc(curve))) > 1e-4)  # not the flat curve of a softmax over one class
    sigmoid = perturbation_curve(genomics_apply, params, x, 0, relevance, region=10, steps=5, perturbation="zeros",
                                 score="sigmoid", progress=False)
    np.testing.assert_array_equal(sigmoid, curve)


def test_genomics_cnn_evaluate_with_an_attribution_method(dna):
    x, params = dna
    explain = ja.explain(genomics_apply, ja.GradientXInput())
    table, curves = evaluate(genomics_apply, params, x, None, {"gxi": explain}, region=20, steps=10,
                             fractions=(0.1, 0.5), perturbation="mean", key=jax.random.key(3), return_curves=True,
                             progress=False)
    assert set(table["method"]) == {"gxi", "random"}
    assert curves["gxi"].shape == (4, 11) and np.all(np.isfinite(table[["aopc", "drop_10", "drop_50"]]))
    relevance = explain(params, x, jnp.zeros(4, jnp.int32))
    want = reference_curve(genomics_apply, params, x, np.zeros(4, int), relevance, region=20,
                           counts=steps_counts(10, 10), fill="mean", score="sigmoid", channels=True)
    np.testing.assert_allclose(curves["gxi"], want, rtol=1e-5, atol=1e-6)


def test_blur_on_a_sequence_is_a_1d_gaussian_along_the_length(dna):
    x, _ = dna
    inputs = perturbed_inputs(x, jnp.ones_like(x), region=1, steps=1, perturbation="blur", blur_sigma=2.0)
    want = scipy.ndimage.gaussian_filter(np.asarray(x[0]), (2.0, 0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(inputs[0, 1], want, rtol=1e-5, atol=1e-6)  # step 1 = every position
    np.testing.assert_array_equal(inputs[:, 0], x)


# ------------------------------------------------------------------------ tabular rows


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


MLP_ = MLP()
mlp_apply = MLP_.apply


@pytest.fixture(scope="module")
def rows():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((5, 10)), jnp.float32)
    return x, MLP_.init(jax.random.key(1), x[:1])


@pytest.mark.parametrize("region, steps, fill, score", [(1, 5, "zeros", "probability"), (3, 4, "mean", "logit")])
def test_tabular_mlp_features_are_regions(rows, region, steps, fill, score):
    """(batch, features): each feature (region=1) or group of `region` consecutive features
    is a region; no channel axis."""
    x, params = rows
    relevance = jnp.asarray(np.random.default_rng(3).integers(-4, 5, x.shape), jnp.float32)
    target = jnp.array([0, 1, 2, 0, 1])
    curve = perturbation_curve(mlp_apply, params, x, target, relevance, region=region, steps=steps,
                               perturbation=fill, score=score, progress=False)
    n = -(-10 // region)
    want = reference_curve(mlp_apply, params, x, np.asarray(target), relevance, region=region,
                           counts=steps_counts(n, steps), fill=fill, score=score, channels=False)
    np.testing.assert_allclose(curve, want, rtol=1e-5, atol=1e-6)


def test_tabular_perturbed_inputs_replace_the_top_features(rows):
    x, _ = rows
    relevance = jnp.broadcast_to(jnp.arange(10.0), x.shape)  # feature 9 most relevant
    inputs = np.asarray(perturbed_inputs(x, relevance, region=2, steps=5, perturbation="zeros"))
    assert inputs.shape == (5, 6, 10)
    for k in range(6):
        kept = 10 - 2 * k
        np.testing.assert_array_equal(inputs[:, k, :kept], x[:, :kept])
        np.testing.assert_array_equal(inputs[:, k, kept:], 0.0)
    noisy = np.asarray(perturbed_inputs(x, relevance, region=1, steps=10, perturbation="uniform", low=2.0, high=3.0))
    assert np.all((noisy[:, -1] >= 2.0) & (noisy[:, -1] < 3.0))


def test_blur_on_tabular_rows_is_refused_before_any_relevance_is_computed(rows):
    x, params = rows
    calls = []
    explain = lambda params, x, target: calls.append(1) or x
    with pytest.raises(ValueError, match=r"blur .* tabular rows \(batch, features\) have no neighbourhood"):
        evaluate(mlp_apply, params, x, None, {"a": explain}, perturbation="blur", progress=False)
    with pytest.raises(ValueError, match=r"tabular rows"):
        perturbation_curve(mlp_apply, params, x, None, x, region=1, steps=2, perturbation="blur", progress=False)
    assert calls == []


def test_evaluate_on_tabular_rows(rows):
    x, params = rows
    explain = ja.explain(mlp_apply, ja.GradientXInput())
    table = evaluate(mlp_apply, params, x, None, {"gxi": explain}, perturbation="zeros", progress=False)
    assert len(table) == 10 and np.all(np.isfinite(table["aopc"]))


# ------------------------------------------------------------------------ single logit, sigmoid


def _single_logit_case():
    """NHWC images and a linear model with ONE logit (a binary classifier)."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.random((3, 4, 4, 2)), jnp.float32)
    params = jnp.asarray(rng.standard_normal((32, 1)), jnp.float32)
    apply_fn = lambda w, x: x.reshape(len(x), -1) @ w
    relevance = x * params[:, 0].reshape(4, 4, 2)
    return apply_fn, params, x, relevance


def test_single_logit_probability_is_the_sigmoid_not_a_softmax_over_one_class():
    apply_fn, params, x, relevance = _single_logit_case()
    kwargs = dict(region=1, steps=4, perturbation="zeros", progress=False)
    probability = np.asarray(perturbation_curve(apply_fn, params, x, None, relevance, score="probability", **kwargs))
    logit = np.asarray(perturbation_curve(apply_fn, params, x, None, relevance, score="logit", **kwargs))
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-logit)), rtol=1e-6)
    assert not np.allclose(probability, 1.0)  # before: softmax over one class, 1.0 everywhere
    assert np.all(np.asarray(aopc(probability)) > 0)  # before: every AOPC 0
    accuracy = np.asarray(perturbation_curve(apply_fn, params, x, None, relevance, score="accuracy", **kwargs))
    np.testing.assert_array_equal(accuracy, (logit > 0).astype(np.float32))  # still predicted positive
    drops = np.asarray(confidence_drop(apply_fn, params, x, None, relevance, perturbation="zeros", progress=False))
    assert np.any(drops != 0)


def test_sigmoid_score_on_a_multi_logit_model(h, images, cnn_params):
    relevance = h.integer_relevance(5, images.shape)
    kwargs = dict(region=3, steps=3, perturbation="zeros", progress=False)
    target = jnp.array([0, 1, 2, 3, 4, 0])
    sigmoid = perturbation_curve(h.cnn_apply, cnn_params, images, target, relevance, score="sigmoid", **kwargs)
    logit = perturbation_curve(h.cnn_apply, cnn_params, images, target, relevance, score="logit", **kwargs)
    np.testing.assert_allclose(sigmoid, jax.nn.sigmoid(logit), rtol=1e-6)


# ------------------------------------------------------------------------ scalar target


def test_scalar_target_is_the_same_class_for_every_example(h, images, cnn_params):
    """jaxattr.attribute takes target=3; so do the curves, drops and evaluate."""
    relevance = h.integer_relevance(6, images.shape)
    kwargs = dict(region=3, steps=3, perturbation="zeros", score="logit", progress=False)
    array = perturbation_curve(h.cnn_apply, cnn_params, images, jnp.full(6, 3), relevance, **kwargs)
    np.testing.assert_array_equal(perturbation_curve(h.cnn_apply, cnn_params, images, 3, relevance, **kwargs), array)
    np.testing.assert_array_equal(perturbation_curve(h.cnn_apply, cnn_params, images, np.int64(3), relevance, **kwargs), array)
    table = evaluate(h.cnn_apply, cnn_params, images, 3, {"r": relevance}, region=3, steps=3, perturbation="zeros",
                     progress=False)
    assert (table["target"] == 3).all()
    with pytest.raises(ValueError, match=r"target values must lie in \[0, n_classes\) = \[0, 5\); got min 5"):
        perturbation_curve(h.cnn_apply, cnn_params, images, 5, relevance, **kwargs)


# ------------------------------------------------------------------------ repeated steps


def test_steps_not_spreading_the_regions_evenly_warn(h):
    """8×8 images with region=2: n = 16; steps=10 perturbs 2 regions per step, so columns 8–10
    repeat the fully perturbed image and AOPC weighs it 3/11."""
    x = h.uniform(8, (2, 8, 8, 3))
    params = h.linear_params(9, x.shape[1:])
    relevance = h.integer_relevance(7, x.shape)
    run = lambda steps: perturbation_curve(h.linear_apply, params, x, None, relevance, region=2, steps=steps,
                                           perturbation="zeros", progress=False)
    with pytest.warns(RepeatedStepsWarning, match=r"last 3 columns .* 3/11"):
        curve = run(10)
    np.testing.assert_array_equal(curve[:, 8], curve[:, 10])
    with pytest.warns(RepeatedStepsWarning):
        evaluate(h.linear_apply, params, x, None, {"r": relevance}, region=2, steps=10, perturbation="zeros",
                 progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepeatedStepsWarning)
        run(8)
