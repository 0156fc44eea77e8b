"""Shared, deliberately small fixtures: one model, one data layout and one set of
settings, so that every training test reuses the same compiled epoch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattr.data import load_digits
from jaxattr.models import small_paper_cnn
from jaxattr.training import init_params


@pytest.fixture(scope="session")
def settings():
    """With ``digits_split`` one full batch per epoch: smooth, deterministic
    training that overfits 64 examples and stops within about 25 epochs."""
    return dict(learning_rate=1e-2, patience=2, batch_size=64, progress=False)


@pytest.fixture(scope="session")
def model():
    return small_paper_cnn()


@pytest.fixture(scope="session")
def digits_split():
    x, y = load_digits()
    return x[:64], y[:64], x[64:192], y[64:192]


@pytest.fixture(scope="session")
def params(model):
    return init_params(model, jnp.zeros((1, 8, 8, 1)), seed=0)


@pytest.fixture(scope="session")
def w(params):
    """The paper CNN's parameter names with small random leaves of two shapes
    (groups depend on names only; few shapes keep eager tests fast)."""
    rng = np.random.default_rng(3)
    leaf = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
    return {layer: {"kernel": leaf(4, 3), "bias": leaf(3)} for layer in params}
