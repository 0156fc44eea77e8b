"""The study report: Amorim et al.'s Tables II-VII, significance tests and figures, from results.csv.

:func:`write_report` writes ``report.md``, ``figures/*.png`` and the statistics as CSV files
(``friedman.csv``, ``posthoc_nemenyi.csv``, ``low_vs_high.csv``) into a folder. The tables are
means over folds of the rows of a results frame (layout in :mod:`jaxattr.study.store`):

- Table II: mean AOPC per method x decay with all layers regularised (group ``A``).
- Tables III-VII: mean AOPC per layer group x decay, one table per method.
- Decay 0 is one model shared by all groups (stored with group ``"none"``); as in the paper, its
  value is shown in every group's row. It takes no part in "best group" marks and counts.
- Bold marks the paper's highlights: the best decay of each method in Table II, the best group of
  each decay (> 0) in Tables III-VII.
- For CIFAR-10 every AOPC cell reads ``ours (paper)``, with the paper's value from
  :mod:`jaxattr.study.paper`.

Figures use matplotlib's object-oriented API with the Agg canvas (no pyplot, no global backend).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from jaxattr.study import paper, stats
from jaxattr.study.store import (
    METRIC_COLUMNS,
    RANDOM_METHOD,
    RESULT_COLUMNS,
    UNIT_COLUMNS,
    atomic_write_text,
    expand_baseline,
    group_sort_key,
    select_dataset,
)

__all__ = [
    "group_table",
    "method_table",
    "accuracy_table",
    "best_group_counts",
    "write_report",
]

_ALL_LAYERS = "A"
_PAPER_DATASET = "cifar10"
_DROPS = [c for c in METRIC_COLUMNS if c.startswith("drop_")]
_MISSING = "–"


# --------------------------------------------------------------------------------------------
# Tables as DataFrames
# --------------------------------------------------------------------------------------------

def _prepare(results: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """One dataset's rows with decay 0 copied into every group (no ``"none"`` rows)."""
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame; got {type(results).__name__}")
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results lack the columns {missing}; expected {list(RESULT_COLUMNS)}")
    rows = select_dataset(results, dataset)
    if rows.empty:
        raise ValueError("results hold no rows")
    expanded = expand_baseline(rows)
    if expanded.empty:
        raise ValueError("results hold only the decay-0 model; a table per layer group needs a decay > 0")
    return expanded


def _mean_pivot(rows: pd.DataFrame, index: str, metric: str, order: Callable[[Any], Any]) -> pd.DataFrame:
    """Mean of ``metric`` over folds, ``index`` x decay, rows sorted by ``order``."""
    table = rows.pivot_table(index=index, columns="decay", values=metric, aggfunc="mean", sort=True)
    table = table.loc[sorted(table.index, key=order)]
    table.columns.name = "decay"
    return table.astype(float)


def _method_order(method: str) -> tuple[int, int, str]:
    """Paper methods in the paper's order, then others by name, the random baseline last."""
    if method == RANDOM_METHOD:
        return (2, 0, method)
    if method in paper.PAPER_METHODS:
        return (0, paper.PAPER_METHODS.index(method), method)
    return (1, 0, method)


def group_table(results: pd.DataFrame, method: str, *, metric: str = "aopc",
                dataset: str | None = None) -> pd.DataFrame:
    """Amorim et al. Tables III-VII for ``method``: mean ``metric`` over folds, group x decay.

    Decay 0 (the shared ``"none"`` model) appears in every group's row.
    """
    rows = _prepare(results, dataset)
    rows = rows.loc[rows["method"] == method]
    if rows.empty:
        raise ValueError(f"no results for method {method!r}")
    return _mean_pivot(rows, "group", metric, group_sort_key)


def method_table(results: pd.DataFrame, *, group: str = _ALL_LAYERS, metric: str = "aopc",
                 dataset: str | None = None) -> pd.DataFrame:
    """Amorim et al. Table II: mean ``metric`` over folds, method x decay, for one group (``A``)."""
    rows = _prepare(results, dataset)
    rows = rows.loc[rows["group"] == group]
    if rows.empty:
        raise ValueError(f"no results for group {group!r}")
    return _mean_pivot(rows, "method", metric, _method_order)


def _unit_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per unit: the unit's accuracy (the same on each of its method rows)."""
    return rows.groupby(list(UNIT_COLUMNS), as_index=False, sort=True)["accuracy"].mean()


def accuracy_table(results: pd.DataFrame, *, dataset: str | None = None) -> pd.DataFrame:
    """Amorim et al. Fig. 3 as a table: mean test accuracy over folds, group x decay."""
    return _mean_pivot(_unit_rows(_prepare(results, dataset)), "group", "accuracy", group_sort_key)


def _best_mask(table: pd.DataFrame, axis: int) -> pd.DataFrame:
    """True where a cell equals the maximum of its column (axis=0) or row (axis=1); ties all True."""
    best = table.max(axis=axis)
    return table.eq(best, axis=1 - axis) & table.notna()


def best_group_counts(results: pd.DataFrame, *, metric: str = "aopc",
                      dataset: str | None = None) -> pd.DataFrame:
    """Amorim et al. Fig. 4: per group and method, how often the group has the best mean AOPC.

    Counts over the decays > 0 (decay 0 is one model shared by all groups); tied groups all count.
    The random baseline is left out. Index: groups; columns: methods.
    """
    rows = _prepare(results, dataset)
    methods = sorted(set(rows["method"]) - {RANDOM_METHOD}, key=_method_order)
    counts = {}
    for method in methods:
        table = group_table(rows, method, metric=metric)
        table = table.loc[:, [d for d in table.columns if d > 0]]
        counts[method] = _best_mask(table, axis=0).sum(axis=1)
    groups = sorted(set(rows["group"]), key=group_sort_key)
    frame = pd.DataFrame(counts, index=pd.Index(groups, name="group"), columns=methods)
    return frame.fillna(0).astype(int)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

def _number(value: float, digits: int = 4) -> str:
    """Fixed decimals; tiny non-zero values (the paper's 9.3E-12) in scientific notation."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    if value != 0 and abs(value) < 0.5 * 10.0 ** -digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _decay_header(decay: float) -> str:
    return f"{decay:g}"


def _markdown(cells: pd.DataFrame, *, bold: pd.DataFrame | None = None, corner: str = "") -> str:
    """A GitHub Markdown table of string ``cells``; ``bold`` marks cells to embolden."""
    header = [corner] + [_decay_header(c) if isinstance(c, float) else str(c) for c in cells.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * cells.shape[1]) + "|"]
    for label, row in cells.iterrows():
        texts = []
        for column, text in row.items():
            strong = bold is not None and bool(bold.loc[label, column])
            texts.append(f"**{text}**" if strong else str(text))
        lines.append("| " + " | ".join([str(label)] + texts) + " |")
    return "\n".join(lines)


def _cells(table: pd.DataFrame, paper_values: Callable[[Any, float], float] | None = None,
           paper_digits: int = 4) -> pd.DataFrame:
    """Formatted cells; with ``paper_values(row label, decay)``, ``"ours (paper)"``."""
    def cell(label: Any, decay: float) -> str:
        ours = _number(table.loc[label, decay])
        if paper_values is None:
            return ours
        return f"{ours} ({_number(paper_values(label, decay), paper_digits)})"
    return pd.DataFrame([[cell(label, decay) for decay in table.columns] for label in table.index],
                        index=table.index, columns=table.columns)


def _table_ii_value(method: str, decay: float) -> float:
    table = paper.PAPER_TABLE_II
    matches = [d for d in table.columns if math.isclose(d, decay, rel_tol=1e-9, abs_tol=0.0)]
    return float(table.loc[method, matches[0]]) if method in table.index and matches else math.nan


def _label(method: str) -> str:
    return paper.PAPER_METHOD_LABELS.get(method, method)


def _folds_note(rows: pd.DataFrame) -> str:
    """How many folds the means average, and a warning when cells have fewer (unfinished study)."""
    counts = rows.groupby(["method", "group", "decay"])["fold"].nunique()
    n_folds = rows["fold"].nunique()
    folds = f"{n_folds} fold{'s' if n_folds != 1 else ''}"
    short = int((counts < n_folds).sum())
    if short:
        return f"Means over up to {folds}; {short} cells have fewer (the study is not finished)."
    return f"Means over {folds}."


def _section_table_ii(rows: pd.DataFrame, with_paper: bool) -> list[str]:
    lines = ["## Table II — mean AOPC, all layers regularised (group A)", ""]
    if not (rows["group"] == _ALL_LAYERS).any():
        return lines + ["No results for group A.", ""]
    table = method_table(rows)
    table = table.loc[[m for m in table.index if m != RANDOM_METHOD]]
    if table.empty:
        return lines + ["No attribution methods in the results.", ""]
    cells = _cells(table, _table_ii_value if with_paper else None, paper_digits=3).rename(index=_label)
    bold = _best_mask(table, axis=1).rename(index=_label)
    if with_paper:
        lines += ["Cells: ours (Amorim et al., Table II). Bold: best decay of each method (ours).", ""]
    return lines + [_markdown(cells, bold=bold, corner="method \\ decay"), ""]


def _section_group_tables(rows: pd.DataFrame, methods: Sequence[str], with_paper: bool) -> list[str]:
    lines = []
    for method in methods:
        number = paper.PAPER_TABLE_NUMBERS.get(method)
        title = f"Table {number}" if number else "Table"
        table = group_table(rows, method)
        lookup = None
        if with_paper and method in paper.PAPER_METHODS:
            lookup = lambda group, decay, m=method: paper.paper_value(m, group, decay)  # noqa: E731
        bold = _best_mask(table, axis=0)
        bold.loc[:, [d for d in table.columns if d == 0]] = False
        lines += [f"## {title} — {_label(method)}: mean AOPC per layer group regularised", ""]
        if lookup is not None:
            lines += [f"Cells: ours (Amorim et al., {title}). Bold: best group of each decay (ours).", ""]
        lines += [_markdown(_cells(table, lookup), bold=bold, corner="group \\ decay"), ""]
    return lines


def _section_plain(title: str, table: pd.DataFrame, note: str = "") -> list[str]:
    cells = table.map(_number)
    return [f"## {title}", ""] + ([note, ""] if note else []) + [_markdown(cells, corner="group \\ decay"), ""]


def _section_drops(rows: pd.DataFrame) -> list[str]:
    lines = ["## Confidence drop — all layers regularised (group A)", ""]
    subset = rows.loc[rows["group"] == _ALL_LAYERS]
    if subset.empty:
        return lines + ["No results for group A.", ""]
    table = subset.groupby(["method", "decay"])[_DROPS].mean()
    table = table.loc[sorted(table.index, key=lambda key: (_method_order(key[0]), key[1]))]
    cells = table.map(lambda v: _number(v, 3))
    cells.index = [f"{_label(m)}, {_decay_header(d)}" for m, d in table.index]
    cells.columns = [f"{c[len('drop_'):]} %" for c in _DROPS]
    note = "Mean drop of the class score after perturbing the given share of the pixels, MoRF order."
    return lines + [note, "", _markdown(cells, corner="method, decay"), ""]


def _p_text(p_value: float, alpha: float) -> str:
    if math.isnan(p_value):
        return "n/a"
    text = f"{p_value:.2g}" if p_value < 0.001 else f"{p_value:.3f}"
    return f"**{text}**" if p_value < alpha else text


def _section_friedman(friedman: pd.DataFrame, alpha: float) -> list[str]:
    lines = [f"## Friedman's test across decays (α = {alpha:g})", "",
             "Blocks = folds, treatments = decays, values = mean AOPC per fold; decay 0 is the shared "
             "unregularised model. Bold: significant (Friedman 1937).", ""]
    if friedman.empty:
        return lines + ["No method and group to test.", ""]
    cells = friedman.assign(cell=[_p_text(p, alpha) for p in friedman["p_value"]])
    cells = cells.pivot(index="method", columns="group", values="cell").fillna(_MISSING)
    cells = cells.loc[sorted(cells.index, key=_method_order), sorted(cells.columns, key=group_sort_key)]
    cells = cells.rename(index=_label)
    lines += [_markdown(cells, corner="method \\ group"), ""]
    reasons = friedman.loc[friedman["reason"] != ""]
    for reason, block in reasons.groupby("reason"):
        where = ", ".join(f"{_label(m)}/{g}" for m, g in zip(block["method"], block["group"]))
        lines.append(f"- n/a — {reason}: {where}")
    tested = friedman.loc[friedman["reason"] == ""]
    if len(tested):
        lines += ["", f"Of the {len(tested)} method × group tests: {int(tested['significant'].sum())} "
                  f"significant; {int(tested['significant_holm'].sum())} after Holm's correction over "
                  f"all {len(tested)} (Holm 1979); {int((tested['id_p_value'] < alpha).sum())} by the "
                  "Iman–Davenport F form, which Demšar (2006) recommends for few folds (`friedman.csv`: "
                  "`p_holm`, `id_p_value`)."]
    random = friedman.loc[friedman["method"] == RANDOM_METHOD]
    if len(random):
        lines += ["", f"Random-order baseline: significant in {int(random['significant'].sum())} of "
                  f"{len(random)} groups (Amorim et al. found no significant difference for the random "
                  "perturbation)."]
    return lines + [""]


def _section_low_vs_high(low_high: pd.DataFrame) -> list[str]:
    lines = ["## Low vs high decays (Nemenyi post-hoc)", "",
             f"Pairs (low ∈ {{{', '.join(map(_decay_header, stats.LOW_DECAYS))}}}, high ∈ "
             f"{{{', '.join(map(_decay_header, stats.HIGH_DECAYS))}}}) whose Nemenyi p-value is below α, "
             "counted where Friedman's test rejects (Demšar 2006). Cell: significant pairs / pairs, and "
             "which side has the higher mean rank (the quantity the Nemenyi test compares). "
             "Amorim et al. report significant differences between the "
             "low and the high decays in all methods.", ""]
    if low_high.empty:
        return lines + ["No method and group to compare.", ""]
    def cell(row: pd.Series) -> str:
        side = {True: " (low higher)", False: " (high higher)"}.get(row["low_higher"], "")
        return f"{row['n_significant']}/{row['n_pairs']}{side}"
    low_high = low_high.assign(cell=low_high.apply(cell, axis=1))
    table = low_high.pivot(index="method", columns="group", values="cell")
    table = table.loc[sorted(table.index, key=_method_order), sorted(table.columns, key=group_sort_key)]
    lines += [_markdown(table.fillna(_MISSING).rename(index=_label), corner="method \\ group"), ""]
    detail = low_high.loc[(low_high["group"] == _ALL_LAYERS) & (low_high["n_significant"] > 0)]
    for method, pairs in zip(detail["method"], detail["significant_pairs"]):
        lines.append(f"- {_label(method)}, group A: {pairs}")
    return lines + [""]


def _section_nemenyi(rows: pd.DataFrame, methods: Sequence[str], alpha: float) -> list[str]:
    lines = ["## Nemenyi post-hoc p-values, all layers regularised (group A)", "",
             "All groups: `posthoc_nemenyi.csv`.", ""]
    if not (rows["group"] == _ALL_LAYERS).any():
        return lines + ["No results for group A.", ""]
    for method in methods:
        if not ((rows["method"] == method) & (rows["group"] == _ALL_LAYERS)).any():
            continue
        table = stats.nemenyi(rows, method=method, group=_ALL_LAYERS)
        cells = table.map(lambda p: _p_text(p, alpha))
        cells.index = [_decay_header(d) for d in cells.index]
        lines += [f"### {_label(method)}", "", _markdown(cells, corner="decay"), ""]
    return lines


_PROTOCOL = (
    "Amorim et al. replace the most relevant pixels by a random RGB value drawn uniformly (the "
    "baseline replaces randomly chosen pixels the same way), take the classifier's output for the "
    "class as confidence, report drops at 5, 10, 20, 30, 40, 50 and 75 % of the pixels, and compute "
    "AOPC with \"perturbation steps corresponding to 10 %\". We read that as L = 10 steps of 10 % of "
    "the pixels each (1×1 regions): AOPC = mean over k = 0..L of f(x⁽⁰⁾) − f(x⁽ᵏ⁾). The settings of "
    "this study follow.")


def _section_perturbation(perturbation: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Perturbation settings", "", _PROTOCOL, ""]
    if not perturbation:
        return lines + ["(No settings were given to the report.)", ""]
    return lines + [f"- `{key}`: `{value}`" for key, value in sorted(perturbation.items())] + [""]


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _bar_width(n_bars: int) -> float:
    """Figure width (inches) for ``n_bars`` groups of bars plus an outside legend."""
    return max(7.0, 1.1 * n_bars + 4.0)


def _figure_accuracy(rows: pd.DataFrame, path: Path) -> Path:
    """Fig. 3: mean accuracy (± std over folds) per group, one bar per decay."""
    units = _unit_rows(rows)
    mean = _mean_pivot(units, "group", "accuracy", group_sort_key)
    std = units.pivot_table(index="group", columns="decay", values="accuracy", aggfunc="std").reindex_like(mean)
    figure = Figure(figsize=(_bar_width(len(mean.index)), 4), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / len(mean.columns)
    colours = _colours(len(mean.columns))
    x = np.arange(len(mean.index))
    for i, decay in enumerate(mean.columns):
        axes.bar(x + (i - (len(mean.columns) - 1) / 2) * width, mean[decay], width, yerr=std[decay].fillna(0),
                 label=_decay_header(decay), color=colours[i], capsize=2)
    axes.set_xticks(x, list(mean.index))
    low = np.nanmin(mean.to_numpy())
    axes.set_ylim(max(0.0, low - 0.1 * (1 - low) - 0.05), 1.0)
    axes.set_xlabel("layer group regularised")
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy per layer group and L2 decay\n(cf. Amorim et al. Fig. 3)")
    axes.legend(title="L2 decay", fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _figure_best_counts(counts: pd.DataFrame, path: Path) -> Path:
    """Fig. 4: per group, how often it had the best AOPC, stacked by method."""
    figure = Figure(figsize=(_bar_width(len(counts.index)), 4), layout="constrained")
    axes = figure.add_subplot()
    bottom = np.zeros(len(counts.index))
    for colour, method in zip(_colours(len(counts.columns)), counts.columns):
        axes.bar(counts.index, counts[method], bottom=bottom, label=_label(method), color=colour)
        bottom += counts[method].to_numpy()
    axes.set_xlabel("layer group regularised")
    axes.set_ylabel("times best (decays > 0)")
    axes.set_title("Times a layer group gave the best mean AOPC\n(cf. Amorim et al. Fig. 4)")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _figure_curves(curves: Mapping[str, Any], path: Path) -> Path:
    """Mean perturbation curve per method; the random baseline dashed."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    methods = sorted(curves, key=_method_order)
    for colour, method in zip(_colours(len(methods)), methods):
        curve = np.asarray(curves[method], dtype=float)
        if curve.ndim == 2:
            curve = curve.mean(axis=0)
        if curve.ndim != 1 or curve.size < 2:
            raise ValueError(f"curves[{method!r}] must be a curve (steps + 1,) or curves (n, steps + 1); "
                             f"got shape {np.shape(curves[method])}")
        style = dict(color="black", linestyle="--") if method == RANDOM_METHOD else dict(color=colour)
        axes.plot(np.arange(curve.size), curve, marker=".", label=_label(method), **style)
    axes.set_xlabel("perturbation step k (most relevant first)")
    axes.set_ylabel("class score f(x⁽ᵏ⁾)")
    axes.set_title("Mean perturbation curves")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(alpha=0.3)
    return _save(figure, path)


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = np.nanmin(image), np.nanmax(image)
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _figure_saliency(decay: float, images: Any, maps: Mapping[str, Any], path: Path, limit: int = 8) -> Path:
    """Inputs (first column) and one relevance map per method (summed over channels, red > 0 > blue)."""
    images = np.asarray(images)
    methods = sorted(maps, key=_method_order)
    n = min(len(images), limit)
    for method in methods:
        if np.shape(maps[method])[:3] != images.shape[:3]:
            raise ValueError(f"saliency maps of {method!r} have shape {np.shape(maps[method])}; expected the "
                             f"images' (n, height, width) = {images.shape[:3]} (channels optional)")
    figure = Figure(figsize=(1.6 * (len(methods) + 1), 1.6 * n + 0.4), layout="constrained")
    grid = figure.subplots(n, len(methods) + 1, squeeze=False)
    for row in range(n):
        grid[row, 0].imshow(_as_image(images[row]), cmap="gray")
        for col, method in enumerate(methods, start=1):
            relevance = np.asarray(maps[method][row], dtype=float)
            if relevance.ndim == 3:
                relevance = relevance.sum(axis=-1)
            bound = float(np.nanmax(np.abs(relevance))) or 1.0
            grid[row, col].imshow(relevance, cmap="bwr", vmin=-bound, vmax=bound)
    for col, title in enumerate(["input"] + [_label(m) for m in methods]):
        grid[0, col].set_title(title, fontsize="small")
    for axes in grid.flat:
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f"Saliency maps, L2 decay {_decay_header(decay)}", fontsize="medium")
    return _save(figure, path)


def _colours(n: int) -> list[Any]:
    cmap = colormaps["viridis" if n > 10 else "tab10"]
    return [cmap(i / max(n - 1, 1)) if n > 10 else cmap(i) for i in range(n)]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

def _write_figures(rows: pd.DataFrame, figures: Path, curves: Mapping[str, Any] | None,
                   saliency: Mapping[float, tuple[Any, Mapping[str, Any]]] | None) -> list[str]:
    """Writes the figures; returns their Markdown lines."""
    figures.mkdir(parents=True, exist_ok=True)
    made = [("Fig. 3 — accuracy", _figure_accuracy(rows, figures / "fig3_accuracy.png"))]
    counts = best_group_counts(rows)
    if counts.shape[1]:
        made.append(("Fig. 4 — best group counts", _figure_best_counts(counts, figures / "fig4_best_group.png")))
    if curves:
        made.append(("Perturbation curves", _figure_curves(curves, figures / "perturbation_curves.png")))
    for decay, (images, maps) in sorted((saliency or {}).items()):
        name = f"saliency_decay_{_decay_header(float(decay))}.png"
        made.append((f"Saliency, decay {_decay_header(float(decay))}",
                     _figure_saliency(float(decay), images, maps, figures / name)))
    return ["## Figures", ""] + [f"### {title}\n\n![{title}](figures/{path.name})\n" for title, path in made]


def write_report(results: pd.DataFrame, out_dir: str | Path, *, dataset: str,
                 curves: Mapping[str, Any] | None = None,
                 saliency: Mapping[float, tuple[Any, Mapping[str, Any]]] | None = None,
                 perturbation: Mapping[str, Any] | None = None, alpha: float = stats.ALPHA) -> Path:
    """Write ``out_dir/report.md``, ``out_dir/figures/`` and the statistics CSVs; return report.md's path.

    Args:
      results: a results frame (:data:`jaxattr.study.store.RESULT_COLUMNS`), e.g.
        ``ResultsStore(dir).read_results()``; only the rows of ``dataset`` are used.
      out_dir: output folder (created).
      dataset: which dataset to report; for ``"cifar10"`` the paper's values are shown beside ours.
      curves: method -> mean perturbation curve ``(steps + 1,)`` (or ``(n, steps + 1)``, averaged);
        ``"random"`` is drawn as the baseline.
      saliency: decay -> ``(images (n, H, W[, C]), {method: relevance maps (n, H, W[, C])})``.
      perturbation: the perturbation settings to list (e.g. ``StudyConfig.perturbation``).
      alpha: significance level of the tests (the paper's 5 %).
    """
    alpha = stats.check_alpha(alpha)
    rows = _prepare(results, dataset)
    selected = select_dataset(results, dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with_paper = dataset == _PAPER_DATASET
    methods = sorted(set(rows["method"]) - {RANDOM_METHOD}, key=_method_order)

    friedman = stats.friedman(selected, alpha=alpha)
    low_high = stats.low_vs_high(selected, alpha=alpha)
    for name, frame in (("friedman.csv", friedman), ("posthoc_nemenyi.csv", stats.posthoc(selected, alpha=alpha)),
                        ("low_vs_high.csv", low_high)):
        atomic_write_text(out / name, frame.to_csv(index=False))

    lines = [f"# Regularisation vs. interpretability — {dataset}", "",
             "Reproduction of Amorim et al., \"Interpretability vs. Complexity: The Friction in Deep Neural "
             "Networks\" (IJCNN 2020). " + _folds_note(rows) + " Decay 0 is one unregularised model, shown in "
             "every group's row.", ""]
    lines += _section_table_ii(rows, with_paper)
    lines += _section_group_tables(rows, methods, with_paper)
    lines += _section_plain("Accuracy — mean test accuracy per layer group", accuracy_table(rows),
                            "Cf. Amorim et al. Fig. 3.")
    if (rows["method"] == RANDOM_METHOD).any():
        lines += _section_plain("Random baseline — mean AOPC of random-order perturbation",
                                group_table(rows, RANDOM_METHOD))
    lines += _section_drops(rows)
    lines += _section_friedman(friedman, alpha)
    lines += _section_low_vs_high(low_high)
    lines += _section_nemenyi(rows, methods, alpha)
    lines += _section_perturbation(perturbation)
    lines += _write_figures(rows, out / "figures", curves, saliency)
    return atomic_write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")
