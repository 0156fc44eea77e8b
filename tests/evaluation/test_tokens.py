"""Token-level evaluation: ``(batch, tokens, features)`` embeddings, relevance summed over the
features, whole tokens replaced by a baseline embedding (a ``[MASK]`` vector, zeros, the
example's mean embedding). The reference is plain numpy: it sorts tokens and rebuilds every
perturbed sequence by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.evaluation import ChannelMean, Constant, perturbation_curve, perturbed_inputs

TOKENS, FEATURES, CLASSES = 7, 5, 3
RNG = np.random.default_rng(3)
PARAMS = {
    "w": jnp.asarray(RNG.standard_normal((FEATURES, 6)), jnp.float32),
    "v": jnp.asarray(RNG.standard_normal((6, CLASSES)), jnp.float32),
}
MASK = RNG.standard_normal(FEATURES).astype(np.float32)


def encoder(params, x):
    """A bag-of-tokens classifier: mean over tokens of tanh(x W), then a linear head."""
    return jnp.tanh(x @ params["w"]).mean(axis=1) @ params["v"]


def _reference(x, relevance, target, fill, steps):
    """MoRF curve with one token per step, every token's relevance summed over its features."""
    x, relevance = np.asarray(x, np.float64), np.asarray(relevance, np.float64)
    w, v = (np.asarray(p, np.float64) for p in (PARAMS["w"], PARAMS["v"]))
    curves = []
    for i in range(x.shape[0]):
        order = np.argsort(-relevance[i].sum(axis=-1), kind="stable")
        row = []
        for k in range(steps + 1):
            seq = x[i].copy()
            seq[order[:k]] = fill(x[i])
            logits = np.tanh(seq @ w).mean(axis=0) @ v
            p = np.exp(logits - logits.max())
            row.append(p[target[i]] / p.sum())
        curves.append(row)
    return np.asarray(curves)


@pytest.mark.parametrize(
    "perturbation, fill",
    [
        (Constant(MASK), lambda seq: MASK),
        (MASK, lambda seq: MASK),  # the array itself is a constant baseline
        ("zeros", lambda seq: np.zeros(FEATURES)),
        ("channel_mean", lambda seq: seq.mean(axis=0)),
    ],
    ids=["mask-embedding", "array", "zeros", "mean-embedding"],
)
def test_token_curve_matches_numpy_reference(perturbation, fill):
    x = jnp.asarray(RNG.standard_normal((4, TOKENS, FEATURES)), jnp.float32)
    relevance = jnp.asarray(RNG.standard_normal(x.shape), jnp.float32)
    target = jnp.asarray([0, 1, 2, 1])
    curve = perturbation_curve(encoder, PARAMS, x, target, relevance, region=1, steps=TOKENS,
                               perturbation=perturbation, progress=False)
    np.testing.assert_allclose(curve, _reference(x, relevance, target, fill, TOKENS), rtol=2e-5, atol=1e-6)


def test_whole_tokens_are_replaced_by_the_baseline_embedding():
    x = jnp.asarray(RNG.standard_normal((2, TOKENS, FEATURES)), jnp.float32)
    relevance = jnp.zeros(x.shape).at[:, 4, 0].set(1.0)  # token 4 first
    steps = np.asarray(perturbed_inputs(x, relevance, region=1, steps=TOKENS, perturbation=MASK))
    np.testing.assert_array_equal(steps[:, 1, 4], np.broadcast_to(MASK, (2, FEATURES)))
    np.testing.assert_array_equal(np.delete(steps[:, 1], 4, axis=1), np.delete(np.asarray(x), 4, axis=1))


def test_constant_is_a_hashable_static_argument():
    assert Constant(np.asarray([1.0, 2.0])) == Constant([1, 2]) and hash(Constant(0.5)) == hash(Constant(0.5))
    assert Constant([1.0, 2.0]) != Constant([2.0, 1.0])


def test_bad_baselines_are_refused():
    x = jnp.zeros((2, TOKENS, FEATURES))
    with pytest.raises(ValueError, match="one per channel"):
        perturbation_curve(encoder, PARAMS, x, 0, x, region=1, steps=2, perturbation=np.ones(FEATURES + 1),
                           progress=False)
    with pytest.raises(ValueError, match="scalar or one value per channel"):
        Constant(np.ones((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        Constant([1.0, np.nan])
    with pytest.raises(ValueError, match="channel axis"):
        ChannelMean()(jax.random.key(0), jnp.zeros(FEATURES))
