import jax
import pytest

from jaxattr.training.groups import GROUPS, NOT_DECAYED, group_mask, layer_labels

CONVS = {b: [f"block{b}_conv1", f"block{b}_conv2"] for b in (1, 2, 3)}
EXPECTED = {
    "B1": CONVS[1],
    "B2": CONVS[2],
    "B3": CONVS[3],
    "D1": ["dense1"],
    "D2": ["dense2"],
    "B": CONVS[1] + CONVS[2] + CONVS[3],
    "D": ["dense1", "dense2"],
    "A": CONVS[1] + CONVS[2] + CONVS[3] + ["dense1", "dense2"],
}


def selected(mask):
    paths = jax.tree_util.tree_leaves_with_path(mask)
    return sorted(tuple(k.key for k in path) for path, m in paths if m)


def test_groups_are_the_papers_in_table_order():
    assert GROUPS == ("B1", "B2", "B3", "D1", "D2", "B", "D", "A")
    assert set(EXPECTED) == set(GROUPS)


@pytest.mark.parametrize("group", GROUPS)
def test_group_mask_selects_exactly_the_groups_kernels(params, group):
    mask = group_mask(params, group)
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    assert selected(mask) == sorted((layer, "kernel") for layer in EXPECTED[group])


@pytest.mark.parametrize("group", GROUPS)
def test_biases_are_never_selected(params, group):
    mask = group_mask(params, group)
    assert not any(mask[layer]["bias"] for layer in mask)


def test_group_mask_accepts_the_variables_wrapper(params):
    mask = group_mask({"params": params}, "D2")
    assert selected(mask) == [("params", "dense2", "kernel")]


def test_layer_labels(params):
    labels = layer_labels(params)
    assert labels["block2_conv1"] == {"kernel": "B2", "bias": NOT_DECAYED}
    assert labels["dense1"]["kernel"] == "D1"


def test_unknown_layer_names_are_only_in_group_a():
    params = {"encoder": {"kernel": 1.0, "bias": 0.0}, "dense1": {"kernel": 1.0}}
    assert group_mask(params, "A") == {
        "encoder": {"kernel": True, "bias": False}, "dense1": {"kernel": True}
    }
    assert group_mask(params, "D")["encoder"]["kernel"] is False


def test_unknown_group_names_the_allowed_ones(params):
    with pytest.raises(ValueError, match=r"group must be one of \('B1'.*'A'\), got 'B4'"):
        group_mask(params, "B4")


def test_group_selecting_no_kernel_is_an_error():
    params = {"block1_conv1": {"kernel": 1.0}, "dense1": {"kernel": 1.0}}
    with pytest.raises(ValueError, match=r"'B3' selects no kernel.*\['B1', 'D1'\]"):
        group_mask(params, "B3")
