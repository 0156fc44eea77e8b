"""The static batch-coupling check (``jaxattr.engine.batch``): a model that combines the
examples of its batch is refused with the operation and module path, for every method; the
layouts models use to keep examples apart (flattening tokens into rows, attention's batched
products, convolutions, scans over time) pass, and where the check passes the numeric check
(``ja.evaluation.checks.batch_independence``) finds the examples independent."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import jaxattr as ja
from jaxattr.engine.batch import BatchCouplingError, check_batch_independent
from jaxattr.engine.trace import trace
from jaxattr.evaluation.checks import batch_independence

METHODS = [ja.Gradient(), ja.GradientXInput(), ja.IntegratedGradients(steps=2), ja.LRP(),
           ja.DeepLIFT(), ja.GuidedBackprop()]


class BatchNormNet(nn.Module):
    train: bool

    @nn.compact
    def __call__(self, x):
        h = nn.BatchNorm(use_running_average=not self.train, name="bn")(nn.Conv(4, (3, 3))(x))
        return nn.Dense(3)(nn.relu(h).mean((1, 2)))


def _batchnorm(train: bool):
    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 2))
    variables = BatchNormNet(False).init(jax.random.key(1), x)
    if train:
        train = lambda v, x_: BatchNormNet(True).apply(v, x_, mutable=["batch_stats"])[0]
        return train, variables, x
    return BatchNormNet(False).apply, variables, x


@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_batchnorm_in_training_mode_is_refused_by_every_method(method):
    fn, variables, x = _batchnorm(train=True)
    with pytest.raises(BatchCouplingError,
                       match=r"'reduce_sum' at module path '.*bn'.*batch axis 0"):
        ja.attribute(fn, variables, x, jnp.zeros(4, int), method)
    assert issubclass(BatchCouplingError, ValueError)
    assert ja.BatchCouplingError is BatchCouplingError
    # the same model in inference mode, and a batch of one example, are explained
    assert ja.attribute(*_batchnorm(train=False), jnp.zeros(4, int), method).shape == x.shape
    assert ja.attribute(fn, variables, x[:1], jnp.zeros(1, int), method).shape == x[:1].shape


def test_the_static_check_agrees_with_the_numeric_one():
    fn, variables, x = _batchnorm(train=True)
    assert float(batch_independence(fn, variables, x)) > 1e-2
    fn, variables, x = _batchnorm(train=False)
    check_batch_independent(trace(fn, variables, x))
    assert float(batch_independence(fn, variables, x)) < 1e-6


W = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
COUPLED = {
    "mean over the batch": (lambda p, x: (x - x.mean(0)).sum(1) @ p, "reduce_sum",
                            "reduces over the batch axis 0"),
    "flattened tokens, mean over rows": (
        lambda p, x: (x.reshape(-1, 4) - x.reshape(-1, 4).mean(0)).reshape(x.shape).sum(1) @ p,
        "reduce_sum", "reduces over the batch axis 0"),
    "transposed, then centred": (
        lambda p, x: jnp.swapaxes(jnp.swapaxes(x, 0, 1)
                                  - jnp.swapaxes(x, 0, 1).mean(1, keepdims=True), 0, 1).sum(1) @ p,
        "reduce_sum", "batch axis 1"),
    "cumulative sum over examples": (lambda p, x: jnp.cumsum(x, 0).sum(1) @ p, "cumsum",
                                     "accumulates"),
    "sorted along the batch": (lambda p, x: jnp.sort(x, 0).sum(1) @ p, "sort", "sorts"),
    "similarity of every pair": (lambda p, x: x.sum(1) @ x.sum(1).T @ jnp.ones((4, 3)),
                                 "dot_general", "every example with every other"),
    "a contraction over examples": (
        lambda p, x: x.sum(1) @ p + jnp.einsum("btd,bk->dk", x, jnp.ones((4, 3))).sum(0),
        "dot_general", "contracts the batch axis"),
    "pooled across examples": (
        lambda p, x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (2, 1, 1), (1, 1, 1),
                                            ((1, 0), (0, 0), (0, 0))).sum(1) @ p,
        "reduce_window_max", "pools windows across the batch axis"),
    "a mean over the batch after fancy indexing": (
        lambda p, x: (x[:, jnp.array([0, 2, 3])] - x[:, jnp.array([0, 2, 3])].mean(0)).sum(1) @ p,
        "reduce_sum", "reduces over the batch axis 0"),
    "a batch mean inside a scan over time": (
        lambda p, x: jax.lax.scan(lambda c, xt: (c + xt - xt.mean(0), None), jnp.zeros((4, 4)),
                                  jnp.swapaxes(x, 0, 1))[0] @ p,
        "reduce_sum", "reduces over the batch axis 0"),
    "a running mean carried over the examples": (
        lambda p, x: jax.lax.scan(lambda c, xi: (0.5 * (c + xi.sum(0)), (xi.sum(0) - c) @ p),
                                  jnp.zeros(4), x)[1],
        "scan", "scans over the batch axis with a carry"),
    "a total carried over the examples, then used": (
        lambda p, x: x.sum(1) @ p - jax.lax.scan(lambda c, xi: (c + xi.sum(0), None),
                                                 jnp.zeros(4), x)[0] @ p,
        "scan", "uses its final carry"),
}


@pytest.mark.parametrize("name", list(COUPLED))
def test_operations_that_combine_examples_are_named(name):
    fn, prim, what = COUPLED[name]
    x = jax.random.normal(jax.random.key(2), (4, 5, 4))
    assert float(batch_independence(fn, W, x)) > 1e-3  # they do couple the examples
    with pytest.raises(BatchCouplingError, match=rf"'{prim}' .*{what}"):
        ja.attribute(fn, W, x, None, ja.Gradient())


def _attention(p, x):
    q = jnp.einsum("btd,de->bte", x, p)
    scores = jnp.einsum("bte,bse->bts", q, q)
    return jnp.einsum("bts,bse->be", jax.nn.softmax(scores, -1), q)


INDEPENDENT = {
    "tokens flattened into rows and back": lambda p, x: (x.reshape(-1, 4) @ p).reshape(
        4, 5, 3).sum(1),
    "time-major scan": lambda p, x: jax.lax.scan(lambda c, xt: (jnp.tanh(c + xt), None),
                                                 jnp.zeros((4, 4)), jnp.swapaxes(x, 0, 1))[0] @ p,
    "attention": _attention,
    "per-example vmap": jax.vmap(lambda p, xi: (xi - xi.mean(0)).sum(0) @ p, in_axes=(None, 0)),
    "transposed and back": lambda p, x: jnp.transpose(
        jnp.transpose(x, (2, 0, 1)).max(2), (1, 0)) @ p,
    "fancy indexing along the tokens": lambda p, x: x[:, jnp.array([4, 0, 2])].max(1) @ p,
    "a scan over the examples themselves (not followed)": lambda p, x: jax.lax.map(
        lambda xi: xi.sum(0) @ p, x),
    "a scan over the examples counting them": lambda p, x: jax.lax.scan(
        lambda c, xi: (c + 1.0, xi.sum(0) @ p * c), 1.0, x)[1],
    "a scan over the examples whose total is not used": lambda p, x: jax.lax.scan(
        lambda c, xi: (c + xi.sum(0), xi.sum(0) @ p), jnp.zeros(4), x)[1],
}


@pytest.mark.parametrize("name", list(INDEPENDENT))
def test_layouts_that_keep_examples_apart_pass(name):
    fn = INDEPENDENT[name]
    x = jax.random.normal(jax.random.key(3), (4, 5, 4))
    assert float(batch_independence(fn, W, x)) < 1e-6
    assert ja.attribute(fn, W, x, None, ja.Gradient()).shape == x.shape


def test_perturbation_curves_refuse_a_coupled_model():
    """Region perturbation runs the model on batches of perturbed copies: under batch statistics
    each copy's score would depend on the others in its chunk, so the curves refuse it too."""
    fn, variables, x = _batchnorm(train=True)
    relevance = jnp.abs(x)
    with pytest.raises(BatchCouplingError, match="'reduce_sum' at module path '.*bn'"):
        ja.evaluation.perturbation_curve(fn, variables, x, None, relevance, region=2, steps=2,
                                         progress=False)
    fn, variables, x = _batchnorm(train=False)
    scores = ja.evaluation.perturbation_curve(fn, variables, x, None, relevance, region=2, steps=2,
                                              progress=False)
    assert bool(jnp.all(jnp.isfinite(jnp.asarray(scores))))


def test_an_nnx_model_in_training_mode_is_refused_until_eval():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin, self.bn = nnx.Linear(5, 6, rngs=rngs), nnx.BatchNorm(6, rngs=rngs)
            self.out = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.bn(self.lin(x))))

    model, x = Net(nnx.Rngs(0)), jax.random.normal(jax.random.key(0), (4, 5))
    with pytest.raises(BatchCouplingError, match=r"\.eval\(\)"):
        ja.attribute(model, None, x)
    model.eval()
    assert ja.attribute(model, None, x).shape == x.shape
