"""Significance of the weight decay's effect on AOPC: Friedman's test and the Nemenyi post-hoc test.

Amorim et al. (§IV-A) apply Friedman's test at 5 % across the weight decays, per saliency method,
and report significant differences "between the lower regularization values (0, 0.0001, and
sometimes 0.001) and the higher regularization values (0.01 and 0.05) consistently in all
methods", and none for the random-order perturbation. This module computes the same from a
results frame (see :mod:`jaxattr.study.store`), per method and layer group:

- blocks = cross-validation folds, treatments = decays, values = the fold's mean AOPC (one row of
  results.csv). Decay 0 (stored once, group ``"none"``) is the decay-0 treatment of every group.
- Only complete blocks are used: a fold missing a decay (or with a NaN value) is left out.
- :func:`friedman` -- M. Friedman (1937), "The use of ranks to avoid the assumption of normality
  implicit in the analysis of variance", JASA 32(200), 675-701; via
  :func:`scipy.stats.friedmanchisquare` (chi-square approximation, with the tie correction).
- :func:`nemenyi` / :func:`posthoc` -- the Nemenyi test on mean ranks as recommended by J. Demšar
  (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7, 1-30; via
  :func:`scikit_posthocs.posthoc_nemenyi_friedman`.
- :func:`iman_davenport` -- R. L. Iman & J. M. Davenport (1980), "Approximations of the critical
  region of the Friedman statistic", Comm. Stat. A 9(6), 571-595: ``F_F = (n − 1) χ²_F /
  (n (k − 1) − χ²_F)`` on ``k − 1`` and ``(k − 1)(n − 1)`` degrees of freedom, which Demšar (2006,
  §3.2.2) recommends over the chi-square approximation ("undesirably conservative"), most of
  all for few blocks -- here folds, 10 at most. ``friedman(test="iman_davenport")`` uses it.
- :func:`holm` -- S. Holm (1979), "A simple sequentially rejective multiple test procedure",
  Scand. J. Statist. 6(2), 65-70: :func:`friedman` adds Holm-adjusted p-values over the family
  of every method × group test of a dataset (``p_holm``, ``significant_holm``), since a study
  runs one omnibus test per method and layer group.
- :func:`low_vs_high` -- the paper's summary: which low-vs-high decay pairs differ and whether the
  low decays give the higher AOPC. The direction ("which side is higher") is read from the same
  mean ranks the Nemenyi test compares, not from the mean AOPC (the two can disagree: one fold
  with a large difference moves the mean, not the ranks).

Degenerate inputs (fewer than 3 decays or fewer than 2 complete folds; every fold tying all decays)
give NaN p-values and a ``reason`` instead of an exception.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats as scipy_stats

from jaxattr.study.store import (
    BASELINE_GROUP,
    METRIC_COLUMNS,
    RANDOM_METHOD,
    expand_baseline,
    group_sort_key,
    select_dataset,
)

__all__ = [
    "ALPHA",
    "LOW_DECAYS",
    "HIGH_DECAYS",
    "check_alpha",
    "fold_matrix",
    "TESTS",
    "friedman_test",
    "iman_davenport",
    "holm",
    "mean_ranks",
    "nemenyi_test",
    "friedman",
    "nemenyi",
    "posthoc",
    "low_vs_high",
]

#: Significance level of the paper (5 %).
ALPHA = 0.05
#: The paper's "lower regularization values" and "higher regularization values" (§IV-A).
LOW_DECAYS: tuple[float, ...] = (0.0, 1e-4, 1e-3)
HIGH_DECAYS: tuple[float, ...] = (1e-2, 5e-2)

_KEY = ["dataset", "method", "group"]
#: The omnibus tests: Friedman's chi-square (the paper's) or its Iman–Davenport F correction.
TESTS = ("friedman", "iman_davenport")


# --------------------------------------------------------------------------------------------
# One blocks x treatments matrix
# --------------------------------------------------------------------------------------------

def _check_results(results: pd.DataFrame, metric: str) -> None:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame; got {type(results).__name__}")
    needed = ["dataset", "fold", "decay", "group", "method", metric]
    missing = [c for c in needed if c not in results.columns]
    if missing:
        raise ValueError(f"results lack the columns {missing} (metric={metric!r}; metrics: {list(METRIC_COLUMNS)})")


def fold_matrix(results: pd.DataFrame, *, method: str, group: str, metric: str = "aopc",
                dataset: str | None = None) -> pd.DataFrame:
    """Blocks x treatments table of ``metric`` for one method and layer group.

    Rows (index ``fold``) are the folds having a finite value at every decay; columns (``decay``,
    ascending) are the decays present for the group, decay 0 taken from the shared ``"none"``
    model. ``dataset`` is needed only when ``results`` holds several.

    Raises ``ValueError`` when the combination has no rows or a (fold, decay) appears twice.
    """
    _check_results(results, metric)
    if group == BASELINE_GROUP:
        raise ValueError(f"group {BASELINE_GROUP!r} is decay 0 alone; pick a layer group (its decay 0 is included)")
    rows = select_dataset(results, dataset)
    rows = rows.loc[(rows["method"] == method) & rows["group"].isin([group, BASELINE_GROUP])]
    rows = rows.loc[(rows["group"] == group) | (rows["decay"].astype(float) == 0.0)]
    if not (rows["group"] == group).any():
        raise ValueError(f"no results for method {method!r} and group {group!r}")
    duplicated = rows.duplicated(["fold", "decay"])
    if duplicated.any():
        pairs = sorted(set(zip(rows.loc[duplicated, "fold"], rows.loc[duplicated, "decay"])))
        raise ValueError(f"results repeat (fold, decay) {pairs} for method {method!r}, group {group!r}")
    matrix = rows.pivot(index="fold", columns="decay", values=metric).astype(float)
    matrix = matrix.sort_index().sort_index(axis=1)
    return matrix.dropna(axis=0, how="any")


def _degenerate(matrix: pd.DataFrame) -> str:
    """Why the rank tests cannot run on ``matrix``, or ``""`` when they can."""
    n_folds, n_decays = matrix.shape
    if n_decays < 3:
        return f"Friedman's test needs >= 3 decays; got {n_decays}"
    if n_folds < 2:
        return f"needs >= 2 folds with results at every decay; got {n_folds}"
    return ""


def friedman_test(matrix: pd.DataFrame) -> tuple[float, float, str]:
    """Friedman's chi-square statistic and p-value (Friedman 1937) of a blocks x treatments matrix.

    Returns ``(statistic, p_value, reason)``; ``reason`` is ``""`` when the test ran, otherwise
    statistic and p-value are NaN and ``reason`` says why (too few decays or folds, or every fold
    ties all decays, where the statistic is 0/0).
    """
    reason = _degenerate(matrix)
    values = matrix.to_numpy(dtype=float)
    if not reason and np.all(values == values[:, :1]):
        reason = "every fold ties all decays (constant values)"
    if reason:
        return math.nan, math.nan, reason
    result = scipy_stats.friedmanchisquare(*values.T)
    return float(result.statistic), float(result.pvalue), ""


def iman_davenport(statistic: float, n_folds: int, n_decays: int) -> tuple[float, float]:
    """Iman & Davenport's (1980) F form of Friedman's chi-square ``statistic`` for ``n`` blocks
    and ``k`` treatments, and its p-value (Demšar 2006, §3.2.2):

    .. math:: F_F = \\frac{(n - 1)\\, \\chi^2_F}{n (k - 1) - \\chi^2_F}
        \\sim F\\big(k - 1,\\ (k - 1)(n - 1)\\big)

    ``χ²_F`` at its maximum ``n (k − 1)`` (every fold ranks the decays the same way, no ties)
    gives ``F_F = ∞`` and p = 0. NaN in, NaN out."""
    n, k = n_folds, n_decays
    if math.isnan(statistic):
        return math.nan, math.nan
    denominator = n * (k - 1) - statistic
    if denominator <= 1e-12 * n * (k - 1):
        return math.inf, 0.0
    f_value = (n - 1) * statistic / denominator
    return float(f_value), float(scipy_stats.f.sf(f_value, k - 1, (k - 1) * (n - 1)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: with the m finite p-values sorted,
    ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j))``; NaN stays NaN (not counted in m).
    Reject at level α where ``p̃ < α`` (family-wise error ≤ α)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out


def mean_ranks(matrix: pd.DataFrame) -> pd.Series:
    """Mean rank of each treatment (decay) over the blocks (folds), the quantity Friedman's and
    Nemenyi's tests compare: within a fold the largest value gets rank k, ties the average rank."""
    values = matrix.to_numpy(dtype=float)
    ranks = scipy_stats.rankdata(values, axis=1) if values.size else values
    return pd.Series(ranks.mean(axis=0) if len(values) else np.full(values.shape[1], np.nan),
                     index=matrix.columns)


def _check_test(test: str) -> str:
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}; got {test!r}")
    return test


def _omnibus(matrix: pd.DataFrame, test: str) -> tuple[float, float, float, float, str]:
    """``(χ², p, F_F, p_F, reason)`` of a fold matrix."""
    statistic, p_value, reason = friedman_test(matrix)
    f_value, f_p = iman_davenport(statistic, *matrix.shape)
    return statistic, p_value, f_value, f_p, reason


def nemenyi_test(matrix: pd.DataFrame) -> pd.DataFrame:
    """Nemenyi p-values between every two treatments (decays) of a blocks x treatments matrix.

    The two-sided test on mean ranks of Demšar (2006), §3.2.2: decays ``i`` and ``j`` differ when
    ``|R_i - R_j| / sqrt(k (k + 1) / (6 n))`` exceeds the studentized-range quantile / sqrt(2).
    Returns a symmetric ``k x k`` frame labelled by decay with ones on the diagonal; all NaN off
    the diagonal when :func:`friedman_test` would be degenerate for lack of decays or folds.
    """
    decays = pd.Index(matrix.columns, name="decay")
    if _degenerate(matrix):
        p_values = np.full((len(decays), len(decays)), np.nan)
        np.fill_diagonal(p_values, 1.0)
    else:
        p_values = scikit_posthocs.posthoc_nemenyi_friedman(matrix.to_numpy(dtype=float)).to_numpy()
    return pd.DataFrame(p_values, index=decays, columns=decays.copy())


# --------------------------------------------------------------------------------------------
# Over every (dataset, method, group)
# --------------------------------------------------------------------------------------------

def _combinations(results: pd.DataFrame, metric: str, methods: Sequence[str] | None,
                  groups: Sequence[str] | None) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """``(dataset, method, group, fold matrix)`` for every combination present, in a fixed order."""
    _check_results(results, metric)
    for dataset in sorted(set(results["dataset"])):
        rows = results.loc[results["dataset"] == dataset]
        present_methods = sorted(set(rows["method"]), key=lambda m: (m == RANDOM_METHOD, m))
        present_groups = sorted(set(expand_baseline(rows)["group"]), key=group_sort_key)
        for method in present_methods if methods is None else methods:
            for group in present_groups if groups is None else groups:
                has_rows = ((rows["method"] == method) & (rows["group"] == group)).any()
                if has_rows:
                    yield dataset, method, group, fold_matrix(rows, method=method, group=group, metric=metric)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float, or ``ValueError`` unless 0 < alpha < 1."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    return float(alpha)


def friedman(results: pd.DataFrame, *, metric: str = "aopc", alpha: float = ALPHA,
             methods: Sequence[str] | None = None, groups: Sequence[str] | None = None,
             test: str = "friedman") -> pd.DataFrame:
    """Friedman's test across decays (blocks = folds) for every dataset, method and layer group.

    Returns one row per combination present with columns ``dataset, method, group, n_folds,
    n_decays, statistic, p_value`` (Friedman's chi-square), ``id_statistic, id_p_value``
    (its Iman–Davenport F form, :func:`iman_davenport`), ``test``, ``significant`` (the p-value of
    ``test`` -- ``"friedman"``, the paper's, or ``"iman_davenport"`` -- below ``alpha``; False when
    NaN), ``p_holm`` (that p-value Holm-adjusted over every row of the same dataset, the family
    of methods × groups tested, :func:`holm`), ``significant_holm`` and ``reason``.
    ``methods``/``groups`` restrict the combinations (default: all present, the random baseline
    included) -- and so the Holm family.
    """
    alpha, test = check_alpha(alpha), _check_test(test)
    rows = []
    for dataset, method, group, matrix in _combinations(results, metric, methods, groups):
        statistic, p_value, f_value, f_p, reason = _omnibus(matrix, test)
        chosen = p_value if test == "friedman" else f_p
        rows.append({"dataset": dataset, "method": method, "group": group, "n_folds": matrix.shape[0],
                     "n_decays": matrix.shape[1], "statistic": statistic, "p_value": p_value,
                     "id_statistic": f_value, "id_p_value": f_p, "test": test,
                     "significant": bool(chosen < alpha), "p_holm": chosen, "reason": reason})
    columns = _KEY + ["n_folds", "n_decays", "statistic", "p_value", "id_statistic", "id_p_value", "test",
                      "significant", "p_holm", "significant_holm", "reason"]
    table = pd.DataFrame(rows, columns=columns)
    for _, index in table.groupby("dataset").groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_holm"].to_numpy(dtype=float))
    table["significant_holm"] = table["p_holm"].astype(float) < alpha
    return table


def nemenyi(results: pd.DataFrame, *, method: str, group: str, metric: str = "aopc",
            dataset: str | None = None) -> pd.DataFrame:
    """Nemenyi p-values (Demšar 2006) between decays for one method and group: a decay x decay frame."""
    return nemenyi_test(fold_matrix(results, method=method, group=group, metric=metric, dataset=dataset))


def posthoc(results: pd.DataFrame, *, metric: str = "aopc", alpha: float = ALPHA,
            methods: Sequence[str] | None = None, groups: Sequence[str] | None = None,
            test: str = "friedman") -> pd.DataFrame:
    """Every pair of decays, for every dataset, method and group: Nemenyi p-value, mean ranks
    and means.

    Columns ``dataset, method, group, decay_a, decay_b, mean_a, mean_b, rank_a, rank_b, p_value,
    significant, higher, friedman_p, friedman_p_holm`` with ``decay_a < decay_b``; means and mean
    ranks (:func:`mean_ranks`, larger value = higher rank) are over the complete folds;
    ``significant`` is ``p_value < alpha`` (by itself: Demšar's protocol reads it only where the
    omnibus test rejects); ``higher`` is the decay with the larger *mean rank* -- the quantity the
    Nemenyi test compares -- (NaN on a tie); ``friedman_p`` is the omnibus p-value of ``test``
    (:func:`friedman`) and ``friedman_p_holm`` its Holm-adjusted value over the dataset's
    methods × groups.
    """
    alpha, test = check_alpha(alpha), _check_test(test)
    omnibus = friedman(results, metric=metric, alpha=alpha, methods=methods, groups=groups, test=test)
    omnibus = omnibus.set_index(_KEY)
    rows = []
    for dataset, method, group, matrix in _combinations(results, metric, methods, groups):
        p_values = nemenyi_test(matrix)
        means, ranks = matrix.mean(axis=0), mean_ranks(matrix)
        row = omnibus.loc[(dataset, method, group)]
        friedman_p = float(row["p_value"] if test == "friedman" else row["id_p_value"])
        decays = list(matrix.columns)
        for i, decay_a in enumerate(decays):
            for decay_b in decays[i + 1:]:
                rank_a, rank_b = float(ranks[decay_a]), float(ranks[decay_b])
                p_value = float(p_values.loc[decay_a, decay_b])
                higher = decay_a if rank_a > rank_b else decay_b if rank_b > rank_a else math.nan
                rows.append({"dataset": dataset, "method": method, "group": group, "decay_a": decay_a,
                             "decay_b": decay_b, "mean_a": float(means[decay_a]),
                             "mean_b": float(means[decay_b]), "rank_a": rank_a, "rank_b": rank_b,
                             "p_value": p_value, "significant": bool(p_value < alpha), "higher": higher,
                             "friedman_p": friedman_p, "friedman_p_holm": float(row["p_holm"])})
    columns = _KEY + ["decay_a", "decay_b", "mean_a", "mean_b", "rank_a", "rank_b", "p_value", "significant",
                      "higher", "friedman_p", "friedman_p_holm"]
    return pd.DataFrame(rows, columns=columns)


def _decays_in(decays: Sequence[float], present: pd.Series) -> set[float]:
    present_values = set(present.astype(float))
    return {float(d) for d in decays if float(d) in present_values}


def low_vs_high(results: pd.DataFrame, *, low: Sequence[float] = LOW_DECAYS,
                high: Sequence[float] = HIGH_DECAYS, metric: str = "aopc", alpha: float = ALPHA,
                require_friedman: bool = True, methods: Sequence[str] | None = None,
                groups: Sequence[str] | None = None, test: str = "friedman",
                holm_gate: bool = False) -> pd.DataFrame:
    """The paper's low-vs-high comparison: which (low, high) decay pairs differ significantly.

    For every dataset, method and group: the omnibus p-value (``test``, see :func:`friedman`),
    the number of (low, high) pairs present, the pairs whose Nemenyi p-value is below ``alpha``
    (only counted when the omnibus test rejects at ``alpha`` if ``require_friedman``, as in
    Demšar 2006; with ``holm_gate`` its Holm-adjusted p-value over the dataset's methods × groups
    must), written ``"0 > 0.05 (p=0.003)"`` with ``>`` pointing from the larger mean rank, and
    ``low_higher``: True when at least one pair is significant and the low decay has the larger
    mean rank in all of them, False when some significant pair favours the high decay, NaN when
    none is significant. The direction comes from the mean ranks the Nemenyi test compares, so
    a pair is never called significant in the direction its own test does not measure.
    """
    if set(map(float, low)) & set(map(float, high)):
        raise ValueError(f"low {tuple(low)} and high {tuple(high)} decays overlap")
    pairs = posthoc(results, metric=metric, alpha=alpha, methods=methods, groups=groups, test=test)
    low_set = _decays_in(low, pairs["decay_a"]) if len(pairs) else set()
    high_set = _decays_in(high, pairs["decay_b"]) if len(pairs) else set()
    rows = []
    for (dataset, method, group), block in pairs.groupby(_KEY, sort=False):
        cross = block.loc[block["decay_a"].isin(low_set) & block["decay_b"].isin(high_set)]
        friedman_p = float(block["friedman_p"].iloc[0])
        gate_p = float(block["friedman_p_holm"].iloc[0]) if holm_gate else friedman_p
        gate = (gate_p < alpha) if require_friedman else True
        hits = cross.loc[cross["significant"]] if gate else cross.iloc[:0]
        low_wins = hits["rank_a"] > hits["rank_b"]
        text = "; ".join(
            f"{a:g} {'>' if win else '<'} {b:g} (p={p:.3g})"
            for a, b, p, win in zip(hits["decay_a"], hits["decay_b"], hits["p_value"], low_wins))
        rows.append({"dataset": dataset, "method": method, "group": group, "friedman_p": friedman_p,
                     "n_pairs": len(cross), "n_significant": len(hits), "significant_pairs": text,
                     "low_higher": bool(low_wins.all()) if len(hits) else math.nan})
    columns = _KEY + ["friedman_p", "n_pairs", "n_significant", "significant_pairs", "low_higher"]
    return pd.DataFrame(rows, columns=columns)
