"""Region pooling, ranking and step counts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.evaluation import regions


@pytest.mark.parametrize("shape, region", [((8, 8, 3), 4), ((9, 7, 3), 4), ((5, 11, 2), 3), ((4, 4, 1), 1)])
def test_region_scores_sum_channels_and_pixels_with_smaller_edge_regions(shape, region):
    rel = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = np.asarray(regions.region_scores(jnp.asarray(rel), region))
    rows, cols = regions.grid_shape(shape[:2], region)
    want = np.array(
        [[rel[a * region:(a + 1) * region, b * region:(b + 1) * region].sum() for b in range(cols)] for a in range(rows)]
    )
    assert got.shape == (rows, cols) == (-(-shape[0] // region), -(-shape[1] // region))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_ties_are_broken_by_the_flattened_region_index():
    scores = jnp.array([[1.0, 3.0, 3.0], [0.0, 3.0, 1.0]])
    key = jax.random.key(0)
    morf = np.asarray(regions.region_ranks(scores, "morf", key))
    lerf = np.asarray(regions.region_ranks(scores, "lerf", key))
    # morf order: indices 1, 2, 4 (the three 3s in index order), then 0, 5 (the 1s), then 3
    np.testing.assert_array_equal(morf.ravel(), [3, 0, 1, 5, 2, 4])
    # lerf order: 3, then 0, 5, then 1, 2, 4
    np.testing.assert_array_equal(lerf.ravel(), [1, 3, 4, 0, 5, 2])


def test_random_ranks_are_a_permutation_that_depends_on_the_key():
    scores = jnp.zeros((4, 4))
    a = np.asarray(regions.region_ranks(scores, "random", jax.random.key(1)))
    b = np.asarray(regions.region_ranks(scores, "random", jax.random.key(2)))
    assert sorted(a.ravel()) == list(range(16))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, regions.region_ranks(scores, "random", jax.random.key(1)))


def test_pixel_ranks_carry_the_region_rank_and_crop_edges():
    rel = jnp.zeros((5, 5, 1)).at[4, 4, 0].set(10.0)  # the 1×1 corner region of a 3×3 grid is the most relevant
    ranks = np.asarray(regions.pixel_ranks(rel, 2, "morf", jax.random.key(0)))
    assert ranks.shape == (5, 5)
    assert ranks[4, 4] == 0
    # the remaining (tied) regions follow in index order: region (0, 0) -> rank 1
    np.testing.assert_array_equal(ranks[:2, :2], np.ones((2, 2)))
    np.testing.assert_array_equal(ranks[4, :2], [7, 7])


@pytest.mark.parametrize("region", [(3,), (1,), (5,)])
def test_region_scores_of_a_sequence_sum_channels_and_positions(region):
    rel = np.random.default_rng(1).standard_normal((11, 4)).astype(np.float32)
    got = np.asarray(regions.region_scores(jnp.asarray(rel), region))
    r = region[0]
    want = np.array([rel[a * r:(a + 1) * r].sum() for a in range(-(-11 // r))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(regions.region_scores(jnp.asarray(rel), r), want, rtol=1e-5, atol=1e-5)  # int: channels last


def test_region_scores_of_tabular_rows_group_features_without_a_channel_axis():
    row = jnp.arange(7.0)  # (features,): a tuple region names the one region axis
    np.testing.assert_array_equal(regions.region_scores(row, (1,)), np.arange(7.0))
    np.testing.assert_array_equal(regions.region_scores(row, (3,)), [3.0, 12.0, 6.0])
    ranks = np.asarray(regions.pixel_ranks(row, (3,), "morf", jax.random.key(0)))
    np.testing.assert_array_equal(ranks, [2, 2, 2, 0, 0, 0, 1])


def test_rectangular_and_3d_regions():
    rel = np.random.default_rng(2).standard_normal((5, 6, 7, 2)).astype(np.float32)
    got = np.asarray(regions.region_scores(jnp.asarray(rel), (2, 3, 4)))
    want = np.array([[[rel[a * 2:a * 2 + 2, b * 3:b * 3 + 3, c * 4:c * 4 + 4].sum() for c in range(2)]
                      for b in range(2)] for a in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    ranks = np.asarray(regions.pixel_ranks(jnp.asarray(rel), (2, 3, 4), "morf", jax.random.key(0)))
    assert ranks.shape == (5, 6, 7)
    np.testing.assert_array_equal(np.unique(ranks), np.arange(12))
    assert len(np.unique(ranks[4:5, 3:6, 4:7])) == 1  # one (edge) region, one rank


@pytest.mark.parametrize("x_shape, axes", [((2, 13), (13,)), ((2, 200, 4), (200,)), ((2, 9, 7, 3), (9, 7)), ((1, 2, 3, 4, 5), (2, 3, 4))])
def test_layouts_region_axes(x_shape, axes):
    assert regions.spatial_shape(x_shape) == axes


def test_region_validation_per_layout():
    assert regions.check_region(4, (9, 7)) == (4, 4)
    assert regions.check_region((4, 2), (9, 7)) == (4, 2)
    assert regions.check_region(5, (13,), ("features",)) == (5,)
    with pytest.raises(ValueError, match=r"region must lie in \[1, min\(features\)\] = \[1, 13\] .* got 14"):
        regions.check_region(14, (13,), ("features",))
    with pytest.raises(ValueError, match=r"a tuple of 2 ints \(one size per axis: height, width\) .* got \(4,\)"):
        regions.check_region((4,), (9, 7))
    with pytest.raises(ValueError, match=r"region sizes must lie in \[1, axis size\] for region axes 9×7; got \(4, 8\)"):
        regions.check_region((4, 8), (9, 7))


def test_steps_that_repeat_the_last_columns_warn():
    """n = 16, L = 10: ⌈16/10⌉ = 2 regions per step, all 16 gone at k = 8, so columns 8, 9 and
    10 are the same input and AOPC weighs it 3/11. Nothing warned before."""
    np.testing.assert_array_equal(regions.step_counts(16, 10), [0, 2, 4, 6, 8, 10, 12, 14, 16, 16, 16])
    with pytest.warns(regions.RepeatedStepsWarning, match=r"steps=10 .* 16 regions .* last 3 columns .* 3/11 .* steps=8 or steps=16"):
        regions.warn_repeated_steps(16, 10)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n, steps in [(64, 10), (1024, 10), (16, 8), (16, 16), (5, 2)]:  # the paper's settings, divisors
            regions.warn_repeated_steps(n, steps)


@pytest.mark.parametrize(
    "n, steps, want",
    [(1024, 10, [0, 103, 206, 309, 412, 515, 618, 721, 824, 927, 1024]), (16, 4, [0, 4, 8, 12, 16]), (5, 2, [0, 3, 5]), (3, 3, [0, 1, 2, 3])],
)
def test_step_counts(n, steps, want):
    np.testing.assert_array_equal(regions.step_counts(n, steps), want)


def test_fraction_counts_round_up_without_float_noise():
    np.testing.assert_array_equal(regions.fraction_counts(1000, [0.1, 0.3, 0.75]), [100, 300, 750])
    np.testing.assert_array_equal(regions.fraction_counts(1024, [0.05, 0.1, 1.0, 0.0]), [52, 103, 1024, 0])


@pytest.mark.parametrize("reduce", regions.REDUCTIONS)
def test_region_scores_reduce_channels_then_sum_pixels(reduce):
    """``reduce`` turns a pixel's channels into one number (signed sum, Σ|R|, ‖R‖₂), then the
    region sums its pixels' numbers."""
    rel = np.random.default_rng(1).standard_normal((7, 6, 3)).astype(np.float32)
    per_pixel = {"sum": rel.sum(-1), "abs_sum": np.abs(rel).sum(-1),
                 "l2": np.sqrt((rel.astype(np.float64) ** 2).sum(-1))}[reduce]
    got = np.asarray(regions.region_scores(jnp.asarray(rel), 3, reduce))
    want = np.array([[per_pixel[a * 3:(a + 1) * 3, b * 3:(b + 1) * 3].sum() for b in range(2)] for a in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_signed_channels_cancel_only_under_the_default_sum():
    """A pixel with +2 and −2 in its two channels scores 0 by default (ranked behind a pixel
    with +1, +0), but 4 (``abs_sum``) or 2√2 (``l2``): ahead of it."""
    rel = jnp.array([[[2.0, -2.0], [1.0, 0.0]]])  # (1, 2, 2)
    key = jax.random.key(0)
    assert list(np.asarray(regions.pixel_ranks(rel, 1, "morf", key)).ravel()) == [1, 0]
    for reduce in ("abs_sum", "l2"):
        assert list(np.asarray(regions.pixel_ranks(rel, 1, "morf", key, reduce)).ravel()) == [0, 1]
    with pytest.raises(ValueError, match="reduce must be one of"):
        regions.region_scores(rel, 1, "mean")
