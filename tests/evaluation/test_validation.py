"""Every bad input fails early with an error naming the argument, the value and what is allowed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.evaluation import aopc, confidence_drop, evaluate, perturbation_curve, scores_at_counts

X = jnp.asarray(np.random.default_rng(0).random((2, 8, 8, 3)), jnp.float32)
R = jnp.asarray(np.random.default_rng(1).standard_normal(X.shape), jnp.float32)
PARAMS = {"w": jnp.ones((8 * 8 * 3, 4)), "b": jnp.zeros(4)}


def apply(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def curve(**overrides):
    args = dict(apply_fn=apply, params=PARAMS, x=X, target=None, relevance=R)
    kwargs = dict(region=2, steps=4, perturbation="zeros")
    for name, value in overrides.items():
        (args if name in args else kwargs)[name] = value
    return perturbation_curve(*args.values(), **kwargs)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (dict(relevance=R[..., :1]), ValueError, r"relevance must have x's shape \(2, 8, 8, 3\); got \(2, 8, 8, 1\)"),
        (dict(x=X[0, 0, 0], relevance=R[0, 0, 0]), ValueError, r"x must be \(batch, features\) or \(batch, \*axes, channels\) .* got shape \(3,\)"),
        (dict(x=X[0], relevance=R[0]), TypeError, r"apply_fn\(params, x\) fails on x of shape \(8, 8, 3\), read as \(batch, length, channels\): dot_general"),
        (dict(x=X[:0], relevance=R[:0]), ValueError, r"x must hold at least one example; got batch size 0"),
        (dict(region=(2, 2, 2)), ValueError, r"region must be an int or a tuple of 2 ints \(one size per axis: height, width\)"),
        (dict(x=X.astype(jnp.int32), relevance=R), TypeError, r"x must have a floating dtype; got int32"),
        (dict(region=9), ValueError, r"region must lie in \[1, min\(height, width\)\] = \[1, 8\] .* got 9"),
        (dict(region=0), ValueError, r"region must lie in \[1, .* got 0"),
        (dict(region=2.5), TypeError, r"region must be an int .* got 2.5"),
        (dict(steps=17), ValueError, r"steps must lie in \[1, n_regions\] = \[1, 16\] .* 4×4 = 16 regions\); got 17"),
        (dict(steps=0), ValueError, r"steps must lie in \[1, n_regions\] = \[1, 16\].* got 0"),
        (dict(steps=2.0), TypeError, r"steps must be an int; got 2.0"),
        (dict(relevance=R.at[1, 2, 3, 0].set(jnp.nan)), ValueError, r"relevance contains 1 non-finite values"),
        (dict(x=X.at[0, 0, 0, 0].set(jnp.inf)), ValueError, r"x contains 1 non-finite values \(NaN or Inf\)"),
        (dict(perturbation="noise"), ValueError, r"perturbation must be one of \('zeros', 'mean', 'channel_mean', 'uniform', 'blur'\), a constant baseline .* or a callable .* got 'noise'"),
        (dict(order="mostrelevant"), ValueError, r"order must be one of \('morf', 'lerf', 'random'\); got 'mostrelevant'"),
        (dict(score="softmax"), ValueError, r"score must be one of \('probability', 'logit', 'accuracy', 'sigmoid'\); got 'softmax'"),
        (dict(target=jnp.array([0, 1, 2])), ValueError, r"target must be None, an int or an integer array of shape \(batch,\) = \(2,\); got \(3,\)"),
        (dict(target=jnp.array([[0], [1]])), ValueError, r"shape \(batch,\) = \(2,\); got \(2, 1\)"),
        (dict(target=jnp.array([0, 4])), ValueError, r"target values must lie in \[0, n_classes\) = \[0, 4\); got min 0, max 4"),
        (dict(target=jnp.array([-1, 0])), ValueError, r"target values must lie in \[0, n_classes\) = \[0, 4\); got min -1"),
        (dict(target=jnp.array([0.0, 1.0])), TypeError, r"target must be None, an int or an integer array .* got dtype float32"),
        (dict(chunk_size=0), ValueError, r"chunk_size must be None or a positive int .* got 0"),
        (dict(perturbation="uniform", low=1.0, high=0.0), ValueError, r"low must be < high, both finite, .* got low=1.0, high=0.0"),
        (dict(perturbation="uniform", high=float("inf")), ValueError, r"low must be < high, both finite, .* high=inf"),
        (dict(perturbation="blur", blur_sigma=0.0), ValueError, r"blur sigma must be > 0; got 0.0"),
        (dict(key=jnp.zeros(3)), TypeError, r"key must be a jax PRNG key .* shape \(3,\) and dtype float32"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), ValueError, r"key must be a single PRNG key \(shape \(\)\); got shape \(2,\)"),
        (dict(apply_fn=lambda p, x: x), ValueError, r"must return logits of shape \(batch, n_classes\) with batch=2; got \(2, 8, 8, 3\)"),
        (dict(apply_fn="model"), TypeError, r"apply_fn must be a callable"),
    ],
)
def test_bad_input_raises_a_clear_error(overrides, error, match):
    with pytest.raises(error, match=match):
        curve(**overrides)


def test_bad_callable_perturbation_shape():
    with pytest.raises(ValueError, match=r"perturbation callable must return the example's shape \(8, 8, 3\); got \(8, 8\)"):
        curve(perturbation=lambda key, image: image[..., 0])


@pytest.mark.parametrize(
    "fractions, match",
    [((0.1, 1.5), r"fractions must be a non-empty sequence of numbers in \[0, 1\]; got \(0.1, 1.5\)"),
     ((), r"fractions must be a non-empty sequence"), ((-0.1,), r"in \[0, 1\]")],
)
def test_bad_fractions(fractions, match):
    with pytest.raises(ValueError, match=match):
        confidence_drop(apply, PARAMS, X, None, R, fractions=fractions, perturbation="zeros")


@pytest.mark.parametrize("counts", [[1, 2], [0, 65], [], [0, 2.5]])
def test_bad_counts(counts):
    with pytest.raises(ValueError, match=r"counts must be a 1-D integer sequence starting with 0, within \[0, n_regions\] = \[0, 64\]"):
        scores_at_counts(apply, PARAMS, X, None, R, counts, region=1)


def test_bad_curve_for_aopc():
    with pytest.raises(ValueError, match=r"curve must have shape \(batch, steps \+ 1\) .* got \(5,\)"):
        aopc(jnp.ones(5))


def test_evaluate_errors_name_the_method():
    with pytest.raises(ValueError, match=r"explanations\['bad'\]: relevance must have x's shape"):
        evaluate(apply, PARAMS, X, None, {"bad": R[:, :4]}, perturbation="zeros", progress=False)
    with pytest.raises(ValueError, match=r"must not use the name 'random'"):
        evaluate(apply, PARAMS, X, None, {"random": R}, progress=False)
    with pytest.raises(TypeError, match=r"explanations must be a mapping"):
        evaluate(apply, PARAMS, X, None, [R], progress=False)
    with pytest.raises(ValueError, match=r"index must have one label per image \(2\); got 3"):
        evaluate(apply, PARAMS, X, None, {"a": R}, index=[1, 2, 3], progress=False)


def test_evaluate_checks_settings_before_computing_relevance():
    calls = []
    explain = lambda params, x, target: calls.append(1) or R
    with pytest.raises(ValueError, match=r"score must be one of"):
        evaluate(apply, PARAMS, X, None, {"a": explain}, score="prob", progress=False)
    with pytest.raises(ValueError, match=r"perturbation must be one of"):
        evaluate(apply, PARAMS, X, None, {"a": explain}, perturbation="gauss", progress=False)
    assert calls == []
