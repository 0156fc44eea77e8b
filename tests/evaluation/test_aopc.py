"""Perturbation curves, AOPC and confidence drop against a numpy reference and closed forms."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.evaluation import aopc, confidence_drop, perturbation_curve, scores_at_counts


@pytest.mark.parametrize(
    "region, steps, perturbation, score, order",
    [
        (1, 9, "zeros", "probability", "morf"),
        (3, 5, "mean", "logit", "morf"),  # 9×7 with r=3: edge regions 3×1
        (4, 6, "zeros", "probability", "lerf"),  # 9×7 with r=4: 3×2 grid, edge regions 1×4, 4×3, 1×3
        (2, 20, "mean", "accuracy", "morf"),  # n=20: one region per step
    ],
)
def test_curve_matches_numpy_reference(h, images, cnn_params, region, steps, perturbation, score, order):
    relevance = h.integer_relevance(5, images.shape)
    got = perturbation_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=region, steps=steps, order=order,
        perturbation=perturbation, score=score,
    )
    n = -(-9 // region) * -(-7 // region)
    want = h.reference_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=region, counts=h.reference_steps(n, steps),
        order=order, perturbation=perturbation, score=score,
    )
    assert got.shape == (6, steps + 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_explicit_target_is_scored(h, images, cnn_params):
    relevance = h.integer_relevance(6, images.shape)
    target = jnp.array([0, 1, 2, 3, 4, 0])
    got = perturbation_curve(h.cnn_apply, cnn_params, images, target, relevance, region=3, steps=3, perturbation="zeros", score="logit")
    want = h.reference_curve(
        h.cnn_apply, cnn_params, images, target, relevance, region=3, counts=h.reference_steps(9, 3),
        order="morf", perturbation="zeros", score="logit",
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 0], h.cnn_apply(cnn_params, images)[jnp.arange(6), target], rtol=1e-6)


def _linear_case(h, shape=(7, 5, 3), batch=3):
    x = h.uniform(7, (batch,) + shape)
    params = h.linear_params(8, shape)
    target = jnp.arange(batch) % 4
    contributions = x * params["w"][:, target].T.reshape((batch,) + shape)  # exact: logit = Σ contributions + b
    return x, params, target, contributions


def test_morf_on_linear_model_gives_the_analytic_curve(h):
    """With zeros and the logit score, f(x_k) = f(x) − Σ(contributions of the top c_k regions)."""
    x, params, target, contributions = _linear_case(h)
    region, steps = 2, 4  # 7×5 -> 4×3 = 12 regions, 3 per step
    curve = np.asarray(perturbation_curve(
        h.linear_apply, params, x, target, contributions, region=region, steps=steps, perturbation="zeros", score="logit"
    ))
    c = np.asarray(contributions, np.float64).sum(-1)
    c = np.pad(c, ((0, 0), (0, 1), (0, 1))).reshape(3, 4, 2, 3, 2).sum(axis=(2, 4)).reshape(3, 12)
    top_sums = np.concatenate([np.zeros((3, 1)), np.cumsum(-np.sort(-c, axis=1), axis=1)], axis=1)[:, [0, 3, 6, 9, 12]]
    logit = np.asarray(h.linear_apply(params, x))[np.arange(3), target]
    np.testing.assert_allclose(curve, logit[:, None] - top_sums, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(curve[:, -1], np.asarray(params["b"])[target], atol=1e-5)  # all removed: the bias
    assert np.all(np.diff(curve[:, : 1 + int((c > 0).sum(1).min() // 3)], axis=1) <= 1e-5)  # falls while removing positives


def test_lerf_is_above_morf_and_aopc_orders_them(h):
    x, params, target, contributions = _linear_case(h)
    kwargs = dict(region=1, steps=7, perturbation="zeros", score="logit")
    morf = perturbation_curve(h.linear_apply, params, x, target, contributions, order="morf", **kwargs)
    lerf = perturbation_curve(h.linear_apply, params, x, target, contributions, order="lerf", **kwargs)
    rand = perturbation_curve(h.linear_apply, params, x, target, contributions, order="random", **kwargs)
    np.testing.assert_array_equal(morf[:, [0, -1]], lerf[:, [0, -1]])  # same start, same end (all removed)
    assert np.all(np.asarray(morf) <= np.asarray(lerf) + 1e-4)  # top-c sum ≥ bottom-c sum for every c
    assert np.all(aopc(morf) > aopc(rand)) and np.all(aopc(rand) > aopc(lerf))


def test_random_order_averaged_over_keys_falls_linearly(h):
    """E[f(x_k)] = f(x) − (c_k / n) Σ contributions for a random subset of c_k of n regions."""
    x, params, target, contributions = _linear_case(h, shape=(4, 4, 3), batch=1)
    copies = 512  # each copy of the image gets its own key, hence its own random order
    xs = jnp.repeat(x, copies, axis=0)
    curve = np.asarray(perturbation_curve(
        h.linear_apply, params, xs, jnp.repeat(target, copies), jnp.repeat(contributions, copies, axis=0),
        region=1, steps=4, order="random", perturbation="zeros", score="logit", key=jax.random.key(42),
    ))
    logit = float(h.linear_apply(params, x)[0, target[0]])
    expected = logit - np.array([0, 4, 8, 12, 16]) / 16 * float(np.asarray(contributions, np.float64).sum())
    error = np.abs(curve.mean(0) - expected)
    assert np.all(error <= 4 * curve.std(0) / np.sqrt(copies) + 1e-4), (curve.mean(0), expected)
    assert curve[:, 2].std() > 0.01  # the orders really differ between copies


def test_deterministic_given_key_and_key_none_is_key_0(h, images, cnn_params):
    relevance = h.integer_relevance(9, images.shape)
    run = lambda key, order="random": perturbation_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=3, steps=9, order=order, key=key
    )
    np.testing.assert_array_equal(run(jax.random.key(3)), run(jax.random.key(3)))
    np.testing.assert_array_equal(run(None), run(jax.random.key(0)))
    np.testing.assert_array_equal(run(jax.random.PRNGKey(3)), run(jax.random.key(3)))  # raw uint32 keys too
    assert not np.array_equal(run(jax.random.key(3)), run(jax.random.key(4)))


def _integer_case(h, images):
    """Integer images, weights, relevance and (keyed, random) replacement values: every sum
    the model computes is exact in float32, so results cannot depend on the batch size the
    model is called with and chunked/sharded runs must equal the unchunked one bit for bit."""
    x = jnp.floor(images * 5)
    params = {"w": jnp.round(h.linear_params(20, x.shape[1:])["w"]), "b": jnp.zeros(4)}
    relevance = h.integer_relevance(21, x.shape)
    return x, params, relevance


def random_integers(key, image):
    return jnp.floor(jax.random.uniform(key, image.shape) * 5)


@pytest.mark.parametrize("chunk_size", [4, 18])  # image blocks of 4 and 2; count blocks of 3, 3 and 2
def test_chunked_equals_unchunked_exactly(h, images, chunk_size, capsys, order="random"):
    x, params, relevance = _integer_case(h, images)
    run = lambda chunk: perturbation_curve(
        h.linear_apply, params, x, None, relevance, region=2, steps=7, order=order, perturbation=random_integers,
        score="logit", chunk_size=chunk,
    )
    np.testing.assert_array_equal(run(chunk_size), run(None))
    blocks = {4: 2 * 8, 18: 3}[chunk_size]  # 2 image blocks × 8 counts; 1 image block × 3 count blocks
    assert f"{blocks}/{blocks}" in capsys.readouterr().err  # the tqdm bar over chunks


@pytest.mark.parametrize("chunk_size", [5])
def test_chunked_equals_unchunked_on_a_cnn(h, images, cnn_params, chunk_size):
    """XLA's CPU kernels round differently for different batch sizes (1 ulp; even
    ``jnp.sum(x * w)`` does), so a float CNN agrees to float32 precision, not bitwise."""
    relevance = h.integer_relevance(10, images.shape)
    run = lambda chunk: perturbation_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=2, steps=7, perturbation="zeros",
        chunk_size=chunk, progress=False,
    )
    np.testing.assert_allclose(run(chunk_size), run(None), rtol=1e-6, atol=1e-7)


def test_sharded_equals_single_device(h, images, cnn_params):
    assert len(jax.devices()) == 4, "tests/conftest.py asks XLA for 4 host devices"
    x, params, relevance = _integer_case(h, images)
    run = lambda **kw: perturbation_curve(
        h.linear_apply, params, x, None, relevance, region=2, steps=7, order="random", perturbation=random_integers,
        score="logit", progress=False, **kw
    )
    np.testing.assert_array_equal(run(shard=True), run())  # keyed noise and order; batch 6 padded to 8
    run = lambda **kw: perturbation_curve(
        h.linear_apply, params, x, None, relevance, region=2, steps=7, perturbation="zeros", score="logit",
        progress=False, **kw
    )
    single = np.asarray(run())
    np.testing.assert_array_equal(run(shard=True, chunk_size=5), single)  # image blocks of 4 (6 padded to 8)
    np.testing.assert_array_equal(run(devices=jax.devices()[:2], chunk_size=18), single)  # count blocks 3, 3, 2


def test_sharded_program_really_splits_the_batch(h, images, cnn_params, monkeypatch):
    module = importlib.import_module("jaxattr.evaluation.aopc")
    seen = []
    original = module._program

    def spy(apply_fn, params, x, *args):
        seen.append(x.sharding)
        return original(apply_fn, params, x, *args)

    monkeypatch.setattr(module, "_program", spy)
    relevance = h.integer_relevance(11, images.shape)
    run = lambda **kw: perturbation_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=2, steps=5, perturbation="zeros", **kw
    )
    single, sharded = run(), run(shard=True)
    assert len(seen[1].device_set) == 4 and seen[1].spec[0] == "batch"
    np.testing.assert_allclose(sharded, single, rtol=1e-6, atol=1e-7)


def test_aopc_formula():
    curve = jnp.array([[1.0, 0.5, 0.0], [0.2, 0.4, 0.2]])
    np.testing.assert_allclose(aopc(curve), [(0 + 0.5 + 1.0) / 3, (0 - 0.2 + 0) / 3], rtol=1e-6)


def test_confidence_drop_agrees_with_the_curve(h, images, cnn_params):
    relevance = h.integer_relevance(12, images.shape)
    # 9×7 = 63 pixels: fractions 1/7·k·... pick counts that are curve steps: ceil(f·63) = 9, 18, 63
    kwargs = dict(perturbation="zeros", score="logit")
    drops = confidence_drop(h.cnn_apply, cnn_params, images, None, relevance, fractions=(9 / 63, 18 / 63, 1.0), **kwargs)
    curve = perturbation_curve(h.cnn_apply, cnn_params, images, None, relevance, region=1, steps=7, **kwargs)
    assert drops.shape == (6, 3)
    np.testing.assert_allclose(drops, curve[:, :1] - curve[:, [1, 2, 7]], rtol=1e-6, atol=1e-7)


def test_confidence_drop_default_fractions_match_reference(h, images, cnn_params):
    relevance = h.integer_relevance(13, images.shape)
    drops = confidence_drop(h.cnn_apply, cnn_params, images, None, relevance, perturbation="mean")
    counts = [0] + [int(np.ceil(round(f * 63, 9))) for f in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75)]
    ref = h.reference_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=1, counts=counts, order="morf",
        perturbation="mean", score="probability",
    )
    assert drops.shape == (6, 7)
    np.testing.assert_allclose(drops, ref[:, :1] - ref[:, 1:], rtol=1e-5, atol=1e-6)


def test_scores_at_counts_returns_the_resolved_target(h, images, cnn_params):
    relevance = h.integer_relevance(14, images.shape)
    scores, target = scores_at_counts(
        h.cnn_apply, cnn_params, images, None, relevance, [0, 3, 5], region=2, perturbation="zeros"
    )
    np.testing.assert_array_equal(target, jnp.argmax(h.cnn_apply(cnn_params, images), -1))
    assert scores.shape == (6, 3)


def test_accuracy_score_is_one_on_unperturbed_argmax(h, images, cnn_params):
    relevance = h.integer_relevance(15, images.shape)
    curve = perturbation_curve(
        h.cnn_apply, cnn_params, images, None, relevance, region=3, steps=3, perturbation="zeros", score="accuracy"
    )
    np.testing.assert_array_equal(curve[:, 0], np.ones(6))
    assert set(np.unique(curve)) <= {0.0, 1.0}


def test_all_channels_perturbed_when_only_the_last_channel_matters(h):
    """Relevance sits in channel 0, the model reads only channel 2: a region must be
    perturbed in all channels for the score to move (iNNvestigate ≤ 2.0.1 / Quantus bug)."""
    shape = (3, 3, 3)
    w = jnp.zeros(shape + (2,)).at[..., 2, 0].set(1.0).reshape(-1, 2)
    params = {"w": w, "b": jnp.zeros(2)}
    x = jnp.ones((1,) + shape)
    relevance = jnp.zeros_like(x).at[0, 1, 1, 0].set(1.0)
    curve = perturbation_curve(
        h.linear_apply, params, x, jnp.array([0]), relevance, region=1, steps=9, perturbation="zeros", score="logit"
    )
    np.testing.assert_allclose(curve[0], 9.0 - np.arange(10))


def test_block_sizes_bound_memory_and_respect_devices():
    block_sizes = importlib.import_module("jaxattr.evaluation.aopc")._block_sizes
    for batch in (1, 5, 32):
        for counts in (2, 11, 101):
            for chunk in (1, 3, 32, 100, 256, 10**6):
                for devices in (1, 4):
                    padded, images, per = block_sizes(batch, counts, chunk, devices)
                    assert padded % devices == 0 and padded - batch < devices  # pad only for the devices
                    assert images % devices == 0 and images <= padded and 1 <= per <= counts
                    assert images * per <= max(chunk, devices)  # one chunk of model evaluations at most
    assert block_sizes(32, 101, 256, 1) == (32, 32, 8)  # 12 blocks of 8 counts and one of 5


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_composes_with_a_callers_jit(h, chunk_size):
    x, params, target, contributions = _linear_case(h)
    run = lambda params, x, relevance: perturbation_curve(
        h.linear_apply, params, x, target, relevance, region=2, steps=4, perturbation="zeros", score="logit",
        chunk_size=chunk_size, progress=False,
    )
    np.testing.assert_allclose(jax.jit(run)(params, x, contributions), run(params, x, contributions), rtol=1e-6, atol=1e-5)


def test_reduce_is_threaded_through_curve_drop_and_evaluate(h):
    """``reduce="abs_sum"`` ranks regions by Σ|R|: on a linear model with zeros and the logit
    score, f(x_k) = f(x) − Σ(signed contributions of the top c_k regions by Σ|R|);
    ``confidence_drop`` and ``evaluate`` pass it on."""
    from jaxattr.evaluation import evaluate

    x, params, target, contributions = _linear_case(h)
    kwargs = dict(region=2, steps=4, perturbation="zeros", score="logit")
    curve = np.asarray(perturbation_curve(h.linear_apply, params, x, target, contributions, reduce="abs_sum",
                                          **kwargs))
    pool = lambda v: np.pad(v, ((0, 0), (0, 1), (0, 1))).reshape(3, 4, 2, 3, 2).sum(axis=(2, 4)).reshape(3, 12)
    c = np.asarray(contributions, np.float64)
    signed, magnitude = pool(c.sum(-1)), pool(np.abs(c).sum(-1))
    order = np.argsort(-magnitude, axis=1, kind="stable")
    top = np.cumsum(np.take_along_axis(signed, order, axis=1), axis=1)
    top_sums = np.concatenate([np.zeros((3, 1)), top], axis=1)[:, [0, 3, 6, 9, 12]]
    logit = np.asarray(h.linear_apply(params, x))[np.arange(3), target]
    np.testing.assert_allclose(curve, logit[:, None] - top_sums, rtol=1e-5, atol=1e-4)
    signed_curve = np.asarray(perturbation_curve(h.linear_apply, params, x, target, contributions, **kwargs))
    assert np.abs(curve - signed_curve).max() > 1e-3  # the two rankings differ on this case
    drops = confidence_drop(h.linear_apply, params, x, target, contributions, fractions=(0.25,), region=2,
                            perturbation="zeros", score="logit", reduce="abs_sum")
    np.testing.assert_allclose(np.asarray(drops)[:, 0], curve[:, 0] - curve[:, 1], rtol=1e-5, atol=1e-4)
    table = evaluate(h.linear_apply, params, x, target, {"c": contributions}, steps=4, fractions=(0.25,),
                     random_baseline=False, progress=False, reduce="abs_sum", **{k: v for k, v in kwargs.items()
                                                                                if k != "steps"})
    np.testing.assert_allclose(table["aopc"], np.asarray(aopc(curve)), rtol=1e-6)
    with pytest.raises(ValueError, match="reduce must be one of"):
        perturbation_curve(h.linear_apply, params, x, target, contributions, reduce="max", **kwargs)
