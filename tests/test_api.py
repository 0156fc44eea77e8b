"""ja.attribute / ja.explain: the contract and clear errors for bad input."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja


def mlp(params, x):
    return jax.nn.relu(x.reshape(x.shape[0], -1) @ params["w1"]) @ params["w2"]


@pytest.fixture
def setup():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"w1": jax.random.normal(k1, (6, 5)), "w2": jax.random.normal(k2, (5, 3))}
    x = jax.random.normal(k3, (4, 2, 3))
    return params, x


def test_shape_and_default_target_is_prediction(setup):
    params, x = setup
    r_none = ja.attribute(mlp, params, x)
    r_pred = ja.attribute(mlp, params, x, target=jnp.argmax(mlp(params, x), -1))
    assert r_none.shape == x.shape and r_none.dtype == x.dtype
    np.testing.assert_allclose(r_none, r_pred)


def test_scalar_target_broadcasts(setup):
    params, x = setup
    np.testing.assert_allclose(ja.attribute(mlp, params, x, target=1),
                               ja.attribute(mlp, params, x, target=jnp.ones(4, int)))


def test_explain_is_jitted_once_per_shape(setup):
    params, x = setup
    fn = ja.explain(mlp, ja.GradientXInput())
    assert fn is ja.explain(mlp, ja.GradientXInput())  # cached: methods are hashable values
    np.testing.assert_allclose(fn(params, x), ja.attribute(mlp, params, x, method=ja.GradientXInput()))


@pytest.mark.parametrize("bad, err, match", [
    (lambda x: x.astype(jnp.int32), TypeError, "floating-point"),
    (lambda x: x[:0], ValueError, "empty batch"),
    (lambda x: x.at[0, 0, 0].set(jnp.nan), ValueError, "NaN or Inf"),
    (lambda x: x.at[1, 0, 0].set(jnp.inf), ValueError, "NaN or Inf"),
    (lambda x: x[:, :, :2], ValueError, "does x match what the model expects"),
    (lambda x: np.asarray(x).tolist(), TypeError, "must be an array"),
])
def test_bad_x(setup, bad, err, match):
    params, x = setup
    with pytest.raises(err, match=match):
        ja.attribute(mlp, params, bad(x))


@pytest.mark.parametrize("target, err, match", [
    (jnp.array([0, 1, 2, 3]), ValueError, "out of range"),
    (jnp.array([0, -1, 0, 0]), ValueError, "out of range"),
    (jnp.array([0, 1]), ValueError, "shape"),
    (jnp.array([0.0, 1.0, 1.0, 0.0]), TypeError, "integer"),
])
def test_bad_target(setup, target, err, match):
    params, x = setup
    with pytest.raises(err, match=match):
        ja.attribute(mlp, params, x, target=target)


@pytest.mark.parametrize("fn", [
    lambda p, x: mlp(p, x)[:, 0],          # (batch,)
    lambda p, x: mlp(p, x)[None],          # (1, batch, classes)
    lambda p, x: mlp(p, x)[:2],            # wrong batch
])
def test_output_must_be_batch_by_classes(setup, fn):
    params, x = setup
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        ja.attribute(fn, params, x)


def test_method_must_be_a_method(setup):
    params, x = setup
    with pytest.raises(TypeError, match="jaxattr method"):
        ja.attribute(mlp, params, x, method="gradient")
    with pytest.raises(TypeError, match="rule"):
        ja.LRP("epsilon")


def test_rule_on_wrong_segment_kind_is_refused(setup):
    params, x = setup
    comp = ja.composites.Composite((("activation", ja.rules.ZPlus()),))
    with pytest.raises(ValueError, match="cannot be applied"):
        ja.attribute(mlp, params, x, method=ja.LRP(comp))


@pytest.mark.parametrize("make", [
    lambda: ja.rules.AlphaBeta(1.0, 1.0),
    lambda: ja.rules.AlphaBeta(-1.0, -2.0),
    lambda: ja.IntegratedGradients(steps=0),
    lambda: ja.IntegratedGradients(rule="simpson"),
    lambda: ja.SmoothGrad(samples=0),
    lambda: ja.DeepTaylor(low=0.0),
    lambda: ja.DeepLIFT(rule="linear"),
])
def test_bad_method_parameters(make):
    with pytest.raises(ValueError):
        make()


def test_deeplift_reference_of_wrong_shape(setup):
    params, x = setup
    with pytest.raises(ValueError, match="does not broadcast"):
        ja.attribute(mlp, params, x, method=ja.DeepLIFT(reference=jnp.zeros((5, 5))))


def test_smoothgrad_is_deterministic_given_key(setup):
    params, x = setup
    m = ja.SmoothGrad(samples=3, sigma=0.2)
    a = ja.attribute(mlp, params, x, method=m, key=jax.random.key(3))
    b = ja.attribute(mlp, params, x, method=m, key=jax.random.key(3))
    c = ja.attribute(mlp, params, x, method=m, key=jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_audit_reports_every_equation(setup):
    params, x = setup
    rows = ja.engine.audit(mlp, params, x, ja.LRP(ja.composites.epsilon_plus_flat()))
    by_kind = {r.kind: r.rule for r in rows if r.kind not in ("constant", "plumbing")}
    assert by_kind["dense"].startswith("Flat") or by_kind["dense"].startswith("Epsilon")
    assert by_kind["activation"] == "Pass()"
    text = ja.engine.format_audit(rows)
    assert "primitive" in text and "dot_general" in text


# --- issue #22: silent wrong answers and crashes of the api; issue #19: NNX models, call cost

def linear(p, x):
    return x.reshape(x.shape[0], -1) @ p


def test_class_count_is_keyed_by_params_too(setup):
    """Same apply_fn and x's shape, params of another output width: the class count (and the
    target check) follows the params, in either order."""
    _, x = setup
    wide, narrow = jnp.ones((6, 5)), jnp.ones((6, 2))
    fn = ja.explain(linear, ja.Gradient())
    fn(narrow, x, target=1)
    np.testing.assert_allclose(fn(wide, x, target=4), jnp.ones_like(x))  # was rejected as out of range
    fn2 = ja.explain(lambda p, x: linear(p, x), ja.Gradient())
    fn2(wide, x, target=4)
    with pytest.raises(ValueError, match="out of range.*2 classes"):  # was all zeros
        fn2(narrow, x, target=4)


def test_attribute_inside_jit_with_closed_over_inputs(setup):
    params, x = setup
    target = jnp.array([0, 1, 2, 0])
    want = ja.attribute(mlp, params, x, target)
    np.testing.assert_allclose(jax.jit(lambda p: ja.attribute(mlp, p, x, target))(params), want,
                               rtol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda: ja.attribute(mlp, params, x, target))(), want,
                               rtol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda t: ja.attribute(mlp, params, x, t))(target), want,
                               rtol=1e-5)
    # explanation-regularised training: jit(grad(...)) w.r.t. the params, x and target closed over
    loss = lambda p: jnp.sum(ja.attribute(mlp, p, x, target, method=ja.GradientXInput()) ** 2)
    g = jax.jit(jax.grad(loss))(params)
    np.testing.assert_allclose(g["w1"], jax.grad(loss)(params)["w1"], rtol=1e-4)
    assert np.abs(np.asarray(g["w1"])).sum() > 0


def test_value_checks_inside_a_trace_are_left_out_by_default(setup):
    """Without checks_in_traces a user's jit gets no effect (jax's C++ dispatch stays on)."""
    params, x = setup
    # a fresh function per trace: jax caches the trace of a function it has seen
    fn = lambda: (lambda x, t: ja.attribute(mlp, params, x, t))
    assert not jax.make_jaxpr(fn())(x, 0).effects
    assert jax.jit(fn())(x.at[0, 0, 0].set(jnp.nan), 0).shape == x.shape  # no crash in the trace
    with ja.checks_in_traces():
        assert jax.make_jaxpr(fn())(x, 0).effects
    assert not jax.make_jaxpr(fn())(x, 0).effects  # the context is left


def test_value_checks_inside_a_trace_are_checkify_checks(setup):
    from jax.experimental import checkify
    params, x = setup
    fn = jax.jit(lambda x, t: ja.attribute(mlp, params, x, t))
    with ja.checks_in_traces():
        assert fn(x.at[0, 0, 0].set(jnp.nan), 0).shape == x.shape  # no crash in the trace
        checked = checkify.checkify(fn, errors=checkify.user_checks)
        err, _ = checked(x.at[0, 0, 0].set(jnp.nan), 0)
        assert "NaN or Inf" in err.get()
        err, _ = checked(x, 7)
        assert "target out of range" in err.get()
        err, _ = checked(x, 1)
        assert err.get() is None


def test_target_as_python_int_list_and_numpy(setup):
    params, x = setup
    want = ja.attribute(mlp, params, x, target=jnp.array([2, 0, 1, 2]))
    np.testing.assert_allclose(ja.attribute(mlp, params, x, target=[2, 0, 1, 2]), want)
    np.testing.assert_allclose(ja.attribute(mlp, params, x, target=np.array([2, 0, 1, 2])), want)
    np.testing.assert_allclose(ja.attribute(mlp, params, x, target=2)[0], want[0])
    with pytest.raises(ValueError, match=r"out of range: got class indices \[3, 3, 3, 3\]"):
        ja.attribute(mlp, params, x, target=3)


def _counting(traces):
    def f(p, x):
        traces.append(1)
        return mlp(p, x)
    return f


@pytest.mark.parametrize("method, name", [(ja.DeepLIFT(), "reference"),
                                          (ja.IntegratedGradients(steps=4), "baseline")])
def test_reference_or_baseline_as_data_does_not_recompile(setup, method, name):
    params, x = setup
    traces = []
    f = _counting(traces)
    refs = [jax.random.normal(jax.random.key(i), x.shape[1:]) for i in range(3)]
    fn = ja.explain(f, method)
    first = fn(params, x, 1, **{name: refs[0]})
    n = len(traces)
    second = fn(params, x, 1, **{name: refs[1]})
    assert len(traces) == n  # traced data: the compiled program is reused
    # the array in the method itself: the same (`attribute` with a new array each call)
    for ref in refs[1:]:
        r = ja.attribute(f, params, x, 1, method=dataclasses.replace(method, **{name: ref}))
    n = len(traces)
    r = ja.attribute(f, params, x, 1, method=dataclasses.replace(method, **{name: refs[0] + 1}))
    assert len(traces) == n
    np.testing.assert_allclose(
        r, ja.attribute(mlp, params, x, 1, method=dataclasses.replace(method, **{name: refs[0] + 1})),
        rtol=1e-6)
    # same numbers as the array given in the method (old behaviour)
    np.testing.assert_allclose(
        first, ja.attribute(mlp, params, x, 1, method=dataclasses.replace(method, **{name: refs[0]})),
        rtol=1e-6)
    assert not np.allclose(first, second)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fn(params, x, 1, **{name: refs[0].at[0, 0].set(jnp.nan)})
    with pytest.raises(TypeError, match="takes no"):
        fn(params, x, 1, steps=3)
    with pytest.raises(ValueError, match="broadcast"):
        fn(params, x, 1, **{name: jnp.zeros((5, 5))})


def test_data_argument_inside_jit(setup):
    params, x = setup
    fn = ja.explain(mlp, ja.DeepLIFT())
    ref = jnp.full(x.shape[1:], 0.3)
    np.testing.assert_allclose(jax.jit(lambda r: fn(params, x, 0, reference=r))(ref),
                               fn(params, x, 0, reference=ref), rtol=1e-5)


@pytest.mark.parametrize("make, err, match", [
    (lambda: ja.IntegratedGradients(chunk=-1), ValueError, "chunk"),
    (lambda: ja.IntegratedGradients(chunk=0), ValueError, "chunk"),
    (lambda: ja.SmoothGrad(chunk=2.5), ValueError, "chunk"),
    (lambda: ja.IntegratedGradients(chunk="fast"), ValueError, "'auto'"),
    (lambda: ja.SmoothGrad(chunk="auto"), ValueError, "chunk"),
    (lambda: ja.rules.ZBox(low="a"), ValueError, "finite number"),
    (lambda: ja.composites.epsilon_gamma_box(low=[[0.0]], high=1.0), ValueError, "1-D"),
])
def test_bad_method_parameters_are_named(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_integrated_gradients_auto_chunk_per_backend(setup, monkeypatch):
    """``chunk="auto"`` (the default): on CPU ⌊IG_CHUNK_IMAGES["cpu"] / batch⌋ nodes per vmapped
    gradient (at least 1, at most ``steps``), 8 nodes on backends without a table entry; the
    result is the same whatever the chunk (float64, 1e-12)."""
    from jaxattr import methods as M

    images = M.IG_CHUNK_IMAGES["cpu"]
    assert M.ig_chunk(32, images, "cpu") == 1
    assert M.ig_chunk(32, images // 4, "cpu") == 4
    assert M.ig_chunk(32, 1, "cpu") == 32 and M.ig_chunk(4, 1, "cpu") == 4
    assert M.ig_chunk(32, 1000 * images, "cpu") == 1
    assert M.ig_chunk(32, 128, "gpu") == M.IG_CHUNK_NODES_ELSEWHERE == 8
    assert ja.IntegratedGradients().chunk == "auto"
    assert ja.IntegratedGradients(steps=8).resolved_chunk(images // 2, "cpu") == 2
    assert ja.IntegratedGradients(chunk=3).resolved_chunk(1, "cpu") == 3

    params, x = setup
    seen = []
    real = M._chunked_vmap
    monkeypatch.setattr(M, "_chunked_vmap", lambda fn, xs, chunk: seen.append(chunk) or real(fn, xs, chunk))
    monkeypatch.setitem(M.IG_CHUNK_IMAGES, jax.default_backend(), 2 * x.shape[0])
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        auto = ja.attribute(mlp, p64, x64, 0, method=ja.IntegratedGradients(steps=5))
        whole = ja.attribute(mlp, p64, x64, 0, method=ja.IntegratedGradients(steps=5, chunk=None))
    assert seen[0] == 2 and seen[1] is None
    np.testing.assert_allclose(auto, whole, rtol=1e-12, atol=1e-15)


def test_smoothgrad_key_must_be_a_prng_key(setup):
    params, x = setup
    with pytest.raises(TypeError, match=r"PRNG key, e.g. jax.random.key\(0\), got int 0"):
        ja.attribute(mlp, params, x, method=ja.SmoothGrad(samples=2), key=0)
    raw = jax.random.PRNGKey(1)  # legacy uint32 keys are keys too
    assert ja.attribute(mlp, params, x, method=ja.SmoothGrad(samples=2), key=raw).shape == x.shape


def test_per_channel_box_bounds_of_wrong_length():
    x = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))
    conv = lambda p, x: jax.lax.conv_general_dilated(
        x, p, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum((1, 2))
    for method in (ja.DeepTaylor(low=(0.0, 0.0), high=(1.0, 1.0)),
                   ja.LRP(ja.composites.epsilon_gamma_box((0.0, 0.0), (1.0, 1.0)))):
        with pytest.raises(ValueError, match="ZBox low has 2 per-channel values.*3 channels"):
            ja.attribute(conv, w, x, method=method)
    ok = ja.attribute(conv, w, x, method=ja.DeepTaylor(low=np.zeros(3), high=np.ones(3)))
    assert ok.shape == x.shape


def test_integer_input_error_points_to_embeddings(setup):
    params, x = setup
    with pytest.raises(TypeError, match="embeddings"):
        ja.attribute(mlp, params, x.astype(jnp.int32))


class _NNXNet:
    """An NNX model (built lazily: flax.nnx imported only by the test)."""

    @staticmethod
    def make():
        from flax import nnx

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.l1 = nnx.Linear(6, 5, rngs=rngs)
                self.bn = nnx.BatchNorm(5, use_running_average=True, rngs=rngs)
                self.l2 = nnx.Linear(5, 3, rngs=rngs)
                self.calls = nnx.Variable(jnp.zeros((), jnp.int32))  # written by every call

            def __call__(self, x):
                self.calls[...] += 1
                return self.l2(jax.nn.relu(self.bn(self.l1(x.reshape(x.shape[0], -1)))))

        return Net(nnx.Rngs(0))


@pytest.mark.parametrize("method", [ja.Gradient(), ja.LRP(), ja.DeepLIFT(reference=0.1)])
def test_nnx_model_as_it_is(setup, method):
    from flax import nnx
    _, x = setup
    model = _NNXNet.make()
    before = jax.tree.map(np.array, nnx.state(model))
    r = ja.attribute(model, None, x, method=method)
    # the same model in plain jax, on the split state
    def plain(s, x):
        h = x.reshape(x.shape[0], -1) @ s["l1"]["kernel"][...] + s["l1"]["bias"][...]
        bn = s["bn"]
        h = (h - bn["mean"][...]) / jnp.sqrt(bn["var"][...] + 1e-5) * bn["scale"][...] + bn["bias"][...]
        return jax.nn.relu(h) @ s["l2"]["kernel"][...] + s["l2"]["bias"][...]

    graphdef, state = nnx.split(model)
    want = ja.attribute(plain, state, x, method=method)
    np.testing.assert_allclose(r, want, rtol=1e-6)
    after = jax.tree.map(np.array, nnx.state(model))
    assert jax.tree.all(jax.tree.map(np.array_equal, before, after))  # not mutated
    fn = ja.explain(model, method)
    np.testing.assert_allclose(fn(None, x), want, rtol=1e-6)
    np.testing.assert_allclose(fn(nnx.state(model), x), want, rtol=1e-6)


def _cosine(p, x):
    """Features divided by their norm: undefined (0/0) at the zero input."""
    h = x @ p
    return (h / jnp.linalg.norm(h, axis=-1, keepdims=True)) @ jnp.ones((3, 2))


def test_a_non_finite_attribution_is_an_error_that_says_where():
    """An attribution that comes out NaN/Inf raises instead of returning it: the model's output
    at x (with the examples), or at the reference/baseline the method evaluates."""
    from jax.experimental import checkify
    p = jnp.ones((4, 3)) + 0.1 * jnp.arange(12.0).reshape(4, 3)
    x = jax.random.normal(jax.random.key(0), (3, 4))
    assert np.isnan(np.asarray(_cosine(p, 0 * x))).all()
    with pytest.raises(ValueError, match="not finite at the reference .*Pass another reference"):
        ja.attribute(_cosine, p, x, method=ja.DeepLIFT())
    assert np.isfinite(np.asarray(ja.attribute(_cosine, p, x, method=ja.DeepLIFT(0.5)))).all()
    roots = lambda p, x: jnp.sqrt(x @ p)[:, :2]
    with pytest.raises(ValueError, match=r"target class at x is not finite .*examples \[0"):
        ja.attribute(roots, p, x.at[0].set(-jnp.abs(x[0])), 0)
    # inside a user's trace: a checkify check when asked for
    fn = jax.jit(lambda x: ja.attribute(_cosine, p, x, method=ja.DeepLIFT()))
    with ja.checks_in_traces():
        err, _ = checkify.checkify(fn, errors=checkify.user_checks)(x)
    assert "not finite" in err.get()


_LOG_METHODS = [ja.Gradient(), ja.GradientXInput(), ja.IntegratedGradients(steps=4),
                ja.SmoothGrad(samples=2), ja.GuidedBackprop(), ja.LRP(ja.composites.attn_lrp(0.1)),
                ja.DeepLIFT(0.5), ja.DeepLIFT(jnp.array([0.0, 0.5]), average_references=True)]


@pytest.mark.parametrize("method", _LOG_METHODS, ids=lambda m: type(m).__name__)
def test_a_nan_target_logit_is_an_error_even_where_the_gradient_is_finite(method):
    """``log`` of a negative number is NaN, its derivative ``1/h`` is not: the gradient family
    came back finite for a model whose output was NaN. The target's logit is checked too, in the
    same program; another class's NaN logit does not matter."""
    w = jnp.array([[1.0, 0.5], [0.3, -1.0], [0.2, 0.4]])
    model = lambda p, x: jnp.stack([jnp.log(x @ p[:, 0] + 2.0), x @ p[:, 1]], -1)
    x = jnp.array([[1.0, 0.5, 0.2], [-3.0, 0.1, 0.3]])  # example 1: log of a negative number
    assert np.isnan(np.asarray(model(w, x)))[1, 0]
    assert np.isfinite(np.asarray(jax.grad(lambda x: model(w, x)[1, 0])(x))).all()
    with pytest.raises(ValueError, match=r"target class at x is not finite .*examples \[1\]"):
        ja.attribute(model, w, x, 0, method=method)
    if isinstance(method, ja.DeepLIFT):  # its secant at log's NaN reaches x through 0 · NaN
        with pytest.raises(ValueError, match=r"for another class is, for examples \[1\]"):
            ja.attribute(model, w, x, 1, method=method)
    else:
        assert np.isfinite(np.asarray(ja.attribute(model, w, x, 1, method=method))).all()


def _degenerate_at_zero(p, x, eps=1e-6):
    """A LayerNorm after a bias-free layer: its input is constant (0) at the zero baseline, so
    the normalised value jumps to full size within √ε/σ of it and IG's nodes miss the jump."""
    h = x @ p
    h = (h - h.mean(-1, keepdims=True)) * jax.lax.rsqrt(h.var(-1, keepdims=True) + eps)
    return h @ jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)


def test_integrated_gradients_warns_where_it_misses_completeness():
    import warnings
    p = jax.random.normal(jax.random.key(1), (5, 4))
    x = jax.random.normal(jax.random.key(2), (3, 5))
    fn = ja.explain(_degenerate_at_zero, ja.IntegratedGradients(steps=8))
    with pytest.warns(ja.CompletenessWarning, match=r"examples \[0, 1, 2\] miss completeness "
                                                    r".*% of the change.*ja\.DeepLIFT"):
        r = fn(p, x, 0)
    delta = _degenerate_at_zero(p, x)[:, 0] - _degenerate_at_zero(p, 0 * x)[:, 0]
    assert np.all(np.abs(r.sum(1) - delta) > 0.1 * np.abs(delta))  # the warning is right
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(p, x, 0)  # once per explained function: a loop over batches is not flooded
        # from a baseline where the model is not degenerate (with 8 nodes, example 2 still
        # missed by 18 % from 0.5: the path passes near a constant LayerNorm input), on a
        # smooth model, or turned off: no warning
        ja.attribute(_degenerate_at_zero, p, x, 0, ja.IntegratedGradients(32, baseline=0.5))
        ja.attribute(lambda p, x: jnp.tanh(x @ p), p, x, 0, ja.IntegratedGradients(steps=8))
        ja.attribute(_degenerate_at_zero, p, x, 0,
                     ja.IntegratedGradients(steps=8, completeness_warning=None))
        ja.explain(_degenerate_at_zero, ja.IntegratedGradients(32))(p, x, 0, baseline=0.5)
        # inside a user's trace there is no host to warn: the attribution comes back as it is
        jax.jit(lambda x: ja.attribute(_degenerate_at_zero, p, x, 0,
                                       ja.IntegratedGradients(steps=8)))(x)
    with pytest.raises(ValueError, match="completeness_warning must be a positive"):
        ja.IntegratedGradients(completeness_warning=0.0)


def test_deeplift_contributions_that_miss_delta_are_an_error():
    """DeepLIFT sums to delta exactly, so a gap (checked in the same program; the output at the
    reference comes with its evaluation) is an error, not an answer: float32 cancellation of
    the paper's symmetric split at a LayerNorm whose input is constant at the reference, and a
    reference that takes another ``cond`` branch than x."""
    p = jax.random.normal(jax.random.key(1), (5, 4))
    x = jax.random.normal(jax.random.key(2), (3, 5))
    f = functools.partial(_degenerate_at_zero, eps=1e-10)  # the scale rsqrt(ε) = 1e5 at 0
    with pytest.raises(ValueError, match=r"do not sum to f_t\(x\) − f_t\(reference\).* examples "
                                         r"\[.*normalise='scale_first'"):
        ja.attribute(f, p, x, 0, ja.DeepLIFT(normalise="symmetric"))
    ja.attribute(f, p, x, 0, ja.DeepLIFT(normalise="symmetric", delta_tolerance=None))  # asked
    c = ja.attribute(f, p, x, 0, ja.DeepLIFT())  # the default split is exact
    delta = f(p, x)[:, 0] - f(p, 0 * x)[:, 0]
    np.testing.assert_allclose(c.sum(1), delta, rtol=1e-4)

    def branches(p, x):  # one example: x takes the relu branch, the zero reference the other
        h = x @ p
        return jax.lax.cond(x.sum() > 0, jax.nn.relu, lambda h: 2.0 * h + 1.0, h)

    xb = jnp.abs(x[:1])
    with pytest.raises(ValueError, match=r"do not sum to .*examples \[0\]"):
        ja.attribute(branches, p, xb, 1, ja.DeepLIFT())
    c = ja.attribute(branches, p, xb, 1, ja.DeepLIFT(0.01))  # the same branch: exact
    np.testing.assert_allclose(c.sum(), branches(p, xb)[0, 1] - branches(p, 0 * xb + 0.01)[0, 1],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="delta_tolerance must be a positive"):
        ja.DeepLIFT(delta_tolerance=0.0)
