"""Does it reproduce? Each claim of the two papers beside our numbers, with a computed verdict.

Reads a study folder (``jaxattr study``; Amorim et al. 2020) and the JSON results of
``experiments/deeplift_genomics.py`` (Shrikumar et al.), and writes ``docs/reproduction.md`` with
the figures it references::

    python experiments/reproduction.py --study runs/digits \\
        --deeplift docs/reproduction/data/deeplift --out docs/reproduction.md

Every claim is one row: the claim and where the paper makes it, the paper's number, ours, the
settings, the criterion and the verdict. The verdict is computed here from the numbers by the
criterion written beside it; it is one of :data:`VERDICTS`. Nothing in the document is typed by
hand: rerunning the experiments and this script updates it.

The study's tables are those of :mod:`jaxattr.study.report` (means over folds; the paper's numbers
from :mod:`jaxattr.study.paper`), its tests those of :mod:`jaxattr.study.stats`. Only folds whose
41 units (every method) are all finished are used, so a study still running gives "k of 10 folds".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from jaxattr.study import paper, report, stats
from jaxattr.study.store import BASELINE_GROUP, RANDOM_METHOD, RESULT_COLUMNS, ResultsStore, StudyConfig

REPRODUCES = "reproduces"
DOES_NOT = "does not reproduce"
PARTLY = "partly"
UNTESTABLE = "cannot be tested here"
#: The verdicts a claim can get.
VERDICTS = (REPRODUCES, DOES_NOT, PARTLY, UNTESTABLE)

#: Where the CIFAR-10 / Tiny ImageNet claims cannot be run.
NO_CIFAR = ("CIFAR-10 is not reachable from this machine (no network); the CIFAR-10 code path is tested "
            "offline on a small archive in the original format (tests/data/test_cifar10_archive.py)")
NO_TINY_IMAGENET = ("Tiny ImageNet and the paper's VGG16 are not reachable from this machine (no network, "
                    "CPU only)")

_ALL = "A"
_HIGH_GROUPS = ("B3", "D1", "D2", "D")  # "higher convolutional layers or fully-connected layers"
_COLLAPSE_DECAY = 5e-2
_COLLAPSE_AOPC = 0.01
_N_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of the document."""

    claim: str
    source: str
    paper: str
    ours: str
    settings: str
    criterion: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}")


def _share_verdict(hits: int, total: int, *, partly_from: int = 1) -> str:
    """All -> reproduces; at least ``partly_from`` -> partly; else does not reproduce."""
    if total == 0:
        return UNTESTABLE
    if hits == total:
        return REPRODUCES
    return PARTLY if hits >= partly_from else DOES_NOT


def _untestable(claim: str, source: str, paper_text: str, reason: str, settings: str = "–",
                criterion: str = "–") -> Claim:
    return Claim(claim, source, paper_text, f"not tested: {reason}", settings, criterion, UNTESTABLE)


def _pm(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± std`` (sample std over what the values are, e.g. folds or seeds)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return "–"
    if values.size == 1:
        return f"{values[0]:.{digits}f} (one run)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _label(method: str) -> str:
    return paper.PAPER_METHOD_LABELS.get(method, method)


def _decay(decay: float) -> str:
    return f"{decay:g}"


# ==============================================================================================
# Amorim et al. 2020: the study folder
# ==============================================================================================

@dataclasses.dataclass(frozen=True)
class Study:
    """The finished folds of a study folder."""

    root: Path
    config: StudyConfig
    results: pd.DataFrame       # rows of the complete folds only
    folds: tuple[int, ...]      # the complete folds
    partial_folds: tuple[int, ...]

    @property
    def fold_note(self) -> str:
        note = f"{len(self.folds)} of {self.config.folds} folds"
        if self.partial_folds:
            note += f" (fold{'s' if len(self.partial_folds) > 1 else ''} " \
                    f"{', '.join(map(str, self.partial_folds))} unfinished, left out)"
        return note

    @property
    def settings(self) -> str:
        t, p = self.config.training, self.config.perturbation
        parts = [self.config.dataset, self.fold_note]
        if "width" in t:
            parts.append(f"CNN width {t['width']}")
        if "epochs" in t:
            parts.append(f"≤ {t['epochs']} epochs" + (f" (patience {t['patience']})" if "patience" in t else ""))
        if "steps" in p:
            parts.append(f"AOPC L = {p['steps']} steps")
        if "region" in p:
            parts.append(f"region {p['region']}×{p['region']}")
        if "perturbation" in p:
            parts.append(f"{p['perturbation']} fill")
        return ", ".join(parts)


def load_study(root: str | os.PathLike[str]) -> Study:
    """The study at ``root`` (read only), restricted to the folds with every unit and method done."""
    store = ResultsStore(root)
    config = store.config
    results = store.read_results()
    expected: dict[int, set] = {}
    for unit in config.units():
        expected.setdefault(unit.fold, set()).update(
            (float(unit.decay), unit.group, m) for m in config.all_methods)
    have: dict[int, set] = {}
    for fold, decay, group, method in zip(results["fold"], results["decay"], results["group"], results["method"]):
        have.setdefault(int(fold), set()).add((float(decay), group, method))
    complete = tuple(f for f in sorted(expected) if expected[f] <= have.get(f, set()))
    partial = tuple(f for f in sorted(have) if f not in complete)
    rows = results.loc[results["fold"].isin(complete)].reset_index(drop=True)
    return Study(Path(root), config, rows, complete, partial)


def _paper_results() -> pd.DataFrame:
    """Tables III-VII as a one-fold results frame, so the report's functions count the paper's Fig. 4."""
    rows = []
    for method in paper.PAPER_METHODS:
        table = paper.paper_table(method)
        for decay in paper.PAPER_DECAYS:
            groups = [BASELINE_GROUP] if decay == 0 else list(table.index)
            for group in groups:
                row = {c: math.nan for c in RESULT_COLUMNS}
                row.update(dataset="cifar10", fold=0, decay=decay, group=group, method=method,
                           aopc=paper.paper_value(method, group, decay))
                rows.append(row)
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _fold_table(rows: pd.DataFrame, method: str, group: str) -> pd.DataFrame:
    """fold x decay AOPC for one method and group (decay 0 from the shared model)."""
    return stats.fold_matrix(rows, method=method, group=group)


class _AmorimClaims:
    """Builds the rows of Amorim et al.'s claims from a :class:`Study`."""

    def __init__(self, study: Study):
        self.study = study
        self.rows = study.results
        config = study.config
        self.decays = tuple(float(d) for d in config.decays)
        self.groups = tuple(config.groups)
        self.methods = tuple(m for m in paper.PAPER_METHODS if m in config.methods)
        self.has_rows = len(self.rows) > 0
        self.table2 = report.method_table(self.rows) if self.has_rows and _ALL in self.groups else None
        self.paper2 = paper.paper_table_ii()

    # -- helpers ------------------------------------------------------------------------------

    def _missing(self, *, decays: Sequence[float] = (), groups: Sequence[str] = (), methods: int = 0,
                 min_decays: int = 0, min_groups: int = 0, min_folds: int = 1) -> str:
        """Why the study cannot test a claim, or ``""``."""
        if not self.has_rows:
            return "the study folder has no finished fold yet"
        if len(self.study.folds) < min_folds:
            return f"needs ≥ {min_folds} finished folds; the study has {len(self.study.folds)}"
        absent = [_decay(d) for d in decays if float(d) not in self.decays]
        if absent:
            return f"the study has no decay {', '.join(absent)} (its decays: {', '.join(map(_decay, self.decays))})"
        absent = [g for g in groups if g not in self.groups]
        if absent:
            return f"the study has no group {', '.join(absent)} (its groups: {', '.join(self.groups)})"
        if len(self.methods) < methods:
            return f"needs ≥ {methods} of the paper's methods; the study has {len(self.methods)}"
        if len(self.decays) < min_decays:
            return f"needs ≥ {min_decays} decays; the study has {len(self.decays)}"
        if len(self.groups) < min_groups:
            return f"needs ≥ {min_groups} layer groups; the study has {len(self.groups)}"
        return ""

    def _friedman_power(self) -> str:
        """Why Friedman's test across the decays cannot reject at α with the finished folds, or
        ``""``. Its statistic is largest, ``n(k − 1)``, when every fold ranks the k decays alike:
        with too few folds (n = 2 for k = 6) even that gives p ≥ α, so "not significant" would
        be a verdict on the fold count, not on the paper's claim."""
        n, k = len(self.study.folds), len(self.decays)
        p_min = float(scipy_stats.chi2.sf(n * (k - 1), k - 1))
        if p_min >= stats.ALPHA:
            return (f"with {n} finished folds and {k} decays Friedman's test cannot reach α = "
                    f"{stats.ALPHA:g} (smallest attainable p = {p_min:.3f}); needs more folds")
        return ""

    def _settings(self, extra: str) -> str:
        return f"{extra}; {self.study.settings}"

    # -- Table II -----------------------------------------------------------------------------

    def top_two(self) -> Claim:
        claim = "LRP and Gradient give the highest AOPC of the five methods (all layers regularised)"
        source = "Table II, §IV-A"
        decays = [d for d in self.decays if d < _COLLAPSE_DECAY and d in paper.PAPER_DECAYS]
        paper_decays = [d for d in paper.PAPER_DECAYS if d < _COLLAPSE_DECAY]
        paper_hits = [d for d in paper_decays if set(self.paper2[d].nlargest(2).index) == {"lrp", "gradient"}]
        paper_text = (f"top two = {{LRP, Gradient}} at {len(paper_hits)} of {len(paper_decays)} decays < 0.05 "
                      f"(e.g. λ = 0: LRP {self.paper2.loc['lrp', 0.0]:.3f}, Gradient "
                      f"{self.paper2.loc['gradient', 0.0]:.3f}, next {self.paper2.loc['deconvnet', 0.0]:.3f})")
        why = self._missing(groups=[_ALL], methods=3)
        if not why and not {"lrp", "gradient"} <= set(self.methods):
            why = "the study lacks LRP or Gradient"
        if why or not decays:
            return _untestable(claim, source, paper_text, why or "no decay < 0.05")
        table = self.table2.loc[list(self.methods), decays]
        hits = [d for d in decays if set(table[d].nlargest(2).index) == {"lrp", "gradient"}]
        per_fold, cells = 0, 0
        matrices = {m: _fold_table(self.rows, m, _ALL) for m in self.methods}
        for fold in self.study.folds:
            for d in decays:
                values = {m: matrices[m].loc[fold, d] for m in self.methods if fold in matrices[m].index}
                if len(values) == len(self.methods):
                    cells += 1
                    per_fold += set(pd.Series(values).nlargest(2).index) == {"lrp", "gradient"}
        at0 = table[decays[0]].sort_values(ascending=False)
        ours = (f"top two = {{LRP, Gradient}} at {len(hits)} of {len(decays)} decays (means over folds); "
                f"in {per_fold} of {cells} single (fold, decay) cells. λ = {_decay(decays[0])}: "
                + ", ".join(f"{_label(m)} {v:.3f}" for m, v in at0.items()))
        return Claim(claim, source, paper_text, ours, self._settings(f"group A, decays {', '.join(map(_decay, decays))}"),
                     "the two largest mean AOPCs are LRP and Gradient at every decay < 0.05: all → reproduces, "
                     "some → partly, none → does not", _share_verdict(len(hits), len(decays)))

    def rank_order(self) -> Claim:
        claim = "The order of the methods by AOPC (LRP > Gradient > DeConvNet > Guided Backprop > Deep Taylor at λ = 0)"
        source = "Table II"
        decays = [d for d in self.decays if d < _COLLAPSE_DECAY and d in paper.PAPER_DECAYS]
        paper_text = "; ".join(
            f"λ = {_decay(d)}: " + " > ".join(_label(m) for m in self.paper2[d].sort_values(ascending=False).index)
            for d in decays[:1]) or "–"
        why = self._missing(groups=[_ALL], methods=3)
        if why or not decays:
            return _untestable(claim, source, paper_text, why or "no decay < 0.05")
        taus, same = [], 0
        for d in decays:
            ours = self.table2.loc[list(self.methods), d]
            theirs = self.paper2.loc[list(self.methods), d]
            taus.append(scipy_stats.kendalltau(ours.to_numpy(), theirs.to_numpy()).statistic)
            same += list(ours.sort_values(ascending=False).index) == list(theirs.sort_values(ascending=False).index)
        d0 = decays[0]
        order = " > ".join(_label(m) for m in self.table2.loc[list(self.methods), d0].sort_values(ascending=False).index)
        ours = (f"λ = {_decay(d0)}: {order}; same order as the paper at {same} of {len(decays)} decays; "
                f"Kendall τ per decay {', '.join(f'{t:+.2f}' for t in taus)} (mean {np.mean(taus):+.2f})")
        verdict = REPRODUCES if same == len(decays) else PARTLY if np.mean(taus) > 0 else DOES_NOT
        return Claim(claim, source, paper_text, ours,
                     self._settings(f"group A, {len(self.methods)} methods, decays {', '.join(map(_decay, decays))}"),
                     "identical order at every decay < 0.05 → reproduces; mean Kendall τ > 0 → partly; else does not",
                     verdict)

    def fall_with_decay(self) -> Claim:
        claim = "AOPC is higher with small regularisation than with large (all layers regularised)"
        source = "Table II, §IV-A, §V"
        low = [d for d in stats.LOW_DECAYS if d in self.decays]
        high = [d for d in stats.HIGH_DECAYS if d in self.decays]
        p_low, p_high = self.paper2[list(stats.LOW_DECAYS)].mean(axis=1), self.paper2[list(stats.HIGH_DECAYS)].mean(axis=1)
        paper_text = ("mean over λ ∈ {0, 1e-4, 1e-3} minus mean over {0.01, 0.05}: "
                      + ", ".join(f"{_label(m)} {p_low[m] - p_high[m]:+.3f}" for m in paper.PAPER_METHODS))
        why = self._missing(groups=[_ALL], methods=1)
        if not why and (not low or not high):
            why = "the study needs a decay in {0, 1e-4, 1e-3} and one in {0.01, 0.05}"
        if why:
            return _untestable(claim, source, paper_text, why)
        parts, hits = [], 0
        for m in self.methods:
            matrix = _fold_table(self.rows, m, _ALL)
            diff = matrix[low].mean(axis=1) - matrix[high].mean(axis=1)
            hits += diff.mean() > 0
            parts.append(f"{_label(m)} {_pm(diff.to_numpy())} (> 0 in {int((diff > 0).sum())}/{len(diff)} folds)")
        ours = (f"mean over λ ∈ {{{', '.join(map(_decay, low))}}} minus mean over {{{', '.join(map(_decay, high))}}}, "
                f"mean ± std over folds: " + "; ".join(parts))
        return Claim(claim, source, paper_text, ours, self._settings("group A"),
                     "low − high > 0 (mean over folds) for every method → reproduces; for some → partly; none → does not",
                     _share_verdict(hits, len(self.methods)))

    def beats_random(self) -> Claim:
        claim = "Each method's MoRF order degrades the model faster than the random order (the baseline's purpose)"
        source = "§III-C (implicit)"
        paper_text = "implied; the random-order AOPC is not reported"
        why = self._missing(groups=[_ALL], methods=1)
        if not why and not self.study.config.random_baseline:
            why = "the study has no random baseline"
        decays = [d for d in self.decays if d < _COLLAPSE_DECAY]
        if why or not decays:
            return _untestable(claim, source, paper_text, why or "no decay < 0.05")
        table = self.table2.loc[:, decays]
        random = table.loc[RANDOM_METHOD]
        wins = {m: int((table.loc[m] > random).sum()) for m in self.methods}
        hits, total = sum(wins.values()), len(decays) * len(self.methods)
        ours = (f"method > random in {hits} of {total} (method, λ) cells; per method: "
                + ", ".join(f"{_label(m)} {w}/{len(decays)}" for m, w in wins.items())
                + f"; λ = {_decay(decays[0])}: random {random[decays[0]]:.3f}, "
                + ", ".join(f"{_label(m)} {table.loc[m, decays[0]]:.3f}" for m in self.methods))
        verdict = REPRODUCES if hits == total else PARTLY if hits >= total / 2 else DOES_NOT
        return Claim(claim, source, paper_text, ours, self._settings("group A, λ < 0.05"),
                     "mean AOPC above the random order's in every (method, λ) cell → reproduces; in at least half → "
                     "partly; else does not", verdict)

    def collapse(self) -> Claim:
        claim = "At λ = 0.05 on all layers the models collapse: AOPC ≈ 0 for every method"
        source = "Table II (9.3E-12), Tables III–VII row A (0.0000)"
        paper_text = "AOPC 9.3e-12 for all five methods (accuracy not given)"
        why = self._missing(decays=[_COLLAPSE_DECAY], groups=[_ALL], methods=1)
        if why:
            return _untestable(claim, source, paper_text, why)
        aopcs = {m: _fold_table(self.rows, m, _ALL)[_COLLAPSE_DECAY] for m in self.methods}
        units = self.rows.loc[(self.rows["group"] == _ALL) & (self.rows["decay"] == _COLLAPSE_DECAY)]
        accuracy = units.groupby("fold")["accuracy"].first().to_numpy()
        worst = max(abs(v.mean()) for v in aopcs.values())
        aopc_ok = worst < _COLLAPSE_AOPC
        acc_ok = accuracy.mean() < 1 / _N_CLASSES + 0.05
        ours = ("AOPC " + ", ".join(f"{_label(m)} {_pm(v.to_numpy(), 4)}" for m, v in aopcs.items())
                + f"; test accuracy {_pm(accuracy)} (chance {1 / _N_CLASSES:.2f}); mean ± std over folds")
        verdict = REPRODUCES if aopc_ok and acc_ok else PARTLY if aopc_ok or acc_ok else DOES_NOT
        return Claim(claim, source, paper_text, ours, self._settings("group A, λ = 0.05"),
                     f"|mean AOPC| < {_COLLAPSE_AOPC} for every method and mean accuracy < chance + 0.05: both → "
                     "reproduces, one → partly, neither → does not", verdict)

    # -- Tables III-VII -----------------------------------------------------------------------

    def group_tables(self) -> list[Claim]:
        out = []
        for method in paper.PAPER_METHODS:
            number = paper.PAPER_TABLE_NUMBERS[method]
            claim = (f"{_label(method)}: the pattern of AOPC over layer group × decay (e.g. A and B fall at large λ, "
                     "D1/D rise)")
            source = f"Table {number}, §IV-B"
            ptable = paper.paper_table(method)
            paper_text = (f"λ = 0.05: A {ptable.loc['A', 0.05]:.4f}, B {ptable.loc['B', 0.05]:.4f}, "
                          f"D1 {ptable.loc['D1', 0.05]:.4f} (λ = 0: {ptable.loc['A', 0.0]:.4f})")
            why = self._missing(min_groups=2, min_decays=3)
            if not why and method not in self.methods:
                why = f"the study does not evaluate {_label(method)}"
            if why:
                out.append(_untestable(claim, source, paper_text, why))
                continue
            ours_table = report.group_table(self.rows, method)
            cells = [(g, d) for g in ours_table.index for d in ours_table.columns
                     if d > 0 and g in ptable.index and d in ptable.columns]
            a = np.array([ours_table.loc[g, d] for g, d in cells])
            b = np.array([ptable.loc[g, d] for g, d in cells])
            rho, p = scipy_stats.spearmanr(a, b)
            spread = np.nanmean([_fold_table(self.rows, method, g).drop(columns=0.0, errors="ignore").std(ddof=1).mean()
                                 for g in self.groups]) if len(self.study.folds) > 1 else math.nan
            cell_a = ours_table.loc[_ALL, max(self.decays)] if _ALL in ours_table.index else math.nan
            ours = (f"Spearman ρ = {rho:+.2f} (p = {p:.2g}) between our {len(cells)} cells (groups × λ > 0) and the "
                    f"paper's; A at λ = {_decay(max(self.decays))}: {cell_a:.4f}; "
                    + (f"mean std over folds of a cell {spread:.4f}" if not math.isnan(spread) else "one fold: no spread"))
            verdict = REPRODUCES if rho >= 0.5 and p < 0.05 else PARTLY if rho > 0 else DOES_NOT
            out.append(Claim(claim, source, paper_text, ours,
                             self._settings(f"{len(self.groups)} groups, decays {', '.join(map(_decay, self.decays))}"),
                             "ρ ≥ 0.5 with p < 0.05 → reproduces; ρ > 0 → partly; ρ ≤ 0 → does not", verdict))
        return out

    # -- tests --------------------------------------------------------------------------------

    def friedman(self) -> Claim:
        claim = "Regularising all layers changes AOPC significantly (Friedman's test across decays, α = 5 %)"
        source = "§IV-A"
        paper_text = "significant for every method"
        why = self._missing(groups=[_ALL], methods=1, min_decays=3, min_folds=2) or self._friedman_power()
        if why:
            return _untestable(claim, source, paper_text, why)
        table = stats.friedman(self.rows, groups=[_ALL], methods=list(self.methods))  # Holm over these
        hits = int(table["significant"].sum())
        ours = "; ".join(f"{_label(m)} p = {p:.2g}" for m, p in zip(table["method"], table["p_value"]))
        ours += f" — significant for {hits} of {len(table)} (Holm over these: {int(table['significant_holm'].sum())})"
        return Claim(claim, source, paper_text, ours, self._settings("group A, blocks = folds"),
                     "p < 0.05 for every method → reproduces; some → partly; none → does not",
                     _share_verdict(hits, len(table)))

    def low_vs_high(self) -> Claim:
        claim = ("Nemenyi post-hoc: the low decays (0, 1e-4, sometimes 1e-3) differ significantly from the high "
                 "ones (0.01, 0.05), in all methods, the low ones higher")
        source = "§IV-A"
        paper_text = "in all five methods"
        why = self._missing(groups=[_ALL], methods=1, min_decays=3, min_folds=2) or self._friedman_power()
        if not why and (not set(stats.LOW_DECAYS) & set(self.decays) or not set(stats.HIGH_DECAYS) & set(self.decays)):
            why = "the study needs a low decay (0, 1e-4, 1e-3) and a high one (0.01, 0.05)"
        if why:
            return _untestable(claim, source, paper_text, why)
        table = stats.low_vs_high(self.rows, groups=[_ALL])
        table = table.loc[table["method"].isin(self.methods)]
        ok = [bool(n > 0 and low is True) for n, low in zip(table["n_significant"], table["low_higher"])]
        ours = "; ".join(f"{_label(m)} {n}/{k} pairs" + (" (low higher)" if o else "")
                         for m, n, k, o in zip(table["method"], table["n_significant"], table["n_pairs"], ok))
        return Claim(claim, source, paper_text, ours, self._settings("group A, Nemenyi where Friedman rejects"),
                     "≥ 1 significant (low, high) pair, all with the low decay ranked higher, for every method → "
                     "reproduces; for some → partly; none → does not", _share_verdict(sum(ok), len(ok)))

    def random_baseline(self) -> Claim:
        claim = "With random-order perturbation, no decay differs significantly from another"
        source = "§IV-A"
        paper_text = "no significant difference"
        why = self._missing(groups=[_ALL], min_decays=3, min_folds=2) or self._friedman_power()
        if not why and not self.study.config.random_baseline:
            why = "the study has no random baseline"
        if why:
            return _untestable(claim, source, paper_text, why)
        table = stats.friedman(self.rows, groups=[_ALL], methods=[RANDOM_METHOD])
        p = float(table["p_value"].iloc[0])
        matrix = _fold_table(self.rows, RANDOM_METHOD, _ALL)
        ours = (f"Friedman p = {p:.2g}; random-order AOPC per decay (mean ± std over folds): "
                + ", ".join(f"λ = {_decay(d)} {_pm(matrix[d].to_numpy())}" for d in matrix.columns))
        # A collapsed model (constant output: the paper's own λ = 0.05, AOPC 9.3e-12 for every
        # method) loses nothing under any perturbation, so it differs from every working model
        # in every fold: the claim can only be about the decays whose models still work.
        collapsed = [d for d in matrix.columns
                     if np.all(np.abs(matrix[d].to_numpy(dtype=float)) < _COLLAPSE_AOPC)]
        working = matrix.drop(columns=collapsed)
        p_working = math.nan
        if collapsed and working.shape[1] >= 3:
            p_working = stats.friedman_test(working)[1]
            ours += (f"; without the collapsed λ = {', '.join(_decay(d) for d in collapsed)} (random-order "
                     f"AOPC < {_COLLAPSE_AOPC} in every fold): Friedman p = {p_working:.2g} over "
                     f"{working.shape[1]} decays")
        if math.isnan(p):
            verdict = UNTESTABLE
        elif p >= stats.ALPHA:
            verdict = REPRODUCES
        else:
            verdict = PARTLY if p_working >= stats.ALPHA else DOES_NOT  # NaN compares False
        return Claim(claim, source, paper_text, ours, self._settings("group A, random order"),
                     "Friedman p ≥ 0.05 → reproduces; p < 0.05 over all decays but ≥ 0.05 over those "
                     f"whose models have not collapsed (random-order AOPC < {_COLLAPSE_AOPC} in every "
                     "fold: a constant model, which no perturbation moves) → partly; else does not",
                     verdict)

    # -- Figs. 3 and 4 ------------------------------------------------------------------------

    def accuracy_all_layers(self) -> Claim:
        claim = "Models regularised in all layers have the lowest accuracy, the more so the larger λ"
        source = "Fig. 3, §IV-B"
        paper_text = "stated (Fig. 3 is a bar chart; its values are not in the text)"
        why = self._missing(groups=[_ALL], min_groups=2, min_decays=2)
        if why:
            return _untestable(claim, source, paper_text, why)
        acc = report.accuracy_table(self.rows)
        decays = [d for d in acc.columns if d > 0]
        lowest = [d for d in decays if acc[d].idxmin() == _ALL]
        gap = {d: acc.loc[[g for g in acc.index if g != _ALL], d].mean() - acc.loc[_ALL, d] for d in decays}
        grows = gap[decays[-1]] > gap[decays[0]] if len(decays) > 1 else True
        units = report._unit_rows(self.rows)  # one accuracy per unit, as the report's Fig. 3
        std = units.loc[units["group"] == _ALL].groupby("decay")["accuracy"].std(ddof=1)
        ours = (f"A lowest at {len(lowest)} of {len(decays)} decays > 0; A's accuracy "
                + ", ".join(f"λ = {_decay(d)} {acc.loc[_ALL, d]:.3f}" + (f" ± {std[d]:.3f}" if d in std and not
                                                                          math.isnan(std[d]) else "") for d in decays)
                + "; other groups' mean minus A: " + ", ".join(f"{gap[d]:+.3f}" for d in decays))
        verdict = (REPRODUCES if len(lowest) == len(decays) and grows
                   else PARTLY if lowest or grows else DOES_NOT)
        return Claim(claim, source, paper_text, ours, self._settings(f"{len(acc.index)} groups"),
                     "A has the lowest mean accuracy at every λ > 0 and its gap to the other groups is larger at the "
                     "largest λ than at the smallest: both → reproduces; one → partly; neither → does not", verdict)

    def accuracy_benefit(self) -> Claim:
        claim = "Regularising only some layers can raise accuracy above the unregularised model"
        source = "Fig. 3, §IV-B"
        paper_text = "stated (Fig. 3; values not in the text)"
        why = self._missing(min_decays=2, min_folds=2)
        if not why and 0.0 not in self.decays:
            why = "the study has no decay 0"
        if why:
            return _untestable(claim, source, paper_text, why)
        units = report._unit_rows(self.rows)
        base = units.loc[units["decay"] == 0].set_index("fold")["accuracy"]
        others = units.loc[(units["decay"] > 0) & (units["group"] != _ALL)]
        if others.empty:
            return _untestable(claim, source, paper_text, "the study has no group other than A")
        means = others.groupby(["group", "decay"])["accuracy"].mean()
        group, decay = means.idxmax()
        best = others.loc[(others["group"] == group) & (others["decay"] == decay)].set_index("fold")["accuracy"]
        diff = (best - base).dropna()
        n_up = int((diff > 0).sum())
        ours = (f"best: {group} at λ = {_decay(decay)}, accuracy {_pm(best.to_numpy())} vs unregularised "
                f"{_pm(base.to_numpy())}; difference {_pm(diff.to_numpy())}, > 0 in {n_up} of {len(diff)} folds")
        verdict = (REPRODUCES if diff.mean() > 0 and n_up > len(diff) / 2 else PARTLY if diff.mean() > 0 else DOES_NOT)
        return Claim(claim, source, paper_text, ours, self._settings("best group ≠ A and λ > 0 by mean accuracy"),
                     "that best configuration beats λ = 0 in the mean and in a majority of folds → reproduces; in the "
                     "mean only → partly; else does not (the best of many is picked, so this favours the claim)",
                     verdict)

    def best_groups(self) -> Claim:
        claim = ("Regularisation is most effective (best AOPC) in the higher convolutional block or the "
                 "fully-connected layers")
        source = "Fig. 4, §IV-B"
        pcounts = report.best_group_counts(_paper_results())
        p_total = pcounts.to_numpy().sum()
        p_share = pcounts.loc[[g for g in _HIGH_GROUPS if g in pcounts.index]].to_numpy().sum() / p_total
        paper_text = (f"counted from Tables III–VII: {p_share:.0%} of the best-group wins in {{B3, D1, D2, D}}; "
                      f"most wins: {pcounts.sum(axis=1).idxmax()} ({pcounts.sum(axis=1).max()} of {p_total})")
        why = self._missing(min_groups=3, min_decays=2, methods=1)
        if not why and not set(_HIGH_GROUPS) & set(self.groups):
            why = "the study has none of the groups B3, D1, D2, D"
        if why:
            return _untestable(claim, source, paper_text, why)
        counts = report.best_group_counts(self.rows)
        counts = counts.loc[:, [m for m in counts.columns if m in self.methods]]
        total = counts.to_numpy().sum()
        high = [g for g in _HIGH_GROUPS if g in counts.index]
        share = counts.loc[high].to_numpy().sum() / total
        chance = len(high) / len(counts.index)
        top = counts.sum(axis=1).idxmax()
        ours = (f"{share:.0%} of the wins in {{{', '.join(high)}}} (their share of the groups: {chance:.0%}); "
                f"most wins: {top} ({counts.sum(axis=1).max()} of {total}); " +
                ", ".join(f"{g} {int(v)}" for g, v in counts.sum(axis=1).items()))
        checks = [share > chance, top in _HIGH_GROUPS]
        verdict = REPRODUCES if all(checks) else PARTLY if any(checks) else DOES_NOT
        return Claim(claim, source, paper_text, ours, self._settings("best group per method and λ > 0; ties all count"),
                     "the share of wins in {B3, D1, D2, D} exceeds their share of the groups, and the most-winning "
                     "group is one of them: both → reproduces; one → partly; neither → does not", verdict)

    def absolute(self) -> Claim:
        return _untestable("The AOPC values themselves (Tables II–VII) on CIFAR-10", "Tables II–VII",
                           "e.g. LRP 0.423 at λ = 0 (CIFAR-10)", NO_CIFAR,
                           criterion="ours on digits are shown beside, not compared")

    def claims(self) -> list[Claim]:
        return ([self.top_two(), self.rank_order(), self.fall_with_decay(), self.collapse()] + self.group_tables()
                + [self.friedman(), self.low_vs_high(), self.random_baseline(), self.beats_random(),
                   self.accuracy_all_layers(), self.accuracy_benefit(), self.best_groups(), self.absolute()])


# ==============================================================================================
# Shrikumar et al.: the DeepLIFT experiments' JSON
# ==============================================================================================

GENOMICS_LABELS = {
    "|gradient|": "|gradient|",
    "gradient_x_input": "gradient × input",
    "deeplift_zero_raw": "DeepLIFT Rescale, zero ref., raw weights",
    "deeplift_zero_eq22": "DeepLIFT Rescale, zero ref. after eq. 22 (the paper's)",
    "deeplift_background": "DeepLIFT Rescale, background-frequency ref.",
    "deeplift_reveal_cancel_eq22": "DeepLIFT RevealCancel, eq. 22",
    "integrated_gradients_eq22": "integrated gradients (32 steps), eq. 22",
}
_SHORT = {"|gradient|": "|gradient|", "gradient_x_input": "gradient\n× input", "deeplift_zero_raw": "DeepLIFT\nzero, raw",
          "deeplift_zero_eq22": "DeepLIFT\neq. 22 (paper)", "deeplift_background": "DeepLIFT\nbackground",
          "deeplift_reveal_cancel_eq22": "RevealCancel\neq. 22", "integrated_gradients_eq22": "integrated\ngradients"}
MOTIFS = ("GATA", "TAL1")
_DEEPLIFT = "deeplift_zero_eq22"
_FULL_N_TRAIN = 30000


def load_deeplift(folder: str | os.PathLike[str]) -> list[dict]:
    """Every ``genomics.json`` under ``folder`` (one per seed), sorted by seed, each remembering its
    file as ``"_path"`` (for its figures); of several settings, only the runs with the largest
    training set."""
    runs = []
    for path in sorted(Path(folder).glob("**/genomics.json")):
        run = json.loads(path.read_text())
        run["_path"] = str(path)
        runs.append(run)
    if not runs:
        return []
    largest = max(r["settings"]["n_train"] for r in runs)
    return sorted((r for r in runs if r["settings"]["n_train"] == largest), key=lambda r: r["settings"]["seed"])


def _deeplift_settings(runs: list[dict]) -> str:
    s = runs[0]["settings"]
    size = "full size" if s["n_train"] >= _FULL_N_TRAIN else "--small"
    seeds = ", ".join(str(r["settings"]["seed"]) for r in runs)
    return (f"{size}: {s['n_train']} training / {s['n_test']} test sequences, ≤ {s['epochs']} epochs, lr "
            f"{s['learning_rate']:g}, {s['pool_padding']} pooling; {len(runs)} seed{'s' if len(runs) > 1 else ''} "
            f"({seeds})")


def _motif(runs: list[dict], method: str, motif: str) -> np.ndarray:
    return np.array([r["motif_recovery"][method][motif] for r in runs], dtype=float)


class _DeepLiftClaims:
    def __init__(self, runs: list[dict]):
        self.runs = runs
        self.settings = _deeplift_settings(runs) if runs else "–"

    def _why(self, key: str | None = None) -> str:
        if not self.runs:
            return "no results of experiments/deeplift_genomics.py were given"
        if key and any(key not in r for r in self.runs):
            return f"the results lack {key!r} (rerun experiments/deeplift_genomics.py)"
        return ""

    def fig1(self) -> Claim:
        claim = "Fig. 1 toy (x₁ = x₂ = −1, reference 0): the gradient is 0 for both inputs; DeepLIFT gives −0.4/3 and −0.8/3"
        paper_text = "gradient 0, 0; DeepLIFT −0.1333, −0.2667 (sum −0.4)"
        why = self._why("fig1")
        if why:
            return _untestable(claim, "Fig. 1", paper_text, why)
        values = np.array([r["fig1"]["gradient"] + r["fig1"]["deeplift"] for r in self.runs])
        expected = np.array([0.0, 0.0, -0.4 / 3, -0.8 / 3])
        error = float(np.abs(values - expected).max())
        f = self.runs[0]["fig1"]
        ours = (f"gradient {f['gradient'][0]:.4f}, {f['gradient'][1]:.4f}; DeepLIFT {f['deeplift'][0]:.4f}, "
                f"{f['deeplift'][1]:.4f} (sum {f['deeplift_sum']:.4f}); largest error {error:.1e}")
        return Claim(claim, "Fig. 1", paper_text, ours, "float32, ja.Gradient / ja.DeepLIFT(0.0)",
                     "every number within 1e-5 → reproduces; else does not",
                     REPRODUCES if error < 1e-5 else DOES_NOT)

    def auroc(self) -> Claim:
        claim = "The genomics CNN classifies the simulated sequences with auROC 0.907"
        source = "§3.2"
        why = self._why("test_auroc")
        if why:
            return _untestable(claim, source, "0.907", why)
        values = np.array([r["test_auroc"] for r in self.runs])
        gap = abs(values.mean() - 0.907)
        ours = _pm(values) + (f" over seeds (range {values.min():.3f}–{values.max():.3f})" if len(values) > 1 else "")
        verdict = REPRODUCES if gap <= 0.02 else PARTLY if gap <= 0.05 else DOES_NOT
        return Claim(claim, source, "0.907 (one model)", ours, self.settings,
                     "|mean − 0.907| ≤ 0.02 → reproduces; ≤ 0.05 → partly; else does not", verdict)

    def deeplift_recovers(self) -> Claim:
        claim = "DeepLIFT (zero reference after eq. 22 weight normalisation) discovers both motifs"
        source = "§3.2, Fig. 3"
        paper_text = "both found (Fig. 3, one sequence; no number)"
        why = self._why("motif_recovery")
        if why:
            return _untestable(claim, source, paper_text, why)
        means = {m: _motif(self.runs, _DEEPLIFT, m) for m in MOTIFS}
        ours = "motif-recovery auROC " + "; ".join(f"{m} {_pm(v)}" for m, v in means.items())
        lows = [v.mean() for v in means.values()]
        verdict = REPRODUCES if min(lows) >= 0.8 else PARTLY if min(lows) >= 0.7 else DOES_NOT
        return Claim(claim, source, paper_text, ours, self.settings + "; correctly predicted positive test sequences",
                     "mean auROC ≥ 0.8 for both motifs → reproduces; ≥ 0.7 → partly; else does not", verdict)

    def deeplift_beats_gxi(self) -> Claim:
        claim = "DeepLIFT finds the motifs better than gradient × input"
        source = "§3.2, Fig. 3"
        paper_text = "qualitative (Fig. 3)"
        why = self._why("motif_recovery")
        if why:
            return _untestable(claim, source, paper_text, why)
        diffs = {m: _motif(self.runs, _DEEPLIFT, m) - _motif(self.runs, "gradient_x_input", m) for m in MOTIFS}
        wins = int(np.sum(np.all([d > 0 for d in diffs.values()], axis=0)))
        ours = ("DeepLIFT − gradient × input: " + "; ".join(f"{m} {_pm(d)}" for m, d in diffs.items())
                + f"; DeepLIFT ahead on both motifs in {wins} of {len(self.runs)} seeds")
        return Claim(claim, source, paper_text, ours, self.settings,
                     "ahead on both motifs in every seed → reproduces; in a majority → partly; else does not",
                     _share_verdict(wins, len(self.runs), partly_from=len(self.runs) // 2 + 1))

    def gxi_misses_gata(self) -> Claim:
        claim = "Gradient × input misses the GATA motif in particular"
        source = "§3.2, Fig. 3 caption"
        paper_text = "GATA missed, CAGATG (TAL1) found, in the sequence shown"
        why = self._why("motif_recovery")
        if why:
            return _untestable(claim, source, paper_text, why)
        gata, tal1 = (_motif(self.runs, "gradient_x_input", m) for m in MOTIFS)
        hits = int(np.sum(gata < tal1))
        ours = (f"gradient × input auROC GATA {_pm(gata)}, TAL1 {_pm(tal1)}; GATA the lower in {hits} of "
                f"{len(self.runs)} seeds")
        return Claim(claim, source, paper_text, ours, self.settings,
                     "GATA's auROC below TAL1's in every seed → reproduces; in some → partly; none → does not",
                     _share_verdict(hits, len(self.runs)))

    def abs_gradient(self) -> Claim:
        claim = "(ours, not in the paper; issue #17) |gradient| recovers both motifs better than DeepLIFT"
        source = "issue #17: --small, seed 0 (0.91 / 0.91 vs 0.82 / 0.88)"
        paper_text = "not discussed"
        why = self._why("motif_recovery")
        if why:
            return _untestable(claim, source, paper_text, why)
        diffs = {m: _motif(self.runs, "|gradient|", m) - _motif(self.runs, _DEEPLIFT, m) for m in MOTIFS}
        wins = int(np.sum(np.all([d > 0 for d in diffs.values()], axis=0)))
        ours = ("|gradient| − DeepLIFT (eq. 22): " + "; ".join(f"{m} {_pm(d)}" for m, d in diffs.items())
                + f"; |gradient| ahead on both motifs in {wins} of {len(self.runs)} seeds")
        return Claim(claim, source, paper_text, ours, self.settings,
                     "ahead on both motifs in every seed → reproduces (the observation is stable); in some → partly; "
                     "none → does not", _share_verdict(wins, len(self.runs)))

    def fig2_imagenet(self) -> Claim:
        return _untestable("Fig. 2: gradient × input sharpens |gradient|'s maps, DeepLIFT sharpens them further "
                           "(VGG16 on Tiny ImageNet)", "Fig. 2, §1, §3.3", "qualitative (images)", NO_TINY_IMAGENET,
                           criterion="– (the digits analogue is the next row)")

    def fig2_digits(self) -> Claim:
        claim = "Fig. 2 on digits, as a number: deletion AOPC orders DeepLIFT > gradient × input > |gradient|"
        source = "Fig. 2 (analogue)"
        paper_text = "qualitative (Tiny ImageNet images)"
        why = self._why("fig2")
        if not why and any("deletion_aopc" not in r["fig2"] for r in self.runs):
            why = "the results lack fig2.deletion_aopc (rerun experiments/deeplift_genomics.py)"
        if why:
            return _untestable(claim, source, paper_text, why)
        names = ("deeplift", "gradient_x_input", "|gradient|", "random")
        values = {n: np.array([r["fig2"]["deletion_aopc"][n] for r in self.runs]) for n in names}
        order = sorted(names[:3], key=lambda n: -values[n].mean())
        per_seed = int(sum(values["deeplift"][i] > values["gradient_x_input"][i] > values["|gradient|"][i]
                           for i in range(len(self.runs))))
        acc = np.array([r["fig2"]["digits_test_accuracy"] for r in self.runs])
        d = self.runs[0]["fig2"]["deletion_aopc"]
        label = {"deeplift": "DeepLIFT", "gradient_x_input": "gradient × input", "|gradient|": "|gradient|",
                 "random": "random order"}
        ours = ("AOPC " + ", ".join(f"{label[n]} {_pm(values[n])}" for n in names)
                + f"; full order in {per_seed} of {len(self.runs)} seeds")
        verdict = (REPRODUCES if order == list(names[:3]) else PARTLY if order[0] == "deeplift" else DOES_NOT)
        settings = (f"small paper CNN on scikit-learn digits (test accuracy {_pm(acc)}), {d['n_images']} test images, "
                    f"{d['steps']} steps of single pixels, {d['perturbation']} fill, MoRF (signed maps ranked as "
                    f"computed, zero reference for DeepLIFT); {len(self.runs)} seeds")
        return Claim(claim, source, paper_text, ours, settings,
                     "that order of the means → reproduces; DeepLIFT first only → partly; else does not", verdict)

    def lrp_equivalence(self) -> Claim:
        claim = "LRP (bias included) reduces to gradient × input on a network of ReLUs"
        source = "§3.4"
        paper_text = "an identity (proof)"
        why = self._why("fig2")
        if not why and any("lrp0_vs_gradient_x_input" not in r["fig2"] for r in self.runs):
            why = "the results lack fig2.lrp0_vs_gradient_x_input (rerun experiments/deeplift_genomics.py)"
        if why:
            return _untestable(claim, source, paper_text, why)
        checks = [r["fig2"]["lrp0_vs_gradient_x_input"] for r in self.runs]
        worst = max(c["relative"] for c in checks)
        ours = (f"largest |LRP-0 − gradient × input| / max |gradient × input| = {worst:.1e} over "
                f"{checks[0]['n_images']} test images × {len(checks)} trained models")
        return Claim(claim, source, paper_text, ours,
                     "ja.LRP(ja.rules.Epsilon(0.0)) vs ja.GradientXInput(), trained digits CNN (ReLU, max pool, "
                     "biases), float32", "relative difference < 1e-5 in every model → reproduces; else does not",
                     REPRODUCES if worst < 1e-5 else DOES_NOT)

    def claims(self) -> list[Claim]:
        return [self.fig1(), self.auroc(), self.deeplift_recovers(), self.deeplift_beats_gxi(),
                self.gxi_misses_gata(), self.abs_gradient(), self.fig2_imagenet(), self.fig2_digits(),
                self.lrp_equivalence()]


# ==============================================================================================
# Figures
# ==============================================================================================

def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def figure_table_ii(study: Study, path: Path) -> Path | None:
    """AOPC against λ, all layers: ours (mean ± std over folds) beside the paper's Table II."""
    rows = study.results
    if rows.empty or _ALL not in study.config.groups:
        return None
    methods = [m for m in paper.PAPER_METHODS if m in study.config.methods]
    decays = list(study.config.decays)
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    ours_ax, paper_ax = figure.subplots(1, 2)
    colour = {m: f"C{i}" for i, m in enumerate(paper.PAPER_METHODS)}
    colour[RANDOM_METHOD] = "black"
    if study.config.random_baseline:
        methods = methods + [RANDOM_METHOD]
    for method in methods:
        matrix = _fold_table(rows, method, _ALL)
        ours_ax.errorbar(range(len(matrix.columns)), matrix.mean(), yerr=matrix.std(ddof=1).fillna(0),
                         marker="o", capsize=3, label=_label(method), color=colour[method],
                         linestyle="--" if method == RANDOM_METHOD else "-")
    ours_ax.set_xticks(range(len(decays)), [_decay(d) for d in decays])
    n = len(study.folds)
    ours_ax.set_title(f"ours: {study.config.dataset}, {n} fold{'s (± std)' if n > 1 else ''}")
    table = paper.paper_table_ii()
    for method in paper.PAPER_METHODS:
        paper_ax.plot(range(len(table.columns)), table.loc[method], marker="o", label=_label(method),
                      color=colour[method])
    paper_ax.set_xticks(range(len(table.columns)), [_decay(d) for d in table.columns])
    paper_ax.set_title("Amorim et al. Table II: CIFAR-10, 10 folds")
    for ax in (ours_ax, paper_ax):
        ax.set_xlabel("L2 decay λ (all layers)")
        ax.set_ylabel("mean AOPC")
        ax.grid(alpha=0.3)
    ours_ax.legend(fontsize="small")
    paper_ax.legend(fontsize="small")
    return _save(figure, path)


def figure_best_groups(study: Study, path: Path) -> Path | None:
    """Fig. 4: best-group counts, ours and the paper's (counted from Tables III-VII)."""
    if study.results.empty or len(study.config.groups) < 2:
        return None
    figure = Figure(figsize=(11, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharey=False)
    for ax, (title, counts) in zip(axes, (("ours", report.best_group_counts(study.results)),
                                          ("paper (from Tables III–VII)", report.best_group_counts(_paper_results())))):
        bottom = np.zeros(len(counts.index))
        for method in counts.columns:
            colour = f"C{paper.PAPER_METHODS.index(method)}" if method in paper.PAPER_METHODS else None
            ax.bar(counts.index, counts[method], bottom=bottom, label=_label(method), color=colour)
            bottom += counts[method].to_numpy()
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
        ax.set_title(f"times best, {title}")
        ax.set_xlabel("layer group regularised")
        ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def figure_accuracy(study: Study, path: Path) -> Path | None:
    """Fig. 3 as the study's report draws it (mean ± std over folds)."""
    if study.results.empty:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return report._figure_accuracy(report._prepare(study.results), path)


def figure_motifs(runs: list[dict], path: Path) -> Path | None:
    """Motif-recovery auROC per method and motif: mean ± std over seeds, one dot per seed."""
    if not runs:
        return None
    methods = [m for m in GENOMICS_LABELS if all(m in r["motif_recovery"] for r in runs)]
    figure = Figure(figsize=(10, 4), layout="constrained")
    ax = figure.add_subplot()
    width = 0.38
    for k, motif in enumerate(MOTIFS):
        x = np.arange(len(methods)) + (k - 0.5) * width
        values = np.array([_motif(runs, m, motif) for m in methods])
        ax.bar(x, values.mean(axis=1), width, yerr=values.std(1, ddof=1) if len(runs) > 1 else None, capsize=3,
               label=motif, alpha=0.8)
        for i in range(len(methods)):
            ax.plot(np.full(len(runs), x[i]), values[i], "k.", markersize=3)
    ax.set_xticks(np.arange(len(methods)), [_SHORT[m] for m in methods], fontsize="small")
    ax.set_ylabel("motif-recovery auROC")
    ax.set_ylim(0.4, 1.0)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_title(f"Motif recovery, {len(runs)} seed{'s' if len(runs) > 1 else ''} (bars: mean ± std; dots: seeds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


# ==============================================================================================
# Markdown
# ==============================================================================================

CLAIM_COLUMNS = ("#", "claim", "where", "paper", "ours", "settings", "criterion", "verdict")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_table(claims: Sequence[Claim], prefix: str, numbers: Sequence[int] | None = None) -> str:
    """The claims as a Markdown table, rows numbered ``prefix`` 1, 2, … (or ``numbers``)."""
    lines = ["| " + " | ".join(CLAIM_COLUMNS) + " |", "|" + "---|" * len(CLAIM_COLUMNS)]
    numbers = range(1, len(claims) + 1) if numbers is None else numbers
    for i, c in zip(numbers, claims):
        cells = [f"{prefix}{i}", c.claim, c.source, c.paper, c.ours, c.settings, c.criterion, f"**{c.verdict}**"]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return "\n".join(lines)


def _tally(claims: Sequence[Claim]) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def _table_ii_detail(study: Study) -> list[str]:
    if study.results.empty or _ALL not in study.config.groups:
        return []
    lines = ["### Table II side by side", "",
             f"Mean AOPC ± std over {len(study.folds)} folds ({study.config.dataset}); in brackets the paper's "
             "(CIFAR-10, mean of 10 folds). Different data sets: compare orders and trends, not values.", ""]
    decays = list(study.config.decays)
    lines.append("| method | " + " | ".join(f"λ = {_decay(d)}" for d in decays) + " |")
    lines.append("|---|" + "---:|" * len(decays))
    for method in [m for m in paper.PAPER_METHODS if m in study.config.methods] + [RANDOM_METHOD]:
        if method == RANDOM_METHOD and not study.config.random_baseline:
            continue
        matrix = _fold_table(study.results, method, _ALL)
        cells = []
        for d in decays:
            v = matrix[d].to_numpy()
            text = f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"
            p = report._table_ii_value(method, d)
            cells.append(text + ("" if math.isnan(p) else f" ({report._number(p, 3)})"))
        lines.append(f"| {_cell(_label(method))} | " + " | ".join(cells) + " |")
    return lines + [""]


def _motif_detail(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    seeds = [r["settings"]["seed"] for r in runs]
    lines = ["### Motif recovery per method", "",
             "auROC of per-position scores (attribution summed over the four bases) separating positions inside "
             "an inserted motif of that kind from positions in no motif, on the correctly predicted positive test "
             f"sequences; mean ± std over seeds, then each seed ({', '.join(map(str, seeds))}).", "",
             "| method | GATA | TAL1 (CAGATG) | GATA per seed | TAL1 per seed |", "|---|---:|---:|---|---|"]
    for method, label in GENOMICS_LABELS.items():
        if not all(method in r["motif_recovery"] for r in runs):
            continue
        g, t = _motif(runs, method, "GATA"), _motif(runs, method, "TAL1")
        lines.append(f"| {_cell(label)} | {_pm(g)} | {_pm(t)} | {' '.join(f'{v:.2f}' for v in g)} | "
                     f"{' '.join(f'{v:.2f}' for v in t)} |")
    auroc = [r["test_auroc"] for r in runs]
    lines += ["", f"Test auROC per seed: {', '.join(f'{v:.3f}' for v in auroc)}; epochs run: "
              f"{', '.join(str(r.get('epochs_run', '?')) for r in runs)}; sequences scored: "
              f"{', '.join(str(r['motif_recovery'].get('n_sequences', '?')) for r in runs)}.", ""]
    return lines


def setting_difference(study: Study, variant: Study) -> str:
    """What ``variant``'s configuration changes against ``study``'s, e.g. ``"zeros fill (main
    study: uniform)"``; grids (groups, decays, methods) that differ are named too."""
    parts = []
    for name in ("perturbation", "training"):
        ours, theirs = getattr(study.config, name), getattr(variant.config, name)
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                value = theirs.get(key, "–")
                label = f"{value} fill" if key == "perturbation" else f"{key} {value}"
                parts.append(f"{label} (main study: {ours.get(key, '–')})")
    for name in ("groups", "decays"):
        ours, theirs = tuple(getattr(study.config, name)), tuple(getattr(variant.config, name))
        if ours != theirs:
            shown = ", ".join(_decay(float(v)) if name == "decays" else str(v) for v in theirs)
            parts.append(f"{name} {shown} only")
    return "; ".join(parts) or "the same settings"


def variant_claims(variant: Study) -> tuple[list[int], list[Claim]]:
    """The Amorim claims ``variant`` can test, with their row numbers in the main table."""
    rows = [(i, c) for i, c in enumerate(_AmorimClaims(variant).claims(), start=1) if c.verdict != UNTESTABLE]
    return [i for i, _ in rows], [c for _, c in rows]


def changed_verdicts(main_claims: Sequence[Claim], rows: tuple[list[int], list[Claim]]
                     ) -> list[tuple[int, str, str]]:
    """``(row number, main verdict, variant verdict)`` of the rows whose verdict a variant
    changes; ``rows``: its :func:`variant_claims`."""
    return [(i, main_claims[i - 1].verdict, c.verdict) for i, c in zip(*rows)
            if main_claims[i - 1].verdict != c.verdict]


def _variant_section(study: Study, variant: Study, main_claims: Sequence[Claim]) -> list[str]:
    numbers, claims = rows = variant_claims(variant)
    changed = [f"A{i} {old} → **{new}**" for i, old, new in changed_verdicts(main_claims, rows)]
    lines = [f"### The same claims with {setting_difference(study, variant)}", "",
             f"Study folder `{variant.root}`: {variant.settings}. The rows of the table above that this study can "
             "test, recomputed on it; same seed, data and training as the main study, so where the grids overlap "
             "the models are the same and only what is listed in the title differs. "
             + ("The paper (§III-C) *deletes* the most relevant pixels and fills its random perturbation with "
                "a uniform value, without saying which fill its MoRF curves used; the main study reads both as "
                "uniform, a study with another fill uses it for the MoRF and the random order alike. "
                if study.config.perturbation.get("perturbation") != variant.config.perturbation.get("perturbation")
                else "")
             + (f"Verdicts that change: {'; '.join(changed)}." if changed else "No verdict changes."), "",
             claims_table(claims, "A", numbers), ""]
    return lines


def all_claims(study: Study | None, runs: list[dict]) -> tuple[list[Claim], list[Claim]]:
    """The rows of both papers: ``(Amorim et al., Shrikumar et al.)``."""
    amorim = _AmorimClaims(study).claims() if study is not None else [
        _untestable("Every claim of the study", "Tables II–VII, Figs. 3–4", "–", "no study folder was given")]
    return amorim, _DeepLiftClaims(runs).claims()


def write_document(study: Study | None, runs: list[dict], out: str | os.PathLike[str],
                   figures: str | os.PathLike[str] | None = None, *, command: str = "",
                   claims: tuple[list[Claim], list[Claim]] | None = None,
                   variants: Sequence[Study] = ()) -> Path:
    """Write the reproduction document to ``out`` and its figures to ``figures`` (default: a folder
    named like ``out`` without its suffix). ``claims``: :func:`all_claims`, computed if not given.
    ``variants``: studies of the same models under another setting (another fill, say); each
    gets a section with the claims it can test. Returns ``out``'s path."""
    out = Path(out)
    figures = out.with_suffix("") if figures is None else Path(figures)
    base = out.parent
    amorim, deeplift = all_claims(study, runs) if claims is None else claims
    lines = ["# Does it reproduce?", "",
             "Every claim of the two papers this project reproduces, beside our numbers, with a verdict computed "
             "from the numbers by the criterion in its row (`experiments/reproduction.py`; verdicts: "
             + ", ".join(f"*{v}*" for v in VERDICTS) + "). Generated, not typed: "
             + (f"`{command}`." if command else "see the script."), ""]
    # ---- Amorim
    lines += ["## Amorim et al. 2020, *Interpretability vs. Complexity: The Friction in Deep Neural Networks*", ""]
    if study is not None:
        finished = len(study.folds) == study.config.folds
        lines += [("" if finished else f"**Partial study: {study.fold_note}; the study was unfinished when this was "
                   "generated — rerun the script on the finished folder.** ")
                  + f"Study folder `{study.root}`: {study.settings}. The paper trained on CIFAR-10 with iNNvestigate "
                  "1.0.8; we train on scikit-learn's 8×8 digits (CIFAR-10 is not reachable here), so the rows "
                  "compare orders, trends and test outcomes, never absolute values. Spreads are over the folds.", ""]
    lines += [f"Verdicts: {_tally(amorim)}.", "", claims_table(amorim, "A"), ""]
    if study is not None:
        lines += _table_ii_detail(study)
        made = [("AOPC against λ, all layers (Table II)", figure_table_ii(study, figures / "amorim_table_ii.png")),
                ("Accuracy per group and λ (Fig. 3)", figure_accuracy(study, figures / "amorim_fig3_accuracy.png")),
                ("Best-group counts, ours and the paper's (Fig. 4)",
                 figure_best_groups(study, figures / "amorim_fig4_best_groups.png"))]
        for title, path in made:
            if path is not None:
                lines += [f"![{title}]({_rel(path, base)})", ""]
        lines += [f"The study's full report (Tables II–VII, tests, curves): `{study.root / 'report.md'}` "
                  f"(`jaxattr report {study.root}`).", ""]
        for variant in variants:
            lines += _variant_section(study, variant, amorim)
    # ---- DeepLIFT
    lines += ["## Shrikumar et al., *Not Just a Black Box: Learning Important Features Through Propagating "
              "Activation Differences* (DeepLIFT)", ""]
    if runs:
        lines += [f"`experiments/deeplift_genomics.py`, {_deeplift_settings(runs)}. Spreads are over the training "
                  "seeds (each seed draws its own data, initialisation and batch order). The paper's simulation and "
                  "CNN are rebuilt from §3.2; what the paper leaves open (optimiser, pooling padding, data sizes) is "
                  "chosen and stated in the experiment's docstring. The paper shows motif discovery on one sequence "
                  "(Fig. 3); the motif-recovery auROC over all correctly predicted positive test sequences is our "
                  "number for it.", ""]
    lines += [f"Verdicts: {_tally(deeplift)}.", "", claims_table(deeplift, "S"), ""]
    lines += _motif_detail(runs)
    motif_fig = figure_motifs(runs, figures / "deeplift_motif_recovery.png")
    if motif_fig is not None:
        lines += [f"![motif recovery]({_rel(motif_fig, base)})", ""]
    for r in runs[:1]:
        folder = Path(r["_path"]).parent if "_path" in r else None
        for name, title in (("fig3_genomics.png", "Fig. 3 analogue: DeepLIFT vs gradient × input on one sequence"),
                            ("fig2_digits.png", "Fig. 2 analogue on digits: |gradient|, gradient × input (+), "
                                                "DeepLIFT (+)")):
            if folder is not None and (folder / name).exists():
                lines += [f"{title} (seed {r['settings']['seed']}):", "", f"![{title}]({_rel(folder / name, base)})", ""]
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


#: The rows the README's summary repeats (1-based, per section).
HEADLINES = {"A": (1, 3, 10, 16), "S": (4, 6, 8)}
README_BEGIN = "<!-- reproduction summary: generated by experiments/reproduction.py --readme -->"
README_END = "<!-- end of reproduction summary -->"


def summary(amorim: Sequence[Claim], deeplift: Sequence[Claim], study: Study | None, runs: list[dict],
            doc: str, variants: Sequence[Study] = ()) -> str:
    """The README's few lines: each paper's tally and its headline rows' verdicts (and, per
    variant study, the verdicts it changes)."""
    folds = study.fold_note if study is not None else "no study"
    size = _deeplift_settings(runs).split(":")[0] + f", {len(runs)} seeds" if runs else "no runs"
    lines = [f"Generated from [{doc}]({doc}) (verdicts computed by stated criteria):", "",
             f"- **Amorim et al. 2020** (digits, not CIFAR-10; {folds}): {_tally(amorim)}."]
    lines += [f"  - A{i} {amorim[i - 1].claim}: **{amorim[i - 1].verdict}**" for i in HEADLINES["A"] if i <= len(amorim)]
    for variant in variants if study is not None else ():
        changed = [f"A{i} **{new}**" for i, _, new in changed_verdicts(amorim, variant_claims(variant))]
        lines += [f"  - The same models with {setting_difference(study, variant)}: "
                  + (", ".join(changed) if changed else "no verdict changes") + "."]
    lines += [f"- **Shrikumar et al., DeepLIFT** ({size}): {_tally(deeplift)}."]
    lines += [f"  - S{i} {deeplift[i - 1].claim}: **{deeplift[i - 1].verdict}**"
              for i in HEADLINES["S"] if i <= len(deeplift)]
    return "\n".join(lines)


def update_readme(readme: str | os.PathLike[str], text: str) -> Path:
    """Replace what stands between :data:`README_BEGIN` and :data:`README_END` in ``readme``."""
    path = Path(readme)
    old = path.read_text()
    if README_BEGIN not in old or README_END not in old:
        raise ValueError(f"{path} lacks the markers {README_BEGIN!r} ... {README_END!r}")
    head, rest = old.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_BEGIN}\n{text}\n{README_END}{tail}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", help="a jaxattr study folder (Amorim et al.)")
    parser.add_argument("--deeplift", help="a folder holding */genomics.json of experiments/deeplift_genomics.py")
    parser.add_argument("--out", default="docs/reproduction.md")
    parser.add_argument("--figures", default=None, help="figure folder (default: --out without .md)")
    parser.add_argument("--variant", action="append", default=[],
                        help="a study folder of the same models under another setting (e.g. jaxattr study "
                             "--perturbation zeros); repeatable")
    parser.add_argument("--readme", default=None,
                        help="also rewrite the summary between the reproduction markers of this README")
    args = parser.parse_args(argv)
    study = load_study(args.study) if args.study else None
    runs = load_deeplift(args.deeplift) if args.deeplift else []
    variants = [load_study(v) for v in args.variant]
    command = "python experiments/reproduction.py" + "".join(
        f" --{k} {v}" for k, v in (("study", args.study), ("deeplift", args.deeplift), ("out", args.out)) if v)
    command += "".join(f" --variant {v}" for v in args.variant)
    claims = all_claims(study, runs)
    path = write_document(study, runs, args.out, args.figures, command=command, claims=claims,
                          variants=variants)
    print(f"written {path}")
    if args.readme:
        doc = os.path.relpath(path, Path(args.readme).parent).replace(os.sep, "/")
        text = summary(*claims, study, runs, doc, variants)
        print(f"written {update_readme(args.readme, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
