"""Training precision (float32 exact, fast, bfloat16 with float32 master weights) and the
epoch as one compiled loop (the accelerators' path), checked on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.training import Config, train, train_grid
from jaxattr.training._steps import epoch_loop

EPOCHS = 4


def _train(model, digits_split, settings, **kw):
    return train(model, *digits_split, decay=1e-3, group="A", epochs=EPOCHS, seed=0,
                 **{**settings, "patience": 10}, **kw)


@pytest.fixture(scope="module")
def float32_run(model, digits_split, settings):
    return _train(model, digits_split, settings, precision="float32")


def test_float32_is_the_default_and_equals_xla_default_on_cpu(model, digits_split, settings,
                                                               float32_run):
    default = _train(model, digits_split, settings)
    fast = _train(model, digits_split, settings, precision="fast")
    for other in (default, fast):  # on CPU "highest" is XLA's float32 arithmetic: bit for bit
        jax.tree.map(np.testing.assert_array_equal, other[0], float32_run[0])
        np.testing.assert_array_equal(other[1].val_loss, float32_run[1].val_loss)


def test_bfloat16_keeps_float32_master_weights_and_is_close(model, digits_split, settings,
                                                             float32_run):
    params, history = _train(model, digits_split, settings, precision="bfloat16")
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    assert np.all(np.isfinite(history.val_loss))
    # a few epochs of bfloat16 arithmetic track the float32 run closely
    np.testing.assert_allclose(history.train_loss, float32_run[1].train_loss, rtol=0.05)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(jax.tree.leaves(params), jax.tree.leaves(float32_run[0])))


def test_compiled_epoch_loop_equals_the_host_loop(model, digits_split, settings, float32_run,
                                                  monkeypatch):
    assert epoch_loop("cpu") == "host" and epoch_loop("gpu") == epoch_loop("tpu") == "compiled"
    monkeypatch.setenv("JAXATTR_EPOCH_LOOP", "compiled")
    params, history = _train(model, digits_split, settings, precision="float32")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params, float32_run[0])
    np.testing.assert_allclose(history.val_loss, float32_run[1].val_loss, rtol=1e-5)
    # and the vmapped grid, as accelerators run it, in bfloat16
    configs = [Config(0.0, "A"), Config(1e-2, "D")]
    stacked, grid_history = train_grid(model, configs, *digits_split, epochs=2, seed=0,
                                       strategy="vmap", precision="bfloat16", shard=False,
                                       **settings)
    assert grid_history.val_loss.shape[0] == 2 and np.all(np.isfinite(grid_history.val_loss))


def test_unknown_precision_is_rejected(model, digits_split, settings):
    with pytest.raises(ValueError, match="'float32', 'fast', 'bfloat16'"):
        _train(model, digits_split, settings, precision="float16")
