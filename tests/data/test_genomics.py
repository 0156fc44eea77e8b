"""The simulated genomics data of the DeepLIFT paper (§3.2)."""

import numpy as np
import pytest

from jaxattr.data import genomics as G


@pytest.fixture(scope="module")
def data():
    return G.simulate(400, seed=3)


def test_shapes_and_one_hot(data):
    assert data.x.shape == (400, 200, 4) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x.sum(-1), 1.0)
    assert data.labels.shape == (400,) and data.tasks.shape == (400, 3)
    assert data.motif_mask.shape == (400, 200, 2) and data.instances.shape[1] == 3


def test_deterministic():
    a, b, c = G.simulate(50, seed=1), G.simulate(50, seed=1), G.simulate(50, seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.x, c.x)


def test_labels_follow_the_paper(data):
    """Positives hold both kinds (one each); negatives one kind only, once or twice."""
    for i in range(len(data.labels)):
        kinds = data.instances[data.instances[:, 0] == i, 1]
        if data.labels[i]:
            assert sorted(kinds.tolist()) == [0, 1]
        else:
            assert len(set(kinds.tolist())) == 1 and 1 <= len(kinds) <= 2
    np.testing.assert_array_equal(data.tasks[:, 2], data.labels)
    np.testing.assert_array_equal(data.tasks[:, :2], data.motif_mask.any(1))
    assert 0.4 < data.labels.mean() < 0.6


def test_mask_and_instances_agree(data):
    mask = np.zeros_like(data.motif_mask)
    for i, k, start in data.instances:
        mask[i, start:start + len(G.MOTIFS[k]), k] = True
    np.testing.assert_array_equal(mask, data.motif_mask)
    assert not (data.motif_mask[..., 0] & data.motif_mask[..., 1]).any()  # no overlaps


def test_instances_are_pwm_samples(data):
    """The cores match the consensus most of the time (sampled, so not always)."""
    seqs = data.x.argmax(-1)
    for k, core_at in ((0, slice(2, 6)), (1, slice(2, 8))):
        rows = data.instances[data.instances[:, 1] == k]
        pwm = G.MOTIFS[k]
        got = np.stack([seqs[i, s:s + len(pwm)] for i, _, s in rows])
        want = pwm.argmax(1)
        match = (got[:, core_at] == want[core_at]).mean()
        assert 0.9 < match < 1.0
    assert G.consensus(G.GATA_PWM)[2:6] == "GATA" and G.consensus(G.TAL1_PWM)[2:8] == "CAGATG"


def test_background_frequencies():
    d = G.simulate(300, seed=0, background=G.PAPER_2017_BACKGROUND, positive_fraction=0.0)
    bg = d.x[~d.motif_mask.any(-1)].mean(0)
    np.testing.assert_allclose(bg, G.PAPER_2017_BACKGROUND, atol=0.01)
    assert d.labels.sum() == 0


def test_helpers():
    assert G.decode(G.one_hot(np.array([0, 1, 2, 3]))) == "ACGT"
    rng = np.random.default_rng(0)
    draws = np.stack([G.sample_motif(G.TAL1_PWM, rng) for _ in range(2000)])
    freq = np.stack([(draws == b).mean(0) for b in range(4)], 1)
    np.testing.assert_allclose(freq, G.TAL1_PWM, atol=0.04)


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=5, positive_fraction=1.5),
                                    dict(n=5, background=(0.5, 0.5, 0.5, 0.5)),
                                    dict(n=5, length=10), dict(n=5, motifs=(G.GATA_PWM,))])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        G.simulate(**kwargs)
