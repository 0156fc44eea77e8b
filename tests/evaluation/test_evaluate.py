"""The tidy table of AOPC and drops per image × method."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.evaluation import aopc, confidence_drop, evaluate, perturbation_curve


def test_evaluate_table_matches_the_separate_functions(h, images, cnn_params):
    relevance = h.integer_relevance(30, images.shape)
    calls = []

    def gradient(params, x, target):
        calls.append(np.asarray(target))
        grad = jax.grad(lambda x: jnp.sum(h.cnn_apply(params, x)[jnp.arange(x.shape[0]), target]))(x)
        return grad

    settings = dict(region=1, perturbation="mean", key=jax.random.key(5))
    fractions = (0.1, 0.5, 0.75)
    df, curves = evaluate(
        h.cnn_apply, cnn_params, images, None, {"given": relevance, "gradient": gradient},
        steps=7, fractions=fractions, index=np.arange(10, 16), return_curves=True, progress=False, **settings,
    )
    target = np.asarray(jnp.argmax(h.cnn_apply(cnn_params, images), -1))
    assert list(df.columns) == ["method", "index", "target", "aopc", "drop_10", "drop_50", "drop_75"]
    assert len(df) == 6 * 3 and list(df["method"].unique()) == ["given", "gradient", "random"]
    np.testing.assert_array_equal(df["index"].to_numpy()[:6], np.arange(10, 16))
    np.testing.assert_array_equal(df["target"].to_numpy()[:6], target)
    np.testing.assert_array_equal(calls[0], target)  # the callable received the resolved target

    for name, rel, order in [("given", relevance, "morf"), ("gradient", gradient(cnn_params, images, target), "morf"),
                             ("random", jnp.zeros_like(images), "random")]:
        rows = df[df["method"] == name]
        curve = perturbation_curve(
            h.cnn_apply, cnn_params, images, None, rel, steps=7, order=order, progress=False, **settings
        )
        np.testing.assert_allclose(rows["aopc"], aopc(curve), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(curves[name], curve, rtol=1e-6, atol=1e-7)
        drops = confidence_drop(
            h.cnn_apply, cnn_params, images, None, rel, fractions=fractions, order=order, progress=False, **settings
        )
        np.testing.assert_allclose(rows[["drop_10", "drop_50", "drop_75"]], drops, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::jaxattr.evaluation.regions.RepeatedStepsWarning")  # 63 pixels, 10 steps
def test_default_columns_are_the_papers_drops(h, images, cnn_params):
    df = evaluate(h.cnn_apply, cnn_params, images, jnp.zeros(6, jnp.int32), {}, perturbation="zeros", progress=False)
    assert list(df.columns) == [
        "method", "index", "target", "aopc", "drop_5", "drop_10", "drop_20", "drop_30", "drop_40", "drop_50", "drop_75",
    ]
    assert (df["method"] == "random").all() and (df["target"] == 0).all()
    assert np.isfinite(df[["aopc", "drop_5", "drop_75"]].to_numpy()).all()


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("jaxattr.evaluation.aopc", "jaxattr.evaluation.evaluate"):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, name
