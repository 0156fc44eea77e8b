"""``ja.engine.ledger`` (issue #21 item 5): what each segment absorbs, ``ΣR_out − ΣR_in``.

On a dense ReLU net with biases under LRP-ε every dense layer's row equals a float64 NumPy
oracle, ``Σ_j R_j (b_j + ε·sign z_j) / (z_j + ε·sign z_j)``, to 1e-10; the rows and the input
relevance add up to the target logit; rows follow the audit; a ``scan`` body's segments are
rows too (summed over the steps), a ``cond``'s count the branch taken; relevance handed to a
constant (a ``scan``'s constant initial state, a constant token concatenated) is a row.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja

EPS = 0.05
SIZES = (5, 7, 6, 4)
B = 3


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return [dict(w=jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a)),
                 b=jnp.asarray(rng.normal(size=b) * 0.5))
            for a, b in zip(SIZES[:-1], SIZES[1:])]


def _x(seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(B, SIZES[0])))


def _mlp(params, x):
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def _mlp_features_first(params, x):
    """The same net with its activations laid out (features, batch): no tensor keeps the batch
    first, yet the per-example rows must not change."""
    h = x.T
    for i, layer in enumerate(params):
        h = layer["w"].T @ h + layer["b"][:, None]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h.T


def _oracle(params, x, target):
    """Per dense layer, what the bias and ε absorb under LRP-ε, per example (float64 NumPy)."""
    params = [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in params]
    acts, a = [], np.asarray(x, np.float64)
    for i, p in enumerate(params):
        acts.append(a)
        z = a @ p["w"] + p["b"]
        a = np.maximum(z, 0) if i < len(params) - 1 else z
    rows = np.arange(len(a))
    R = np.zeros_like(a)
    R[rows, target] = a[rows, target]
    absorbed = []
    for a, p in zip(reversed(acts), reversed(params)):
        z = a @ p["w"] + p["b"]
        sign = np.where(z >= 0, 1.0, -1.0)
        stab = z + EPS * sign
        absorbed.append((R * (p["b"] + EPS * sign) / stab).sum(1))
        R = a * ((R / stab) @ p["w"].T)  # ReLU: relevance passes (its own absorption is 0)
    return absorbed[::-1], R


def test_dense_rows_equal_numpy_oracle_and_add_up_to_the_logit():
    params, x = _params(), _x()
    method = ja.LRP(ja.rules.Epsilon(EPS))
    logits = np.asarray(_mlp(params, x))
    target = logits.argmax(1)
    rows = ja.engine.ledger(_mlp, params, x, method)
    assert [r.kind for r in rows] == ["dense", "activation", "dense", "activation", "dense"]
    assert [r.index for r in rows] == list(range(5))
    oracle, R_in = _oracle(params, x, target)
    dense = [r for r in rows if r.kind == "dense"]
    for row, want in zip(dense, oracle):
        assert row.absorbed.shape == (B,) and row.absorbed.dtype == np.float64
        np.testing.assert_allclose(row.absorbed, want, rtol=1e-10, atol=1e-10)
    for row in rows:
        if row.kind == "activation":
            np.testing.assert_allclose(row.absorbed, 0.0, atol=1e-12)
    # the last layer receives the whole logit; each layer passes on what it did not absorb
    np.testing.assert_allclose(rows[-1].relevance, logits[np.arange(B), target], rtol=1e-12)
    for up, down in zip(rows[1:], rows[:-1]):
        np.testing.assert_allclose(down.relevance, up.relevance - up.absorbed, rtol=1e-10,
                                   atol=1e-12)
    # what reached the input plus what the rows absorbed is the target logit, per example
    R = np.asarray(ja.attribute(_mlp, params, x, method=method))
    np.testing.assert_allclose(R, R_in, rtol=1e-10, atol=1e-12)
    check = ja.evaluation.checks.conservation(_mlp, params, x, R)
    gap = np.asarray(check.logit) - np.asarray(check.total)
    assert np.abs(gap).min() > 1e-3  # the biases keep a visible share
    np.testing.assert_allclose(sum(r.absorbed for r in rows), gap, rtol=1e-10, atol=1e-12)
    # summed over the batch in one pass
    flat = ja.engine.ledger(_mlp, params, x, method, per_example=False)
    for a, b in zip(rows, flat):
        assert b.absorbed.shape == ()
        np.testing.assert_allclose(b.absorbed, a.absorbed.sum(), rtol=1e-10, atol=1e-12)
    text = ja.engine.format_ledger(rows)
    assert "Epsilon(epsilon=0.05)" in text and text.splitlines()[-1].split()[0] == "total"


def test_per_example_rows_whatever_the_layout_and_target():
    params, x = _params(2), _x(3)
    method = ja.LRP(ja.rules.Epsilon(EPS))
    target = jnp.array([0, 3, 1])
    a = ja.engine.ledger(_mlp, params, x, method, target)
    b = ja.engine.ledger(_mlp_features_first, params, x, method, target)
    assert [r.kind for r in a] == [r.kind for r in b]
    oracle, _ = _oracle(params, x, np.asarray(target))
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(rb.absorbed, ra.absorbed, rtol=1e-10, atol=1e-12)
    for row, want in zip([r for r in b if r.kind == "dense"], oracle):
        np.testing.assert_allclose(row.absorbed, want, rtol=1e-10, atol=1e-10)


def _rows_follow_audit(fn, params, x, method):
    rows = ja.engine.ledger(fn, params, x, method)
    audit = ja.engine.audit(fn, params, x, method)
    owner = {n: r for r in rows for n in r.nodes}
    assert len(owner) == sum(len(r.nodes) for r in rows)  # a node belongs to one row
    seen = []
    for a in audit:
        if a.kind in ja.engine.KINDS or a.node in owner:
            row = owner[a.node]  # every segmented equation is in a row
            assert a.kind == row.kind and a.node in row.nodes
            assert a.rule == row.rule or (a.kind == "maxpool" and a.rule == "gradient")
            if row.index not in seen:
                seen.append(row.index)
    assert seen == sorted(seen) == list(range(len(rows)))  # the audit's order
    names = {r.index: {a.name for a in audit if a.node in r.nodes} for r in rows}
    assert all(r.name in names[r.index] for r in rows)
    return rows


def _adds_up(fn, params, x, method, rows):
    """Σ_i R_i + Σ_rows absorbed = f_t(x), per example."""
    R = np.asarray(ja.attribute(fn, params, x, method=method))
    check = ja.evaluation.checks.conservation(fn, params, x, R)
    gap = np.asarray(check.logit) - np.asarray(check.total)
    np.testing.assert_allclose(sum(r.absorbed for r in rows), gap, rtol=1e-9, atol=1e-10)
    return gap


def test_rows_follow_the_audit():
    rows = _rows_follow_audit(_mlp, _params(), _x(), ja.LRP(ja.composites.epsilon_plus(EPS)))
    assert len(rows) == 5


def _scan_net(p, x, h0=None):
    """A recurrent cell over the sequence axis (x: batch, time, features), a readout with a
    bias after it; the initial state from the first step, or the constant ``h0``."""
    def step(h, xt):
        h = jnp.tanh(jnp.concatenate([xt, h], -1) @ p["w"] + p["b"])
        return h, None

    if h0 is None:
        h0 = jnp.tanh(x[:, 0] @ p["w0"])
    h, _ = jax.lax.scan(step, jnp.broadcast_to(h0, (x.shape[0], p["b"].shape[0])),
                        jnp.swapaxes(x, 0, 1))
    return h @ p["v"] + p["c"]


def _scan_params_x():
    rng = np.random.default_rng(4)
    D, H, T = 3, 4, 5
    p = dict(w=rng.normal(size=(D + H, H)) / 2, b=rng.normal(size=H) * 0.3,
             w0=rng.normal(size=(D, H)), v=rng.normal(size=(H, 3)), c=rng.normal(size=3) * 0.3)
    p = jax.tree_util.tree_map(jnp.asarray, p)
    return p, jnp.asarray(rng.normal(size=(B, T, D)))


def test_scan_body_segments_are_rows_and_totals_add_up():
    p, x = _scan_params_x()
    method = ja.LRP(ja.rules.Epsilon(EPS))
    rows = _rows_follow_audit(_scan_net, p, x, method)
    body = [r for r in rows if "." in str(r.nodes[0])]
    assert {r.kind for r in body} >= {"dense", "activation"}
    assert any(np.abs(r.absorbed).max() > 1e-6 for r in body)  # the body's bias absorbs
    _adds_up(_scan_net, p, x, method, rows)


def test_relevance_passed_to_constants_is_a_row():
    """Relevance a plumbing or control node hands to a constant operand leaves the network there:
    a ``scan`` started from a constant state, a ``concatenate`` with a constant token."""
    p, x = _scan_params_x()
    method = ja.LRP(ja.rules.Epsilon(EPS))
    h0 = jnp.linspace(0.5, 1.0, 4)
    fn = lambda p, x: _scan_net(p, x, h0)
    rows = _rows_follow_audit(fn, p, x, method)
    (scan,) = [r for r in rows if r.kind == "control"]
    assert np.abs(scan.absorbed).min() > 1e-6  # the relevance of the initial state
    _adds_up(fn, p, x, method, rows)

    def tokens(p, x):  # a cls-like constant token before the tokens of x, then a mean readout
        h = jnp.concatenate([jnp.broadcast_to(p["cls"], (x.shape[0], 1, 4)), x @ p["w"]], 1)
        return jnp.tanh(h).mean(1) @ p["v"]

    rng = np.random.default_rng(7)
    q = dict(cls=jnp.asarray(rng.normal(size=4)), w=jnp.asarray(rng.normal(size=(3, 4))),
             v=jnp.asarray(rng.normal(size=(4, 2))))
    xt = jnp.asarray(rng.normal(size=(B, 5, 3)))
    lrp0 = ja.LRP(ja.rules.Epsilon(0.0))
    rows = _rows_follow_audit(tokens, q, xt, lrp0)
    (cat,) = [r for r in rows if r.kind == "plumbing"]
    assert np.abs(cat.absorbed).min() > 1e-6 and cat.rule == "gradient"
    gap = _adds_up(tokens, q, xt, lrp0, rows)
    # no bias, no ε (but the mean's Norm(1e-6)): the token takes the whole gap
    np.testing.assert_allclose(cat.absorbed, gap, rtol=1e-4)


def _cond_net(p, x):
    """A branch chosen by the data: the taken branch's rows absorb, the other's are zero."""
    h = jnp.tanh(x @ p["w"] + p["b"])
    h = jax.lax.cond(p["pick"] > 0, lambda h: jnp.tanh(h @ p["u"] + p["c"]),
                     lambda h: jax.nn.relu(h @ p["v"] + p["d"]), h)
    return h @ p["o"]


def test_cond_rows_count_the_branch_taken():
    rng = np.random.default_rng(8)
    p = {k: jnp.asarray(rng.normal(size=s)) for k, s in
         dict(w=(5, 4), b=4, u=(4, 4), c=4, v=(4, 4), d=4, o=(4, 3)).items()}
    x = jnp.asarray(rng.normal(size=(B, 5)))
    method = ja.LRP(ja.rules.Epsilon(EPS))
    for pick, taken in ((1.0, "1"), (-1.0, "0")):  # lax.cond: branch 1 is the true one
        q = dict(p, pick=jnp.asarray(pick))
        rows = _rows_follow_audit(_cond_net, q, x, method)
        branch = [r for r in rows if "[" in str(r.nodes[0])]
        assert {r.kind for r in branch} >= {"dense", "activation"}
        for r in branch:
            if f"[{taken}]" not in str(r.nodes[0]):
                assert np.all(r.absorbed == 0) and np.all(r.relevance == 0)
            elif r.kind == "dense":
                assert np.abs(r.absorbed).min() > 1e-6
        _adds_up(_cond_net, q, x, method, rows)


def test_deep_taylor_seeds_the_relu_of_the_logit():
    params, x = _params(14), _x(15)
    target = jnp.zeros(B, int)
    logit = np.asarray(_mlp(params, x))[:, 0]
    assert logit.min() < 0 < logit.max()  # one example gets nothing
    method = ja.DeepTaylor()
    rows = ja.engine.ledger(_mlp, params, x, method, target)
    R = np.asarray(ja.attribute(_mlp, params, x, target, method=method)).sum(1)
    np.testing.assert_allclose(R + sum(r.absorbed for r in rows), np.maximum(logit, 0),
                               rtol=1e-10, atol=1e-12)
    assert rows[-1].relevance[0] == 0 and rows[-1].relevance[1:].min() > 0


@pytest.mark.parametrize("method", [ja.DeepLIFT(), ja.Gradient(), ja.GuidedBackprop()])
def test_methods_that_do_not_propagate_relevance_are_refused(method):
    with pytest.raises(ValueError, match="ledger follows relevance"):
        ja.engine.ledger(_mlp, _params(), _x(), method)


def test_docstring_example_runs():
    import doctest
    import importlib

    module = importlib.import_module("jaxattr.engine.ledger")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
