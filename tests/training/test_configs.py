import pytest

from jaxattr.training import GROUPS, PAPER_DECAYS, Config, paper_configs


def test_paper_grid_has_41_configurations_with_one_shared_zero_decay():
    configs = paper_configs()
    assert len(configs) == 1 + 5 * 8 == 41
    assert configs[0] == Config(0.0, "A")
    assert len(set(configs)) == 41
    assert [c for c in configs if c.decay == 0] == [Config(0.0, "A")]
    for decay in PAPER_DECAYS[1:]:
        assert [c.group for c in configs if c.decay == decay] == list(GROUPS)


def test_paper_configs_subsets_and_canonical_zero():
    assert paper_configs([1e-3, 0.0], ["D", "B1"]) == [
        Config(1e-3, "D"), Config(1e-3, "B1"), Config(0.0, "A")
    ]
    assert Config(0.0, "B2").canonical() == Config(0.0, "A")
    assert Config(1e-2, "B2").canonical() == Config(1e-2, "B2")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(groups=["B1", "E"]), ValueError, r"group must be one of .*got 'E'"),
        (dict(decays=[1e-3, -1e-3]), ValueError, r"decay must be a finite number >= 0, got -0.001"),
        (dict(decays=[]), ValueError, "at least one decay and one group"),
    ],
)
def test_paper_configs_rejects_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        paper_configs(**kwargs)
