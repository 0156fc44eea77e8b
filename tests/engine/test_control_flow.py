"""Rule-based methods inside control flow (issue #19 item 3): the engine descends into ``scan``
and ``cond``/``switch`` bodies, keeps loops rolled, and gives the explanation of the same network
unrolled by hand in Python (float64, 1e-10).

The rolled/unrolled twins have the same *structure* at every step: a hand-unrolled net whose
initial state is a constant (zeros) sees a constant at step 0 (``h0 @ U`` folds into the bias),
while the rolled body's carry depends on x on later steps, so it is an x-dependent input on every
step. The twins below therefore either use one dense layer over ``[x_t, h]`` (a zero ``h`` then
adds nothing to ``z`` either way) or start from an x-dependent state.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
import model_zoo as Z  # noqa: E402  (tests/ is on sys.path, see conftest.py)
from jaxattr.engine import UnsupportedPrimitiveError, segment, trace

TOL = dict(rtol=1e-10, atol=1e-10)
D, H, C, T, B = 3, 4, 3, 5, 3


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _params(seed=0, layers=1):
    rng = np.random.default_rng(seed)
    p = dict(w=rng.normal(size=(D + H, H)) / 2, w0=rng.normal(size=(D, H)),
             wx=rng.normal(size=(D, H)), u=rng.normal(size=(H, H)) / 2,
             b=rng.normal(size=H) * 0.3, v=rng.normal(size=(H, C)), c=rng.normal(size=C) * 0.3,
             stack=rng.normal(size=(layers, H, H)) / 2, sb=rng.normal(size=(layers, H)) * 0.3)
    return jax.tree_util.tree_map(jnp.asarray, p)


def _x(seed=1, batch=B):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, T, D)))


# ------------------------------------------------------------------------------------------
# twins: the same net with lax.scan and unrolled in Python
# ------------------------------------------------------------------------------------------

def _concat_cell(act):
    return lambda p, h, xt: act(jnp.concatenate([xt, h], axis=-1) @ p["w"] + p["b"])


def _split_cell(act):
    return lambda p, h, xt: act(xt @ p["wx"] + h @ p["u"] + p["b"])


def concat_rnn(act, rolled, reverse=False, unroll=1):
    """``h_t = act([x_t, h_{t−1}] W + b)`` from ``h_0 = 0``, logits ``h_T V + c``."""
    cell = _concat_cell(act)

    def fn(p, x):
        h = jnp.zeros((x.shape[0], H), x.dtype)
        if rolled:
            h, _ = jax.lax.scan(lambda h, xt: (cell(p, h, xt), None), h, jnp.swapaxes(x, 0, 1),
                                reverse=reverse, unroll=unroll)
        else:
            for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
                h = cell(p, h, x[:, t])
        return h @ p["v"] + p["c"]

    return fn


def split_rnn(act, rolled):
    """``h_t = act(x_t W + h_{t−1} U + b + k)`` from the x-dependent ``h_0 = tanh(x_0 W₀)``, with
    an x-dependent context ``k = x_T W₀`` read by every step (a const of the scan, as are the
    weights); the logits read every step's output (``Σ_t y_t V + c``): xs, ys and consts."""
    base = _split_cell(act)

    def fn(p, x):
        h = jnp.tanh(x[:, 0] @ p["w0"])
        context = x[:, -1] @ p["w0"]
        cell = lambda p, h, xt: base(dict(p, b=p["b"] + context), h, xt)
        if rolled:
            def step(h, xt):
                h = cell(p, h, xt)
                return h, h
            _, ys = jax.lax.scan(step, h, jnp.swapaxes(x, 0, 1))
        else:
            outs = []
            for t in range(x.shape[1]):
                h = cell(p, h, x[:, t])
                outs.append(h)
            ys = jnp.stack(outs)
        return ys.sum(0) @ p["v"] + p["c"]

    return fn


def nested_rnn(rolled):
    """Each time step runs an inner scan over ``layers`` stacked ReLU layers (weights as the
    inner xs), then a tanh cell."""
    def fn(p, x):
        h = jnp.tanh(x[:, 0] @ p["w0"])

        def deep(h):
            if rolled:
                h, _ = jax.lax.scan(lambda h, wb: (jax.nn.relu(h @ wb[0] + wb[1]), None), h,
                                    (p["stack"], p["sb"]))
                return h
            for w, b in zip(p["stack"], p["sb"]):
                h = jax.nn.relu(h @ w + b)
            return h

        cell = _split_cell(jnp.tanh)
        if rolled:
            h, _ = jax.lax.scan(lambda h, xt: (cell(p, deep(h), xt), None), h,
                                jnp.swapaxes(x, 0, 1))
        else:
            for t in range(x.shape[1]):
                h = cell(p, deep(h), x[:, t])
        return h @ p["v"] + p["c"]

    return fn


LRP0 = ja.LRP(ja.rules.Epsilon(0.0))
METHODS = {
    "lrp0": LRP0,
    "lrp_eps": ja.LRP(ja.rules.Epsilon(0.1)),
    "zplus": ja.LRP(ja.rules.ZPlus()),
    "alphabeta": ja.LRP(ja.rules.AlphaBeta(2.0, 1.0)),
    "deep_taylor": ja.DeepTaylor(),
    "deeplift": ja.DeepLIFT(),
    "deeplift_rc": ja.DeepLIFT(rule="reveal_cancel"),
    "guided": ja.GuidedBackprop(),
    "deconvnet": ja.DeconvNet(),
}


def _same(fn_a, fn_b, p, x, method):
    a = ja.attribute(fn_a, p, x, method=method)
    b = ja.attribute(fn_b, p, x, method=method)
    scale = np.abs(np.asarray(b)).max()
    assert scale > 1e-3  # not trivially zero
    # 1e-10 of the map's scale: the twins' float64 rounding differs (e.g. a layer whose input is
    # known >= 0 in one twin skips its x⁻ terms)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10 * max(1.0, scale))
    return a


def _delta(fn, p, x, ref=0.0):
    logits = fn(p, x)
    t = jnp.argmax(logits, -1)
    pick = lambda v: jnp.take_along_axis(v, t[:, None], 1)[:, 0]
    return np.asarray(pick(logits) - pick(fn(p, jnp.broadcast_to(ref, x.shape))))


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("act", [jax.nn.relu, jnp.tanh], ids=["relu", "tanh"])
def test_rolled_equals_unrolled(name, act):
    p, x = _params(), _x()
    method = METHODS[name]
    r = _same(concat_rnn(act, True), concat_rnn(act, False), p, x, method)
    if name.startswith("deeplift"):  # summation to delta
        np.testing.assert_allclose(np.asarray(r).sum((1, 2)), _delta(concat_rnn(act, False), p, x),
                                   **TOL)


@pytest.mark.parametrize("name", ["lrp_eps", "alphabeta", "deeplift", "guided"])
def test_reverse_scan(name):
    p, x = _params(), _x()
    rolled = concat_rnn(jax.nn.relu, True, reverse=True, unroll=2)
    _same(rolled, concat_rnn(jax.nn.relu, False, reverse=True), p, x, METHODS[name])


def test_loop_is_re_emitted_rolled_with_its_parameters():
    """One ``scan`` with the traced length, direction and unrolling, rules bound in its body."""
    p, x = _params(), _x()
    fn = concat_rnn(jax.nn.relu, True, reverse=True, unroll=2)
    graph = trace(fn, p, x)
    assignment = METHODS["lrp_eps"].composite().assign(segment(graph))
    leaves = jax.tree_util.tree_leaves(p)
    program = jax.make_jaxpr(lambda x: ja.engine.run(graph, assignment, leaves + [x]))(x)
    (scan,) = [e for e in program.jaxpr.eqns if e.primitive.name == "scan"]
    assert scan.params["reverse"] and scan.params["unroll"] == 2 and scan.params["length"] == T
    body = {e.primitive.name for e in scan.params["jaxpr"].jaxpr.eqns}
    assert "custom_vjp_call" in body and "dot_general" not in body  # the layer is a rule


@pytest.mark.parametrize("name", ["lrp0", "lrp_eps", "zplus", "deeplift", "deeplift_rc"])
def test_scan_with_consts_xs_and_ys(name):
    p, x = _params(), _x()
    r = _same(split_rnn(jax.nn.relu, True), split_rnn(jax.nn.relu, False), p, x, METHODS[name])
    if name.startswith("deeplift"):
        np.testing.assert_allclose(np.asarray(r).sum((1, 2)), _delta(split_rnn(jax.nn.relu, False), p, x),
                                   **TOL)


@pytest.mark.parametrize("name", ["lrp_eps", "deeplift", "deconvnet"])
def test_nested_scan(name):
    p, x = _params(layers=2), _x()
    _same(nested_rnn(True), nested_rnn(False), p, x, METHODS[name])


def test_deeplift_array_reference_per_example():
    """A reference per example (no shared-reference shortcut) through the loop."""
    p, x = _params(), _x()
    ref = 0.3 * _x(seed=5)
    method = ja.DeepLIFT(reference=ref)
    r = _same(split_rnn(jnp.tanh, True), split_rnn(jnp.tanh, False), p, x, method)
    np.testing.assert_allclose(np.asarray(r).sum((1, 2)), _delta(split_rnn(jnp.tanh, False), p, x, ref),
                               **TOL)


def test_lrp0_conserves_through_the_loop():
    """Without biases LRP-0 through a ReLU RNN conserves the target logit exactly."""
    p, x = _params(), _x()
    p = dict(p, b=0 * p["b"], c=0 * p["c"])
    fn = concat_rnn(jax.nn.relu, True)
    r = ja.attribute(fn, p, x, method=LRP0)
    logits = fn(p, x)
    np.testing.assert_allclose(np.asarray(r).sum((1, 2)), np.asarray(logits.max(-1)), **TOL)


def test_gradient_family_unchanged_on_scans():
    p, x = _params(), _x()
    fn = split_rnn(jax.nn.relu, True)
    t = jnp.argmax(fn(p, x), -1)
    want = jax.grad(lambda x: jnp.take_along_axis(fn(p, x), t[:, None], 1).sum())(x)
    got = ja.attribute(fn, p, x, method=ja.Gradient())
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# jit, batch, vmap
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lrp_eps", "deeplift"])
def test_jit_equals_eager_and_batch_equals_per_example(name):
    p, x = _params(), _x()
    fn, method = split_rnn(jax.nn.relu, True), METHODS[name]
    t = jnp.argmax(fn(p, x), -1)
    jitted = ja.explain(fn, method)(p, x, t)
    with jax.disable_jit():  # op by op (jax then unrolls the scan in Python: rolled == unrolled too)
        eager = ja.attribute(fn, p, x, t, method=method)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), **TOL)
    for i in range(x.shape[0]):
        one = ja.attribute(fn, p, x[i:i + 1], method=method)
        np.testing.assert_allclose(np.asarray(one[0]), np.asarray(jitted[i]), **TOL)


def test_vmap():
    p, x = _params(), _x(batch=4)
    fn = concat_rnn(jnp.tanh, True)
    groups = x.reshape(2, 2, T, D)
    got = jax.vmap(lambda xb: ja.attribute(fn, p, xb, method=METHODS["lrp_eps"]))(groups)
    want = ja.attribute(fn, p, x, method=METHODS["lrp_eps"])
    np.testing.assert_allclose(np.asarray(got).reshape(x.shape), np.asarray(want), **TOL)


# ------------------------------------------------------------------------------------------
# cond / switch
# ------------------------------------------------------------------------------------------

def _branches():
    return [lambda p, h: jax.nn.relu(h @ p["u"] + p["b"]),
            lambda p, h: jnp.tanh(h @ p["u"]) * 2.0,
            lambda p, h: h]


def switch_net(taken=None):
    """``lax.switch`` on an index from the parameters (or, ``taken``, that branch alone)."""
    def fn(p, x):
        h = x[:, 0] @ p["wx"]
        if taken is None:
            h = jax.lax.switch(p["k"], [lambda h, f=f: f(p, h) for f in _branches()], h)
        else:
            h = _branches()[taken](p, h)
        return h @ p["v"] + p["c"]

    return fn


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("name", ["lrp_eps", "alphabeta", "deeplift", "guided"])
def test_switch_equals_the_taken_branch(k, name):
    p, x = _params(), _x()
    p = dict(p, k=jnp.asarray(k))
    r = _same(switch_net(), switch_net(k), p, x, METHODS[name])
    if name == "deeplift":
        np.testing.assert_allclose(np.asarray(r).sum((1, 2)), _delta(switch_net(), p, x), **TOL)


def test_cond_on_x_takes_the_branch_of_x():
    """The predicate depends on x: its computation needs no rule (the branch index carries no
    derivative), and the explanation is the taken branch's. (One example: a predicate over the
    whole batch makes every example's branch depend on the others, which the engine refuses.)"""
    def fn(p, x, taken=None):
        h = x[:, 0] @ p["wx"]
        a, b = (lambda h: jax.nn.relu(h @ p["u"])), (lambda h: jnp.tanh(h))
        if taken is None:
            h = jax.lax.cond(x.sum() > 0, a, b, h)
        else:
            h = (a if taken else b)(h)
        return h @ p["v"]

    p = _params()
    for x in (_x()[:1], -_x()[:1]):
        taken = bool(x.sum() > 0)
        _same(fn, lambda p, x: fn(p, x, taken), p, x, METHODS["lrp_eps"])
    with pytest.raises(ja.BatchCouplingError, match="reduce_sum"):
        ja.attribute(fn, p, _x(), method=METHODS["lrp_eps"])


# ------------------------------------------------------------------------------------------
# flax nn.RNN: GRU and LSTM cells (gate products)
# ------------------------------------------------------------------------------------------

class _Unrolled(nn.Module):
    """``Z.RNNClassifier`` unrolled by hand: the same cell (same parameter names) called T times,
    from an x-dependent zero state (``0 · x``) so that step 0 has the rolled body's structure."""

    cell: str

    @nn.compact
    def __call__(self, x):
        make = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[self.cell]
        cell = make(Z.DIM, param_dtype=x.dtype, name=f"{make.__name__}_0")
        zero = jnp.broadcast_to(0.0 * x[:, 0, :1], (x.shape[0], Z.DIM))
        carry = (zero, zero) if self.cell == "lstm" else zero
        for t in range(x.shape[1]):
            carry, y = cell(carry, x[:, t])
        return nn.Dense(Z.CLASSES)(y)


FLAX_METHODS = {"epsilon_plus": ja.LRP(ja.composites.epsilon_plus()), "lrp0": LRP0,
                "deeplift": ja.DeepLIFT()}


@pytest.mark.parametrize("name", [  # DeepLIFT on flax cells: also the NNX GRU and LSTM tests below
    "epsilon_plus", pytest.param("deeplift", marks=pytest.mark.slow),
    pytest.param("lrp0", marks=pytest.mark.slow)])
@pytest.mark.parametrize("cell", ["gru", pytest.param("lstm", marks=pytest.mark.slow)])
def test_flax_rnn_equals_hand_unrolled(cell, name):
    (entry,) = Z.zoo(jnp.float64, [cell])
    twin = _Unrolled(cell).apply
    np.testing.assert_allclose(np.asarray(twin(entry.params, entry.x)),
                               np.asarray(entry.fn(entry.params, entry.x)), rtol=1e-13)
    method = FLAX_METHODS[name]
    r = _same(entry.fn, twin, entry.params, entry.x, method)
    if name == "deeplift":
        np.testing.assert_allclose(np.asarray(r).sum((1, 2)),
                                   _delta(entry.fn, entry.params, entry.x), **TOL)


def test_flax_gru_audit_lists_body_segments_with_paths():
    (entry,) = Z.zoo(jnp.float64, ["gru"])
    rows = ja.engine.audit(entry.fn, entry.params, entry.x, ja.LRP(ja.composites.epsilon_plus()))
    scan = next(r for r in rows if r.primitive == "scan")
    assert scan.kind == "control"
    body = [r for r in rows if str(r.node).startswith(f"{scan.node}.")]
    dense = {r.name.rsplit("/", 1)[-1]: r.rule for r in body if r.kind == "dense"}
    assert set(dense) == {"ir", "iz", "in", "hr", "hz", "hn"}
    assert all(r.name.startswith("RNNClassifier/RNN_0/GRUCell_0") for r in body)
    assert all(rule.startswith("Epsilon") for rule in dense.values())
    assert {r.rule.split("(")[0] for r in body if r.kind == "bilinear"} == {"Uniform"}
    # composites select body segments by name like any other
    segs = segment(trace(entry.fn, entry.params, entry.x))
    comp = ja.composites.Composite((("name:GRUCell_0/ir", ja.rules.ZPlus()),)) + ja.composites.lrp(
        ja.rules.Epsilon())
    assigned = comp.assign(segs)
    assert [s.name.rsplit("/", 1)[-1] for s in segs if isinstance(assigned.get(s), ja.rules.ZPlus)] == ["ir"]


def test_flax_lstm_deeplift_reveal_cancel_sums_to_delta():
    (entry,) = Z.zoo(jnp.float64, ["lstm"])
    r = ja.attribute(entry.fn, entry.params, entry.x, method=ja.DeepLIFT(rule="reveal_cancel"))
    np.testing.assert_allclose(np.asarray(r).sum((1, 2)), _delta(entry.fn, entry.params, entry.x),
                               **TOL)


# ------------------------------------------------------------------------------------------
# custom derivatives, errors
# ------------------------------------------------------------------------------------------

@jax.custom_vjp
def _linear(x, w):
    return x @ w


_linear.defvjp(lambda x, w: (x @ w, (x, w)), lambda r, g: (3.0 * g @ r[1].T, r[0].T @ g))


def test_custom_vjp_layer_is_inlined_for_rules():
    """A user's custom_vjp linear layer (with a deliberately wrong backward) is a dense layer for
    the rules, which replace its derivative; the gradient family keeps its own backward."""
    p, x = _params(), _x()[:, 0]
    custom = lambda p, x: _linear(jax.nn.relu(x @ p["wx"] + p["b"]), p["v"])
    plain = lambda p, x: jax.nn.relu(x @ p["wx"] + p["b"]) @ p["v"]
    for name in ("lrp_eps", "zplus", "deeplift"):
        _same(custom, plain, p, x, METHODS[name])
    g_custom = ja.attribute(custom, p, x, method=ja.Gradient())
    g_plain = ja.attribute(plain, p, x, method=ja.Gradient())
    np.testing.assert_allclose(np.asarray(g_custom), 3.0 * np.asarray(g_plain), rtol=1e-12)


def test_uncovered_primitive_in_a_body_names_it_and_its_path():
    def fn(p, x):
        def step(h, xt):
            with jax.named_scope("cell"):
                h = jnp.sort(xt @ p["wx"] + h @ p["u"], axis=-1)
            return h, None
        h, _ = jax.lax.scan(step, jnp.zeros((x.shape[0], H)), jnp.swapaxes(x, 0, 1))
        return h @ p["v"]

    p, x = _params(), _x()
    with pytest.raises(UnsupportedPrimitiveError, match="'sort'") as info:
        ja.attribute(fn, p, x, method=ja.LRP())
    assert "'cell'" in str(info.value) and "ja.Gradient()" in str(info.value)
    ja.attribute(fn, p, x, method=ja.GuidedBackprop())  # the lenient methods still run


def test_x_dependent_while_raises_with_hint():
    def fn(p, x):
        h = x[:, 0] @ p["wx"]
        h = jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (jnp.tanh(c[0] @ p["u"]), c[1] + 1),
                               (h, 0))[0]
        return h @ p["v"]

    p, x = _params(), _x()
    with pytest.raises(UnsupportedPrimitiveError, match="'while'.*lax.scan.*fori_loop") as info:
        ja.attribute(fn, p, x, method=ja.DeepLIFT())
    assert "ja.IntegratedGradients()" in str(info.value)


def test_while_independent_of_x_and_static_fori_loop_work():
    def fn(p, x, rolled=True):
        scale = jax.lax.while_loop(lambda s: s < 4.0, lambda s: s * 2.0, p["c"][0] ** 2 + 1.0)
        h = x[:, 0] @ p["wx"]
        if rolled:  # static bounds: lowered to a scan
            h = jax.lax.fori_loop(0, 3, lambda i, h: jax.nn.relu(h @ p["u"] + p["b"]), h)
        else:
            for _ in range(3):
                h = jax.nn.relu(h @ p["u"] + p["b"])
        return (h @ p["v"]) * scale

    p, x = _params(), _x()
    assert "scan" in {n.prim for n in trace(fn, p, x).nodes}
    for name in ("lrp_eps", "deeplift"):
        _same(fn, lambda p, x: fn(p, x, False), p, x, METHODS[name])


# ------------------------------------------------------------------------------------------
# SignalTakeAll (Arras et al. 2017) on an LSTM, against a numpy oracle
# ------------------------------------------------------------------------------------------

def _lstm_params(seed=3):
    rng = np.random.default_rng(seed)
    return dict(w=jnp.asarray(rng.normal(size=(D + H, 4 * H)) / 2),
                b=jnp.asarray(rng.normal(size=4 * H) * 0.3),
                v=jnp.asarray(rng.normal(size=(H, C))), c=jnp.asarray(rng.normal(size=C) * 0.3))


def lstm(p, x):
    """One dense layer over ``[x_t, h]`` gives the input, forget, output gates and the cell input."""
    def step(carry, xt):
        c, h = carry
        z = jnp.concatenate([xt, h], -1) @ p["w"] + p["b"]
        i, f, o = (jax.nn.sigmoid(z[:, k * H:(k + 1) * H]) for k in range(3))
        g = jnp.tanh(z[:, 3 * H:])
        c = f * c + i * g
        return (c, o * jnp.tanh(c)), None

    zero = jnp.zeros((x.shape[0], H), x.dtype)
    (_, h), _ = jax.lax.scan(step, (zero, zero), jnp.swapaxes(x, 0, 1))
    return h @ p["v"] + p["c"]


def _stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def lstm_signal_take_all_oracle(p, x, eps, norm_eps=1e-6):
    """Arras et al. 2017 written out in numpy: ε-LRP through the dense layers (the bias absorbs
    its share), proportional split at ``c = f c' + i g`` (stabiliser 1e-6, as the sums of the
    LRP base map), the signal takes all at every gated product, tanh passes."""
    p = {k: np.asarray(v) for k, v in p.items()}
    x = np.asarray(x)
    sig = lambda v: 1 / (1 + np.exp(-v))
    n = x.shape[0]
    c, h = np.zeros((n, H)), np.zeros((n, H))
    tape = []
    for t in range(x.shape[1]):
        inp = np.concatenate([x[:, t], h], -1)
        z = inp @ p["w"] + p["b"]
        i, f, o, g = sig(z[:, :H]), sig(z[:, H:2 * H]), sig(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
        tape.append((inp, z, f * c, i * g))
        c = f * c + i * g
        h = o * np.tanh(c)
    y = h @ p["v"] + p["c"]
    t_ = y.argmax(-1)
    r_y = np.zeros_like(y)
    r_y[np.arange(n), t_] = y[np.arange(n), t_]
    r_h = h * ((r_y / _stab(y, eps)) @ p["v"].T)
    r_c = np.zeros((n, H))
    relevance = np.zeros_like(x)
    for t in reversed(range(x.shape[1])):
        inp, z, fc, ig = tape[t]
        r_c = r_c + r_h                       # h = o ⊙ tanh(c): all to tanh(c), tanh passes
        cell = fc + ig
        r_fc, r_ig = fc * r_c / _stab(cell, norm_eps), ig * r_c / _stab(cell, norm_eps)
        r_z = np.zeros_like(z)
        r_z[:, 3 * H:] = r_ig                 # i ⊙ g: all to g; the gates get nothing
        r_in = inp * ((r_z / _stab(z, eps)) @ p["w"].T)
        relevance[:, t] = r_in[:, :D]
        r_h, r_c = r_in[:, D:], r_fc          # f ⊙ c': all to c'
    return relevance


@pytest.mark.parametrize("eps", [1e-3, 0.1])
def test_lstm_signal_take_all_matches_oracle(eps):
    p, x = _lstm_params(), _x()
    got = ja.attribute(lstm, p, x, method=ja.LRP(ja.composites.lstm_signal_take_all(eps)))
    want = lstm_signal_take_all_oracle(p, x, eps)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    segs = segment(trace(lstm, p, x))
    assert [s.gates for s in segs if s.kind == "bilinear"] == [(True, False)] * 3


def test_signal_take_all_refuses_a_product_without_one_gate():
    fn = lambda p, x: (x @ p["wx"]) * jnp.tanh(x @ p["wx"]) @ p["v"]
    p, x = _params(), _x()[:, 0]
    method = ja.LRP(ja.composites.Composite((("bilinear", ja.rules.SignalTakeAll()),))
                    + ja.composites.lrp(ja.rules.Epsilon()))
    with pytest.raises(ValueError, match="0 gate factors"):
        ja.attribute(fn, p, x, method=method)
    # the preset leaves such a product to the uniform rule
    rows = ja.engine.audit(fn, p, x, ja.LRP(ja.composites.lstm_signal_take_all()))
    assert [r.rule.split("(")[0] for r in rows if r.kind == "bilinear"] == ["Uniform"]


def test_nnx_gru_rule_based_methods():
    """``nnx.GRUCell`` under ``jax.lax.scan`` (the zoo's NNX GRU): DeepLIFT sums to delta, LRP-0
    conserves up to what the biases absorb, and the audit names the cell's layers."""
    (entry,) = Z.zoo(jnp.float64, ["gru_nnx"])
    r = ja.attribute(entry.fn, entry.params, entry.x, method=ja.DeepLIFT())
    np.testing.assert_allclose(np.asarray(r).sum((1, 2)), _delta(entry.fn, entry.params, entry.x),
                               **TOL)
    rows = ja.engine.audit(entry.fn, entry.params, entry.x, ja.LRP(ja.composites.lstm_signal_take_all()))
    assert {r.rule for r in rows if r.kind == "bilinear"} == {"SignalTakeAll()"}
    assert sum(r.kind == "dense" and "." in str(r.node) for r in rows) >= 3  # in the body
