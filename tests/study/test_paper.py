"""The published numbers of Amorim et al. (Tables II-VII) as data."""
import math

import numpy as np
import pytest

from jaxattr.study import paper

# DESIGN.md §6, Table II: mean AOPC, all layers, decays 0, 1e-4, 1e-3, 5e-3, 1e-2 (5e-2 is "~0").
DESIGN_TABLE_II = {
    "deconvnet": (0.314, 0.293, 0.253, 0.232, 0.134),
    "deep_taylor": (0.218, 0.230, 0.229, 0.201, 0.114),
    "gradient": (0.419, 0.413, 0.417, 0.356, 0.226),
    "guided_backprop": (0.269, 0.281, 0.263, 0.224, 0.132),
    "lrp": (0.423, 0.421, 0.427, 0.362, 0.231),
}


def test_table_ii_shape_and_labels():
    table = paper.paper_table_ii()
    assert table.shape == (5, 6)
    assert tuple(table.index) == paper.PAPER_METHODS
    assert tuple(table.columns) == paper.PAPER_DECAYS == (0.0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2)
    assert paper.PAPER_TABLE_II.equals(table)


@pytest.mark.parametrize("method", sorted(DESIGN_TABLE_II))
def test_table_ii_matches_design(method):
    row = paper.paper_table_ii().loc[method]
    np.testing.assert_array_equal(row.to_numpy()[:5], DESIGN_TABLE_II[method])
    assert 0 < row[5e-2] < 1e-10  # printed 9.3E-12


@pytest.mark.parametrize("method", paper.PAPER_METHODS)
def test_group_tables_shape_and_shared_decay_zero(method):
    table = paper.paper_table(method)
    assert table.shape == (8, 6)
    assert tuple(table.index) == paper.PAPER_GROUPS == ("B1", "B2", "B3", "D1", "D2", "B", "D", "A")
    assert tuple(table.columns) == paper.PAPER_DECAYS
    assert table[0.0].nunique() == 1  # decay 0 is one model shared by all groups
    assert table.loc["A", 0.05] == 0.0  # printed 0.0000
    assert np.all((table.to_numpy() >= 0) & (table.to_numpy() < 1))


@pytest.mark.parametrize("method", paper.PAPER_METHODS)
def test_table_ii_is_row_a_rounded(method):
    row_a = paper.paper_table(method).loc["A"].to_numpy()[:5]
    table_ii = paper.paper_table_ii().loc[method].to_numpy()[:5]
    np.testing.assert_allclose(table_ii, row_a, atol=5e-4 + 1e-12)


@pytest.mark.parametrize("method, group, decay, value", [
    ("deconvnet", "D1", 5e-2, 0.3666),
    ("deconvnet", "B3", 5e-2, 0.3228),
    ("deep_taylor", "B", 5e-2, 0.1453),
    ("deep_taylor", "D1", 1e-3, 0.2465),
    ("gradient", "D2", 1e-3, 0.4291),
    ("gradient", "B2", 5e-2, 0.3898),
    ("guided_backprop", "D", 5e-2, 0.3022),
    ("guided_backprop", "B2", 1e-4, 0.2884),
    ("lrp", "B3", 5e-3, 0.4344),
    ("lrp", "D1", 5e-2, 0.4439),
])
def test_group_table_spot_values(method, group, decay, value):
    assert paper.paper_table(method).loc[group, decay] == value
    assert paper.paper_value(method, group, decay) == value


def test_paper_value_lookups():
    assert paper.paper_value("lrp", "none", 0.0) == 0.4226  # the shared decay-0 model
    assert paper.paper_value("lrp", "B1", 0) == 0.4226
    assert paper.paper_value("lrp", "A", 0.001) == 0.4265
    assert paper.paper_value("lrp", "A", 0.0010000000000000002) == 0.4265
    assert math.isnan(paper.paper_value("lrp", "A", 0.02))
    assert math.isnan(paper.paper_value("lrp", "C1", 0.001))
    assert math.isnan(paper.paper_value("deeplift", "A", 0.001))


def test_tables_are_fresh_copies():
    table, table_ii = paper.paper_table("lrp"), paper.paper_table_ii()
    table.loc["A", 0.0] = table_ii.loc["lrp", 0.0] = 99.0
    assert paper.paper_table("lrp").loc["A", 0.0] == 0.4226
    assert paper.paper_table_ii().loc["lrp", 0.0] == 0.423


def test_unknown_method_names_the_choices():
    with pytest.raises(KeyError, match="deconvnet"):
        paper.paper_table("smoothgrad")


def test_labels_and_table_numbers_cover_every_method():
    assert set(paper.PAPER_METHOD_LABELS) == set(paper.PAPER_METHODS)
    assert [paper.PAPER_TABLE_NUMBERS[m] for m in paper.PAPER_METHODS] == ["III", "IV", "V", "VI", "VII"]
