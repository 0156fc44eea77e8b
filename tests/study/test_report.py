"""The study report: tables equal the fold means, the paper beside CIFAR-10, figures are written."""
import numpy as np
import pandas as pd
import pytest

from jaxattr.study import report
from jaxattr.study.store import BASELINE_GROUP, METRIC_COLUMNS, RANDOM_METHOD, StudyConfig, sort_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECAYS = (0.0, 1e-3, 1e-2)
GROUPS = ("B1", "A")
METHODS = ("lrp", "gradient")


def synthetic_results(dataset: str = "digits", seed: int = 0) -> pd.DataFrame:
    """2 folds x 3 decays x 2 groups x (2 methods + random); AOPC falls with decay, more in group A."""
    rng = np.random.default_rng(seed)
    config = StudyConfig(dataset=dataset, folds=2, decays=DECAYS, groups=GROUPS, methods=METHODS)
    rows = []
    for unit in config.units():
        accuracy = 0.9 - unit.decay * (20 if unit.group == "A" else 5) + rng.normal(0, 0.01)
        for method in config.all_methods:
            level = 0.05 if method == RANDOM_METHOD else 0.4 - unit.decay * (30 if unit.group == "A" else 3)
            row = dict(unit.as_dict(), method=method, accuracy=accuracy)
            row.update({c: rng.random() for c in METRIC_COLUMNS[2:]})
            row["aopc"] = level + rng.normal(0, 0.01)
            rows.append(row)
    return sort_results(pd.DataFrame(rows))


def expected_mean(results, method, group, decay, metric="aopc"):
    group = BASELINE_GROUP if decay == 0 else group
    rows = results.loc[(results["method"] == method) & (results["group"] == group) & (results["decay"] == decay)]
    return rows[metric].mean()


def test_group_table_is_the_mean_over_folds_with_decay_zero_in_every_row():
    results = synthetic_results()
    table = report.group_table(results, "lrp")
    assert table.shape == (2, 3)
    assert list(table.index) == ["B1", "A"] and list(table.columns) == list(DECAYS)
    for group in GROUPS:
        for decay in DECAYS:
            assert table.loc[group, decay] == pytest.approx(expected_mean(results, "lrp", group, decay))
    assert table.loc["B1", 0.0] == table.loc["A", 0.0]


def test_method_table_is_table_ii():
    results = synthetic_results()
    table = report.method_table(results)
    assert list(table.index) == ["gradient", "lrp", RANDOM_METHOD]  # paper order, random last
    assert table.loc["gradient", 1e-2] == pytest.approx(expected_mean(results, "gradient", "A", 1e-2))


def test_accuracy_table_counts_each_unit_once():
    results = synthetic_results()
    table = report.accuracy_table(results)
    units = results.drop_duplicates(["fold", "decay", "group"])
    assert table.loc["A", 1e-3] == pytest.approx(units.loc[(units["group"] == "A") & (units["decay"] == 1e-3),
                                                           "accuracy"].mean())
    assert table.shape == (2, 3)


def test_best_group_counts_cover_every_decay_above_zero():
    counts = report.best_group_counts(synthetic_results())
    assert list(counts.columns) == ["gradient", "lrp"]
    assert list(counts.index) == ["B1", "A"]
    assert (counts.sum(axis=0) == 2).all()  # two decays > 0, no ties in the synthetic data
    assert (counts.loc["B1"] == 2).all()  # group A loses AOPC faster


def test_write_report_files_and_values(tmp_path):
    results = synthetic_results()
    path = report.write_report(results, tmp_path / "out", dataset="digits", perturbation={"steps": 10})
    assert path == tmp_path / "out" / "report.md"
    text = path.read_text()
    for title in ("Table II", "Table VII", "Table V", "Accuracy", "Random baseline", "Friedman", "Nemenyi",
                  "Low vs high", "Perturbation settings", "`steps`: `10`"):
        assert title in text
    assert "(0.4" not in text  # no paper values for digits
    lrp = report.group_table(results, "lrp")
    assert f"| A | {lrp.loc['A', 0.0]:.4f} |" in text
    for name in ("friedman.csv", "posthoc_nemenyi.csv", "low_vs_high.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    friedman = pd.read_csv(tmp_path / "out" / "friedman.csv", keep_default_na=False)
    assert len(friedman) == 3 * 2  # (2 methods + random) x 2 groups
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert figures == ["fig3_accuracy.png", "fig4_best_group.png"]
    for name in figures:
        data = (tmp_path / "out" / "figures" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
        assert f"figures/{name}" in text


def test_cifar10_report_puts_the_paper_beside_ours(tmp_path):
    results = synthetic_results("cifar10")
    text = report.write_report(results, tmp_path, dataset="cifar10").read_text()
    ours = report.method_table(results).loc["lrp", 1e-3]
    assert f"{ours:.4f} (0.427)" in text  # Table II, LRP at 1e-3
    ours = report.group_table(results, "gradient").loc["B1", 1e-2]
    assert f"{ours:.4f} (0.4145)" in text  # Table V, B1 at 1e-2
    table_vii = text[text.index("## Table VII"):text.index("## Accuracy")]
    assert "**" in table_vii  # best group per decay in bold


def test_curves_and_saliency_figures(tmp_path):
    rng = np.random.default_rng(0)
    curves = {"lrp": np.linspace(1, 0, 11), "gradient": rng.random((4, 11)), RANDOM_METHOD: np.linspace(1, 0.6, 11)}
    images = rng.random((3, 8, 8, 3))
    saliency = {0.0: (images, {"lrp": rng.normal(size=(3, 8, 8, 3)), "gradient": rng.normal(size=(3, 8, 8))}),
                1e-2: (images[..., :1], {"lrp": rng.normal(size=(3, 8, 8))})}
    text = report.write_report(synthetic_results(), tmp_path, dataset="digits", curves=curves,
                               saliency=saliency).read_text()
    for name in ("perturbation_curves.png", "saliency_decay_0.png", "saliency_decay_0.01.png"):
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
        assert name in text


def test_bad_inputs_are_clear_errors(tmp_path):
    results = synthetic_results()
    with pytest.raises(ValueError, match="not in the results"):
        report.write_report(results, tmp_path, dataset="cifar10")
    with pytest.raises(ValueError, match="lack the columns"):
        report.write_report(results.drop(columns="accuracy"), tmp_path, dataset="digits")
    with pytest.raises(ValueError, match="saliency maps"):
        images = np.zeros((2, 8, 8, 3))
        report.write_report(results, tmp_path, dataset="digits", saliency={0.0: (images, {"lrp": np.zeros((2, 4, 4))})})
    with pytest.raises(ValueError, match="no results for method"):
        report.group_table(results, "deconvnet")
