"""Friedman's test and the Nemenyi post-hoc test across weight decays."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from jaxattr.study import stats
from jaxattr.study.store import BASELINE_GROUP, METRIC_COLUMNS


def results_from(matrix, *, method="lrp", groups=("A",), decays=None, dataset="digits") -> pd.DataFrame:
    """Rows of a results frame whose ``aopc`` is ``matrix[fold, decay index]`` in every group.

    Decay 0 (when among ``decays``) is written once with group "none", as the store does.
    """
    matrix = np.asarray(matrix, dtype=float)
    decays = decays if decays is not None else (0.0, 1e-3, 1e-2, 5e-2)[: matrix.shape[1]]
    rows = []
    for fold in range(matrix.shape[0]):
        for j, decay in enumerate(decays):
            for group in (BASELINE_GROUP,) if decay == 0 else groups:
                row = dict(dataset=dataset, fold=fold, decay=decay, group=group, method=method)
                row.update({c: 0.5 for c in METRIC_COLUMNS})
                row["aopc"] = matrix[fold, j]
                rows.append(row)
    return pd.DataFrame(rows)


# Four folds that rank the three decays the same way: rank sums R = (4, 8, 12), so
# chi2 = 12 / (n k (k + 1)) * sum R^2 - 3 n (k + 1) = 0.25 * 224 - 48 = 8 and p = exp(-8 / 2).
ORDERED = [[0.9, 0.5, 0.1], [0.8, 0.6, 0.2], [0.7, 0.4, 0.3], [0.95, 0.55, 0.05]]


def test_friedman_matches_the_hand_computed_statistic():
    table = stats.friedman(results_from(ORDERED))
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["method"], row["group"], row["n_folds"], row["n_decays"]) == ("lrp", "A", 4, 3)
    assert row["statistic"] == pytest.approx(8.0)
    assert row["p_value"] == pytest.approx(math.exp(-4.0))
    assert bool(row["significant"]) and row["reason"] == ""


def test_friedman_matches_scipy_with_ties_and_decay_zero_shared_by_groups():
    rng = np.random.default_rng(0)
    matrix = np.round(rng.random((6, 4)), 1)  # rounding makes ties
    table = stats.friedman(results_from(matrix, groups=("B1", "A")))
    expected = scipy_stats.friedmanchisquare(*matrix.T)
    assert list(table["group"]) == ["B1", "A"]
    np.testing.assert_allclose(table["statistic"], expected.statistic)
    np.testing.assert_allclose(table["p_value"], expected.pvalue)


def test_fold_matrix_takes_decay_zero_from_the_shared_model_and_drops_incomplete_folds():
    results = results_from(ORDERED, groups=("B1", "A"))
    results = results.loc[~((results["fold"] == 2) & (results["decay"] == 1e-2) & (results["group"] == "A"))]
    matrix = stats.fold_matrix(results, method="lrp", group="A")
    assert list(matrix.columns) == [0.0, 1e-3, 1e-2]
    assert list(matrix.index) == [0, 1, 3]
    np.testing.assert_array_equal(matrix.to_numpy(), np.asarray(ORDERED)[[0, 1, 3]])
    assert stats.fold_matrix(results, method="lrp", group="B1").shape == (4, 3)


def test_fold_matrix_rejects_duplicates_and_unknown_combinations():
    results = results_from(ORDERED)
    with pytest.raises(ValueError, match="repeat"):
        stats.fold_matrix(pd.concat([results, results.iloc[:1]]), method="lrp", group="A")
    with pytest.raises(ValueError, match="no results"):
        stats.fold_matrix(results, method="gradient", group="A")
    with pytest.raises(ValueError, match="several datasets"):
        stats.fold_matrix(pd.concat([results, results.assign(dataset="cifar10")]), method="lrp", group="A")


def test_nemenyi_is_symmetric_with_the_demsar_formula():
    rng = np.random.default_rng(1)
    matrix = rng.random((10, 4))
    table = stats.nemenyi(results_from(matrix), method="lrp", group="A")
    assert table.shape == (4, 4)
    assert list(table.index) == list(table.columns) == [0.0, 1e-3, 1e-2, 5e-2]
    np.testing.assert_allclose(table.to_numpy(), table.to_numpy().T)
    np.testing.assert_array_equal(np.diag(table), 1.0)
    assert ((table.to_numpy() >= 0) & (table.to_numpy() <= 1)).all()
    # Demšar (2006): q = |R_i - R_j| / sqrt(k (k + 1) / (6 n)), compared with the studentized range / sqrt 2
    n, k = matrix.shape
    mean_ranks = scipy_stats.rankdata(matrix, axis=1).mean(axis=0)
    q = abs(mean_ranks[0] - mean_ranks[3]) / math.sqrt(k * (k + 1) / (6 * n))
    assert table.iloc[0, 3] == pytest.approx(scipy_stats.studentized_range.sf(q * math.sqrt(2), k, np.inf))


def test_posthoc_lists_every_pair_once():
    pairs = stats.posthoc(results_from(ORDERED * 3))
    assert len(pairs) == 3
    assert (pairs["decay_a"] < pairs["decay_b"]).all()
    first = pairs.iloc[0]
    assert first["higher"] == 0.0 and first["mean_a"] > first["mean_b"]
    assert pairs["friedman_p"].nunique() == 1


@pytest.mark.parametrize("matrix, decays, reason", [
    ([[0.1, 0.2], [0.3, 0.1]], (0.0, 1e-3), ">= 3 decays"),
    ([[0.1, 0.2, 0.3]], None, ">= 2 folds"),
    ([[0.2, 0.2, 0.2], [0.4, 0.4, 0.4]], None, "constant"),
])
def test_degenerate_inputs_give_nan_and_a_reason(matrix, decays, reason):
    results = results_from(matrix, decays=decays)
    row = stats.friedman(results).iloc[0]
    assert math.isnan(row["statistic"]) and math.isnan(row["p_value"])
    assert not row["significant"] and reason in row["reason"]
    table = stats.nemenyi(results, method="lrp", group="A")
    off_diagonal = table.to_numpy()[~np.eye(len(table), dtype=bool)]
    if reason == "constant":
        np.testing.assert_allclose(off_diagonal, 1.0)  # equal mean ranks: no difference
    else:
        assert np.isnan(off_diagonal).all()
    assert len(stats.low_vs_high(results)) == 1


def test_low_vs_high_finds_the_papers_pattern():
    rng = np.random.default_rng(2)
    folds = 10
    decays = (0.0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2)
    strong = np.array([0.42, 0.42, 0.42, 0.36, 0.23, 0.0]) + rng.normal(0, 0.01, (folds, 6))
    noise = 0.05 + rng.normal(0, 0.01, (folds, 6))
    results = pd.concat([results_from(strong, decays=decays), results_from(noise, method="random", decays=decays)])
    table = stats.low_vs_high(results).set_index("method")
    assert table.loc["lrp", "n_pairs"] == 6
    assert table.loc["lrp", "n_significant"] >= 3
    assert table.loc["lrp", "low_higher"] is True
    assert "> 0.05" in table.loc["lrp", "significant_pairs"]
    assert table.loc["random", "n_significant"] == 0 and math.isnan(table.loc["random", "low_higher"])
    friedman = stats.friedman(results).set_index("method")
    assert friedman.loc["lrp", "significant"] and not friedman.loc["random", "significant"]


def test_low_vs_high_gate_and_argument_checks():
    results = results_from(ORDERED)
    with pytest.raises(ValueError, match="overlap"):
        stats.low_vs_high(results, low=(0.0, 1e-2), high=(1e-2,))
    with pytest.raises(ValueError, match="alpha"):
        stats.friedman(results, alpha=1.5)
    with pytest.raises(ValueError, match="lack the columns"):
        stats.friedman(results.drop(columns="aopc"))
    ungated = stats.low_vs_high(results, low=(0.0,), high=(1e-2,), alpha=0.2, require_friedman=False)
    assert ungated.loc[0, "n_pairs"] == 1


def test_several_datasets_are_tested_separately():
    results = pd.concat([results_from(ORDERED), results_from(ORDERED, dataset="cifar10")])
    table = stats.friedman(results)
    assert list(table["dataset"]) == ["cifar10", "digits"]
    np.testing.assert_allclose(table["statistic"], 8.0)


def test_iman_davenport_is_the_f_form_of_friedman():
    """Demšar (2006) §3.2.2: F_F = (n − 1) χ² / (n (k − 1) − χ²) on (k − 1, (k − 1)(n − 1)) df;
    less conservative than the chi-square approximation."""
    rng = np.random.default_rng(4)
    matrix = rng.random((5, 4)) + np.array([0.3, 0.2, 0.1, 0.0])
    row = stats.friedman(results_from(matrix)).iloc[0]
    n, k, chi2 = 5, 4, row["statistic"]
    f_value = (n - 1) * chi2 / (n * (k - 1) - chi2)
    assert row["id_statistic"] == pytest.approx(f_value, rel=1e-12)
    assert row["id_p_value"] == pytest.approx(scipy_stats.f.sf(f_value, k - 1, (k - 1) * (n - 1)), rel=1e-12)
    assert row["id_p_value"] < row["p_value"]
    # chi² at its maximum n (k − 1): every fold ranks the decays alike
    perfect = stats.friedman(results_from(ORDERED), test="iman_davenport").iloc[0]
    assert perfect["statistic"] == pytest.approx(8.0)
    assert math.isinf(perfect["id_statistic"]) and perfect["id_p_value"] == 0.0 and perfect["significant"]
    with pytest.raises(ValueError, match="test must be one of"):
        stats.friedman(results_from(ORDERED), test="quade")


def test_iman_davenport_can_reject_where_friedman_does_not():
    """Few folds: the F form rejects at 5 % where the chi-square approximation does not."""
    matrix = [[0.3, 0.2, 0.1, 0.4], [0.3, 0.1, 0.2, 0.4], [0.3, 0.1, 0.2, 0.4], [0.4, 0.3, 0.1, 0.2]]
    chi2_row = stats.friedman(results_from(matrix)).iloc[0]
    f_row = stats.friedman(results_from(matrix), test="iman_davenport").iloc[0]
    assert chi2_row["p_value"] == f_row["p_value"] > 0.05 > f_row["id_p_value"]  # 0.058, 0.026
    assert not chi2_row["significant"] and f_row["significant"]


def test_holm_by_hand_and_across_methods_and_groups():
    """Holm (1979): sorted finite p (0.005, 0.01, 0.03, 0.04), m = 4: 4·0.005 = 0.02,
    3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06; NaN stays out of the family."""
    got = stats.holm([0.01, 0.04, 0.03, math.nan, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, math.nan, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
    rng = np.random.default_rng(3)
    strong = np.array([0.4, 0.3, 0.2, 0.1]) + rng.normal(0, 0.05, (6, 4))
    noise = rng.random((6, 4))
    results = pd.concat([results_from(strong, groups=("D", "A")), results_from(noise, method="random",
                                                                               groups=("D", "A"))])
    table = stats.friedman(results)
    assert len(table) == 4
    np.testing.assert_allclose(table["p_holm"], stats.holm(table["p_value"]))
    assert (table["p_holm"] >= table["p_value"]).all()
    assert (table["significant_holm"] == (table["p_holm"] < stats.ALPHA)).all()
    pairs = stats.posthoc(results)
    by_key = table.set_index(["method", "group"])["p_holm"]
    for (method, group), p in pairs.groupby(["method", "group"])["friedman_p_holm"].first().items():
        assert p == pytest.approx(by_key[(method, group)])


def test_direction_comes_from_the_mean_ranks_nemenyi_tests():
    """Decay 0 beats 0.01 in 9 of 10 folds by a little and loses one fold by a lot: its mean
    AOPC is lower, its mean rank (what the Nemenyi test compares) higher. ``higher`` and
    ``low_higher`` follow the ranks."""
    folds = 10
    matrix = np.tile([0.50, 0.30, 0.49], (folds, 1)) + np.linspace(0, 0.01, folds)[:, None]
    matrix[0, 2] = 5.0
    results = results_from(matrix)  # decays 0, 0.001, 0.01
    pairs = stats.posthoc(results).set_index(["decay_a", "decay_b"])
    pair = pairs.loc[(0.0, 1e-2)]
    assert pair["mean_b"] > pair["mean_a"] and pair["rank_a"] > pair["rank_b"]
    assert pair["rank_a"] == pytest.approx(2.9) and pair["rank_b"] == pytest.approx(2.1)
    assert pair["higher"] == 0.0
    table = stats.low_vs_high(results, low=(0.0,), high=(1e-2,), alpha=0.5, require_friedman=False)
    assert table.loc[0, "n_significant"] == 1 and table.loc[0, "low_higher"] == True  # noqa: E712
    assert table.loc[0, "significant_pairs"].startswith("0 > 0.01")


def test_low_vs_high_holm_gate():
    """With ``holm_gate`` the omnibus test must reject after Holm's adjustment over the dataset's
    methods × groups: a borderline method next to many null ones loses its pairs."""
    rng = np.random.default_rng(0)
    signal = np.array([0.42, 0.42, 0.30, 0.20]) + rng.normal(0, 0.12, (5, 4))  # Friedman p = 0.011
    parts = [results_from(signal, decays=(0.0, 1e-4, 1e-2, 5e-2))]
    parts += [results_from(rng.random((5, 4)), method=f"null{i}", decays=(0.0, 1e-4, 1e-2, 5e-2)) for i in range(6)]
    results = pd.concat(parts)
    plain = stats.low_vs_high(results, alpha=0.05).set_index("method")
    gated = stats.low_vs_high(results, alpha=0.05, holm_gate=True).set_index("method")
    omnibus = stats.friedman(results).set_index("method")
    assert omnibus.loc["lrp", "p_value"] < 0.05 <= omnibus.loc["lrp", "p_holm"]  # 0.011, 0.076
    assert plain.loc["lrp", "n_significant"] > 0 and gated.loc["lrp", "n_significant"] == 0
