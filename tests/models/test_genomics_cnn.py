"""The DeepLIFT genomics CNN: architecture, PReLU, and how the engine sees it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxattr as ja
from jaxattr.models.genomics_cnn import GenomicsCNN, PReLU


@pytest.fixture(scope="module")
def shapes():
    return {pad: jax.eval_shape(GenomicsCNN(pool_padding=pad).init, jax.random.key(0),
                                jnp.zeros((1, 200, 4)))
            for pad in ("SAME", "VALID")}


def test_architecture(shapes):
    p = shapes["SAME"]["params"]
    assert p["conv"]["kernel"].shape == (15, 4, 20)
    assert p["dense1"]["kernel"].shape == (4 * 20, 200)  # 186 conv positions -> 4 SAME windows
    assert shapes["VALID"]["params"]["dense1"]["kernel"].shape == (3 * 20, 200)  # Keras: 3
    assert p["dense2"]["kernel"].shape == (200, 200) and p["out"]["kernel"].shape == (200, 1)
    assert p["prelu_conv"]["slope"].shape == (20,) and p["prelu1"]["slope"].shape == (200,)
    assert set(p) == {"conv", "prelu_conv", "dense1", "prelu1", "dense2", "prelu2", "out"}


def test_prelu():
    x = jnp.array([[-2.0, 3.0]])
    y = PReLU(init_slope=0.25).apply({"params": {"slope": jnp.array([0.25, 0.5])}}, x)
    np.testing.assert_allclose(np.asarray(y), [[-0.5, 3.0]])


def test_valid_pool_is_blind_to_the_tail():
    model = GenomicsCNN(pool_padding="VALID", n_tasks=2)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape), jnp.float32),
                                    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 200, 4))))
    x = jnp.asarray(rng.uniform(size=(2, 200, 4)), jnp.float32)
    both = jax.jit(model.apply)(params, jnp.concatenate([x, x.at[:, 164:].set(0.0), x.at[:, 163:].set(0.0)]))
    np.testing.assert_array_equal(np.asarray(both[:2]), np.asarray(both[2:4]))
    assert not np.allclose(np.asarray(both[:2]), np.asarray(both[4:]))
    assert both.shape == (6, 2)


def test_bad_input():
    model = GenomicsCNN()
    with pytest.raises(ValueError, match="one-hot DNA"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 200, 5)))
    with pytest.raises(ValueError, match="pool_padding"):
        jax.eval_shape(GenomicsCNN(pool_padding="FULL").init, jax.random.key(0), jnp.zeros((1, 200, 4)))


def test_engine_covers_every_node(shapes):
    """PReLU is one activation region (Rescale), the pool gets DeepLIFT's max rule."""
    params = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["SAME"])
    rows = ja.engine.audit(GenomicsCNN().apply, params, jnp.zeros((2, 200, 4)), ja.DeepLIFT())
    kinds = {r.kind for r in rows}
    assert kinds <= {"conv", "dense", "activation", "maxpool", "plumbing", "constant"}
    assert [r.rule for r in rows if r.kind == "maxpool"] == ["DeepLIFTMax(mode='interpolate')"]
    assert sum(r.primitive == "select_n" for r in rows if r.kind == "activation") == 3
