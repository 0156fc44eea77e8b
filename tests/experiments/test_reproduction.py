"""experiments/reproduction.py: the document's structure on a quick-study-shaped folder, on a full grid
with an unfinished fold, and on small DeepLIFT results (synthetic numbers: no training, a few seconds)."""
import json
import re

import numpy as np
import pandas as pd
import pytest

import scripts  # noqa: E402  (tests/ is on sys.path, see conftest.py)

from jaxattr.study import paper, runner
from jaxattr.study.store import METRIC_COLUMNS, RANDOM_METHOD, ResultsStore

PNG = b"\x89PNG\r\n\x1a\n"
ROW = re.compile(r"^\| ([AS])(\d+) \|")
QUICK = runner.QUICK  # the grid of `jaxattr study --quick`
FULL = dict(folds=4)  # the paper's grid (the defaults), 4 folds


def _module():
    return scripts.load("experiments/reproduction.py")


def _study(path, grid, skip_last_units=0, seed=0, random_aopc=lambda unit: 0.1):
    """A study folder with synthetic unit files: AOPC = the paper's value (Tables II-VII) plus a
    little noise, the random baseline ``random_aopc(unit)`` (flat), accuracy falling in group A
    to chance at 0.05 and a little higher than unregularised in group D1."""
    rng = np.random.default_rng(seed)
    config = runner.study_config(**grid)
    store = ResultsStore(path, config)
    units = config.units()
    for unit in units[:len(units) - skip_last_units]:
        accuracy = 0.95 - unit.decay * (17 if unit.group == "A" else 0) + 0.01 * (unit.group == "D1")
        accuracy += rng.normal(0, 0.002)
        rows = []
        for method in config.all_methods:
            aopc = random_aopc(unit) if method == RANDOM_METHOD else paper.paper_value(method, unit.group, unit.decay)
            row = {c: rng.random() for c in METRIC_COLUMNS}
            row.update(method=method, accuracy=accuracy, aopc=aopc + rng.normal(0, 0.001))
            rows.append(dict(row, **unit.as_dict()))
        # plain CSV, as write_unit would write it, without its fsyncs (164 files)
        pd.DataFrame(rows).to_csv(store.unit_path(unit), index=False)
    return path


def _deeplift(path, seeds=(0, 1)):
    for seed in seeds:
        rng = np.random.default_rng(seed)
        motif = lambda base: {"GATA": base + rng.normal(0, 0.01), "TAL1": base + rng.normal(0, 0.01), "seconds": 1.0}
        run = {"settings": {"n_train": 12000, "n_val": 1000, "n_test": 1000, "epochs": 8, "learning_rate": 0.003,
                            "pool_padding": "SAME", "seed": seed},
               "epochs_run": 8, "test_auroc": 0.9 + rng.normal(0, 0.005), "paper_auroc": 0.907,
               "motif_recovery": {"n_sequences": 400, "|gradient|": motif(0.91), "gradient_x_input": motif(0.7),
                                  "deeplift_zero_eq22": motif(0.85)},
               "fig1": {"gradient": [0.0, 0.0], "deeplift": [-0.4 / 3, -0.8 / 3], "deeplift_sum": -0.4},
               "fig2": {"digits_test_accuracy": 0.9,
                        "lrp0_vs_gradient_x_input": {"n_images": 297, "relative": 2e-7},
                        "deletion_aopc": {"steps": 16, "region": 1, "perturbation": "uniform", "n_images": 297,
                                          "|gradient|": 0.5, "gradient_x_input": 0.55, "deeplift": 0.6,
                                          "random": 0.4}}}
        folder = path / f"seed_{seed}"
        folder.mkdir(parents=True)
        (folder / "genomics.json").write_text(json.dumps(run))
    return path


def _rows(text):
    """``{"A": [verdict, ...], "S": [...]}`` from the claim tables, checking each row's shape."""
    verdicts = {"A": [], "S": []}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert len(cells) == 8, line
            assert all(cells), line  # claim, where, paper, ours, settings, criterion, verdict all filled
            assert int(match.group(2)) == len(verdicts[match.group(1)]) + 1, "rows are numbered in order"
            verdicts[match.group(1)].append(cells[-1].strip("*"))
    return verdicts


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reproduction")
    m = _module()
    deeplift = m.load_deeplift(_deeplift(tmp / "deeplift"))
    quick = m.write_document(m.load_study(_study(tmp / "quick", QUICK)), deeplift, tmp / "docs" / "quick.md")
    full_study = m.load_study(_study(tmp / "full", FULL, skip_last_units=3))
    full = m.write_document(full_study, deeplift, tmp / "docs" / "full.md")
    return m, quick, full, full_study


def test_sections_rows_and_verdicts(documents):
    m, quick, full, _ = documents
    for path in (quick, full):
        text = path.read_text()
        assert text.startswith("# Does it reproduce?")
        assert "\n## Amorim et al. 2020" in text and "\n## Shrikumar et al." in text
        verdicts = _rows(text)
        assert len(verdicts["A"]) == 17 and len(verdicts["S"]) == 9  # one row per claim
        assert set(verdicts["A"] + verdicts["S"]) <= set(m.VERDICTS)
        for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
            assert (path.parent / image).read_bytes().startswith(PNG), image


def test_quick_study_cannot_test_what_it_lacks(documents):
    _, quick, _, _ = documents
    text = quick.read_text()
    verdicts = _rows(text)
    assert "2 of 2 folds" in text and "Partial study" not in text
    assert verdicts["A"][3] == "cannot be tested here"  # no decay 0.05 in the quick grid
    assert "the study has no decay 0.05" in text
    assert verdicts["A"][2] == "reproduces"  # low > high decay holds in the synthetic numbers
    assert verdicts["A"][-1] == "cannot be tested here" and "CIFAR-10 is not reachable" in text


def test_full_grid_with_an_unfinished_fold(documents):
    _, _, full, study = documents
    assert study.folds == (0, 1, 2) and study.partial_folds == (3,)
    text = full.read_text()
    assert "3 of 4 folds" in text and "Partial study" in text
    verdicts = _rows(text)
    # the synthetic study copies the paper's numbers: every testable Amorim claim reproduces
    assert verdicts["A"][:-1] == ["reproduces"] * 16, verdicts["A"]
    assert verdicts["A"][-1] == "cannot be tested here"
    # the DeepLIFT rows computable from the JSON are computed: the synthetic numbers have |gradient| ahead
    # of DeepLIFT ahead of gradient × input, and gradient × input no worse on GATA than TAL1 by design
    assert verdicts["S"][0] == "reproduces" and verdicts["S"][5] == "reproduces"
    assert verdicts["S"][6] == "cannot be tested here" and verdicts["S"][8] == "reproduces"


def test_readme_summary_between_markers(tmp_path, documents):
    m, quick, _, _ = documents
    study = m.load_study(quick.parent.parent / "quick")
    runs = m.load_deeplift(quick.parent.parent / "deeplift")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Does it reproduce?\n\n{m.README_BEGIN}\nold\n{m.README_END}\n\n## next\n")
    m.update_readme(readme, m.summary(*m.all_claims(study, runs), study, runs, "docs/reproduction.md"))
    text = readme.read_text()
    assert "\nold\n" not in text and text.endswith(f"{m.README_END}\n\n## next\n")
    block = text.split(m.README_BEGIN)[1].split(m.README_END)[0]
    assert "[docs/reproduction.md](docs/reproduction.md)" in block and "2 of 2 folds" in block
    bullets = [line for line in block.splitlines() if line.lstrip().startswith("- ")]
    assert 5 <= len(bullets) <= 10
    assert all(re.search(r"\*\*(" + "|".join(m.VERDICTS) + r")\*\*", b) for b in bullets[1:] if b.startswith("  "))


def test_friedman_rows_wait_for_enough_folds(tmp_path):
    """With 2 folds and 6 decays Friedman's test cannot reject (smallest p = 0.075): the rows that
    rest on it say so instead of "does not reproduce" (or a trivial "reproduces" for A12)."""
    m = _module()
    study = m.load_study(_study(tmp_path / "two", dict(folds=2)))
    text = m.write_document(study, [], tmp_path / "docs" / "two.md").read_text()
    verdicts = _rows(text)
    assert verdicts["A"][9:12] == ["cannot be tested here"] * 3  # A10, A11, A12
    assert "smallest attainable p = 0.075" in text


@pytest.mark.parametrize("working, verdict", [(lambda d: 0.1, "partly"),
                                              (lambda d: 0.1 + 3 * d, "does not reproduce")])
def test_random_baseline_with_collapsed_models(tmp_path, working, verdict):
    """A collapsed model (λ = 0.05: constant output, as in the paper's own Table II) loses nothing
    under any order, so Friedman over all decays rejects whatever the working models do. A12
    says so: "partly" when the decays whose models work do not differ, "does not" when they do."""
    m = _module()

    def random_aopc(unit):
        return 1e-4 * unit.fold if unit.decay == 0.05 else working(unit.decay)

    study = m.load_study(_study(tmp_path / "s", dict(folds=6), random_aopc=random_aopc))
    text = m.write_document(study, [], tmp_path / "docs" / "s.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| A12 |"))
    assert "without the collapsed λ = 0.05" in row and "over 5 decays" in row
    assert _rows(text)["A"][11] == verdict


def test_variant_study_section_and_summary(tmp_path, documents):
    """``--variant``: a study of the same models under another setting gets a section with the
    rows it can test, numbered as in the main table, and the README summary names the verdicts
    it changes. Here the variant's random order falls with λ (0.1 + 3λ): A12 changes."""
    m, _, _, full_study = documents
    variant = m.load_study(_study(tmp_path / "zeros", dict(folds=4, groups=("A",), decays=(0.0, 1e-4, 1e-3, 5e-3, 1e-2),
                                                           perturbation="zeros"),
                                  random_aopc=lambda unit: 0.1 + 3 * unit.decay))
    assert m.setting_difference(full_study, variant) == (
        "zeros fill (main study: uniform); groups A only; decays 0, 0.0001, 0.001, 0.005, 0.01 only")
    numbers, claims = m.variant_claims(variant)
    assert numbers[:3] == [1, 2, 3] and 12 in numbers and 16 not in numbers  # no groups: no Fig. 4 row
    text = m.write_document(full_study, [], tmp_path / "docs" / "v.md", variants=[variant]).read_text()
    section = text.split("### The same claims with zeros fill")[1]
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| A")]
    assert rows == [f"| A{i}" for i in numbers]
    assert "Verdicts that change: A12 reproduces → **does not reproduce**" in section
    main, deeplift = m.all_claims(full_study, [])
    lines = m.summary(main, deeplift, full_study, [], "v.md", [variant]).splitlines()
    (line,) = [line for line in lines if "same models" in line]
    assert line.startswith("  - The same models with zeros fill (main study: uniform); groups A only; decays 0, "
                           "0.0001, 0.001, 0.005, 0.01 only: ")
    assert "A12 **does not reproduce**" in line  # (and A13: the random order now rises with λ)
