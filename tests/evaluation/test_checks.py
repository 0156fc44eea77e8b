"""Completeness checks: summation to delta (DeepLIFT) and conservation (LRP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.evaluation.checks import conservation, summation_to_delta


def mlp(params, x):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def _params(bias: bool, seed=0):
    rng = np.random.default_rng(seed)
    p = {"w1": rng.normal(size=(5, 7)), "b1": rng.normal(size=7), "w2": rng.normal(size=(7, 3)),
         "b2": rng.normal(size=3)}
    if not bias:
        p["b1"], p["b2"] = np.zeros(7), np.zeros(3)
    return {k: jnp.asarray(v) for k, v in p.items()}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)))


def test_deeplift_sums_to_delta_gradient_x_input_does_not(x64):
    p = _params(bias=True)
    ref = np.full(5, 0.2)
    dl = ja.attribute(mlp, p, x64, method=ja.DeepLIFT(ref))
    check = summation_to_delta(mlp, p, x64, dl, ref)
    assert check.total.shape == check.delta.shape == check.error.shape == (4,)
    assert float(check.error.max()) < 1e-10
    target = jnp.argmax(mlp(p, x64), -1)
    rows = jnp.arange(4)
    delta = mlp(p, x64)[rows, target] - mlp(p, jnp.broadcast_to(ref, x64.shape))[rows, target]
    np.testing.assert_allclose(np.asarray(check.delta), np.asarray(delta), rtol=1e-12)
    gxi = ja.attribute(mlp, p, x64, method=ja.GradientXInput())
    assert float(summation_to_delta(mlp, p, x64, gxi, 0.0).error.max()) > 1e-3


def test_scalar_target_callable_and_averaged_references(x64):
    p = _params(bias=True)
    dl = ja.attribute(mlp, p, x64, jnp.array(1), ja.DeepLIFT(lambda v: 0.5 * v))
    assert float(summation_to_delta(mlp, p, x64, dl, lambda v: 0.5 * v, 1).error.max()) < 1e-10
    refs = np.stack([np.zeros(5), np.ones(5)])
    dl = ja.attribute(mlp, p, x64, jnp.array(2), ja.DeepLIFT(refs, average_references=True))
    check = summation_to_delta(mlp, p, x64, dl, refs, 2, average_references=True)
    assert float(check.error.max()) < 1e-10


def test_conservation_lrp0_bias_free(x64):
    p = _params(bias=False)
    r = ja.attribute(mlp, p, x64, method=ja.LRP(ja.rules.Epsilon(0.0)))
    check = conservation(mlp, p, x64, r)
    assert float(check.error.max()) < 1e-9
    np.testing.assert_allclose(np.asarray(check.logit), np.asarray(mlp(p, x64).max(-1)), rtol=1e-12)
    p = _params(bias=True)
    r = ja.attribute(mlp, p, x64, method=ja.LRP(ja.rules.Epsilon(0.0)))
    assert float(conservation(mlp, p, x64, r).error.max()) > 1e-3  # the biases absorb relevance


def test_bad_shapes(x64):
    p = _params(bias=True)
    with pytest.raises(ValueError, match="relevance must have x's shape"):
        summation_to_delta(mlp, p, x64, jnp.zeros((4, 4)), 0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        summation_to_delta(mlp, p, x64, jnp.zeros((4, 5)), jnp.zeros(3))
    with pytest.raises(ValueError, match="relevance must have x's shape"):
        conservation(mlp, p, x64, jnp.zeros((5,)))


def test_batch_independence_flags_batchnorm_in_training_mode():
    """BatchNorm with batch statistics couples the examples (each attribution would depend on
    the rest of the batch); in inference mode, or for any per-example model, the check is 0."""
    import flax.linen as nn

    from jaxattr.evaluation.checks import batch_independence

    class Net(nn.Module):
        train: bool

        @nn.compact
        def __call__(self, x):
            h = nn.BatchNorm(use_running_average=not self.train)(nn.Dense(6)(x))
            return nn.Dense(3)(nn.relu(h))

    x = jax.random.normal(jax.random.key(0), (4, 5))
    variables = Net(False).init(jax.random.key(1), x)
    train = lambda v, x: Net(True).apply(v, x, mutable=["batch_stats"])[0]
    assert float(batch_independence(train, variables, x)) > 1e-2
    assert float(batch_independence(Net(False).apply, variables, x)) < 1e-6
    assert float(batch_independence(mlp, _params(True), x)) < 1e-6
    # the attributions it protects: example 0's gradient under training mode would move with
    # the batch, so the engine refuses the model (tests/engine/test_batch.py)
    with pytest.raises(ja.BatchCouplingError, match="BatchNorm"):
        ja.attribute(train, variables, x, jnp.zeros(4, int))
    with pytest.raises(ValueError, match="at least 2 examples"):
        batch_independence(mlp, _params(True), x[:1])
