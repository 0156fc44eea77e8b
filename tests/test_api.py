"""ja.attribute / ja.explain: the contract and clear errors for bad input."""

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
