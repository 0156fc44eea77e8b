import jax
import numpy as np
import pytest

from jaxattr.training import Config, train, train_grid
from jaxattr.training.loop import _config_mesh

# With the shared settings these stop after 19, 23 and 22 epochs.
EPOCHS = 30
CONFIGS = [Config(0.0, "A"), Config(1e-2, "B1"), Config(5e-2, "D")]


@pytest.fixture(scope="module")
def grid(model, digits_split, settings):
    """All configurations vmapped together, sharded over the 4 test devices."""
    return train_grid(
        model, CONFIGS, *digits_split, epochs=EPOCHS, seed=0, strategy="vmap", **settings
    )


def test_grid_is_sharded_over_the_four_test_devices():
    assert len(jax.devices()) == 4  # tests/conftest.py
    mesh, padded = _config_mesh(len(CONFIGS), None)
    assert padded == 4 and mesh.shape == {"config": 4}
    assert _config_mesh(len(CONFIGS), False) == (None, 3)


def test_grid_shapes_and_independent_early_stopping(grid, params):
    best, history = grid
    jax.tree.map(lambda b, p: np.testing.assert_equal(b.shape, (3, *p.shape)), best, params)
    assert history.val_loss.shape[0] == 3 and history.best_epoch.shape == (3,)
    trained = history.epochs_trained
    assert len(set(trained.tolist())) > 1, "configurations should stop at different epochs"
    assert history.val_loss.shape[1] == trained.max()
    for i, n in enumerate(trained):
        assert np.all(np.isfinite(history.val_loss[i, :n]))
        assert np.all(np.isnan(history.val_loss[i, n:]))  # frozen after stopping


@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_vmapped_grid_equals_training_each_configuration_alone(grid, model, digits_split, settings, i):
    best, history = grid
    config = CONFIGS[i]
    params, alone = train(
        model, *digits_split, decay=config.decay, group=config.group,
        epochs=EPOCHS, seed=0, **settings,
    )
    assert int(history.best_epoch[i]) == int(alone.best_epoch)
    assert int(history.epochs_trained[i]) == int(alone.epochs_trained)
    n = int(alone.epochs_trained)
    np.testing.assert_allclose(history.val_loss[i, :n], alone.val_loss, rtol=1e-5)
    np.testing.assert_allclose(history.train_loss[i, :n], alone.train_loss, rtol=1e-5)
    jax.tree.map(
        lambda g, a: np.testing.assert_allclose(g[i], a, rtol=1e-4, atol=1e-5), best, params
    )


def test_unsharded_grid_equals_the_sharded_grid(grid, model, digits_split, settings):
    best, history = grid
    best_one_device, history_one_device = train_grid(
        model, CONFIGS, *digits_split, epochs=EPOCHS, seed=0, strategy="vmap",
        shard=False, **settings,
    )
    np.testing.assert_array_equal(history_one_device.epochs_trained, history.epochs_trained)
    np.testing.assert_array_equal(history_one_device.best_epoch, history.best_epoch)
    np.testing.assert_allclose(history_one_device.val_loss, history.val_loss, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        best_one_device, best,
    )


def test_sequential_strategy_stacks_like_the_vmapped_grid(grid, model, digits_split, settings):
    best, history = grid
    best_seq, history_seq = train_grid(
        model, CONFIGS, *digits_split, epochs=EPOCHS, seed=0, strategy="sequential",
        **settings,
    )
    assert history_seq.val_loss.shape == history.val_loss.shape
    np.testing.assert_array_equal(history_seq.epochs_trained, history.epochs_trained)
    np.testing.assert_array_equal(np.isnan(history_seq.val_loss), np.isnan(history.val_loss))
    np.testing.assert_allclose(history_seq.val_loss, history.val_loss, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), best_seq, best
    )


def test_unknown_strategy_is_rejected(model, digits_split):
    with pytest.raises(ValueError, match="strategy must be 'vmap', 'sequential' or 'auto', got 'pmap'"):
        train_grid(model, CONFIGS, *digits_split, strategy="pmap", progress=False)
