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
