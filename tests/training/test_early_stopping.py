import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.training.early_stopping import early_stopping_init, early_stopping_update


def run(curve, patience, min_delta=0.0):
    update = jax.jit(lambda s, l: early_stopping_update(s, l, patience=patience, min_delta=min_delta))
    state, improved = early_stopping_init(), []
    for loss in curve:
        state, imp = update(state, loss)
        improved.append(bool(imp))
    return state, improved


def test_stops_after_patience_epochs_without_improvement_and_keeps_best():
    curve = [1.0, 0.8, 0.9, 0.7, 0.75, 0.71, 0.72, 0.5, 0.4]
    state, improved = run(curve, patience=3)
    # best 0.7 at epoch 3; epochs 4, 5, 6 do not improve -> stopped after epoch 6
    assert bool(state.stopped)
    assert int(state.best_epoch) == 3
    assert float(state.best_loss) == pytest.approx(0.7)
    assert int(state.epoch) == 7  # epochs after stopping are not counted
    assert improved == [True, True, False, True, False, False, False, False, False]


def test_improvement_resets_the_wait():
    state, _ = run([1.0, 1.1, 0.9, 1.0, 0.8, 0.85], patience=2)
    assert not bool(state.stopped)
    assert int(state.best_epoch) == 4 and int(state.wait) == 1


def test_min_delta_and_nan_do_not_count_as_improvement():
    state, improved = run([1.0, 0.995, float("nan")], patience=5, min_delta=0.01)
    assert improved == [True, False, False]
    assert int(state.wait) == 2 and int(state.best_epoch) == 0


def test_vmapped_states_stop_independently():
    curves = jnp.array([
        [3.0, 2.0, 1.0, 0.5, 0.4, 0.3],  # never stops
        [3.0, 3.5, 3.6, 1.0, 0.5, 0.1],  # stops after epoch 2 (patience 2)
        [1.0, 0.9, 0.95, 0.99, 0.1, 0.1],  # stops after epoch 3
    ])
    update = jax.jit(jax.vmap(lambda s, l: early_stopping_update(s, l, patience=2)))
    state = jax.tree.map(lambda a: jnp.stack([a] * 3), early_stopping_init())
    for epoch in range(curves.shape[1]):
        state, _ = update(state, curves[:, epoch])
    np.testing.assert_array_equal(state.stopped, [False, True, True])
    np.testing.assert_array_equal(state.best_epoch, [5, 0, 1])
    np.testing.assert_array_equal(state.epoch, [6, 3, 4])
    np.testing.assert_allclose(state.best_loss, [0.3, 3.0, 0.9])


@pytest.mark.parametrize("patience", [0, -1, 1.5])
def test_patience_must_be_a_positive_int(patience):
    with pytest.raises(ValueError, match=f"patience must be an integer >= 1, got {patience}"):
        early_stopping_update(early_stopping_init(), 1.0, patience=patience)
