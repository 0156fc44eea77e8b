"""Scatters, tiles and slice updates, and positions read at x-dependent indices.

Graph networks pass messages with a gather at the edges' senders and a ``jax.ops.segment_sum``
(a ``scatter-add``) at their receivers; both are linear in the values, so LRP treats the
scatter-add as a sum (the ``Norm`` rule, ε-rule of a weightless sum) and DeepLIFT passes its
multipliers through. A gather/slice whose *positions* come from x (a quantised feature used
as an index) is refused: no rule credits a change of which values are read, and DeepLIFT
silently missed the change of the output there (−0.64 against −0.55)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr import rules as R
from jaxattr.composites import LRP_BASE, Composite

SENDERS = jnp.array([0, 1, 2, 3, 4, 5, 0, 2, 2])
RECEIVERS = jnp.array([1, 2, 3, 4, 5, 0, 3, 5, 5])
#: LRP-0: every stabiliser 0, so it equals gradient × input on a ReLU net without biases
LRP0 = ja.LRP(Composite((("linear", R.Epsilon(0.0)), ("sum", R.Norm(0.0)))) + LRP_BASE)


def _gnn(p, x):
    """Two rounds of message passing on a 6-node graph; ``x`` (batch, nodes, features)."""
    w1, w2, head = p
    h = x
    for w in (w1, w2):
        msg = h[:, SENDERS] @ w  # gather at constant indices, then a dense layer
        h = jax.nn.relu(jax.vmap(lambda m: jax.ops.segment_sum(m, RECEIVERS, 6))(msg))
    return h.sum(1) @ head


def _params(rng, dim=3):
    return tuple(jnp.asarray(rng.normal(size=s)) for s in ((dim, 4), (4, 4), (4, 3)))


def test_message_passing_lrp0_is_gradient_times_input_and_deeplift_sums_to_delta():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p, x = _params(rng), jnp.asarray(rng.normal(size=(3, 6, 3)))
        gxi = ja.attribute(_gnn, p, x, 1, ja.GradientXInput())
        np.testing.assert_allclose(ja.attribute(_gnn, p, x, 1, LRP0), gxi, rtol=1e-10, atol=1e-12)
        for ref in (0.0, 0.3):
            c = ja.attribute(_gnn, p, x, 1, ja.DeepLIFT(ref))
            delta = _gnn(p, x)[:, 1] - _gnn(p, jnp.full_like(x, ref))[:, 1]
            np.testing.assert_allclose(c.sum((1, 2)), delta, rtol=1e-10)


def test_scatter_add_epsilon_rule_matches_a_numpy_oracle():
    """``y_i = Σ_{e: r_e = i} m_e`` with ``m = x[senders]``: the ε-rule of that sum sends
    ``R_e = m_e / (y_{r_e} + ε sign y_{r_e}) · R_{r_e}`` to each message, and the gather adds a
    node's messages' relevance back to it."""
    eps = 0.05

    def f(head, x):  # x (batch, 6 nodes, 3): one round, summed over nodes, a linear head
        y = jax.vmap(lambda m: jax.ops.segment_sum(m, RECEIVERS, 6))(x[:, SENDERS])
        return y.sum(1) @ head

    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x, head = rng.normal(size=(2, 6, 3)), rng.normal(size=(3, 2))
        got = ja.attribute(f, jnp.asarray(head), jnp.asarray(x), 0, ja.LRP(Composite((
            ("sum", R.Norm(eps)), ("linear", R.Epsilon(eps))))))
        # oracle: float64 numpy, layer by layer from the output (R_out = the target's logit)
        senders, receivers = np.asarray(SENDERS), np.asarray(RECEIVERS)
        stab = lambda v: v + eps * np.where(v >= 0, 1.0, -1.0)
        m = x[:, senders]
        y = np.zeros((2, 6, 3))
        np.add.at(y, (slice(None), receivers), m)
        s = y.sum(1)
        out = s @ head[:, 0]
        r_s = s * head[:, 0] * (out / stab(out))[:, None]  # the linear head, no bias
        r_y = y * (r_s / stab(s))[:, None]  # the sum over nodes
        r_m = m * (r_y / stab(y))[:, receivers]  # the scatter-add
        want = np.zeros_like(x)
        np.add.at(want, (slice(None), senders), r_m)  # the gather's copies add up
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("layer", [
    lambda h: jnp.tile(h, (1, 2))[:, 1:4],
    lambda h: jax.lax.dynamic_update_slice(jnp.zeros_like(h), h[:, :2] * 2.0, (0, 1)),
    lambda h: h.at[:, jnp.array([2, 0])].set(h[:, :2]),
], ids=["tile", "dynamic_update_slice", "scatter"])
def test_plumbing_lrp0_is_gradient_times_input(layer):
    def f(p, x):
        return jax.nn.relu(layer(x @ p[0])) @ p[1]

    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        p = (jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(3, 2))))
        x = jnp.asarray(rng.normal(size=(3, 4)))
        gxi = ja.attribute(f, p, x, 1, ja.GradientXInput())
        np.testing.assert_allclose(ja.attribute(f, p, x, 1, LRP0), gxi, rtol=1e-10, atol=1e-12)
        c = ja.attribute(f, p, x, 1, ja.DeepLIFT())
        np.testing.assert_allclose(c.sum(1), f(p, x)[:, 1] - f(p, 0 * x)[:, 1], rtol=1e-10)


TABLE = jnp.arange(18.0).reshape(6, 3) ** 0.5


@pytest.mark.parametrize("read", [
    lambda h, i: jnp.take(TABLE, i, axis=0, mode="clip"),
    lambda h, i: jax.vmap(lambda row, j: jax.lax.dynamic_slice(row, (j,), (2,)))(h, i),
], ids=["gather", "dynamic_slice"])
def test_positions_computed_from_x_are_refused(read):
    def f(p, x):
        h = x @ p
        i = jnp.clip(jnp.floor(h[:, 0] * 2 + 3), 0, 1).astype(jnp.uint32)  # no wrap-around
        return read(h, i)[:, :2] + h[:, :2]

    p, x = jnp.ones((3, 3)), jnp.ones((2, 3))
    for method in (ja.LRP(), ja.DeepLIFT()):
        with pytest.raises(ja.UnsupportedPrimitiveError, match="reads at positions computed"):
            ja.attribute(f, p, x, 0, method)
    assert ja.attribute(f, p, x, 0, ja.Gradient()).shape == x.shape  # as jax.grad: no rule needed


@pytest.mark.parametrize("method", [ja.DeepLIFT(), ja.DeepLIFT(rule="reveal_cancel"), ja.LRP()],
                         ids=["rescale", "reveal_cancel", "lrp"])
def test_the_zoo_graph_network(method):
    """``model_zoo.GNN`` (Flax, biases, jraph's layout): DeepLIFT sums to delta, and every
    method gives each example what it gives it alone."""
    import model_zoo as Z  # noqa: E402  (tests/ is on sys.path, see conftest.py)
    with jax.enable_x64(True):
        (entry,) = Z.zoo(jnp.float64, ["gnn"])
        f, p, x = entry.fn, entry.params, entry.x
        r = ja.attribute(f, p, x, 1, method)
        alone = np.concatenate([ja.attribute(f, p, x[i:i + 1], 1, method) for i in range(len(x))])
        np.testing.assert_allclose(r, alone, rtol=1e-10, atol=1e-13)
        if isinstance(method, ja.DeepLIFT):
            np.testing.assert_allclose(r.sum((1, 2)), f(p, x)[:, 1] - f(p, 0 * x)[:, 1],
                                       rtol=1e-10)
